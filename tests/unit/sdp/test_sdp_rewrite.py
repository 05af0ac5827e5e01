"""anchor_sdp / hide_origin_only: the exact bytes the B2BUA forwards."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from sbc.sdp import MediaAnchor, OriginRewriter, SessionDescription, anchor_sdp, hide_origin_only
from sbc.sdp.rewrite import scrub_attributes
from tests.unit.sdp.sdp_samples import (
    AUDIO_VIDEO,
    DESK_PHONE,
    HOLD_ZERO_ADDRESS,
    RTCP_ADDRESS,
    SRTP_SDES,
    VIDEO_REJECTED,
    WEBRTC,
)

SBC = IPv4Address("198.18.0.1")
SBC6 = IPv6Address("2001:db8:5bc::1")


def _origin(address: IPv4Address | IPv6Address = SBC) -> OriginRewriter:
    return OriginRewriter("sbc", address, sess_id=1234, first_version=1)


def _anchor(body: bytes, *anchors: MediaAnchor | None, address: IPv4Address | IPv6Address = SBC) -> bytes:
    return anchor_sdp(SessionDescription.parse(body), anchors, _origin(address))


def test_desk_phone_anchored() -> None:
    assert _anchor(DESK_PHONE, MediaAnchor(SBC, 40000)) == (
        b"v=0\r\n"
        b"o=sbc 1234 1 IN IP4 198.18.0.1\r\n"
        b"s=SDP data\r\n"
        b"c=IN IP4 198.18.0.1\r\n"
        b"t=0 0\r\n"
        b"m=audio 40000 RTP/AVP 9 0 8 18 101\r\n"
        b"a=rtpmap:9 G722/8000\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:18 G729/8000\r\n"
        b"a=fmtp:18 annexb=no\r\n"
        b"a=ptime:20\r\n"
        b"a=sendrecv\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-15\r\n"
    )


def test_lf_only_body_anchored_stays_lf() -> None:
    out = _anchor(DESK_PHONE.replace(b"\r\n", b"\n"), MediaAnchor(SBC, 40000, 40101))
    assert b"\r" not in out
    assert out.endswith(b"a=fmtp:101 0-15\na=rtcp:40101\n")


def test_webrtc_anchored_loses_ice_keeps_mux_and_dtls() -> None:
    assert _anchor(WEBRTC, MediaAnchor(SBC, 40000)) == (
        b"v=0\r\n"
        b"o=sbc 1234 1 IN IP4 198.18.0.1\r\n"
        b"s=-\r\n"
        b"t=0 0\r\n"
        b"a=group:BUNDLE 0\r\n"
        b"a=msid-semantic: WMS stream0\r\n"
        b"m=audio 40000 UDP/TLS/RTP/SAVPF 111 0 8 126\r\n"
        b"c=IN IP4 198.18.0.1\r\n"
        b"a=rtcp:40000 IN IP4 198.18.0.1\r\n"
        b"a=fingerprint:sha-256 49:66:12:17:0D:1C:91:AE:57:4C:C6:36:DD:D5:97:D2:7D:62:C9:9A:7F:B9:A3:F4:70:03:E7\r\n"
        b"a=setup:actpass\r\n"
        b"a=mid:0\r\n"
        b"a=sendrecv\r\n"
        b"a=rtcp-mux\r\n"
        b"a=rtpmap:111 opus/48000/2\r\n"
        b"a=fmtp:111 minptime=10;useinbandfec=1\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:126 telephone-event/8000\r\n"
        b"a=ssrc:3570614608 cname:4TOk42mSjXCkVIa6\r\n"
    )


def test_audio_video_both_anchored() -> None:
    out = _anchor(AUDIO_VIDEO, MediaAnchor(SBC, 40000), MediaAnchor(SBC, 40002))
    assert out == (
        AUDIO_VIDEO.replace(b"o=alice 2890844526 2890844526 IN IP4 10.0.0.20", b"o=sbc 1234 1 IN IP4 198.18.0.1")
        .replace(b"c=IN IP4 10.0.0.20", b"c=IN IP4 198.18.0.1")
        .replace(b"m=audio 49170 ", b"m=audio 40000 ")
        .replace(b"m=video 51372 ", b"m=video 40002 ")
    )


def test_rejected_stream_is_kept_in_order_and_never_anchored() -> None:
    out = _anchor(VIDEO_REJECTED, MediaAnchor(SBC, 40000), MediaAnchor(SBC, 40002))
    assert out == (
        b"v=0\r\n"
        b"o=sbc 1234 1 IN IP4 198.18.0.1\r\n"
        b"s=-\r\n"
        b"c=IN IP4 198.18.0.1\r\n"
        b"t=0 0\r\n"
        b"m=audio 40000 RTP/AVP 0 101\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\n"
        b"m=video 0 RTP/AVP 99\r\n"
    )
    assert _anchor(VIDEO_REJECTED, MediaAnchor(SBC, 40000), None) == out


def test_srtp_crypto_lines_are_never_touched() -> None:
    out = _anchor(SRTP_SDES, MediaAnchor(SBC, 40000))
    assert out == (
        SRTP_SDES.replace(b"o=root 1821 1821 IN IP4 172.16.5.10", b"o=sbc 1234 1 IN IP4 198.18.0.1")
        .replace(b"c=IN IP4 172.16.5.10", b"c=IN IP4 198.18.0.1")
        .replace(b"m=audio 16384 ", b"m=audio 40000 ")
    )
    assert SessionDescription.parse(out).media[0].crypto == SessionDescription.parse(SRTP_SDES).media[0].crypto


def test_ipv6_anchor_on_an_ipv4_offer() -> None:
    out = _anchor(DESK_PHONE, MediaAnchor(SBC6, 40000), address=SBC6)
    assert out == (
        DESK_PHONE.replace(b"o=- 20017 20017 IN IP4 192.168.1.50", b"o=sbc 1234 1 IN IP6 2001:db8:5bc::1")
        .replace(b"c=IN IP4 192.168.1.50", b"c=IN IP6 2001:db8:5bc::1")
        .replace(b"m=audio 11780 ", b"m=audio 40000 ")
    )


def test_rtcp_port_and_address_rewritten() -> None:
    out = _anchor(RTCP_ADDRESS, MediaAnchor(SBC, 40000, 40001))
    assert out == (
        b"v=0\r\n"
        b"o=sbc 1234 1 IN IP4 198.18.0.1\r\n"
        b"s=-\r\n"
        b"c=IN IP4 198.18.0.1\r\n"
        b"t=0 0\r\n"
        b"m=audio 40000 RTP/AVP 0\r\n"
        b"a=rtcp:40001 IN IP4 198.18.0.1\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
    )


def test_rtcp_port_only_form_is_kept() -> None:
    body = DESK_PHONE.replace(b"a=ptime:20\r\n", b"a=rtcp:11791\r\n")
    out = _anchor(body, MediaAnchor(SBC, 40000))
    assert b"a=rtcp:40001\r\n" in out


def test_non_adjacent_rtcp_port_gets_an_rtcp_attribute() -> None:
    out = _anchor(DESK_PHONE, MediaAnchor(SBC, 40000, 40101))
    assert out.endswith(b"a=fmtp:101 0-15\r\na=rtcp:40101\r\n")
    assert _anchor(DESK_PHONE, MediaAnchor(SBC, 40000, 40001)).endswith(b"a=fmtp:101 0-15\r\n")


def test_old_style_hold_stays_on_hold() -> None:
    out = _anchor(HOLD_ZERO_ADDRESS, MediaAnchor(SBC, 40000))
    assert out == (
        HOLD_ZERO_ADDRESS.replace(b"o=- 20017 20018 IN IP4 192.168.1.50", b"o=sbc 1234 1 IN IP4 198.18.0.1").replace(
            b"m=audio 11780 ", b"m=audio 40000 "
        )
    )
    out6 = _anchor(HOLD_ZERO_ADDRESS, MediaAnchor(SBC6, 40000), address=SBC6)
    assert b"c=IN IP6 ::\r\n" in out6


def test_anchor_count_must_match() -> None:
    with pytest.raises(ValueError, match="1 anchors given for 2"):
        _anchor(AUDIO_VIDEO, MediaAnchor(SBC, 40000))


def test_media_anchor_validates_ports() -> None:
    with pytest.raises(ValueError):
        MediaAnchor(SBC, 0)
    with pytest.raises(ValueError):
        MediaAnchor(SBC, 40000, 70000)


def test_hide_origin_only_changes_nothing_else() -> None:
    out = hide_origin_only(SessionDescription.parse(WEBRTC), _origin())
    assert out == WEBRTC.replace(b"o=- 4611731400430051336 2 IN IP4 127.0.0.1", b"o=sbc 1234 1 IN IP4 198.18.0.1")


def test_scrub_attributes_edits_text_lines_in_place_and_leaves_opaque_ones() -> None:
    body = (
        "v=0\r\no=x 1 1 IN IP4 10.1.1.5\r\ns=-\ni=phone at 10.1.1.5\r\nc=IN IP4 10.1.1.5\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 0\r\na=ssrc:1 cname:u@10.1.1.5\r\n"
        "a=fingerprint:sha-256 10:1:1:5:AB\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:10.1.1.5\r\n"
    )
    out = bytes(scrub_attributes(SessionDescription.parse(body.encode()), lambda t: t.replace("10.1.1.5", "X")))
    assert out.decode() == body.replace("i=phone at 10.1.1.5", "i=phone at X").replace("cname:u@10.1.1.5", "cname:u@X")
