"""StreamGuard: connection admission (in total, per source), idle/header/body timeouts by sweep,
size and buffer limits, every one counted and none raised. The clock is passed in."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from sbc.config.model import StreamLimits
from sbc.sip.framing import FramingLimit
from sbc.transport.limits import GuardedConnection, StreamGuard, StreamLimitHit

HEAD = (
    b"OPTIONS sip:bob@198.18.0.2 SIP/2.0\r\nVia: SIP/2.0/TCP 198.18.0.1:5060;branch=z9hG4bK1\r\n"
    b"Max-Forwards: 70\r\nTo: <sip:bob@198.18.0.2>\r\nFrom: <sip:alice@198.18.0.1>;tag=1\r\n"
    b"Call-ID: c1@198.18.0.1\r\nCSeq: 1 OPTIONS\r\n"
)


def message(body: bytes = b"") -> bytes:
    return HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body


@dataclass
class FakeConnection:
    closed: bool = False

    def abort(self) -> None:
        self.closed = True


def admit(
    guard: StreamGuard, source: str, now: float = 0.0, *, inbound: bool = True
) -> tuple[GuardedConnection | None, FakeConnection]:
    conn = FakeConnection()
    framer = guard.new_framer()
    return guard.admit(source, framer, conn.abort, inbound=inbound, now=now), conn


def admitted(guard: StreamGuard, source: str) -> tuple[GuardedConnection, FakeConnection]:
    tracked, conn = admit(guard, source)
    assert tracked is not None
    return tracked, conn


def test_total_and_per_source_limits_refuse_and_count() -> None:
    guard = StreamGuard(StreamLimits(connections=5, connections_per_source=2))
    assert all(admit(guard, "198.18.0.1")[0] is not None for _ in range(2))
    assert admit(guard, "198.18.0.1")[0] is None  # a third from the same source
    for i in range(3):
        assert admit(guard, f"198.18.1.{i}")[0] is not None
    assert admit(guard, "198.18.2.1")[0] is None  # the sixth in total
    assert guard.counters[StreamLimitHit.PER_SOURCE] == 1
    assert guard.counters[StreamLimitHit.CONNECTIONS] == 1
    report = guard.report()
    assert report["connections"] == 5 and report["sources"] == 4 and report["accepted_total"] == 5
    assert report["limits"] == {**dict.fromkeys((h.value for h in StreamLimitHit), 0), "connections": 1,
                                "connections_per_source": 1}  # fmt: skip


def test_a_released_connection_makes_room_again() -> None:
    guard = StreamGuard(StreamLimits(connections=2, connections_per_source=1))
    first, _ = admitted(guard, "198.18.0.1")
    assert admit(guard, "198.18.0.1")[0] is None
    guard.release(first)
    guard.release(first)  # twice: no effect
    assert admit(guard, "198.18.0.1")[0] is not None
    assert guard.report()["connections_inbound"] == 1


def test_connections_the_sbc_opens_are_counted_but_never_refused() -> None:
    guard = StreamGuard(StreamLimits(connections=1, connections_per_source=1))
    assert admit(guard, "198.18.0.1")[0] is not None
    assert admit(guard, "198.18.0.1", inbound=False)[0] is not None
    assert guard.report()["connections"] == 2 and guard.report()["opened_total"] == 1
    assert admit(guard, "198.18.0.2")[0] is None  # peers' connections are still limited


def test_slowloris_header_block_is_closed_at_the_header_timeout() -> None:
    guard = StreamGuard(StreamLimits(header_timeout_s=2.0, idle_timeout_s=600.0))
    tracked, conn = admitted(guard, "198.18.0.1")
    framer = tracked.framer
    now = 0.0
    data = message()
    for i in range(len(data) - 1):  # one byte a quarter second: never idle, never a whole head
        framer.feed(data[i : i + 1])
        assert framer.next_message() is None
        now += 0.25
        closed = guard.sweep(now)
        if closed:
            break
    assert conn.closed and closed[0][1] is StreamLimitHit.HEADER_TIMEOUT
    assert 2.0 <= now <= 2.5
    assert guard.counters[StreamLimitHit.HEADER_TIMEOUT] == 1
    assert guard.sweep(now + 10) == []  # closing: not counted twice before the transport releases it


def test_messages_that_complete_in_time_reset_the_header_clock() -> None:
    guard = StreamGuard(StreamLimits(header_timeout_s=2.0))
    tracked, conn = admitted(guard, "198.18.0.1")
    framer = tracked.framer
    data = message()
    now = 0.0
    for _ in range(10):  # ten messages, each taking 1.5 s to arrive: 15 s on the connection in all
        framer.feed(data[:40])
        assert framer.next_message() is None
        now += 0.75
        assert guard.sweep(now) == []
        framer.feed(data[40:])
        assert framer.next_message() is not None
        now += 0.75
        assert guard.sweep(now) == []
    assert not conn.closed


def test_slow_body_is_closed_at_the_body_timeout() -> None:
    guard = StreamGuard(StreamLimits(header_timeout_s=2.0, body_timeout_s=3.0))
    tracked, conn = admitted(guard, "198.18.0.1")
    framer = tracked.framer
    framer.feed(message(b"x" * 100)[:-50])
    assert framer.next_message() is None
    now = 0.0
    while not conn.closed and now < 10:
        now += 0.5
        framer.feed(b"x")  # a byte now and then: not idle
        guard.sweep(now)
    assert conn.closed and guard.counters[StreamLimitHit.BODY_TIMEOUT] == 1 and 3.0 <= now <= 4.0


def test_idle_connection_is_closed_and_traffic_keeps_it_open() -> None:
    guard = StreamGuard(StreamLimits(idle_timeout_s=30.0))
    _, quiet_conn = admitted(guard, "198.18.0.1")
    chatty, chatty_conn = admitted(guard, "198.18.0.2")
    now = 0.0
    while now < 40:
        now += 1.0
        if now % 20 == 0:
            chatty.framer.feed(b"\r\n\r\n")  # a keep-alive ping
            assert chatty.framer.next_message() is None
        guard.sweep(now)
    assert quiet_conn.closed and not chatty_conn.closed
    assert guard.counters[StreamLimitHit.IDLE] == 1


def test_framing_and_buffer_limits_are_counted_by_name() -> None:
    guard = StreamGuard(StreamLimits(max_body_bytes=10))
    tracked, _ = admitted(guard, "198.18.0.1")
    assert tracked.framer.max_body_size == 10
    guard.framing_limit(FramingLimit.BODY_SIZE, "198.18.0.1", 0.0)
    guard.framing_limit(FramingLimit.HEADER_SIZE, "198.18.0.1", 0.0)
    guard.over_buffer_hit(tracked, 0.0)
    guard.over_buffer_hit(tracked, 0.0)  # the same connection: once
    limits = guard.report()["limits"]
    assert isinstance(limits, dict)
    assert (limits["body_too_large"], limits["header_too_large"], limits["buffer_full"]) == (1, 1, 1)


def test_a_limit_is_logged_once_a_minute_per_source(caplog: pytest.LogCaptureFixture) -> None:
    guard = StreamGuard(StreamLimits(connections=1, connections_per_source=1))
    admit(guard, "198.18.0.1")
    with caplog.at_level("WARNING", logger="sbc.transport"):
        for i in range(100):
            admit(guard, "198.18.0.1", now=i * 0.1)
        admit(guard, "198.18.0.1", now=61.0)
    assert guard.counters[StreamLimitHit.CONNECTIONS] == 101  # the total is checked first
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and all('"event": "transport.limit"' in line for line in lines)


def test_sweep_interval_follows_the_shortest_timeout() -> None:
    assert StreamGuard(StreamLimits(header_timeout_s=0.4)).sweep_interval_s == pytest.approx(0.1)
    assert StreamGuard(StreamLimits()).sweep_interval_s == 1.0
    assert StreamGuard(StreamLimits(header_timeout_s=0.01)).sweep_interval_s == 0.05


def test_sbc_status_prints_connections_limits_reached_and_refused_tls_peers() -> None:
    from sbc.cli import _transport_lines
    from sbc.control.contract import TransportReport, decode

    guard = StreamGuard(StreamLimits(connections=1, connections_per_source=1))
    admit(guard, "198.18.0.1")
    admit(guard, "198.18.0.2")
    refused = {
        "realm": "wan",
        "peer": "tls:198.18.0.9:5061",
        "server_name": "sip.example",
        "verified": False,
        "reason": "Hostname mismatch",
    }
    report = decode(TransportReport, {**guard.report(), "tls_peers": [refused]})
    assert _transport_lines(report) == [
        "tcp/tls: 1 connections (peak 1), limits reached: connections 1",
        "tls peer tls:198.18.0.9:5061 (sip.example) REFUSED: Hostname mismatch",
    ]
