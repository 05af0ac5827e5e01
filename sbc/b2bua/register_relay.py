"""REGISTER relay: a phone's registration goes to its realm's registrar with the SBC's Contact, and
the binding is kept (sbc.b2bua.registrations) so that calls for the phone reach its flow."""

from __future__ import annotations

from sbc.b2bua.call import Leg
from sbc.b2bua.contexts import RegisterContext
from sbc.b2bua.state import CoreState
from sbc.b2bua.translation import LegTranslator, rehost
from sbc.policy.topology import AddressScrubber
from sbc.sip.message import HeaderField, Request, Response, make_response
from sbc.sip.transaction import PeerAddress
from sbc.sip.uri import host_address

__all__ = ["RegisterRelay"]


class RegisterRelay:
    def __init__(self, state: CoreState, translator: LegTranslator) -> None:
        self.state = state
        self.translator = translator

    def request(self, realm_name: str, txn_id: str, req: Request, source: PeerAddress, now: float) -> None:
        state = self.state
        target = state.router.registrar_for(realm_name)
        if target is None:
            state.reply(realm_name, txn_id, req, 403, "No registrar for this realm", now)
            return
        up_realm, registrar = target
        to = req.to
        aor_uri = to.uri
        aor = f"{aor_uri.user or ''}@{aor_uri.host}"
        contact_values = req.values("contact")
        star = len(contact_values) == 1 and contact_values[0].strip() == "*"
        contacts = req.contacts
        if not contacts and not star:
            # A query for bindings: we do not expose upstream bindings, answer with none.
            state.reply(realm_name, txn_id, req, 200, now=now, to_tag=state.token(5))
            return
        phone_contact = str(contacts[0].uri) if contacts else "*"
        binding = state.registrations.binding_for(aor, phone_contact)
        if binding is None:
            binding = state.registrations.create(aor, aor_uri.user or "", realm_name, phone_contact, source)
        binding.flow = source
        binding.upstream_cseq += 1
        realm = state.realms[up_realm]
        hidden = AddressScrubber(
            state.realms[realm_name].networks,
            frozenset({state.realms[realm_name].address, *(a for a in [host_address(source.host)] if a)}),
        )
        up_aor = rehost(aor_uri, hidden, registrar.host, None)
        ruri = rehost(req.request_uri, hidden, registrar.host, registrar.port if registrar.port != 5060 else None)
        transport = registrar.transport.value
        headers = [
            HeaderField("Via", state.via(realm, transport)),
            HeaderField("Max-Forwards", "70"),
            HeaderField("From", f"<{up_aor}>;tag={binding.upstream_from_tag}"),
            HeaderField("To", f"<{up_aor}>"),
            HeaderField("Call-ID", binding.upstream_call_id),
            HeaderField("CSeq", f"{binding.upstream_cseq} REGISTER"),
        ]
        up = Request("REGISTER", str(ruri), headers)
        if star:
            up.add("Contact", "*")
        else:
            expires = contacts[0].param("expires")
            our = state.contact(realm, transport, binding.token)
            up.add("Contact", our + (f";expires={expires}" if expires is not None else ""))
        for name in ("expires", "supported", "allow"):
            for value in req.get_all(name):
                up.add(name, value)
        self.translator.pass_credentials(req, up, state.realms[realm_name], hidden)
        up.add("User-Agent", state.user_agent(up_realm))
        state.counters.registrations_relayed += 1
        leg = Leg(
            index=1,
            realm=up_realm,
            transport=transport,
            call_id=binding.upstream_call_id,
            local_tag=binding.upstream_from_tag,
            local_party="",
            remote_party="",
            destination=PeerAddress(transport, registrar.host, registrar.port),
            large_over_tcp=realm.large_over_tcp(registrar),
        )
        state.send_request(leg, up, now, RegisterContext(binding, (realm_name, txn_id), req))

    def response(self, ctx: RegisterContext, resp: Response, now: float) -> None:
        if resp.status < 200:
            return
        state = self.state
        binding = ctx.binding
        realm, txn = ctx.peer
        out = make_response(ctx.peer_request, resp.status, resp.reason, to_tag=state.token(5))
        if 200 <= resp.status < 300:
            granted = _granted_expires(resp, binding.token)
            if granted <= 0 or binding.contact_uri == "*":
                state.registrations.remove(binding)
                state.log("info", "registration.removed", aor=binding.aor)
            else:
                state.registrations.activate(binding, now + granted)
                out.add("Contact", f"<{binding.contact_uri}>;expires={granted}")
                state.log("info", "registration.ok", aor=binding.aor, expires=granted, token=binding.token)
        else:
            for name in ("www-authenticate", "proxy-authenticate", "min-expires", "retry-after"):
                for value in resp.get_all(name):
                    out.add(name, value)
        out.add("Server", state.user_agent(realm))
        state.respond(realm, txn, out, now)

    def failed(self, ctx: RegisterContext, status: int, extra: list[tuple[str, str]] | None, now: float) -> None:
        """The registrar did not answer (408) or could not be reached (503): the phone is told."""
        self.state.reply(ctx.peer[0], ctx.peer[1], ctx.peer_request, status, now=now, extra=extra)


def _granted_expires(resp: Response, token: str) -> int:
    for contact in resp.contacts:
        if contact.uri.user == token:
            value = contact.param("expires")
            if value is not None and value.isdigit():
                return int(value)
    header = resp.get("expires")
    if header is not None and header.strip().isdigit():
        return int(header.strip())
    return 3600 if resp.contacts else 0
