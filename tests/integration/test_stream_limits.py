"""TCP limits on a live SBC: a thousand half-open connections (half a header block, then nothing)
do not stop a legitimate call over TCP, and the header timeout closes them all; one source gets no
more connections than its limit. Every closing is counted in `sbc status`."""

from __future__ import annotations

import contextlib
import selectors
import socket
import time
from pathlib import Path

import pytest

from tests.integration.harness import (
    LAN_SBC,
    NET,
    PHONE,
    SBC_PORT,
    TRUNK,
    TRUNK_PORT,
    SbcProcess,
    running_sbc,
    sbc_config,
    sipp,
    sipp_available,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sipp_available(), reason="SIPp (Debian package sip-tester) is not installed"),
]

HALF_OPEN = 1000
SOURCES = 20  # 127.N.1.100-119: 50 half-open connections each
PER_SOURCE = 60
HEADER_TIMEOUT_S = 10  # opening a thousand connections on a busy 2-core machine can take seconds
LIMITS = f"""
limits:
  stream:
    connections: 1100
    connections_per_source: {PER_SOURCE}
    header_timeout_s: {HEADER_TIMEOUT_S}
"""
HALF_HEADER = (
    f"INVITE sip:bob@{LAN_SBC} SIP/2.0\r\nVia: SIP/2.0/TCP 127.{NET}.1.100:5999;branch=z9hG4bKslow\r\n"
    "Max-Forwards: 70\r\nFrom: <sip:x@example.invalid>;tag=slow\r\n"
).encode()


def _open(source: str, count: int, payload: bytes) -> list[socket.socket]:
    conns = []
    for _ in range(count):
        conn = socket.create_connection((LAN_SBC, SBC_PORT), timeout=5, source_address=(source, 0))
        if payload:
            conn.sendall(payload)
        conns.append(conn)
    return conns


def _wait_closed(conns: list[socket.socket], timeout: float) -> int:
    """How many of `conns` the SBC closed (EOF or reset) within `timeout` seconds."""
    selector = selectors.DefaultSelector()
    for conn in conns:
        conn.setblocking(False)
        selector.register(conn, selectors.EVENT_READ)
    closed = 0
    deadline = time.monotonic() + timeout
    while closed < len(conns) and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.2):
            conn = key.fileobj
            assert isinstance(conn, socket.socket)
            try:
                data = conn.recv(4096)
            except BlockingIOError:
                continue
            except ConnectionError:
                data = b""
            if not data:
                selector.unregister(conn)
                closed += 1
    selector.close()
    return closed


def _transport(sbc: SbcProcess) -> dict[str, object]:
    transport = sbc.query("status")["transport"]
    assert isinstance(transport, dict)
    return transport


def test_half_open_connections_neither_block_a_call_nor_stay(tmp_path: Path) -> None:
    config = sbc_config(tmp_path / "state") + LIMITS
    conns: list[socket.socket] = []
    with running_sbc(tmp_path, config) as sbc, contextlib.ExitStack() as stack:
        stack.callback(lambda: [c.close() for c in conns])
        started = time.monotonic()
        for i in range(SOURCES):
            conns += _open(f"127.{NET}.1.{100 + i}", HALF_OPEN // SOURCES, HALF_HEADER)
        opened_in = time.monotonic() - started
        held = _transport(sbc)
        assert held["connections_inbound"] == HALF_OPEN, (opened_in, held)

        # A legitimate call over TCP from the LAN while they are all held.
        uas = sipp("uas", tmp_path, "uas_basic.xml", local_ip=TRUNK, local_port=TRUNK_PORT).start()
        time.sleep(0.3)
        uac = sipp(
            "uac", tmp_path, "uac_basic.xml", local_ip=PHONE, local_port=5071, remote=f"{LAN_SBC}:{SBC_PORT}",
            transport="t1",
        ).start()  # fmt: skip
        assert uac.wait(40) == 0, uac.report() + sbc.log()[-4000:]
        assert uas.wait(15) == 0, uas.report()

        # The header timeout closes every one of them (a sweep or two after it expires).
        closed = _wait_closed(conns, HEADER_TIMEOUT_S + opened_in + 10)
        assert closed == HALF_OPEN
        after = _transport(sbc)
        limits = after["limits"]
        assert isinstance(limits, dict)
        assert limits["header_timeout"] == HALF_OPEN, after
        assert limits["connections_per_source"] == 0 and limits["connections"] == 0
        assert int(str(after["connections_peak"])) >= HALF_OPEN
        assert sbc.query("status")["counters"]["internal_errors"] == 0
        assert sbc.proc is not None and sbc.proc.poll() is None

        # One source gets its limit's worth of connections, and the rest are refused at once.
        flood = _open(f"127.{NET}.1.150", PER_SOURCE + 10, b"")
        conns += flood
        refused = _wait_closed(flood, 3)
        assert refused == 10
        limits = _transport(sbc)["limits"]
        assert isinstance(limits, dict) and limits["connections_per_source"] == 10
        assert "transport.limit" in sbc.log()


def test_limits_change_on_reload(tmp_path: Path) -> None:
    config = sbc_config(tmp_path / "state") + LIMITS
    with running_sbc(tmp_path, config) as sbc:
        first = _open(f"127.{NET}.1.160", 3, b"")
        try:
            smaller = config.replace(f"connections_per_source: {PER_SOURCE}", "connections_per_source: 3")
            sbc.config_path.write_text(smaller)
            assert sbc.query("reload")["applied"] is True
            settings = _transport(sbc)["settings"]
            assert isinstance(settings, dict) and settings["connections_per_source"] == 3
            fourth = _open(f"127.{NET}.1.160", 1, b"")
            first += fourth
            assert _wait_closed(fourth, 3) == 1  # the running SBC applies the new limit at once
        finally:
            for conn in first:
                conn.close()


def test_size_limits_close_the_connection_and_count(tmp_path: Path) -> None:
    # The buffer limit sits above the header limit, so which limit a payload breaks does not depend on
    # how TCP happens to split it.
    sizes = "    max_header_bytes: 4096\n    max_body_bytes: 1000\n    max_buffered_bytes: 4500\n"
    with running_sbc(tmp_path, sbc_config(tmp_path / "state") + LIMITS + sizes) as sbc:
        source = f"127.{NET}.1.170"
        complete = HALF_HEADER + b"To: <sip:bob@x>\r\nCall-ID: big\r\nCSeq: 1 INVITE\r\n"
        cases = [
            complete + b"X-Pad: " + b"a" * 5000 + b"\r\n\r\n",  # header block over 4096
            complete + b"Content-Length: 1001\r\n\r\n",  # body over 1000
            # Both within their limits, but 3.8 KB of header block and 0.8 KB of body held together.
            complete + b"X-Pad: " + b"a" * 3500 + b"\r\nContent-Length: 1000\r\n\r\n" + b"b" * 800,
        ]
        conns = [conn for payload in cases for conn in _open(source, 1, payload)]
        try:
            assert _wait_closed(conns, 5) == len(cases)
        finally:
            for conn in conns:
                conn.close()
        limits = _transport(sbc)["limits"]
        assert isinstance(limits, dict)
        assert (limits["header_too_large"], limits["body_too_large"], limits["buffer_full"]) == (1, 1, 1), limits
        assert sbc.query("status")["counters"]["internal_errors"] == 0
