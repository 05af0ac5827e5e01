"""The SIP transaction layer (RFC 3261 §17 as corrected by RFC 6026), sans-IO.

Messages in (`receive`), time in (`tick`), typed events and `Transmit` commands out. The layer never
touches a socket or a clock: every call takes `now` (seconds, any monotonic origin) and
`next_deadline()` says when to call `tick` next.

Each of the four machines (INVITE client/server, non-INVITE client/server) is a transition table
`(state, input) -> (next state, actions)`, as in h11. An input missing from a table is:
- a peer message: absorbed (counted, never raised: the peer may retransmit or misbehave at will);
- a timer: stale (it belonged to a state we left) and ignored;
- a TU call (`respond`): a `LocalProtocolError`, because our own code asked for something illegal.

Design choices worth knowing:
- 100 Trying: the layer sends it itself for an INVITE the TU has not answered within
  `trying_delay` (200 ms, §17.2.1), and at once when the INVITE is retransmitted before any response.
  `trying_delay=None` leaves it to the TU.
- Zero-length timers (D, I, J, K on reliable transports) are deadlines at `now`: the transaction
  terminates on the next `tick`, so `TransactionTerminated` always comes out of `tick` or `receive`.
- The 2xx to an INVITE is retransmitted by the UAS core, not the transaction (§13.3.1.4); `respond`
  offers that as an option (`retransmit_2xx=True`), on every transport, stopped by the ACK.
- Responses go back to the request's source address by default (`symmetric_responses`, the
  NAT-friendly behaviour of an edge SBC, RFC 3581 for everyone); off, §18.2.2 sent-by ports are used.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, StrEnum, auto

from sbc.sip import derive
from sbc.sip.errors import LocalProtocolError, RemoteProtocolError
from sbc.sip.matching import (
    ClientKey,
    DialogAckKey,
    ServerKey,
    client_key_for_request,
    client_key_for_response,
    default_port,
    dialog_ack_key,
    server_key,
    to_tag,
)
from sbc.sip.message import Request, Response
from sbc.sip.timers import DeadlineHeap, TimerConfig, TimerName
from sbc.sip.uri import Via

__all__ = [
    "AckReceived",
    "AckTimedOut",
    "CancelReceived",
    "Command",
    "Event",
    "Kind",
    "PeerAddress",
    "RequestReceived",
    "ResponseReceived",
    "State",
    "StrayResponse",
    "TimerConfig",
    "TransactionCounters",
    "TransactionLayer",
    "TransactionTerminated",
    "TransactionTimedOut",
    "Transmit",
    "TransportError",
    "is_reliable",
    "new_branch",
]

_RELIABLE_TRANSPORTS = frozenset({"TCP", "TLS", "SCTP", "TLS-SCTP", "WS", "WSS"})


@dataclass(frozen=True, slots=True)
class PeerAddress:
    """Where a message came from or goes to. `transport` is the Via spelling: UDP, TCP, TLS, WS, WSS."""

    transport: str
    host: str
    port: int

    def __str__(self) -> str:
        """As a SIP URI, for people (logs, `sbc registrations`): `sip:host:port;transport=udp`."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"sip:{host}:{self.port};transport={self.transport.lower()}"


def is_reliable(transport: str) -> bool:
    """§17.1.1.2 et seq.: no retransmission timers and zero-length wait timers on these."""
    return transport.upper() in _RELIABLE_TRANSPORTS


def _random_token() -> str:
    return secrets.token_hex(8)


def new_branch(random_token: Callable[[], str] = _random_token) -> str:
    """A fresh RFC 3261 branch: the magic cookie plus a random token (§8.1.1.7)."""
    return "z9hG4bK" + random_token()


# ---- events (what happened) and commands (what to do) --------------------------------------------
@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new server transaction: the TU must answer it with `respond(txn_id, ...)`."""

    txn_id: str
    request: Request
    source: PeerAddress


@dataclass(frozen=True, slots=True)
class AckReceived:
    """An ACK for a 2xx (it belongs to the dialog, not to a transaction; RFC 6026 §8.7)."""

    request: Request
    source: PeerAddress


@dataclass(frozen=True, slots=True)
class CancelReceived:
    """A CANCEL for the pending INVITE server transaction `txn_id`; the layer already answered it 200.

    The TU should answer the INVITE with 487 (§9.2)."""

    txn_id: str
    request: Request
    source: PeerAddress


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response for client transaction `txn_id`: every 1xx, the final, and (RFC 6026) each 2xx
    retransmission or forked 2xx while the INVITE transaction is Accepted, so the TU can ACK it."""

    txn_id: str
    response: Response


@dataclass(frozen=True, slots=True)
class StrayResponse:
    """A response matching no client transaction. RFC 6026 §7.2 says drop it; a 2xx to an INVITE whose
    transaction is gone may still deserve a re-ACK from the dialog layer."""

    response: Response
    source: PeerAddress


@dataclass(frozen=True, slots=True)
class TransactionTimedOut:
    """Timer B or F fired (or the 64*T1 wait after a CANCEL, §9.1): act as if a 408 was received."""

    txn_id: str


@dataclass(frozen=True, slots=True)
class AckTimedOut:
    """A final response of ours was never ACKed: Timer H for a non-2xx, or 64*T1 of 2xx
    retransmissions (§13.3.1.4: the dialog is confirmed, but the session should be ended with BYE)."""

    txn_id: str
    status: int


@dataclass(frozen=True, slots=True)
class TransportError:
    """The transport reported a fatal error sending for this transaction (§17.1.4, §17.2.4)."""

    txn_id: str


@dataclass(frozen=True, slots=True)
class TransactionTerminated:
    """The transaction is gone; its id will never be used again by this layer."""

    txn_id: str


Event = (
    RequestReceived
    | AckReceived
    | CancelReceived
    | ResponseReceived
    | StrayResponse
    | TransactionTimedOut
    | AckTimedOut
    | TransportError
    | TransactionTerminated
)


@dataclass(frozen=True, slots=True)
class Transmit:
    """Send these bytes. `txn_id` lets the I/O shell report a failure with `transport_failed`; it is
    None for what belongs to no transaction (an ACK for a 2xx, a UAS-core 2xx retransmission)."""

    data: bytes
    destination: PeerAddress
    txn_id: str | None = None


Command = Transmit


@dataclass(slots=True)
class TransactionCounters:
    """Running totals for metrics."""

    client_created: int = 0
    server_created: int = 0
    retransmissions: int = 0  # requests, responses and ACKs we sent again
    absorbed: int = 0  # peer retransmissions (and out-of-state messages) swallowed by a transaction
    timeouts: int = 0  # Timer B / F
    ack_timeouts: int = 0  # Timer H and 2xx retransmission give-ups
    stray_responses: int = 0
    malformed: int = 0  # dropped: lacked a header matching needs
    transport_errors: int = 0


# ---- the four machines --------------------------------------------------------------------------
class Kind(StrEnum):
    ICT = "INVITE client"
    NICT = "non-INVITE client"
    IST = "INVITE server"
    NIST = "non-INVITE server"


class State(StrEnum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class Input(StrEnum):
    PROVISIONAL = "1xx from peer"
    SUCCESS = "2xx from peer"
    FAILURE = "300-699 from peer"
    REQUEST = "request retransmission"
    ACK = "ACK"
    SEND_PROVISIONAL = "1xx from TU"
    SEND_SUCCESS = "2xx from TU"
    SEND_FAILURE = "300-699 from TU"
    TRANSPORT_ERROR = "transport error"


class Action(Enum):
    PASS_RESPONSE = auto()
    PASS_ACK = auto()
    SEND_ACK = auto()
    RESEND_ACK = auto()
    RETRANSMIT_REQUEST = auto()
    SEND_RESPONSE = auto()
    RETRANSMIT_RESPONSE = auto()
    RESEND_OR_TRYING = auto()  # INVITE retransmitted: resend the last response, or a 100 if none yet
    SEND_TRYING = auto()  # 200 ms passed: 100 Trying unless the TU answered
    SEND_PENDING_CANCEL = auto()
    BACKOFF_DOUBLE = auto()  # Timer A: 2x, no cap
    BACKOFF_CAPPED = auto()  # Timers E (Trying) and G: min(2x, T2)
    BACKOFF_T2 = auto()  # Timer E in Proceeding: T2
    ABSORB = auto()
    REPORT_TIMEOUT = auto()
    REPORT_ACK_TIMEOUT = auto()
    REPORT_TRANSPORT_ERROR = auto()


A = Action
S = State
I = Input  # noqa: E741
T = TimerName
Step = tuple[State, tuple[Action, ...]]
Table = dict[tuple[State, Input | TimerName], Step]

# §17.1.1.2 Figure 5, with RFC 6026 §8.4 Accepted.
ICT_TABLE: Table = {
    (S.CALLING, T.A): (S.CALLING, (A.RETRANSMIT_REQUEST, A.BACKOFF_DOUBLE)),
    (S.CALLING, T.B): (S.TERMINATED, (A.REPORT_TIMEOUT,)),
    (S.CALLING, I.PROVISIONAL): (S.PROCEEDING, (A.PASS_RESPONSE, A.SEND_PENDING_CANCEL)),
    (S.CALLING, I.SUCCESS): (S.ACCEPTED, (A.PASS_RESPONSE,)),
    (S.CALLING, I.FAILURE): (S.COMPLETED, (A.SEND_ACK, A.PASS_RESPONSE)),
    (S.CALLING, I.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.PROCEEDING, I.PROVISIONAL): (S.PROCEEDING, (A.PASS_RESPONSE,)),
    (S.PROCEEDING, I.SUCCESS): (S.ACCEPTED, (A.PASS_RESPONSE,)),
    (S.PROCEEDING, I.FAILURE): (S.COMPLETED, (A.SEND_ACK, A.PASS_RESPONSE)),
    (S.PROCEEDING, I.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    # Timer B only runs in Proceeding after we sent a CANCEL: §9.1 gives up 64*T1 later.
    (S.PROCEEDING, T.B): (S.TERMINATED, (A.REPORT_TIMEOUT,)),
    (S.COMPLETED, I.FAILURE): (S.COMPLETED, (A.ABSORB, A.RESEND_ACK)),
    (S.COMPLETED, I.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.COMPLETED, T.D): (S.TERMINATED, ()),
    (S.ACCEPTED, I.SUCCESS): (S.ACCEPTED, (A.PASS_RESPONSE,)),
    (S.ACCEPTED, T.M): (S.TERMINATED, ()),
}

# §17.1.2.2 Figure 6.
NICT_TABLE: Table = {
    (S.TRYING, T.E): (S.TRYING, (A.RETRANSMIT_REQUEST, A.BACKOFF_CAPPED)),
    (S.TRYING, T.F): (S.TERMINATED, (A.REPORT_TIMEOUT,)),
    (S.TRYING, I.PROVISIONAL): (S.PROCEEDING, (A.PASS_RESPONSE,)),
    (S.TRYING, I.SUCCESS): (S.COMPLETED, (A.PASS_RESPONSE,)),
    (S.TRYING, I.FAILURE): (S.COMPLETED, (A.PASS_RESPONSE,)),
    (S.TRYING, I.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.PROCEEDING, T.E): (S.PROCEEDING, (A.RETRANSMIT_REQUEST, A.BACKOFF_T2)),
    (S.PROCEEDING, T.F): (S.TERMINATED, (A.REPORT_TIMEOUT,)),
    (S.PROCEEDING, I.PROVISIONAL): (S.PROCEEDING, (A.PASS_RESPONSE,)),
    (S.PROCEEDING, I.SUCCESS): (S.COMPLETED, (A.PASS_RESPONSE,)),
    (S.PROCEEDING, I.FAILURE): (S.COMPLETED, (A.PASS_RESPONSE,)),
    (S.PROCEEDING, I.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.COMPLETED, I.SUCCESS): (S.COMPLETED, (A.ABSORB,)),
    (S.COMPLETED, I.FAILURE): (S.COMPLETED, (A.ABSORB,)),
    (S.COMPLETED, T.K): (S.TERMINATED, ()),
}

# §17.2.1 Figure 7, with RFC 6026 §8.7 Accepted.
IST_TABLE: Table = {
    (S.PROCEEDING, I.REQUEST): (S.PROCEEDING, (A.ABSORB, A.RESEND_OR_TRYING)),
    (S.PROCEEDING, T.TRYING): (S.PROCEEDING, (A.SEND_TRYING,)),
    (S.PROCEEDING, I.SEND_PROVISIONAL): (S.PROCEEDING, (A.SEND_RESPONSE,)),
    (S.PROCEEDING, I.SEND_SUCCESS): (S.ACCEPTED, (A.SEND_RESPONSE,)),
    (S.PROCEEDING, I.SEND_FAILURE): (S.COMPLETED, (A.SEND_RESPONSE,)),
    (S.PROCEEDING, I.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.COMPLETED, I.REQUEST): (S.COMPLETED, (A.ABSORB, A.RETRANSMIT_RESPONSE)),
    (S.COMPLETED, T.G): (S.COMPLETED, (A.RETRANSMIT_RESPONSE, A.BACKOFF_CAPPED)),
    (S.COMPLETED, I.ACK): (S.CONFIRMED, ()),
    (S.COMPLETED, T.H): (S.TERMINATED, (A.REPORT_ACK_TIMEOUT,)),
    (S.COMPLETED, I.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.CONFIRMED, I.ACK): (S.CONFIRMED, (A.ABSORB,)),
    (S.CONFIRMED, I.REQUEST): (S.CONFIRMED, (A.ABSORB,)),
    (S.CONFIRMED, T.I): (S.TERMINATED, ()),
    (S.ACCEPTED, I.REQUEST): (S.ACCEPTED, (A.ABSORB,)),
    (S.ACCEPTED, I.ACK): (S.ACCEPTED, (A.PASS_ACK,)),
    (S.ACCEPTED, I.SEND_SUCCESS): (S.ACCEPTED, (A.SEND_RESPONSE,)),
    # The 2xx is the TU's to retransmit; a failure sending one is news for it, not an end (RFC 6026).
    (S.ACCEPTED, I.TRANSPORT_ERROR): (S.ACCEPTED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.ACCEPTED, T.L): (S.TERMINATED, ()),
}

# §17.2.2 Figure 8.
NIST_TABLE: Table = {
    (S.TRYING, I.REQUEST): (S.TRYING, (A.ABSORB,)),
    (S.TRYING, I.SEND_PROVISIONAL): (S.PROCEEDING, (A.SEND_RESPONSE,)),
    (S.TRYING, I.SEND_SUCCESS): (S.COMPLETED, (A.SEND_RESPONSE,)),
    (S.TRYING, I.SEND_FAILURE): (S.COMPLETED, (A.SEND_RESPONSE,)),
    (S.TRYING, I.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.PROCEEDING, I.REQUEST): (S.PROCEEDING, (A.ABSORB, A.RETRANSMIT_RESPONSE)),
    (S.PROCEEDING, I.SEND_PROVISIONAL): (S.PROCEEDING, (A.SEND_RESPONSE,)),
    (S.PROCEEDING, I.SEND_SUCCESS): (S.COMPLETED, (A.SEND_RESPONSE,)),
    (S.PROCEEDING, I.SEND_FAILURE): (S.COMPLETED, (A.SEND_RESPONSE,)),
    (S.PROCEEDING, I.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.COMPLETED, I.REQUEST): (S.COMPLETED, (A.ABSORB, A.RETRANSMIT_RESPONSE)),
    # "Any other final responses passed by the TU ... MUST be discarded while in the Completed state."
    (S.COMPLETED, I.SEND_SUCCESS): (S.COMPLETED, ()),
    (S.COMPLETED, I.SEND_FAILURE): (S.COMPLETED, ()),
    (S.COMPLETED, I.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.COMPLETED, T.J): (S.TERMINATED, ()),
}

TABLES: dict[Kind, Table] = {Kind.ICT: ICT_TABLE, Kind.NICT: NICT_TABLE, Kind.IST: IST_TABLE, Kind.NIST: NIST_TABLE}

# Timers armed on entering a state; every other timer of the machine is disarmed then, except those
# in _KEEP (Timers E and F run on from Trying into Proceeding).
_ENTRY_TIMERS: dict[tuple[Kind, State], tuple[TimerName, ...]] = {
    (Kind.ICT, S.CALLING): (T.A, T.B),
    (Kind.ICT, S.COMPLETED): (T.D,),
    (Kind.ICT, S.ACCEPTED): (T.M,),
    (Kind.NICT, S.TRYING): (T.E, T.F),
    (Kind.NICT, S.COMPLETED): (T.K,),
    (Kind.IST, S.PROCEEDING): (T.TRYING,),
    (Kind.IST, S.COMPLETED): (T.G, T.H),
    (Kind.IST, S.CONFIRMED): (T.I,),
    (Kind.IST, S.ACCEPTED): (T.L,),
    (Kind.NIST, S.COMPLETED): (T.J,),
}
_KEEP: dict[tuple[Kind, State], frozenset[TimerName]] = {(Kind.NICT, S.PROCEEDING): frozenset({T.E, T.F})}
_MACHINE_TIMERS: dict[Kind, tuple[TimerName, ...]] = {
    Kind.ICT: (T.A, T.B, T.D, T.M),
    Kind.NICT: (T.E, T.F, T.K),
    Kind.IST: (T.TRYING, T.G, T.H, T.I, T.L),
    Kind.NIST: (T.J,),
}
_RETRANSMIT_TIMER: dict[Kind, TimerName] = {Kind.ICT: T.A, Kind.NICT: T.E, Kind.IST: T.G}
_PEER_INPUTS = frozenset({I.PROVISIONAL, I.SUCCESS, I.FAILURE, I.REQUEST, I.ACK})
_TU_INPUTS = frozenset({I.SEND_PROVISIONAL, I.SEND_SUCCESS, I.SEND_FAILURE})


def _response_input(status: int, *, from_tu: bool) -> Input:
    if status < 200:
        return I.SEND_PROVISIONAL if from_tu else I.PROVISIONAL
    if status < 300:
        return I.SEND_SUCCESS if from_tu else I.SUCCESS
    return I.SEND_FAILURE if from_tu else I.FAILURE


@dataclass(slots=True, eq=False)
class _Transaction:
    id: str
    kind: Kind
    request: Request
    key: ClientKey | ServerKey
    peer: PeerAddress  # client: where the request goes; server: where responses go
    reliable: bool
    state: State = S.TERMINATED  # set by _enter at creation
    interval: float = 0.0  # current A/E/G retransmission interval
    request_bytes: bytes = b""  # client
    ack_bytes: bytes = b""  # ICT: the ACK we sent for a non-2xx
    cancel_pending: bool = False  # ICT: TU asked to cancel before any provisional (§9.1)
    cancel_sent: bool = False
    source: PeerAddress | None = None  # server: where the request came from
    last_response: bytes | None = None  # server
    last_status: int = 0
    last_to_tag: str = ""  # server: To tag of our last response (RFC 2543 ACK matching)


@dataclass(slots=True, eq=False)
class _AckWait:
    """A 2xx we retransmit until its ACK arrives (§13.3.1.4)."""

    owner: str
    txn_id: str
    key: DialogAckKey
    data: bytes
    destination: PeerAddress
    interval: float
    status: int


@dataclass(slots=True)
class _Out:
    events: list[Event] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)


def response_destination(via: Via, source: PeerAddress, symmetric: bool) -> PeerAddress:
    """Where responses to a request go (§18.2.2, RFC 3581). maddr (multicast) is not supported."""
    if symmetric or is_reliable(source.transport) or via.param("rport") is not None:
        return source
    port = via.port if via.port is not None else default_port(via.transport)
    return PeerAddress(source.transport, source.host, port)


class TransactionLayer:
    """Owns every client and server transaction of one SIP endpoint. See the module docstring."""

    def __init__(
        self,
        timers: TimerConfig | None = None,
        *,
        random_token: Callable[[], str] = _random_token,
        trying_delay: float | None = 0.2,
        symmetric_responses: bool = True,
    ) -> None:
        self.timers = timers or TimerConfig()
        self.counters = TransactionCounters()
        self._token = random_token
        self._trying_delay = trying_delay
        self._symmetric = symmetric_responses
        self._by_id: dict[str, _Transaction] = {}
        self._client: dict[tuple[str, ...], _Transaction] = {}  # ClientKey
        self._server: dict[ServerKey, _Transaction] = {}
        self._ack_waits: dict[DialogAckKey, _AckWait] = {}
        self._ack_wait_owners: dict[str, _AckWait] = {}
        self._heap = DeadlineHeap()
        self._next_id = 0

    # ---- queries ---------------------------------------------------------------------------------
    def new_branch(self) -> str:
        return new_branch(self._token)

    def next_deadline(self) -> float | None:
        """When `tick` has work to do; None when no timer is armed."""
        return self._heap.next_deadline()

    def active_count(self) -> int:
        return len(self._by_id)

    def state(self, txn_id: str) -> State | None:
        """The state of a live transaction; None once it has terminated (or never existed)."""
        txn = self._by_id.get(txn_id)
        return txn.state if txn is not None else None

    def kind(self, txn_id: str) -> Kind | None:
        txn = self._by_id.get(txn_id)
        return txn.kind if txn is not None else None

    # ---- TU calls --------------------------------------------------------------------------------
    def send_request(
        self, request: Request, destination: PeerAddress, now: float, reliable: bool | None = None
    ) -> tuple[str, list[Command]]:
        """Start a client transaction. The request already carries its top Via with a fresh branch.

        `reliable` defaults to what `destination.transport` implies."""
        if request.method == "ACK":
            raise LocalProtocolError("an ACK is not a transaction: use send_ack_2xx", 500)
        self._next_id += 1
        txn_id = f"c{self._next_id}"
        out = _Out()
        self._start_client(txn_id, request, destination, now, reliable, out)
        return txn_id, out.commands

    def send_ack_2xx(self, ack: Request, destination: PeerAddress) -> list[Command]:
        """Transmit an ACK for a 2xx: the TU's own transaction-less request (§13.2.2.4)."""
        if ack.method != "ACK":
            raise LocalProtocolError(f"send_ack_2xx got a {ack.method}", 500)
        return [Transmit(ack.serialize(), destination)]

    def cancel(self, txn_id: str, now: float) -> list[Command]:
        """CANCEL a pending INVITE client transaction (§9.1).

        Sent at once in Proceeding; in Calling it waits for the first provisional. Nothing happens if the
        INVITE already has a final response or is gone. Events of the CANCEL's own non-INVITE
        transaction carry the id `<txn_id>/CANCEL`."""
        txn = self._by_id.get(txn_id)
        if txn is None:
            return []
        if txn.kind is not Kind.ICT:
            raise LocalProtocolError(f"cancel of a {txn.kind} transaction", 500)
        if txn.cancel_sent or txn.cancel_pending:
            return []
        if txn.state is S.CALLING:
            txn.cancel_pending = True
            return []
        if txn.state is not S.PROCEEDING:
            return []
        out = _Out()
        self._send_cancel(txn, now, out)
        return out.commands

    def respond(self, txn_id: str, response: Response, now: float, *, retransmit_2xx: bool = False) -> list[Command]:
        """Send a response on server transaction `txn_id`.

        `retransmit_2xx` (INVITE 2xx only) makes the layer retransmit it as the UAS core must
        (§13.3.1.4): T1, doubling up to T2, until the ACK arrives or 64*T1 passes (`AckTimedOut`).
        Raises LocalProtocolError for an unknown transaction or a response its state forbids."""
        txn = self._by_id.get(txn_id)
        if txn is None or txn.kind not in (Kind.IST, Kind.NIST):
            raise LocalProtocolError(f"no server transaction {txn_id!r}", 500)
        if not 100 <= response.status <= 699:
            raise LocalProtocolError(f"bad status {response.status}", 500)
        ack_key: DialogAckKey | None = None
        if retransmit_2xx and txn.kind is Kind.IST and 200 <= response.status < 300:
            try:  # before anything is sent: a 2xx we could not match to its ACK is refused whole
                ack_key = dialog_ack_key(response)
            except RemoteProtocolError as exc:
                raise LocalProtocolError(f"2xx cannot be matched to its ACK: {exc.reason}", 500) from exc
        out = _Out()
        self._fire(txn, _response_input(response.status, from_tu=True), now, out, response)
        if ack_key is not None:
            self._start_ack_wait(txn, ack_key, response.status, out.commands[-1], now)
        return out.commands

    def transport_failed(self, txn_id: str, now: float) -> tuple[list[Event], list[Command]]:
        """The I/O shell could not send a `Transmit` of `txn_id` (ICMP error, connection refused)."""
        out = _Out()
        txn = self._by_id.get(txn_id)
        if txn is not None:
            self.counters.transport_errors += 1
            self._fire(txn, I.TRANSPORT_ERROR, now, out)
        return out.events, out.commands

    # ---- network and clock -----------------------------------------------------------------------
    def receive(self, msg: Request | Response, source: PeerAddress, now: float) -> tuple[list[Event], list[Command]]:
        """Feed one parsed message from the transport. Never raises on what the peer sent."""
        out = _Out()
        try:
            if isinstance(msg, Response):
                self._receive_response(msg, source, now, out)
            elif msg.method == "ACK":
                self._receive_ack(msg, source, now, out)
            elif msg.method == "CANCEL":
                self._receive_cancel(msg, source, now, out)
            else:
                self._receive_request(msg, source, now, out)
        except RemoteProtocolError:
            # Matching needs Via, CSeq, Call-ID, From and To; the parser checks them, a hand-built
            # message may not have them. Dropping is all a transaction layer can do.
            self.counters.malformed += 1
        return out.events, out.commands

    def tick(self, now: float) -> tuple[list[Event], list[Command]]:
        """Fire every timer due at `now`, in deadline order."""
        out = _Out()
        heap = self._heap
        while (due := heap.pop_due(now)) is not None:
            owner, name = due
            if name is T.RETRANSMIT_2XX or name is T.ACK_WAIT:
                self._ack_wait_timer(owner, name, now, out)
                continue
            txn = self._by_id.get(owner)
            if txn is not None:
                self._fire(txn, name, now, out)
        return out.events, out.commands

    # ---- receive paths ---------------------------------------------------------------------------
    def _receive_response(self, response: Response, source: PeerAddress, now: float, out: _Out) -> None:
        txn = self._client.get(client_key_for_response(response))
        if txn is None:
            self.counters.stray_responses += 1
            out.events.append(StrayResponse(response, source))
            return
        self._fire(txn, _response_input(response.status, from_tu=False), now, out, response)

    def _receive_request(self, request: Request, source: PeerAddress, now: float, out: _Out) -> None:
        via = request.top_via
        key = server_key(request, request.method, via)
        txn = self._server.get(key)
        if txn is not None:
            self._fire(txn, I.REQUEST, now, out, request)
            return
        txn = self._start_server(request, via, key, source, now)
        out.events.append(RequestReceived(txn.id, request, source))

    def _receive_ack(self, ack: Request, source: PeerAddress, now: float, out: _Out) -> None:
        self._stop_ack_wait(dialog_ack_key(ack))
        txn = self._server.get(server_key(ack, "INVITE"))
        # Without the magic cookie the ACK must also carry the To tag of our response (§17.2.3).
        if txn is not None and (txn.key[0] == "3261" or to_tag(ack) == txn.last_to_tag):
            self._fire(txn, I.ACK, now, out, ack)
            return
        out.events.append(AckReceived(ack, source))

    def _receive_cancel(self, cancel: Request, source: PeerAddress, now: float, out: _Out) -> None:
        via = cancel.top_via
        key = server_key(cancel, "CANCEL", via)
        own = self._server.get(key)
        if own is not None:
            self._fire(own, I.REQUEST, now, out, cancel)
            return
        target = self._server.get(server_key(cancel, "INVITE", via))
        txn = self._start_server(cancel, via, key, source, now)
        # §9.2: 481 when nothing matches; else 200 with the To tag the INVITE's responses use.
        if target is None or target.kind is not Kind.IST:
            response = derive.local_response(cancel, 481, self._token())
        else:
            response = derive.local_response(cancel, 200, target.last_to_tag or self._token())
            if target.state is S.PROCEEDING:
                out.events.append(CancelReceived(target.id, cancel, source))
        self._fire(txn, _response_input(response.status, from_tu=True), now, out, response)

    # ---- transaction creation --------------------------------------------------------------------
    def _start_client(
        self,
        txn_id: str,
        request: Request,
        destination: PeerAddress,
        now: float,
        reliable: bool | None,
        out: _Out,
    ) -> _Transaction:
        try:
            key = client_key_for_request(request)
            method = request.cseq[1]
        except RemoteProtocolError as exc:
            raise LocalProtocolError(f"cannot start a client transaction: {exc.reason}", 500) from exc
        if method != request.method:
            raise LocalProtocolError("CSeq method differs from the request method", 500)
        if key in self._client:
            raise LocalProtocolError(f"branch {key[0]!r} already in use for {key[1]}", 500)
        if reliable is None:
            reliable = is_reliable(destination.transport)
        kind = Kind.ICT if request.method == "INVITE" else Kind.NICT
        txn = _Transaction(txn_id, kind, request, key, destination, reliable)
        txn.request_bytes = request.serialize()
        self._client[key] = txn
        self._by_id[txn_id] = txn
        self.counters.client_created += 1
        out.commands.append(Transmit(txn.request_bytes, destination, txn_id))
        self._enter(txn, S.CALLING if kind is Kind.ICT else S.TRYING, now)
        return txn

    def _start_server(
        self, request: Request, via: Via, key: ServerKey, source: PeerAddress, now: float
    ) -> _Transaction:
        # What the TU and our own responses will need; the parser checked it, a hand-built request may not.
        if request.get("from") is None or request.get("to") is None:
            raise RemoteProtocolError("missing From or To", 400)
        request.call_id, request.cseq  # noqa: B018
        destination = response_destination(via, source, self._symmetric)
        self._next_id += 1
        txn_id = f"s{self._next_id}"
        kind = Kind.IST if request.method == "INVITE" else Kind.NIST
        txn = _Transaction(txn_id, kind, request, key, destination, is_reliable(source.transport))
        txn.source = source
        self._server[key] = txn
        self._by_id[txn_id] = txn
        self.counters.server_created += 1
        self._enter(txn, S.PROCEEDING if kind is Kind.IST else S.TRYING, now)
        return txn

    def _send_cancel(self, invite: _Transaction, now: float, out: _Out) -> None:
        invite.cancel_pending = False
        invite.cancel_sent = True
        cancel = derive.cancel_for(invite.request)
        self._start_client(f"{invite.id}/CANCEL", cancel, invite.peer, now, invite.reliable, out)
        # §9.1: if the INVITE gets no final response within 64*T1 of the CANCEL, give up on it.
        self._heap.arm(invite.id, T.B, now + self.timers.timeout)

    # ---- the machine -----------------------------------------------------------------------------
    def _fire(
        self,
        txn: _Transaction,
        inp: Input | TimerName,
        now: float,
        out: _Out,
        message: Request | Response | None = None,
    ) -> None:
        step = TABLES[txn.kind].get((txn.state, inp))
        if step is None:
            if inp in _TU_INPUTS:
                raise LocalProtocolError(f"{inp} is not allowed in {txn.kind} state {txn.state}", 500)
            if inp in _PEER_INPUTS:
                self.counters.absorbed += 1
            return  # a stale timer, or a transport error after the fact
        next_state, actions = step
        # Enter the new state first so actions may arm timers of it (a CANCEL sent on the first 1xx
        # arms B in Proceeding); termination comes last so its report precedes TransactionTerminated.
        if next_state is not txn.state and next_state is not S.TERMINATED:
            self._enter(txn, next_state, now, out)
        for action in actions:
            self._act(action, txn, now, out, message)
        if next_state is S.TERMINATED:
            self._enter(txn, next_state, now, out)

    def _act(
        self, action: Action, txn: _Transaction, now: float, out: _Out, message: Request | Response | None
    ) -> None:
        counters = self.counters
        match action:
            case A.PASS_RESPONSE:
                assert isinstance(message, Response)
                out.events.append(ResponseReceived(txn.id, message))
            case A.PASS_ACK:
                assert isinstance(message, Request) and txn.source is not None
                out.events.append(AckReceived(message, txn.source))
            case A.SEND_ACK:
                assert isinstance(message, Response)
                txn.ack_bytes = derive.ack_for_failure(txn.request, message).serialize()
                out.commands.append(Transmit(txn.ack_bytes, txn.peer, txn.id))
            case A.RESEND_ACK:
                counters.retransmissions += 1
                out.commands.append(Transmit(txn.ack_bytes, txn.peer, txn.id))
            case A.RETRANSMIT_REQUEST:
                counters.retransmissions += 1
                out.commands.append(Transmit(txn.request_bytes, txn.peer, txn.id))
            case A.SEND_RESPONSE:
                assert isinstance(message, Response)
                self._send_response(txn, message, out)
            case A.RETRANSMIT_RESPONSE:
                if txn.last_response is not None:
                    counters.retransmissions += 1
                    out.commands.append(Transmit(txn.last_response, txn.peer, txn.id))
            case A.RESEND_OR_TRYING:
                if txn.last_response is None:
                    self._send_response(txn, derive.local_response(txn.request, 100, None), out)
                else:
                    counters.retransmissions += 1
                    out.commands.append(Transmit(txn.last_response, txn.peer, txn.id))
            case A.SEND_TRYING:
                if txn.last_response is None:
                    self._send_response(txn, derive.local_response(txn.request, 100, None), out)
            case A.SEND_PENDING_CANCEL:
                if txn.cancel_pending:
                    self._send_cancel(txn, now, out)
            case A.BACKOFF_DOUBLE:
                self._rearm(txn, txn.interval * 2, now)
            case A.BACKOFF_CAPPED:
                self._rearm(txn, min(txn.interval * 2, self.timers.t2), now)
            case A.BACKOFF_T2:
                self._rearm(txn, self.timers.t2, now)
            case A.ABSORB:
                counters.absorbed += 1
            case A.REPORT_TIMEOUT:
                counters.timeouts += 1
                out.events.append(TransactionTimedOut(txn.id))
            case A.REPORT_ACK_TIMEOUT:
                counters.ack_timeouts += 1
                out.events.append(AckTimedOut(txn.id, txn.last_status))
            case A.REPORT_TRANSPORT_ERROR:
                out.events.append(TransportError(txn.id))

    def _send_response(self, txn: _Transaction, response: Response, out: _Out) -> None:
        data = response.serialize()
        txn.last_response = data
        txn.last_status = response.status
        if response.status > 100:
            try:
                txn.last_to_tag = to_tag(response)
            except RemoteProtocolError:
                txn.last_to_tag = ""
        self._heap.disarm(txn.id, T.TRYING)
        out.commands.append(Transmit(data, txn.peer, txn.id))

    def _rearm(self, txn: _Transaction, interval: float, now: float) -> None:
        txn.interval = interval
        self._heap.arm(txn.id, _RETRANSMIT_TIMER[txn.kind], now + interval)

    def _enter(self, txn: _Transaction, state: State, now: float, out: _Out | None = None) -> None:
        heap = self._heap
        keep = _KEEP.get((txn.kind, state), frozenset())
        for name in _MACHINE_TIMERS[txn.kind]:
            if name not in keep:
                heap.disarm(txn.id, name)
        txn.state = state
        if state is S.TERMINATED:
            self._remove(txn)
            if out is not None:
                out.events.append(TransactionTerminated(txn.id))
            return
        for name in _ENTRY_TIMERS.get((txn.kind, state), ()):
            duration = self._duration(name, txn)
            if duration is not None:
                heap.arm(txn.id, name, now + duration)

    def _duration(self, name: TimerName, txn: _Transaction) -> float | None:
        """Table 4 of RFC 3261 plus RFC 6026; None: the timer does not run for this transaction."""
        cfg = self.timers
        unreliable = not txn.reliable
        match name:
            case T.A | T.E | T.G:
                if txn.reliable:
                    return None
                txn.interval = cfg.t1
                return cfg.t1
            case T.B | T.F | T.H | T.L | T.M:
                return cfg.timeout
            case T.D:
                return cfg.timer_d if unreliable else 0.0
            case T.I | T.K:
                return cfg.t4 if unreliable else 0.0
            case T.J:
                return cfg.timeout if unreliable else 0.0
            case T.TRYING:
                return self._trying_delay
        return None

    def _remove(self, txn: _Transaction) -> None:
        del self._by_id[txn.id]
        if txn.kind in (Kind.ICT, Kind.NICT):
            self._client.pop(txn.key, None)
        else:
            self._server.pop(txn.key, None)

    # ---- 2xx retransmission on behalf of the UAS core (§13.3.1.4) ---------------------------------
    def _start_ack_wait(self, txn: _Transaction, key: DialogAckKey, status: int, sent: Transmit, now: float) -> None:
        existing = self._ack_waits.get(key)
        if existing is not None:
            existing.data = sent.data  # the TU re-sent it: keep the schedule, send the newest bytes
            return
        wait = _AckWait(f"{txn.id}#2xx", txn.id, key, sent.data, sent.destination, self.timers.t1, status)
        self._ack_waits[key] = wait
        self._ack_wait_owners[wait.owner] = wait
        self._heap.arm(wait.owner, T.RETRANSMIT_2XX, now + wait.interval)
        self._heap.arm(wait.owner, T.ACK_WAIT, now + self.timers.timeout)

    def _stop_ack_wait(self, key: DialogAckKey) -> None:
        wait = self._ack_waits.pop(key, None)
        if wait is not None:
            del self._ack_wait_owners[wait.owner]
            self._heap.disarm(wait.owner, T.RETRANSMIT_2XX)
            self._heap.disarm(wait.owner, T.ACK_WAIT)

    def _ack_wait_timer(self, owner: str, name: TimerName, now: float, out: _Out) -> None:
        wait = self._ack_wait_owners.get(owner)
        if wait is None:
            return
        if name is T.ACK_WAIT:
            self._stop_ack_wait(wait.key)
            self.counters.ack_timeouts += 1
            out.events.append(AckTimedOut(wait.txn_id, wait.status))
            return
        self.counters.retransmissions += 1
        out.commands.append(Transmit(wait.data, wait.destination))
        wait.interval = min(wait.interval * 2, self.timers.t2)
        self._heap.arm(owner, T.RETRANSMIT_2XX, now + wait.interval)
