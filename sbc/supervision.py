"""`sbc run` under systemd: READY=1 once listening, STATUS= lines, and watchdog pets from the event loop.

The pet is a timer callback of the SBC's own asyncio loop, sent only when the health check passes:
a loop blocked in a call, or a core whose timers stopped firing, stops petting, and systemd
restarts the service after `WatchdogSec=` (rootfs/usr/lib/systemd/system/sbc.service). Without
`NOTIFY_SOCKET` (a developer's `make run`) nothing is sent and nothing is scheduled.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping

from sbc.sd_notify import Health, NotifySettings, SdNotifier, WatchdogPolicy

Emit = Callable[..., None]


class Supervision:
    def __init__(
        self,
        health: Callable[[], Health],
        status: Callable[[], str],
        emit: Emit,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = NotifySettings.from_environment(env, os.getpid())
        self.notifier = SdNotifier.from_settings(self.settings)
        self.policy = WatchdogPolicy()
        self._health = health
        self._status = status
        self._emit = emit
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def started(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.notifier.ready(self._status())
        interval = self.settings.pet_interval_s
        if interval is not None:
            self._emit("info", "watchdog.enabled", timeout_s=self.settings.watchdog_s, pet_every_s=interval)
            self._pet()

    def _pet(self) -> None:
        assert self._loop is not None
        health = self._health()
        pet, change = self.policy.decide(health)
        if change is not None:
            if pet:
                self._emit("info", "watchdog.resumed")
            else:
                self._emit("error", "watchdog.withheld", reason=health.reason, timeout_s=self.settings.watchdog_s)
        if pet:
            self.notifier.watchdog()
            self.notifier.status(self._status())
        else:
            self.notifier.status(f"unhealthy, watchdog not petted: {health.reason}")
        interval = self.settings.pet_interval_s
        assert interval is not None
        self._handle = self._loop.call_later(interval, self._pet)

    def stopping(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.notifier.stopping()
        self.notifier.close()
