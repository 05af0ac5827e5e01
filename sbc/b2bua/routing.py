"""Choosing where a new call goes: the first route of the entry realm that matches (config order)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sbc.b2bua.registrations import Binding, RegistrationTable
from sbc.config.model import Peer, Route, SbcConfig
from sbc.sip.errors import RemoteProtocolError
from sbc.sip.message import Request
from sbc.sip.transaction import PeerAddress
from sbc.sip.uri import Uri, format_host


@dataclass(frozen=True, slots=True)
class RouteDecision:
    route: Route
    to_realm: str
    destination: PeerAddress
    request_uri: str
    peer: Peer | None = None  # the configured peer it goes to (None: a registered phone)


class Router:
    def __init__(self, config: SbcConfig) -> None:
        self.config = config
        self._routes = [(r, re.compile(r.match_user) if r.match_user else None) for r in config.routes]

    def route(self, realm: str, req: Request, registrations: RegistrationTable, now: float) -> RouteDecision | int:
        """The decision for a new INVITE, or the status to refuse it with."""
        try:
            ruri = req.request_uri
        except RemoteProtocolError:
            return 416
        user = ruri.user or ""
        for route, pattern in self._routes:
            if route.from_realm != realm:
                continue
            if pattern is not None and not pattern.search(user):
                continue
            if route.use_registrations:
                binding = registrations.lookup(user, now)
                if binding is not None and binding.realm == route.to_realm:
                    return RouteDecision(route, route.to_realm, self._binding_destination(binding), binding.contact_uri)
            peer = route.target or self.config.realm(route.to_realm).peer
            if peer is None:
                if route.use_registrations:
                    return 404
                continue
            return RouteDecision(route, route.to_realm, _address(peer), _request_uri(ruri, peer), peer)
        return 404

    def _binding_destination(self, binding: Binding) -> PeerAddress:
        """The phone's flow when its realm is behind NAT, else the address in its Contact."""
        if self.config.realm(binding.realm).nat_traversal:
            return binding.flow
        try:
            uri = Uri.parse(binding.contact_uri)
        except RemoteProtocolError:
            return binding.flow
        transport = (uri.param("transport") or binding.flow.transport).lower()
        return PeerAddress(transport, uri.host, uri.port or (5061 if transport == "tls" else 5060))

    def registrar_for(self, realm: str) -> tuple[str, Peer] | None:
        """The realm and registrar REGISTERs from `realm` are relayed to (the first route's realm with one)."""
        for route, _ in self._routes:
            if route.from_realm == realm:
                registrar = self.config.realm(route.to_realm).registrar
                if registrar is not None:
                    return route.to_realm, registrar
        return None


def _address(peer: Peer) -> PeerAddress:
    return PeerAddress(peer.transport.value, peer.host, peer.port)


def _request_uri(ruri: Uri, peer: Peer) -> str:
    if ruri.scheme == "tel":
        return f"sip:{ruri.user}@{format_host(peer.host)}:{peer.port}"
    port = f":{peer.port}" if peer.port != 5060 else ""
    transport = f";transport={peer.transport.value}" if peer.transport.value != "udp" else ""
    user = f"{ruri.user}@" if ruri.user else ""
    return f"{ruri.scheme}:{user}{format_host(peer.host)}{port}{transport}"
