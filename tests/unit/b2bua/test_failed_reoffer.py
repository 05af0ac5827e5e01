"""A re-INVITE or UPDATE whose offer fails leaves the media as it was (issue 11 item 3; RFC 3264 §8,
RFC 6337 §3.3): the relay is programmed with a new offer only once its answer arrives."""

from __future__ import annotations

import ipaddress

import pytest

from dataplane.api import AnchorPort, Endpoint, LegProgram
from dataplane.fake import FakeDataplane
from sbc.sip.message import Request
from tests.unit.b2bua.sip_peers import (
    LAN_SBC,
    PHONE,
    PHONE_PORT,
    TRUNK,
    Net,
    Sent,
    requests,
    responses,
)

TRUNK_MEDIA = "203.0.113.20"


def sdp(address: str, port: int, *extra: str, version: int = 1) -> str:
    lines = [
        "v=0",
        f"o=x 1 {version} IN IP4 {address}",
        "s=-",
        f"c=IN IP4 {address}",
        "t=0 0",
        f"m=audio {port} RTP/AVP 0",
        "a=rtpmap:0 PCMU/8000",
        *extra,
    ]
    return "\n".join(lines)


def _dataplane(net: Net) -> FakeDataplane:
    dp = net.core.media.dataplane
    assert isinstance(dp, FakeDataplane)
    return dp


def _phone(net: Net, method: str, cseq: int, to_tag: str = "", body: str = "", request_uri: str = "") -> list[Sent]:
    to_tag_param = f";tag={to_tag}" if to_tag else ""
    ruri = request_uri or f"sip:bob@{LAN_SBC}"
    text = f"""{method} {ruri} SIP/2.0
Via: SIP/2.0/UDP {PHONE}:{PHONE_PORT};branch=z9hG4bKre{method}{cseq}
Max-Forwards: 70
From: <sip:alice@{PHONE}>;tag=alice-tag
To: <sip:bob@{LAN_SBC}>{to_tag_param}
Call-ID: media-call@{PHONE}
CSeq: {cseq} {method}
Contact: <sip:alice@{PHONE}:{PHONE_PORT}>"""
    if body:
        text += "\nContent-Type: application/sdp\n\n" + body
    else:
        text += "\nContent-Length: 0"
    return net.send("lan", text, (PHONE, PHONE_PORT))


def _trunk_answer(net: Net, request: Request, status: int, body: str = "", to_tag: str = "bob-tag") -> list[Sent]:
    vias = "\n".join(f"Via: {v}" for v in request.get_all("via"))
    to = request.get("to") or ""
    if request.to.tag is None:
        to += f";tag={to_tag}"
    text = f"""SIP/2.0 {status} Whatever
{vias}
From: {request.get("from")}
To: {to}
Call-ID: {request.call_id}
CSeq: {request.get("cseq")}
Contact: <sip:bob@{TRUNK}:5060>"""
    if body:
        text += "\nContent-Type: application/sdp\n\n" + body
    else:
        text += "\nContent-Length: 0"
    return net.send("wan", text, (TRUNK, 5060))


def _anchored_call(net: Net) -> tuple[str, str, AnchorPort, AnchorPort]:
    """An answered call with media anchored on both sides; returns the phone-side Request-URI and tag
    and the LAN and WAN anchors."""
    out = _phone(net, "INVITE", 1, body=sdp(PHONE, 6000))
    invite = requests(out, "INVITE", "wan")[0]
    ok = responses(_trunk_answer(net, invite, 200, sdp(TRUNK_MEDIA, 7000)), 200, "lan")[0]
    sbc_tag = ok.to.tag or ""
    contact = str(ok.contacts[0].uri)
    _phone(net, "ACK", 1, sbc_tag, request_uri=contact)
    stream = next(iter(net.core.calls.values())).media.streams[0]
    return contact, sbc_tag, stream.anchors[0], stream.anchors[1]


def _programs(net: Net, lan: AnchorPort, wan: AnchorPort) -> tuple[LegProgram | None, LegProgram | None]:
    dp = _dataplane(net)
    return dp.leg_of(lan), dp.leg_of(wan)


@pytest.mark.parametrize("status", [404, 488, 500, 603])
def test_a_hold_answered_with_an_error_leaves_the_media_as_it_was(status: int) -> None:
    net = Net()
    contact, tag, lan, wan = _anchored_call(net)
    before = _programs(net, lan, wan)
    lan_program = before[0]
    assert lan_program is not None and lan_program.send_enabled
    out = _phone(net, "INVITE", 2, tag, sdp(PHONE, 6000, "a=sendonly", version=2), request_uri=contact)
    reinvite = requests(out, "INVITE", "wan")[0]
    assert _programs(net, lan, wan) == before  # nothing changes before the answer
    refused = _trunk_answer(net, reinvite, status)
    assert responses(refused, status, "lan")
    assert _programs(net, lan, wan) == before
    assert _dataplane(net).partner_of(lan) == wan


def test_a_new_address_offered_in_a_failed_reinvite_is_never_programmed() -> None:
    net = Net()
    contact, tag, lan, _wan = _anchored_call(net)
    out = _phone(net, "INVITE", 2, tag, sdp("192.0.2.77", 6100, version=2), request_uri=contact)
    reinvite = requests(out, "INVITE", "wan")[0]
    _trunk_answer(net, reinvite, 488)
    lan_program = _dataplane(net).leg_of(lan)
    assert lan_program is not None and lan_program.remote_rtp == Endpoint(ipaddress.ip_address(PHONE), 6000)


def test_a_reinvite_that_times_out_leaves_the_media_as_it_was() -> None:
    net = Net()
    contact, tag, lan, wan = _anchored_call(net)
    before = _programs(net, lan, wan)
    _phone(net, "INVITE", 2, tag, sdp(PHONE, 6000, "a=inactive", version=2), request_uri=contact)
    out: list[Sent] = []
    for _ in range(70):  # Timer B: 64 * T1 = 32 s
        out += net.tick(0.5)
    assert responses(out, 408, "lan")
    assert _programs(net, lan, wan) == before


def test_a_failed_update_leaves_the_media_as_it_was() -> None:
    net = Net()
    contact, tag, lan, wan = _anchored_call(net)
    before = _programs(net, lan, wan)
    out = _phone(net, "UPDATE", 2, tag, sdp(PHONE, 6000, "a=sendonly", version=2), request_uri=contact)
    update = requests(out, "UPDATE", "wan")[0]
    _trunk_answer(net, update, 500)
    assert _programs(net, lan, wan) == before


def test_a_hold_that_is_answered_takes_effect() -> None:
    net = Net()
    contact, tag, lan, wan = _anchored_call(net)
    out = _phone(net, "INVITE", 2, tag, sdp(PHONE, 6000, "a=sendonly", version=2), request_uri=contact)
    reinvite = requests(out, "INVITE", "wan")[0]
    ok = _trunk_answer(net, reinvite, 200, sdp(TRUNK_MEDIA, 7000, "a=recvonly", version=2))
    assert responses(ok, 200, "lan")
    lan_program, wan_program = _programs(net, lan, wan)
    assert lan_program is not None and not lan_program.send_enabled  # the phone holds: nothing sent to it
    assert wan_program is not None and wan_program.send_enabled


def test_a_stream_added_by_a_failed_reinvite_gives_its_ports_back() -> None:
    net = Net()
    contact, tag, _, _ = _anchored_call(net)
    dp = _dataplane(net)
    live_before = set(dp.live)
    video = ("m=video 6002 RTP/AVP 96", "a=rtpmap:96 H264/90000")
    out = _phone(net, "INVITE", 2, tag, sdp(PHONE, 6000, *video, version=2), request_uri=contact)
    reinvite = requests(out, "INVITE", "wan")[0]
    _trunk_answer(net, reinvite, 488)
    assert set(dp.live) == live_before
    assert len(next(iter(net.core.calls.values())).media.streams) == 1
