"""What every API handler reaches through its `ApiCall`: the config store, users and sessions, the audit
log, the link to the SBC, the alarm table, and the parts only the running process has."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from mgmt.alarms import AlarmTable
from mgmt.audit import AuditLog
from mgmt.auth import Authenticator, UserStore
from mgmt.host import HostStats
from mgmt.monitor import Monitoring
from mgmt.sbc_link import SbcLink
from mgmt.store import ConfigStore
from mgmt.system_services import SystemServices


@dataclass
class MgmtState:
    store: ConfigStore
    users: UserStore
    auth: Authenticator
    audit: AuditLog
    sbc: SbcLink
    alarms: AlarmTable
    monitor: Monitoring | None = None  # the SBC poll, alarm rules and SNMP agent (None in unit tests)
    cdr_path: Path | None = None  # the SBC's call records (<state_dir>/cdr.jsonl)
    system: SystemServices | None = None  # hw/: systemd units, hostname, time (None: answers 503)
    host: HostStats = field(default_factory=HostStats)
    default_confirm_timeout_s: int = 300
    clock: Callable[[], float] = time.time
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    config_changed: asyncio.Event = field(default_factory=asyncio.Event)  # wakes the confirm timer


STATE = web.AppKey("state", MgmtState)
