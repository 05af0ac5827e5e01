"""The B2BUA: SIP events in, `Output`s out, deterministic (time is passed in).

Each realm has its own transaction layer. A call is two legs (`sbc.b2bua.call`); every message a leg
sees is built from that leg's own dialog state, so Call-IDs, tags, branches, Via, Record-Route, Route
and Contact of one side never reach the other (topology hiding is not an option that can be off).
Headers that may cross are listed by `sbc.policy.topology`; header rules run last on each message.
"""

from __future__ import annotations

import secrets
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from dataplane.api import Dataplane
from sbc import __version__
from sbc.b2bua.call import Call, CallState, Leg, PendingAck
from sbc.b2bua.keepalive import TrunkChanged, TrunkMonitor, options_probe
from sbc.b2bua.media import MediaError, MediaSessions
from sbc.b2bua.outputs import CallEnded, LogEvent, Output, Transmit
from sbc.b2bua.registrations import Binding, RegistrationTable
from sbc.b2bua.routing import RouteDecision, Router
from sbc.b2bua.session_timer import SessionInterval, min_se, supports_timer, teardown_after
from sbc.b2bua.transfer import DialogIds, MappedDialog, TargetRewriter
from sbc.config.model import Direction, Realm, SbcConfig
from sbc.policy.header_rules import HeaderRules, apply_rules
from sbc.policy.topology import AddressScrubber, HeaderPolicy
from sbc.sip import transaction as tx
from sbc.sip.errors import LocalProtocolError, RemoteProtocolError, SipProtocolError
from sbc.sip.message import HeaderField, Message, Request, Response, make_response, parse_datagram
from sbc.sip.transaction import PeerAddress, TimerConfig, TransactionLayer
from sbc.sip.uri import NameAddr, Uri, format_host, host_address

SUPPORTED_EXTENSIONS = frozenset({"100rel", "timer", "replaces", "norefersub", "path", "outbound", "gruu"})
ALLOWED_METHODS = "INVITE, ACK, CANCEL, BYE, OPTIONS, PRACK, UPDATE, INFO, REFER, NOTIFY, MESSAGE, REGISTER"
SDP_TYPE = "application/sdp"
SIPFRAG_TYPE = "message/sipfrag"
# Requests that refresh the remote target of a dialog (RFC 3261 §12.2, RFC 3311 §5.1).
TARGET_REFRESH = frozenset({"INVITE", "UPDATE", "NOTIFY", "SUBSCRIBE", "REFER"})
MEDIA_CHECK_INTERVAL_S = 2.0
BRANCH_PREFIX = "z9hG4bKsbc"
# Requests that only exist inside a dialog: without a To tag they match nothing (RFC 3261 §12.2.2).
DIALOG_ONLY_METHODS = frozenset({"BYE", "PRACK", "UPDATE", "INFO", "NOTIFY", "REFER"})
M = TypeVar("M", Request, Response)
_TRANSFER_HEADERS = frozenset({"refer-to", "referred-by", "replaces"})
# Digest credentials (RFC 3261 §22): they cross unchanged, see Core._pass_credentials.
CREDENTIAL_HEADERS = ("authorization", "proxy-authorization")
SESSION_EXPIRED_REASON = 'SIP;cause=408;text="session timer expired"'


@dataclass(slots=True)
class ClientContext:
    """Why we sent a request on some leg, and which server transaction waits for its answer."""

    purpose: str  # "invite", "in-dialog", "bye", "register"
    call: Call | None
    leg: Leg | None
    peer: tuple[str, str] | None = None  # (realm, server txn id) to relay the answer to
    method: str = ""
    cseq: int = 0
    binding: Binding | None = None
    peer_request: Request | None = None


@dataclass(slots=True)
class ServerContext:
    call: Call | None
    leg: Leg | None
    request: Request


@dataclass(slots=True)
class Counters:
    received: int = 0
    malformed_answered: int = 0
    malformed_dropped: int = 0
    calls_total: int = 0
    calls_answered: int = 0
    calls_failed: int = 0
    calls_cancelled: int = 0
    registrations_relayed: int = 0
    options_answered: int = 0
    loops_detected: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    calls_in: dict[str, int] = field(default_factory=dict)  # by the realm a call came from
    calls_out: dict[str, int] = field(default_factory=dict)  # by the realm it was placed into
    # RFC 4780 sipCommonSummaryStats: messages through the transaction layers, retransmissions included
    in_requests: int = 0
    in_responses: int = 0
    out_requests: int = 0
    out_responses: int = 0


class Core:
    def __init__(
        self,
        config: SbcConfig,
        dataplane: Dataplane,
        *,
        token: Callable[[int], str] = secrets.token_hex,
    ) -> None:
        self.token = token
        timers = TimerConfig(
            t1=config.timers.t1_ms / 1000, t2=config.timers.t2_ms / 1000, t4=config.timers.t4_ms / 1000
        )
        self.layers: dict[str, TransactionLayer] = {r.name: TransactionLayer(timers) for r in config.realms}
        self.media = MediaSessions(dataplane, config.realms)
        self.trunks = TrunkMonitor()
        self.reconfigure(config)
        self.registrations = RegistrationTable()
        self.calls: dict[str, Call] = {}
        self.dialogs: dict[tuple[str, str, str], tuple[Call, Leg]] = {}
        self.client_ctx: dict[tuple[str, str], ClientContext] = {}
        self.server_ctx: dict[tuple[str, str], ServerContext] = {}
        self.counters = Counters()
        self._out: list[Output] = []
        self._next_media_check = 0.0
        # Sees every transaction-layer event before it is handled (sbc.b2bua.persistence); None: nobody.
        self.observer: Callable[[str, tx.Event], None] | None = None

    def reconfigure(self, config: SbcConfig) -> None:
        """Switch to `config` (its restart-bound parts equal to the running ones, see
        `sbc.config.changes.live_part`). Live calls keep their legs, dialogs and anchors; routes,
        header rules and policy of the new config apply from the next message on."""
        self.config = config
        self.realms: dict[str, Realm] = {r.name: r for r in config.realms}
        self.header_policy = {r.name: HeaderPolicy.for_realm(r.pass_headers, r.strip_headers) for r in config.realms}
        self.router = Router(config)
        self.media.realms = dict(self.realms)
        self.trunks.configure(config.realms)

    # ---- entry points ----------------------------------------------------------------------------
    def datagram_received(self, realm: str, data: bytes, source: PeerAddress, now: float) -> list[Output]:
        self.counters.received += 1
        try:
            msg = parse_datagram(data)
        except RemoteProtocolError as exc:
            self._answer_malformed(realm, data, source, exc, now)
            return self._flush()
        return self.message_received(realm, msg, source, now)

    def stream_error_received(
        self, realm: str, exc: RemoteProtocolError, data: bytes | None, source: PeerAddress, now: float
    ) -> list[Output]:
        """A stream transport could not parse a message: `data` is its bytes when it framed (answer it
        like a bad datagram), None when the stream itself broke (the transport closes it)."""
        self.counters.received += 1
        if data is not None:
            self._answer_malformed(realm, data, source, exc, now)
        else:
            self.counters.malformed_dropped += 1
            self._log("info", "sip.stream_broken", realm=realm, reason=exc.reason, source=str(source))
        return self._flush()

    def message_received(self, realm: str, msg: Request | Response, source: PeerAddress, now: float) -> list[Output]:
        if isinstance(msg, Request):
            self.counters.in_requests += 1
        else:
            self.counters.in_responses += 1
        try:
            events, commands = self.layers[realm].receive(msg, source, now)
            self._transmit(realm, commands)
            for event in events:
                self._handle_event(realm, event, now)
        except SipProtocolError as exc:
            self._log("warning", "sip.rejected", reason=exc.reason, realm=realm)
        return self._flush()

    def transport_failed(self, realm: str, txn_id: str, now: float) -> list[Output]:
        """The shell could not send a message of `txn_id` (TCP/TLS connection refused, name not found):
        the transaction ends now instead of timing out (RFC 3261 §8.1.3.1: as if it got 503)."""
        events, commands = self.layers[realm].transport_failed(txn_id, now)
        self._transmit(realm, commands)
        for event in events:
            self._handle_event(realm, event, now)
        return self._flush()

    def tick(self, now: float) -> list[Output]:
        for realm, layer in self.layers.items():
            events, commands = layer.tick(now)
            self._transmit(realm, commands)
            for event in events:
                self._handle_event(realm, event, now)
        self._probe_trunks(now)
        if now >= self._next_media_check:
            self._next_media_check = now + MEDIA_CHECK_INTERVAL_S
            self._check_calls(now)
        for binding in self.registrations.expire(now):
            self._log("info", "registration.expired", aor=binding.aor)
        return self._flush()

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (layer.next_deadline() for layer in self.layers.values()) if d is not None]
        deadlines.append(self._next_media_check)
        trunk_deadline = self.trunks.next_deadline()
        if trunk_deadline is not None:
            deadlines.append(trunk_deadline)
        return min(deadlines)

    # ---- plumbing --------------------------------------------------------------------------------
    def _flush(self) -> list[Output]:
        out, self._out = self._out, []
        return out

    def _transmit(self, realm: str, commands: list[tx.Transmit]) -> None:
        for cmd in commands:
            if cmd.data.startswith(b"SIP/2.0 "):
                self.counters.out_responses += 1
            else:
                self.counters.out_requests += 1
            self._out.append(Transmit(realm, cmd.data, cmd.destination, cmd.txn_id))

    def _log(self, level: str, event: str, call: Call | None = None, **fields: object) -> None:
        if call is not None:
            fields.update(call.log_ids())
        self._out.append(LogEvent(level, event, fields))

    def _answer_malformed(
        self, realm: str, data: bytes, source: PeerAddress, exc: RemoteProtocolError, now: float
    ) -> None:
        """A request we cannot parse gets its 4xx when its routing headers are readable; else it is dropped."""
        request = _salvage_request(data)
        if request is None:
            self.counters.malformed_dropped += 1
            self._log("info", "sip.malformed_dropped", realm=realm, reason=exc.reason, source=str(source))
            return
        response = make_response(request, exc.status_hint, _reason(exc.status_hint))
        response.add("Warning", f'399 {self._realm_host(realm)} "{_quote(exc.reason)}"')
        self.counters.malformed_answered += 1
        self._log("info", "sip.malformed_answered", realm=realm, status=exc.status_hint, reason=exc.reason)
        self._out.append(Transmit(realm, response.serialize(), source))
        del now

    def _realm_host(self, realm: str) -> str:
        return format_host(str(self.realms[realm].public_address))

    def _port(self, realm: Realm, transport: str) -> int:
        for ls in realm.listeners:
            if ls.transport == transport:
                return ls.port
        return realm.listeners[0].port if realm.listeners else 5060

    def _via(self, realm: Realm, transport: str, request_uri: str = "") -> str:
        """Our Via. The branch carries a fingerprint of the Request-URI we sent, for loop detection."""
        branch = f"{BRANCH_PREFIX}{self.token(6)}.{_fingerprint(request_uri)}"
        return (
            f"SIP/2.0/{transport.upper()} {format_host(str(realm.public_address))}:{self._port(realm, transport)}"
            f";branch={branch};rport"
        )

    def _contact(self, realm: Realm, transport: str, user: str = "sbc") -> str:
        host = format_host(str(realm.public_address))
        tparam = "" if transport == "udp" else f";transport={transport}"
        return f"<sip:{user}@{host}:{self._port(realm, transport)}{tparam}>"

    def _respond(self, realm: str, txn_id: str, response: Response, now: float) -> None:
        self._count_status(response.status)
        # A 2xx to INVITE is retransmitted by us, the UAS core, until the ACK comes (§13.3.1.4).
        retransmit = 200 <= response.status < 300 and response.cseq[1] == "INVITE"
        try:
            commands = self.layers[realm].respond(txn_id, response, now, retransmit_2xx=retransmit)
        except LocalProtocolError as exc:
            # The transaction ended meanwhile (e.g. a late final after CANCEL): nothing to answer.
            self._log("debug", "sip.respond_skipped", realm=realm, reason=exc.reason)
            return
        self._transmit(realm, commands)

    def _count_status(self, status: int) -> None:
        self.counters.by_status[status] = self.counters.by_status.get(status, 0) + 1

    def _reply(
        self,
        realm: str,
        txn_id: str,
        request: Request,
        status: int,
        reason: str | None = None,
        now: float = 0.0,
        *,
        to_tag: str | None = None,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        response = make_response(request, status, reason or _reason(status), to_tag=to_tag)
        for name, value in extra or []:
            response.add(name, value)
        response.add("Server", self._user_agent(realm))
        self._respond(realm, txn_id, response, now)

    def _user_agent(self, realm: str) -> str:
        return self.realms[realm].user_agent or self.config.user_agent

    # ---- events ----------------------------------------------------------------------------------
    def _handle_event(self, realm: str, event: tx.Event, now: float) -> None:
        if self.observer is not None:
            self.observer(realm, event)
        if isinstance(event, tx.RequestReceived):
            self._on_request(realm, event.txn_id, event.request, event.source, now)
        elif isinstance(event, tx.ResponseReceived):
            self._on_response(realm, event.txn_id, event.response, now)
        elif isinstance(event, tx.AckReceived):
            self._on_ack(realm, event.request, now)
        elif isinstance(event, tx.CancelReceived):
            self._on_cancel(realm, event.txn_id, now)
        elif isinstance(event, tx.StrayResponse):
            self._on_stray_response(realm, event.response)
        elif isinstance(event, tx.TransactionTimedOut):
            self._on_timeout(realm, event.txn_id, now)
        elif isinstance(event, tx.AckTimedOut):
            self._on_ack_timeout(realm, event.txn_id, now)
        elif isinstance(event, tx.TransportError):
            self._on_timeout(realm, event.txn_id, now, unreachable=True)
        elif isinstance(event, tx.TransactionTerminated):
            self.client_ctx.pop((realm, event.txn_id), None)
            self.server_ctx.pop((realm, event.txn_id), None)

    def _on_request(self, realm: str, txn_id: str, req: Request, source: PeerAddress, now: float) -> None:
        if self._own_via(req):
            self.counters.loops_detected += 1
            self._reply(realm, txn_id, req, 482, now=now)
            return
        mf = req.get("max-forwards")
        if mf is not None and int(mf) == 0 and req.method != "OPTIONS":
            self._reply(realm, txn_id, req, 483, now=now)
            return
        unsupported = [
            ext
            for value in req.values("require") + req.values("proxy-require")
            for ext in (v.strip() for v in value.split(","))
            if ext and ext not in SUPPORTED_EXTENSIONS
        ]
        if unsupported and req.method not in ("CANCEL", "ACK"):
            self._reply(realm, txn_id, req, 420, now=now, extra=[("Unsupported", ", ".join(unsupported))])
            return
        to_tag = req.to.tag
        if to_tag:
            found = self.dialogs.get((realm, req.call_id, to_tag))
            if found is None:
                self._reply(realm, txn_id, req, 481, now=now)
                return
            call, leg = found
            self._in_dialog_request(call, leg, txn_id, req, now)
            return
        if req.method == "INVITE":
            self._new_call(realm, txn_id, req, source, now)
        elif req.method == "REGISTER":
            self._register(realm, txn_id, req, source, now)
        elif req.method == "OPTIONS":
            self.counters.options_answered += 1
            self._reply(
                realm,
                txn_id,
                req,
                200,
                now=now,
                to_tag=self.token(5),
                extra=[
                    ("Allow", ALLOWED_METHODS),
                    ("Accept", SDP_TYPE),
                    ("Supported", ", ".join(sorted(SUPPORTED_EXTENSIONS))),
                ],
            )
        elif req.method in DIALOG_ONLY_METHODS:
            self._reply(realm, txn_id, req, 481, now=now)
        else:
            self._reply(realm, txn_id, req, 405, now=now, extra=[("Allow", ALLOWED_METHODS)])

    def _own_via(self, req: Request) -> bool:
        """A request we sent came back unchanged: a loop (RFC 3261 §16.3 item 4). It carries one of our
        Vias whose branch fingerprint matches its Request-URI. A request that comes back to us with
        another Request-URI (a hairpin through a PBX or proxy) is a spiral, and legitimate."""
        if not any(BRANCH_PREFIX in line for line in req.get_all("via")):
            return False
        fingerprint = "." + _fingerprint(req.uri)
        for value in req.values("via"):
            start = value.find(BRANCH_PREFIX)
            if start < 0:
                continue
            branch = value[start:].split(";", 1)[0].split(",", 1)[0].strip()
            if branch.endswith(fingerprint):
                return True
        return False

    # ---- new calls -------------------------------------------------------------------------------
    def _new_call(self, realm_name: str, txn_id: str, req: Request, source: PeerAddress, now: float) -> None:
        if len(self.calls) >= self.config.max_calls:
            self._reply(realm_name, txn_id, req, 503, now=now, extra=[("Retry-After", "5")])
            return
        if self._session_too_brief(realm_name, txn_id, req, now):
            return
        decision = self.router.route(realm_name, req, self.registrations, now)
        if isinstance(decision, int):
            self._reply(realm_name, txn_id, req, decision, now=now)
            return
        self.counters.calls_total += 1
        self.counters.calls_in[realm_name] = self.counters.calls_in.get(realm_name, 0) + 1
        self.counters.calls_out[decision.to_realm] = self.counters.calls_out.get(decision.to_realm, 0) + 1
        a_realm = self.realms[realm_name]
        b_realm = self.realms[decision.to_realm]
        a_tag = self.token(5)
        store: dict[str, str] = {}
        # What the callee leg is built from: the INVITE as the caller realm's inbound rules leave it.
        inbound = self._inbound_copy(realm_name, decision.route.name, store, req)
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
            contact=self._contact(a_realm, source.transport),
        )
        b_transport = decision.destination.transport
        hidden_from = self._scrubber(caller)
        b_frm, b_to_in = (inbound.from_, inbound.to) if inbound is not req else (frm, to)
        b_from = b_frm.with_tag(None).with_uri(_rehost(b_frm.uri, hidden_from, str(b_realm.public_address), None))
        b_ruri = decision.request_uri
        b_to = b_to_in.with_tag(None).with_uri(_rehost(b_to_in.uri, hidden_from, decision.destination.host, None))
        callee = Leg(
            index=1,
            realm=b_realm.name,
            transport=b_transport,
            call_id=self.token(12),
            local_tag=self.token(5),
            local_party=_display_safe(b_from),
            remote_party=_display_safe(b_to),
            destination=decision.destination,
            remote_target=b_ruri,
            local_cseq=1,
            contact=self._contact(b_realm, b_transport),
        )
        call = Call(
            call_ref=self.token(6),
            legs=(caller, callee),
            route=decision.route.name,
            media=self.media.new_call(decision.route.media, realm_name, b_realm.name),
            created_at=now,
            initial_request=req,
            caller_invite_txn=txn_id,
            store=store,
        )
        self.calls[call.call_ref] = call
        self.dialogs[(caller.realm, caller.call_id, caller.local_tag)] = (call, caller)
        self.dialogs[(callee.realm, callee.call_id, callee.local_tag)] = (call, callee)
        self.server_ctx[(realm_name, txn_id)] = ServerContext(call, caller, req)
        invite = self._build_request(call, callee, "INVITE", inbound, now, cseq=1)
        if invite is None:
            return
        mf = req.get("max-forwards")
        invite.set("Max-Forwards", str(int(mf) - 1 if mf is not None else 70))
        self._ask_session_timer(req, invite)
        self._log(
            "info",
            "call.start",
            call,
            route=call.route,
            from_realm=realm_name,
            to_realm=b_realm.name,
            destination=str(decision.destination),
        )
        b_txn = self._send_request(call, callee, invite, now, purpose="invite", peer=(realm_name, txn_id))
        call.callee_invite_txn = b_txn

    # ---- session timers (RFC 4028, see sbc.b2bua.session_timer) ------------------------------------
    def _session_too_brief(self, realm: str, txn_id: str, req: Request, now: float) -> bool:
        """Refuse with 422 an interval below our Min-SE from a caller that can retry (§8.1)."""
        asked = SessionInterval.of(req)
        floor = self.config.timers.min_se_s
        if asked is None or asked.seconds >= floor or not supports_timer(req):
            return False
        self._reply(realm, txn_id, req, 422, now=now, extra=[("Min-SE", str(floor))])
        return True

    def _ask_session_timer(self, caller_request: Request, invite: Request) -> None:
        """The callee leg asks for the caller's interval (at least our Min-SE) or our default one."""
        timers = self.config.timers
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
                interval = SessionInterval(max(asked.seconds, self.config.timers.min_se_s), "uac")
                out.set("Session-Expires", interval.header())
                out.add("Require", "timer")
        if interval is not None:
            call.session_expires_s = interval.seconds
            call.session_refreshed_at = now

    def _scrubber(self, leg: Leg) -> AddressScrubber:
        """Addresses of a leg's side that must not appear on the other side."""
        if leg.scrubber is None:
            leg.scrubber = self._new_scrubber(leg)
        return leg.scrubber

    def _new_scrubber(self, leg: Leg) -> AddressScrubber:
        realm = self.realms[leg.realm]
        hidden = {realm.address, realm.public_address, realm.media.address}
        for host in (leg.destination.host, _uri_host(leg.remote_target)):
            addr = host_address(host) if host else None
            if addr is not None:
                hidden.add(addr)
        return AddressScrubber(realm.networks, frozenset(hidden))

    def _build_request(
        self,
        call: Call,
        leg: Leg,
        method: str,
        source: Request | None,
        now: float,
        *,
        cseq: int | None = None,
    ) -> Request | None:
        """A request on `leg` from its dialog state, carrying what may cross from `source` (other leg)."""
        realm = self.realms[leg.realm]
        if cseq is None:
            leg.local_cseq += 1
            cseq = leg.local_cseq
        headers = [
            HeaderField("Via", self._via(realm, leg.transport, leg.remote_target)),
            HeaderField("Max-Forwards", "70"),
            HeaderField("From", leg.local_header()),
            HeaderField("To", leg.remote_header()),
            HeaderField("Call-ID", leg.call_id),
            HeaderField("CSeq", f"{cseq} {method}"),
        ]
        headers.extend(HeaderField("Route", r) for r in leg.route_set)
        if method in ("INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"):
            headers.append(HeaderField("Contact", leg.contact))
        request = Request(method, leg.remote_target, headers)
        other = call.other(leg)
        if source is not None:
            self.header_policy[leg.realm].copy_headers(source, request)
            self._translate_transfer_headers(other, leg, request)
            if not self._carry_body(call, other, source, request):
                return None
        if source is not None:
            self._pass_credentials(source, request, self.realms[other.realm], self._scrubber(other))
        request.add("User-Agent", self._user_agent(leg.realm))
        if not request.has("content-length"):
            request.add("Content-Length", str(len(request.body)))
        self._scrubber(other).scrub_message(request, realm.public_address, skip=CREDENTIAL_HEADERS)
        self._outbound_rules(call, leg, request)
        return request

    def _pass_credentials(self, source: Request, target: Request, from_realm: Realm, hidden: AddressScrubber) -> None:
        """Copy digest credentials answering the far side's challenge (401/407), unchanged: one changed
        byte and they fail. The one inside address they may carry is the SBC's own in the sender's
        realm (the digest-uri of a phone that addresses the SBC by IP); credentials that name any
        other inside address are dropped, the far side challenges again and the phone sees it."""
        own = {from_realm.address, from_realm.public_address}
        for name in CREDENTIAL_HEADERS:
            for value in source.get_all(name):
                leaked = hidden.hidden_in(value) - own
                if leaked:
                    self._log("warning", "sip.credentials_dropped", realm=from_realm.name, header=name,
                              reason="they name an inside address", addresses=sorted(map(str, leaked)))  # fmt: skip
                    continue
                target.add(name, value)

    def _translate_transfer_headers(self, from_leg: Leg, to_leg: Leg, request: Request) -> None:
        """Refer-To, Referred-By and Replaces name the sender's side: say the same for the receiver's."""
        if not any(h.key in _TRANSFER_HEADERS for h in request.headers):
            return
        realm = self.realms[to_leg.realm]
        rewriter = TargetRewriter(
            self._scrubber(from_leg),
            str(realm.public_address),
            self._port(realm, to_leg.transport),
            lambda ids: self._other_leg_of(from_leg.realm, ids, to_leg.realm),
        )
        for h in list(request.headers):
            if h.key == "refer-to":
                h.value, h.raw = rewriter.refer_to(h.value), None
            elif h.key == "referred-by":
                h.value, h.raw = rewriter.referred_by(h.value), None
            elif h.key == "replaces":
                mapped = rewriter.replaces(h.value)
                if mapped is None:
                    request.headers.remove(h)
                else:
                    h.value, h.raw = mapped, None

    def _other_leg_of(self, realm: str, ids: DialogIds, target_realm: str) -> MappedDialog | None:
        """The dialog `ids` (as seen from `realm`) as its other leg knows it (RFC 3891 matching)."""
        found = self.dialogs.get((realm, ids.call_id, ids.to_tag))
        if found is None or found[1].remote_tag != ids.from_tag:
            return None
        call, leg = found
        other = call.other(leg)
        if other.remote_tag is None:
            return None
        mapped = DialogIds(other.call_id, other.remote_tag, other.local_tag, ids.early_only)
        return MappedDialog(mapped, other.remote_target if other.realm == target_realm else None)

    def _carry_body(self, call: Call, source_leg: Leg, source: Message, target: Message) -> bool:
        """Copy the body across, rewriting SDP through the media policy. False if the call was ended."""
        if not source.body:
            return True
        ctype = (source.get("content-type") or "").split(";")[0].strip().lower()
        if ctype == SDP_TYPE:
            try:
                target.body = self.media.process(call.media, source_leg.index, source.body)
            except MediaError as exc:
                self._log("warning", "media.rejected", call, reason=str(exc), status=exc.status)
                self._fail_call(call, exc.status, str(exc))
                return False
        elif ctype == SIPFRAG_TYPE:
            # A fragment of a SIP message (RFC 3420; the progress report in a NOTIFY for a REFER):
            # its headers name the sender's side like any header does.
            text = source.body.decode("utf-8", "surrogateescape")
            replacement = self.realms[call.other(source_leg).realm].public_address
            target.body = self._scrubber(source_leg).scrub_text(text, replacement).encode("utf-8", "surrogateescape")
        else:
            target.body = source.body
        if not target.has("content-type"):
            target.add("Content-Type", source.get("content-type") or "application/octet-stream")
        return True

    def _inbound_rules(self, call: Call, from_leg: Leg, msg: M) -> M:
        """`msg` as the inbound rules of its realm leave it. They edit a copy: the original still
        answers its sender; the other leg's message is built from the copy (topology hiding after)."""
        return self._inbound_copy(from_leg.realm, call.route, call.store, msg, call)

    def _inbound_copy(self, realm: str, route: str, store: dict[str, str], msg: M, call: Call | None = None) -> M:
        if not self.config.header_rules or not self._rules_bound(realm, route, Direction.INBOUND):
            return msg
        edited = msg.copy()
        applied = apply_rules(
            self.config.header_rules, edited, realm=realm, route=route, direction=Direction.INBOUND, store=store
        )
        if applied:
            self._log("debug", "header_rules.applied", call, realm=realm, direction="inbound", actions=applied)
        return edited

    def _outbound_rules(self, call: Call, to_leg: Leg, msg: Message) -> None:
        """The last edit of a message built for `to_leg`, after topology hiding, before it is sent."""
        if self.config.header_rules:
            self._run_rules(call, to_leg.realm, Direction.OUTBOUND, msg)

    def _rules_bound(self, realm: str, route: str, direction: Direction) -> bool:
        rules = self.config.header_rules
        if isinstance(rules, HeaderRules):
            return bool(rules.bound_to(realm, route, direction))
        return any(r.binds(realm, route, direction) for r in rules)

    def _run_rules(self, call: Call, realm: str, direction: Direction, msg: Message) -> None:
        applied = apply_rules(
            self.config.header_rules, msg, realm=realm, route=call.route, direction=direction, store=call.store
        )
        if applied:
            self._log("debug", "header_rules.applied", call, realm=realm, direction=direction.value, actions=applied)

    def _send_request(
        self,
        call: Call | None,
        leg: Leg,
        request: Request,
        now: float,
        *,
        purpose: str,
        peer: tuple[str, str] | None = None,
        binding: Binding | None = None,
        peer_request: Request | None = None,
    ) -> str:
        if request.method == "INVITE":
            leg.invite_cseq = request.cseq[0]
        txn_id, commands = self.layers[leg.realm].send_request(
            request, leg.destination, now, reliable=leg.transport != "udp"
        )
        self._transmit(leg.realm, commands)
        self.client_ctx[(leg.realm, txn_id)] = ClientContext(
            purpose=purpose,
            call=call,
            leg=leg,
            peer=peer,
            method=request.method,
            cseq=request.cseq[0],
            binding=binding,
            peer_request=peer_request,
        )
        return txn_id

    # ---- responses -------------------------------------------------------------------------------
    def _on_response(self, realm: str, txn_id: str, resp: Response, now: float) -> None:
        ctx = self.client_ctx.get((realm, txn_id))
        if ctx is None:
            return
        if ctx.purpose == "register":
            self._register_response(ctx, resp, now)
            return
        if ctx.purpose == "keepalive":
            if resp.status >= 200:
                self._trunk_changed(self.trunks.answered(realm, txn_id, resp.status, now))
            return
        call, leg = ctx.call, ctx.leg
        if call is None or leg is None:
            return
        if ctx.purpose == "invite":
            self._invite_response(call, leg, resp, now)
        elif ctx.purpose == "in-dialog":
            self._in_dialog_response(call, leg, ctx, resp, now)
        # "bye": the answer to our own BYE needs nothing more.

    def _invite_response(self, call: Call, callee: Leg, resp: Response, now: float) -> None:
        caller = call.caller
        assert call.initial_request is not None and call.caller_invite_txn is not None
        status = resp.status
        if status == 100:
            return
        if call.state in (CallState.ENDING, CallState.ENDED):
            if 200 <= status < 300:
                # The callee answered after the caller gave up: ACK and hang up that leg (§15).
                self._learn_remote(callee, resp)
                self._ack_2xx(call, callee, resp.cseq[0], None, now)
                self._send_bye(call, callee, now)
            return
        if call.state is CallState.CONFIRMED:
            # A 2xx retransmission (our ACK was lost) or a 2xx from another fork: ACK it again.
            if 200 <= status < 300:
                pending = call.pending_acks.get(callee.index)
                if pending is not None and pending.ack is not None:
                    self._out.append(Transmit(callee.realm, pending.ack, callee.destination))
            return
        tag = resp.to.tag
        if tag and status < 300:
            self._learn_remote(callee, resp)
        if status < 200:
            if tag and call.state is CallState.TRYING:
                call.state = CallState.EARLY
            out = self._relay_response(call, callee, caller, call.initial_request, resp, now)
            if out is not None:
                self._respond(caller.realm, call.caller_invite_txn, out, now)
            return
        if status < 300:
            call.state = CallState.CONFIRMED
            call.answered_at = now
            call.final_status = status
            self.counters.calls_answered += 1
            call.pending_acks[1] = PendingAck(cseq=resp.cseq[0])
            out = self._relay_response(call, callee, caller, call.initial_request, resp, now)
            if out is not None:
                self._session_answered(call, resp, out, now)
                self._respond(caller.realm, call.caller_invite_txn, out, now)
                self._log("info", "call.answered", call, status=status)
            return
        mapped = caller_status(status)
        call.final_status = mapped
        out = self._relay_response(call, callee, caller, call.initial_request, resp, now, status=mapped)
        if out is not None:
            if mapped != status:
                out.remove("Retry-After")  # it would tell the caller to back off from the SBC itself
                out.add("Warning", f'399 {self._realm_host(caller.realm)} "far end answered {status}"')
            self._respond(caller.realm, call.caller_invite_txn, out, now)
        self.counters.calls_failed += 1
        self._end_call(call, now, f"callee answered {status}")

    def _learn_remote(self, leg: Leg, resp: Response) -> None:
        tag = resp.to.tag
        if tag and tag != leg.remote_tag:
            leg.remote_tag = tag
        contacts = resp.contacts
        if contacts:
            target = str(contacts[0].uri)
            if target != leg.remote_target:
                leg.remote_target = target
                leg.scrubber = None  # the hidden set includes the remote target's host
        rr = resp.values("record-route")
        if rr:
            leg.route_set = list(reversed(rr))

    def _relay_response(
        self,
        call: Call,
        from_leg: Leg,
        to_leg: Leg,
        to_request: Request,
        resp: Response,
        now: float,
        *,
        status: int | None = None,
    ) -> Response | None:
        """The response for `to_leg`'s request, built from its own request plus what may cross."""
        resp = self._inbound_rules(call, from_leg, resp)
        code = status if status is not None else resp.status
        reason = resp.reason if status is None or status == resp.status else _reason(code)
        out = make_response(to_request, code, reason, to_tag=to_leg.local_tag if to_leg.index == 0 else None)
        if code < 300 and code != 100 and to_request.method in TARGET_REFRESH:
            out.add("Contact", to_leg.contact)
        if 180 <= code < 200 and resp.get("rseq") is not None:
            out.add("RSeq", resp.get("rseq") or "")
        for name in ("www-authenticate", "proxy-authenticate") if code in (401, 407) else ():
            for value in resp.get_all(name):
                out.add(name, value)
        self.header_policy[to_leg.realm].copy_headers(resp, out)
        if not self._carry_body(call, from_leg, resp, out):
            return None
        out.add("Server", self._user_agent(to_leg.realm))
        self._scrubber(from_leg).scrub_message(
            out, self.realms[to_leg.realm].public_address, skip=("via", "from", "to", "call-id", "cseq")
        )
        self._outbound_rules(call, to_leg, out)
        return out

    # ---- ACK -------------------------------------------------------------------------------------
    def _on_ack(self, realm: str, ack: Request, now: float) -> None:
        tag = ack.to.tag
        found = self.dialogs.get((realm, ack.call_id, tag or ""))
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
        pending = call.pending_acks.get(leg.index)
        if pending is not None and pending.ack is not None:
            self._out.append(Transmit(leg.realm, pending.ack, self._dialog_destination(leg)))
            return
        if source is not None:
            source = self._inbound_rules(call, call.other(leg), source)
        ack = self._build_request(call, leg, "ACK", source, now, cseq=cseq)
        if ack is None:
            return
        data = ack.serialize()
        if pending is None:
            pending = PendingAck(cseq)
            call.pending_acks[leg.index] = pending
        pending.ack = data
        self._transmit(leg.realm, self.layers[leg.realm].send_ack_2xx(ack, self._dialog_destination(leg)))

    def _dialog_destination(self, leg: Leg) -> PeerAddress:
        return leg.destination

    def _on_stray_response(self, realm: str, resp: Response) -> None:
        """A 2xx retransmitted after its transaction ended: our ACK was lost, send it again."""
        if not 200 <= resp.status < 300:
            return
        found = self.dialogs.get((realm, resp.call_id, resp.from_.tag or ""))
        if found is None:
            return
        call, leg = found
        pending = call.pending_acks.get(leg.index)
        if pending is not None and pending.ack is not None and pending.cseq == resp.cseq[0]:
            self._out.append(Transmit(leg.realm, pending.ack, leg.destination))

    # ---- CANCEL, BYE, in-dialog --------------------------------------------------------------------
    def _on_cancel(self, realm: str, invite_txn: str, now: float) -> None:
        ctx = self.server_ctx.get((realm, invite_txn))
        if ctx is None or ctx.call is None:
            return
        call = ctx.call
        if ctx.leg is not call.caller or call.state not in (CallState.TRYING, CallState.EARLY):
            return
        self._reply(realm, invite_txn, ctx.request, 487, now=now, to_tag=call.caller.local_tag)
        self.counters.calls_cancelled += 1
        call.final_status = 487
        if call.callee_invite_txn is not None:
            self._transmit(call.callee.realm, self.layers[call.callee.realm].cancel(call.callee_invite_txn, now))
        self._log("info", "call.cancelled", call)
        self._end_call(call, now, "cancelled by caller", release_dialogs=False)

    def _in_dialog_request(self, call: Call, leg: Leg, txn_id: str, req: Request, now: float) -> None:
        cseq = req.cseq[0]
        if leg.remote_cseq >= 0 and cseq < leg.remote_cseq and req.method not in ("ACK", "CANCEL"):
            self._reply(leg.realm, txn_id, req, 500, "CSeq out of order", now)
            return
        leg.remote_cseq = max(leg.remote_cseq, cseq)
        if req.method == "BYE":
            self._reply(leg.realm, txn_id, req, 200, now=now)
            other = call.other(leg)
            self._log("info", "call.bye", call, from_leg="a" if leg.index == 0 else "b")
            if call.state is CallState.CONFIRMED or other.remote_tag:
                self._send_bye(call, other, now)
            self._end_call(call, now, f"BYE from {'caller' if leg.index == 0 else 'callee'}")
            return
        if call.state in (CallState.ENDING, CallState.ENDED):
            self._reply(leg.realm, txn_id, req, 481, now=now)
            return
        if req.method in ("INVITE", "UPDATE") and self._session_too_brief(leg.realm, txn_id, req, now):
            return
        if req.method == "INVITE":
            if call.reinvite_in_progress:
                self._reply(leg.realm, txn_id, req, 491, now=now)
                return
            call.reinvite_in_progress = True
        if req.method in TARGET_REFRESH:
            contacts = req.contacts
            if contacts:
                leg.remote_target = str(contacts[0].uri)
        other = call.other(leg)
        out = self._build_request(call, other, req.method, self._inbound_rules(call, leg, req), now)
        if out is None:
            return
        mf = req.get("max-forwards")
        if mf is not None:
            out.set("Max-Forwards", str(int(mf) - 1))  # 0 was refused with 483 on arrival
        if req.method == "PRACK":
            rack = (req.get("rack") or "").split()
            if len(rack) == 3:
                # RFC 3262 §7.2: RSeq of the provisional (relayed unchanged) and CSeq of the INVITE on
                # the leg the PRACK goes to, which has its own CSeq space.
                out.set("RAck", f"{rack[0]} {other.invite_cseq} {rack[2]}")
        self.server_ctx[(leg.realm, txn_id)] = ServerContext(call, leg, req)
        self._send_request(call, other, out, now, purpose="in-dialog", peer=(leg.realm, txn_id), peer_request=req)

    def _in_dialog_response(self, call: Call, leg: Leg, ctx: ClientContext, resp: Response, now: float) -> None:
        if ctx.peer is None or ctx.peer_request is None:
            return
        peer_realm, peer_txn = ctx.peer
        peer_leg = call.other(leg)
        if resp.status == 100:
            return
        if ctx.method == "INVITE" and resp.status >= 200:
            call.reinvite_in_progress = False
            if resp.status < 300:
                call.pending_acks[leg.index] = PendingAck(cseq=ctx.cseq)
        if ctx.method in ("INVITE", "UPDATE") and 200 <= resp.status < 300:
            # A refresh (RFC 4028 §10): its 2xx sets the new interval; none in the 2xx turns it off.
            interval = SessionInterval.of(resp)
            call.session_expires_s = interval.seconds if interval is not None else None
            call.session_refreshed_at = now
            contacts = resp.contacts
            if contacts:
                leg.remote_target = str(contacts[0].uri)
        out = self._relay_response(call, leg, peer_leg, ctx.peer_request, resp, now)
        if out is not None:
            self._respond(peer_realm, peer_txn, out, now)
        if resp.status in (408, 481) and ctx.method != "BYE":
            # The dialog is gone on that side (RFC 5057 §5.1): end the call on both.
            self._send_bye(call, peer_leg, now)
            self._end_call(call, now, f"in-dialog {ctx.method} got {resp.status}")

    def _send_bye(self, call: Call, leg: Leg, now: float, reason: str | None = None) -> None:
        """Our own BYE on `leg`; `reason` is an RFC 3326 Reason value saying why the SBC ended the call."""
        bye = self._build_request(call, leg, "BYE", None, now)
        if bye is None:
            return
        if reason is not None:
            bye.add("Reason", reason)
        self._send_request(call, leg, bye, now, purpose="bye")

    def _on_ack_timeout(self, realm: str, txn_id: str, now: float) -> None:
        """Our 2xx was never ACKed (§13.3.1.4): the dialog is confirmed, so end it with BYE on both legs."""
        sctx = self.server_ctx.get((realm, txn_id))
        if sctx is None or sctx.call is None:
            return
        call = sctx.call
        if call.state is CallState.CONFIRMED:
            self._log("warning", "call.no_ack", call)
            self._send_bye(call, call.caller, now)
            self._send_bye(call, call.callee, now)
            self._end_call(call, now, "no ACK for 2xx")

    def _on_timeout(self, realm: str, txn_id: str, now: float, *, unreachable: bool = False) -> None:
        """A request of ours got no final answer: timed out (408 to whoever waits for it), or could not
        be sent at all (`unreachable`: 503 from the SBC itself, which cannot reach the far end)."""
        ctx = self.client_ctx.pop((realm, txn_id), None)
        if ctx is None:
            return
        status = 503 if unreachable else 408
        why = "far end unreachable (transport error)" if unreachable else "no answer (transaction timeout)"
        extra = [("Warning", f'399 {self._realm_host(realm)} "{why}"')] if unreachable else None
        if ctx.purpose == "keepalive":
            self._trunk_changed(self.trunks.failed(realm, txn_id, now, why))
            return
        if ctx.purpose == "register" and ctx.peer is not None and ctx.peer_request is not None:
            self._reply(ctx.peer[0], ctx.peer[1], ctx.peer_request, status, now=now, extra=extra)
            return
        call = ctx.call
        if call is None or ctx.leg is None:
            return
        if ctx.purpose == "invite" and call.state in (CallState.TRYING, CallState.EARLY):
            assert call.initial_request is not None and call.caller_invite_txn is not None
            self._reply(
                call.caller.realm,
                call.caller_invite_txn,
                call.initial_request,
                status,
                now=now,
                to_tag=call.caller.local_tag,
                extra=extra,
            )
            self.counters.calls_failed += 1
            call.final_status = status
            self._end_call(call, now, f"callee: {why}")
        elif ctx.purpose == "in-dialog" and ctx.peer is not None and ctx.peer_request is not None:
            self._reply(ctx.peer[0], ctx.peer[1], ctx.peer_request, status, now=now, extra=extra)
            if ctx.method == "INVITE":
                call.reinvite_in_progress = False

    def _fail_call(self, call: Call, status: int, reason: str) -> None:
        if call.state in (CallState.TRYING, CallState.EARLY) and call.caller_invite_txn and call.initial_request:
            self._reply(
                call.caller.realm,
                call.caller_invite_txn,
                call.initial_request,
                status,
                now=0.0,
                to_tag=call.caller.local_tag,
                extra=[("Warning", f'399 {self._realm_host(call.caller.realm)} "{_quote(reason)}"')],
            )
            call.final_status = status
            self.counters.calls_failed += 1
            self._end_call(call, 0.0, reason)

    def _end_call(self, call: Call, now: float, reason: str, *, release_dialogs: bool = True) -> None:
        if call.state is CallState.ENDED:
            return
        call.state = CallState.ENDED
        call.ended_at = now
        call.end_reason = reason
        streams = self.media.report(call.media)
        self.media.release(call.media)
        self.calls.pop(call.call_ref, None)
        # Dialog entries stay a little for retransmitted BYE/ACK; they are swept with the call record.
        if release_dialogs:
            for leg in call.legs:
                self.dialogs.pop((leg.realm, leg.call_id, leg.local_tag), None)
        else:
            # A cancelled call keeps its callee dialog so a late 2xx can be ACKed and hung up.
            self.dialogs.pop((call.caller.realm, call.caller.call_id, call.caller.local_tag), None)
        record: dict[str, object] = {
            **call.log_ids(),
            "route": call.route,
            "a_realm": call.caller.realm,
            "b_realm": call.callee.realm,
            "start": call.created_at,
            "answer": call.answered_at,
            "end": now,
            "duration_s": round(now - call.answered_at, 3) if call.answered_at is not None else 0.0,
            "status": call.final_status,
            "reason": reason,
            "media_mode": call.media.mode.value,
            "streams": streams,
        }
        self._out.append(CallEnded(record))
        self._log("info", "call.end", call, reason=reason, status=call.final_status)

    def _check_calls(self, now: float) -> None:
        """Session timers (RFC 4028 §10) and media timeouts end calls nobody hung up."""
        for call in list(self.calls.values()):
            if call.state is not CallState.CONFIRMED:
                continue
            interval = call.session_expires_s
            if interval and now - call.session_refreshed_at >= teardown_after(interval):
                self._log("warning", "call.session_expired", call, session_expires_s=interval)
                for leg in call.legs:
                    self._send_bye(call, leg, now, reason=SESSION_EXPIRED_REASON)
                self._end_call(call, now, "session timer expired")
                continue
            if call.media.mode.value != "anchor" or call.answered_at is None:
                continue
            self._check_media(call, now)

    def _check_media(self, call: Call, now: float) -> None:
        """One-way audio is logged; a media timeout is logged and, by its realm's policy, ends the call."""
        assert call.answered_at is not None
        timeouts = {leg.index: float(self.realms[leg.realm].media.timeout_s) for leg in call.legs}
        for finding in self.media.check(call.media, now, call.answered_at, timeouts):
            if finding.leg is None:
                self._log("warning", "media.one_way", call, stream=finding.stream, flow=finding.flow)
                continue
            leg = call.legs[finding.leg]
            self._log(
                "warning", "media.timeout", call, stream=finding.stream, leg="ab"[leg.index], idle_s=finding.idle_s
            )
            if self.realms[leg.realm].media.hangup_on_timeout and call.state is CallState.CONFIRMED:
                self._send_bye(call, call.caller, now)
                self._send_bye(call, call.callee, now)
                self._end_call(call, now, f"media timeout ({'caller' if leg.index == 0 else 'callee'} side)")
                return

    # ---- trunk keepalives (sbc.b2bua.keepalive) ----------------------------------------------------
    def _probe_trunks(self, now: float) -> None:
        for change in self.trunks.expire(now):
            self._trunk_changed(change)
        for trunk in self.trunks.due(now):
            realm = self.realms[trunk.name]
            transport = trunk.peer.transport.value
            probe = options_probe(
                trunk,
                via=self._via(realm, transport),
                local_host=self._realm_host(realm.name),
                call_id=self.token(10),
                tag=self.token(5),
                user_agent=self._user_agent(realm.name),
            )
            destination = PeerAddress(transport, trunk.peer.host, trunk.peer.port)
            txn_id, commands = self.layers[realm.name].send_request(probe, destination, now)
            self._transmit(realm.name, commands)
            self.client_ctx[(realm.name, txn_id)] = ClientContext("keepalive", None, None, method="OPTIONS", cseq=1)
            self.trunks.probe_sent(trunk, txn_id, now)

    def _trunk_changed(self, change: TrunkChanged | None) -> None:
        if change is not None:
            level = "warning" if change.state.value == "down" else "info"
            peer = self.trunks.trunks[change.trunk].address
            self._log(level, f"trunk.{change.state.value}", trunk=change.trunk, peer=peer, reason=change.reason)

    # ---- REGISTER relay --------------------------------------------------------------------------
    def _register(self, realm_name: str, txn_id: str, req: Request, source: PeerAddress, now: float) -> None:
        target = self.router.registrar_for(realm_name)
        if target is None:
            self._reply(realm_name, txn_id, req, 403, "No registrar for this realm", now)
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
            self._reply(realm_name, txn_id, req, 200, now=now, to_tag=self.token(5))
            return
        phone_contact = str(contacts[0].uri) if contacts else "*"
        binding = self.registrations.binding_for(aor, phone_contact)
        if binding is None:
            binding = self.registrations.create(aor, aor_uri.user or "", realm_name, phone_contact, source)
        binding.flow = source
        binding.upstream_cseq += 1
        realm = self.realms[up_realm]
        hidden = AddressScrubber(
            self.realms[realm_name].networks,
            frozenset({self.realms[realm_name].address, *(a for a in [host_address(source.host)] if a)}),
        )
        up_aor = _rehost(aor_uri, hidden, registrar.host, None)
        ruri = _rehost(req.request_uri, hidden, registrar.host, registrar.port if registrar.port != 5060 else None)
        transport = registrar.transport.value
        headers = [
            HeaderField("Via", self._via(realm, transport)),
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
            our = self._contact(realm, transport, binding.token)
            up.add("Contact", our + (f";expires={expires}" if expires is not None else ""))
        for name in ("expires", "supported", "allow"):
            for value in req.get_all(name):
                up.add(name, value)
        self._pass_credentials(req, up, self.realms[realm_name], hidden)
        up.add("User-Agent", self._user_agent(up_realm))
        self.counters.registrations_relayed += 1
        leg = Leg(
            index=1,
            realm=up_realm,
            transport=transport,
            call_id=binding.upstream_call_id,
            local_tag=binding.upstream_from_tag,
            local_party="",
            remote_party="",
            destination=PeerAddress(transport, registrar.host, registrar.port),
        )
        self._send_request(
            None, leg, up, now, purpose="register", peer=(realm_name, txn_id), binding=binding, peer_request=req
        )

    def _register_response(self, ctx: ClientContext, resp: Response, now: float) -> None:
        if resp.status < 200 or ctx.peer is None or ctx.peer_request is None or ctx.binding is None:
            return
        binding = ctx.binding
        realm, txn = ctx.peer
        req = ctx.peer_request
        out = make_response(req, resp.status, resp.reason, to_tag=self.token(5))
        if 200 <= resp.status < 300:
            granted = _granted_expires(resp, binding.token)
            if granted <= 0 or binding.contact_uri == "*":
                self.registrations.remove(binding)
                self._log("info", "registration.removed", aor=binding.aor)
            else:
                self.registrations.activate(binding, now + granted)
                out.add("Contact", f"<{binding.contact_uri}>;expires={granted}")
                self._log("info", "registration.ok", aor=binding.aor, expires=granted, token=binding.token)
        else:
            for name in ("www-authenticate", "proxy-authenticate", "min-expires", "retry-after"):
                for value in resp.get_all(name):
                    out.add(name, value)
        out.add("Server", self._user_agent(realm))
        self._respond(realm, txn, out, now)

    # ---- read-only views for the control API -----------------------------------------------------
    def snapshot_calls(self, now: float) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for call in self.calls.values():
            out.append(
                {
                    **call.log_ids(),
                    "state": call.state.value,
                    "route": call.route,
                    "a_realm": call.caller.realm,
                    "b_realm": call.callee.realm,
                    "age_s": round(now - call.created_at, 1),
                    "media_mode": call.media.mode.value,
                    "hairpin": any(s.hairpinned for s in call.media.streams),
                    "streams": self.media.report(call.media),
                }
            )
        return out

    def version(self) -> str:
        return __version__


# ---- helpers --------------------------------------------------------------------------------------
_REASONS = {
    100: "Trying",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    422: "Session Interval Too Small",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    503: "Service Unavailable",
    505: "Version Not Supported",
    513: "Message Too Large",
}


def caller_status(status: int) -> int:
    """The final status the caller gets for the callee's failure `status`.

    3xx would hand the caller the callee side's contacts: 480 instead. 503 from the far end says
    that server is unavailable; relayed as it is, it would make the phone fail over away from the
    SBC or stop using it for Retry-After seconds, for every call (RFC 3261 §16.7 item 6): 500.
    Everything else (4xx, other 5xx, 6xx) describes the call and is relayed unchanged."""
    if 300 <= status < 400:
        return 480
    if status == 503:
        return 500
    return status


def _reason(status: int) -> str:
    return _REASONS.get(status, "Error" if status >= 300 else "OK")


def _fingerprint(request_uri: str) -> str:
    return format(zlib.crc32(request_uri.encode("utf-8", "surrogateescape")), "08x")


def _quote(text: str) -> str:
    return text.replace("\\", "").replace('"', "'")[:120]


def _uri_host(uri: str) -> str | None:
    try:
        return Uri.parse(uri).host
    except RemoteProtocolError:
        return None


def _rehost(uri: Uri, scrubber: AddressScrubber, host: str, port: int | None) -> Uri:
    """Keep a URI's user and domain, but never an address of the realm it came from."""
    addr = uri.address
    if uri.scheme == "tel" or (addr is not None and not scrubber.is_hidden(addr)):
        return Uri(uri.scheme, uri.user, None, uri.host, uri.port, ())
    if addr is None:
        return Uri(uri.scheme, uri.user, None, uri.host, None, ())
    return Uri(uri.scheme, uri.user, None, format_host(host), port, ())


def _display_safe(na: NameAddr) -> str:
    return str(NameAddr(na.display, na.uri, (), True))


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


def _salvage_request(data: bytes) -> Request | None:
    """Best-effort read of a malformed request's routing headers, to address a 4xx to it."""
    from sbc.sip.message import parse_head, split_head

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


__all__ = ["Core", "RouteDecision"]
