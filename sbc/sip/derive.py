"""Messages the transaction layer writes itself, derived from the ones it carries.

The ACK for a non-2xx final (§17.1.1.3), the CANCEL of a pending INVITE (§9.1) and the responses the
layer answers alone (100 Trying, 200/481 to CANCEL; §8.2.6). Header lines are copied verbatim, so the
peer sees exactly the Call-ID, From and Via spelling it sent or we sent.
"""

from __future__ import annotations

from sbc.sip.message import HeaderField, Request, Response

_REASONS = {100: "Trying", 200: "OK", 481: "Call/Transaction Does Not Exist", 487: "Request Terminated"}


def _copy(h: HeaderField) -> HeaderField:
    return HeaderField(h.name, h.value, h.raw)


def _top_via_only(request: Request) -> HeaderField:
    """The first Via value of `request` as one header line (§17.1.1.3, §9.1: a single Via)."""
    first = request.values("via")[0]
    return HeaderField("Via", first)


def _in_dialog_request(original: Request, method: str, to_line: HeaderField) -> Request:
    headers: list[HeaderField] = [_top_via_only(original), HeaderField("Max-Forwards", "70")]
    for h in original.headers:
        key = h.key
        if key == "from" or key == "call-id" or key == "route":
            headers.append(_copy(h))
    headers.append(to_line)
    num, _ = original.cseq
    headers.append(HeaderField("CSeq", f"{num} {method}"))
    headers.append(HeaderField("Content-Length", "0"))
    return Request(method, original.uri, headers, b"", original.line_ending)


def ack_for_failure(invite: Request, response: Response) -> Request:
    """§17.1.1.3: same Request-URI, Call-ID, From, CSeq number and top Via as the INVITE, To from the
    response (with its tag), the INVITE's Route set, method ACK."""
    to_value = response.get("to") or invite.get("to") or ""
    return _in_dialog_request(invite, "ACK", HeaderField("To", to_value))


def cancel_for(invite: Request) -> Request:
    """§9.1: same Request-URI, Call-ID, To, From, CSeq number and top Via as the INVITE; Route copied."""
    to_value = invite.get("to") or ""
    return _in_dialog_request(invite, "CANCEL", HeaderField("To", to_value))


def local_response(request: Request, status: int, to_tag: str | None) -> Response:
    """§8.2.6: Via, From, To, Call-ID, CSeq (and Timestamp) copied; a To tag added unless `to_tag` is None
    or the request already had one (100 Trying gets none)."""
    headers: list[HeaderField] = []
    for h in request.headers:
        key = h.key
        if key == "to":
            value = h.value
            if to_tag is not None and not _has_tag(value):
                value = f"{value};tag={to_tag}"
                headers.append(HeaderField(h.name, value))
            else:
                headers.append(_copy(h))
        elif key in ("via", "from", "call-id", "cseq", "timestamp"):
            headers.append(_copy(h))
    headers.append(HeaderField("Content-Length", "0"))
    return Response(status, _REASONS.get(status, ""), headers, b"", request.line_ending)


def _has_tag(to_value: str) -> bool:
    # The tag is a header parameter after the closing '>' (or after the bare URI).
    tail = to_value.rsplit(">", 1)[-1]
    return any(p.split("=", 1)[0].strip().lower() == "tag" for p in tail.split(";")[1:])
