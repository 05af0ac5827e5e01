"""The state every part of the core shares, and the few ways they all act on it.

`CoreState` holds the calls and their dialogs, the transaction contexts, the realms' transaction
layers, the config and the outputs waiting for the shell. The parts of the core (sbc.b2bua.invite,
in_dialog, register_relay, trunk_probes, translation) each take it and act through its methods:
transmit, log, answer a request, send a request with its context, end a call.
"""

from __future__ import annotations

from collections.abc import Callable

from dataplane.api import Dataplane
from sbc.b2bua.call import Call, CallState, Leg
from sbc.b2bua.contexts import ClientContext, InviteContext, ServerContext
from sbc.b2bua.keepalive import TrunkMonitor
from sbc.b2bua.loops import rebranch, seal, unsealed_branch
from sbc.b2bua.media import MediaSessions
from sbc.b2bua.outputs import CallEnded, LogEvent, Output, SendSip
from sbc.b2bua.reasons import reason as reason_phrase
from sbc.b2bua.reasons import warning
from sbc.b2bua.registrations import RegistrationTable
from sbc.b2bua.reports import Counters, call_record
from sbc.b2bua.routing import Router
from sbc.b2bua.session_timer import SessionInterval, supports_timer
from sbc.config.model import Realm, SbcConfig
from sbc.policy.topology import HeaderPolicy
from sbc.sip import transaction as tx
from sbc.sip.errors import LocalProtocolError
from sbc.sip.message import Request, Response, make_response
from sbc.sip.size_limits import too_large_for_udp, with_top_via
from sbc.sip.transaction import PeerAddress, TimerConfig, TransactionLayer
from sbc.sip.uri import format_host

__all__ = ["CoreState", "DialogKey"]

DialogKey = tuple[str, str, str]  # (realm, Call-ID, our tag)


class CoreState:
    def __init__(self, config: SbcConfig, dataplane: Dataplane, token: Callable[[int], str]) -> None:
        self.token = token
        timers = TimerConfig(
            t1=config.timers.t1_ms / 1000, t2=config.timers.t2_ms / 1000, t4=config.timers.t4_ms / 1000
        )
        self.layers: dict[str, TransactionLayer] = {r.name: TransactionLayer(timers) for r in config.realms}
        self.media = MediaSessions(dataplane, config.realms, token=token)
        self.trunks = TrunkMonitor()
        self.configure(config)
        self.registrations = RegistrationTable()
        self.calls: dict[str, Call] = {}
        self.dialogs: dict[DialogKey, tuple[Call, Leg]] = {}
        self.client_ctx: dict[tuple[str, str], ClientContext] = {}
        self.server_ctx: dict[tuple[str, str], ServerContext] = {}
        self.counters = Counters()
        self.out: list[Output] = []
        # Requests moved to TCP for their size (RFC 3261 §18.1.1), by (realm, transaction id): sent
        # again over UDP should the TCP connection fail (`retry_over_udp`).
        self.moved_to_tcp: dict[tuple[str, str], tuple[Request, PeerAddress]] = {}

    def configure(self, config: SbcConfig) -> None:
        self.config = config
        self.realms: dict[str, Realm] = {r.name: r for r in config.realms}
        self.header_policy = {r.name: HeaderPolicy.for_realm(r.pass_headers, r.strip_headers) for r in config.realms}
        self.router = Router(config)
        self.media.realms = dict(self.realms)
        self.trunks.configure(config.realms)

    # ---- outputs ---------------------------------------------------------------------------------
    def flush(self) -> list[Output]:
        out, self.out = self.out, []
        return out

    def transmit(self, realm: str, commands: list[tx.Transmit]) -> None:
        for cmd in commands:
            if cmd.data.startswith(b"SIP/2.0 "):
                self.counters.out_responses += 1
            else:
                self.counters.out_requests += 1
            self.out.append(SendSip(realm, cmd.data, cmd.destination, cmd.txn_id))

    def send_again(self, realm: str, data: bytes, destination: PeerAddress) -> None:
        """Bytes sent before outside any transaction (an ACK for a retransmitted 2xx, a stateless answer)."""
        self.out.append(SendSip(realm, data, destination))

    def log(self, level: str, event: str, call: Call | None = None, **fields: object) -> None:
        if call is not None:
            fields.update(call.log_ids())
        self.out.append(LogEvent(level, event, fields))

    # ---- our own addresses -----------------------------------------------------------------------
    def realm_host(self, realm: str) -> str:
        return format_host(str(self.realms[realm].public_address))

    def user_agent(self, realm: str) -> str:
        return self.realms[realm].user_agent or self.config.user_agent

    @staticmethod
    def port(realm: Realm, transport: str) -> int:
        for ls in realm.listeners:
            if ls.transport == transport:
                return ls.port
        return realm.listeners[0].port if realm.listeners else 5060

    def via(self, realm: Realm, transport: str) -> str:
        """Our Via. Its branch gets the fingerprint of the finished request when it is sent
        (`loops.seal`), by which the request is recognised should it come back (RFC 3261 §16.3)."""
        branch = unsealed_branch(self.token(6))
        return (
            f"SIP/2.0/{transport.upper()} {format_host(str(realm.public_address))}:{self.port(realm, transport)}"
            f";branch={branch};rport"
        )

    def contact(self, realm: Realm, transport: str, user: str) -> str:
        """Our Contact. On a call leg its user names the leg (`Leg.contact_user`), so every dialog of the
        SBC has its own remote target (RFC 3261 §8.1.1.8: it reaches this UA in this dialog)."""
        host = format_host(str(realm.public_address))
        tparam = "" if transport == "udp" else f";transport={transport}"
        return f"<sip:{user}@{host}:{self.port(realm, transport)}{tparam}>"

    # ---- answering and sending -------------------------------------------------------------------
    def respond(self, realm: str, txn_id: str, response: Response, now: float) -> None:
        self.counters.count_status(response.status)
        # A 2xx to INVITE is retransmitted by us, the UAS core, until the ACK comes (§13.3.1.4).
        retransmit = 200 <= response.status < 300 and response.cseq[1] == "INVITE"
        try:
            commands = self.layers[realm].respond(txn_id, response, now, retransmit_2xx=retransmit)
        except LocalProtocolError as exc:
            # The transaction ended meanwhile (e.g. a late final after CANCEL): nothing to answer.
            self.log("debug", "sip.respond_skipped", realm=realm, reason=exc.reason)
            return
        self.transmit(realm, commands)

    def reply(
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
        """Our own answer to `request` (not one relayed from the other leg)."""
        response = make_response(request, status, reason or reason_phrase(status), to_tag=to_tag)
        for name, value in extra or []:
            response.add(name, value)
        response.add("Server", self.user_agent(realm))
        self.respond(realm, txn_id, response, now)

    def refuse_brief_session(self, realm: str, txn_id: str, req: Request, now: float) -> bool:
        """Refuse with 422 an interval below our Min-SE from a caller that can retry (RFC 4028 §8.1)."""
        asked = SessionInterval.of(req)
        floor = self.config.timers.min_se_s
        if asked is None or asked.seconds >= floor or not supports_timer(req):
            return False
        self.reply(realm, txn_id, req, 422, now=now, extra=[("Min-SE", str(floor))])
        return True

    def send_request(self, leg: Leg, request: Request, now: float, context: ClientContext) -> str:
        """Send `request` on `leg` in a new client transaction; its answers are handled by `context`."""
        if request.method == "INVITE":
            leg.invite_cseq = request.cseq[0]
        seal(request)
        hop = leg.next_hop()
        destination = self.transport_for(leg, request, hop)
        txn_id, commands = self.layers[leg.realm].send_request(
            request, destination, now, reliable=destination.transport != "udp"
        )
        self.transmit(leg.realm, commands)
        self.client_ctx[(leg.realm, txn_id)] = context
        if destination is not hop:
            self.moved_to_tcp[(leg.realm, txn_id)] = (request, hop)
        return txn_id

    def retry_over_udp(self, realm: str, txn_id: str, now: float) -> bool:
        """RFC 3261 §18.1.1: a request sent over TCP for its size whose connection failed is retried
        over UDP, as a new transaction with the same context. False: it was not such a request."""
        moved = self.moved_to_tcp.pop((realm, txn_id), None)
        context = self.client_ctx.get((realm, txn_id))
        if moved is None or context is None:
            return False
        sent, hop = moved
        request = sent.copy()
        with_top_via(request, "udp", self.port(self.realms[realm], "udp"))
        rebranch(request, self.token(6))
        new_txn, commands = self.layers[realm].send_request(request, hop, now, reliable=False)
        self.transmit(realm, commands)
        del self.client_ctx[(realm, txn_id)]
        self.client_ctx[(realm, new_txn)] = context
        if isinstance(context, InviteContext) and context.call.callee_invite_txn == txn_id:
            context.call.callee_invite_txn = new_txn
        self.log("warning", "sip.tcp_failed_retry_udp", realm=realm, method=request.method, destination=str(hop))
        return True

    def transport_for(self, leg: Leg, request: Request, destination: PeerAddress) -> PeerAddress:
        """RFC 3261 §18.1.1: a request above 1300 bytes to a UDP peer that takes TCP goes over TCP, its
        top Via (ours) naming TCP and our TCP port. Other destinations are kept as they are."""
        if destination.transport != "udp" or not leg.large_over_tcp:
            return destination
        if not too_large_for_udp(len(request.serialize())):
            return destination
        with_top_via(request, "tcp", self.port(self.realms[leg.realm], "tcp"))
        return PeerAddress("tcp", destination.host, destination.port)

    # ---- the end of a call -----------------------------------------------------------------------
    def fail_call(self, call: Call, status: int, reason: str) -> None:
        """A call not yet answered cannot go on: the caller gets `status`, the call ends."""
        if call.state in (CallState.TRYING, CallState.EARLY) and call.caller_invite_txn and call.initial_request:
            self.reply(
                call.caller.realm,
                call.caller_invite_txn,
                call.initial_request,
                status,
                now=0.0,
                to_tag=call.caller.local_tag,
                extra=[warning(self.realm_host(call.caller.realm), reason)],
            )
            call.final_status = status
            self.counters.calls_failed += 1
            self.end_call(call, 0.0, reason)

    def end_call(self, call: Call, now: float, reason: str, *, release_dialogs: bool = True) -> None:
        """Forget `call`, release its media and report its call record (CDR)."""
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
        self.out.append(CallEnded(call_record(call, now, reason, streams)))
        self.log("info", "call.end", call, reason=reason, status=call.final_status)
