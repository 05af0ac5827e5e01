"""The watching half of `sbc mgmt`: the SBC poll, the alarm rules over it, and the SNMP agent.

`Monitoring` polls the SBC's control API every `management.poll_interval_s` (`SbcStateSource`), lets
`AlarmRules` raise and clear alarms in the shared `AlarmTable` (which the REST API, the web UI and
the SNMP agent read, and whose changes the agent sends as notifications), and runs the agent with the
`management.snmp` settings of the active config. When a commit changes those settings, the agent is
restarted with the new ones at the next poll (the file is the truth, also for edits made outside).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from mgmt.alarm_rules import AlarmRules
from mgmt.alarms import AlarmTable, Severity
from mgmt.snmp.agent import SnmpAgent, start_snmp_agent
from mgmt.snmp.source import SbcSnapshot, SbcStateSource
from sbc.config.loader import load_config
from sbc.config.model import SbcConfig, SnmpSettings
from sbc.yamlsource import ConfigError

log = logging.getLogger("mgmt.monitor")
RESTART_ATTEMPTS = 30
SNMP_DOWN = "snmp-agent-down"


class Monitoring:
    def __init__(self, config: SbcConfig, config_path: Path, alarms: AlarmTable) -> None:
        self.config_path = config_path
        self.alarms = alarms
        self.source = SbcStateSource(config.control_path, interval_s=float(config.management.poll_interval_s))
        self.rules = AlarmRules(alarms)
        self.settings = config.management.snmp
        self.agent: SnmpAgent | None = None
        self._mtime = self._stat()
        self._reloading: asyncio.Task[None] | None = None
        self.source.subscribe(self.rules.evaluate)
        self.source.subscribe(self._check_config)

    @property
    def snapshot(self) -> SbcSnapshot:
        return self.source.snapshot

    async def start(self) -> None:
        """Start the agent first (so coldStart goes out at once), then the poll. An agent that cannot
        start (its port taken) leaves the web UI and REST API running, with an alarm saying why."""
        await self._start_agent(self.settings, attempts=1)
        await self.source.start()

    async def _start_agent(self, settings: SnmpSettings, attempts: int) -> None:
        for attempt in range(attempts):
            try:
                self.agent = await start_snmp_agent(settings, self.source, self.alarms)
                self.alarms.clear(SNMP_DOWN)
                return
            except OSError as exc:  # after a restart the old transport releases its port a little later
                if attempt == attempts - 1:
                    log.error("the SNMP agent cannot start: %s", exc)
                    self.alarms.raise_alarm(SNMP_DOWN, Severity.MAJOR, f"the SNMP agent cannot start: {exc}")
                else:
                    await asyncio.sleep(0.1)

    async def close(self) -> None:
        if self._reloading is not None:
            self._reloading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reloading
        await self.source.close()
        if self.agent is not None:
            self.agent.close()
            self.agent = None

    def _stat(self) -> float:
        try:
            return self.config_path.stat().st_mtime
        except OSError:
            return 0.0

    def _check_config(self, _: SbcSnapshot) -> None:
        mtime = self._stat()
        if mtime == self._mtime or (self._reloading is not None and not self._reloading.done()):
            return
        self._mtime = mtime
        self._reloading = asyncio.get_running_loop().create_task(self._reconfigure(), name="mgmt-reconfigure")

    async def _reconfigure(self) -> None:
        try:
            config = await asyncio.to_thread(load_config, self.config_path)
        except (ConfigError, OSError) as exc:
            log.warning("active configuration not readable, monitoring keeps its settings: %s", exc)
            return
        self.source.interval_s = float(config.management.poll_interval_s)
        settings = config.management.snmp
        if settings == self.settings:
            return
        log.info("management.snmp changed: restarting the SNMP agent")
        if self.agent is not None:
            self.agent.close()
            self.agent = None
        self.settings = settings
        await self._start_agent(settings, attempts=RESTART_ATTEMPTS)
