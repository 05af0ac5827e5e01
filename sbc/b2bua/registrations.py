"""Registration bindings the SBC relays upstream (RFC 3261 §10) with the phone's real contact hidden.

The registrar sees `sip:<token>@<SBC WAN address>` as the contact; this table maps the token (and the
address-of-record's user) back to the phone's contact URI and the flow its REGISTER came from, so an
INVITE from the WAN for that user reaches the phone behind its NAT.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from sbc.sip.transaction import PeerAddress


@dataclass(slots=True)
class Binding:
    aor: str  # user@domain as the phone registered it
    user: str
    token: str  # the user part of the contact the registrar sees
    realm: str  # the realm the phone lives in
    contact_uri: str  # the phone's own Contact URI
    flow: PeerAddress  # where the phone's REGISTER came from (NAT-safe destination)
    expires_at: float = 0.0
    upstream_call_id: str = ""
    upstream_cseq: int = 0
    upstream_from_tag: str = ""


@dataclass(slots=True)
class RegistrationTable:
    by_token: dict[str, Binding] = field(default_factory=dict)
    by_key: dict[tuple[str, str], Binding] = field(default_factory=dict)  # (aor, phone contact) -> binding

    def binding_for(self, aor: str, contact_uri: str) -> Binding | None:
        return self.by_key.get((aor, contact_uri))

    def create(self, aor: str, user: str, realm: str, contact_uri: str, flow: PeerAddress) -> Binding:
        binding = Binding(
            aor=aor,
            user=user,
            token="r" + secrets.token_hex(6),
            realm=realm,
            contact_uri=contact_uri,
            flow=flow,
            upstream_call_id=secrets.token_hex(12),
            upstream_from_tag=secrets.token_hex(5),
        )
        self.by_token[binding.token] = binding
        self.by_key[(aor, contact_uri)] = binding
        return binding

    def activate(self, binding: Binding, expires_at: float) -> None:
        binding.expires_at = expires_at

    def remove(self, binding: Binding) -> None:
        self.by_token.pop(binding.token, None)
        self.by_key.pop((binding.aor, binding.contact_uri), None)

    def lookup(self, user_or_token: str, now: float) -> Binding | None:
        """The live binding for a contact token or, failing that, the newest live one of a user."""
        binding = self.by_token.get(user_or_token)
        if binding is not None and binding.expires_at > now:
            return binding
        best: Binding | None = None
        for b in self.by_token.values():
            if b.user == user_or_token and b.expires_at > now and (best is None or b.expires_at > best.expires_at):
                best = b
        return best

    def expire(self, now: float) -> list[Binding]:
        gone = [b for b in self.by_token.values() if 0 < b.expires_at <= now]
        for b in gone:
            self.remove(b)
        return gone

    def active(self, now: float) -> list[Binding]:
        return [b for b in self.by_token.values() if b.expires_at > now]
