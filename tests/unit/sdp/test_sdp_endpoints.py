"""media_endpoints: what the relay is programmed with for each m= line."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from sbc.sdp import Direction, MediaEndpoint, SessionDescription, media_endpoints
from tests.unit.sdp.sdp_samples import (
    DESK_PHONE,
    HOLD_ZERO_ADDRESS,
    IPV6,
    RTCP_ADDRESS,
    SESSION_INACTIVE,
    VIDEO_REJECTED,
    WEBRTC,
)


def _endpoints(body: bytes) -> list[MediaEndpoint | None]:
    return media_endpoints(SessionDescription.parse(body))


def test_plain_offer_rtcp_on_the_next_port() -> None:
    phone = IPv4Address("192.168.1.50")
    assert _endpoints(DESK_PHONE) == [MediaEndpoint(phone, 11780, phone, 11781, False, Direction.SENDRECV, False)]


def test_rtcp_mux_uses_the_rtp_port() -> None:
    peer = IPv4Address("203.0.113.7")
    assert _endpoints(WEBRTC) == [MediaEndpoint(peer, 54400, peer, 54400, True, Direction.SENDRECV, False)]


def test_explicit_rtcp_port_and_address() -> None:
    [endpoint] = _endpoints(RTCP_ADDRESS)
    assert endpoint is not None
    assert (endpoint.address, endpoint.rtp_port) == (IPv4Address("198.51.100.4"), 49170)
    assert (endpoint.rtcp_address, endpoint.rtcp_port) == (IPv4Address("198.51.100.5"), 53020)


def test_ipv6() -> None:
    [endpoint] = _endpoints(IPV6)
    assert endpoint is not None
    assert endpoint.address == IPv6Address("2001:db8::10")
    assert endpoint.rtcp_port == 30001


def test_rejected_stream() -> None:
    audio, video = _endpoints(VIDEO_REJECTED)
    assert audio is not None and not audio.rejected
    assert video == MediaEndpoint(
        IPv4Address("10.9.0.1"), 0, IPv4Address("10.9.0.1"), 0, False, Direction.SENDRECV, True
    )


def test_rejected_stream_without_address_is_none() -> None:
    body = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 0 RTP/AVP 99\r\n"
    assert _endpoints(body) == [None]


def test_holds() -> None:
    [zero] = _endpoints(HOLD_ZERO_ADDRESS)
    assert zero is not None
    assert zero.direction is Direction.INACTIVE
    assert zero.on_hold
    audio, video = _endpoints(SESSION_INACTIVE)
    assert audio is not None and audio.direction is Direction.INACTIVE
    assert video is not None and video.direction is Direction.SENDONLY and video.on_hold
    [sendonly] = _endpoints(DESK_PHONE.replace(b"a=sendrecv", b"a=sendonly"))
    assert sendonly is not None and sendonly.on_hold
    [recvonly] = _endpoints(DESK_PHONE.replace(b"a=sendrecv", b"a=recvonly"))
    assert recvonly is not None and not recvonly.on_hold


def test_zero_address_under_ice_is_not_a_hold() -> None:
    # RFC 8839: with ICE, c=0.0.0.0 only says that no default candidate is known yet.
    [endpoint] = _endpoints(WEBRTC.replace(b"c=IN IP4 203.0.113.7", b"c=IN IP4 0.0.0.0"))
    assert endpoint is not None
    assert endpoint.direction is Direction.SENDRECV
