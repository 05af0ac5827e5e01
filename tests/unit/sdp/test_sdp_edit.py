"""In-place edits: exactly the intended lines change, everything else stays byte for byte and in order."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from sbc.sdp import Origin, RtcpAttribute, SessionDescription
from tests.unit.sdp.sdp_samples import (
    AUDIO_VIDEO,
    DESK_PHONE,
    DESK_PHONE_LF,
    RTCP_ADDRESS,
    SESSION_INACTIVE,
    VIDEO_REJECTED,
    WEBRTC,
)

SBC = IPv4Address("198.18.0.1")
SBC6 = IPv6Address("2001:db8:5bc::1")


def test_with_port_rewrites_only_the_port() -> None:
    sd = SessionDescription.parse(DESK_PHONE)
    out = sd.with_port(0, 40002)
    assert bytes(out) == DESK_PHONE.replace(b"m=audio 11780 ", b"m=audio 40002 ")
    assert out.media[0].port == 40002
    assert bytes(sd) == DESK_PHONE  # the original is untouched


def test_with_port_keeps_port_count_and_spacing() -> None:
    body = DESK_PHONE.replace(b"m=audio 11780 RTP/AVP", b"m=audio  11780/2  RTP/AVP")
    out = SessionDescription.parse(body).with_port(0, 40002)
    assert bytes(out) == body.replace(b"11780/2", b"40002/2")


def test_with_connection_adds_a_media_level_line_and_leaves_the_session_one() -> None:
    out = SessionDescription.parse(DESK_PHONE).with_connection(0, SBC)
    assert bytes(out) == DESK_PHONE.replace(
        b"m=audio 11780 RTP/AVP 9 0 8 18 101\r\n", b"m=audio 11780 RTP/AVP 9 0 8 18 101\r\nc=IN IP4 198.18.0.1\r\n"
    )
    assert out.connection == IPv4Address("192.168.1.50")
    assert out.connection_address(0) == SBC


def test_with_connection_goes_after_media_title() -> None:
    body = DESK_PHONE.replace(b"a=rtpmap:9 G722/8000\r\n", b"i=voice\r\na=rtpmap:9 G722/8000\r\n")
    out = SessionDescription.parse(body).with_connection(0, SBC)
    assert bytes(out) == body.replace(b"i=voice\r\n", b"i=voice\r\nc=IN IP4 198.18.0.1\r\n")


def test_with_connections_shared_session_line_is_the_only_change() -> None:
    out = SessionDescription.parse(AUDIO_VIDEO).with_connections([SBC, SBC])
    assert bytes(out) == AUDIO_VIDEO.replace(b"c=IN IP4 10.0.0.20", b"c=IN IP4 198.18.0.1")


def test_with_connections_rewrites_media_and_session_lines() -> None:
    out = SessionDescription.parse(SESSION_INACTIVE).with_connections([SBC, SBC])
    assert bytes(out) == (
        b"v=0\r\n"
        b"o=- 5 6 IN IP4 10.0.0.20\r\n"
        b"s=-\r\n"
        b"c=IN IP4 198.18.0.1\r\n"
        b"t=0 0\r\n"
        b"a=inactive\r\n"
        b"m=audio 49170 RTP/AVP 0\r\n"
        b"c=IN IP4 198.18.0.1\r\n"
        b"m=video 51372 RTP/AVP 99\r\n"
        b"a=sendonly\r\n"
        b"a=rtpmap:99 H264/90000\r\n"
    )


def test_with_connections_pins_a_stream_left_alone() -> None:
    out = SessionDescription.parse(AUDIO_VIDEO).with_connections([SBC, None])
    assert bytes(out) == (
        b"v=0\r\n"
        b"o=alice 2890844526 2890844526 IN IP4 10.0.0.20\r\n"
        b"s=-\r\n"
        b"c=IN IP4 198.18.0.1\r\n"
        b"b=AS:2048\r\n"
        b"t=0 0\r\n"
        b"m=audio 49170 RTP/AVP 0 8 101\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-15\r\n"
        b"m=video 51372 RTP/AVP 99\r\n"
        b"c=IN IP4 10.0.0.20\r\n"
        b"b=TIAS:1920000\r\n"
        b"a=rtpmap:99 H264/90000\r\n"
        b"a=fmtp:99 profile-level-id=42e01f;packetization-mode=1\r\n"
        b"a=content:main\r\n"
    )


def test_with_connections_does_not_pin_a_rejected_stream() -> None:
    out = SessionDescription.parse(VIDEO_REJECTED).with_connections([SBC, None])
    assert bytes(out) == VIDEO_REJECTED.replace(b"c=IN IP4 10.9.0.1", b"c=IN IP4 198.18.0.1")


def test_with_connections_mixed_families() -> None:
    out = SessionDescription.parse(AUDIO_VIDEO).with_connections([SBC, SBC6])
    assert bytes(out) == AUDIO_VIDEO.replace(b"c=IN IP4 10.0.0.20", b"c=IN IP4 198.18.0.1").replace(
        b"m=video 51372 RTP/AVP 99\r\n", b"m=video 51372 RTP/AVP 99\r\nc=IN IP6 2001:db8:5bc::1\r\n"
    )
    assert out.connection_address(1) == SBC6


def test_with_connections_without_session_line() -> None:
    out = SessionDescription.parse(WEBRTC).with_connections([SBC6])
    assert bytes(out) == WEBRTC.replace(b"c=IN IP4 203.0.113.7", b"c=IN IP6 2001:db8:5bc::1")


def test_with_connections_all_none_is_a_no_op() -> None:
    sd = SessionDescription.parse(AUDIO_VIDEO)
    assert sd.with_connections([None, None]) is sd


def test_with_rtcp_rewrites_port_and_address() -> None:
    out = SessionDescription.parse(RTCP_ADDRESS).with_rtcp(0, RtcpAttribute(40003, SBC6))
    assert bytes(out) == RTCP_ADDRESS.replace(
        b"a=rtcp:53020 IN IP4 198.51.100.5", b"a=rtcp:40003 IN IP6 2001:db8:5bc::1"
    )


def test_with_rtcp_appends_when_absent() -> None:
    out = SessionDescription.parse(DESK_PHONE).with_rtcp(0, RtcpAttribute(40011, None))
    assert bytes(out) == DESK_PHONE + b"a=rtcp:40011\r\n"


def test_inserted_lines_follow_lf_style_and_a_missing_final_eol() -> None:
    out = SessionDescription.parse(DESK_PHONE_LF).with_rtcp(0, RtcpAttribute(40011, None))
    assert bytes(out) == DESK_PHONE_LF + b"a=rtcp:40011\n"
    body = DESK_PHONE_LF.rstrip(b"\n")
    out = SessionDescription.parse(body).with_rtcp(0, RtcpAttribute(40011, None))
    assert bytes(out) == body + b"\na=rtcp:40011"


def test_with_rtcp_goes_before_trailing_blank_lines() -> None:
    out = SessionDescription.parse(DESK_PHONE + b"\r\n").with_rtcp(0, RtcpAttribute(40011, None))
    assert bytes(out) == DESK_PHONE + b"a=rtcp:40011\r\n\r\n"


def test_without_ice_drops_every_ice_attribute_only() -> None:
    out = SessionDescription.parse(WEBRTC).without_ice()
    removed = (
        b"a=ice-options:trickle\r\n",
        b"a=candidate:1467250027 1 udp 2122260223 192.168.0.196 54400 typ host generation 0\r\n",
        b"a=candidate:1853887674 1 udp 1845501695 203.0.113.7 54400 typ srflx raddr 192.168.0.196 rport 54400\r\n",
        b"a=end-of-candidates\r\n",
        b"a=ice-ufrag:Oyef7uvBlwafI3hT\r\n",
        b"a=ice-pwd:T0teqPLNQQOf+5W+ls+P2p16\r\n",
    )
    expected = WEBRTC
    for line in removed:
        assert line in expected
        expected = expected.replace(line, b"")
    assert bytes(out) == expected
    assert not out.has_ice


def test_without_ice_covers_the_rarer_attributes() -> None:
    body = (
        DESK_PHONE.replace(b"t=0 0\r\n", b"t=0 0\r\na=ice-lite\r\n")
        + b"a=remote-candidates:1 192.0.2.3 45664\r\na=ice-mismatch\r\na=ice-pacing:50\r\n"
    )
    assert bytes(SessionDescription.parse(body).without_ice()) == DESK_PHONE


def test_without_ice_is_a_no_op_without_ice() -> None:
    sd = SessionDescription.parse(DESK_PHONE)
    assert sd.without_ice() is sd


def test_with_origin_rewrites_the_o_line() -> None:
    origin = Origin("sbc", "77", 3, "IN", "IP4", "198.18.0.1")
    out = SessionDescription.parse(DESK_PHONE).with_origin(origin)
    assert bytes(out) == DESK_PHONE.replace(b"o=- 20017 20017 IN IP4 192.168.1.50", b"o=sbc 77 3 IN IP4 198.18.0.1")
    assert out.origin == origin


def test_local_misuse_raises_value_error() -> None:
    sd = SessionDescription.parse(AUDIO_VIDEO)
    with pytest.raises(ValueError, match="port out of range"):
        sd.with_port(0, 65536)
    with pytest.raises(ValueError, match="for 2 media sections"):
        sd.with_connections([SBC])
    with pytest.raises(ValueError, match="for 2 media sections"):
        sd.with_media(sd.media[:1])
