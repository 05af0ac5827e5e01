"""Issue 3, acceptance 7 and 8: call quality and media timeouts, seen in `sbc calls`, the log and the CDR.

Loss comes from pcaps with every Nth packet left out, so the right figure is known exactly. One-way
audio is a trunk that answers and never sends. The media timeout is a phone that falls silent, with
the LAN realm's `timeout_s` set to 3 s: with `hangup_on_timeout` the SBC ends the call with a BYE to
each side; without it the timeout is only reported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.integration.harness import (
    LAN_SBC,
    PHONE,
    SBC_PORT,
    TRUNK,
    TRUNK_PORT,
    SbcProcess,
    received_messages,
    running_sbc,
    sbc_config,
)
from tests.integration.media_harness import (
    cdr_records,
    finish,
    media_sipp,
    needs_media_tools,
    sbc_cli,
    sbc_cli_text,
    stream_legs,
    wait_for_calls,
)
from tests.integration.rtp import RtpStream, write_rtp_pcap

pytestmark = needs_media_tools

PHONE_SIP_PORT = 5071
MEDIA_TIMEOUT_S = 3


def _log_events(sbc: SbcProcess, event: str) -> list[dict[str, Any]]:
    out = []
    for line in sbc.log().splitlines():
        if line.startswith("{") and f'"event": "{event}"' in line:
            out.append(json.loads(line))
    return out


def _call(sbc: SbcProcess, tmp_path: Path, uac: str, uas: str, pause_ms: int) -> tuple[Any, Any]:
    trunk = media_sipp("uas", tmp_path, uas, address=TRUNK, sip_port=TRUNK_PORT).start()
    phone = media_sipp(
        "uac", tmp_path, uac, address=PHONE, sip_port=PHONE_SIP_PORT, remote=f"{LAN_SBC}:{SBC_PORT}", pause_ms=pause_ms
    ).start()
    return phone, trunk


def test_lossy_streams_report_the_right_loss(tmp_path: Path) -> None:
    a_stream = RtpStream(count=200, ssrc=0xA9000001, drop_every=10)  # 20 of 200 left out: 10 %
    b_stream = RtpStream(count=200, ssrc=0xB9000001, first_seq=65450, drop_every=20)  # 10 of 200: 5 %, seq wraps
    clean = RtpStream(count=200, ssrc=0)
    write_rtp_pcap(tmp_path / "a_leg.pcap", a_stream)
    write_rtp_pcap(tmp_path / "b_leg.pcap", b_stream)
    assert (a_stream.lost, b_stream.lost, clean.lost) == (20, 10, 0)
    with running_sbc(tmp_path, sbc_config(tmp_path / "state")) as sbc:
        phone, trunk = _call(sbc, tmp_path, "media_uac.xml", "media_uas.xml", pause_ms=7000)

        def all_in(calls: list[dict[str, Any]]) -> bool:
            if len(calls) != 1 or not calls[0]["streams"]:
                return False
            a, b = stream_legs(calls[0])
            return bool(a["packets_in"] >= a_stream.sent and b["packets_in"] >= b_stream.sent)

        during = wait_for_calls(sbc, all_in)
        text = sbc_cli_text(sbc, "calls")
        finish(phone, trunk, sbc=sbc)
        record = cdr_records(sbc)[0]

    for view in (during[0], record):
        a, b = stream_legs(view)
        assert (a["packets_in"], a["expected"], a["lost"], a["loss_pct"]) == (180, 200, 20, 10.0), a
        assert (b["packets_in"], b["expected"], b["lost"], b["loss_pct"]) == (190, 200, 10, 5.0), b
        # The E-model marks both down, the lossier one more (G.711 without PLC: Bpl 4.3).
        assert a["mos"] < b["mos"] < 3.0, (a["mos"], b["mos"])
    assert "lost 20 (10.0%)" in text and "lost 10 (5.0%)" in text, text


def test_one_way_audio_is_detected_and_recorded(tmp_path: Path) -> None:
    a_stream = RtpStream(count=500, ssrc=0xAA000001, drop_every=50)  # 10 s, 10 of 500 lost: 2 %
    write_rtp_pcap(tmp_path / "a_leg.pcap", a_stream)
    with running_sbc(tmp_path, sbc_config(tmp_path / "state")) as sbc:
        phone, trunk = _call(sbc, tmp_path, "media_uac.xml", "media_uas_silent.xml", pause_ms=11000)
        during = wait_for_calls(sbc, lambda c: len(c) == 1 and bool(c[0]["streams"]) and c[0]["streams"][0]["one_way"])
        text = sbc_cli_text(sbc, "calls")
        finish(phone, trunk, sbc=sbc)
        record = cdr_records(sbc)[0]
        alarms = _log_events(sbc, "media.one_way")

    live = during[0]["streams"][0]
    assert live["one_way"] is True and live["flow"] == "a_only", live
    assert "flow a_only, ONE-WAY AUDIO" in text, text
    assert len(alarms) == 1 and alarms[0]["call"] == record["call"] and alarms[0]["flow"] == "a_only", alarms
    stream = record["streams"][0]
    assert stream["one_way_events"] == 1 and stream["flow"] == "a_only", stream
    a, b = stream_legs(record)
    # Media came from the phone only; its loss figure is still exact.
    assert (a["packets_in"], a["expected"], a["lost"], a["loss_pct"]) == (490, 500, 10, 2.0), a
    assert (b["packets_in"], b["packets_out"], b["expected"]) == (0, 490, 0), b


def _lan_timeout(hangup: bool) -> str:
    return f"latch: learn\n      timeout_s: {MEDIA_TIMEOUT_S}\n      hangup_on_timeout: {str(hangup).lower()}"


def test_media_timeout_hangs_up_with_bye_to_both_sides(tmp_path: Path) -> None:
    a_stream = RtpStream(count=50, ssrc=0xAB000001)  # 1 s, then the phone is silent
    b_stream = RtpStream(count=750, ssrc=0xBB000001)  # the trunk would go on for 15 s
    write_rtp_pcap(tmp_path / "a_leg.pcap", a_stream)
    write_rtp_pcap(tmp_path / "b_leg.pcap", b_stream)
    config = sbc_config(tmp_path / "state", lan_media=_lan_timeout(hangup=True))
    with running_sbc(tmp_path, config) as sbc:
        phone, trunk = _call(sbc, tmp_path, "media_uac_awaits_bye.xml", "media_uas.xml", pause_ms=1000)
        finish(phone, trunk, sbc=sbc)  # both scenarios end only when the SBC's BYE came in
        record = cdr_records(sbc)[0]
        timeouts = _log_events(sbc, "media.timeout")
        status = sbc_cli(sbc, "status")

    assert [m.split("\n", 1)[0] for m in received_messages(phone.messages())][-1].startswith("BYE ")
    assert [m.split("\n", 1)[0] for m in received_messages(trunk.messages())][-1].startswith("BYE ")
    assert record["reason"] == "media timeout (caller side)", record
    assert len(timeouts) == 1 and timeouts[0]["leg"] == "a" and timeouts[0]["idle_s"] > MEDIA_TIMEOUT_S, timeouts
    a, b = stream_legs(record)
    assert a["timed_out"] is True and b["timed_out"] is False
    assert a["packets_in"] == a_stream.sent and 0 < b["packets_in"] < b_stream.sent
    assert status["active_calls"] == 0


def test_media_timeout_only_reported_when_policy_says_so(tmp_path: Path) -> None:
    a_stream = RtpStream(count=50, ssrc=0xAC000001)  # 1 s of media, then silence until the BYE at 9 s
    b_stream = RtpStream(count=400, ssrc=0xBC000001)
    write_rtp_pcap(tmp_path / "a_leg.pcap", a_stream)
    write_rtp_pcap(tmp_path / "b_leg.pcap", b_stream)
    config = sbc_config(tmp_path / "state", lan_media=_lan_timeout(hangup=False))
    with running_sbc(tmp_path, config) as sbc:
        phone, trunk = _call(sbc, tmp_path, "media_uac.xml", "media_uas.xml", pause_ms=9000)
        during = wait_for_calls(
            sbc, lambda c: len(c) == 1 and bool(c[0]["streams"]) and stream_legs(c[0])[0]["timed_out"]
        )
        finish(phone, trunk, sbc=sbc)
        record = cdr_records(sbc)[0]
        timeouts = _log_events(sbc, "media.timeout")

    assert during[0]["state"] == "confirmed" and stream_legs(during[0])[0]["timed_out"] is True, during
    assert record["reason"] == "BYE from caller"  # the phone hung up, not the SBC
    assert len(timeouts) == 1 and timeouts[0]["leg"] == "a", timeouts  # reported once, not every check
