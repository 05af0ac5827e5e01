"""AddressScrubber: which addresses are the other side's, and their replacement in header text."""

from __future__ import annotations

import ipaddress

import pytest

from sbc.policy.topology import AddressScrubber

LAN = AddressScrubber(
    (ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("2001:db8:1::/48")),
    frozenset({ipaddress.ip_address("198.18.0.9")}),
)
V4_ONLY = AddressScrubber((ipaddress.ip_network("192.0.2.0/24"),), frozenset())
V6_ONLY = AddressScrubber((), frozenset({ipaddress.ip_address("2001:db8::5")}))
SBC_V4 = ipaddress.ip_address("198.51.100.7")
SBC_V6 = ipaddress.ip_address("2001:db8:ff::1")


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        ("<sip:alice@192.0.2.10:5062>;tag=1", "<sip:alice@198.51.100.7>;tag=1"),  # its port goes too
        ("<sip:alice@192.0.3.10:5062>;tag=1", "<sip:alice@192.0.3.10:5062>;tag=1"),
        ("SIP/2.0/UDP 198.18.0.9;branch=z9hG4bK1", "SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK1"),
        ("<sip:bob@192.0.3.10>", "<sip:bob@192.0.3.10>"),  # not the LAN's
        ("<sip:bob@[2001:db8:1::20]:5060>", "<sip:bob@198.51.100.7>"),
        ("1192.0.2.1 and 192.0.2.1234", "1192.0.2.1 and 192.0.2.1234"),  # not addresses
        ("sip:carol@example.com", "sip:carol@example.com"),
        ("10 192.0.2.1, 192.0.2.2", "10 198.51.100.7, 198.51.100.7"),
    ],
)
def test_scrub_text(text: str, scrubbed: str) -> None:
    assert LAN.scrub_text(text, SBC_V4) == scrubbed


def test_ipv6_replacement_keeps_brackets_in_uris() -> None:
    assert LAN.scrub_text("<sip:bob@[2001:db8:1::20]>", SBC_V6) == "<sip:bob@[2001:db8:ff::1]>"
    assert LAN.scrub_text("via 2001:db8:1::20 here", SBC_V6) == "via 2001:db8:ff::1 here"


def test_a_version_with_nothing_hidden_is_left_alone() -> None:
    assert V4_ONLY.scrub_text("<sip:a@[2001:db8::5]> 192.0.2.4", SBC_V4) == "<sip:a@[2001:db8::5]> 198.51.100.7"
    assert V6_ONLY.scrub_text("<sip:a@[2001:db8::5]> 192.0.2.4", SBC_V4) == "<sip:a@198.51.100.7> 192.0.2.4"


def test_is_hidden_and_hidden_in() -> None:
    assert LAN.is_hidden(ipaddress.ip_address("192.0.2.255"))
    assert not LAN.is_hidden(ipaddress.ip_address("192.0.1.255"))
    assert LAN.is_hidden(ipaddress.ip_address("2001:db8:1:ffff::1"))
    assert not LAN.is_hidden(ipaddress.ip_address("2001:db8:2::1"))
    found = LAN.hidden_in('Digest uri="sip:192.0.2.1", nonce="x", cnonce="198.18.0.9" 203.0.113.1')
    assert found == {ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("198.18.0.9")}
