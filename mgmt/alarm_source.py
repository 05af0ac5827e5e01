"""The shape of the alarm table the REST API reads (`mgmt.alarms.AlarmTable`, built with the SNMP agent).

Coded against a Protocol so the API does not depend on the SNMP side's internals; `NoAlarms` stands
in when that module is not there (a build without SNMP, or unit tests).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol


class Alarm(Protocol):
    @property
    def id(self) -> Any: ...
    @property
    def name(self) -> str: ...
    @property
    def severity(self) -> Any: ...
    @property
    def text(self) -> str: ...
    @property
    def raised_at(self) -> Any: ...


class AlarmSource(Protocol):
    def active(self) -> Sequence[Alarm]: ...


class NoAlarms:
    def active(self) -> Sequence[Alarm]:
        return ()


def alarm_json(alarm: Alarm) -> dict[str, Any]:
    raised = alarm.raised_at
    if isinstance(raised, datetime):
        raised = raised.timestamp()
    severity = alarm.severity
    return {
        "id": str(alarm.id),
        "name": str(alarm.name),
        "severity": str(getattr(severity, "value", severity)).lower() if not isinstance(severity, str) else severity,
        "text": str(alarm.text),
        "raised_at": float(raised) if isinstance(raised, int | float) else None,
    }


def default_alarm_source() -> AlarmSource:
    """The SNMP colleague's `mgmt.alarms.AlarmTable()` when it exists, else no alarms."""
    try:
        module = importlib.import_module("mgmt.alarms")
        source: AlarmSource = module.AlarmTable()
    except (ImportError, AttributeError, TypeError):
        return NoAlarms()
    return source
