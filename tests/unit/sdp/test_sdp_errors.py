"""Garbage in: SdpError with a reason, never any other exception."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sbc.sdp import MediaAnchor, OriginRewriter, SdpError, SessionDescription, anchor_sdp, media_endpoints
from tests.unit.sdp.sdp_samples import ALL, DESK_PHONE, RTCP_ADDRESS

SBC = IPv4Address("198.18.0.1")


def _swap(old: bytes, new: bytes, body: bytes = DESK_PHONE) -> bytes:
    assert old in body
    return body.replace(old, new)


GARBAGE: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "v=0"),
    "not-sdp": (b"hello world", "v=0"),
    "html": (b"<html><body>502</body></html>\r\n", "v=0"),
    "v-not-first": (_swap(b"v=0\r\n", b"") + b"v=0\r\n", "v=0"),
    "v-1": (_swap(b"v=0", b"v=1"), "v=0"),
    "no-origin": (_swap(b"o=- 20017 20017 IN IP4 192.168.1.50\r\n", b""), "no o= line"),
    "two-origins": (_swap(b"s=SDP data\r\n", b"o=- 1 1 IN IP4 1.2.3.4\r\n"), "more than one o="),
    "origin-fields": (_swap(b"o=- 20017 20017 IN IP4", b"o=- 20017 IN IP4"), "bad o= line"),
    "origin-version": (_swap(b"o=- 20017 20017", b"o=- 20017 v2"), "sess-version"),
    "origin-unicode-digit": (_swap(b"o=- 20017 20017", "o=- 20017 2²".encode()), "sess-version"),
    "m-no-port": (_swap(b"m=audio 11780 RTP/AVP", b"m=audio RTP/AVP"), "bad m= line"),
    "m-port-range": (_swap(b"m=audio 11780", b"m=audio 70000"), "m= port out of range"),
    "m-port-sign": (_swap(b"m=audio 11780", b"m=audio -1"), "bad m= line"),
    "m-port-underscore": (_swap(b"m=audio 11780", b"m=audio 1_780"), "bad m= line"),
    "m-empty": (_swap(b"m=audio 11780 RTP/AVP 9 0 8 18 101", b"m="), "bad m= line"),
    "c-bad-ip": (_swap(b"c=IN IP4 192.168.1.50", b"c=IN IP4 999.168.1.50"), "not an IP4 address"),
    "c-fqdn": (_swap(b"c=IN IP4 192.168.1.50", b"c=IN IP4 pbx.example.com"), "not an IP4 address"),
    "c-family-mismatch": (_swap(b"c=IN IP4 192.168.1.50", b"c=IN IP6 192.168.1.50"), "not an IP6 address"),
    "c-nettype": (_swap(b"c=IN IP4 192.168.1.50", b"c=ATM NSAP 47.0091"), "network type"),
    "c-addrtype": (_swap(b"c=IN IP4 192.168.1.50", b"c=IN IPX 192.168.1.50"), "address type"),
    "c-short": (_swap(b"c=IN IP4 192.168.1.50", b"c=IN IP4"), "bad c= line"),
    "no-c": (_swap(b"c=IN IP4 192.168.1.50\r\n", b""), "no c= line"),
    "two-session-c": (_swap(b"t=0 0\r\n", b"c=IN IP4 1.2.3.4\r\nt=0 0\r\n"), "more than one session-level c="),
    "two-media-c": (DESK_PHONE + b"c=IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.5\r\n", "more than one c="),
    "rtcp-port": (_swap(b"a=rtcp:53020", b"a=rtcp:abc", RTCP_ADDRESS), "a=rtcp port"),
    "rtcp-range": (_swap(b"a=rtcp:53020", b"a=rtcp:65536", RTCP_ADDRESS), "a=rtcp port out of range"),
    "rtcp-fields": (_swap(b"a=rtcp:53020 IN IP4 198.51.100.5", b"a=rtcp:53020 IN IP4", RTCP_ADDRESS), "bad a=rtcp"),
    "rtcp-address": (_swap(b"IN IP4 198.51.100.5", b"IN IP4 198.51.100", RTCP_ADDRESS), "a=rtcp"),
    "two-rtcp": (RTCP_ADDRESS + b"a=rtcp:53022\r\n", "more than one a=rtcp"),
    "not-a-line": (_swap(b"a=ptime:20", b"ptime 20"), "not an SDP line"),
    "indented": (_swap(b"a=ptime:20", b" a=ptime:20"), "not an SDP line"),
    "nul-type": (_swap(b"a=ptime:20", b"\x00=ptime:20"), "not an SDP line"),
}


@pytest.mark.parametrize(("body", "reason"), GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_raises_sdp_error_with_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(SdpError, match=reason) as caught:
        SessionDescription.parse(body)
    assert isinstance(caught.value, ValueError)
    assert caught.value.reason


@st.composite
def _mangled(draw: st.DrawFn) -> bytes:
    body = bytearray(draw(st.sampled_from(list(ALL.values()))))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(body)))
        op = draw(st.sampled_from(["truncate", "delete", "insert", "replace", "line"]))
        if op == "truncate":
            del body[at:]
        elif op == "delete":
            del body[at : at + draw(st.integers(1, 12))]
        elif op == "insert":
            body[at:at] = draw(st.binary(min_size=1, max_size=12))
        elif op == "replace" and at < len(body):
            body[at] = draw(st.sampled_from(b" =:/\r\n\x000123456789abcIPm\xff"))
        elif op == "line":
            body[at:at] = draw(st.sampled_from(_SDPISH_LINES))
    return bytes(body)


_SDPISH_LINES = [
    b"m=audio 0 RTP/AVP 0\r\n",
    b"m=video 9 UDP/TLS/RTP/SAVPF 96\r\n",
    b"c=IN IP4 0.0.0.0\r\n",
    b"c=IN IP6 ::\r\n",
    b"c=IN IP6 fe80::1%eth0\r\n",
    b"a=rtcp:9 IN IP6 ::1\r\n",
    b"a=rtcp-mux\r\n",
    b"a=inactive\r\n",
    b"a=candidate:1 1 udp 1 10.0.0.1 5000 typ host\r\n",
    b"o=x 1 1 IN IP4 h.example\r\n",
    b"\r\n",
    b"\n",
]


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(_mangled())
def test_mangled_bodies_raise_only_sdp_error(body: bytes) -> None:
    try:
        sd = SessionDescription.parse(body)
    except SdpError:
        return
    # Whatever parses must round-trip, and everything downstream must work on it.
    assert bytes(sd) == body
    media_endpoints(sd)
    anchors = [MediaAnchor(SBC, 40000 + 2 * i, 40101 + 2 * i) for i in range(len(sd.media))]
    out = anchor_sdp(sd, anchors, OriginRewriter("sbc", SBC, sess_id=1))
    again = SessionDescription.parse(out)
    assert not again.has_ice
    for index, section in enumerate(again.media):
        if not section.rejected:
            assert section.port == 40000 + 2 * index
