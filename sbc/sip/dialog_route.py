"""Where a request inside a dialog goes: its Request-URI, Route headers and next hop (RFC 3261 §12.2.1.1).

A dialog's route set comes from the Record-Route of the request or response that created it (§12.1.1,
§12.1.2). With a loose router first (its URI has `lr`), the Request-URI is the remote target, every
route becomes a Route header and the request is sent to the first route's address (§8.1.2). With a
strict router first, the first route becomes the Request-URI and the remote target the last Route.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sbc.sip.errors import RemoteProtocolError
from sbc.sip.transaction import PeerAddress
from sbc.sip.uri import NameAddr, Uri, unbracket

# Parameters a Request-URI may not carry (§19.1.1 table 1: method and headers are URI-only, and
# Route parameters are not URI parameters at all).
_NOT_IN_REQUEST_URI = frozenset({"method", "maddr", "ttl", "transport", "lr"})


@dataclass(frozen=True, slots=True)
class DialogTarget:
    request_uri: str
    routes: tuple[str, ...]  # Route header values, in order
    next_hop: Uri | None  # where to send it; None: no route set, the caller's own choice


def dialog_target(remote_target: str, route_set: Sequence[str]) -> DialogTarget:
    if not route_set:
        return DialogTarget(remote_target, (), None)
    try:
        first = NameAddr.parse(route_set[0]).uri
    except RemoteProtocolError:
        return DialogTarget(remote_target, tuple(route_set), None)  # the far end gave us this; send it on
    if first.param("lr") is not None:
        return DialogTarget(remote_target, tuple(route_set), first)
    params = tuple((k, v) for k, v in first.params if k.lower() not in _NOT_IN_REQUEST_URI)
    strict_uri = Uri(first.scheme, first.user, first.password, first.host, first.port, params)
    return DialogTarget(str(strict_uri), (*route_set[1:], f"<{remote_target}>"), first)


def hop_address(uri: Uri, default_transport: str) -> PeerAddress:
    """The address of a route or target URI (RFC 3263 §4 without DNS: the host as written, the
    transport parameter or `default_transport`, the port or the transport's default)."""
    transport = (uri.param("transport") or ("tls" if uri.scheme == "sips" else default_transport)).lower()
    port = uri.port or (5061 if transport == "tls" else 5060)
    return PeerAddress(transport, unbracket(uri.host), port)
