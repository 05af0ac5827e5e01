"""Link alarms, sans-IO: from successive role maps (each built from a fresh look at the NICs), which
alarms to raise and clear.

- `link-down:<name>` (WAN: critical, LAN: major): a role interface without carrier (cable out, far end
  down, or set down), or gone (unplugged). Raised once it has lasted `raise_after_s` (a flap shorter
  than that is logged only), cleared as soon as the carrier is back.
- `nic-missing:<role>` (critical): a role the profile requires has no interface at all.

Names are stable: the management plane mirrors them into its alarm table (SNMP, REST, web UI).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from hw.nics import PortRole
from hw.roles import RoleMap

LINK_DOWN = "link-down:"
NIC_MISSING = "nic-missing:"
HW_ALARM_PREFIXES = (LINK_DOWN, NIC_MISSING)


class AlarmSink(Protocol):
    """What receives hardware alarms (mgmt's AlarmTable has this shape)."""

    def raise_alarm(self, name: str, severity: str, text: str) -> object: ...
    def clear(self, name: str) -> object: ...


@dataclass(frozen=True, slots=True)
class AlarmChange:
    name: str
    active: bool  # True: raise, False: clear
    severity: str = ""
    text: str = ""


@dataclass(slots=True)
class _Pending:
    due: float
    severity: str
    text: str


class LinkTracker:
    def __init__(self, raise_after_s: float = 2.0) -> None:
        self.raise_after_s = raise_after_s
        self.active: dict[str, AlarmChange] = {}
        self._pending: dict[str, _Pending] = {}
        self._known: dict[str, PortRole] = {}  # role interfaces seen, by name: vanishing is "down"

    def update(self, role_map: RoleMap, now: float) -> list[AlarmChange]:
        down: dict[str, tuple[str, str]] = {}
        up: set[str] = set()
        present: set[str] = set()
        for a in role_map.assignments:
            name = a.name
            present.add(name)
            self._known[name] = a.role
            severity = "critical" if a.role is PortRole.WAN else "major"
            if a.nic.link_up:
                up.add(LINK_DOWN + name)
            else:
                why = "is administratively down" if a.nic.carrier is None else "has no carrier"
                down[LINK_DOWN + name] = (severity, f"{a.role.value.upper()} interface {name} ({a.nic.driver or '?'}, "
                                                    f"{a.nic.path or a.nic.mac or '?'}) {why}")  # fmt: skip
        for name, role in self._known.items():
            if name not in present:
                severity = "critical" if role is PortRole.WAN else "major"
                down[LINK_DOWN + name] = (severity, f"{role.value.upper()} interface {name} is gone (unplugged?)")
        changes: list[AlarmChange] = []
        for alarm in up:
            self._pending.pop(alarm, None)
            if alarm in self.active:
                del self.active[alarm]
                changes.append(AlarmChange(alarm, False))
        for alarm, (severity, text) in down.items():
            if alarm not in self.active and alarm not in self._pending:
                self._pending[alarm] = _Pending(now + self.raise_after_s, severity, text)
        for role in PortRole:
            alarm = NIC_MISSING + role.value
            if role in role_map.missing and alarm not in self.active:
                text = f"no interface for the {role.value.upper()} role (profile {role_map.profile})"
                change = AlarmChange(alarm, True, "critical", text)
                self.active[alarm] = change
                changes.append(change)
            elif role not in role_map.missing and alarm in self.active:
                del self.active[alarm]
                changes.append(AlarmChange(alarm, False))
        return changes + self.tick(now)

    def tick(self, now: float) -> list[AlarmChange]:
        changes = []
        for alarm, pending in list(self._pending.items()):
            if now >= pending.due:
                del self._pending[alarm]
                change = AlarmChange(alarm, True, pending.severity, pending.text)
                self.active[alarm] = change
                changes.append(change)
        return changes

    def next_deadline(self) -> float | None:
        return min((p.due for p in self._pending.values()), default=None)


def apply_changes(changes: list[AlarmChange], sink: AlarmSink) -> None:
    for change in changes:
        if change.active:
            sink.raise_alarm(change.name, change.severity, change.text)
        else:
            sink.clear(change.name)
