"""Issue 3, acceptance 5, and latching safe against RTP bleed.

Spoofed packets to live anchors are dropped and counted while the call's media goes on untouched; a
NATed phone is learnt from its first packets inside the learning window; after the window only the
SDP's endpoint is accepted, so a stranger who finds the port first does not take the stream.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from tests.integration.harness import (
    LAN_SBC,
    NET,
    PHONE,
    SBC_PORT,
    TRUNK,
    TRUNK_PORT,
    WAN_SBC,
    running_sbc,
    sbc_config,
)
from tests.integration.media_harness import (
    MEDIA_PORT,
    cdr_records,
    finish,
    media_sipp,
    needs_media_tools,
    sbc_cli_text,
    sip_ports,
    stream_legs,
    wait_for_calls,
)
from tests.integration.rtp import RtpStream, RtpTap, rtp_tap, send_rtp, write_rtp_pcap

pytestmark = needs_media_tools

PHONE_SIP_PORT = 5071
LAN_ROGUE = f"127.{NET}.1.99"  # another device on the LAN
WAN_ROGUE = f"127.{NET}.2.99"  # someone on the Internet side who found the port
LATCH_WINDOW_S = 2.0  # the harness config's default latch_window_ms
SPOOF = RtpStream(count=20, ssrc=0x5B00F001, first_seq=1)
SPOOF_RTCP = 5


def _anchor(leg: dict[str, Any]) -> tuple[str, int]:
    host, port = leg["anchor"].rsplit(":", 1)
    return host, int(port)


def _confirmed_with_anchors(calls: list[dict[str, Any]]) -> bool:
    return len(calls) == 1 and calls[0]["state"] == "confirmed" and bool(calls[0]["streams"])


def _spoof_rtcp(source: tuple[str, int], destination: tuple[str, int]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(source)
        for i in range(SPOOF_RTCP):
            s.sendto(SPOOF.rtcp_packet(i), destination)


def _no_spoof_delivered(tap: RtpTap) -> None:
    leaked = tap.select(lambda d: d.dst in (PHONE, TRUNK) and (d.is_rtp or d.is_rtcp) and d.ssrc == SPOOF.ssrc)
    assert leaked == [], leaked[:3]


def test_spoofed_packets_to_live_anchors_are_dropped_and_counted(tmp_path: Path) -> None:
    a_stream = RtpStream(count=250, ssrc=0xA6000001)  # 5 s each way
    b_stream = RtpStream(count=250, ssrc=0xB6000001, first_seq=20000)
    write_rtp_pcap(tmp_path / "a_leg.pcap", a_stream)
    write_rtp_pcap(tmp_path / "b_leg.pcap", b_stream)
    with (
        running_sbc(tmp_path, sbc_config(tmp_path / "state")) as sbc,
        rtp_tap(f"{PHONE}/32", f"{TRUNK}/32", ignore_ports=sip_ports(PHONE_SIP_PORT, TRUNK_PORT)) as tap,
    ):
        uas = media_sipp("uas", tmp_path, "media_uas.xml", address=TRUNK, sip_port=TRUNK_PORT).start()
        uac = media_sipp(
            "uac", tmp_path, "media_uac.xml", address=PHONE, sip_port=PHONE_SIP_PORT,
            remote=f"{LAN_SBC}:{SBC_PORT}", pause_ms=9000,
        ).start()  # fmt: skip

        def flowing(calls: list[dict[str, Any]]) -> bool:
            # Both latched, and the LAN leg's learning window is over.
            return _confirmed_with_anchors(calls) and all(
                leg["packets_in"] > LATCH_WINDOW_S / 0.02 for leg in stream_legs(calls[0])
            )

        calls = wait_for_calls(sbc, flowing)
        assert flowing(calls), calls
        lan, wan = (_anchor(leg) for leg in stream_legs(calls[0]))
        time.sleep(0.5)
        # RTP and RTCP to the WAN anchor from a stranger; to the LAN anchor from another LAN host and
        # from the phone's own address on another port.
        send_rtp((WAN_ROGUE, 7000), wan, SPOOF)
        _spoof_rtcp((WAN_ROGUE, 7001), (wan[0], wan[1] + 1))
        send_rtp((LAN_ROGUE, 7000), lan, SPOOF)
        send_rtp((PHONE, 7002), lan, RtpStream(count=10, ssrc=SPOOF.ssrc, first_seq=500))

        def counted(calls: list[dict[str, Any]]) -> bool:
            a, b = stream_legs(calls[0]) if calls and calls[0]["streams"] else ({}, {})
            return bool(a and a["dropped_spoofed"] >= 30 and b["dropped_spoofed"] >= 25)

        during = wait_for_calls(sbc, counted, timeout=10)
        text = sbc_cli_text(sbc, "calls")
        finish(uac, uas, sbc=sbc)
        record = cdr_records(sbc)[0]
        tap.stop()

    a, b = stream_legs(during[0])
    assert (a["dropped_spoofed"], b["dropped_spoofed"]) == (30, 20 + SPOOF_RTCP), (a, b)
    assert "spoofed 30" in text and f"spoofed {20 + SPOOF_RTCP}" in text, text
    # The latches did not move and the call's media went through complete, in both directions.
    assert a["source"] == f"{PHONE}:{MEDIA_PORT}" and b["source"] == f"{TRUNK}:{MEDIA_PORT}"
    _no_spoof_delivered(tap)
    assert [d.seq for d in tap.between(WAN_SBC, TRUNK, MEDIA_PORT) if d.is_rtp] == a_stream.sent_sequences
    assert [d.seq for d in tap.between(LAN_SBC, PHONE, MEDIA_PORT) if d.is_rtp] == b_stream.sent_sequences
    ra, rb = stream_legs(record)
    assert (ra["packets_in"], rb["packets_in"]) == (a_stream.sent, b_stream.sent)
    assert (ra["dropped_spoofed"], rb["dropped_spoofed"]) == (30, 25) and ra["lost"] == rb["lost"] == 0


def test_natted_phone_is_learnt_inside_the_window_and_then_held_to(tmp_path: Path) -> None:
    """The phone's SDP names a private address it cannot be reached on; its media comes from its real
    address. The LAN realm (latch: learn) latches onto that source and sends the trunk's media back to
    it (symmetric RTP); a stranger arriving later is dropped."""
    private = f"127.{NET}.1.200"
    a_stream = RtpStream(count=200, ssrc=0xA7000001)
    b_stream = RtpStream(count=200, ssrc=0xB7000001, first_seq=3000)
    write_rtp_pcap(tmp_path / "a_leg.pcap", a_stream)
    write_rtp_pcap(tmp_path / "b_leg.pcap", b_stream)
    with (
        running_sbc(tmp_path, sbc_config(tmp_path / "state")) as sbc,
        rtp_tap(f"127.{NET}.1.0/24", f"{TRUNK}/32", ignore_ports=sip_ports(PHONE_SIP_PORT, TRUNK_PORT)) as tap,
    ):
        uas = media_sipp("uas", tmp_path, "media_uas.xml", address=TRUNK, sip_port=TRUNK_PORT).start()
        uac = media_sipp(
            "uac", tmp_path, "media_uac_natted.xml", address=PHONE, sip_port=PHONE_SIP_PORT,
            remote=f"{LAN_SBC}:{SBC_PORT}", pause_ms=7000, extra=["-set", "sdp_ip", private],
        ).start()  # fmt: skip
        calls = wait_for_calls(sbc, lambda c: _confirmed_with_anchors(c) and stream_legs(c[0])[0]["source"] is not None)
        lan = _anchor(stream_legs(calls[0])[0])
        time.sleep(LATCH_WINDOW_S + 0.5)
        send_rtp((LAN_ROGUE, 7000), lan, SPOOF)
        finish(uac, uas, sbc=sbc)
        record = cdr_records(sbc)[0]
        tap.stop()

    assert f"c=IN IP4 {private}" in uac.messages()  # the SDP the phone sent named its private address
    a, _ = stream_legs(record)
    assert a["source"] == f"{PHONE}:{MEDIA_PORT}" and a["dropped_spoofed"] == SPOOF.count, a
    # Media for the phone went to where it really is once its first packet came in; until then only the
    # address in its SDP was known (the trunk's stream may start a few ms earlier than the phone's).
    to_real = [d.seq for d in tap.between(LAN_SBC, PHONE, MEDIA_PORT) if d.is_rtp]
    to_private = [d.seq for d in tap.to(private, MEDIA_PORT) if d.is_rtp]
    assert to_private + to_real == b_stream.sent_sequences and len(to_real) > len(to_private), (to_private, to_real)
    assert [d.seq for d in tap.between(WAN_SBC, TRUNK, MEDIA_PORT) if d.is_rtp] == a_stream.sent_sequences
    _no_spoof_delivered(tap)


def test_stranger_after_the_window_cannot_take_a_silent_stream(tmp_path: Path) -> None:
    """RTP bleed: the phone's media starts 5 s after the answer. A stranger who sends to the anchor once
    the learning window is over is dropped; the phone, when it starts, is accepted from the SDP's
    address and latched."""
    a_stream = RtpStream(count=100, ssrc=0xA8000001)
    b_stream = RtpStream(count=300, ssrc=0xB8000001, first_seq=9000)
    write_rtp_pcap(tmp_path / "a_leg.pcap", a_stream)
    write_rtp_pcap(tmp_path / "b_leg.pcap", b_stream)
    with (
        running_sbc(tmp_path, sbc_config(tmp_path / "state")) as sbc,
        rtp_tap(f"{PHONE}/32", f"{TRUNK}/32", f"{LAN_ROGUE}/32", ignore_ports=sip_ports(PHONE_SIP_PORT, TRUNK_PORT))
        as tap,
    ):  # fmt: skip
        uas = media_sipp("uas", tmp_path, "media_uas.xml", address=TRUNK, sip_port=TRUNK_PORT).start()
        uac = media_sipp(
            "uac", tmp_path, "media_uac_late.xml", address=PHONE, sip_port=PHONE_SIP_PORT,
            remote=f"{LAN_SBC}:{SBC_PORT}", pause_ms=3000,
        ).start()  # fmt: skip
        calls = wait_for_calls(sbc, _confirmed_with_anchors)
        lan = _anchor(stream_legs(calls[0])[0])
        time.sleep(LATCH_WINDOW_S + 0.5)  # the phone stays silent for 5 s after the ACK
        send_rtp((LAN_ROGUE, 7000), lan, SPOOF)
        before = wait_for_calls(sbc, lambda c: bool(c) and stream_legs(c[0])[0]["dropped_spoofed"] >= SPOOF.count)
        finish(uac, uas, sbc=sbc)
        record = cdr_records(sbc)[0]
        tap.stop()

    early, _ = stream_legs(before[0])
    assert early["dropped_spoofed"] == SPOOF.count and early["source"] is None and early["packets_in"] == 0, early
    a, _ = stream_legs(record)
    assert a["source"] == f"{PHONE}:{MEDIA_PORT}" and a["packets_in"] == a_stream.sent, a
    # The trunk's media never went to the stranger, and the stranger's never to the trunk.
    assert tap.to(LAN_ROGUE) == []
    _no_spoof_delivered(tap)
    assert [d.seq for d in tap.between(WAN_SBC, TRUNK, MEDIA_PORT) if d.is_rtp] == a_stream.sent_sequences
