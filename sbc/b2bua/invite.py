"""INVITE transactions of a call: a new call (routing, both legs, the callee's INVITE), the callee's
answers relayed to the caller, ACKs for 2xx on both legs, CANCEL, and the failures that end a call
before it is answered."""

from __future__ import annotations

from typing import assert_never

from sbc.b2bua.call import Call, CallState, Leg, PendingAck
from sbc.b2bua.contexts import InviteContext, ServerContext
from sbc.b2bua.in_dialog import InDialogRequests
from sbc.b2bua.loops import seal
from sbc.b2bua.reasons import warning
from sbc.b2bua.redirect import MAX_REDIRECTS, allowed_hosts, next_target, relayed_contacts
from sbc.b2bua.session_timer import SessionInterval, min_se, supports_timer
from sbc.b2bua.state import CoreState
from sbc.b2bua.translation import LegTranslator, display_safe, learn_remote, rehost
from sbc.config.model import RedirectPolicy
from sbc.sip.message import Request, Response
from sbc.sip.transaction import PeerAddress

__all__ = ["InviteHandling", "caller_status"]


def caller_status(status: int) -> int:
    """The final status the caller gets for the callee's failure `status`.

    A 3xx that is neither followed nor relayed (the realm's `redirects`, `_redirected`) would hand the
    caller the callee side's contacts: 480 instead. 503 from the far end says
    that server is unavailable; relayed as it is, it would make the phone fail over away from the
    SBC or stop using it for Retry-After seconds, for every call (RFC 3261 §16.7 item 6): 500.
    Everything else (4xx, other 5xx, 6xx) describes the call and is relayed unchanged."""
    if 300 <= status < 400:
        return 480
    if status == 503:
        return 500
    return status


class InviteHandling:
    def __init__(self, state: CoreState, translator: LegTranslator, in_dialog: InDialogRequests) -> None:
        self.state = state
        self.translator = translator
        self.in_dialog = in_dialog

    # ---- a new call ------------------------------------------------------------------------------
    def new_call(self, realm_name: str, txn_id: str, req: Request, source: PeerAddress, now: float) -> None:
        state = self.state
        if len(state.calls) >= state.config.max_calls:
            state.reply(realm_name, txn_id, req, 503, now=now, extra=[("Retry-After", "5")])
            return
        if state.refuse_brief_session(realm_name, txn_id, req, now):
            return
        decision = state.router.route(realm_name, req, state.registrations, now)
        if isinstance(decision, int):
            state.reply(realm_name, txn_id, req, decision, now=now)
            return
        state.counters.calls_total += 1
        state.counters.calls_in[realm_name] = state.counters.calls_in.get(realm_name, 0) + 1
        state.counters.calls_out[decision.to_realm] = state.counters.calls_out.get(decision.to_realm, 0) + 1
        a_realm = state.realms[realm_name]
        b_realm = state.realms[decision.to_realm]
        a_tag = state.token(5)
        store: dict[str, str] = {}
        # What the callee leg is built from: the INVITE as the caller realm's inbound rules leave it.
        inbound = self.translator.inbound_copy(realm_name, decision.route.name, store, req)
        to = req.to
        frm = req.from_
        contacts = req.contacts
        caller = Leg(
            index=0,
            realm=realm_name,
            transport=source.transport,
            call_id=req.call_id,
            local_tag=a_tag,
            local_party=str(to.with_tag(None)),
            remote_party=str(frm.with_tag(None)),
            destination=source,
            remote_tag=frm.tag,
            remote_target=str(contacts[0].uri) if contacts else str(frm.uri),
            route_set=req.values("record-route"),
            remote_cseq=req.cseq[0],
        )
        caller.contact = state.contact(a_realm, source.transport, caller.contact_user)
        b_transport = decision.destination.transport
        hidden_from = self.translator.scrubber(caller)
        b_frm, b_to_in = (inbound.from_, inbound.to) if inbound is not req else (frm, to)
        b_from = b_frm.with_tag(None).with_uri(rehost(b_frm.uri, hidden_from, str(b_realm.public_address), None))
        b_ruri = decision.request_uri
        b_to = b_to_in.with_tag(None).with_uri(rehost(b_to_in.uri, hidden_from, decision.destination.host, None))
        callee = Leg(
            index=1,
            realm=b_realm.name,
            transport=b_transport,
            call_id=state.token(12),
            local_tag=state.token(5),
            local_party=display_safe(b_from),
            remote_party=display_safe(b_to),
            destination=decision.destination,
            remote_target=b_ruri,
            local_cseq=1,
            large_over_tcp=decision.peer is not None and b_realm.large_over_tcp(decision.peer),
        )
        callee.contact = state.contact(b_realm, b_transport, callee.contact_user)
        call = Call(
            call_ref=state.token(6),
            legs=(caller, callee),
            route=decision.route.name,
            media=state.media.new_call(decision.route.media, realm_name, b_realm.name),
            created_at=now,
            initial_request=req,
            caller_invite_txn=txn_id,
            store=store,
        )
        state.calls[call.call_ref] = call
        state.dialogs[(caller.realm, caller.call_id, caller.local_tag)] = (call, caller)
        state.dialogs[(callee.realm, callee.call_id, callee.local_tag)] = (call, callee)
        state.server_ctx[(realm_name, txn_id)] = ServerContext(call, caller, req)
        invite = self.translator.build_request(call, callee, "INVITE", inbound, now, cseq=1)
        if invite is None:
            return
        mf = req.get("max-forwards")
        invite.set("Max-Forwards", str(int(mf) - 1 if mf is not None else 70))
        self._ask_session_timer(req, invite)
        state.log(
            "info",
            "call.start",
            call,
            route=call.route,
            from_realm=realm_name,
            to_realm=b_realm.name,
            destination=str(decision.destination),
        )
        call.callee_invite_txn = state.send_request(callee, invite, now, InviteContext(call, callee))

    def _ask_session_timer(self, caller_request: Request, invite: Request) -> None:
        """The callee leg asks for the caller's interval (at least our Min-SE) or our default one."""
        timers = self.state.config.timers
        asked = SessionInterval.of(caller_request)
        if asked is None:
            interval = SessionInterval(timers.session_expires_s)
        else:
            interval = SessionInterval(max(asked.seconds, timers.min_se_s), asked.refresher)
        invite.set("Session-Expires", interval.header())
        invite.set("Min-SE", str(max(min_se(caller_request) or 0, timers.min_se_s)))
        # No "Supported: timer" of our own: a callee that sees none must be the refresher (§9), and
        # the SBC never refreshes.

    def _session_answered(self, call: Call, answer: Response, out: Response, now: float) -> None:
        """Start the call's session timer from the callee's 2xx, or give the caller one (§8.2)."""
        interval = SessionInterval.of(answer)
        caller_invite = call.initial_request
        if interval is None and caller_invite is not None and supports_timer(caller_invite):
            asked = SessionInterval.of(caller_invite)
            if asked is not None:
                interval = SessionInterval(max(asked.seconds, self.state.config.timers.min_se_s), "uac")
                out.set("Session-Expires", interval.header())
                out.add("Require", "timer")
        if interval is not None:
            call.session_expires_s = interval.seconds
            call.session_refreshed_at = now

    # ---- the callee's answers --------------------------------------------------------------------
    def response(self, ctx: InviteContext, resp: Response, now: float) -> None:
        state = self.state
        call, callee = ctx.call, ctx.leg
        caller = call.caller
        assert call.initial_request is not None and call.caller_invite_txn is not None
        status = resp.status
        if status == 100:
            return
        if call.state in (CallState.ENDING, CallState.ENDED):
            if 200 <= status < 300:
                # The callee answered after the caller gave up: ACK and hang up that leg (§15).
                learn_remote(callee, resp)
                self._ack_2xx(call, callee, resp.cseq[0], None, now)
                self.in_dialog.send_bye(call, callee, now)
            return
        if call.state is CallState.CONFIRMED:
            # A 2xx retransmission (our ACK was lost) or a 2xx from another fork: ACK it again.
            if 200 <= status < 300:
                pending = call.pending_acks.get(callee.index)
                if pending is not None and pending.ack is not None:
                    state.send_again(callee.realm, pending.ack, pending.destination or callee.next_hop())
            return
        tag = resp.to.tag
        if tag and status < 300:
            learn_remote(callee, resp)
        relay = self.translator.relay_response
        if status < 200:
            if tag and call.state is CallState.TRYING:
                call.state = CallState.EARLY
            out = relay(call, callee, caller, call.initial_request, resp, now)
            if out is not None:
                state.respond(caller.realm, call.caller_invite_txn, out, now)
            return
        if status < 300:
            call.state = CallState.CONFIRMED
            call.answered_at = now
            call.final_status = status
            state.counters.calls_answered += 1
            call.pending_acks[1] = PendingAck(cseq=resp.cseq[0])
            out = relay(call, callee, caller, call.initial_request, resp, now)
            if out is not None:
                self._session_answered(call, resp, out, now)
                state.respond(caller.realm, call.caller_invite_txn, out, now)
                state.log("info", "call.answered", call, status=status)
            return
        if 300 <= status < 400 and self._redirected(call, callee, resp, now):
            return
        mapped = caller_status(status)
        call.final_status = mapped
        out = relay(call, callee, caller, call.initial_request, resp, now, status=mapped)
        if out is not None:
            if mapped != status:
                out.remove("Retry-After")  # it would tell the caller to back off from the SBC itself
                out.add(*warning(state.realm_host(caller.realm), f"far end answered {status}"))
            state.respond(caller.realm, call.caller_invite_txn, out, now)
        state.counters.calls_failed += 1
        state.end_call(call, now, f"callee answered {status}")

    # ---- 3xx (sbc.b2bua.redirect) -----------------------------------------------------------------
    def _redirected(self, call: Call, callee: Leg, resp: Response, now: float) -> bool:
        """Handle a 3xx per the callee realm's `redirects`; False: refused (the caller gets 480)."""
        policy = self.state.realms[callee.realm].redirects
        match policy:
            case RedirectPolicy.FOLLOW:
                return self._follow_redirect(call, callee, resp, now)
            case RedirectPolicy.RELAY:
                return self._relay_redirect(call, callee, resp, now)
            case RedirectPolicy.REFUSE:
                return False
            case _:
                assert_never(policy)

    def _follow_redirect(self, call: Call, callee: Leg, resp: Response, now: float) -> bool:
        """Try the next allowed contact as a new attempt on the same callee leg (RFC 3261 §8.1.3.4:
        same Call-ID and From tag, a new CSeq, no To tag), while the caller's INVITE stays open."""
        state = self.state
        caller = call.caller
        assert call.initial_request is not None and call.caller_invite_txn is not None
        realm = state.realms[callee.realm]
        route = next((r for r in state.config.routes if r.name == call.route), None)
        allowed = allowed_hosts((realm.peer, realm.registrar, route.target if route is not None else None))
        if not call.redirect_targets:
            call.redirect_targets.append(callee.remote_target)
        if len(call.redirect_targets) > MAX_REDIRECTS:
            state.log("info", "call.redirect_refused", call, status=resp.status, reason="too many redirects")
            return False
        target = next_target(resp, allowed, call.redirect_targets, callee.transport)
        if target is None:
            state.log("info", "call.redirect_refused", call, status=resp.status, reason="no allowed untried contact")
            return False
        call.redirect_targets.append(target.request_uri)
        callee.remote_tag = None
        callee.route_set = []
        callee.remote_target = target.request_uri
        callee.destination = target.destination
        callee.transport = target.destination.transport
        callee.contact = state.contact(realm, callee.transport, callee.contact_user)
        callee.scrubber = None
        callee.local_cseq += 1
        inbound = self.translator.inbound_copy(caller.realm, call.route, call.store, call.initial_request, call)
        invite = self.translator.build_request(call, callee, "INVITE", inbound, now, cseq=callee.local_cseq)
        if invite is None:
            return True  # the media policy refused the SDP and ended the call
        mf = call.initial_request.get("max-forwards")
        invite.set("Max-Forwards", str(int(mf) - 1 if mf is not None else 70))
        self._ask_session_timer(call.initial_request, invite)
        state.log("info", "call.redirected", call, status=resp.status, destination=str(target.destination))
        call.callee_invite_txn = state.send_request(callee, invite, now, InviteContext(call, callee))
        return True

    def _relay_redirect(self, call: Call, callee: Leg, resp: Response, now: float) -> bool:
        """Pass the 3xx on with contacts at the SBC's address on the caller's side."""
        state = self.state
        caller = call.caller
        assert call.initial_request is not None and call.caller_invite_txn is not None
        realm = state.realms[caller.realm]
        contacts = relayed_contacts(
            resp, str(realm.public_address), state.port(realm, caller.transport), caller.transport
        )
        if not contacts:
            return False
        out = self.translator.relay_response(call, callee, caller, call.initial_request, resp, now)
        if out is not None:
            for contact in contacts:
                out.add("Contact", contact)
            state.respond(caller.realm, call.caller_invite_txn, out, now)
        call.final_status = resp.status
        state.counters.calls_failed += 1
        state.end_call(call, now, f"callee redirected ({resp.status}), relayed")
        return True

    def failed(
        self, ctx: InviteContext, status: int, why: str, extra: list[tuple[str, str]] | None, now: float
    ) -> None:
        """The callee's INVITE got no answer (408) or could not be sent (503): the caller is told."""
        state = self.state
        call = ctx.call
        if call.state not in (CallState.TRYING, CallState.EARLY):
            return
        assert call.initial_request is not None and call.caller_invite_txn is not None
        state.reply(
            call.caller.realm,
            call.caller_invite_txn,
            call.initial_request,
            status,
            now=now,
            to_tag=call.caller.local_tag,
            extra=extra,
        )
        state.counters.calls_failed += 1
        call.final_status = status
        state.end_call(call, now, f"callee: {why}")

    # ---- ACK -------------------------------------------------------------------------------------
    def ack(self, realm: str, ack: Request, now: float) -> None:
        """The ACK for a 2xx we relayed to one leg: ACK the other leg's 2xx."""
        tag = ack.to.tag
        found = self.state.dialogs.get((realm, ack.call_id, tag or ""))
        if found is None:
            return
        call, leg = found
        other = call.other(leg)
        pending = call.pending_acks.get(other.index)
        if pending is None or pending.ack is not None:
            return
        self._ack_2xx(call, other, pending.cseq, ack, now)

    def _ack_2xx(self, call: Call, leg: Leg, cseq: int, source: Request | None, now: float) -> None:
        """Send (or re-send) the ACK for a 2xx on `leg`; the body comes from the other leg's ACK."""
        state = self.state
        pending = call.pending_acks.get(leg.index)
        if pending is not None and pending.ack is not None:
            state.send_again(leg.realm, pending.ack, pending.destination or leg.next_hop())
            return
        if source is not None:
            source = self.translator.inbound_rules(call, call.other(leg), source)
        ack = self.translator.build_request(call, leg, "ACK", source, now, cseq=cseq)
        if ack is None:
            return
        seal(ack)
        destination = state.transport_for(leg, ack, leg.next_hop())  # through the route set (§12.2.1.1)
        if pending is None:
            pending = PendingAck(cseq)
            call.pending_acks[leg.index] = pending
        pending.ack = ack.serialize()
        pending.destination = destination
        state.transmit(leg.realm, state.layers[leg.realm].send_ack_2xx(ack, destination))

    def stray_response(self, realm: str, resp: Response) -> None:
        """A 2xx retransmitted after its transaction ended: our ACK was lost, send it again."""
        if not 200 <= resp.status < 300:
            return
        found = self.state.dialogs.get((realm, resp.call_id, resp.from_.tag or ""))
        if found is None:
            return
        call, leg = found
        pending = call.pending_acks.get(leg.index)
        if pending is not None and pending.ack is not None and pending.cseq == resp.cseq[0]:
            self.state.send_again(leg.realm, pending.ack, pending.destination or leg.next_hop())

    def ack_timeout(self, realm: str, txn_id: str, now: float) -> None:
        """Our 2xx was never ACKed (§13.3.1.4): the dialog is confirmed, so end it with BYE on both legs.
        The INVITE server transaction may already be gone (Timer L ends it at the same instant and its
        context with it), so the call is also found by the caller's INVITE transaction."""
        sctx = self.state.server_ctx.get((realm, txn_id))
        call = sctx.call if sctx is not None else self._call_by_caller_invite(realm, txn_id)
        if call is not None and call.state is CallState.CONFIRMED:
            self.state.log("warning", "call.no_ack", call)
            self.in_dialog.hang_up(call, now, "no ACK for 2xx")

    def _call_by_caller_invite(self, realm: str, txn_id: str) -> Call | None:
        # Only when an ACK never came: rare, so a scan of the live calls costs nothing worth an index.
        for call in self.state.calls.values():
            if call.caller.realm == realm and call.caller_invite_txn == txn_id:
                return call
        return None

    # ---- CANCEL ----------------------------------------------------------------------------------
    def cancel(self, realm: str, invite_txn: str, now: float) -> None:
        state = self.state
        ctx = state.server_ctx.get((realm, invite_txn))
        if ctx is None:
            return
        call = ctx.call
        if ctx.leg is not call.caller or call.state not in (CallState.TRYING, CallState.EARLY):
            return
        state.reply(realm, invite_txn, ctx.request, 487, now=now, to_tag=call.caller.local_tag)
        state.counters.calls_cancelled += 1
        call.final_status = 487
        if call.callee_invite_txn is not None:
            state.transmit(call.callee.realm, state.layers[call.callee.realm].cancel(call.callee_invite_txn, now))
        state.log("info", "call.cancelled", call)
        state.end_call(call, now, "cancelled by caller", release_dialogs=False)
