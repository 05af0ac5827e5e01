"""MediaSessions against the fake dataplane: what gets allocated, programmed and connected per SDP."""

from __future__ import annotations

import ipaddress

from dataplane.api import Endpoint, Latch, LegStats
from dataplane.fake import FakeDataplane
from dataplane.quality import MediaFlow
from sbc.b2bua.media import CallMedia, MediaSessions
from sbc.config.model import LatchMode, MediaMode, MediaSettings, Realm

LAN_SBC = ipaddress.ip_address("198.18.0.1")
WAN_SBC = ipaddress.ip_address("198.18.1.1")
PHONE = ipaddress.ip_address("198.18.0.10")
PHONE_B = ipaddress.ip_address("198.18.0.11")
TRUNK = ipaddress.ip_address("198.18.1.10")

REALMS = (
    Realm("lan", LAN_SBC, (), MediaSettings(LAN_SBC, 40000, 40999, latch=LatchMode.LEARN, dscp=46, timeout_s=10)),
    Realm("wan", WAN_SBC, (), MediaSettings(WAN_SBC, 41000, 41999, dscp=34, timeout_s=10)),
)


def sdp(address: object, *media: str, session: str = "") -> bytes:
    lines = ["v=0", f"o=x 1 1 IN IP4 {address}", "s=-", f"c=IN IP4 {address}", "t=0 0", *session.split("\n")]
    for m in media:
        lines += m.split("\n")
    return ("\r\n".join(line for line in lines if line) + "\r\n").encode()


AUDIO = "m=audio 6000 RTP/AVP 0\na=rtpmap:0 PCMU/8000"


def setup(mode: MediaMode = MediaMode.ANCHOR, realms: tuple[str, str] = ("lan", "wan")) -> tuple[
    FakeDataplane, MediaSessions, CallMedia
]:  # fmt: skip
    dp = FakeDataplane()
    sessions = MediaSessions(dp, REALMS)
    return dp, sessions, sessions.new_call(mode, *realms)


def test_offer_and_answer_program_both_anchors_and_connect_them() -> None:
    dp, sessions, call = setup()
    out = sessions.process(call, 0, sdp(PHONE, AUDIO)).decode()
    lan, wan = call.streams[0].anchors[0], call.streams[0].anchors[1]
    assert f"c=IN IP4 {WAN_SBC}" in out and f"m=audio {wan.rtp_port} " in out and str(PHONE) not in out
    leg = dp.leg_of(lan)
    assert leg is not None and leg.remote_rtp == Endpoint(PHONE, 6000) and leg.remote_rtcp == Endpoint(PHONE, 6001)
    assert (leg.latch, leg.dscp, leg.rtcp_mux) == (Latch.LEARN, 46, False)
    assert dp.leg_of(wan) is None and dp.partner_of(lan) == wan
    back = sessions.process(call, 1, sdp(TRUNK, AUDIO)).decode()
    assert f"c=IN IP4 {LAN_SBC}" in back and f"m=audio {lan.rtp_port} " in back
    wan_leg = dp.leg_of(wan)
    assert wan_leg is not None and (wan_leg.latch, wan_leg.dscp) == (Latch.SDP, 34)
    assert sessions.anchors_allocated == 2


def test_reoffers_keep_the_anchors_and_hold_disables_sending_toward_the_holder() -> None:
    dp, sessions, call = setup()
    sessions.process(call, 0, sdp(PHONE, AUDIO))
    sessions.process(call, 1, sdp(TRUNK, AUDIO))
    before = dict(call.streams[0].anchors)
    sessions.process(call, 1, sdp(TRUNK, AUDIO + "\na=sendonly"))
    sessions.process(call, 0, sdp(PHONE, AUDIO + "\na=recvonly"))
    assert call.streams[0].anchors == before and len(dp.allocated) == 2
    wan_leg, lan_leg = dp.leg_of(before[1]), dp.leg_of(before[0])
    assert wan_leg is not None and lan_leg is not None
    assert wan_leg.send_enabled is False and lan_leg.send_enabled is True
    report = sessions.report(call)[0]
    assert (report["a"]["direction"], report["b"]["direction"]) == ("recvonly", "sendonly")  # type: ignore[index]


def test_rtcp_mux_only_when_both_sides_agree() -> None:
    dp, sessions, call = setup()
    sessions.process(call, 0, sdp(PHONE, AUDIO + "\na=rtcp-mux"))
    lan = call.streams[0].anchors[0]
    offered = dp.leg_of(lan)
    assert offered is not None and offered.rtcp_mux and offered.remote_rtcp is None  # the offerer is ready for mux
    sessions.process(call, 1, sdp(TRUNK, AUDIO))  # the answer refuses it
    lan_leg, wan_leg = dp.leg_of(lan), dp.leg_of(call.streams[0].anchors[1])
    assert lan_leg is not None and not lan_leg.rtcp_mux and lan_leg.remote_rtcp == Endpoint(PHONE, 6001)
    assert wan_leg is not None and not wan_leg.rtcp_mux
    dp2, sessions2, call2 = setup()
    sessions2.process(call2, 0, sdp(PHONE, AUDIO + "\na=rtcp-mux"))
    answer = sessions2.process(call2, 1, sdp(TRUNK, AUDIO + "\na=rtcp-mux")).decode()
    assert "a=rtcp-mux" in answer
    assert all(leg.rtcp_mux for leg in dp2.legs.values()) and len(dp2.legs) == 2
    assert sessions2.report(call2)[0]["rtcp_mux"] is True


def test_explicit_rtcp_port_is_where_rtcp_goes_and_the_other_side_sees_the_anchor() -> None:
    dp, sessions, call = setup()
    out = sessions.process(call, 0, sdp(PHONE, AUDIO + "\na=rtcp:6011")).decode()
    wan = call.streams[0].anchors[1]
    assert f"a=rtcp:{wan.rtcp_port}" in out and "6011" not in out
    leg = dp.leg_of(call.streams[0].anchors[0])
    assert leg is not None and leg.remote_rtcp == Endpoint(PHONE, 6011)


def test_rejected_stream_keeps_its_place_releases_its_anchors_and_hides_its_address() -> None:
    dp, sessions, call = setup()
    video = "m=video 6002 RTP/AVP 96\na=rtpmap:96 H264/90000"
    sessions.process(call, 0, sdp(PHONE, AUDIO, video))
    assert len(dp.live) == 4
    answer = sessions.process(call, 1, sdp(TRUNK, AUDIO, f"m=video 0 RTP/AVP 96\nc=IN IP4 {TRUNK}")).decode()
    assert len(dp.live) == 2 and len(dp.releases) == 2
    assert answer.index("m=audio") < answer.index("m=video 0 RTP/AVP 96")
    assert str(TRUNK) not in answer and f"c=IN IP4 {LAN_SBC}" in answer
    # The dynamic payload type's clock comes from its rtpmap.
    _, s2, c2 = setup()
    s2.process(c2, 0, sdp(PHONE, "m=audio 6000 RTP/AVP 111\na=rtpmap:111 opus/48000/2"))
    leg = s2.dataplane.leg_of(c2.streams[0].anchors[0])  # type: ignore[attr-defined]
    assert leg.clock_rate == 48000


def test_ice_removed_crypto_kept() -> None:
    _, sessions, call = setup()
    crypto = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4"
    body = sdp(
        PHONE,
        f"m=audio 6000 RTP/SAVP 0\n{crypto}\na=ice-ufrag:abcd\na=ice-pwd:0123456789012345678901"
        f"\na=candidate:1 1 UDP 2130706431 {PHONE} 6000 typ host",
    )
    out = sessions.process(call, 0, body).decode()
    assert crypto in out and "ice-" not in out and "candidate" not in out


def _hairpin() -> tuple[FakeDataplane, MediaSessions, CallMedia, CallMedia]:
    """Phone A -> WAN PBX (call 1), PBX -> phone B (call 2) with call 1's WAN anchor in the offer."""
    dp, sessions, first = setup()
    to_pbx = sessions.process(first, 0, sdp(PHONE, AUDIO))
    second = sessions.new_call(MediaMode.ANCHOR, "wan", "lan")
    sessions.process(second, 0, to_pbx)  # the PBX passes the SDP through
    answer_b = sessions.process(second, 1, sdp(PHONE_B, AUDIO))
    sessions.process(first, 1, answer_b)
    return dp, sessions, first, second


def test_hairpin_joins_the_two_lan_anchors() -> None:
    dp, sessions, first, second = _hairpin()
    l1, w1 = first.streams[0].anchors[0], first.streams[0].anchors[1]
    w2, l2 = second.streams[0].anchors[0], second.streams[0].anchors[1]
    assert dp.partner_of(l1) == l2 and dp.partner_of(w1) is None and dp.partner_of(w2) is None
    assert sessions.hairpins == 1 and first.streams[0].hairpinned and second.streams[0].hairpinned
    assert [s["hairpin_events"] for s in sessions.report(first) + sessions.report(second)] == [1, 1]


def test_hairpin_undone_when_the_pbx_sends_media_elsewhere_or_a_call_ends() -> None:
    dp, sessions, first, second = _hairpin()
    l1, w1 = first.streams[0].anchors[0], first.streams[0].anchors[1]
    w2, l2 = second.streams[0].anchors[0], second.streams[0].anchors[1]
    sessions.process(second, 0, sdp(TRUNK, AUDIO))  # the PBX moves B to its own media server
    assert dp.partner_of(l2) == w2 and dp.partner_of(l1) == w1
    assert not first.streams[0].hairpinned and not second.streams[0].hairpinned
    dp, sessions, first, second = _hairpin()
    l1, w1 = first.streams[0].anchors[0], first.streams[0].anchors[1]
    sessions.release(second)
    assert dp.partner_of(l1) == w1 and not first.streams[0].hairpinned
    assert sessions.report(first)[0]["hairpin_events"] == 1


def test_direct_mode_allocates_nothing() -> None:
    dp, sessions, call = setup(MediaMode.DIRECT, ("lan", "lan"))
    out = sessions.process(call, 0, sdp(PHONE, AUDIO)).decode()
    assert f"c=IN IP4 {PHONE}" in out and "o=sbc " in out and dp.allocated == [] and call.streams == []


def _answered(extra_a: str = "", extra_b: str = "") -> tuple[FakeDataplane, MediaSessions, CallMedia]:
    dp, sessions, call = setup()
    sessions.process(call, 0, sdp(PHONE, AUDIO + extra_a))
    sessions.process(call, 1, sdp(TRUNK, AUDIO + extra_b))
    return dp, sessions, call


def _feed(dp: FakeDataplane, call: CallMedia, a_in: int, b_in: int, a_last: float | None, b_last: float | None) -> None:
    for leg, count, last in ((0, a_in, a_last), (1, b_in, b_last)):
        dp.set_stats(call.streams[0].anchors[leg], LegStats(packets_in=count, last_in_s=last))


TIMEOUTS = {0: 10.0, 1: 10.0}


def test_one_way_audio_found_once_and_recorded() -> None:
    dp, sessions, call = _answered()
    found = []
    for t in range(0, 13, 2):  # A keeps sending, B never does
        _feed(dp, call, 50 * t, 0, float(t), None)
        found += sessions.check(call, float(t), 0.0, {0: 60.0, 1: 60.0})
    assert [(f.stream, f.leg, f.flow) for f in found] == [(0, None, MediaFlow.A_ONLY)]
    report = sessions.report(call)[0]
    assert report["one_way"] is True and report["one_way_events"] == 1 and report["flow"] == "a_only"


def test_one_way_not_claimed_while_on_hold() -> None:
    dp, sessions, call = _answered(extra_b="\na=sendonly")  # B holds: A is not expected to send
    found = []
    for t in range(0, 13, 2):
        _feed(dp, call, 0, 50 * t, None, float(t))
        found += sessions.check(call, float(t), 0.0, TIMEOUTS)
    assert found == [] and sessions.report(call)[0]["one_way_events"] == 0


def test_media_timeout_reported_once_per_silence_and_cleared_by_media() -> None:
    dp, sessions, call = _answered()
    _feed(dp, call, 10, 10, 1.0, 1.0)
    assert sessions.check(call, 5.0, 0.0, TIMEOUTS) == []
    _feed(dp, call, 10, 20, 1.0, 11.0)  # A went silent at 1 s, B goes on
    found = sessions.check(call, 12.0, 0.0, TIMEOUTS)
    assert [(f.leg, f.idle_s) for f in found if f.leg is not None] == [(0, 11.0)]
    assert [f.flow for f in found if f.leg is None] == [MediaFlow.B_ONLY]  # and it is one-way audio too
    assert sessions.check(call, 14.0, 0.0, TIMEOUTS) == []  # reported already
    assert sessions.report(call)[0]["a"]["timed_out"] is True  # type: ignore[index]
    _feed(dp, call, 11, 30, 15.0, 15.0)
    assert sessions.check(call, 16.0, 0.0, TIMEOUTS) == []
    assert sessions.report(call)[0]["a"]["timed_out"] is False  # type: ignore[index]


def test_media_timeout_waits_while_held_and_restarts_after_resume() -> None:
    dp, sessions, call = _answered()
    sessions.process(call, 1, sdp(TRUNK, AUDIO + "\na=inactive"))
    sessions.process(call, 0, sdp(PHONE, AUDIO + "\na=inactive"))
    _feed(dp, call, 0, 0, None, None)
    assert sessions.check(call, 30.0, 0.0, TIMEOUTS) == []  # nobody is supposed to send
    sessions.process(call, 1, sdp(TRUNK, AUDIO))
    sessions.process(call, 0, sdp(PHONE, AUDIO))
    assert sessions.check(call, 32.0, 0.0, TIMEOUTS) == []  # resumed at 32: the clock starts there
    assert sessions.check(call, 40.0, 0.0, TIMEOUTS) == []
    found = sessions.check(call, 44.0, 0.0, TIMEOUTS)
    assert sorted((f.leg, f.idle_s) for f in found) == [(0, 12.0), (1, 12.0)]


def test_hairpinned_calls_are_judged_by_their_inner_anchors() -> None:
    dp, sessions, first, second = _hairpin()
    l1, w1 = first.streams[0].anchors[0], first.streams[0].anchors[1]
    w2, l2 = second.streams[0].anchors[0], second.streams[0].anchors[1]
    found = []
    for t in range(0, 21, 2):  # A and B talk; the anchors toward the PBX never see a packet
        dp.set_stats(l1, LegStats(packets_in=50 * t, last_in_s=float(t)))
        dp.set_stats(l2, LegStats(packets_in=50 * t, last_in_s=float(t)))
        dp.set_stats(w1, LegStats())
        dp.set_stats(w2, LegStats())
        found += sessions.check(first, float(t), 0.0, TIMEOUTS) + sessions.check(second, float(t), 0.0, TIMEOUTS)
    assert found == []
    dp.set_stats(l1, LegStats(packets_in=1600, last_in_s=31.0))  # A goes on
    dp.set_stats(l2, LegStats(packets_in=1000, last_in_s=20.0))  # B falls silent at 20 s
    later = sessions.check(first, 32.0, 0.0, TIMEOUTS) + sessions.check(second, 32.0, 0.0, TIMEOUTS)
    assert sorted((f.leg, f.idle_s) for f in later if f.leg is not None) == [(1, 12.0), (1, 12.0)]


def test_ipv4_lan_to_ipv6_wan() -> None:
    wan6 = ipaddress.ip_address("2001:db8:5bc::1")
    trunk6 = ipaddress.ip_address("2001:db8:7::10")
    realms = (REALMS[0], Realm("wan", wan6, (), MediaSettings(wan6, 41000, 41999)))
    dp = FakeDataplane()
    sessions = MediaSessions(dp, realms)
    call = sessions.new_call(MediaMode.ANCHOR, "lan", "wan")
    offer = sessions.process(call, 0, sdp(PHONE, AUDIO)).decode()
    assert f"c=IN IP6 {wan6}" in offer and f"IN IP6 {wan6}" in offer.splitlines()[1] and str(PHONE) not in offer
    body = f"v=0\r\no=t 1 1 IN IP6 {trunk6}\r\ns=-\r\nc=IN IP6 {trunk6}\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n"
    answer = sessions.process(call, 1, body.encode()).decode()
    assert f"c=IN IP4 {LAN_SBC}" in answer and str(trunk6) not in answer
    leg = dp.leg_of(call.streams[0].anchors[1])
    assert leg is not None and leg.remote_rtp == Endpoint(trunk6, 6000)


def test_stream_added_mid_call_gets_its_own_idle_clock() -> None:
    dp, sessions, call = _answered()
    _feed(dp, call, 10, 10, 99.0, 99.0)
    assert sessions.check(call, 100.0, 0.0, TIMEOUTS) == []
    video = "m=video 6002 RTP/AVP 96\na=rtpmap:96 H264/90000"
    sessions.process(call, 0, sdp(PHONE, AUDIO, video))  # a re-INVITE adds video at 100 s
    sessions.process(call, 1, sdp(TRUNK, AUDIO, video))
    _feed(dp, call, 20, 20, 101.0, 101.0)
    assert sessions.check(call, 102.0, 0.0, TIMEOUTS) == []  # video has sent nothing yet: 0 s, not 102 s
    found = sessions.check(call, 113.0, 0.0, TIMEOUTS)
    assert sorted((f.stream, f.leg) for f in found if f.leg is not None) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_a_reoffer_is_staged_until_its_answer_and_dropped_when_it_fails() -> None:
    dp, sessions, call = setup()
    sessions.process(call, 0, sdp(PHONE, AUDIO))
    sessions.process(call, 1, sdp(TRUNK, AUDIO))
    lan = call.streams[0].anchors[0]
    before = dp.leg_of(lan)
    sessions.offer(call, 0, sdp(PHONE_B, AUDIO + "\na=sendonly", "m=video 6002 RTP/AVP 96"))
    assert dp.leg_of(lan) == before and len(call.streams) == 2 and len(dp.live) == 4
    sessions.offer_failed(call)
    assert dp.leg_of(lan) == before and len(call.streams) == 1 and len(dp.live) == 2
    sessions.offer(call, 0, sdp(PHONE_B, AUDIO + "\na=sendonly"))
    sessions.process(call, 1, sdp(TRUNK, AUDIO + "\na=recvonly"))  # the answer applies offer and answer
    after = dp.leg_of(lan)
    assert after is not None and after.remote_rtp == Endpoint(PHONE_B, 6000) and not after.send_enabled


def test_the_first_offer_is_applied_at_once() -> None:
    dp, sessions, call = setup()
    sessions.offer(call, 0, sdp(PHONE, AUDIO))
    leg = dp.leg_of(call.streams[0].anchors[0])
    assert leg is not None and leg.remote_rtp == Endpoint(PHONE, 6000) and call.pending is None
