"""Requests inside a confirmed or early dialog: relayed to the other leg (re-INVITE, UPDATE, PRACK,
INFO, REFER, NOTIFY...), BYE, session timer refreshes (RFC 4028), and the ends of calls nobody hung
up (session timer expiry, media timeout)."""

from __future__ import annotations

from sbc.b2bua.call import Call, CallState, Leg, PendingAck
from sbc.b2bua.contexts import ByeContext, InDialogContext, ServerContext
from sbc.b2bua.session_timer import SessionInterval, teardown_after
from sbc.b2bua.state import CoreState
from sbc.b2bua.transfer import notify_event, refer_relayed
from sbc.b2bua.translation import OFFERING_METHODS, TARGET_REFRESH, LegTranslator
from sbc.sip.message import Request, Response

__all__ = ["SESSION_EXPIRED_REASON", "InDialogRequests"]

SESSION_EXPIRED_REASON = 'SIP;cause=408;text="session timer expired"'


class InDialogRequests:
    def __init__(self, state: CoreState, translator: LegTranslator) -> None:
        self.state = state
        self.translator = translator

    def request(self, call: Call, leg: Leg, txn_id: str, req: Request, now: float) -> None:
        """`req` arrived on `leg`, in its dialog: answer it (BYE) or relay it to the other leg."""
        state = self.state
        cseq = req.cseq[0]
        if leg.remote_cseq >= 0 and cseq < leg.remote_cseq and req.method not in ("ACK", "CANCEL"):
            state.reply(leg.realm, txn_id, req, 500, "CSeq out of order", now)
            return
        leg.remote_cseq = max(leg.remote_cseq, cseq)
        if req.method == "BYE":
            state.reply(leg.realm, txn_id, req, 200, now=now)
            other = call.other(leg)
            state.log("info", "call.bye", call, from_leg="a" if leg.index == 0 else "b")
            if call.state is CallState.CONFIRMED or other.remote_tag:
                self.send_bye(call, other, now)
            state.end_call(call, now, f"BYE from {'caller' if leg.index == 0 else 'callee'}")
            return
        if call.state in (CallState.ENDING, CallState.ENDED):
            state.reply(leg.realm, txn_id, req, 481, now=now)
            return
        if req.method in ("INVITE", "UPDATE") and state.refuse_brief_session(leg.realm, txn_id, req, now):
            return
        if req.method == "INVITE":
            if call.reinvite_in_progress:
                state.reply(leg.realm, txn_id, req, 491, now=now)
                return
            call.reinvite_in_progress = True
        if req.method in TARGET_REFRESH:
            contacts = req.contacts
            if contacts:
                leg.remote_target = str(contacts[0].uri)
        other = call.other(leg)
        out = self.translator.build_request(call, other, req.method, self.translator.inbound_rules(call, leg, req), now)
        if out is None:
            return
        mf = req.get("max-forwards")
        if mf is not None:
            out.set("Max-Forwards", str(int(mf) - 1))  # 0 was refused with 483 on arrival
        if req.method in ("NOTIFY", "SUBSCRIBE") and call.refer_ids:
            event = out.get("event")
            if event is not None:  # RFC 3515 §2.4.6: the id is the REFER's CSeq on this leg
                out.set("Event", notify_event(call.refer_ids, leg.index, event))
        if req.method == "PRACK":
            rack = (req.get("rack") or "").split()
            if len(rack) == 3:
                # RFC 3262 §7.2: RSeq of the provisional (relayed unchanged) and CSeq of the INVITE on
                # the leg the PRACK goes to, which has its own CSeq space.
                out.set("RAck", f"{rack[0]} {other.invite_cseq} {rack[2]}")
        state.server_ctx[(leg.realm, txn_id)] = ServerContext(call, leg, req)
        context = InDialogContext(call, other, (leg.realm, txn_id), req, out.method, out.cseq[0])
        state.send_request(other, out, now, context)
        if req.method == "REFER":
            refer_relayed(call.refer_ids, other.index, out.cseq[0], req.cseq[0])

    def response(self, ctx: InDialogContext, resp: Response, now: float) -> None:
        """The answer to a relayed request: back to the leg that sent it."""
        call, leg = ctx.call, ctx.leg
        peer_realm, peer_txn = ctx.peer
        peer_leg = call.other(leg)
        if resp.status == 100:
            return
        if ctx.method == "INVITE" and resp.status >= 200:
            call.reinvite_in_progress = False
            if resp.status < 300:
                call.pending_acks[leg.index] = PendingAck(cseq=ctx.cseq)
        if ctx.method in OFFERING_METHODS and resp.status >= 300:
            self.state.media.offer_failed(call.media)  # the session stays as it was (RFC 3264 §8, RFC 6337)
        if ctx.method in ("INVITE", "UPDATE") and 200 <= resp.status < 300:
            # A refresh (RFC 4028 §10): its 2xx sets the new interval; none in the 2xx turns it off.
            interval = SessionInterval.of(resp)
            call.session_expires_s = interval.seconds if interval is not None else None
            call.session_refreshed_at = now
            contacts = resp.contacts
            if contacts:
                leg.remote_target = str(contacts[0].uri)
        out = self.translator.relay_response(call, leg, peer_leg, ctx.peer_request, resp, now)
        if out is not None:
            self.state.respond(peer_realm, peer_txn, out, now)
        if resp.status in (408, 481) and ctx.method != "BYE":
            # The dialog is gone on that side (RFC 5057 §5.1): end the call on both.
            self.send_bye(call, peer_leg, now)
            self.state.end_call(call, now, f"in-dialog {ctx.method} got {resp.status}")

    def failed(self, ctx: InDialogContext, status: int, extra: list[tuple[str, str]] | None, now: float) -> None:
        """A relayed request got no answer (408) or could not be sent (503): say so to its sender."""
        self.state.reply(ctx.peer[0], ctx.peer[1], ctx.peer_request, status, now=now, extra=extra)
        if ctx.method in OFFERING_METHODS:
            self.state.media.offer_failed(ctx.call.media)
        if ctx.method == "INVITE":
            ctx.call.reinvite_in_progress = False

    def send_bye(self, call: Call, leg: Leg, now: float, reason: str | None = None) -> None:
        """Our own BYE on `leg`; `reason` is an RFC 3326 Reason value saying why the SBC ended the call."""
        bye = self.translator.build_request(call, leg, "BYE", None, now)
        if bye is None:
            return
        if reason is not None:
            bye.add("Reason", reason)
        self.state.send_request(leg, bye, now, ByeContext(call, leg))

    def hang_up(self, call: Call, now: float, reason: str) -> None:
        """End a confirmed call from the SBC's side: BYE on both legs."""
        self.send_bye(call, call.caller, now)
        self.send_bye(call, call.callee, now)
        self.state.end_call(call, now, reason)

    # ---- calls nobody hung up --------------------------------------------------------------------
    def check_calls(self, now: float) -> None:
        """Session timers (RFC 4028 §10) and media timeouts end calls nobody hung up."""
        state = self.state
        for call in list(state.calls.values()):
            if call.state is not CallState.CONFIRMED:
                continue
            interval = call.session_expires_s
            if interval and now - call.session_refreshed_at >= teardown_after(interval):
                state.log("warning", "call.session_expired", call, session_expires_s=interval)
                for leg in call.legs:
                    self.send_bye(call, leg, now, reason=SESSION_EXPIRED_REASON)
                state.end_call(call, now, "session timer expired")
                continue
            if call.media.mode.value != "anchor" or call.answered_at is None:
                continue
            self._check_media(call, now)

    def _check_media(self, call: Call, now: float) -> None:
        """One-way audio is logged; a media timeout is logged and, by its realm's policy, ends the call."""
        assert call.answered_at is not None
        state = self.state
        timeouts = {leg.index: float(state.realms[leg.realm].media.timeout_s) for leg in call.legs}
        for finding in state.media.check(call.media, now, call.answered_at, timeouts):
            if finding.leg is None:
                state.log("warning", "media.one_way", call, stream=finding.stream, flow=finding.flow)
                continue
            leg = call.legs[finding.leg]
            state.log(
                "warning", "media.timeout", call, stream=finding.stream, leg="ab"[leg.index], idle_s=finding.idle_s
            )
            if state.realms[leg.realm].media.hangup_on_timeout and call.state is CallState.CONFIRMED:
                self.hang_up(call, now, f"media timeout ({'caller' if leg.index == 0 else 'callee'} side)")
                return
