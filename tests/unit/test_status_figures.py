"""`sbc status`, `sbc calls` and the call records built from a running core (fake dataplane): whether
userspace is a fallback, the SIP counters RFC 4780 asks for, calls counted per realm in and out, and
every answer in the contract's types (a field the core stops reporting fails here)."""

from __future__ import annotations

import json
import textwrap

from dataplane.api import DataplaneMode, Fallback, FallbackReason
from dataplane.fake import FakeDataplane
from sbc.b2bua.core import Core
from sbc.b2bua.outputs import CallEnded
from sbc.config.loader import load_config_text
from sbc.control.contract import CallList, CallRecord, MediaMode, StatusReport, decode, encode
from sbc.control.figures import Running, call_list, call_record, dataplane_expected, sip_summary, status_report
from sbc.sip.transaction import PeerAddress
from tests.unit.b2bua.sip_peers import PHONE, Net, phone_request, place_call

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
NOT_ROOT = Fallback(FallbackReason.NOT_PRIVILEGED, "not root")
RUNNING = Running("9.9", started_at=1000.0, internal_errors=0, fallback=NOT_ROOT)


def test_userspace_is_a_fallback_only_when_xdp_was_possible() -> None:
    def expected(reason: FallbackReason | None, mode: DataplaneMode = DataplaneMode.USERSPACE) -> DataplaneMode:
        return dataplane_expected(mode, Fallback(reason, "why") if reason is not None else None)

    assert expected(None, DataplaneMode.XDP) is DataplaneMode.XDP
    for choice in (FallbackReason.NOT_PRIVILEGED, FallbackReason.CHOSEN, FallbackReason.MEDIA_ON_LOOPBACK):
        assert expected(choice) is DataplaneMode.USERSPACE
    assert expected(FallbackReason.START_FAILED) is DataplaneMode.XDP
    assert expected(FallbackReason.NO_OBJECT) is DataplaneMode.XDP


def test_sip_summary_counts_messages_transactions_and_drops() -> None:
    core = Core(load_config_text(CONFIG, "t.yaml"), FakeDataplane())
    peer = PeerAddress("udp", "198.18.0.9", 5070)
    core.datagram_received("lan", OPTIONS, peer, 1.0)
    core.datagram_received("lan", OPTIONS, peer, 1.1)  # a retransmission: absorbed, answered again
    core.datagram_received("lan", b"\x00\x01garbage", peer, 1.2)
    summary = sip_summary(core)
    assert summary.in_requests == 2 and summary.in_responses == 0
    assert summary.out_responses == 2 and summary.out_requests == 0
    assert summary.transactions_total == 1 and summary.transactions_active == 1
    assert summary.otherwise_discarded == 1
    status = status_report(core, FakeDataplane(), RUNNING, wall_now=1010.0, now=2.0)
    assert status.max_calls == 2000 and status.trunks == () and status.sip == summary
    assert status.uptime_s == 10.0 and status.dataplane_fallback is FallbackReason.NOT_PRIVILEGED


def test_calls_are_counted_per_realm_in_and_out_and_reported_typed() -> None:
    net = Net()
    place_call(net, "bob")
    place_call(net, "carol")
    status = status_report(net.core, FakeDataplane(), RUNNING, wall_now=1000.0, now=net.now)
    by_name = {r.name: r for r in status.realms}
    assert (by_name["lan"].calls_in, by_name["lan"].calls_out) == (2, 0)
    assert (by_name["wan"].calls_in, by_name["wan"].calls_out) == (0, 2)
    assert decode(StatusReport, json.loads(json.dumps(encode(status)))) == status
    calls = call_list(net.core, net.now)
    assert [(c.a_realm, c.b_realm, c.state, c.media_mode) for c in calls.calls] == [
        ("lan", "wan", "confirmed", MediaMode.ANCHOR)
    ] * 2
    assert decode(CallList, json.loads(json.dumps(encode(calls)))) == calls


def test_an_ended_call_becomes_a_call_record_with_wall_clock_times() -> None:
    net = Net()
    dialog, _, _ = place_call(net, "bob")
    net.now = 5.0
    ended: list[CallEnded] = []
    collect = net._collect

    def keep(outputs: list[object]) -> list[object]:
        ended.extend(o for o in outputs if isinstance(o, CallEnded))
        return collect(outputs)  # type: ignore[return-value]

    net._collect = keep  # type: ignore[assignment,method-assign]
    phone_request(net, dialog, "BYE", 2)
    assert len(ended) == 1
    record = call_record(ended[0].record, recorded_at=1_700_000_005.0, now=5.0)
    assert isinstance(record, CallRecord)
    assert (record.a_realm, record.b_realm, record.route, record.status) == ("lan", "wan", "out", 200)
    assert record.start == "2023-11-14T22:13:20.000Z" and record.end == "2023-11-14T22:13:25.000Z"
    assert record.recorded_at == 1_700_000_005.0 and record.a_call_id == f"bob-call@{PHONE}"
