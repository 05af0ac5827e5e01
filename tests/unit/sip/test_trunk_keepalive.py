"""Trunk keepalives through the core: OPTIONS toward the realm's peer, up on an answer, down after two
unanswered probes, the state in `trunks.report`, and nothing sent when keepalive_s is 0."""

from __future__ import annotations

import textwrap

from dataplane.fake import FakeDataplane
from sbc.b2bua.core import Core
from sbc.b2bua.keepalive import TrunkMonitor, TrunkState
from sbc.b2bua.outputs import LogEvent, SendSip
from sbc.config.loader import load_config_text
from sbc.sip.message import make_response, parse_datagram
from sbc.sip.transaction import PeerAddress


def config(keepalive: str = "keepalive_s: 2") -> str:
    return textwrap.dedent(
        f"""\
        realms:
          - name: lan
            address: 198.18.0.1
            listen: [{{transport: udp, port: 5060}}]
            media: {{address: 198.18.0.1, ports: 30000-30999}}
          - name: wan
            address: 198.18.1.1
            listen: [{{transport: udp, port: 5060}}]
            peer: {{host: 198.18.1.10, port: 5080, {keepalive}}}
            media: {{address: 198.18.1.1, ports: 31000-31999}}
        routes:
          - {{name: out, from: lan, to: wan}}
        """
    )


def probes(outputs: list[object]) -> list[SendSip]:
    return [o for o in outputs if isinstance(o, SendSip) and o.data.startswith(b"OPTIONS ")]


def events(outputs: list[object]) -> list[str]:
    return [o.event for o in outputs if isinstance(o, LogEvent) and o.event.startswith("trunk.")]


def answer(core: Core, probe: SendSip, status: int, now: float) -> list[object]:
    request = parse_datagram(probe.data)
    response = make_response(request, status, "OK" if status == 200 else "Nope", to_tag="t1")
    return list(core.datagram_received("wan", response.serialize(), PeerAddress("udp", "198.18.1.10", 5080), now))


def test_options_probe_goes_to_the_peer_and_an_answer_brings_the_trunk_up() -> None:
    core = Core(load_config_text(config(), "test.yaml"), FakeDataplane())
    assert core.trunks.report(0.0)[0]["state"] == "unknown"
    out = core.tick(100.0)
    [probe] = probes(out)
    assert probe.realm == "wan" and (probe.destination.host, probe.destination.port) == ("198.18.1.10", 5080)
    request = parse_datagram(probe.data)
    assert request.uri == "sip:198.18.1.10:5080" and request.get("max-forwards") == "70"
    assert "198.18.1.1" in (request.get("via") or "")  # from the SBC's WAN address
    assert events(answer(core, probe, 200, 100.05)) == ["trunk.up"]
    row = core.trunks.report(101.0)[0]
    assert row["state"] == "up" and row["last_status"] == 200 and row["address"] == "udp:198.18.1.10:5080"
    assert not probes(core.tick(101.0))  # the next probe waits for the interval
    assert len(probes(core.tick(102.1))) == 1


def test_two_unanswered_probes_take_the_trunk_down_and_an_answer_up_again() -> None:
    core = Core(load_config_text(config(), "test.yaml"), FakeDataplane())
    answer(core, probes(core.tick(0.0))[0], 404, 0.01)  # any answer but 503 proves it is alive
    assert core.trunks.trunks["wan"].state is TrunkState.UP
    seen: list[str] = []
    now = 2.0
    while now < 12.0 and "trunk.down" not in seen:
        out = core.tick(now)
        seen += events(out)
        now += 0.5
    assert seen == ["trunk.down"], seen
    assert core.trunks.report(now)[0]["probes_failed"] == 2
    out = core.tick(now + 2.0)  # retransmissions of the old probes first, the new probe last
    assert events(answer(core, probes(out)[-1], 200, now + 2.1)) == ["trunk.up"]


def test_503_counts_as_a_failure() -> None:
    core = Core(load_config_text(config(), "test.yaml"), FakeDataplane())
    assert events(answer(core, probes(core.tick(0.0))[0], 503, 0.1)) == []
    assert events(answer(core, probes(core.tick(2.0))[0], 503, 2.1)) == ["trunk.down"]


def test_no_keepalive_without_an_interval_and_reconfigure_keeps_state() -> None:
    core = Core(load_config_text(config("keepalive_s: 0"), "test.yaml"), FakeDataplane())
    assert not probes(core.tick(0.0)) and core.trunks.report(0.0) == []
    core.reconfigure(load_config_text(config(), "test.yaml"))
    answer(core, probes(core.tick(1.0))[0], 200, 1.1)
    core.reconfigure(load_config_text(config("keepalive_s: 5"), "test.yaml"))
    assert core.trunks.trunks["wan"].state is TrunkState.UP  # same peer: state kept


def test_monitor_ignores_answers_to_other_transactions() -> None:
    monitor = TrunkMonitor()
    monitor.configure(load_config_text(config(), "test.yaml").realms)
    [trunk] = monitor.due(0.0)
    monitor.probe_sent(trunk, "c1", 0.0)
    assert monitor.answered("wan", "c2", 200, 0.1) is None
    assert monitor.answered("lan", "c1", 200, 0.1) is None
    assert monitor.due(0.5) == []  # one probe in flight at a time
