"""Issue 3, acceptance 2 and 3: media that stays in the branch.

Direct: a LAN phone calls another LAN phone on a `media: direct` route; the SDP passes unchanged
apart from o= and the relay is not involved at all. Hairpin: phone A calls phone B through a cloud PBX
on the WAN side that passes SDP through; the SBC recognises its own WAN anchor in the offer that comes
back and joins the two LAN anchors, so RTP flows A <-> B inside the branch and nothing goes to the WAN.
"""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path

from tests.integration.harness import (
    LAN_SBC,
    NET,
    PHONE,
    PHONE_B,
    SBC_PORT,
    TRUNK,
    TRUNK_PORT,
    WAN_NET,
    WAN_SBC,
    received_messages,
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
    sbc_cli,
    sip_ports,
    stream_legs,
    wait_for_calls,
)
from tests.integration.pbx import PassThroughPbx
from tests.integration.rtp import RtpStream, rtp_tap, write_rtp_pcap

pytestmark = needs_media_tools

PHONE_SIP_PORT = 5071
PHONE_B_SIP_PORT = 5072
A_STREAM = RtpStream(count=100, ssrc=0xA0000003, rtcp_every=25)
B_STREAM = RtpStream(count=90, ssrc=0xB0000004, first_seq=7, rtcp_every=30)
# Hairpin: 5 s of media in a 6 s call, so a media timeout of 2 s on the WAN anchors would show.
HAIRPIN_A = RtpStream(count=250, ssrc=0xA0000005, rtcp_every=50)
HAIRPIN_B = RtpStream(count=240, ssrc=0xB0000006, first_seq=100, rtcp_every=60)


def _sdp_without_origin(body: str) -> list[str]:
    return [line.rstrip("\r") for line in body.strip().splitlines() if not line.startswith("o=")]


def test_direct_call_lan_to_lan_leaves_sdp_and_media_alone(tmp_path: Path) -> None:
    routes = f"""
  - {{name: local, from: lan, to: lan, match_user: "^1\\\\d{{3}}$", media: direct,
      target: {{host: {PHONE_B}, port: {PHONE_B_SIP_PORT}, transport: udp}}}}
  - {{name: out, from: lan, to: wan}}
"""
    write_rtp_pcap(tmp_path / "a_leg.pcap", A_STREAM)
    write_rtp_pcap(tmp_path / "b_leg.pcap", B_STREAM)
    with (
        running_sbc(tmp_path, sbc_config(tmp_path / "state", routes=routes)) as sbc,
        rtp_tap(f"127.{NET}.0.0/16", ignore_ports=sip_ports(PHONE_SIP_PORT, PHONE_B_SIP_PORT)) as tap,
    ):
        phone_b = media_sipp("phone_b", tmp_path, "media_uas.xml", address=PHONE_B, sip_port=PHONE_B_SIP_PORT).start()
        phone_a = media_sipp(
            "phone_a", tmp_path, "media_uac.xml", address=PHONE, sip_port=PHONE_SIP_PORT,
            remote=f"{LAN_SBC}:{SBC_PORT}", service="1001", pause_ms=4000,
        ).start()  # fmt: skip
        calls = wait_for_calls(sbc, lambda c: len(c) == 1 and c[0]["state"] == "confirmed")
        status = sbc_cli(sbc, "status")
        finish(phone_a, phone_b, sbc=sbc)
        record = cdr_records(sbc)[0]
        tap.stop()

    assert calls and calls[0]["media_mode"] == "direct" and calls[0]["route"] == "local", calls
    # The relay was never asked for anything: no stream, no anchor, in the live view and the record.
    assert calls[0]["streams"] == [] and record["streams"] == [] and record["media_mode"] == "direct"
    assert status["counters"]["anchors_allocated"] == 0, status
    # SDP: each phone got the other's description line for line; only o= is the SBC's.
    sent_by_a = next(m for m in received_messages(phone_b.messages()) if m.startswith("INVITE"))
    offer = received_sdps(phone_b, "INVITE")[0]
    answer = received_sdps(phone_a, "200 OK")[-1]
    assert offer.connections == [PHONE] and offer.ports == [MEDIA_PORT]
    assert answer.connections == [PHONE_B] and answer.ports == [MEDIA_PORT]
    assert _sdp_without_origin(offer.body) == [
        "v=0", "s=-", f"c=IN IP4 {PHONE}", "t=0 0", f"m=audio {MEDIA_PORT} RTP/AVP 0 101",
        "a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15", "a=ptime:20", "a=sendrecv",
    ], sent_by_a  # fmt: skip
    assert LAN_SBC in offer.origin and "alice" not in offer.origin
    assert LAN_SBC in answer.origin and "pbx" not in answer.origin
    # Media went phone to phone; the SBC's media address saw no packet at all.
    a_to_b = [d for d in tap.between(PHONE, PHONE_B, MEDIA_PORT) if d.is_rtp]
    b_to_a = [d for d in tap.between(PHONE_B, PHONE, MEDIA_PORT) if d.is_rtp]
    assert [d.seq for d in a_to_b] == A_STREAM.sent_sequences
    assert [d.seq for d in b_to_a] == B_STREAM.sent_sequences
    assert not tap.select(lambda d: LAN_SBC in (d.src, d.dst) and SBC_PORT not in (d.sport, d.dport))


def test_hairpin_through_a_cloud_pbx_keeps_media_in_the_branch(tmp_path: Path) -> None:
    routes = f"""
  - {{name: out, from: lan, to: wan}}
  - {{name: back-to-b, from: wan, to: lan, match_user: "^phoneb$",
      target: {{host: {PHONE_B}, port: {PHONE_B_SIP_PORT}, transport: udp}}}}
"""
    write_rtp_pcap(tmp_path / "a_leg.pcap", HAIRPIN_A)
    write_rtp_pcap(tmp_path / "b_leg.pcap", HAIRPIN_B)
    pbx = PassThroughPbx(TRUNK, TRUNK_PORT, sbc=(WAN_SBC, SBC_PORT), forward_user="phoneb")
    wan_timeout = "      timeout_s: 2"
    with (
        # A WAN media timeout far shorter than the call: the idle anchors toward the PBX must not count.
        running_sbc(tmp_path, sbc_config(tmp_path / "state", routes=routes, extra_realm_wan=wan_timeout)) as sbc,
        rtp_tap(f"127.{NET}.0.0/16", ignore_ports=sip_ports(PHONE_SIP_PORT, PHONE_B_SIP_PORT, TRUNK_PORT)) as tap,
    ):
        pbx.start()
        try:
            phone_b = media_sipp(
                "phone_b", tmp_path, "media_uas.xml", address=PHONE_B, sip_port=PHONE_B_SIP_PORT
            ).start()
            time.sleep(0.2)
            phone_a = media_sipp(
                "phone_a", tmp_path, "media_uac.xml", address=PHONE, sip_port=PHONE_SIP_PORT,
                remote=f"{LAN_SBC}:{SBC_PORT}", service="phoneb", pause_ms=6000,
            ).start()  # fmt: skip

            def media_through(calls: list[dict[str, object]]) -> bool:
                if len(calls) != 2 or not all(c["streams"] for c in calls):
                    return False
                lan = [leg for c in calls for leg in stream_legs(c) if leg["anchor"].startswith(LAN_SBC)]
                return sum(leg["packets_in"] for leg in lan) >= (
                    HAIRPIN_A.sent + HAIRPIN_A.rtcp_sent + HAIRPIN_B.sent + HAIRPIN_B.rtcp_sent
                )

            calls = wait_for_calls(sbc, media_through, timeout=25)
            status = sbc_cli(sbc, "status")
            finish(phone_a, phone_b, sbc=sbc)
            records = cdr_records(sbc, 2)
        finally:
            pbx.stop()
        tap.stop()

    assert len(calls) == 2 and all(c["hairpin"] for c in calls), calls
    assert status["counters"]["hairpins"] == 1, status
    first = next(c for c in calls if c["a_realm"] == "lan")  # A -> PBX
    second = next(c for c in calls if c["a_realm"] == "wan")  # PBX -> B
    a_anchor = stream_legs(first)[0]
    b_anchor = stream_legs(second)[1]
    # The PBX passed the SDP through: the second call's offer is the first call's WAN anchor.
    pbx_invites = [m for m in pbx.received if m.startswith("INVITE")]
    w1 = stream_legs(first)[1]["anchor"]
    assert pbx_invites and f"c=IN IP4 {WAN_SBC}" in pbx_invites[0]
    assert f"m=audio {w1.rsplit(':', 1)[1]} " in pbx_invites[0]
    # Phone A talks to its LAN anchor, phone B to its own; each gets the other's stream, complete.
    assert received_sdps(phone_a, "200 OK")[-1].connections == [LAN_SBC]
    assert received_sdps(phone_b, "INVITE")[0].connections == [LAN_SBC]
    a_port = int(a_anchor["anchor"].rsplit(":", 1)[1])
    b_port = int(b_anchor["anchor"].rsplit(":", 1)[1])
    at_b = [d for d in tap.between(LAN_SBC, PHONE_B, MEDIA_PORT) if d.is_rtp]
    at_a = [d for d in tap.between(LAN_SBC, PHONE, MEDIA_PORT) if d.is_rtp]
    assert [d.seq for d in at_b] == HAIRPIN_A.sent_sequences and {d.sport for d in at_b} == {b_port}
    assert [d.seq for d in at_a] == HAIRPIN_B.sent_sequences and {d.sport for d in at_a} == {a_port}
    assert len(tap.between(LAN_SBC, PHONE_B, MEDIA_PORT + 1)) == HAIRPIN_A.rtcp_sent
    assert len(tap.between(LAN_SBC, PHONE, MEDIA_PORT + 1)) == HAIRPIN_B.rtcp_sent
    assert a_anchor["packets_in"] == HAIRPIN_A.sent + HAIRPIN_A.rtcp_sent
    assert b_anchor["packets_in"] == HAIRPIN_B.sent + HAIRPIN_B.rtcp_sent
    # Nothing went toward the WAN: the WAN anchors sent and received nothing, and the tap saw no
    # datagram on the WAN side other than SIP.
    wan_legs = [leg for c in calls for leg in stream_legs(c) if leg["anchor"].startswith(WAN_SBC)]
    assert len(wan_legs) == 2 and all(leg["packets_out"] == 0 and leg["packets_in"] == 0 for leg in wan_legs)
    wan = ipaddress.ip_network(WAN_NET)
    on_wan = tap.select(lambda d: ipaddress.ip_address(d.dst) in wan or ipaddress.ip_address(d.src) in wan)
    assert on_wan == [], on_wan[:5]
    assert not tap.select(lambda d: d.sport in WAN_MEDIA_PORTS or d.dport in WAN_MEDIA_PORTS)
    # Both call records say so too.
    assert [s["hairpin_events"] for r in records for s in r["streams"]] == [1, 1], records
    assert [r["reason"] for r in records] == ["BYE from caller"] * 2, records  # A hung up, the PBX passed it on
    assert all(p in LAN_MEDIA_PORTS for p in (a_port, b_port))
