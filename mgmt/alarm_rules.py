"""Alarm sources: rules evaluated on every snapshot of the SBC, plus the calls other parts make.

Each rule raises its alarm when its condition starts and clears it when it ends, with a little
hysteresis where the figure is noisy (load, quality) so an alarm does not flap at the threshold.
While the SBC's control API does not answer, only `sbc-unreachable` is evaluated: the other figures
are stale and must neither raise nor clear anything.

Names (stable: managers filter on them; also sbcAlarmName in EDGE-SBC-MIB):
  high-load        active calls above 80 % of the maximum (cleared below 70 %)
  media-quality    mean MOS of the active calls below 3.5 (cleared at 3.6)
  xdp-fallback     media relayed in userspace although XDP is expected
  config-rollback  the config store rolled a commit back (raised by it, see `raise_config_rollback`)
  sbc-unreachable  the SBC's control API does not answer
  trunk-down:NAME  a trunk the SBC reports down (the SNMP notifier also sends sbcTrunkDown/Up)
"""

from __future__ import annotations

from dataclasses import dataclass

from mgmt.alarms import Alarm, AlarmTable, Severity
from mgmt.snmp import figures
from mgmt.snmp.source import SbcSnapshot
from sbc.control.contract import CallSnapshot, DataplaneMode, StatusReport, TrunkState

HIGH_LOAD = "high-load"
MEDIA_QUALITY = "media-quality"
XDP_FALLBACK = "xdp-fallback"
CONFIG_ROLLBACK = "config-rollback"
SBC_UNREACHABLE = "sbc-unreachable"
TRUNK_DOWN_PREFIX = "trunk-down:"


def trunk_alarm_name(trunk: str) -> str:
    return TRUNK_DOWN_PREFIX + trunk


def trunk_of_alarm(name: str) -> str | None:
    """The trunk a `trunk-down:NAME` alarm is about; None for other alarms."""
    return name[len(TRUNK_DOWN_PREFIX) :] if name.startswith(TRUNK_DOWN_PREFIX) else None


def raise_config_rollback(alarms: AlarmTable, revision: int | str, reason: str) -> Alarm:
    """For the config store: a commit was rolled back (unconfirmed, or failed to apply). The alarm
    stays until an operator acknowledges it or the next commit is confirmed (`alarms.clear`)."""
    text = f"configuration rolled back to revision {revision}: {reason}"
    return alarms.raise_alarm(CONFIG_ROLLBACK, Severity.MAJOR, text)


@dataclass(frozen=True, slots=True)
class AlarmThresholds:
    high_load_raise: float = 0.8
    high_load_clear: float = 0.7
    mos_raise: float = 3.5
    mos_clear: float = 3.6
    expect_xdp: bool = False  # the box is meant to relay media in XDP: userspace is a fallback


class AlarmRules:
    def __init__(self, alarms: AlarmTable, thresholds: AlarmThresholds | None = None) -> None:
        self.alarms = alarms
        self.thresholds = thresholds or AlarmThresholds()

    def evaluate(self, snapshot: SbcSnapshot) -> None:
        status = snapshot.status
        if not snapshot.reachable or status is None:
            if snapshot.generation > 0:
                self.alarms.raise_alarm(
                    SBC_UNREACHABLE, Severity.CRITICAL, f"the SBC's control API does not answer: {snapshot.error}"
                )
            return
        self.alarms.clear(SBC_UNREACHABLE)
        self._high_load(status)
        self._media_quality(snapshot.calls)
        self._xdp_fallback(status)
        self._trunks(status)

    def _high_load(self, status: StatusReport) -> None:
        t = self.thresholds
        limit = status.max_calls
        if limit <= 0:
            return
        calls = status.active_calls
        if calls > t.high_load_raise * limit:
            self.alarms.raise_alarm(
                HIGH_LOAD,
                Severity.MAJOR,
                f"{calls} active calls of at most {limit} (above {t.high_load_raise:.0%})",
            )
        elif calls <= t.high_load_clear * limit:
            self.alarms.clear(HIGH_LOAD)

    def _media_quality(self, calls: tuple[CallSnapshot, ...]) -> None:
        t = self.thresholds
        mos = figures.mean_mos(calls)
        if mos is None or mos >= t.mos_clear:
            self.alarms.clear(MEDIA_QUALITY)
        elif mos < t.mos_raise:
            self.alarms.raise_alarm(
                MEDIA_QUALITY, Severity.MINOR, f"mean MOS of the active calls is {mos:.2f} (below {t.mos_raise:.2f})"
            )

    def _xdp_fallback(self, status: StatusReport) -> None:
        expected = self.thresholds.expect_xdp or status.dataplane_expected is DataplaneMode.XDP
        if expected and status.dataplane is DataplaneMode.USERSPACE:
            note = status.dataplane_note or "no reason given"
            self.alarms.raise_alarm(XDP_FALLBACK, Severity.MAJOR, f"media relayed in userspace, not XDP: {note}")
        else:
            self.alarms.clear(XDP_FALLBACK)

    def _trunks(self, status: StatusReport) -> None:
        seen = set()
        for trunk in status.trunks:
            name = trunk_alarm_name(trunk.name)
            seen.add(name)
            if trunk.state is TrunkState.DOWN:
                self.alarms.raise_alarm(name, Severity.MAJOR, f"trunk {trunk.name} ({trunk.address}) does not answer")
            elif trunk.state is TrunkState.UP:
                self.alarms.clear(name)
        for alarm in self.alarms.active():  # a trunk removed from the config is no longer down
            if trunk_of_alarm(alarm.name) is not None and alarm.name not in seen:
                self.alarms.clear(alarm.name)
