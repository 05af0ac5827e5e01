"""Where a message goes or came from, as people read it (issue 11 item 7): a SIP URI with the
transport (`sip:host:port;transport=udp`, IPv6 in brackets), in `sbc registrations` and the logs."""

from __future__ import annotations

from sbc.sip.transaction import PeerAddress
from tests.unit.b2bua.sip_peers import PHONE, PHONE_PORT, TRUNK, Net, phone_invite


def test_peer_address_reads_as_a_sip_uri() -> None:
    assert str(PeerAddress("udp", "192.0.2.10", 5062)) == "sip:192.0.2.10:5062;transport=udp"
    assert str(PeerAddress("TCP", "2001:db8::1", 5060)) == "sip:[2001:db8::1]:5060;transport=tcp"
    assert str(PeerAddress("tls", "pbx.example", 5061)) == "sip:pbx.example:5061;transport=tls"


def test_the_call_start_log_names_the_destination_as_a_uri() -> None:
    net = Net()
    phone_invite(net, "bob")
    start = next(e for e in net.logs if e.event == "call.start")
    assert start.fields["destination"] == f"sip:{TRUNK}:5060;transport=udp"


def test_a_registration_flow_reads_as_a_uri() -> None:
    net = Net()
    net.send(
        "lan",
        f"""REGISTER sip:branch.example SIP/2.0
Via: SIP/2.0/UDP {PHONE}:{PHONE_PORT};branch=z9hG4bKreg
Max-Forwards: 70
From: <sip:alice@branch.example>;tag=r1
To: <sip:alice@branch.example>
Call-ID: reg@{PHONE}
CSeq: 1 REGISTER
Contact: <sip:alice@{PHONE}:{PHONE_PORT}>
Content-Length: 0""",
        (PHONE, PHONE_PORT),
    )
    binding = next(iter(net.core.registrations.by_token.values()))
    assert str(binding.flow) == f"sip:{PHONE}:{PHONE_PORT};transport=udp"
