"""Real SIPp peers on both sides of the real SBC: the call flows of the SIP core's acceptance list."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
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
    sipp,
    sipp_available,
)
from tests.integration.sip_checks import all_received, assert_topology_hidden, body, first_received

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
    uas_transport: str = "u1",
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
        transport=uas_transport,
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


def _caller_hangs_up(uac: Sipp, uas: Sipp) -> None:
    assert first_received(uas, "BYE ") and not all_received(uac, "BYE ")


def _callee_hangs_up(uac: Sipp, uas: Sipp) -> None:
    assert first_received(uac, "BYE ").startswith(f"BYE sip:alice@{PHONE}:{PHONE_PORT} ")
    assert not all_received(uas, "BYE ")


def _cancelled(uac: Sipp, uas: Sipp) -> None:
    assert first_received(uas, "CANCEL ") and first_received(uac, "SIP/2.0 487 ")
    assert not all_received(uas, "BYE ")


def _busy(uac: Sipp, uas: Sipp) -> None:
    assert first_received(uac, "SIP/2.0 486 Busy Here")


def _hold_resume(uac: Sipp, uas: Sipp) -> None:
    reinvites = all_received(uac, "INVITE ")
    assert len(reinvites) == 2
    assert "a=sendonly" in body(reinvites[0]) and "a=sendonly" not in body(reinvites[1])
    assert all(f"c=IN IP4 {LAN_SBC}" in body(r) for r in reinvites)


def _caller_holds_resumes_updates(uac: Sipp, uas: Sipp) -> None:
    reinvites = all_received(uas, "INVITE ")[1:]
    assert ["a=sendonly" in body(r) for r in reinvites] == [True, False]
    assert all(f"c=IN IP4 {WAN_SBC}" in body(r) for r in reinvites)
    assert "RTP/AVP 8" in body(first_received(uas, "UPDATE "))
    assert "RTP/AVP 8" in body(all_received(uac, "SIP/2.0 200 ")[-2])  # the UPDATE's answer


def _update_early(uac: Sipp, uas: Sipp) -> None:
    update = first_received(uas, "UPDATE ")
    assert f"c=IN IP4 {WAN_SBC}" in body(update) and "PCMA" in body(update)


@pytest.mark.parametrize(
    ("uac_scenario", "uas_scenario", "check"),
    [
        ("uac_basic.xml", "uas_basic.xml", _caller_hangs_up),
        ("uac_callee_hangs_up.xml", "uas_hangs_up.xml", _callee_hangs_up),
        ("uac_cancel.xml", "uas_ring_cancelled.xml", _cancelled),
        ("uac_busy.xml", "uas_busy.xml", _busy),
        ("uac_accepts_reinvites.xml", "uas_hold_resume.xml", _hold_resume),
        ("uac_hold_resume.xml", "uas_accepts_hold.xml", _caller_holds_resumes_updates),
        ("uac_update_early.xml", "uas_update_early.xml", _update_early),
    ],
    ids=[
        "caller-hangs-up",
        "callee-hangs-up",
        "cancel",
        "busy-486",
        "reinvite-hold-resume-from-callee",
        "reinvite-hold-resume-update-from-caller",
        "update-early",
    ],
)
def test_call_flow(
    sbc: SbcProcess, tmp_path: Path, uac_scenario: str, uas_scenario: str, check: Callable[[Sipp, Sipp], None]
) -> None:
    uac, uas = call_pair(sbc, tmp_path, uac_scenario, uas_scenario)
    check(uac, uas)
    assert_topology_hidden(uac, uas, lan_ports=[PHONE_PORT], wan_ports=[TRUNK_PORT])
    status = wait_no_calls(sbc)
    assert status["active_calls"] == 0, sbc.log()[-4000:]


def test_topology_hiding_both_ways(sbc: SbcProcess, tmp_path: Path) -> None:
    uac, uas = call_pair(sbc, tmp_path, "uac_basic.xml", "uas_basic.xml")
    assert_topology_hidden(uac, uas, lan_ports=[PHONE_PORT], wan_ports=[TRUNK_PORT])
    uas_received = "\n".join(received_messages(uas.messages()))
    uac_received = "\n".join(received_messages(uac.messages()))
    assert "X-Inside-Secret" not in uas_received  # not in the headers allowed to cross
    # What each side did see is the SBC: its address on that side and its own User-Agent.
    assert WAN_SBC in uas_received and "EdgeSBC-test" in uas_received
    assert LAN_SBC in uac_received and "EdgeSBC-test" in uac_received
    assert WAN_SBC not in uac_received and LAN_SBC not in uas_received


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
