"""Garbage thrown at a live SBC over UDP, TCP and TLS on both realms while a call is up: the SBC
answers or drops and counts it, never dies, and the call goes on to a normal end."""

from __future__ import annotations

import random
import socket
import ssl
import time
from pathlib import Path

import pytest

from tests.integration.harness import (
    LAN_SBC,
    NET,
    PHONE,
    PHONE_B,
    SBC_PORT,
    TRUNK,
    TRUNK_PORT,
    WAN_SBC,
    running_sbc,
    sbc_config,
    sipp,
    sipp_available,
)
from tests.integration.sip_checks import assert_topology_hidden, first_received
from tests.integration.test_calls import PHONE_PORT, call_pair, wait_no_calls
from tests.integration.test_transport_policy import TLS_PORT, _make_ca_and_cert, _tls_realm, _with_tls_listener

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sipp_available(), reason="SIPp (Debian package sip-tester) is not installed"),
]


def _datagrams(call_id: str) -> list[bytes]:
    """Bytes that are not SIP, SIP that is broken in the ways RFC 4475 lists, and well-formed requests
    that name the live call's Call-ID with tags that match nothing."""
    rng = random.Random(4475)
    via = f"Via: SIP/2.0/UDP {PHONE_B}:5999;branch=z9hG4bKjunk"
    base = (
        f"INVITE sip:bob@{LAN_SBC} SIP/2.0\r\n{via}\r\nMax-Forwards: 70\r\nFrom: <sip:x@{PHONE_B}>;tag=j1\r\n"
        f"To: <sip:bob@{LAN_SBC}>\r\nCall-ID: junk-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    return [
        b"",
        b"\r\n\r\n",
        bytes(rng.randrange(256) for _ in range(512)),
        b"\x00" * 1400,
        b"GET / HTTP/1.1\r\nHost: sbc\r\n\r\n",
        b"SIP/2.0 200 OK\r\n\r\n",
        base.encode()[: len(base) // 2],
        base.replace("Max-Forwards: 70", "Max-Forwards: seventy").encode(),
        base.replace("CSeq: 1 INVITE", "CSeq: 1 BYE").encode(),
        base.replace("Content-Length: 0", "Content-Length: 9999").encode(),
        base.replace("sip:bob@", "sip:bob@[::1").encode(),
        base.replace("\r\n", "\n", 3).encode(),
        base.replace(f"To: <sip:bob@{LAN_SBC}>", f"To: <sip:bob@{LAN_SBC}>;tag=nosuch").encode(),
        base.replace("Call-ID: junk-1", f"Call-ID: {call_id}")
        .replace("INVITE sip", "BYE sip")
        .replace("1 INVITE", "2 BYE")
        .replace(f"To: <sip:bob@{LAN_SBC}>", f"To: <sip:bob@{LAN_SBC}>;tag=guessed")
        .encode(),
        (base[:-2] + "X-Pad: " + "a" * 60000 + "\r\n\r\n").encode(),
        base.encode().replace(b"Call-ID", b"Call-ID\xff\xfe"),
        f"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP {LAN_SBC}:{SBC_PORT};branch=z9hG4bKsbcnothing.0\r\n"
        f"From: <sip:a@{LAN_SBC}>;tag=a\r\nTo: <sip:b@{PHONE_B}>;tag=b\r\nCall-ID: {call_id}\r\n"
        "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n".encode(),
    ]


def _udp(host: str, local: str, payloads: list[bytes]) -> int:
    """Send each payload; count the answers (the SBC answers what it can read enough of)."""
    answers = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((local, 0))
        s.settimeout(0.3)
        for p in payloads:
            s.sendto(p, (host, SBC_PORT))
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            try:
                s.recvfrom(70000)
            except TimeoutError:
                break
            answers += 1
    return answers


def _stream(host: str, port: int, local: str, chunks: list[bytes], tls: ssl.SSLContext | None = None) -> bytes:
    """Open a connection, send the chunks, read what comes back until the SBC closes or goes quiet."""
    raw = socket.create_connection((host, port), timeout=3, source_address=(local, 0))
    conn: socket.socket = tls.wrap_socket(raw) if tls is not None else raw
    conn.settimeout(0.5)
    got = b""
    try:
        for chunk in chunks:
            conn.sendall(chunk)
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            try:
                data = conn.recv(65536)
            except (TimeoutError, ssl.SSLError, ConnectionError):
                break
            if not data:
                break
            got += data
    finally:
        conn.close()
    return got


def _throw_everything(call_id: str, tls: ssl.SSLContext) -> None:
    datagrams = _datagrams(call_id)
    assert _udp(LAN_SBC, PHONE_B, datagrams) >= 5  # the readable broken requests got their 4xx
    assert _udp(WAN_SBC, f"127.{NET}.2.99", datagrams) >= 5
    for host, local in ((LAN_SBC, PHONE_B), (WAN_SBC, TRUNK)):
        # Unframeable: no Content-Length on a stream. The SBC answers 400 where it can and closes.
        _stream(host, SBC_PORT, local, [datagrams[6], b"INVITE sip:x SIP/2.0\r\nVia: x\r\n\r\n"])
        _stream(host, SBC_PORT, local, [bytes(range(256)) * 40])
        _stream(host, SBC_PORT, local, [datagrams[7][:30]])  # half a message, then the peer goes away
        assert _stream(host, SBC_PORT, local, [b"\r\n\r\n" * 3]) == b"\r\n" * 3  # keep-alive pongs
        # Framed but invalid: answered like a datagram, and the connection stays usable.
        answered = _stream(host, SBC_PORT, local, [datagrams[7], datagrams[8]])
        assert answered.startswith(b"SIP/2.0 400 ") and answered.count(b"SIP/2.0 400 ") == 2, answered
    # TLS port: plain TCP garbage (a failed handshake), then garbage inside a good TLS session.
    _stream(LAN_SBC, TLS_PORT, PHONE_B, [b"\x16\x03\x01\x00\xffgarbage" * 20])
    _stream(LAN_SBC, TLS_PORT, PHONE_B, [datagrams[2], datagrams[7]], tls=tls)
    assert _stream(LAN_SBC, TLS_PORT, PHONE_B, [datagrams[7]], tls=tls).startswith(b"SIP/2.0 400 ")
    _stream(LAN_SBC, TLS_PORT, PHONE_B, [b"SIP/2.0 200 OK\r\nContent-Length: 5\r\n\r\nhello"], tls=tls)


def test_garbage_on_every_transport_during_a_call(tmp_path: Path) -> None:
    ca, cert, key, _, _ = _make_ca_and_cert(tmp_path, "garbage")
    config = _with_tls_listener(sbc_config(tmp_path / "state", extra_realm_lan=_tls_realm(cert, key, None)))
    tls = ssl.create_default_context(cafile=str(ca))
    tls.check_hostname = False
    with running_sbc(tmp_path, config) as sbc:
        uas = sipp("uas", tmp_path, "uas_basic.xml", local_ip=TRUNK, local_port=TRUNK_PORT, timeout_s=60).start()
        time.sleep(0.3)
        uac = sipp(
            "uac", tmp_path, "uac_long_call.xml", local_ip=PHONE, local_port=PHONE_PORT,
            remote=f"{LAN_SBC}:{SBC_PORT}", timeout_s=60, extra=["-d", "20000"],
        ).start()  # fmt: skip
        deadline = time.monotonic() + 10
        calls: list[dict[str, object]] = []
        while time.monotonic() < deadline and not any(c["state"] == "confirmed" for c in calls):
            time.sleep(0.1)
            calls = sbc.query("calls")["calls"]
        assert calls and calls[0]["state"] == "confirmed", sbc.log()[-3000:]
        before = sbc.query("status")["counters"]

        _throw_everything(str(calls[0]["a_call_id"]), tls)

        assert sbc.proc is not None and sbc.proc.poll() is None, "the SBC died"
        during = sbc.query("calls")["calls"]
        assert [c["call"] for c in during] == [calls[0]["call"]] and during[0]["state"] == "confirmed"
        after = sbc.query("status")["counters"]
        assert after["malformed_answered"] > before["malformed_answered"]
        assert after["malformed_dropped"] > before["malformed_dropped"]
        assert after["internal_errors"] == 0
        assert after["calls_total"] == before["calls_total"]  # no garbage made a call
        # The call ends normally: the caller's BYE after its 20 s reaches the trunk.
        assert uac.wait(70) == 0, uac.report() + sbc.log()[-4000:]
        assert uas.wait(15) == 0, uas.report()
        assert first_received(uas, "BYE ")
        assert_topology_hidden(uac, uas, lan_ports=[PHONE_PORT], wan_ports=[TRUNK_PORT])
        assert wait_no_calls(sbc)["active_calls"] == 0
        # And the next call goes through as if nothing happened; its record goes to a new file after
        # the old one was rotated away.
        cdr = tmp_path / "state" / "cdr.jsonl"
        assert len(cdr.read_text().splitlines()) == 1
        cdr.rename(cdr.with_name("cdr.jsonl.1"))
        next_call = tmp_path / "next"
        next_call.mkdir()
        call_pair(sbc, next_call, "uac_basic.xml", "uas_basic.xml")
        assert wait_no_calls(sbc)["active_calls"] == 0
        assert len(cdr.read_text().splitlines()) == 1
        assert "sbc.internal_error" not in sbc.log()
