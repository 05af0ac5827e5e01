"""Issue 3 scope, end to end: several m-lines, a=rtcp (RFC 3605), rtcp-mux (RFC 5761), a disabled and a
rejected stream kept in order, ICE attributes removed on anchored legs, a=crypto passed unchanged, and
media on every live stream through the running SBC.
"""

from __future__ import annotations

from pathlib import Path

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
    cdr_records,
    finish,
    media_sipp,
    needs_media_tools,
    received_sdps,
    sbc_cli,
    sip_ports,
    wait_for_calls,
)
from tests.integration.rtp import Datagram, RtpStream, rtp_tap, write_rtp_pcap

pytestmark = needs_media_tools

PHONE_SIP_PORT = 5071
AUDIO, VIDEO, PHONE_RTCP = 6000, 6002, 6011  # fixed in the scenarios
A_AUDIO = RtpStream(count=120, ssrc=0xA5000001)  # the phone sends no RTCP: RTCP toward it stays on a=rtcp
A_VIDEO = RtpStream(count=90, ssrc=0xA5000002, payload_type=97, clock_rate=90000, ptime_ms=33, rtcp_every=30,
                    rtcp_mux=True, payload_size=900, port_offset=2)  # fmt: skip
B_AUDIO = RtpStream(count=110, ssrc=0xB5000001, rtcp_every=25)
B_VIDEO = RtpStream(count=80, ssrc=0xB5000002, payload_type=97, clock_rate=90000, ptime_ms=33, rtcp_every=20,
                    rtcp_mux=True, payload_size=900, port_offset=2)  # fmt: skip
A_CRYPTO = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32"
B_CRYPTO = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj|2^20|1:32"


def _port(anchor: str) -> int:
    return int(anchor.rsplit(":", 1)[1])


def test_several_streams_rtcp_mux_crypto_ice_and_rejected_streams(tmp_path: Path) -> None:
    write_rtp_pcap(tmp_path / "a_media.pcap", A_AUDIO, A_VIDEO)
    write_rtp_pcap(tmp_path / "b_media.pcap", B_AUDIO, B_VIDEO)
    with (
        running_sbc(tmp_path, sbc_config(tmp_path / "state")) as sbc,
        rtp_tap(f"{PHONE}/32", f"{TRUNK}/32", ignore_ports=sip_ports(PHONE_SIP_PORT, TRUNK_PORT)) as tap,
    ):
        uas = media_sipp("uas", tmp_path, "media_uas_features.xml", address=TRUNK, sip_port=TRUNK_PORT).start()
        uac = media_sipp(
            "uac", tmp_path, "media_uac_features.xml", address=PHONE, sip_port=PHONE_SIP_PORT,
            remote=f"{LAN_SBC}:{SBC_PORT}", pause_ms=7000,
        ).start()  # fmt: skip

        def all_in(calls: list[dict[str, object]]) -> bool:
            streams = calls[0]["streams"] if len(calls) == 1 else []
            assert isinstance(streams, list)
            return (
                len(streams) == 4
                and streams[0]["b"]["packets_in"] >= B_AUDIO.sent + B_AUDIO.rtcp_sent
                and (
                    streams[1]["a"]["packets_in"] >= A_VIDEO.sent + A_VIDEO.rtcp_sent
                    and streams[1]["b"]["packets_in"] >= B_VIDEO.sent + B_VIDEO.rtcp_sent
                )
            )

        wait_for_calls(sbc, all_in, timeout=20)
        call = sbc_cli(sbc, "calls")["calls"][0]
        finish(uac, uas, sbc=sbc)
        record = cdr_records(sbc)[0]
        tap.stop()

    audio, video, disabled, rejected = call["streams"]
    # SIPp plays one pcap per call, so each side's video goes to its audio port + 2 (write_rtp_pcap): that
    # reaches the SBC's video anchor because a fresh SBC hands out port pairs in order, stream by stream.
    for leg in ("a", "b"):
        assert _port(video[leg]["anchor"]) == _port(audio[leg]["anchor"]) + 2, "precondition of this test"
    assert disabled["a"] is None and rejected["a"] is None  # port 0 streams hold no anchors
    assert audio["rtcp_mux"] is False and video["rtcp_mux"] is True

    offer = received_sdps(uas, "INVITE")[0]
    answer = received_sdps(uac, "200 OK")[-1]
    # Four m-lines in their order; the two dead ones at port 0; live ones on the SBC's anchors.
    assert offer.ports == [_port(audio["b"]["anchor"]), _port(video["b"]["anchor"]), 0, offer.ports[3]]
    assert offer.ports[3] != 0  # the text stream was offered live, the trunk rejected it
    assert answer.ports == [_port(audio["a"]["anchor"]), _port(video["a"]["anchor"]), 0, 0]
    assert [line.split()[0] for line in offer.lines("m=")] == ["m=audio", "m=video", "m=video", "m=text"]
    assert [line.split()[0] for line in answer.lines("m=")] == ["m=audio", "m=video", "m=video", "m=text"]
    # Only the SBC's addresses, in every c= (the rejected text stream's own c= included).
    assert set(offer.connections) == {WAN_SBC} and set(answer.connections) == {LAN_SBC}
    assert PHONE not in offer.body and TRUNK not in answer.body
    # ICE is gone on the anchored legs (session and media level); SRTP keys crossed untouched.
    for sdp in (offer, answer):
        assert not [line for line in sdp.body.splitlines() if line.startswith(("a=ice-", "a=candidate", "a=end-of"))]
    assert offer.lines("a=crypto") == [A_CRYPTO] and answer.lines("a=crypto") == [B_CRYPTO]
    # a=rtcp names the anchor's RTCP port; rtcp-mux stays where both sides asked for it.
    assert offer.lines("a=rtcp:") == [f"a=rtcp:{_port(audio['b']['anchor']) + 1}"]
    assert offer.lines("a=rtcp-mux") == ["a=rtcp-mux"] and answer.lines("a=rtcp-mux") == ["a=rtcp-mux"]

    def rtp(datagrams: list[Datagram]) -> list[int]:
        return [d.seq for d in datagrams if d.is_rtp]

    # Audio both ways; the trunk's RTCP reached the phone on the port its a=rtcp named.
    assert rtp(tap.between(WAN_SBC, TRUNK, AUDIO)) == A_AUDIO.sent_sequences
    assert rtp(tap.between(LAN_SBC, PHONE, AUDIO)) == B_AUDIO.sent_sequences
    rtcp_at_phone = tap.between(LAN_SBC, PHONE, PHONE_RTCP)
    assert len(rtcp_at_phone) == B_AUDIO.rtcp_sent and all(d.is_rtcp for d in rtcp_at_phone)
    assert not tap.between(LAN_SBC, PHONE, AUDIO + 1)
    # Video both ways with RTCP on the RTP port (muxed on both legs), payload bytes untouched.
    at_trunk_video = tap.between(WAN_SBC, TRUNK, VIDEO)
    at_phone_video = tap.between(LAN_SBC, PHONE, VIDEO)
    assert rtp(at_trunk_video) == A_VIDEO.sent_sequences and rtp(at_phone_video) == B_VIDEO.sent_sequences
    assert sum(d.is_rtcp for d in at_trunk_video) == A_VIDEO.rtcp_sent
    assert sum(d.is_rtcp for d in at_phone_video) == B_VIDEO.rtcp_sent
    assert {d.sport for d in at_phone_video} == {_port(video["a"]["anchor"])}
    assert [d.payload for d in at_trunk_video if d.is_rtp] == [A_VIDEO.rtp_packet(i) for i in range(A_VIDEO.count)]
    assert not tap.between(WAN_SBC, TRUNK, VIDEO + 1) and not tap.between(LAN_SBC, PHONE, VIDEO + 1)
    # With the 90 kHz clock of its a=rtpmap the video jitter is SIPp's pacing, tens of ms at most under load;
    # read with an 8 kHz clock it would be ~340 ms.
    for leg in (video["a"], video["b"], audio["a"], audio["b"]):
        assert leg["lost"] == 0 and leg["dropped_spoofed"] == 0 and leg["jitter_ms"] < 150, leg
    assert len(record["streams"]) == 4 and record["streams"][1]["rtcp_mux"] is True


def test_late_offer_anchors_the_offer_in_the_200_and_the_answer_in_the_ack(tmp_path: Path) -> None:
    a_stream = RtpStream(count=100, ssrc=0xAD000001)
    b_stream = RtpStream(count=100, ssrc=0xBD000001, first_seq=777)
    write_rtp_pcap(tmp_path / "a_leg.pcap", a_stream)
    write_rtp_pcap(tmp_path / "b_leg.pcap", b_stream)
    with (
        running_sbc(tmp_path, sbc_config(tmp_path / "state")) as sbc,
        rtp_tap(f"{PHONE}/32", f"{TRUNK}/32", ignore_ports=sip_ports(PHONE_SIP_PORT, TRUNK_PORT)) as tap,
    ):
        uas = media_sipp("uas", tmp_path, "media_uas_late_offer.xml", address=TRUNK, sip_port=TRUNK_PORT).start()
        uac = media_sipp(
            "uac", tmp_path, "media_uac_late_offer.xml", address=PHONE, sip_port=PHONE_SIP_PORT,
            remote=f"{LAN_SBC}:{SBC_PORT}", pause_ms=4000,
        ).start()  # fmt: skip
        finish(uac, uas, sbc=sbc)
        record = cdr_records(sbc)[0]
        tap.stop()

    offer = received_sdps(uac, "200 OK")[-1]  # the trunk's offer, anchored for the phone
    answer = received_sdps(uas, "ACK")[-1]  # the phone's answer, anchored for the trunk
    a, b = record["streams"][0]["a"], record["streams"][0]["b"]
    assert offer.connections == [LAN_SBC] and offer.ports == [_port(a["anchor"])]
    assert answer.connections == [WAN_SBC] and answer.ports == [_port(b["anchor"])]
    assert [d.seq for d in tap.between(WAN_SBC, TRUNK, AUDIO) if d.is_rtp] == a_stream.sent_sequences
    assert [d.seq for d in tap.between(LAN_SBC, PHONE, AUDIO) if d.is_rtp] == b_stream.sent_sequences
    assert (a["packets_in"], b["packets_in"]) == (a_stream.sent, b_stream.sent)


def test_early_media_flows_before_the_answer_on_the_anchors_the_answer_keeps(tmp_path: Path) -> None:
    ringback = RtpStream(count=100, ssrc=0xBE000001, first_seq=100)  # 2 s while the call is still ringing
    a_stream = RtpStream(count=100, ssrc=0xAE000001)
    b_stream = RtpStream(count=100, ssrc=0xBE000002, first_seq=300)
    write_rtp_pcap(tmp_path / "b_early.pcap", ringback)
    write_rtp_pcap(tmp_path / "a_leg.pcap", a_stream)
    write_rtp_pcap(tmp_path / "b_leg.pcap", b_stream)
    with (
        running_sbc(tmp_path, sbc_config(tmp_path / "state")) as sbc,
        rtp_tap(f"{PHONE}/32", f"{TRUNK}/32", ignore_ports=sip_ports(PHONE_SIP_PORT, TRUNK_PORT)) as tap,
    ):
        uas = media_sipp("uas", tmp_path, "media_uas_early.xml", address=TRUNK, sip_port=TRUNK_PORT).start()
        uac = media_sipp(
            "uac", tmp_path, "media_uac.xml", address=PHONE, sip_port=PHONE_SIP_PORT,
            remote=f"{LAN_SBC}:{SBC_PORT}", pause_ms=4000,
        ).start()  # fmt: skip
        early = wait_for_calls(
            sbc, lambda c: len(c) == 1 and c[0]["state"] == "early" and c[0]["streams"][0]["b"]["packets_in"] >= 50
        )
        finish(uac, uas, sbc=sbc)
        record = cdr_records(sbc)[0]
        tap.stop()

    assert early[0]["state"] == "early", early  # media counted while the call was not answered yet
    sdps = received_sdps(uac)  # the 183 and the 200
    assert len(sdps) == 2 and sdps[0].ports == sdps[1].ports == [_port(record["streams"][0]["a"]["anchor"])]
    to_phone = [d for d in tap.between(LAN_SBC, PHONE, AUDIO) if d.is_rtp]
    assert [d.seq for d in to_phone if d.ssrc == ringback.ssrc] == ringback.sent_sequences
    assert [d.seq for d in to_phone if d.ssrc == b_stream.ssrc] == b_stream.sent_sequences
    assert [d.seq for d in tap.between(WAN_SBC, TRUNK, AUDIO) if d.is_rtp] == a_stream.sent_sequences
