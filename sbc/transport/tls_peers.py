"""Verifying the peers the SBC connects to over TLS: trunks, registrars, route targets.

A peer's certificate must chain to its configured CA (`tls: {ca_file}` on the peer; without one the
system's trusted CAs, plus the realm's `tls.ca_file` when it has one) and must name the host the SBC
meant to reach (RFC 5922 §7.2: the configured `server_name`, else the host the SBC dials, a DNS name
or an IP address matched against the certificate's IP addresses). Anything else is refused before a
byte of SIP (and the SDES keys in its SDP) goes out. Each refusal is logged with the verifier's reason
and kept for `sbc status` (`transport.tls_peers`) until a later connection to that peer verifies.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from sbc.config.model import PeerTls, Realm, Route, TlsSettings, Transport

log = logging.getLogger("sbc.transport")

MAX_VERDICTS = 256
PeerKey = tuple[str, int]  # host as configured (an IPv6 literal without brackets), port


def peers_of(realm: Realm, routes: Iterable[Route]) -> dict[PeerKey, PeerTls]:
    """The TLS peers the SBC may dial from `realm`, with how each is verified."""
    peers = [realm.peer, realm.registrar, *(r.target for r in routes if r.to_realm == realm.name)]
    return {(p.host, p.port): p.tls for p in peers if p is not None and p.transport is Transport.TLS}


def server_name(peer: PeerTls, host: str) -> str:
    """The name the peer's certificate must carry, also sent as SNI (an IP address is not sent)."""
    return peer.server_name or (host[1:-1] if host.startswith("[") else host)


@lru_cache(maxsize=32)
def client_context(realm_tls: TlsSettings | None, peer: PeerTls) -> ssl.SSLContext:
    """A context that verifies the chain and the host name; the realm's certificate is presented
    when it has one (mutual TLS). Cached: loading the system's CAs takes milliseconds."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname by default
    if peer.ca_file is not None:
        ctx.load_verify_locations(str(peer.ca_file))
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
        if realm_tls is not None and realm_tls.ca_file is not None:
            ctx.load_verify_locations(str(realm_tls.ca_file))
    newest_only = realm_tls is None or realm_tls.min_version == "1.3"
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3 if newest_only else ssl.TLSVersion.TLSv1_2
    if realm_tls is not None:
        ctx.load_cert_chain(str(realm_tls.certificate), str(realm_tls.private_key))
    return ctx


def refusal_reason(exc: BaseException) -> str | None:
    """Why the peer's certificate was refused, or None when `exc` is not a verification failure."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return str(exc.verify_message or exc.reason or exc)
    return None


@dataclass(slots=True)
class TlsPeerVerdicts:
    """The last verification outcome per TLS peer dialled, for `sbc status`."""

    verdicts: dict[tuple[str, str], dict[str, object]] = field(default_factory=dict)  # (realm, peer)
    refused_total: int = 0

    def verified(self, realm: str, peer: str, name: str) -> None:
        self._forget_oldest()
        self.verdicts[(realm, peer)] = {"realm": realm, "peer": peer, "server_name": name, "verified": True}

    def refused(self, realm: str, peer: str, name: str, reason: str) -> None:
        self.refused_total += 1
        self._forget_oldest()
        self.verdicts[(realm, peer)] = {
            "realm": realm,
            "peer": peer,
            "server_name": name,
            "verified": False,
            "reason": reason,
            "refused_at": round(time.time(), 3),
        }
        line = {"level": "warning", "event": "tls.peer_refused", "realm": realm, "peer": peer}
        log.warning(json.dumps({**line, "server_name": name, "reason": reason}))

    def _forget_oldest(self) -> None:
        # Peers dialled are mostly configured ones, but a Contact over TLS is one too: stay bounded.
        while len(self.verdicts) >= MAX_VERDICTS:
            del self.verdicts[next(iter(self.verdicts))]

    def report(self) -> list[dict[str, object]]:
        return list(self.verdicts.values())
