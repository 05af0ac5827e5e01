"""A 3xx from the callee side (RFC 3261 §8.1.3.4), handled per the callee realm's `redirects`.

`follow`: the contacts are a target set, tried in q order, each URI once (two servers that redirect
to each other end) and at most `MAX_REDIRECTS` times per call; only contacts on the realm's own peer,
registrar or the route's target are followed: a 3xx must not send the SBC (and the caller's
identity) to a host nobody configured. `relay`: the caller gets the 3xx with each contact's user at
the SBC's own address on the caller's side, so following it comes back through the SBC's routes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sbc.config.model import Peer
from sbc.sip.dialog_route import hop_address
from sbc.sip.message import Response
from sbc.sip.transaction import PeerAddress
from sbc.sip.uri import NameAddr, Uri, format_host, unbracket

MAX_REDIRECTS = 5
# §8.1.3.4: the whole contact URI becomes the Request-URI, except the method parameter and headers.
_DROPPED_PARAMS = frozenset({"method"})


@dataclass(frozen=True, slots=True)
class RedirectTarget:
    request_uri: str
    destination: PeerAddress


def allowed_hosts(peers: Iterable[Peer | None]) -> frozenset[str]:
    return frozenset(unbracket(p.host).lower() for p in peers if p is not None)


def next_target(
    response: Response, allowed: frozenset[str], tried: Iterable[str], default_transport: str
) -> RedirectTarget | None:
    """The first contact of `response`, by q, that may be followed and was not tried yet."""
    done = set(tried)
    for contact in _by_q(response.contacts):
        uri = contact.uri
        if uri.scheme not in ("sip", "sips") or unbracket(uri.host).lower() not in allowed:
            continue
        params = tuple((k, v) for k, v in uri.params if k.lower() not in _DROPPED_PARAMS)
        target = str(Uri(uri.scheme, uri.user, None, uri.host, uri.port, params))
        if target in done:
            continue
        return RedirectTarget(target, hop_address(uri, default_transport))
    return None


def relayed_contacts(response: Response, sbc_host: str, sbc_port: int, transport: str) -> list[str]:
    """Contacts for the caller: each contact's user at the SBC (q kept); contacts without a user name
    nothing the SBC could route, and are left out."""
    port = "" if sbc_port == 5060 else f":{sbc_port}"
    tparam = "" if transport == "udp" else f";transport={transport}"
    out: list[str] = []
    for contact in _by_q(response.contacts):
        user = contact.uri.user
        if contact.uri.scheme not in ("sip", "sips", "tel") or not user:
            continue
        q = contact.param("q")
        out.append(f"<sip:{user}@{format_host(sbc_host)}{port}{tparam}>" + (f";q={q}" if q is not None else ""))
    return out


def _by_q(contacts: list[NameAddr]) -> list[NameAddr]:
    def q(contact: NameAddr) -> float:
        try:
            return float(contact.param("q") or "1")
        except ValueError:
            return 0.0

    return sorted(contacts, key=q, reverse=True)  # stable: equal q keep their order
