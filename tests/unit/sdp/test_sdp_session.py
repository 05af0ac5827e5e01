"""Parsing: exact round trips and the fields the SBC reads."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from sbc.sdp import Direction, Origin, RtcpAttribute, SessionDescription
from tests.unit.sdp.sdp_samples import (
    ALL,
    AUDIO_VIDEO,
    DESK_PHONE,
    DESK_PHONE_LF,
    HOLD_ZERO_ADDRESS,
    IPV6,
    RTCP_ADDRESS,
    SESSION_INACTIVE,
    SRTP_SDES,
    VIDEO_REJECTED,
    WEBRTC,
)


@pytest.mark.parametrize("body", ALL.values(), ids=ALL.keys())
def test_round_trip_is_exact(body: bytes) -> None:
    assert bytes(SessionDescription.parse(body)) == body


@pytest.mark.parametrize(
    "body",
    [
        DESK_PHONE.rstrip(b"\r\n"),  # no final line ending
        DESK_PHONE + b"\r\n",  # a stray blank line at the end
        DESK_PHONE.replace(b"s=SDP data\r\n", b"s=SDP data\n"),  # mixed endings
        DESK_PHONE.replace(b"s=SDP data", "s=Gespräch ü".encode()),
        DESK_PHONE.replace(b"s=SDP data", b"s=\xff\xfe latin-1 \xe9"),  # not UTF-8 at all
        DESK_PHONE.replace(b"a=ptime:20", b"x=unknown line type"),
    ],
    ids=["no-final-eol", "trailing-blank", "mixed-eol", "utf8", "not-utf8", "unknown-type"],
)
def test_odd_but_tolerated_bodies_round_trip(body: bytes) -> None:
    assert bytes(SessionDescription.parse(body)) == body


def test_desk_phone_fields() -> None:
    sd = SessionDescription.parse(DESK_PHONE)
    assert sd.origin == Origin("-", "20017", 20017, "IN", "IP4", "192.168.1.50")
    assert sd.connection == IPv4Address("192.168.1.50")
    assert sd.eol == "\r\n"
    assert len(sd.media) == 1
    audio = sd.media[0]
    assert (audio.media, audio.port, audio.port_count, audio.proto) == ("audio", 11780, None, "RTP/AVP")
    assert audio.formats == ("9", "0", "8", "18", "101")
    assert audio.connection is None
    assert sd.connection_address(0) == IPv4Address("192.168.1.50")
    assert audio.rtcp is None
    assert not audio.rtcp_mux
    assert not audio.rejected
    assert audio.crypto == ()
    assert sd.media_direction(0) is Direction.SENDRECV
    assert not sd.has_ice


def test_lf_only_body_keeps_its_style() -> None:
    sd = SessionDescription.parse(DESK_PHONE_LF)
    assert sd.eol == "\n"
    assert sd.media[0].port == 11780


def test_audio_video_fields() -> None:
    sd = SessionDescription.parse(AUDIO_VIDEO)
    assert [m.media for m in sd.media] == ["audio", "video"]
    assert [m.port for m in sd.media] == [49170, 51372]
    assert sd.media[1].lines[1] == "b=TIAS:1920000\r\n"
    assert sd.connection_address(1) == IPv4Address("10.0.0.20")


def test_rejected_stream() -> None:
    sd = SessionDescription.parse(VIDEO_REJECTED)
    assert [m.rejected for m in sd.media] == [False, True]
    assert sd.media[1].formats == ("99",)


def test_crypto_lines_are_verbatim() -> None:
    sd = SessionDescription.parse(SRTP_SDES)
    assert sd.media[0].proto == "RTP/SAVP"
    assert sd.media[0].crypto == (
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4",
        "a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|2^20|1:32",
    )


def test_webrtc_fields() -> None:
    sd = SessionDescription.parse(WEBRTC)
    assert sd.connection is None
    assert sd.session_has_ice
    assert sd.has_ice
    audio = sd.media[0]
    assert audio.has_ice
    assert audio.rtcp_mux
    assert audio.rtcp == RtcpAttribute(9, IPv4Address("0.0.0.0"))
    assert sd.connection_address(0) == IPv4Address("203.0.113.7")
    assert sd.origin.sess_version == 2


def test_ipv6_fields() -> None:
    sd = SessionDescription.parse(IPV6)
    assert sd.connection == IPv6Address("2001:db8::10")
    assert sd.origin.addrtype == "IP6"
    assert sd.origin.address == "2001:db8::10"


def test_rtcp_with_address() -> None:
    sd = SessionDescription.parse(RTCP_ADDRESS)
    assert sd.media[0].rtcp == RtcpAttribute(53020, IPv4Address("198.51.100.5"))
    assert not sd.media[0].rtcp_mux


def test_rtcp_port_only_and_port_count() -> None:
    body = DESK_PHONE.replace(b"m=audio 11780 RTP/AVP", b"m=audio 11780/2 RTP/AVP").replace(
        b"a=ptime:20\r\n", b"a=rtcp:11791\r\n"
    )
    sd = SessionDescription.parse(body)
    assert sd.media[0].port_count == 2
    assert sd.media[0].rtcp == RtcpAttribute(11791, None)


def test_directions_media_overrides_session() -> None:
    sd = SessionDescription.parse(SESSION_INACTIVE)
    assert sd.direction is Direction.INACTIVE
    assert sd.media_direction(0) is Direction.INACTIVE
    assert sd.media_direction(1) is Direction.SENDONLY
    assert sd.connection_address(0) == IPv4Address("10.0.0.21")
    assert sd.connection_address(1) == IPv4Address("10.0.0.20")


def test_zero_address_is_read_as_an_address() -> None:
    sd = SessionDescription.parse(HOLD_ZERO_ADDRESS)
    assert sd.connection_address(0) == IPv4Address("0.0.0.0")
    assert sd.media_direction(0) is Direction.SENDRECV  # the hold hint lives in media_endpoints()


def test_multicast_suffix_is_dropped_from_the_address() -> None:
    sd = SessionDescription.parse(DESK_PHONE.replace(b"c=IN IP4 192.168.1.50", b"c=IN IP4 224.2.36.42/127"))
    assert sd.connection == IPv4Address("224.2.36.42")


def test_rejected_stream_without_any_c_line_is_tolerated() -> None:
    body = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 0 RTP/AVP 99\r\n"
    sd = SessionDescription.parse(body)
    assert sd.connection_address(0) is None
    assert bytes(sd) == body
