"""Realistic SDP bodies, written out byte for byte (CRLF unless the name says otherwise)."""

from __future__ import annotations

# A desk phone offer (Polycom/Yealink style): several codecs, DTMF as telephone-event, session c=.
DESK_PHONE = (
    b"v=0\r\n"
    b"o=- 20017 20017 IN IP4 192.168.1.50\r\n"
    b"s=SDP data\r\n"
    b"c=IN IP4 192.168.1.50\r\n"
    b"t=0 0\r\n"
    b"m=audio 11780 RTP/AVP 9 0 8 18 101\r\n"
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

DESK_PHONE_LF = DESK_PHONE.replace(b"\r\n", b"\n")

# Audio + video from a video phone; bandwidth lines at both levels.
AUDIO_VIDEO = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 10.0.0.20\r\n"
    b"s=-\r\n"
    b"c=IN IP4 10.0.0.20\r\n"
    b"b=AS:2048\r\n"
    b"t=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\n"
    b"m=video 51372 RTP/AVP 99\r\n"
    b"b=TIAS:1920000\r\n"
    b"a=rtpmap:99 H264/90000\r\n"
    b"a=fmtp:99 profile-level-id=42e01f;packetization-mode=1\r\n"
    b"a=content:main\r\n"
)

# The answer to AUDIO_VIDEO from a PBX that takes the audio and rejects the video (RFC 3264 §6).
VIDEO_REJECTED = (
    b"v=0\r\n"
    b"o=pbx 774 775 IN IP4 10.9.0.1\r\n"
    b"s=-\r\n"
    b"c=IN IP4 10.9.0.1\r\n"
    b"t=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"m=video 0 RTP/AVP 99\r\n"
)

# SRTP with SDES keys (RFC 4568).
SRTP_SDES = (
    b"v=0\r\n"
    b"o=root 1821 1821 IN IP4 172.16.5.10\r\n"
    b"s=call\r\n"
    b"c=IN IP4 172.16.5.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 16384 RTP/SAVP 0 101\r\n"
    b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4\r\n"
    b"a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|2^20|1:32\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
)

# A browser-style offer: session-level ICE option, candidates, rtcp-mux with the RFC 5761 fallback a=rtcp.
WEBRTC = (
    b"v=0\r\n"
    b"o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n"
    b"s=-\r\n"
    b"t=0 0\r\n"
    b"a=group:BUNDLE 0\r\n"
    b"a=ice-options:trickle\r\n"
    b"a=msid-semantic: WMS stream0\r\n"
    b"m=audio 54400 UDP/TLS/RTP/SAVPF 111 0 8 126\r\n"
    b"c=IN IP4 203.0.113.7\r\n"
    b"a=rtcp:9 IN IP4 0.0.0.0\r\n"
    b"a=candidate:1467250027 1 udp 2122260223 192.168.0.196 54400 typ host generation 0\r\n"
    b"a=candidate:1853887674 1 udp 1845501695 203.0.113.7 54400 typ srflx raddr 192.168.0.196 rport 54400\r\n"
    b"a=end-of-candidates\r\n"
    b"a=ice-ufrag:Oyef7uvBlwafI3hT\r\n"
    b"a=ice-pwd:T0teqPLNQQOf+5W+ls+P2p16\r\n"
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

IPV6 = (
    b"v=0\r\n"
    b"o=- 1 1 IN IP6 2001:db8::10\r\n"
    b"s=-\r\n"
    b"c=IN IP6 2001:db8::10\r\n"
    b"t=0 0\r\n"
    b"m=audio 30000 RTP/AVP 8 101\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
)

# RFC 3605: RTCP on a non-adjacent port and another address.
RTCP_ADDRESS = (
    b"v=0\r\n"
    b"o=bob 2808844564 2808844564 IN IP4 198.51.100.4\r\n"
    b"s=-\r\n"
    b"c=IN IP4 198.51.100.4\r\n"
    b"t=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0\r\n"
    b"a=rtcp:53020 IN IP4 198.51.100.5\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
)

# Old-style hold (RFC 2543): c=0.0.0.0 and no direction attribute.
HOLD_ZERO_ADDRESS = (
    b"v=0\r\n"
    b"o=- 20017 20018 IN IP4 192.168.1.50\r\n"
    b"s=SDP data\r\n"
    b"c=IN IP4 0.0.0.0\r\n"
    b"t=0 0\r\n"
    b"m=audio 11780 RTP/AVP 0 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
)

# Session-level inactive, overridden by the video stream; audio has its own c=.
SESSION_INACTIVE = (
    b"v=0\r\n"
    b"o=- 5 6 IN IP4 10.0.0.20\r\n"
    b"s=-\r\n"
    b"c=IN IP4 10.0.0.20\r\n"
    b"t=0 0\r\n"
    b"a=inactive\r\n"
    b"m=audio 49170 RTP/AVP 0\r\n"
    b"c=IN IP4 10.0.0.21\r\n"
    b"m=video 51372 RTP/AVP 99\r\n"
    b"a=sendonly\r\n"
    b"a=rtpmap:99 H264/90000\r\n"
)

ALL = {
    "desk_phone": DESK_PHONE,
    "desk_phone_lf": DESK_PHONE_LF,
    "audio_video": AUDIO_VIDEO,
    "video_rejected": VIDEO_REJECTED,
    "srtp_sdes": SRTP_SDES,
    "webrtc": WEBRTC,
    "ipv6": IPV6,
    "rtcp_address": RTCP_ADDRESS,
    "hold_zero_address": HOLD_ZERO_ADDRESS,
    "session_inactive": SESSION_INACTIVE,
}
