"""The B2BUA: SIP events in, `Output`s out, deterministic (time is passed in).

Each realm has its own transaction layer. A call is two legs (`sbc.b2bua.call`); every message a leg
sees is built from that leg's own dialog state, so Call-IDs, tags, branches, Via, Record-Route, Route
and Contact of one side never reach the other (topology hiding is not an option that can be off).
Headers that may cross are listed by `sbc.policy.topology`; header rules run last on each message.

`Core` is the dispatcher: it takes the inputs, screens requests (loops, Max-Forwards, Require),
and hands each event to the part that handles it, each in its own module on the shared `CoreState`:
new calls and their INVITE transactions (`invite`), requests inside dialogs (`in_dialog`), REGISTER
(`register_relay`), trunk keepalives (`trunk_probes`), with `translation` building one leg's message
from the other's and `reports` saying what became of calls.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from typing import assert_never

from dataplane.api import Dataplane
from sbc.b2bua.call import Call, Leg
from sbc.b2bua.contexts import (
    ByeContext,
    ClientContext,
    InDialogContext,
    InviteContext,
    KeepaliveContext,
    RegisterContext,
    ServerContext,
    call_of_context,
)
from sbc.b2bua.in_dialog import InDialogRequests
from sbc.b2bua.invite import InviteHandling, caller_status
from sbc.b2bua.keepalive import TrunkMonitor
from sbc.b2bua.loops import has_looped
from sbc.b2bua.media import MediaSessions
from sbc.b2bua.outputs import Output
from sbc.b2bua.reasons import reason, warning
from sbc.b2bua.register_relay import RegisterRelay
from sbc.b2bua.registrations import RegistrationTable
from sbc.b2bua.reports import Counters, call_snapshot
from sbc.b2bua.routing import RouteDecision
from sbc.b2bua.state import CoreState, DialogKey
from sbc.b2bua.translation import SDP_TYPE, LegTranslator
from sbc.b2bua.trunk_probes import TrunkProbes
from sbc.config.model import Realm, SbcConfig
from sbc.sip import transaction as tx
from sbc.sip.errors import RemoteProtocolError, SipProtocolError
from sbc.sip.message import Request, Response, make_response, parse_datagram, parse_head, split_head
from sbc.sip.transaction import PeerAddress, TransactionLayer

__all__ = ["Core", "RouteDecision", "caller_status"]

SUPPORTED_EXTENSIONS = frozenset({"100rel", "timer", "replaces", "norefersub", "path", "outbound", "gruu"})
ALLOWED_METHODS = "INVITE, ACK, CANCEL, BYE, OPTIONS, PRACK, UPDATE, INFO, REFER, NOTIFY, MESSAGE, REGISTER"
MEDIA_CHECK_INTERVAL_S = 2.0
# Requests that only exist inside a dialog: without a To tag they match nothing (RFC 3261 §12.2.2).
DIALOG_ONLY_METHODS = frozenset({"BYE", "PRACK", "UPDATE", "INFO", "NOTIFY", "REFER"})


class Core:
    def __init__(
        self,
        config: SbcConfig,
        dataplane: Dataplane,
        *,
        token: Callable[[int], str] = secrets.token_hex,
    ) -> None:
        """`token(n)` returns 2n hex digits: tags, Call-IDs, branches and SDP session ids come from it."""
        self.state = CoreState(config, dataplane, token)
        self.translator = LegTranslator(self.state)
        self.in_dialog = InDialogRequests(self.state, self.translator)
        self.invites = InviteHandling(self.state, self.translator, self.in_dialog)
        self.register_relay = RegisterRelay(self.state, self.translator)
        self.trunk_probes = TrunkProbes(self.state)
        self._next_media_check = 0.0
        # Told of the call each transaction-layer event belongs to, before it is handled (the shell's
        # dialog state file, sbc.dialog_state); None: nobody.
        self.call_observer: Callable[[Call], None] | None = None

    def reconfigure(self, config: SbcConfig) -> None:
        """Switch to `config` (its restart-bound parts equal to the running ones, see
        `sbc.config.changes.live_part`). Live calls keep their legs, dialogs and anchors; routes,
        header rules and policy of the new config apply from the next message on."""
        self.state.configure(config)

    # ---- the shared state, for the shell, the control API and tests --------------------------------
    @property
    def config(self) -> SbcConfig:
        return self.state.config

    @property
    def realms(self) -> dict[str, Realm]:
        return self.state.realms

    @property
    def layers(self) -> dict[str, TransactionLayer]:
        return self.state.layers

    @property
    def media(self) -> MediaSessions:
        return self.state.media

    @property
    def trunks(self) -> TrunkMonitor:
        return self.state.trunks

    @property
    def registrations(self) -> RegistrationTable:
        return self.state.registrations

    @property
    def calls(self) -> dict[str, Call]:
        return self.state.calls

    @property
    def dialogs(self) -> dict[DialogKey, tuple[Call, Leg]]:
        return self.state.dialogs

    @property
    def client_ctx(self) -> dict[tuple[str, str], ClientContext]:
        return self.state.client_ctx

    @property
    def server_ctx(self) -> dict[tuple[str, str], ServerContext]:
        return self.state.server_ctx

    @property
    def counters(self) -> Counters:
        return self.state.counters

    # ---- entry points ----------------------------------------------------------------------------
    def datagram_received(self, realm: str, data: bytes, source: PeerAddress, now: float) -> list[Output]:
        self.state.counters.received += 1
        try:
            msg = parse_datagram(data)
        except RemoteProtocolError as exc:
            self._answer_malformed(realm, data, source, exc)
            return self.state.flush()
        return self.message_received(realm, msg, source, now)

    def stream_error_received(
        self, realm: str, exc: RemoteProtocolError, data: bytes | None, source: PeerAddress, now: float
    ) -> list[Output]:
        """A stream transport could not parse a message: `data` is its bytes when it framed (answer it
        like a bad datagram), None when the stream itself broke (the transport closes it)."""
        self.state.counters.received += 1
        if data is not None:
            self._answer_malformed(realm, data, source, exc)
        else:
            self.state.counters.malformed_dropped += 1
            self.state.log("info", "sip.stream_broken", realm=realm, reason=exc.reason, source=str(source))
        return self.state.flush()

    def message_received(self, realm: str, msg: Request | Response, source: PeerAddress, now: float) -> list[Output]:
        state = self.state
        if isinstance(msg, Request):
            state.counters.in_requests += 1
        else:
            state.counters.in_responses += 1
        try:
            events, commands = state.layers[realm].receive(msg, source, now)
            state.transmit(realm, commands)
            for event in events:
                self._handle_event(realm, event, now)
        except SipProtocolError as exc:
            state.log("warning", "sip.rejected", reason=exc.reason, realm=realm)
        return state.flush()

    def transport_failed(self, realm: str, txn_id: str, now: float) -> list[Output]:
        """The shell could not send a message of `txn_id` (TCP/TLS connection refused, name not found):
        the transaction ends now instead of timing out (RFC 3261 §8.1.3.1: as if it got 503)."""
        events, commands = self.state.layers[realm].transport_failed(txn_id, now)
        self.state.transmit(realm, commands)
        for event in events:
            self._handle_event(realm, event, now)
        return self.state.flush()

    def tick(self, now: float) -> list[Output]:
        state = self.state
        for realm, layer in state.layers.items():
            events, commands = layer.tick(now)
            state.transmit(realm, commands)
            for event in events:
                self._handle_event(realm, event, now)
        self.trunk_probes.send_due(now)
        if now >= self._next_media_check:
            self._next_media_check = now + MEDIA_CHECK_INTERVAL_S
            self.in_dialog.check_calls(now)
        for binding in state.registrations.expire(now):
            state.log("info", "registration.expired", aor=binding.aor)
        return state.flush()

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (layer.next_deadline() for layer in self.state.layers.values()) if d is not None]
        deadlines.append(self._next_media_check)
        trunk_deadline = self.state.trunks.next_deadline()
        if trunk_deadline is not None:
            deadlines.append(trunk_deadline)
        return min(deadlines)

    # ---- calls that outlive a process (sbc.dialog_state) -------------------------------------------
    def live_calls(self) -> list[Call]:
        return list(self.state.calls.values())

    def find_call(self, call_ref: str) -> Call | None:
        return self.state.calls.get(call_ref)

    def adopt_calls(self, calls: Iterable[Call]) -> None:
        """Take over confirmed calls restored from a previous process: their dialogs answer again, their
        media (anchors already re-taken and programmed) is the core's to release."""
        state = self.state
        for call in calls:
            if call.call_ref in state.calls:
                raise ValueError(f"call {call.call_ref} is live already")
            state.calls[call.call_ref] = call
            for leg in call.legs:
                state.dialogs[(leg.realm, leg.call_id, leg.local_tag)] = (call, leg)
            state.media.adopt(call.media)

    # ---- read-only views for the control API -----------------------------------------------------
    def snapshot_calls(self, now: float) -> list[dict[str, object]]:
        return [call_snapshot(call, now, self.state.media.report(call.media)) for call in self.state.calls.values()]

    # ---- events ----------------------------------------------------------------------------------
    def _handle_event(self, realm: str, event: tx.Event, now: float) -> None:
        if self.call_observer is not None:
            call = self._call_of(realm, event)
            if call is not None:
                self.call_observer(call)
        match event:
            case tx.RequestReceived():
                self._on_request(realm, event.txn_id, event.request, event.source, now)
            case tx.ResponseReceived():
                self._on_response(realm, event.txn_id, event.response, now)
            case tx.AckReceived():
                self.invites.ack(realm, event.request, now)
            case tx.CancelReceived():
                self.invites.cancel(realm, event.txn_id, now)
            case tx.StrayResponse():
                self.invites.stray_response(realm, event.response)
            case tx.TransactionTimedOut():
                self._on_timeout(realm, event.txn_id, now)
            case tx.AckTimedOut():
                self.invites.ack_timeout(realm, event.txn_id, now)
            case tx.TransportError():
                self._on_timeout(realm, event.txn_id, now, unreachable=True)
            case tx.TransactionTerminated():
                self.state.client_ctx.pop((realm, event.txn_id), None)
                self.state.server_ctx.pop((realm, event.txn_id), None)
                self.state.moved_to_tcp.pop((realm, event.txn_id), None)
            case _:
                assert_never(event)

    def _call_of(self, realm: str, event: tx.Event) -> Call | None:
        """The call `event` belongs to, if any (for `call_observer`)."""
        state = self.state
        match event:
            case tx.RequestReceived() | tx.AckReceived():
                tag = event.request.to.tag
                found = state.dialogs.get((realm, event.request.call_id, tag)) if tag else None
                return found[0] if found is not None else None
            case tx.ResponseReceived() | tx.TransactionTimedOut() | tx.TransportError():
                ctx = state.client_ctx.get((realm, event.txn_id))
                return call_of_context(ctx) if ctx is not None else None
            case tx.CancelReceived() | tx.AckTimedOut():
                sctx = state.server_ctx.get((realm, event.txn_id))
                return sctx.call if sctx is not None else None
            case tx.StrayResponse() | tx.TransactionTerminated():
                return None
            case _:
                assert_never(event)

    def _on_request(self, realm: str, txn_id: str, req: Request, source: PeerAddress, now: float) -> None:
        state = self.state
        to_tag = req.to.tag
        # A request for a dialog the SBC holds belongs to that dialog even with our Via in it: through
        # a PBX that proxies the branch's own call back (the hairpin) the SBC holds both ends of one
        # dialog, and what one leg sends reaches the other. Anything else that still matches the
        # fingerprint of one of our branches came back unchanged: a loop (sbc.b2bua.loops).
        found = state.dialogs.get((realm, req.call_id, to_tag)) if to_tag else None
        if found is None and has_looped(req):
            state.counters.loops_detected += 1
            state.reply(realm, txn_id, req, 482, now=now)
            return
        mf = req.get("max-forwards")
        if mf is not None and int(mf) == 0 and req.method != "OPTIONS":
            state.reply(realm, txn_id, req, 483, now=now)
            return
        unsupported = [
            ext
            for value in req.values("require") + req.values("proxy-require")
            for ext in (v.strip() for v in value.split(","))
            if ext and ext not in SUPPORTED_EXTENSIONS
        ]
        if unsupported and req.method not in ("CANCEL", "ACK"):
            state.reply(realm, txn_id, req, 420, now=now, extra=[("Unsupported", ", ".join(unsupported))])
            return
        if to_tag:
            if found is None:
                state.reply(realm, txn_id, req, 481, now=now)
                return
            call, leg = found
            self.in_dialog.request(call, leg, txn_id, req, now)
            return
        if req.method == "INVITE":
            self.invites.new_call(realm, txn_id, req, source, now)
        elif req.method == "REGISTER":
            self.register_relay.request(realm, txn_id, req, source, now)
        elif req.method == "OPTIONS":
            state.counters.options_answered += 1
            state.reply(
                realm,
                txn_id,
                req,
                200,
                now=now,
                to_tag=state.token(5),
                extra=[
                    ("Allow", ALLOWED_METHODS),
                    ("Accept", SDP_TYPE),
                    ("Supported", ", ".join(sorted(SUPPORTED_EXTENSIONS))),
                ],
            )
        elif req.method in DIALOG_ONLY_METHODS:
            state.reply(realm, txn_id, req, 481, now=now)
        else:
            state.reply(realm, txn_id, req, 405, now=now, extra=[("Allow", ALLOWED_METHODS)])

    def _on_response(self, realm: str, txn_id: str, resp: Response, now: float) -> None:
        ctx = self.state.client_ctx.get((realm, txn_id))
        match ctx:
            case None | ByeContext():  # the answer to our own BYE needs nothing more
                pass
            case InviteContext():
                self.invites.response(ctx, resp, now)
            case InDialogContext():
                self.in_dialog.response(ctx, resp, now)
            case RegisterContext():
                self.register_relay.response(ctx, resp, now)
            case KeepaliveContext():
                self.trunk_probes.answered(realm, txn_id, resp.status, now)
            case _:
                assert_never(ctx)

    def _on_timeout(self, realm: str, txn_id: str, now: float, *, unreachable: bool = False) -> None:
        """A request of ours got no final answer: timed out (408 to whoever waits for it), or could not
        be sent at all (`unreachable`: 503 from the SBC itself, which cannot reach the far end)."""
        if unreachable and self.state.retry_over_udp(realm, txn_id, now):
            return
        ctx = self.state.client_ctx.pop((realm, txn_id), None)
        status = 503 if unreachable else 408
        why = "far end unreachable (transport error)" if unreachable else "no answer (transaction timeout)"
        extra = [warning(self.state.realm_host(realm), why)] if unreachable else None
        match ctx:
            case None | ByeContext():
                pass
            case KeepaliveContext():
                self.trunk_probes.failed(realm, txn_id, why, now)
            case RegisterContext():
                self.register_relay.failed(ctx, status, extra, now)
            case InviteContext():
                self.invites.failed(ctx, status, why, extra, now)
            case InDialogContext():
                self.in_dialog.failed(ctx, status, extra, now)
            case _:
                assert_never(ctx)

    # ---- what cannot be parsed -------------------------------------------------------------------
    def _answer_malformed(self, realm: str, data: bytes, source: PeerAddress, exc: RemoteProtocolError) -> None:
        """A request we cannot parse gets its 4xx when its routing headers are readable; else it is dropped."""
        state = self.state
        request = _salvage_request(data)
        if request is None:
            state.counters.malformed_dropped += 1
            state.log("info", "sip.malformed_dropped", realm=realm, reason=exc.reason, source=str(source))
            return
        response = make_response(request, exc.status_hint, reason(exc.status_hint))
        response.add(*warning(state.realm_host(realm), exc.reason))
        state.counters.malformed_answered += 1
        state.log("info", "sip.malformed_answered", realm=realm, status=exc.status_hint, reason=exc.reason)
        state.send_again(realm, response.serialize(), source)


def _salvage_request(data: bytes) -> Request | None:
    """Best-effort read of a malformed request's routing headers, to address a 4xx to it."""
    try:
        split = split_head(data)
        head = split.head if split is not None else data
        start, headers = parse_head(head, split.line_ending if split is not None else "\r\n")
    except (RemoteProtocolError, UnicodeError):
        return None
    parts = start.split(" ")
    if len(parts) < 2 or parts[0].startswith("SIP/") or parts[0] == "ACK":
        return None
    req = Request(parts[0], parts[1], headers)
    for name in ("via", "from", "to", "call-id", "cseq"):
        if not req.has(name):
            return None
    try:
        req.top_via  # noqa: B018 - must be readable to answer
    except RemoteProtocolError:
        return None
    return req
