"""Issue 3, acceptance 4: hold (sendonly, inactive), resume and a codec change keep the same anchors.

The WAN side re-INVITEs four times (sendonly, sendrecv, inactive, sendrecv with PCMA); both SIPps
play media the whole time. Every SDP either side receives names the same anchor, media toward a
holding endpoint is held back (and counted), and after each resume and after the codec change it
flows again, through the same anchor ports.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.integration.harness import (
    LAN_SBC,
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
    received_sdps,
    sbc_cli,
    sip_ports,
    stream_legs,
)
from tests.integration.rtp import Datagram, RtpStream, rtp_tap, write_rtp_pcap

pytestmark = needs_media_tools

PHONE_SIP_PORT = 5071
A_PCMU = RtpStream(count=500, ssrc=0xA1000001)  # 10 s: longer than the whole hold/resume sequence
A_PCMA = RtpStream(count=100, ssrc=0xA1000002, payload_type=8, first_seq=30000)
B_PCMU = RtpStream(count=500, ssrc=0xB1000001, first_seq=40000)
B_PCMA = RtpStream(count=100, ssrc=0xB1000002, payload_type=8, first_seq=50000)


def _runs(seqs: list[int]) -> int:
    """How many unbroken runs of consecutive sequence numbers."""
    return sum(1 for i, s in enumerate(seqs) if i == 0 or s != (seqs[i - 1] + 1) & 0xFFFF)


def _anchors(call: dict[str, Any]) -> tuple[str, str]:
    a, b = stream_legs(call)
    return a["anchor"], b["anchor"]


def test_hold_resume_and_codec_change_keep_media_on_the_same_anchors(tmp_path: Path) -> None:
    for name, stream in (("a_leg", A_PCMU), ("a_leg2", A_PCMA), ("b_leg", B_PCMU), ("b_leg2", B_PCMA)):
        write_rtp_pcap(tmp_path / f"{name}.pcap", stream)
    snapshots: list[dict[str, Any]] = []
    with (
        running_sbc(tmp_path, sbc_config(tmp_path / "state")) as sbc,
        rtp_tap(
            f"{PHONE}/32",
            f"{TRUNK}/32",
            f"{LAN_SBC}/32",
            f"{WAN_SBC}/32",
            ignore_ports=sip_ports(PHONE_SIP_PORT, TRUNK_PORT),
        ) as tap,
    ):
        uas = media_sipp("uas", tmp_path, "media_uas_holds.xml", address=TRUNK, sip_port=TRUNK_PORT).start()
        uac = media_sipp(
            "uac", tmp_path, "media_uac_held.xml", address=PHONE, sip_port=PHONE_SIP_PORT,
            remote=f"{LAN_SBC}:{SBC_PORT}", pause_ms=3000,
        ).start()  # fmt: skip
        deadline = time.monotonic() + 40
        assert uac.proc is not None
        while uac.proc.poll() is None and time.monotonic() < deadline:
            snapshots += [c for c in sbc_cli(sbc, "calls")["calls"] if c["streams"]]
            time.sleep(0.3)
        finish(uac, uas, sbc=sbc)
        record = cdr_records(sbc)[0]
        tap.stop()

    # One pair of anchors for the whole call, whatever the re-INVITEs said.
    assert snapshots, "the call never showed up in sbc calls"
    assert {_anchors(c) for c in snapshots} == {_anchors(record)}
    lan_anchor, wan_anchor = _anchors(record)
    lan_port, wan_port = int(lan_anchor.rsplit(":", 1)[1]), int(wan_anchor.rsplit(":", 1)[1])
    to_phone = received_sdps(uac)  # the 200 answer, then the four re-INVITEs
    to_trunk = received_sdps(uas)  # the INVITE, then the four 200 answers
    assert len(to_phone) == 5 and len(to_trunk) == 5, (to_phone, to_trunk)
    assert {(tuple(s.connections), tuple(s.ports)) for s in to_phone} == {((LAN_SBC,), (lan_port,))}
    assert {(tuple(s.connections), tuple(s.ports)) for s in to_trunk} == {((WAN_SBC,), (wan_port,))}
    # The directions crossed as written, and so did the codec change.
    assert [s.directions for s in to_phone[1:]] == [["sendonly"], ["sendrecv"], ["inactive"], ["sendrecv"]]
    assert to_phone[4].lines("m=") == [f"m=audio {lan_port} RTP/AVP 8"]
    assert [s.directions for s in to_trunk[1:]] == [["recvonly"], ["sendrecv"], ["inactive"], ["sendrecv"]]
    assert to_trunk[4].lines("m=") == [f"m=audio {wan_port} RTP/AVP 8"]

    def rtp(datagrams: list[Datagram], ssrc: int) -> list[int]:
        return [d.seq for d in datagrams if d.is_rtp and d.ssrc == ssrc]

    at_trunk = tap.between(WAN_SBC, TRUNK, MEDIA_PORT)
    at_phone = tap.between(LAN_SBC, PHONE, MEDIA_PORT)
    assert {d.sport for d in at_trunk} == {wan_port} and {d.sport for d in at_phone} == {lan_port}
    # Toward the trunk, the phone's PCMU stopped while the trunk held (sendonly) and while the call
    # was inactive, and came back in between: at least two runs with gaps.
    a_pcmu = rtp(at_trunk, A_PCMU.ssrc)
    assert _runs(a_pcmu) >= 2 and len(a_pcmu) < A_PCMU.sent, (len(a_pcmu), _runs(a_pcmu))
    # Toward the phone, the trunk's music on hold kept flowing during sendonly (1.5 s, about 75 packets
    # more than the other way), and inactive stopped it (SIPp then replaced it with the PCMA stream).
    b_pcmu = rtp(at_phone, B_PCMU.ssrc)
    assert len(a_pcmu) + 25 < len(b_pcmu) < B_PCMU.sent, (len(a_pcmu), len(b_pcmu))
    # After the codec change both PCMA streams went through complete, on the same anchor ports.
    assert rtp(at_trunk, A_PCMA.ssrc) == A_PCMA.sent_sequences
    assert rtp(at_phone, B_PCMA.ssrc) == B_PCMA.sent_sequences
    assert {d.payload_type for d in at_trunk if d.ssrc == A_PCMA.ssrc} == {8}
    # The relay counted what it held back, per direction; nothing was taken for a spoof.
    a, b = stream_legs(record)
    assert b["not_sent_hold"] > 0 and a["not_sent_hold"] > 0, (a, b)
    assert a["dropped_spoofed"] == b["dropped_spoofed"] == 0
    # Every packet in was either sent on or held back, and the tap agrees on both ends.
    from_phone, from_trunk = tap.between(PHONE, LAN_SBC, lan_port), tap.between(TRUNK, WAN_SBC, wan_port)
    assert a["packets_in"] == len(from_phone) == b["packets_out"] + b["not_sent_hold"]
    assert b["packets_in"] == len(from_trunk) == a["packets_out"] + a["not_sent_hold"]
    assert b["packets_out"] == len(at_trunk) and a["packets_out"] == len(at_phone)
