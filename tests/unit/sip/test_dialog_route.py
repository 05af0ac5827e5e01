"""Request-URI, Route and next hop of in-dialog requests (RFC 3261 §12.2.1.1)."""

from __future__ import annotations

from sbc.sip.dialog_route import dialog_target, hop_address
from sbc.sip.transaction import PeerAddress
from sbc.sip.uri import Uri

TARGET = "sip:bob@192.0.2.20:5064"


def test_without_a_route_set_the_request_goes_to_the_remote_target() -> None:
    target = dialog_target(TARGET, [])
    assert (target.request_uri, target.routes, target.next_hop) == (TARGET, (), None)


def test_a_loose_router_first_keeps_the_remote_target_and_is_the_next_hop() -> None:
    routes = ["<sip:203.0.113.10;lr>", "<sip:p2.example;lr;transport=tcp>"]
    target = dialog_target(TARGET, routes)
    assert target.request_uri == TARGET and target.routes == tuple(routes)
    assert target.next_hop is not None and hop_address(target.next_hop, "udp") == PeerAddress(
        "udp", "203.0.113.10", 5060
    )


def test_a_strict_router_first_becomes_the_request_uri() -> None:
    target = dialog_target(TARGET, ["<sip:p1.example:5070;transport=tcp>", "<sip:p2.example;lr>"])
    assert target.request_uri == "sip:p1.example:5070"
    assert target.routes == ("<sip:p2.example;lr>", f"<{TARGET}>")
    assert target.next_hop is not None and hop_address(target.next_hop, "udp") == PeerAddress("tcp", "p1.example", 5070)


def test_hop_addresses_take_transport_and_default_ports() -> None:
    assert hop_address(Uri.parse("sips:[2001:db8::1]"), "udp") == PeerAddress("tls", "2001:db8::1", 5061)
    assert hop_address(Uri.parse("sip:h;transport=TCP"), "udp") == PeerAddress("tcp", "h", 5060)
