"""Hypothesis walks each transaction machine through random interleavings of peer messages, TU calls,
transport errors and clock ticks, and checks the invariants that must hold whatever the order:

- the layer never raises on peer input (only `respond` may raise LocalProtocolError, for an illegal call);
- a transaction that reported TransactionTerminated is gone (`state` is None), reports it once, and no
  Transmit ever names it again; no live transaction is ever in the Terminated state;
- after `tick(now)` nothing is due: `next_deadline()` is None or later than `now`;
- given enough time, every transaction that does not wait for the TU terminates and no timer stays armed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from sbc.sip.errors import LocalProtocolError
from sbc.sip.message import HeaderField, Request, Response, parse_datagram
from sbc.sip.transaction import (
    Command,
    Event,
    Kind,
    PeerAddress,
    RequestReceived,
    ResponseReceived,
    State,
    TransactionLayer,
    TransactionTerminated,
    Transmit,
)

PEER = PeerAddress("UDP", "203.0.113.5", 5060)
TCP_PEER = PeerAddress("TCP", "203.0.113.5", 5060)

_LIVE_STATES = {
    Kind.ICT: {State.CALLING, State.PROCEEDING, State.COMPLETED, State.ACCEPTED},
    Kind.NICT: {State.TRYING, State.PROCEEDING, State.COMPLETED},
    Kind.IST: {State.PROCEEDING, State.COMPLETED, State.CONFIRMED, State.ACCEPTED},
    Kind.NIST: {State.TRYING, State.PROCEEDING, State.COMPLETED},
}


def sip(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def request(method: str, *, branch: str, cseq_method: str | None = None, to_tag: str = "") -> Request:
    to = "To: <sip:bob@example.net>" + (f";tag={to_tag}" if to_tag else "")
    msg = parse_datagram(
        sip(
            f"{method} sip:bob@203.0.113.5 SIP/2.0",
            f"Via: SIP/2.0/UDP 198.51.100.1:5060;branch={branch}",
            "Max-Forwards: 70",
            "From: <sip:alice@example.org>;tag=a1",
            to,
            "Call-ID: prop@198.51.100.1",
            f"CSeq: 1 {cseq_method or method}",
            "Content-Length: 0",
        )
    )
    assert isinstance(msg, Request)
    return msg


def response(status: int, *, branch: str, method: str, to_tag: str = "t1") -> Response:
    msg = parse_datagram(
        sip(
            f"SIP/2.0 {status} Whatever",
            f"Via: SIP/2.0/UDP 198.51.100.1:5060;branch={branch}",
            "From: <sip:alice@example.org>;tag=a1",
            f"To: <sip:bob@example.net>;tag={to_tag}",
            "Call-ID: prop@198.51.100.1",
            f"CSeq: 1 {method}",
            "Content-Length: 0",
        )
    )
    assert isinstance(msg, Response)
    return msg


def answer(req: Request, status: int, to_tag: str = "t1") -> Response:
    headers = [HeaderField(h.name, h.value) for h in req.headers if h.key in ("via", "from", "call-id", "cseq")]
    headers.append(HeaderField("To", f"<sip:bob@example.net>;tag={to_tag}"))
    return Response(status, "Whatever", headers)


@dataclass
class Checker:
    layer: TransactionLayer
    source: PeerAddress = PEER
    now: float = 0.0
    terminated: set[str] = field(default_factory=set)
    seen: set[str] = field(default_factory=set)

    def check(self, events: list[Event], commands: list[Command]) -> None:
        for cmd in commands:
            assert isinstance(cmd, Transmit)
            assert cmd.txn_id not in self.terminated, f"Transmit after termination of {cmd.txn_id}"
            if cmd.txn_id is not None:
                self.seen.add(cmd.txn_id)
        for ev in events:
            if isinstance(ev, RequestReceived):
                self.seen.add(ev.txn_id)
            if isinstance(ev, TransactionTerminated):
                assert ev.txn_id not in self.terminated, "terminated twice"
                self.terminated.add(ev.txn_id)
        for txn_id in self.terminated:
            assert self.layer.state(txn_id) is None
        for txn_id in self.seen - self.terminated:
            kind = self.layer.kind(txn_id)
            state = self.layer.state(txn_id)
            assert kind is not None and state is not None, f"{txn_id} vanished without TransactionTerminated"
            assert state in _LIVE_STATES[kind]

    def tick(self, dt: float) -> None:
        self.now += dt
        self.check(*self.layer.tick(self.now))
        deadline = self.layer.next_deadline()
        assert deadline is None or deadline > self.now

    def receive(self, msg: Request | Response) -> list[Event]:
        events, commands = self.layer.receive(msg, self.source, self.now)
        self.check(events, commands)
        return events

    def settle(self) -> None:
        for _ in range(3):
            self.tick(1000.0)


delays = st.sampled_from([0.0, 0.1, 0.2, 0.5, 1.0, 2.0, 4.0, 5.0, 16.0, 32.0, 40.0])


# ---- client machines -----------------------------------------------------------------------------------
ict_ops = st.lists(
    st.one_of(
        st.tuples(st.just("recv"), st.sampled_from([100, 180, 183, 200, 486, 603]), st.sampled_from(["t1", "t2"])),
        st.tuples(st.just("cancel_resp"), st.sampled_from([200, 481]), st.just("t1")),
        st.tuples(st.just("tick"), delays, st.just("")),
        st.tuples(st.just("cancel"), st.just(0), st.just("")),
        st.tuples(st.just("transport_error"), st.just(0), st.just("")),
        st.tuples(st.just("stray"), st.sampled_from([200, 486]), st.just("x")),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(ops=ict_ops, reliable=st.booleans())
def test_invite_client_random_walk(ops: list[tuple[str, int | float, str]], reliable: bool) -> None:
    layer = TransactionLayer()
    c = Checker(layer)
    txn, commands = layer.send_request(
        request("INVITE", branch="z9hG4bKict"), TCP_PEER if reliable else PEER, c.now, reliable
    )
    c.seen.add(txn)
    c.check([], commands)
    for op, arg, tag in ops:
        if op == "recv":
            c.receive(response(int(arg), branch="z9hG4bKict", method="INVITE", to_tag=tag))
        elif op == "cancel_resp":
            c.receive(response(int(arg), branch="z9hG4bKict", method="CANCEL", to_tag=tag))
        elif op == "tick":
            c.tick(float(arg))
        elif op == "cancel":
            c.check([], layer.cancel(txn, c.now))
            if layer.state(f"{txn}/CANCEL") is not None:
                c.seen.add(f"{txn}/CANCEL")
        elif op == "transport_error":
            c.check(*layer.transport_failed(txn, c.now))
        else:
            c.receive(response(int(arg), branch="z9hG4bKgone", method="INVITE", to_tag=tag))
    c.settle()
    # An INVITE with a provisional and no CANCEL waits for its final forever (no timer in Proceeding).
    state = layer.state(txn)
    assert state is None or (state is State.PROCEEDING and layer.active_count() == 1)
    if state is None:
        assert layer.active_count() == 0 and layer.next_deadline() is None


nict_ops = st.lists(
    st.one_of(
        st.tuples(st.just("recv"), st.sampled_from([100, 180, 200, 202, 404, 503])),
        st.tuples(st.just("tick"), delays),
        st.tuples(st.just("transport_error"), st.just(0)),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(ops=nict_ops, reliable=st.booleans())
def test_non_invite_client_random_walk(ops: list[tuple[str, int | float]], reliable: bool) -> None:
    layer = TransactionLayer()
    c = Checker(layer)
    txn, commands = layer.send_request(request("BYE", branch="z9hG4bKnict", to_tag="t1"), PEER, c.now, reliable)
    c.seen.add(txn)
    c.check([], commands)
    passed_finals = 0
    for op, arg in ops:
        if op == "recv":
            events = c.receive(response(int(arg), branch="z9hG4bKnict", method="BYE"))
            passed_finals += sum(1 for e in events if isinstance(e, ResponseReceived) and int(arg) >= 200)
        elif op == "tick":
            c.tick(float(arg))
        else:
            c.check(*layer.transport_failed(txn, c.now))
    assert passed_finals <= 1  # the TU sees exactly one final at most
    c.settle()
    assert layer.active_count() == 0 and layer.next_deadline() is None


# ---- server machines -----------------------------------------------------------------------------------
ist_ops = st.lists(
    st.one_of(
        st.tuples(st.just("invite"), st.just(0)),
        st.tuples(st.just("ack"), st.sampled_from(["same-branch", "new-branch"])),
        st.tuples(st.just("cancel"), st.just(0)),
        st.tuples(st.just("respond"), st.sampled_from([100, 180, 200, 486])),
        st.tuples(st.just("respond_2xx_helper"), st.just(200)),
        st.tuples(st.just("tick"), delays),
        st.tuples(st.just("transport_error"), st.just(0)),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(ops=ist_ops, transport=st.sampled_from(["UDP", "TCP"]), auto_trying=st.booleans())
def test_invite_server_random_walk(ops: list[tuple[str, int | float | str]], transport: str, auto_trying: bool) -> None:
    layer = TransactionLayer(trying_delay=0.2 if auto_trying else None)
    c = Checker(layer, source=PeerAddress(transport, PEER.host, PEER.port))
    invite = request("INVITE", branch="z9hG4bKist")
    events, commands = layer.receive(invite, c.source, c.now)
    c.check(events, commands)
    (first,) = events
    assert isinstance(first, RequestReceived)
    txn = first.txn_id
    for op, arg in ops:
        if op == "invite":
            c.receive(request("INVITE", branch="z9hG4bKist"))
        elif op == "ack":
            branch = "z9hG4bKist" if arg == "same-branch" else "z9hG4bKack"
            c.receive(request("ACK", branch=branch, cseq_method="ACK", to_tag="t1"))
        elif op == "cancel":
            c.receive(request("CANCEL", branch="z9hG4bKist"))
        elif op in ("respond", "respond_2xx_helper"):
            state = layer.state(txn)
            try:
                commands = layer.respond(txn, answer(invite, int(arg)), c.now, retransmit_2xx=op != "respond")
            except LocalProtocolError:
                assert layer.state(txn) == state  # refused without side effects
                continue
            c.check([], commands)
        elif op == "tick":
            c.tick(float(arg))
        else:
            c.check(*layer.transport_failed(txn, c.now))
    c.settle()
    live = [t for t in c.seen - c.terminated]
    assert all(layer.state(t) is State.PROCEEDING for t in live)  # only what the TU never answered
    assert layer.active_count() == len(live)
    assert layer.next_deadline() is None


nist_ops = st.lists(
    st.one_of(
        st.tuples(st.just("request"), st.just(0)),
        st.tuples(st.just("respond"), st.sampled_from([100, 180, 200, 404])),
        st.tuples(st.just("tick"), delays),
        st.tuples(st.just("transport_error"), st.just(0)),
        st.tuples(st.just("garbage"), st.just(0)),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(ops=nist_ops, reliable=st.booleans())
def test_non_invite_server_random_walk(ops: list[tuple[str, int | float]], reliable: bool) -> None:
    layer = TransactionLayer()
    source = TCP_PEER if reliable else PEER
    c = Checker(layer, source=source)
    bye = request("BYE", branch="z9hG4bKnist", to_tag="t1")
    events, commands = layer.receive(bye, source, c.now)
    c.check(events, commands)
    (first,) = events
    assert isinstance(first, RequestReceived)
    txn = first.txn_id
    for op, arg in ops:
        if op == "request":
            c.receive(request("BYE", branch="z9hG4bKnist", to_tag="t1"))
        elif op == "respond":
            state = layer.state(txn)
            try:
                c.check([], layer.respond(txn, answer(bye, int(arg)), c.now))
            except LocalProtocolError:
                assert layer.state(txn) == state
        elif op == "tick":
            c.tick(float(arg))
        elif op == "transport_error":
            c.check(*layer.transport_failed(txn, c.now))
        else:
            c.receive(Request("BYE", "sip:x", [HeaderField("Via", "SIP/2.0/UDP ;;;")]))
    c.settle()
    for txn_id in c.seen - c.terminated:
        assert layer.state(txn_id) in (State.TRYING, State.PROCEEDING)  # waiting for the TU


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=300), prefix=st.sampled_from([b"", b"INVITE sip:a@b SIP/2.0\r\n", b"SIP/2.0 200 OK\r\n"])
)
def test_whatever_parses_never_makes_the_layer_raise(data: bytes, prefix: bytes) -> None:
    try:
        msg = parse_datagram(prefix + data)
    except Exception:  # the parser's own business; only what it accepts reaches the layer
        return
    layer = TransactionLayer()
    layer.receive(msg, PEER, 0.0)
    layer.tick(100.0)
