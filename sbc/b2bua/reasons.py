"""The words the SBC puts in its own answers: reason phrases and Warning texts."""

from __future__ import annotations

__all__ = ["quote", "reason", "warning"]

_REASONS = {
    100: "Trying",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    422: "Session Interval Too Small",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    503: "Service Unavailable",
    505: "Version Not Supported",
    513: "Message Too Large",
}


def reason(status: int) -> str:
    return _REASONS.get(status, "Error" if status >= 300 else "OK")


def quote(text: str) -> str:
    """`text` made safe for a quoted string (a Warning's text), and short."""
    return text.replace("\\", "").replace('"', "'")[:120]


def warning(host: str, text: str) -> tuple[str, str]:
    """A Warning header (RFC 3261 §20.43, code 399: miscellaneous) from the SBC at `host`."""
    return ("Warning", f'399 {host} "{quote(text)}"')
