"""Real SIPp peers on both sides of the real SBC: the call flows of the SIP core's acceptance list."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import (
    LAN_SBC,
    PHONE,
    SBC_PORT,
    TRUNK,
    TRUNK_PORT,
    WAN_SBC,
    SbcProcess,
    Sipp,
    received_messages,
    running_sbc,
    sbc_config,
    sent_messages,
    sipp,
    sipp_available,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sipp_available(), reason="SIPp (Debian package sip-tester) is not installed"),
]

PHONE_PORT = 5071


@pytest.fixture
def sbc(tmp_path: Path) -> Iterator[SbcProcess]:
    with running_sbc(tmp_path, sbc_config(tmp_path / "state")) as proc:
        yield proc


def call_pair(
    sbc: SbcProcess,
    workdir: Path,
    uac_scenario: str,
    uas_scenario: str,
    *,
    calls: int = 1,
    rate: float | None = None,
    timeout_s: int = 40,
    trace: bool = True,
) -> tuple[Sipp, Sipp]:
    uas = sipp(
        "uas",
        workdir,
        uas_scenario,
        local_ip=TRUNK,
        local_port=TRUNK_PORT,
        calls=calls,
        timeout_s=timeout_s,
        trace=trace,
    ).start()
    time.sleep(0.3)
    uac = sipp(
        "uac", workdir, uac_scenario, local_ip=PHONE, local_port=PHONE_PORT, remote=f"{LAN_SBC}:{SBC_PORT}",
        calls=calls, rate=rate, timeout_s=timeout_s, trace=trace,
    ).start()  # fmt: skip
    rc_uac = uac.wait(timeout_s + 10)
    rc_uas = uas.wait(15)
    details = f"{uac.report()}\n{uas.report()}\n--- sbc log tail:\n{sbc.log()[-6000:]}"
    assert rc_uac == 0, f"uac exit {rc_uac}\n{details}"
    assert rc_uas == 0, f"uas exit {rc_uas}\n{details}"
    return uac, uas


def wait_no_calls(sbc: SbcProcess, timeout: float = 5.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    status = sbc.query("status")
    while status["active_calls"] and time.monotonic() < deadline:
        time.sleep(0.1)
        status = sbc.query("status")
    return status


@pytest.mark.parametrize(
    ("uac_scenario", "uas_scenario"),
    [
        ("uac_basic.xml", "uas_basic.xml"),  # caller hangs up
        ("uac_callee_hangs_up.xml", "uas_hangs_up.xml"),
        ("uac_cancel.xml", "uas_ring_cancelled.xml"),
        ("uac_busy.xml", "uas_busy.xml"),
        ("uac_accepts_reinvites.xml", "uas_hold_resume.xml"),
        ("uac_update_early.xml", "uas_update_early.xml"),
    ],
    ids=["caller-hangs-up", "callee-hangs-up", "cancel", "busy-486", "reinvite-hold-resume", "update-early"],
)
def test_call_flow(sbc: SbcProcess, tmp_path: Path, uac_scenario: str, uas_scenario: str) -> None:
    call_pair(sbc, tmp_path, uac_scenario, uas_scenario)
    status = wait_no_calls(sbc)
    assert status["active_calls"] == 0, sbc.log()[-4000:]


def _identifiers(messages: list[str]) -> dict[str, set[str]]:
    """What of one side's topology its messages carry: Call-IDs, tags, branches, contacts, user agents."""
    found: dict[str, set[str]] = {"call-id": set(), "tag": set(), "branch": set(), "contact": set(), "ua": set()}
    for msg in messages:
        for line in msg.splitlines():
            name, _, value = line.partition(":")
            key = name.strip().lower()
            value = value.strip()
            if key in ("call-id", "i"):
                found["call-id"].add(value)
            elif key in ("from", "f", "to", "t"):
                found["tag"].update(re.findall(r";tag=([^;>\s]+)", value))
            elif key in ("via", "v"):
                found["branch"].update(re.findall(r"branch=([^;\s,]+)", value))
            elif key in ("contact", "m"):
                found["contact"].update(re.findall(r"<([^>]+)>", value))
            elif key in ("user-agent", "server"):
                found["ua"].add(value)
    return found


def test_topology_hiding_both_ways(sbc: SbcProcess, tmp_path: Path) -> None:
    uac, uas = call_pair(sbc, tmp_path, "uac_basic.xml", "uas_basic.xml")
    uac_sent = sent_messages(uac.messages())
    uas_sent = sent_messages(uas.messages())
    uas_received = "\n".join(received_messages(uas.messages()))
    uac_received = "\n".join(received_messages(uac.messages()))
    assert uac_sent and uas_sent and uas_received and uac_received

    inside = _identifiers(uac_sent)
    outside = _identifiers(uas_sent)
    # The caller's own tag appears in its From on the WAN side only if it leaked.
    for kind, values in inside.items():
        for value in values:
            assert value not in uas_received, f"LAN {kind} {value!r} reached the WAN side:\n{uas_received}"
    for kind, values in outside.items():
        for value in values:
            assert value not in uac_received, f"WAN {kind} {value!r} reached the LAN side:\n{uac_received}"
    assert PHONE not in uas_received
    assert not re.search(rf"[:=]{PHONE_PORT}\b", uas_received)
    assert "secret-lan-ua" not in uas_received
    assert TRUNK not in uac_received
    assert not re.search(rf"[:=]{TRUNK_PORT}\b", uac_received)
    assert "secret-wan-ua" not in uac_received
    # And what they did see is the SBC: its addresses and its own User-Agent.
    assert WAN_SBC in uas_received and "EdgeSBC-test" in uas_received
    assert LAN_SBC in uac_received and "EdgeSBC-test" in uac_received


def test_register_then_call_back_from_wan(sbc: SbcProcess, tmp_path: Path) -> None:
    answer_port = 5073
    phone_uas = sipp(
        "phone_uas", tmp_path, "uas_basic.xml", local_ip=PHONE, local_port=answer_port, timeout_s=30
    ).start()
    registrar = sipp("registrar", tmp_path, "registrar_then_calls.xml", local_ip=TRUNK, local_port=TRUNK_PORT,
                     timeout_s=30).start()  # fmt: skip
    time.sleep(0.3)
    phone = sipp(
        "phone", tmp_path, "phone_register.xml", local_ip=PHONE, local_port=PHONE_PORT,
        remote=f"{LAN_SBC}:{SBC_PORT}", timeout_s=30, extra=["-set", "answer_port", str(answer_port)],
    ).start()  # fmt: skip
    rc_phone = phone.wait(40)
    rc_registrar = registrar.wait(40)
    rc_uas = phone_uas.wait(15)
    details = f"{phone.report()}\n{registrar.report()}\n{phone_uas.report()}\n{sbc.log()[-6000:]}"
    assert (rc_phone, rc_registrar, rc_uas) == (0, 0, 0), details
    # The registrar saw the SBC's contact, never the phone's.
    reg_in = "\n".join(received_messages(registrar.messages()))
    assert PHONE not in reg_in and f"@{WAN_SBC}:{SBC_PORT}" in reg_in


def test_options_to_the_sbc_answered_locally(sbc: SbcProcess, tmp_path: Path) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((PHONE, 0))
        s.settimeout(3)
        port = s.getsockname()[1]
        s.sendto(
            (
                f"OPTIONS sip:{LAN_SBC}:{SBC_PORT} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {PHONE}:{port};branch=z9hG4bKopt1\r\n"
                f"From: <sip:probe@{PHONE}>;tag=p1\r\nTo: <sip:{LAN_SBC}>\r\nCall-ID: opt-1\r\n"
                "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            ).encode(),
            (LAN_SBC, SBC_PORT),
        )
        data, _ = s.recvfrom(4096)
    assert data.startswith(b"SIP/2.0 200 OK\r\n")
    assert b"Allow: " in data and b"INVITE" in data


def test_malformed_request_gets_400_and_sbc_survives(sbc: SbcProcess, tmp_path: Path) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((PHONE, 0))
        s.settimeout(3)
        port = s.getsockname()[1]
        s.sendto(
            (
                f"INVITE sip:bob@{LAN_SBC} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {PHONE}:{port};branch=z9hG4bKbad1\r\n"
                f"From: <sip:a@{PHONE}>;tag=b1\r\nTo: <sip:bob@{LAN_SBC}>\r\nCall-ID: bad-1\r\n"
                "CSeq: 1 INVITE\r\nMax-Forwards: seventy\r\nContent-Length: 0\r\n\r\n"
            ).encode(),
            (LAN_SBC, SBC_PORT),
        )
        data, _ = s.recvfrom(4096)
        assert data.startswith(b"SIP/2.0 400 ")
        s.sendto(b"\x00\x01garbage that is not SIP\r\n\r\n", (LAN_SBC, SBC_PORT))
    time.sleep(0.3)
    status = sbc.query("status")
    counters = status["counters"]
    assert isinstance(counters, dict)
    assert counters["malformed_answered"] >= 1 and counters["malformed_dropped"] >= 1


def test_200_calls_at_20_cps_without_failure(sbc: SbcProcess, tmp_path: Path) -> None:
    uac, _ = call_pair(sbc, tmp_path, "uac_basic.xml", "uas_basic.xml", calls=200, rate=20, timeout_s=60, trace=False)
    stats = uac.stat_file.read_text().splitlines()
    header = stats[0].split(";")
    last = stats[-1].split(";")
    row = dict(zip(header, last, strict=False))
    assert int(row["SuccessfulCall(C)"]) == 200, row
    assert int(row["FailedCall(C)"]) == 0, row
    status = wait_no_calls(sbc)
    assert status["active_calls"] == 0
