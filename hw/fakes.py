"""In-memory stand-ins for the `hw.system` interfaces, for unit tests of what builds on them (the
management API). They validate like the real clients and record what was asked."""

from __future__ import annotations

import time

from hw.system import (
    HostnameInfo,
    JobResult,
    SystemServiceError,
    TimeInfo,
    UnitState,
    check_hostname,
    check_unit_name,
)


class FakeUnits:
    def __init__(self, units: list[str] | None = None, update_unit: str = "systemd-sysupdate.service") -> None:
        self.states = {u: "active" for u in (units or ["sbc.service", "sbc-mgmt.service", "sbc-hw.service"])}
        self.update_unit = update_unit
        self.calls: list[tuple[str, str]] = []
        self.fail: set[str] = set()
        self.unavailable = False

    def _check(self, unit: str) -> None:
        if self.unavailable:
            raise SystemServiceError("unavailable", "the system bus does not answer (fake)")
        check_unit_name(unit)
        if unit not in self.states and not unit.endswith(".target") and unit != self.update_unit:
            raise SystemServiceError("not-found", f"Unit {unit} not found.")

    def _job(self, method: str, unit: str, wait: bool, active: str) -> JobResult:
        self._check(unit)
        self.calls.append((method, unit))
        if unit in self.fail:
            self.states[unit] = "failed"
            return JobResult(unit, "/job/1", "failed")
        if unit in self.states:
            self.states[unit] = active
        return JobResult(unit, "/job/1", "done" if wait else "queued")

    async def start_unit(self, unit: str, *, wait: bool = True) -> JobResult:
        return self._job("start", unit, wait, "active")

    async def stop_unit(self, unit: str, *, wait: bool = True) -> JobResult:
        return self._job("stop", unit, wait, "inactive")

    async def restart_unit(self, unit: str, *, wait: bool = True) -> JobResult:
        return self._job("restart", unit, wait, "active")

    async def unit_state(self, unit: str) -> UnitState:
        self._check(unit)
        active = self.states.get(unit, "inactive")
        sub = {"active": "running", "failed": "failed"}.get(active, "dead")
        return UnitState(unit, "loaded", active, sub, f"fake {unit}")

    async def reboot(self) -> None:
        self._job("start", "reboot.target", False, "active")

    async def power_off(self) -> None:
        self._job("start", "poweroff.target", False, "active")

    async def start_update(self) -> JobResult:
        return self._job("start", self.update_unit, True, "inactive")


class FakeHostname:
    def __init__(self, hostname: str = "sbc-0001") -> None:
        self.info = HostnameInfo(hostname, hostname)

    async def get_hostname(self) -> HostnameInfo:
        return self.info

    async def set_hostname(self, name: str) -> HostnameInfo:
        check_hostname(name)
        self.info = HostnameInfo(name, name)
        return self.info


class FakeTime:
    ZONES = ("UTC", "Europe/Berlin", "America/New_York")

    def __init__(self) -> None:
        self.timezone = "UTC"
        self.ntp = True
        self.offset_usec = 0
        self.servers: list[str] = []

    async def get_time(self) -> TimeInfo:
        return TimeInfo(
            timezone=self.timezone,
            time_usec=int(time.time() * 1_000_000) + self.offset_usec,
            ntp_enabled=self.ntp,
            ntp_synchronized=self.ntp,
            can_ntp=True,
            rtc_in_local_time=False,
            ntp_server=self.servers[0] if self.servers else "ntp.example.net",
            ntp_servers=tuple(self.servers),
        )

    async def set_timezone(self, timezone: str) -> None:
        if timezone not in self.ZONES:
            raise SystemServiceError("invalid", f"Invalid time zone '{timezone}'")
        self.timezone = timezone

    async def set_ntp(self, enabled: bool) -> None:
        self.ntp = enabled

    async def set_time(self, usec_utc: int) -> None:
        if self.ntp:
            raise SystemServiceError("conflict", "Automatic time synchronization is enabled")
        self.offset_usec = usec_utc - int(time.time() * 1_000_000)

    async def set_ntp_servers(self, servers: list[str]) -> None:
        self.servers = list(servers)
