from __future__ import annotations

import ipaddress

import pytest

from dataplane.api import DataplaneMode, Endpoint, LegProgram, LegStats, PortsExhausted
from dataplane.fake import FakeDataplane

LAN = ipaddress.ip_address("198.18.0.1")
WAN = ipaddress.ip_address("198.18.1.1")


def test_allocates_even_pairs_in_rotating_order_and_exhausts() -> None:
    dp = FakeDataplane()
    assert dp.mode is DataplaneMode.USERSPACE
    a = dp.allocate("lan", LAN, 10001, 10006)  # pairs 10002/3 and 10004/5
    b = dp.allocate("lan", LAN, 10001, 10006)
    assert (a.rtp_port, a.rtcp_port, b.rtp_port) == (10002, 10003, 10004)
    assert a.anchor_id != b.anchor_id
    with pytest.raises(PortsExhausted):
        dp.allocate("lan", LAN, 10001, 10006)
    dp.release(a)
    assert dp.allocate("lan", LAN, 10001, 10006).rtp_port == 10002
    assert dp.allocate("wan", WAN, 10001, 10006).rtp_port == 10002  # other address: own ports


def test_records_calls_and_state() -> None:
    dp = FakeDataplane()
    a = dp.allocate("lan", LAN, 20000, 20099)
    b = dp.allocate("wan", WAN, 20000, 20099)
    c = dp.allocate("lan", LAN, 20000, 20099)
    leg = LegProgram(remote_rtp=Endpoint(ipaddress.ip_address("198.18.0.10"), 4000))
    dp.program(a, leg)
    dp.connect(a, b)
    assert dp.partner_of(a) == b and dp.partner_of(b) == a
    dp.connect(a, c)  # hairpin re-point: b is left alone
    assert dp.partner_of(a) == c and dp.partner_of(b) is None
    assert dp.leg_of(a) == leg and dp.programs == [(a, leg)]
    assert dp.connects == [(a, b), (a, c)]
    dp.set_stats(a, LegStats(packets_in=7, rtp_expected=10, rtp_lost=1))
    got = dp.stats(a)
    assert got.packets_in == 7 and got.loss_fraction == pytest.approx(0.1)
    got.packets_in = 0
    assert dp.stats(a).packets_in == 7  # a copy
    assert dp.stats(b) == LegStats()
    dp.disconnect(a)
    assert dp.partner_of(c) is None
    dp.close()
    assert dp.closed and not dp.live and dp.releases == [a, b, c]
    assert [name for name, _ in dp.calls] == [
        "allocate", "allocate", "allocate", "program", "connect", "connect", "disconnect",
        "close", "release", "release", "release",
    ]  # fmt: skip
    with pytest.raises(KeyError):
        dp.stats(a)
