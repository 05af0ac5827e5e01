"""`sbc status`'s figures for the management plane: whether userspace is a fallback, and the SIP counters
RFC 4780 asks for, counted by the core on a real exchange (fake dataplane)."""

from __future__ import annotations

import textwrap

from dataplane.api import DataplaneMode
from dataplane.fake import FakeDataplane
from sbc.b2bua.core import Core
from sbc.config.loader import load_config_text
from sbc.control.figures import dataplane_expected, sip_summary, status_figures
from sbc.sip.transaction import PeerAddress

CONFIG = textwrap.dedent(
    """\
    realms:
      - name: lan
        address: 198.18.0.1
        listen: [{transport: udp, port: 5060}]
        media: {address: 198.18.0.1, ports: 30000-30999}
    routes: []
    """
)
OPTIONS = (
    b"OPTIONS sip:198.18.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.0.9:5070;branch=z9hG4bK-1\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:a@198.18.0.9>;tag=1\r\nTo: <sip:198.18.0.1>\r\nCall-ID: x1\r\n"
    b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)


def test_userspace_is_a_fallback_only_when_xdp_was_possible() -> None:
    assert dataplane_expected(DataplaneMode.XDP, "") == "xdp"
    assert dataplane_expected(DataplaneMode.USERSPACE, "not root") == "userspace"
    assert dataplane_expected(DataplaneMode.USERSPACE, "SBC_DATAPLANE=userspace") == "userspace"
    assert dataplane_expected(DataplaneMode.USERSPACE, "media address 127.0.1.1 of realm lan is on loopback") == (
        "userspace"
    )
    assert dataplane_expected(DataplaneMode.USERSPACE, "attaching XDP to eth0 failed: EBUSY") == "xdp"


def test_sip_summary_counts_messages_transactions_and_drops() -> None:
    core = Core(load_config_text(CONFIG, "t.yaml"), FakeDataplane())
    peer = PeerAddress("udp", "198.18.0.9", 5070)
    core.datagram_received("lan", OPTIONS, peer, 1.0)
    core.datagram_received("lan", OPTIONS, peer, 1.1)  # a retransmission: absorbed, answered again
    core.datagram_received("lan", b"\x00\x01garbage", peer, 1.2)
    summary = sip_summary(core)
    assert summary["in_requests"] == 2 and summary["in_responses"] == 0
    assert summary["out_responses"] == 2 and summary["out_requests"] == 0
    assert summary["transactions_total"] == 1 and summary["transactions_active"] == 1
    assert summary["otherwise_discarded"] == 1
    figures = status_figures(core, FakeDataplane(), "not root", 2.0)
    assert figures["max_calls"] == 2000 and figures["trunks"] == [] and figures["sip"] == summary
