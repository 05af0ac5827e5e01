"""How a message finds its transaction: the keys of RFC 3261 §17.1.3 (client) and §17.2.3 (server).

Keys are plain tuples so each lookup is one dict probe. A key function raises `RemoteProtocolError`
when the message lacks what matching needs; the transaction layer turns that into a drop.
"""

from __future__ import annotations

from sbc.sip.errors import RemoteProtocolError
from sbc.sip.message import Message, Request, Response
from sbc.sip.uri import Via

MAGIC_COOKIE = "z9hG4bK"

ClientKey = tuple[str, str]
ServerKey = tuple[str, ...]
DialogAckKey = tuple[str, int, str]

_DEFAULT_PORTS = {"TLS": 5061, "WSS": 443, "WS": 80}


def default_port(transport: str) -> int:
    return _DEFAULT_PORTS.get(transport.upper(), 5060)


def client_key_for_request(request: Request) -> ClientKey:
    branch = request.top_via.branch
    if not branch:
        raise RemoteProtocolError("request has no Via branch", 400)
    return branch, request.method


def client_key_for_response(response: Response) -> ClientKey:
    """§17.1.3: the top Via branch and the CSeq method (so a CANCEL's 200 finds the CANCEL, not the INVITE)."""
    branch = response.top_via.branch
    if not branch:
        raise RemoteProtocolError("response has no Via branch", 400)
    return branch, response.cseq[1]


def is_rfc3261_branch(via: Via) -> bool:
    branch = via.branch
    return branch is not None and branch.startswith(MAGIC_COOKIE)


def server_key(request: Request, method: str, via: Via | None = None) -> ServerKey:
    """§17.2.3 key of the server transaction `request` belongs to, for transaction method `method`.

    `method` is INVITE for an ACK (and for the INVITE a CANCEL targets), else the request's own method.
    With the magic cookie: branch + sent-by + method. Without it (RFC 2543 peers): Request-URI, From tag,
    Call-ID, CSeq number, method and the whole top Via. The To tag is checked by the caller, because an
    ACK carries the tag of our response, which the INVITE did not have.
    """
    if via is None:
        via = request.top_via
    if is_rfc3261_branch(via):
        port = via.port if via.port is not None else default_port(via.transport)
        return ("3261", via.branch or "", via.host.lower(), str(port), method)
    num, _ = request.cseq
    return (
        "2543",
        request.uri,
        header_tag(request.get("from")),
        request.call_id,
        str(num),
        method,
        str(via).lower(),
    )


def header_tag(value: str | None) -> str:
    """The tag parameter of a From or To value, "" if none; without a full name-addr parse (hot path).

    Header parameters follow the closing '>' or, in the addr-spec form, the URI itself (§20.10)."""
    if not value:
        return ""
    tail = value.rsplit(">", 1)[-1] if "<" in value else value
    for param in tail.split(";")[1:]:
        name, _, tag = param.partition("=")
        if name.strip().lower() == "tag":
            return tag.strip()
    return ""


def to_tag(message: Message) -> str:
    value = message.get("to")
    if value is None:
        raise RemoteProtocolError("missing To", 400)
    return header_tag(value)


def dialog_ack_key(message: Message) -> DialogAckKey:
    """What ties an ACK to the 2xx it acknowledges (§13.3.1.4): Call-ID, CSeq number, To tag."""
    num, _ = message.cseq
    return message.call_id, num, to_tag(message)
