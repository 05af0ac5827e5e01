"""The two kinds of SIP protocol error, each carrying the answer to give (h11's error_status_hint)."""

from __future__ import annotations


class SipProtocolError(Exception):
    """Base class: a message or action that breaks RFC 3261."""

    def __init__(self, reason: str, status_hint: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_hint = status_hint


class RemoteProtocolError(SipProtocolError):
    """The peer sent something we cannot accept; answer `status_hint` (or drop if it is not a request)."""


class LocalProtocolError(SipProtocolError):
    """We tried to do something illegal: a bug in the caller, never the peer's fault."""
