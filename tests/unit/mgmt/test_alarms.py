"""The alarm table and the rules that raise and clear alarms from snapshots of the SBC."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from mgmt.alarm_rules import (
    CONFIG_ROLLBACK,
    HIGH_LOAD,
    MEDIA_QUALITY,
    SBC_UNREACHABLE,
    XDP_FALLBACK,
    AlarmRules,
    AlarmThresholds,
    raise_config_rollback,
    trunk_alarm_name,
    trunk_of_alarm,
)
from mgmt.alarms import AlarmCleared, AlarmEvent, AlarmRaised, AlarmTable, Severity
from mgmt.snmp.source import SbcSnapshot
from sbc.control.contract import CallSnapshot, DataplaneMode, MediaMode, TrunkState, TrunkView
from tests.unit.contract_samples import call, leg, status_report


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


@pytest.fixture
def table() -> AlarmTable:
    return AlarmTable(clock=Clock())


def test_raise_is_idempotent_per_name_while_active(table: AlarmTable) -> None:
    first = table.raise_alarm("high-load", "major", "95 calls")
    again = table.raise_alarm("high-load", Severity.CRITICAL, "99 calls")
    assert again == first
    assert first.severity is Severity.MAJOR and first.active
    assert [a.name for a in table.active()] == ["high-load"]


def test_clear_ends_the_alarm_and_a_later_raise_is_a_new_one(table: AlarmTable) -> None:
    first = table.raise_alarm("xdp-fallback", "major", "userspace")
    cleared = table.clear("xdp-fallback")
    assert cleared is not None and cleared.id == first.id
    assert cleared.cleared_at is not None and cleared.cleared_at > first.raised_at
    assert table.active() == [] and not table.is_active("xdp-fallback")
    assert table.clear("xdp-fallback") is None  # clearing twice is a no-op
    second = table.raise_alarm("xdp-fallback", "major", "userspace again")
    assert second.id != first.id
    assert [(a.id, a.active) for a in table.history()] == [(first.id, False), (second.id, True)]


def test_active_is_ordered_by_id(table: AlarmTable) -> None:
    for name in ("c", "a", "b"):
        table.raise_alarm(name, "minor", name)
    assert [a.name for a in table.active()] == ["c", "a", "b"]


def test_listeners_get_every_change_and_a_broken_one_does_not_stop_the_others(table: AlarmTable) -> None:
    seen: list[AlarmEvent] = []

    def broken(event: AlarmEvent) -> None:
        raise RuntimeError("listener bug")

    table.subscribe(broken)
    unsubscribe = table.subscribe(seen.append)
    table.raise_alarm("high-load", "major", "x")
    table.raise_alarm("high-load", "major", "x")  # no event for a repeat
    table.clear("high-load")
    assert [type(e) for e in seen] == [AlarmRaised, AlarmCleared]
    assert seen[1].alarm.cleared_at is not None
    unsubscribe()
    table.raise_alarm("high-load", "major", "x")
    assert len(seen) == 2


def test_generation_changes_with_every_raise_and_clear(table: AlarmTable) -> None:
    g0 = table.generation
    table.raise_alarm("a", "warning", "x")
    g1 = table.generation
    table.raise_alarm("a", "warning", "x")
    assert table.generation == g1 > g0
    table.clear("a")
    assert table.generation > g1


def test_unknown_severity_is_refused(table: AlarmTable) -> None:
    with pytest.raises(ValueError):
        table.raise_alarm("a", "catastrophic", "x")


def test_history_is_bounded() -> None:
    table = AlarmTable(history_size=3)
    for i in range(5):
        table.raise_alarm(f"a{i}", "warning", "x")
    assert [a.name for a in table.history()] == ["a2", "a3", "a4"]


# ---- rules ---------------------------------------------------------------------------------------


def snap(calls: tuple[CallSnapshot, ...] = (), reachable: bool = True, **status: Any) -> SbcSnapshot:
    return SbcSnapshot(
        status=status_report(**status), calls=calls, taken_at=1.0, reachable=reachable, generation=1
    )


def trunk(state: TrunkState, name: str = "carrier") -> TrunkView:
    return replace(status_report().trunks[0], name=name, address="udp:198.51.100.7:5060", state=state)


def test_high_load_raises_above_80_percent_and_clears_at_70(table: AlarmTable) -> None:
    rules = AlarmRules(table)
    rules.evaluate(snap(active_calls=8, max_calls=10))
    assert not table.is_active(HIGH_LOAD)  # 80 % is not above 80 %
    rules.evaluate(snap(active_calls=9, max_calls=10))
    assert table.is_active(HIGH_LOAD)
    assert "9 active calls of at most 10" in table.active()[0].text
    rules.evaluate(snap(active_calls=8, max_calls=10))
    assert table.is_active(HIGH_LOAD)  # hysteresis: still above 70 %
    rules.evaluate(snap(active_calls=7, max_calls=10))
    assert not table.is_active(HIGH_LOAD)


def test_no_high_load_rule_without_a_limit(table: AlarmTable) -> None:
    AlarmRules(table).evaluate(snap(active_calls=10_000, max_calls=0))
    assert table.active() == []


def test_media_quality_from_the_legs_of_active_calls(table: AlarmTable) -> None:
    rules = AlarmRules(table)
    rules.evaluate(snap(calls=(call(legs=(leg(mos=2.1), leg(mos=4.4))),)))
    assert table.is_active(MEDIA_QUALITY)
    rules.evaluate(snap(calls=(call(legs=(leg(mos=4.4), leg(mos=4.3))),)))
    assert not table.is_active(MEDIA_QUALITY)


def test_media_quality_ignores_legs_and_calls_without_media(table: AlarmTable) -> None:
    rules = AlarmRules(table)
    rules.evaluate(snap(calls=(call(legs=(leg(mos=None, packets_in=0), leg(mos=2.9))),)))
    assert table.is_active(MEDIA_QUALITY)
    rules.evaluate(snap(calls=(call(legs=(leg(mos=None, packets_in=0), None)), call(media_mode=MediaMode.DIRECT))))
    assert not table.is_active(MEDIA_QUALITY)  # nothing measured: no quality problem to report


def test_xdp_fallback_only_when_xdp_is_expected(table: AlarmTable) -> None:
    userspace = {"dataplane": DataplaneMode.USERSPACE, "dataplane_note": "BPF object not built"}
    AlarmRules(table).evaluate(snap(**userspace))
    assert not table.is_active(XDP_FALLBACK)
    rules = AlarmRules(table, AlarmThresholds(expect_xdp=True))
    rules.evaluate(snap(**userspace))
    assert "BPF object not built" in table.active()[0].text
    rules.evaluate(snap(dataplane=DataplaneMode.XDP))
    assert not table.is_active(XDP_FALLBACK)


def test_xdp_fallback_when_the_sbc_says_it_expected_xdp(table: AlarmTable) -> None:
    AlarmRules(table).evaluate(snap(dataplane_expected=DataplaneMode.XDP, dataplane_note=""))
    assert table.is_active(XDP_FALLBACK) and "no reason given" in table.active()[0].text


def test_unreachable_sbc_raises_its_alarm_and_freezes_the_others(table: AlarmTable) -> None:
    rules = AlarmRules(table)
    rules.evaluate(snap(active_calls=1, max_calls=1))
    assert table.is_active(HIGH_LOAD)
    rules.evaluate(snap(active_calls=0, max_calls=1, reachable=False))
    assert table.is_active(SBC_UNREACHABLE) and table.is_active(HIGH_LOAD)  # stale figures clear nothing
    rules.evaluate(snap(active_calls=0, max_calls=1, trunks=()))
    assert table.active() == []


def test_no_unreachable_alarm_before_the_first_poll(table: AlarmTable) -> None:
    AlarmRules(table).evaluate(SbcSnapshot())
    assert table.active() == []


def test_trunk_down_and_up(table: AlarmTable) -> None:
    rules = AlarmRules(table)
    rules.evaluate(snap(trunks=(trunk(TrunkState.DOWN),)))
    assert [a.name for a in table.active()] == ["trunk-down:carrier"]
    assert "udp:198.51.100.7:5060" in table.active()[0].text
    rules.evaluate(snap(trunks=(trunk(TrunkState.UNKNOWN),)))
    assert table.is_active("trunk-down:carrier")  # unknown says nothing new
    rules.evaluate(snap(trunks=(trunk(TrunkState.UP),)))
    assert table.active() == []


def test_a_trunk_removed_from_the_config_is_no_longer_down(table: AlarmTable) -> None:
    rules = AlarmRules(table)
    rules.evaluate(snap(trunks=(trunk(TrunkState.DOWN, "old"),)))
    assert table.is_active("trunk-down:old")
    rules.evaluate(snap(trunks=()))
    assert table.active() == []


def test_trunk_alarm_names_round_trip() -> None:
    assert trunk_of_alarm(trunk_alarm_name("carrier-1")) == "carrier-1"
    assert trunk_of_alarm(HIGH_LOAD) is None


def test_config_rollback_is_raised_by_the_config_store(table: AlarmTable) -> None:
    alarm = raise_config_rollback(table, 7, "commit not confirmed within 300 s")
    assert alarm.name == CONFIG_ROLLBACK and alarm.severity is Severity.MAJOR
    assert "revision 7" in alarm.text
