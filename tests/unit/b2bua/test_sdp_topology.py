"""Topology hiding inside SDP attributes (issue 11 item 4): `a=ssrc:<id> cname:` (RFC 5576 §4.1, the
RTCP CNAME of RFC 3550 §6.5.1, often `user@host`) and any other attribute that names an address of the
sending side are scrubbed toward the other realm; the lines are edited in place, the rest goes out
byte for byte."""

from __future__ import annotations

from sbc.sip.message import Request
from tests.unit.b2bua.sip_peers import LAN_SBC, PHONE, PHONE_PORT, TRUNK, WAN_SBC, Net, Sent, requests, responses

TRUNK_MEDIA = "203.0.113.20"
CRYPTO = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"


def _body(address: str, *attributes: str) -> str:
    return "\n".join(
        [
            "v=0",
            f"o=x 1 1 IN IP4 {address}",
            "s=-",
            f"c=IN IP4 {address}",
            "t=0 0",
            f"a=tool:softphone on {address}",
            "m=audio 6000 RTP/SAVP 0",
            "a=rtpmap:0 PCMU/8000",
            *attributes,
        ]
    )


def _invite(net: Net, body: str) -> list[Sent]:
    return net.send(
        "lan",
        f"""INVITE sip:bob@{LAN_SBC} SIP/2.0
Via: SIP/2.0/UDP {PHONE}:{PHONE_PORT};branch=z9hG4bKssrc
Max-Forwards: 70
From: <sip:alice@{PHONE}>;tag=a1
To: <sip:bob@{LAN_SBC}>
Call-ID: ssrc@{PHONE}
CSeq: 1 INVITE
Contact: <sip:alice@{PHONE}:{PHONE_PORT}>
Content-Type: application/sdp

{body}""",
        (PHONE, PHONE_PORT),
    )


def test_ssrc_cname_and_other_attributes_lose_the_inside_address() -> None:
    net = Net()
    out = _invite(
        net,
        _body(
            PHONE,
            f"a=ssrc:305419896 cname:alice@{PHONE}",
            "a=ssrc:305419896 msid:stream track",
            "a=ssrc:305419897 cname:{1c2a}@192.0.2.33:5004",
            CRYPTO,
        ),
    )
    invite = requests(out, "INVITE", "wan")[0]
    sdp = invite.body.decode()
    assert "192.0.2." not in sdp
    assert f"a=ssrc:305419896 cname:alice@{WAN_SBC}\r\n" in sdp
    assert "a=ssrc:305419896 msid:stream track\r\n" in sdp
    assert f"a=ssrc:305419897 cname:{{1c2a}}@{WAN_SBC}\r\n" in sdp
    assert f"a=tool:softphone on {WAN_SBC}\r\n" in sdp
    assert CRYPTO + "\r\n" in sdp  # keys go out byte for byte (SRTP end to end)


def test_the_answer_from_the_wan_is_scrubbed_toward_the_lan() -> None:
    net = Net()
    invite = requests(_invite(net, _body(PHONE)), "INVITE", "wan")[0]
    answer = _answer(net, invite, _body(TRUNK_MEDIA, f"a=ssrc:7 cname:pbx@{TRUNK_MEDIA}"))
    sdp = responses(answer, 200, "lan")[0].body.decode()
    assert TRUNK_MEDIA not in sdp and f"a=ssrc:7 cname:pbx@{LAN_SBC}\r\n" in sdp


def _answer(net: Net, invite: Request, body: str) -> list[Sent]:
    vias = "\n".join(f"Via: {v}" for v in invite.get_all("via"))
    return net.send(
        "wan",
        f"""SIP/2.0 200 OK
{vias}
From: {invite.get("from")}
To: {invite.get("to")};tag=t1
Call-ID: {invite.call_id}
CSeq: 1 INVITE
Contact: <sip:bob@{TRUNK}>
Content-Type: application/sdp

{body}""",
        (TRUNK, 5060),
    )
