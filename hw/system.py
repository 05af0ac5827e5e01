"""The interfaces the management API (and `sbc-hw`) use to operate the box: systemd units, reboot and
power off, the firmware update trigger, hostname, time and NTP. Real implementations talk D-Bus to
systemd (`hw.systemd_units`, `hw.hostnamed`, `hw.timedated`); `hw.fakes` has in-memory ones.

Every call is async and raises `SystemServiceError` with a `kind` that maps onto an HTTP answer:
`unavailable` (503: no bus, service not running), `denied` (403: polkit/bus policy said no),
`invalid` (422: the service refused the value), `not-found` (404: no such unit), `conflict` (409:
e.g. setting the clock while NTP is on), `failed` (502: the job or call failed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Protocol

ErrorKind = Literal["unavailable", "denied", "invalid", "not-found", "conflict", "failed"]

UNIT_NAME_RE = re.compile(r"^[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]*)?\.(service|target|timer|socket|path|mount)$")
HOSTNAME_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
MAX_HOSTNAME = 64  # HOST_NAME_MAX on Linux


class SystemServiceError(Exception):
    def __init__(self, kind: ErrorKind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def check_unit_name(unit: str) -> str:
    if len(unit) > 256 or not UNIT_NAME_RE.match(unit):
        raise SystemServiceError("invalid", f"{unit!r} is not a systemd unit name")
    return unit


def check_hostname(name: str) -> str:
    """A static hostname: RFC 1123 labels, lower case, at most 64 characters (no trailing dot)."""
    if not name or len(name) > MAX_HOSTNAME:
        raise SystemServiceError("invalid", f"a hostname has 1-{MAX_HOSTNAME} characters")
    for label in name.split("."):
        if not HOSTNAME_LABEL_RE.match(label):
            raise SystemServiceError(
                "invalid", f"{name!r}: each dot-separated label is a-z, 0-9 and inner hyphens, 1-63 characters"
            )
    return name


@dataclass(frozen=True, slots=True)
class JobResult:
    unit: str
    job: str  # the job's object path ("" when none was queued)
    result: str  # systemd's: done, canceled, timeout, failed, dependency, skipped; "queued": not waited for

    @property
    def ok(self) -> bool:
        return self.result in ("done", "queued", "skipped")


@dataclass(frozen=True, slots=True)
class UnitState:
    unit: str
    load_state: str  # loaded, not-found, masked...
    active_state: str  # active, inactive, failed, activating, deactivating, reloading
    sub_state: str  # running, exited, dead...
    description: str = ""


class UnitControl(Protocol):
    async def start_unit(self, unit: str, *, wait: bool = True) -> JobResult: ...
    async def stop_unit(self, unit: str, *, wait: bool = True) -> JobResult: ...
    async def restart_unit(self, unit: str, *, wait: bool = True) -> JobResult:
        """`wait=False` queues the job and returns at once (restarting one's own service)."""
        ...

    async def unit_state(self, unit: str) -> UnitState: ...
    async def reboot(self) -> None:
        """A clean reboot: reboot.target, services stopped in order (like `systemctl reboot`)."""
        ...

    async def power_off(self) -> None: ...
    async def start_update(self) -> JobResult:
        """Start the unit that runs systemd-sysupdate (the firmware update), waiting for its job."""
        ...


@dataclass(frozen=True, slots=True)
class HostnameInfo:
    hostname: str  # the kernel's (transient) hostname
    static_hostname: str  # /etc/hostname
    pretty_hostname: str = ""


class HostnameControl(Protocol):
    async def get_hostname(self) -> HostnameInfo: ...
    async def set_hostname(self, name: str) -> HostnameInfo:
        """Set the static hostname (and so the transient one); validated by `check_hostname` first."""
        ...


@dataclass(frozen=True, slots=True)
class TimeInfo:
    timezone: str
    time_usec: int  # UTC, microseconds since the epoch, as the box sees it
    ntp_enabled: bool
    ntp_synchronized: bool
    can_ntp: bool
    rtc_in_local_time: bool
    ntp_server: str | None = None  # the server timesyncd uses now; None: timesyncd not reachable
    ntp_servers: tuple[str, ...] = ()  # runtime servers set through `set_ntp_servers`
    system_ntp_servers: tuple[str, ...] = ()  # from timesyncd.conf
    fallback_ntp_servers: tuple[str, ...] = ()


class TimeControl(Protocol):
    async def get_time(self) -> TimeInfo: ...
    async def set_timezone(self, timezone: str) -> None: ...
    async def set_ntp(self, enabled: bool) -> None: ...
    async def set_time(self, usec_utc: int) -> None:
        """Set the clock; refused with `conflict` while NTP is on (turn it off first)."""
        ...

    async def set_ntp_servers(self, servers: list[str]) -> None:
        """timesyncd's runtime servers (they win over timesyncd.conf until reboot: the caller keeps
        them on the state partition and sets them again at start)."""
        ...
