"""The transaction layer as conversations: literal SIP in, exact events and Transmit commands out.

Time is driven by the test; T1=0.5, T2=4, T4=5, so 64*T1 = 32 s.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sbc.sip.errors import LocalProtocolError, RemoteProtocolError
from sbc.sip.message import HeaderField, Request, Response, parse_datagram
from sbc.sip.transaction import (
    AckReceived,
    AckTimedOut,
    CancelReceived,
    PeerAddress,
    RequestReceived,
    ResponseReceived,
    State,
    StrayResponse,
    TimerConfig,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
    Transmit,
    TransportError,
    new_branch,
)

UDP_PEER = PeerAddress("UDP", "203.0.113.5", 5060)
TCP_PEER = PeerAddress("TCP", "203.0.113.5", 5060)
PHONE = PeerAddress("UDP", "192.0.2.10", 33333)  # a NATed phone: source port differs from its Via


def sip(*lines: str, body: bytes = b"") -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def parse(data: bytes) -> Request | Response:
    return parse_datagram(data)


def req(data: bytes) -> Request:
    msg = parse(data)
    assert isinstance(msg, Request)
    return msg


def resp(data: bytes) -> Response:
    msg = parse(data)
    assert isinstance(msg, Response)
    return msg


def tokens() -> TransactionLayer:
    counter = iter(range(1, 1_000_000))
    return TransactionLayer(random_token=lambda: f"tok{next(counter)}")


# ---- the messages of our conversations ------------------------------------------------------------
OUT_INVITE = sip(
    "INVITE sip:bob@203.0.113.5 SIP/2.0",
    "Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKc1",
    "Via: SIP/2.0/UDP 10.0.0.7:5060;branch=z9hG4bKinner",
    "Max-Forwards: 69",
    "Route: <sip:edge1.example.net;lr>",
    "Route: <sip:edge2.example.net;lr>",
    "From: <sip:alice@example.org>;tag=a1",
    "To: <sip:bob@example.net>",
    "Call-ID: call-1@198.51.100.1",
    "CSeq: 7 INVITE",
    "Contact: <sip:alice@198.51.100.1>",
    "Content-Length: 0",
)


def out_response(
    status: int, reason: str, *, method: str = "INVITE", branch: str = "z9hG4bKc1", tag: str = ""
) -> bytes:
    to = "To: <sip:bob@example.net>" + (f";tag={tag}" if tag else "")
    return sip(
        f"SIP/2.0 {status} {reason}",
        f"Via: SIP/2.0/UDP 198.51.100.1:5060;branch={branch}",
        "Via: SIP/2.0/UDP 10.0.0.7:5060;branch=z9hG4bKinner",
        "From: <sip:alice@example.org>;tag=a1",
        to,
        "Call-ID: call-1@198.51.100.1",
        f"CSeq: 7 {method}",
        "Content-Length: 0",
    )


def in_request(method: str = "INVITE", *, branch: str = "z9hG4bKp1", cseq: int = 1, to_tag: str = "") -> bytes:
    to = "To: <sip:bob@198.51.100.1>" + (f";tag={to_tag}" if to_tag else "")
    return sip(
        f"{method} sip:bob@198.51.100.1 SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.10:5060;branch={branch};rport",
        "Max-Forwards: 70",
        "From: Alice <sip:alice@example.com>;tag=ph1",
        to,
        "Call-ID: in-1@192.0.2.10",
        f"CSeq: {cseq} {method}",
        "Content-Length: 0",
    )


def in_response(request: bytes, status: int, reason: str, tag: str = "sbc1") -> Response:
    r = req(request)
    headers = [HeaderField(h.name, h.value, h.raw) for h in r.headers if h.key in ("via", "from", "call-id", "cseq")]
    to = r.get("to") or ""
    headers.insert(2, HeaderField("To", f"{to};tag={tag}" if tag and "tag=" not in to else to))
    headers.append(HeaderField("Content-Length", "0"))
    return Response(status, reason, headers)


def sent(commands: list[Transmit]) -> list[bytes]:
    return [c.data for c in commands]


# ---- INVITE client ------------------------------------------------------------------------------------
def test_ict_happy_path_100_180_200_then_accepted_absorbs_and_timer_m() -> None:
    layer = tokens()
    txn, cmds = layer.send_request(req(OUT_INVITE), UDP_PEER, now=0.0)
    assert cmds == [Transmit(OUT_INVITE, UDP_PEER, txn)]
    assert layer.state(txn) is State.CALLING
    assert layer.next_deadline() == 0.5  # Timer A

    r100 = resp(out_response(100, "Trying"))
    events, cmds = layer.receive(r100, UDP_PEER, 0.1)
    assert events == [ResponseReceived(txn, r100)] and cmds == []
    assert layer.state(txn) is State.PROCEEDING
    assert layer.next_deadline() is None  # no A or B in Proceeding

    r180 = resp(out_response(180, "Ringing", tag="b1"))
    assert layer.receive(r180, UDP_PEER, 1.0) == ([ResponseReceived(txn, r180)], [])

    r200 = resp(out_response(200, "OK", tag="b1"))
    assert layer.receive(r200, UDP_PEER, 2.0) == ([ResponseReceived(txn, r200)], [])
    assert layer.state(txn) is State.ACCEPTED
    assert layer.next_deadline() == 2.0 + 32  # Timer M

    # RFC 6026: every 2xx (retransmission or another fork) reaches the TU so it can ACK it.
    again = resp(out_response(200, "OK", tag="b1"))
    fork = resp(out_response(200, "OK", tag="b2"))
    assert layer.receive(again, UDP_PEER, 2.5) == ([ResponseReceived(txn, again)], [])
    assert layer.receive(fork, UDP_PEER, 2.6) == ([ResponseReceived(txn, fork)], [])
    # ...but a late 1xx or a non-2xx final is absorbed: no ACK, no event.
    assert layer.receive(resp(out_response(183, "Progress", tag="b3")), UDP_PEER, 3.0) == ([], [])
    assert layer.receive(resp(out_response(486, "Busy Here", tag="b4")), UDP_PEER, 3.0) == ([], [])

    # The 2xx ACK is the TU's own business: transmitted as is, no transaction.
    ack = req(
        sip(
            "ACK sip:bob@203.0.113.5 SIP/2.0",
            "Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKa2",
            "From: <sip:alice@example.org>;tag=a1",
            "To: <sip:bob@example.net>;tag=b1",
            "Call-ID: call-1@198.51.100.1",
            "CSeq: 7 ACK",
            "Content-Length: 0",
        )
    )
    assert layer.send_ack_2xx(ack, UDP_PEER) == [Transmit(ack.serialize(), UDP_PEER)]

    assert layer.tick(33.9) == ([], [])
    assert layer.tick(34.0) == ([TransactionTerminated(txn)], [])
    assert layer.state(txn) is None and layer.active_count() == 0
    late = resp(out_response(200, "OK", tag="b1"))
    assert layer.receive(late, UDP_PEER, 35.0) == ([StrayResponse(late, UDP_PEER)], [])
    assert layer.counters.stray_responses == 1
    assert layer.next_deadline() is None


def test_ict_retransmits_on_timer_a_doubling_without_cap_and_times_out_on_b() -> None:
    layer = tokens()
    txn, _ = layer.send_request(req(OUT_INVITE), UDP_PEER, now=0.0)
    fired = []
    while (deadline := layer.next_deadline()) is not None:
        events, cmds = layer.tick(deadline)
        fired.append((deadline, sent(cmds), events))
    assert [t for t, _, _ in fired] == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5, 32.0]
    assert all(data == [OUT_INVITE] for _, data, _ in fired[:-1])
    assert fired[-1][1:] == ([], [TransactionTimedOut(txn), TransactionTerminated(txn)])
    assert layer.counters.retransmissions == 6 and layer.counters.timeouts == 1
    assert layer.active_count() == 0


def test_ict_non_2xx_generates_the_ack_and_re_acks_retransmitted_finals() -> None:
    layer = tokens()
    txn, _ = layer.send_request(req(OUT_INVITE), UDP_PEER, now=0.0)
    layer.receive(resp(out_response(100, "Trying")), UDP_PEER, 0.2)
    busy = resp(out_response(486, "Busy Here", tag="b9"))
    events, cmds = layer.receive(busy, UDP_PEER, 1.0)
    expected_ack = sip(
        "ACK sip:bob@203.0.113.5 SIP/2.0",
        "Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKc1",  # the INVITE's top Via only
        "Max-Forwards: 70",
        "Route: <sip:edge1.example.net;lr>",
        "Route: <sip:edge2.example.net;lr>",
        "From: <sip:alice@example.org>;tag=a1",
        "Call-ID: call-1@198.51.100.1",
        "To: <sip:bob@example.net>;tag=b9",  # the response's To, tag included
        "CSeq: 7 ACK",
        "Content-Length: 0",
    )
    assert events == [ResponseReceived(txn, busy)]
    assert cmds == [Transmit(expected_ack, UDP_PEER, txn)]
    assert layer.state(txn) is State.COMPLETED

    # A retransmitted final is absorbed and answered with the same ACK.
    assert layer.receive(resp(out_response(486, "Busy Here", tag="b9")), UDP_PEER, 1.5) == (
        [],
        [Transmit(expected_ack, UDP_PEER, txn)],
    )
    assert layer.next_deadline() == 1.0 + 32  # Timer D
    assert layer.tick(33.0) == ([TransactionTerminated(txn)], [])


def test_ict_transport_error_terminates() -> None:
    layer = tokens()
    txn, _ = layer.send_request(req(OUT_INVITE), UDP_PEER, now=0.0)
    assert layer.transport_failed(txn, 0.01) == ([TransportError(txn), TransactionTerminated(txn)], [])
    assert layer.next_deadline() is None
    assert layer.transport_failed(txn, 0.02) == ([], [])


# ---- non-INVITE client -------------------------------------------------------------------------------
def options(branch: str = "z9hG4bKn1") -> bytes:
    return sip(
        "OPTIONS sip:203.0.113.5 SIP/2.0",
        f"Via: SIP/2.0/UDP 198.51.100.1:5060;branch={branch}",
        "Max-Forwards: 70",
        "From: <sip:sbc@198.51.100.1>;tag=o1",
        "To: <sip:203.0.113.5>",
        "Call-ID: opt-1@198.51.100.1",
        "CSeq: 1 OPTIONS",
        "Content-Length: 0",
    )


def options_response(status: int, reason: str, branch: str = "z9hG4bKn1") -> Response:
    return resp(
        sip(
            f"SIP/2.0 {status} {reason}",
            f"Via: SIP/2.0/UDP 198.51.100.1:5060;branch={branch}",
            "From: <sip:sbc@198.51.100.1>;tag=o1",
            "To: <sip:203.0.113.5>;tag=x",
            "Call-ID: opt-1@198.51.100.1",
            "CSeq: 1 OPTIONS",
            "Content-Length: 0",
        )
    )


def drain(layer: TransactionLayer, until: float) -> list[tuple[float, list[bytes], list[object]]]:
    fired: list[tuple[float, list[bytes], list[object]]] = []
    while (deadline := layer.next_deadline()) is not None and deadline <= until:
        events, cmds = layer.tick(deadline)
        fired.append((deadline, sent(cmds), list(events)))
    return fired


def test_nict_timer_e_caps_at_t2_in_trying_and_f_times_out() -> None:
    layer = tokens()
    txn, cmds = layer.send_request(req(options()), UDP_PEER, now=0.0)
    assert sent(cmds) == [options()]
    fired = drain(layer, 100)
    times = [t for t, _, _ in fired]
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5, 32.0]
    assert fired[-1][2] == [TransactionTimedOut(txn), TransactionTerminated(txn)]


def test_nict_proceeding_retransmits_every_t2_then_completed_waits_k() -> None:
    layer = tokens()
    txn, _ = layer.send_request(req(options()), UDP_PEER, now=0.0)
    assert layer.tick(0.5)[1] != []  # E at T1
    trying = options_response(100, "Trying")
    assert layer.receive(trying, UDP_PEER, 0.7) == ([ResponseReceived(txn, trying)], [])
    assert layer.state(txn) is State.PROCEEDING
    # E keeps its schedule (1.5), then runs every T2.
    fired = drain(layer, 10.0)
    assert [t for t, _, _ in fired] == [1.5, 5.5, 9.5]
    ok = options_response(200, "OK")
    assert layer.receive(ok, UDP_PEER, 10.0) == ([ResponseReceived(txn, ok)], [])
    assert layer.state(txn) is State.COMPLETED
    assert layer.next_deadline() == 15.0  # Timer K = T4
    assert layer.receive(options_response(200, "OK"), UDP_PEER, 11.0) == ([], [])
    assert layer.counters.absorbed == 1
    assert layer.tick(15.0) == ([TransactionTerminated(txn)], [])


def test_reliable_client_transactions_never_retransmit() -> None:
    layer = tokens()
    inv, _ = layer.send_request(req(OUT_INVITE), TCP_PEER, now=0.0)
    opt, _ = layer.send_request(req(options()), TCP_PEER, now=0.0)
    assert layer.next_deadline() == 32.0  # only B and F
    layer.receive(resp(out_response(486, "Busy Here", tag="t")), TCP_PEER, 1.0)
    ok = options_response(200, "OK")
    layer.receive(ok, TCP_PEER, 1.0)
    # D and K are zero on reliable transports: both end on the next tick.
    assert layer.next_deadline() == 1.0
    events, cmds = layer.tick(1.0)
    assert sorted(events, key=str) == sorted([TransactionTerminated(inv), TransactionTerminated(opt)], key=str)
    assert cmds == [] and layer.active_count() == 0 and layer.counters.retransmissions == 0


# ---- INVITE server -----------------------------------------------------------------------------------
def test_ist_486_retransmitted_on_g_until_ack_then_confirmed_then_i() -> None:
    layer = tokens()
    invite = req(in_request())
    events, cmds = layer.receive(invite, PHONE, 0.0)
    (ev,) = events
    assert isinstance(ev, RequestReceived) and ev.request is invite and ev.source == PHONE
    txn = ev.txn_id
    assert cmds == []
    # Auto 100 Trying after 200 ms without an answer from the TU (§17.2.1), to the packet's source.
    events, cmds = layer.tick(0.2)
    trying = sip(
        "SIP/2.0 100 Trying",
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKp1;rport",
        "From: Alice <sip:alice@example.com>;tag=ph1",
        "To: <sip:bob@198.51.100.1>",
        "Call-ID: in-1@192.0.2.10",
        "CSeq: 1 INVITE",
        "Content-Length: 0",
    )
    assert (events, cmds) == ([], [Transmit(trying, PHONE, txn)])

    busy = in_response(in_request(), 486, "Busy Here")
    cmds = layer.respond(txn, busy, 1.0)
    busy_bytes = busy.serialize()
    assert cmds == [Transmit(busy_bytes, PHONE, txn)]
    assert layer.state(txn) is State.COMPLETED
    fired = drain(layer, 8.6)
    assert [t for t, _, _ in fired] == [1.5, 2.5, 4.5, 8.5]  # G: T1, 2T1, 4T1, then capped at T2
    assert all(data == [busy_bytes] for _, data, _ in fired)

    # A retransmitted INVITE gets the 486 again.
    assert layer.receive(req(in_request()), PHONE, 9.0) == ([], [Transmit(busy_bytes, PHONE, txn)])
    ack = req(in_request("ACK", to_tag="sbc1"))
    assert layer.receive(ack, PHONE, 9.5) == ([], [])  # absorbed: no event for an ACK to a non-2xx
    assert layer.state(txn) is State.CONFIRMED
    assert layer.next_deadline() == 14.5  # Timer I = T4; G and H are off
    assert layer.receive(req(in_request("ACK", to_tag="sbc1")), PHONE, 10.0) == ([], [])
    assert layer.tick(14.5) == ([TransactionTerminated(txn)], [])


def test_ist_timer_h_reports_the_missing_ack() -> None:
    layer = tokens()
    (ev,), _ = layer.receive(req(in_request()), PHONE, 0.0)
    assert isinstance(ev, RequestReceived)
    layer.respond(ev.txn_id, in_response(in_request(), 480, "Temporarily Unavailable"), 0.1)
    fired = drain(layer, 100)
    assert fired[-1][0] == 32.1
    assert fired[-1][2] == [AckTimedOut(ev.txn_id, 480), TransactionTerminated(ev.txn_id)]


def test_ist_2xx_retransmission_helper_runs_until_the_ack() -> None:
    layer = tokens()
    (ev,), _ = layer.receive(req(in_request()), PHONE, 0.0)
    assert isinstance(ev, RequestReceived)
    txn = ev.txn_id
    ringing = in_response(in_request(), 180, "Ringing")
    assert sent(layer.respond(txn, ringing, 0.1)) == [ringing.serialize()]
    assert layer.tick(0.3) == ([], [])  # the TU answered: no auto 100
    # The INVITE retransmitted in Proceeding gets the latest provisional.
    assert sent(layer.receive(req(in_request()), PHONE, 0.5)[1]) == [ringing.serialize()]

    ok = in_response(in_request(), 200, "OK")
    cmds = layer.respond(txn, ok, 1.0, retransmit_2xx=True)
    ok_bytes = ok.serialize()
    assert cmds == [Transmit(ok_bytes, PHONE, txn)]
    assert layer.state(txn) is State.ACCEPTED
    # RFC 6026 Accepted: INVITE retransmissions are absorbed, not re-answered by the transaction.
    assert layer.receive(req(in_request()), PHONE, 1.2) == ([], [])
    # The UAS-core retransmissions (T1 doubling) belong to no transaction: txn_id None.
    assert layer.tick(1.5) == ([], [Transmit(ok_bytes, PHONE)])
    assert layer.tick(2.5) == ([], [Transmit(ok_bytes, PHONE)])
    assert layer.tick(4.5) == ([], [Transmit(ok_bytes, PHONE)])
    assert layer.next_deadline() == 8.5

    ack = req(in_request("ACK", branch="z9hG4bKack2xx", to_tag="sbc1"))
    assert layer.receive(ack, PHONE, 6.0) == ([AckReceived(ack, PHONE)], [])
    assert layer.next_deadline() == 33.0  # only Timer L remains
    assert drain(layer, 40) == [(33.0, [], [TransactionTerminated(txn)])]


def test_2xx_helper_gives_up_after_64_t1() -> None:
    layer = tokens()
    (ev,), _ = layer.receive(req(in_request()), PHONE, 0.0)
    assert isinstance(ev, RequestReceived)
    layer.respond(ev.txn_id, in_response(in_request(), 200, "OK"), 0.0, retransmit_2xx=True)
    fired = drain(layer, 100)
    events = [e for _, _, evs in fired for e in evs]
    assert AckTimedOut(ev.txn_id, 200) in events
    resent = [t for t, data, _ in fired if data]
    assert resent == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert layer.next_deadline() is None


def test_reliable_ist_has_no_g_and_zero_i() -> None:
    layer = TransactionLayer(trying_delay=None)
    tcp_phone = PeerAddress("TCP", "192.0.2.10", 40000)
    (ev,), _ = layer.receive(req(in_request()), tcp_phone, 0.0)
    assert isinstance(ev, RequestReceived)
    layer.respond(ev.txn_id, in_response(in_request(), 486, "Busy Here"), 1.0)
    assert layer.next_deadline() == 33.0  # H only
    layer.receive(req(in_request("ACK", to_tag="sbc1")), tcp_phone, 2.0)
    assert layer.next_deadline() == 2.0
    assert layer.tick(2.0) == ([TransactionTerminated(ev.txn_id)], [])
    assert layer.counters.retransmissions == 0


def test_tu_errors_raise_local_protocol_error() -> None:
    layer = tokens()
    (ev,), _ = layer.receive(req(in_request()), PHONE, 0.0)
    assert isinstance(ev, RequestReceived)
    layer.respond(ev.txn_id, in_response(in_request(), 486, "Busy Here"), 0.1)
    with pytest.raises(LocalProtocolError):
        layer.respond(ev.txn_id, in_response(in_request(), 200, "OK"), 0.2)
    with pytest.raises(LocalProtocolError):
        layer.respond("nope", in_response(in_request(), 200, "OK"), 0.2)
    with pytest.raises(LocalProtocolError):
        layer.send_request(req(in_request("ACK")), UDP_PEER, 0.0)
    layer.send_request(req(options()), UDP_PEER, 0.0)
    with pytest.raises(LocalProtocolError):
        layer.send_request(req(options()), UDP_PEER, 0.0)  # branch already in use


# ---- non-INVITE server -------------------------------------------------------------------------------
def test_nist_absorbs_retransmissions_and_resends_the_last_response() -> None:
    layer = tokens()
    bye = in_request("BYE", branch="z9hG4bKbye", cseq=2, to_tag="sbc1")
    (ev,), cmds = layer.receive(req(bye), PHONE, 0.0)
    assert isinstance(ev, RequestReceived) and cmds == []
    assert layer.state(ev.txn_id) is State.TRYING
    assert layer.receive(req(bye), PHONE, 0.5) == ([], [])  # Trying: nothing to resend
    ok = in_response(bye, 200, "OK", tag="")
    ok_bytes = ok.serialize()
    assert layer.respond(ev.txn_id, ok, 1.0) == [Transmit(ok_bytes, PHONE, ev.txn_id)]
    assert layer.receive(req(bye), PHONE, 1.5) == ([], [Transmit(ok_bytes, PHONE, ev.txn_id)])
    # A second final is discarded (§17.2.2), not an error.
    assert layer.respond(ev.txn_id, in_response(bye, 500, "Oops", tag=""), 1.6) == []
    assert layer.counters.absorbed == 2
    assert layer.next_deadline() == 33.0  # Timer J = 64*T1
    assert layer.tick(33.0) == ([TransactionTerminated(ev.txn_id)], [])


def test_responses_follow_section_18_2_2_when_not_symmetric() -> None:
    layer = TransactionLayer(symmetric_responses=False, trying_delay=None)
    no_rport = in_request("OPTIONS", branch="z9hG4bKo").replace(b";rport", b"")
    (ev,), _ = layer.receive(req(no_rport), PHONE, 0.0)
    assert isinstance(ev, RequestReceived)
    (cmd,) = layer.respond(ev.txn_id, in_response(no_rport, 200, "OK"), 0.0)
    assert cmd.destination == PeerAddress("UDP", "192.0.2.10", 5060)  # received address, sent-by port
    (ev,), _ = layer.receive(req(in_request("OPTIONS", branch="z9hG4bKr")), PHONE, 0.0)
    assert isinstance(ev, RequestReceived)
    (cmd,) = layer.respond(ev.txn_id, in_response(no_rport, 200, "OK"), 0.0)
    assert cmd.destination == PHONE  # rport: back to the source port


# ---- CANCEL --------------------------------------------------------------------------------------------
def test_server_cancel_matches_the_invite_and_is_answered_200() -> None:
    layer = tokens()
    (ev,), _ = layer.receive(req(in_request()), PHONE, 0.0)
    assert isinstance(ev, RequestReceived)
    layer.respond(ev.txn_id, in_response(in_request(), 180, "Ringing", tag="sbc7"), 0.1)
    cancel_bytes = in_request("CANCEL")
    cancel = req(cancel_bytes)
    events, cmds = layer.receive(cancel, PHONE, 1.0)
    ok = sip(
        "SIP/2.0 200 OK",
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKp1;rport",
        "From: Alice <sip:alice@example.com>;tag=ph1",
        "To: <sip:bob@198.51.100.1>;tag=sbc7",  # the tag of the INVITE's responses (§9.2)
        "Call-ID: in-1@192.0.2.10",
        "CSeq: 1 CANCEL",
        "Content-Length: 0",
    )
    assert events == [CancelReceived(ev.txn_id, cancel, PHONE)]
    assert sent(cmds) == [ok]
    # The CANCEL is its own transaction: a retransmission gets the 200 again, no new event.
    events, cmds = layer.receive(req(cancel_bytes), PHONE, 1.2)
    assert events == [] and sent(cmds) == [ok]
    assert layer.state(ev.txn_id) is State.PROCEEDING  # the TU answers 487
    layer.respond(ev.txn_id, in_response(in_request(), 487, "Request Terminated", tag="sbc7"), 1.3)
    assert layer.state(ev.txn_id) is State.COMPLETED


def test_server_cancel_without_invite_gets_481() -> None:
    layer = tokens()
    events, cmds = layer.receive(req(in_request("CANCEL", branch="z9hG4bKnothing")), PHONE, 0.0)
    assert events == []
    (cmd,) = cmds
    answer = resp(cmd.data)
    assert answer.status == 481 and answer.to.tag == "tok1" and answer.cseq == (1, "CANCEL")


def test_server_cancel_after_final_is_200_without_event() -> None:
    layer = tokens()
    (ev,), _ = layer.receive(req(in_request()), PHONE, 0.0)
    assert isinstance(ev, RequestReceived)
    layer.respond(ev.txn_id, in_response(in_request(), 486, "Busy Here"), 0.1)
    events, cmds = layer.receive(req(in_request("CANCEL")), PHONE, 0.5)
    assert events == [] and resp(cmds[0].data).status == 200


OUT_CANCEL = sip(
    "CANCEL sip:bob@203.0.113.5 SIP/2.0",
    "Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKc1",
    "Max-Forwards: 70",
    "Route: <sip:edge1.example.net;lr>",
    "Route: <sip:edge2.example.net;lr>",
    "From: <sip:alice@example.org>;tag=a1",
    "Call-ID: call-1@198.51.100.1",
    "To: <sip:bob@example.net>",
    "CSeq: 7 CANCEL",
    "Content-Length: 0",
)


def test_client_cancel_waits_for_the_first_provisional() -> None:
    layer = tokens()
    txn, _ = layer.send_request(req(OUT_INVITE), UDP_PEER, now=0.0)
    assert layer.cancel(txn, 0.1) == []  # Calling: no provisional yet (§9.1)
    ringing = resp(out_response(180, "Ringing", tag="b1"))
    events, cmds = layer.receive(ringing, UDP_PEER, 0.3)
    assert events == [ResponseReceived(txn, ringing)]
    assert cmds == [Transmit(OUT_CANCEL, UDP_PEER, f"{txn}/CANCEL")]
    assert layer.cancel(txn, 0.4) == []  # once is enough
    assert layer.state(f"{txn}/CANCEL") is State.TRYING
    ok = resp(out_response(200, "OK", method="CANCEL", tag="b1"))
    assert layer.receive(ok, UDP_PEER, 0.5) == ([ResponseReceived(f"{txn}/CANCEL", ok)], [])
    terminated = resp(out_response(487, "Request Terminated", tag="b1"))
    events, cmds = layer.receive(terminated, UDP_PEER, 0.6)
    assert events == [ResponseReceived(txn, terminated)]
    assert [req(c.data).method for c in cmds] == ["ACK"]


def test_client_cancel_in_proceeding_is_sent_at_once_and_gives_up_after_64_t1() -> None:
    layer = tokens()
    txn, _ = layer.send_request(req(OUT_INVITE), UDP_PEER, now=0.0)
    layer.receive(resp(out_response(100, "Trying")), UDP_PEER, 0.1)
    assert sent(layer.cancel(txn, 1.0)) == [OUT_CANCEL]
    # No final ever comes: §9.1 lets the INVITE go 64*T1 after the CANCEL.
    fired = drain(layer, 100)
    events = [e for _, _, evs in fired for e in evs]
    assert TransactionTimedOut(txn) in events and TransactionTerminated(txn) in events
    assert layer.active_count() == 0


def test_client_cancel_is_dropped_when_the_final_comes_first() -> None:
    layer = tokens()
    txn, _ = layer.send_request(req(OUT_INVITE), UDP_PEER, now=0.0)
    assert layer.cancel(txn, 0.1) == []
    _, cmds = layer.receive(resp(out_response(486, "Busy Here", tag="b1")), UDP_PEER, 0.2)
    assert [req(c.data).method for c in cmds] == ["ACK"]
    assert layer.cancel(txn, 0.3) == []
    assert layer.state(f"{txn}/CANCEL") is None


# ---- RFC 2543 peers (no magic cookie) ---------------------------------------------------------------
def old_request(method: str, *, cseq_method: str | None = None, to_tag: str = "") -> bytes:
    to = "To: <sip:bob@198.51.100.1>" + (f";tag={to_tag}" if to_tag else "")
    return sip(
        f"{method} sip:bob@198.51.100.1 SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.20:5060",
        "From: <sip:old@example.com>;tag=o1",
        to,
        "Call-ID: old-1@192.0.2.20",
        f"CSeq: 4 {cseq_method or method}",
        "Content-Length: 0",
    )


def test_rfc2543_matching_without_magic_cookie() -> None:
    layer = tokens()
    old = PeerAddress("UDP", "192.0.2.20", 5060)
    (ev,), _ = layer.receive(req(old_request("INVITE")), old, 0.0)
    assert isinstance(ev, RequestReceived)
    # Retransmission: same Request-URI, From tag, Call-ID, CSeq, top Via.
    assert layer.receive(req(old_request("INVITE")), old, 0.1)[0] == []
    busy = in_response(old_request("INVITE"), 486, "Busy Here", tag="s2543")
    layer.respond(ev.txn_id, busy, 0.2)
    # An ACK with another To tag does not match (it is left to the TU)...
    stray_ack = req(old_request("ACK", to_tag="other"))
    assert layer.receive(stray_ack, old, 0.3) == ([AckReceived(stray_ack, old)], [])
    # ...the one carrying our response's tag does.
    assert layer.receive(req(old_request("ACK", to_tag="s2543")), old, 0.4) == ([], [])
    assert layer.state(ev.txn_id) is State.CONFIRMED


def test_rfc2543_cancel_matches_the_invite() -> None:
    layer = tokens()
    old = PeerAddress("UDP", "192.0.2.20", 5060)
    (ev,), _ = layer.receive(req(old_request("INVITE")), old, 0.0)
    assert isinstance(ev, RequestReceived)
    events, cmds = layer.receive(req(old_request("CANCEL")), old, 0.5)
    assert [type(e) for e in events] == [CancelReceived] and resp(cmds[0].data).status == 200


# ---- garbage never raises -----------------------------------------------------------------------------
def test_unmatched_and_broken_inputs_never_raise() -> None:
    layer = tokens()
    # No Via at all (hand-built; the parser would have refused it).
    layer.receive(Request("INVITE", "sip:x@y", [HeaderField("CSeq", "1 INVITE")]), PHONE, 0.0)
    layer.receive(Response(200, "OK", [HeaderField("Via", "SIP/2.0/UDP h;branch=z9hG4bKx")]), PHONE, 0.0)
    layer.receive(Request("ACK", "sip:x@y", [HeaderField("Via", "garbage")]), PHONE, 0.0)
    layer.receive(Request("CANCEL", "sip:x@y", [HeaderField("Via", "SIP/2.0/UDP h;branch=z9hG4bKx")]), PHONE, 0.0)
    assert layer.counters.malformed == 4
    # A response whose branch we never used is stray; one with no branch too.
    nobranch = resp(options_response(200, "OK").serialize().replace(b";branch=z9hG4bKn1", b""))
    events, _ = layer.receive(nobranch, UDP_PEER, 0.0)
    assert events == [] and layer.counters.malformed == 5
    unknown = options_response(200, "OK", branch="z9hG4bKnever")
    assert layer.receive(unknown, UDP_PEER, 0.0) == ([StrayResponse(unknown, UDP_PEER)], [])
    # A lone ACK for nothing goes to the TU (it may be a 2xx ACK for a dialog).
    ack = req(in_request("ACK", branch="z9hG4bKlone", to_tag="z"))
    assert layer.receive(ack, PHONE, 0.0) == ([AckReceived(ack, PHONE)], [])
    assert layer.active_count() == 0


RFC4475 = Path(__file__).parent / "rfc4475"


@pytest.mark.skipif(not RFC4475.is_dir(), reason="RFC 4475 torture messages not present")
def test_rfc4475_torture_messages_never_raise() -> None:
    layer = tokens()
    now = 0.0
    for path in sorted(RFC4475.glob("*.dat")):
        try:
            msg = parse_datagram(path.read_bytes())
        except RemoteProtocolError:
            continue
        now += 0.1
        events, _ = layer.receive(msg, PHONE, now)
        for ev in events:
            if isinstance(ev, RequestReceived):
                layer.respond(ev.txn_id, in_response_for(ev.request, 400), now)
        layer.tick(now)
    layer.tick(now + 1000)


def in_response_for(request: Request, status: int) -> Response:
    headers = [
        HeaderField(h.name, h.value, h.raw)
        for h in request.headers
        if h.key in ("via", "from", "to", "call-id", "cseq")
    ]
    return Response(status, "Bad", headers)


def test_new_branch_has_the_magic_cookie_and_is_injectable() -> None:
    assert new_branch(lambda: "abc") == "z9hG4bKabc"
    assert new_branch().startswith("z9hG4bK") and new_branch() != new_branch()
    assert tokens().new_branch() == "z9hG4bKtok1"


def test_timer_config_defaults() -> None:
    cfg = TimerConfig()
    assert (cfg.t1, cfg.t2, cfg.t4, cfg.timeout) == (0.5, 4.0, 5.0, 32.0)
