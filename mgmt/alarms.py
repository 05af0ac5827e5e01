"""The alarm table the management plane shares: SNMP (sbcAlarmTable and traps), REST and the web UI.

An alarm is identified by its name while it is active: raising it again returns the active one
unchanged (alarm sources re-evaluate every few seconds and must not flood managers with repeats).
Clearing it ends it; raising the same name later starts a new alarm with a new id. Listeners
(the SNMP notifier, the web UI's event stream) are called synchronously after each change, in the
order they subscribed; a listener that raises is logged and does not stop the others.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

log = logging.getLogger("mgmt.alarms")


class Severity(StrEnum):
    """ITU-T X.733 perceived severities (the ones an active alarm can have)."""

    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    WARNING = "warning"
    INDETERMINATE = "indeterminate"


@dataclass(frozen=True, slots=True)
class Alarm:
    id: int
    name: str
    severity: Severity
    text: str
    raised_at: float  # Unix time
    cleared_at: float | None = None

    @property
    def active(self) -> bool:
        return self.cleared_at is None


@dataclass(frozen=True, slots=True)
class AlarmRaised:
    alarm: Alarm


@dataclass(frozen=True, slots=True)
class AlarmCleared:
    alarm: Alarm  # with cleared_at set


AlarmEvent = AlarmRaised | AlarmCleared
AlarmListener = Callable[[AlarmEvent], None]


class AlarmTable:
    def __init__(self, clock: Callable[[], float] = time.time, history_size: int = 1000) -> None:
        self._clock = clock
        self._active: dict[str, Alarm] = {}
        self._history: deque[Alarm] = deque(maxlen=history_size)
        self._listeners: list[AlarmListener] = []
        self._next_id = 1
        self.generation = 0  # changes with every raise and clear: readers cache views keyed on it

    def raise_alarm(self, name: str, severity: Severity | str, text: str) -> Alarm:
        """Raise `name`, or return it unchanged if it is already active."""
        current = self._active.get(name)
        if current is not None:
            return current
        alarm = Alarm(self._next_id, name, Severity(severity), text, self._clock())
        self._next_id += 1
        self._active[name] = alarm
        self._history.append(alarm)
        self.generation += 1
        log.warning("alarm raised: %s (%s): %s", name, alarm.severity, text)
        self._notify(AlarmRaised(alarm))
        return alarm

    def clear(self, name: str) -> Alarm | None:
        """Clear `name` if it is active; returns the cleared alarm, None if it was not active."""
        current = self._active.pop(name, None)
        if current is None:
            return None
        cleared = dataclasses.replace(current, cleared_at=self._clock())
        # the history holds the raised alarm object: replace it by the cleared one
        for i, old in enumerate(self._history):
            if old.id == current.id:
                self._history[i] = cleared
                break
        self.generation += 1
        log.info("alarm cleared: %s", name)
        self._notify(AlarmCleared(cleared))
        return cleared

    def is_active(self, name: str) -> bool:
        return name in self._active

    def active(self) -> list[Alarm]:
        return sorted(self._active.values(), key=lambda a: a.id)

    def history(self) -> list[Alarm]:
        """Every alarm raised (bounded), oldest first; cleared ones carry `cleared_at`."""
        return list(self._history)

    def subscribe(self, listener: AlarmListener) -> Callable[[], None]:
        """Call `listener` after every raise and clear; returns the function that unsubscribes it."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _notify(self, event: AlarmEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # one broken listener must not silence the others
                log.exception("alarm listener %r failed", listener)
