"""Requests too large for UDP (issue 11 item 6; RFC 3261 §18.1.1): above 1300 bytes, a request to a
peer configured for UDP goes over TCP when that peer takes TCP (`large_over_tcp`, by default when the
realm listens on TCP), with the top Via naming TCP and the SBC's TCP port."""

from __future__ import annotations

import pytest

from sbc.b2bua.outputs import SendSip
from sbc.config.loader import load_config_text
from sbc.sip.message import Request, parse_datagram
from sbc.yamlsource import ConfigError
from tests.unit.b2bua.config_variants import WAN_LISTEN, WAN_PEER, config_text, net_with
from tests.unit.b2bua.sip_peers import LAN_SBC, PHONE, PHONE_PORT, TRUNK, WAN_SBC, Net, Sent, requests

TCP_LISTEN = f"address: {WAN_SBC}\n    listen: [{{transport: udp, port: 5060}}, {{transport: tcp, port: 5070}}]"


def _invite(net: Net, body_lines: int) -> list[Sent]:
    attributes = "\n".join(f"a=x-padding-{n}:{'p' * 40}" for n in range(body_lines))
    body = f"v=0\no=x 1 1 IN IP4 {PHONE}\ns=-\nc=IN IP4 {PHONE}\nt=0 0\nm=audio 6000 RTP/AVP 0\n{attributes}"
    return net.send(
        "lan",
        f"""INVITE sip:bob@{LAN_SBC} SIP/2.0
Via: SIP/2.0/UDP {PHONE}:{PHONE_PORT};branch=z9hG4bKbig
Max-Forwards: 70
From: <sip:alice@{PHONE}>;tag=big
To: <sip:bob@{LAN_SBC}>
Call-ID: big@{PHONE}
CSeq: 1 INVITE
Contact: <sip:alice@{PHONE}:{PHONE_PORT}>
Content-Type: application/sdp

{body}""",
        (PHONE, PHONE_PORT),
    )


def _sent_invite(out: list[Sent]) -> tuple[Sent, Request]:
    invite = requests(out, "INVITE", "wan")[0]
    return next(s for s in out if s.message is invite), invite


def test_a_large_invite_to_a_udp_trunk_goes_over_tcp_with_the_via_changed() -> None:
    net = net_with({WAN_LISTEN: TCP_LISTEN})
    sent, invite = _sent_invite(_invite(net, 40))
    assert len(invite.serialize()) > 1300
    assert (sent.destination.transport, sent.destination.host, sent.destination.port) == ("tcp", TRUNK, 5060)
    assert invite.top_via.transport.upper() == "TCP"
    assert str(invite.get("via")).startswith(f"SIP/2.0/TCP {WAN_SBC}:5070;")


def test_a_small_invite_stays_on_udp() -> None:
    net = net_with({WAN_LISTEN: TCP_LISTEN})
    sent, invite = _sent_invite(_invite(net, 2))
    assert len(invite.serialize()) <= 1300
    assert sent.destination.transport == "udp" and invite.top_via.transport.upper() == "UDP"


@pytest.mark.parametrize(
    "edits",
    [
        {},  # the realm has no TCP listener: nothing to send TCP from
        {WAN_LISTEN: TCP_LISTEN, WAN_PEER: WAN_PEER.replace("udp}", "udp, large_over_tcp: false}")},
    ],
    ids=["no-tcp-listener", "switched-off"],
)
def test_a_large_invite_stays_on_udp_when_the_peer_takes_no_tcp(edits: dict[str, str]) -> None:
    net = net_with(edits)
    sent, invite = _sent_invite(_invite(net, 40))
    assert len(invite.serialize()) > 1300
    assert sent.destination.transport == "udp" and invite.top_via.transport.upper() == "UDP"


def test_large_over_tcp_without_a_tcp_listener_is_refused_with_its_line() -> None:
    text = config_text({WAN_PEER: WAN_PEER.replace("udp}", "udp, large_over_tcp: true}")})
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, "unit-test")
    line = next(n for n, t in enumerate(text.splitlines(), 1) if "large_over_tcp" in t)
    assert any(p.line == line and "tcp listener" in p.message for p in caught.value.problems), caught.value.problems


def test_a_refused_tcp_connection_sends_the_request_again_over_udp() -> None:
    """§18.1.1: when the connection for a request moved to TCP fails (reset, refused), retry over UDP,
    rather than failing a call to a trunk that does not take TCP after all."""
    net = net_with({WAN_LISTEN: TCP_LISTEN})
    _invite(net, 40)
    moved = [(key, request) for key, (request, _) in net.core.state.moved_to_tcp.items()]
    assert len(moved) == 1
    (realm, txn_id), _ = moved[0]
    outputs = net.core.transport_failed(realm, txn_id, net.now)
    sent = [o for o in outputs if isinstance(o, SendSip)]
    assert [(o.realm, o.destination.transport, o.destination.port) for o in sent] == [("wan", "udp", 5060)]
    again = parse_datagram(sent[0].data)
    assert isinstance(again, Request) and again.method == "INVITE"
    assert str(again.get("via")).startswith(f"SIP/2.0/UDP {WAN_SBC}:5060;branch=z9hG4bKsbc")
    assert not net.core.state.moved_to_tcp
    ringing = net.send(
        "wan",
        f"""SIP/2.0 180 Ringing
Via: {again.get("via")}
From: {again.get("from")}
To: {again.get("to")};tag=t1
Call-ID: {again.call_id}
CSeq: {again.get("cseq")}
Contact: <sip:bob@{TRUNK}>
Content-Length: 0""",
        (TRUNK, 5060),
    )
    assert [s.message.start_line() for s in ringing if s.realm == "lan"] == ["SIP/2.0 180 Ringing"]
