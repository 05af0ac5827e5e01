"""Issue 3, acceptance 1 and 6: an anchored LAN <-> WAN call with RTP both ways through the running SBC.

One call, looked at from every side: the SDP each SIPp received, the packets that reached each SIPp
(the tap), the relay's counters in `sbc calls` during the call and in the CDR after it, and the DS field
of every relayed packet (EF toward the LAN, the WAN realm's AF41 toward the trunk).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    running_sbc,
    sbc_config,
)
from tests.integration.media_harness import (
    LAN_MEDIA_PORTS,
    MEDIA_PORT,
    WAN_MEDIA_PORTS,
    cdr_records,
    finish,
    media_sipp,
    needs_media_tools,
    received_sdps,
    sbc_cli_text,
    sip_ports,
    stream_legs,
    wait_for_calls,
)
from tests.integration.rtp import Datagram, RtpStream, RtpTap, rtp_tap, write_rtp_pcap

pytestmark = needs_media_tools

PHONE_SIP_PORT = 5071
EF, AF41 = 46, 34  # the default media DSCP (LAN, not configured) and the WAN realm's configured one
A_STREAM = RtpStream(count=150, ssrc=0xA11CE001, rtcp_every=50)  # the phone: 3 s of PCMU + 3 sender reports
B_STREAM = RtpStream(count=120, ssrc=0xB0B0B002, first_seq=65500, first_ts=2**32 - 800, rtcp_every=40)


@dataclass
class AnchoredCall:
    sbc: SbcProcess
    uac: Sipp
    uas: Sipp
    during: dict[str, Any]  # the call as `sbc calls --json` showed it once all media was through
    calls_text: str  # `sbc calls` as an operator reads it, at the same moment
    record: dict[str, Any]  # the CDR
    tap: RtpTap


def _all_media_in(calls: list[dict[str, Any]]) -> bool:
    if len(calls) != 1 or not calls[0]["streams"]:
        return False
    a, b = stream_legs(calls[0])
    return bool(
        a["packets_in"] >= A_STREAM.sent + A_STREAM.rtcp_sent and b["packets_in"] >= B_STREAM.sent + B_STREAM.rtcp_sent
    )


@pytest.fixture(scope="module")
def anchored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnchoredCall]:
    work: Path = tmp_path_factory.mktemp("anchored")
    write_rtp_pcap(work / "a_leg.pcap", A_STREAM)
    write_rtp_pcap(work / "b_leg.pcap", B_STREAM)
    # The LAN realm names no media DSCP (so EF is the default at work); the WAN realm sets AF41.
    config = sbc_config(work / "state")
    assert config.count("      dscp: ef\n") == 1 and "      dscp: af41\n" in config
    config = config.replace("      dscp: ef\n", "")
    with (
        running_sbc(work, config) as sbc,
        rtp_tap(f"{PHONE}/32", f"{TRUNK}/32", f"{LAN_SBC}/32", f"{WAN_SBC}/32",
                ignore_ports=sip_ports(PHONE_SIP_PORT, TRUNK_PORT)) as tap,
    ):  # fmt: skip
        uas = media_sipp("uas", work, "media_uas.xml", address=TRUNK, sip_port=TRUNK_PORT).start()
        uac = media_sipp(
            "uac", work, "media_uac.xml", address=PHONE, sip_port=PHONE_SIP_PORT,
            remote=f"{LAN_SBC}:{SBC_PORT}", pause_ms=8000,
        ).start()  # fmt: skip
        try:
            calls = wait_for_calls(sbc, _all_media_in, timeout=20)
            text = sbc_cli_text(sbc, "calls")
            finish(uac, uas, sbc=sbc)
        finally:
            uac.kill()
            uas.kill()
        assert _all_media_in(calls), f"media did not arrive in time: {calls}\n{sbc.log()[-4000:]}"
        yield AnchoredCall(sbc, uac, uas, calls[0], text, cdr_records(sbc)[0], tap)


def _from_anchor(tap: RtpTap, host: str, ports: range, to: str) -> list[Datagram]:
    return tap.select(lambda d: d.src == host and d.sport in ports and d.dst == to)


def test_each_side_sees_only_the_sbc_media_address(anchored: AnchoredCall) -> None:
    offers = received_sdps(anchored.uas, "INVITE")
    answers = received_sdps(anchored.uac, "200 OK")
    assert len(offers) == 1 and answers, (offers, answers)
    offer, answer = offers[0], answers[-1]
    a, b = stream_legs(anchored.during)
    # The trunk is told to send to the SBC's WAN anchor, the phone to its LAN anchor; nothing else.
    assert offer.connections == [WAN_SBC] and offer.ports == [int(b["anchor"].rsplit(":", 1)[1])]
    assert answer.connections == [LAN_SBC] and answer.ports == [int(a["anchor"].rsplit(":", 1)[1])]
    assert offer.ports[0] in WAN_MEDIA_PORTS and answer.ports[0] in LAN_MEDIA_PORTS
    assert WAN_SBC in offer.origin and LAN_SBC in answer.origin
    assert PHONE not in offer.body and "alice" not in offer.origin, offer.body
    assert TRUNK not in answer.body and "pbx" not in answer.origin, answer.body
    # Everything else in the SDP crossed as it was written.
    assert offer.lines("a=") == ["a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15",
                                 "a=ptime:20", "a=sendrecv"]  # fmt: skip


def test_rtp_flows_both_ways_through_the_anchors(anchored: AnchoredCall) -> None:
    a, b = stream_legs(anchored.during)
    lan_port = int(a["anchor"].rsplit(":", 1)[1])
    wan_port = int(b["anchor"].rsplit(":", 1)[1])
    # What the phone sent reached the trunk (from the WAN anchor), packet for packet and byte for byte.
    at_trunk = [d for d in anchored.tap.between(WAN_SBC, TRUNK, MEDIA_PORT) if d.is_rtp]
    assert [d.seq for d in at_trunk] == A_STREAM.sent_sequences
    assert {d.ssrc for d in at_trunk} == {A_STREAM.ssrc} and {d.sport for d in at_trunk} == {wan_port}
    assert [d.payload for d in at_trunk] == [A_STREAM.rtp_packet(i) for i in range(A_STREAM.count)]
    # And back: the trunk's stream reached the phone from the LAN anchor.
    at_phone = [d for d in anchored.tap.between(LAN_SBC, PHONE, MEDIA_PORT) if d.is_rtp]
    assert [d.seq for d in at_phone] == B_STREAM.sent_sequences
    assert {d.ssrc for d in at_phone} == {B_STREAM.ssrc} and {d.sport for d in at_phone} == {lan_port}
    # RTCP went anchor RTCP port to endpoint RTCP port (RTP + 1), both ways.
    rtcp_at_trunk = anchored.tap.between(WAN_SBC, TRUNK, MEDIA_PORT + 1)
    rtcp_at_phone = anchored.tap.between(LAN_SBC, PHONE, MEDIA_PORT + 1)
    assert len(rtcp_at_trunk) == A_STREAM.rtcp_sent and all(d.is_rtcp for d in rtcp_at_trunk)
    assert len(rtcp_at_phone) == B_STREAM.rtcp_sent and all(d.is_rtcp for d in rtcp_at_phone)
    assert {d.sport for d in rtcp_at_trunk} == {wan_port + 1} and {d.sport for d in rtcp_at_phone} == {lan_port + 1}
    # The endpoints only ever talked to the SBC, never to each other.
    assert not anchored.tap.between(PHONE, TRUNK) and not anchored.tap.between(TRUNK, PHONE)


def _check_counters(a: dict[str, Any], b: dict[str, Any]) -> None:
    a_total = A_STREAM.sent + A_STREAM.rtcp_sent
    b_total = B_STREAM.sent + B_STREAM.rtcp_sent
    assert (a["packets_in"], a["rtp_in"], a["packets_out"]) == (a_total, A_STREAM.sent, b_total), a
    assert (b["packets_in"], b["rtp_in"], b["packets_out"]) == (b_total, B_STREAM.sent, a_total), b
    assert a["bytes_in"] == A_STREAM.sent * 172 + A_STREAM.rtcp_sent * 28
    assert b["bytes_in"] == B_STREAM.sent * 172 + B_STREAM.rtcp_sent * 28
    assert a["source"] == f"{PHONE}:{MEDIA_PORT}" and b["source"] == f"{TRUNK}:{MEDIA_PORT}"
    for leg in (a, b):
        assert (leg["lost"], leg["loss_pct"], leg["dropped_spoofed"]) == (0, 0.0, 0), leg
        assert leg["mos"] is not None and leg["mos"] > 4.0, leg


def test_counters_in_sbc_calls_match_what_sipp_sent(anchored: AnchoredCall) -> None:
    call = anchored.during
    assert call["media_mode"] == "anchor" and call["state"] == "confirmed" and not call["hairpin"]
    _check_counters(*stream_legs(call))
    # The operator's view names the same figures.
    a, b = stream_legs(call)
    assert f"in {a['packets_in']} out {a['packets_out']} lost 0 (0.0%)" in anchored.calls_text, anchored.calls_text
    assert f"in {b['packets_in']} out {b['packets_out']} lost 0 (0.0%)" in anchored.calls_text


def test_call_record_carries_the_same_figures(anchored: AnchoredCall) -> None:
    record = anchored.record
    assert record["call"] == anchored.during["call"] and record["media_mode"] == "anchor"
    assert record["reason"] == "BYE from caller" and record["status"] == 200
    # Wall-clock times in UTC that a billing system can read, in order, and agreeing with the duration.
    start, answer, end = (datetime.datetime.fromisoformat(str(record[k])) for k in ("start", "answer", "end"))
    assert str(record["end"]).endswith("Z") and start.tzinfo is not None
    assert start <= answer <= end <= datetime.datetime.now(datetime.UTC)
    assert datetime.datetime.now(datetime.UTC) - start < datetime.timedelta(minutes=10)
    assert abs((end - answer).total_seconds() - float(record["duration_s"])) < 0.01
    _check_counters(*stream_legs(record))
    # The tap saw exactly what the relay says it sent.
    a, b = stream_legs(record)
    assert len(_from_anchor(anchored.tap, LAN_SBC, LAN_MEDIA_PORTS, PHONE)) == a["packets_out"]
    assert len(_from_anchor(anchored.tap, WAN_SBC, WAN_MEDIA_PORTS, TRUNK)) == b["packets_out"]


def test_relayed_packets_carry_each_realms_ds_field(anchored: AnchoredCall) -> None:
    toward_phone = _from_anchor(anchored.tap, LAN_SBC, LAN_MEDIA_PORTS, PHONE)
    toward_trunk = _from_anchor(anchored.tap, WAN_SBC, WAN_MEDIA_PORTS, TRUNK)
    assert len(toward_phone) == B_STREAM.sent + B_STREAM.rtcp_sent
    assert len(toward_trunk) == A_STREAM.sent + A_STREAM.rtcp_sent
    # Every relayed packet, RTP and RTCP: EF (the default, the LAN realm sets none) toward the phone,
    # the WAN realm's configured AF41 toward the trunk; ECN bits 0.
    assert {d.tos for d in toward_phone} == {EF << 2}
    assert {d.tos for d in toward_trunk} == {AF41 << 2}
    # SIPp itself sends with DS 0: the marking is the SBC's.
    assert {d.tos for d in anchored.tap.between(PHONE, LAN_SBC)} == {0}
