"""`UnitControl` over D-Bus: org.freedesktop.systemd1's Manager (StartUnit, StopUnit, RestartUnit,
LoadUnit) and the unit objects' properties; jobs are followed to their end through the Manager's
JobRemoved signal, as systemctl does.

Reboot and power off start `reboot.target` / `poweroff.target` with the job mode
"replace-irreversibly" — what `systemctl reboot` does without logind: every service is stopped in
order (the SBC ends its calls' state cleanly) before the kernel reboots. The firmware update is a
unit too (`systemd-sysupdate.service` unless told otherwise), so nothing is shelled out.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from dbus_fast import Message

from hw.dbus_client import SystemBus
from hw.system import JobResult, SystemServiceError, UnitState, check_unit_name

SYSTEMD = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
UNIT = "org.freedesktop.systemd1.Unit"
JOB_TIMEOUT_S = 120.0
DEFAULT_UPDATE_UNIT = "systemd-sysupdate.service"
_REMEMBERED_JOBS = 256


class SystemdUnits:
    def __init__(self, bus: SystemBus, update_unit: str = DEFAULT_UPDATE_UNIT,
                 job_timeout_s: float = JOB_TIMEOUT_S) -> None:  # fmt: skip
        self.bus = bus
        self.update_unit = check_unit_name(update_unit)
        self.job_timeout_s = job_timeout_s
        self._subscribed = False
        self._waiting: dict[str, asyncio.Future[str]] = {}
        # A JobRemoved can arrive before StartUnit's reply names the job: keep recent results.
        self._finished: OrderedDict[str, str] = OrderedDict()

    async def _subscribe(self) -> None:
        if self._subscribed:
            return
        self._subscribed = True
        rule = f"type='signal',sender='{SYSTEMD}',path='{MANAGER_PATH}',interface='{MANAGER}',member='JobRemoved'"
        await self.bus.subscribe(rule, self._on_signal)
        self.bus.on_connect.append(self._manager_subscribe)
        before = self.bus.generation
        await self.bus.connection()
        if self.bus.generation == before:  # connected already: the hook did not run for this connection
            await self._manager_subscribe()

    async def _manager_subscribe(self) -> None:
        # systemd sends JobRemoved only while some client has called Subscribe().
        await self.bus.call(SYSTEMD, MANAGER_PATH, MANAGER, "Subscribe")

    def _on_signal(self, msg: Message) -> None:
        if msg.interface != MANAGER or msg.member != "JobRemoved" or len(msg.body) < 4:
            return
        _, job, _, result = msg.body[:4]
        waiter = self._waiting.pop(job, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(str(result))
            return
        self._finished[job] = str(result)
        while len(self._finished) > _REMEMBERED_JOBS:
            self._finished.popitem(last=False)

    async def _job(self, method: str, unit: str, mode: str, wait: bool) -> JobResult:
        check_unit_name(unit)
        if wait:
            await self._subscribe()
        (job,) = await self.bus.call(SYSTEMD, MANAGER_PATH, MANAGER, method, "ss", [unit, mode])
        job = str(job)
        if not wait:
            return JobResult(unit, job, "queued")
        if job in self._finished:
            return JobResult(unit, job, self._finished.pop(job))
        waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting[job] = waiter
        try:
            result = await asyncio.wait_for(waiter, timeout=self.job_timeout_s)
        except TimeoutError:
            raise SystemServiceError("failed", f"{method} {unit}: the job did not finish within "
                                               f"{self.job_timeout_s:.0f} s") from None  # fmt: skip
        finally:
            self._waiting.pop(job, None)
        return JobResult(unit, job, result)

    async def start_unit(self, unit: str, *, wait: bool = True) -> JobResult:
        return await self._job("StartUnit", unit, "replace", wait)

    async def stop_unit(self, unit: str, *, wait: bool = True) -> JobResult:
        return await self._job("StopUnit", unit, "replace", wait)

    async def restart_unit(self, unit: str, *, wait: bool = True) -> JobResult:
        return await self._job("RestartUnit", unit, "replace", wait)

    async def unit_state(self, unit: str) -> UnitState:
        check_unit_name(unit)
        (path,) = await self.bus.call(SYSTEMD, MANAGER_PATH, MANAGER, "LoadUnit", "s", [unit])
        props = await self.bus.get_all(SYSTEMD, str(path), UNIT)
        return UnitState(
            unit=unit,
            load_state=str(props.get("LoadState", "")),
            active_state=str(props.get("ActiveState", "")),
            sub_state=str(props.get("SubState", "")),
            description=str(props.get("Description", "")),
        )

    async def reboot(self) -> None:
        await self._job("StartUnit", "reboot.target", "replace-irreversibly", wait=False)

    async def power_off(self) -> None:
        await self._job("StartUnit", "poweroff.target", "replace-irreversibly", wait=False)

    async def start_update(self) -> JobResult:
        return await self.start_unit(self.update_unit)
