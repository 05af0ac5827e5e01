from __future__ import annotations

from sbc.sip.message import Request, parse_datagram

INVITE = (
    b"INVITE sip:bob@198.18.0.2 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.18.0.1:5060;branch=z9hG4bK776asdhds\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@198.18.0.2>\r\n"
    b"From: Alice <sip:alice@198.18.0.1>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@198.18.0.1\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@198.18.0.1>\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)


def test_invite_round_trips_and_reads_fields() -> None:
    msg = parse_datagram(INVITE)
    assert isinstance(msg, Request)
    assert msg.serialize() == INVITE
    assert msg.cseq == (314159, "INVITE")
    assert msg.from_.tag == "1928301774"
    assert msg.top_via.branch == "z9hG4bK776asdhds"
