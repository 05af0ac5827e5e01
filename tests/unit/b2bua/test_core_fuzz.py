"""Garbage into a core that holds a live call: whatever arrives, `datagram_received` and `tick` never
raise (bad input is answered or dropped and counted), and the call's state stays readable."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.b2bua.sip_peers import LAN_SBC, PHONE, PHONE_PORT, TRUNK, WAN_SBC, Dialog, Net, place_call
from tests.unit.sip.test_fuzz import mutated

SDP = "v=0\no=a 1 1 IN IP4 {ip}\ns=-\nc=IN IP4 {ip}\nt=0 0\nm=audio 4000 RTP/AVP 0\na=rtpmap:0 PCMU/8000"


def _wire(text: str) -> bytes:
    head, blank, body = text.strip("\n").partition("\n\n")
    payload = (body.replace("\n", "\r\n") + "\r\n").encode() if blank else b""
    head += f"\nContent-Length: {len(payload)}"
    return (head.replace("\n", "\r\n") + "\r\n\r\n").encode() + payload


def _dialog() -> Dialog:
    return place_call(Net(), "bob")[0]


def _seeds(d: Dialog) -> tuple[list[bytes], list[bytes]]:
    """Messages of the live call from the phone's side and from the trunk's side."""

    def phone(method: str, cseq: int, extra: str = "", body: str = "") -> bytes:
        return _wire(
            f"""{method} {d.lan_contact} SIP/2.0
Via: SIP/2.0/UDP {PHONE}:{PHONE_PORT};branch=z9hG4bKf{method}{cseq}
Max-Forwards: 70
From: <sip:alice@{PHONE}>;tag={d.phone_tag}
To: <sip:bob@{LAN_SBC}>;tag={d.lan_sbc_tag}
Call-ID: {d.lan_call_id}
CSeq: {cseq} {method}
Contact: <sip:alice@{PHONE}:{PHONE_PORT}>{extra}{body}"""
        )

    def trunk(method: str, cseq: int, extra: str = "", body: str = "") -> bytes:
        return _wire(
            f"""{method} {d.wan_contact} SIP/2.0
Via: SIP/2.0/UDP {TRUNK}:5060;branch=z9hG4bKt{method}{cseq}
Max-Forwards: 70
From: <{d.trunk_contact}>;tag={d.trunk_tag}
To: <sip:alice@{WAN_SBC}>;tag={d.wan_sbc_tag}
Call-ID: {d.wan_call_id}
CSeq: {cseq} {method}
Contact: <{d.trunk_contact}>{extra}{body}"""
        )

    sdp_lan = "\nContent-Type: application/sdp\n\n" + SDP.format(ip=PHONE)
    sdp_wan = "\nContent-Type: application/sdp\n\n" + SDP.format(ip=TRUNK)
    lan = [
        phone("BYE", 5),
        phone("INFO", 2, "\nContent-Type: application/dtmf-relay", "\n\nSignal=5\nDuration=160"),
        phone("INVITE", 3, "\nSupported: timer\nSession-Expires: 90;refresher=uac", sdp_lan),
        phone("UPDATE", 4, "\nSession-Expires: 90", sdp_lan),
        phone("PRACK", 6, "\nRAck: 1 1 INVITE"),
        phone("ACK", 3, "", sdp_lan),
        phone(
            "REFER",
            7,
            f"\nRefer-To: <{d.lan_contact}?Replaces={d.lan_call_id}%3Bto-tag%3D{d.lan_sbc_tag}%3Bfrom-tag%3Dx>",
        ),
        phone("OPTIONS", 8),
        phone("CANCEL", 1),
        _wire(
            f"""REGISTER sip:branch.example SIP/2.0
Via: SIP/2.0/UDP {PHONE}:{PHONE_PORT};branch=z9hG4bKreg
Max-Forwards: 70
From: <sip:alice@branch.example>;tag=r
To: <sip:alice@branch.example>
Call-ID: reg@{PHONE}
CSeq: 1 REGISTER
Contact: <sip:alice@{PHONE}:{PHONE_PORT}>;expires=60
Authorization: Digest username="alice", uri="sip:{LAN_SBC}", response="00\""""
        ),
        _wire(
            f"""SIP/2.0 200 OK
Via: SIP/2.0/UDP {LAN_SBC}:5060;branch=z9hG4bKsbc000000000010.00000000
From: <sip:x@{LAN_SBC}>;tag={d.lan_sbc_tag}
To: <sip:alice@{PHONE}>;tag={d.phone_tag}
Call-ID: {d.lan_call_id}
CSeq: 1 INFO"""
        ),
    ]
    wan = [
        trunk("BYE", 5),
        trunk("INVITE", 2, "\nSession-Expires: 120;refresher=uas", sdp_wan),
        trunk(
            "NOTIFY",
            3,
            "\nEvent: refer\nSubscription-State: active",
            "\nContent-Type: message/sipfrag\n\nSIP/2.0 100 Trying",
        ),
        trunk("REFER", 4, f"\nRefer-To: <sip:dave@{TRUNK}:5099>\nReferred-By: <{d.trunk_contact}>"),
        trunk("UPDATE", 6),
        _wire(
            f"""SIP/2.0 200 OK
Via: SIP/2.0/UDP {WAN_SBC}:5060;branch=z9hG4bKsbc000000000011.00000000;rport
From: <sip:alice@{WAN_SBC}>;tag={d.wan_sbc_tag}
To: <{d.trunk_contact}>;tag={d.trunk_tag}
Call-ID: {d.wan_call_id}
CSeq: 1 INVITE
Contact: <{d.trunk_contact}>"""
        ),
    ]
    return lan, wan


LAN_SEEDS, WAN_SEEDS = _seeds(_dialog())

step = st.one_of(
    st.tuples(st.just("lan"), mutated(seeds=LAN_SEEDS)),
    st.tuples(st.just("wan"), mutated(seeds=WAN_SEEDS)),
    st.tuples(st.sampled_from(["lan", "wan"]), st.sampled_from(LAN_SEEDS + WAN_SEEDS)),
    st.tuples(st.sampled_from(["lan", "wan"]), st.binary(max_size=200)),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(step, st.floats(0, 40)), min_size=1, max_size=6))
def test_garbage_during_a_call_never_raises(steps: list[tuple[tuple[str, bytes], float]]) -> None:
    net = Net()
    dialog, _, _ = place_call(net, "bob")
    assert dialog == _dialog()  # the seeds name this very call
    sources = {"lan": (PHONE, PHONE_PORT), "wan": (TRUNK, 5060)}
    for (realm, data), wait in steps:
        net.core.datagram_received(realm, data, _peer(sources[realm]), net.now)
        net.tick(wait)
    net.core.snapshot_calls(net.now)
    net.tick(300)  # every timer fires; whatever is left ends or stays consistent
    net.core.snapshot_calls(net.now)


def _peer(source: tuple[str, int]) -> object:
    from sbc.sip.transaction import PeerAddress

    return PeerAddress("udp", *source)
