"""A private dbus-daemon and Python stand-ins for the systemd services hw/ talks to.

Real D-Bus in between (the daemon routes, authenticates, applies its policy, starts nothing): only
the far side is a fake, implementing the subset of org.freedesktop.systemd1, hostname1, timedate1
and timesync1 that hw/ calls, with the signatures and error names of the systemd manual pages.
The real services are exercised by the image tests in QEMU.
"""

# No `from __future__ import annotations`: dbus-fast reads the D-Bus signatures from the annotations.
# Method and property names are D-Bus member names (CamelCase).
import asyncio
import contextlib
import shutil
import subprocess
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from dbus_fast import BusType, DBusError
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusBool, DBusInt64, DBusObjectPath, DBusSignature, DBusStr, DBusUInt64
from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property, dbus_signal

from tests.processes import stop_process

DBusStrList = Annotated[list[str], DBusSignature("as")]
JobRemovedBody = Annotated[tuple[int, str, str, str], DBusSignature("uoss")]


def dbus_daemon_available() -> bool:
    return shutil.which("dbus-daemon") is not None


@contextlib.contextmanager
def private_bus(directory: Path, extra_policy: str = "") -> Iterator[str]:
    """A dbus-daemon of its own on a unix socket in `directory`; yields its address."""
    socket_path = directory / "bus.sock"
    config = directory / "bus.conf"
    config.write_text(
        textwrap.dedent(
            f"""\
            <!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
             "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
            <busconfig>
              <type>system</type>
              <listen>unix:path={socket_path}</listen>
              <auth>EXTERNAL</auth>
              <policy context="default">
                <allow user="*"/>
                <allow own="*"/>
                <allow send_destination="*" eavesdrop="false"/>
                <allow receive_sender="*"/>
              </policy>
              {extra_policy}
            </busconfig>
            """
        )
    )
    proc = subprocess.Popen(["dbus-daemon", "--nofork", "--nopidfile", f"--config-file={config}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 10
    while not socket_path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"dbus-daemon did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
        time.sleep(0.02)
    try:
        yield f"unix:path={socket_path}"
    finally:
        stop_process(proc, timeout=5)


def unit_path(unit: str) -> str:
    """systemd's object path escaping: every byte outside [A-Za-z0-9] as _XX."""
    return "/org/freedesktop/systemd1/unit/" + "".join(c if c.isalnum() else f"_{ord(c):02x}" for c in unit)


class FakeUnit(ServiceInterface):
    def __init__(self, name: str, active: str = "active", sub: str = "running") -> None:
        super().__init__("org.freedesktop.systemd1.Unit")
        self.unit_name = name  # not `name`: ServiceInterface.name is the interface's
        self.active = active
        self.sub = sub

    @dbus_property(access=PropertyAccess.READ)
    def Id(self) -> DBusStr:
        return self.unit_name

    @dbus_property(access=PropertyAccess.READ)
    def LoadState(self) -> DBusStr:
        return "loaded"

    @dbus_property(access=PropertyAccess.READ)
    def ActiveState(self) -> DBusStr:
        return self.active

    @dbus_property(access=PropertyAccess.READ)
    def SubState(self) -> DBusStr:
        return self.sub

    @dbus_property(access=PropertyAccess.READ)
    def Description(self) -> DBusStr:
        return f"fake {self.unit_name}"


class FakeSystemd(ServiceInterface):
    """org.freedesktop.systemd1.Manager: jobs finish (JobRemoved) a moment after they are queued;
    `fail` names units whose jobs end "failed"; `calls` records (method, unit, mode)."""

    def __init__(self, bus: MessageBus, units: list[str]) -> None:
        super().__init__("org.freedesktop.systemd1.Manager")
        self.bus = bus
        self.units = {u: FakeUnit(u) for u in units}
        self.calls: list[tuple[str, str, str]] = []
        self.fail: set[str] = set()
        self.subscribers = 0
        self.job_delay_s = 0.05
        self._next_job = 1
        for name, unit in self.units.items():
            bus.export(unit_path(name), unit)

    def _queue(self, method: str, unit: str, mode: str) -> str:
        if unit not in self.units and not unit.endswith(".target"):
            raise DBusError("org.freedesktop.systemd1.NoSuchUnit", f"Unit {unit} not found.")
        self.calls.append((method, unit, mode))
        job_id = self._next_job
        self._next_job += 1
        path = f"/org/freedesktop/systemd1/job/{job_id}"
        result = "failed" if unit in self.fail else "done"

        def finish() -> None:
            if unit in self.units:
                state = self.units[unit]
                state.active, state.sub = ("failed", "failed") if result == "failed" else (
                    ("inactive", "dead") if method == "StopUnit" else ("active", "running"))  # fmt: skip
            self.JobRemoved(job_id, path, unit, result)

        asyncio.get_running_loop().call_later(self.job_delay_s, finish)
        return path

    @dbus_method()
    def StartUnit(self, name: DBusStr, mode: DBusStr) -> DBusObjectPath:
        return self._queue("StartUnit", name, mode)

    @dbus_method()
    def StopUnit(self, name: DBusStr, mode: DBusStr) -> DBusObjectPath:
        return self._queue("StopUnit", name, mode)

    @dbus_method()
    def RestartUnit(self, name: DBusStr, mode: DBusStr) -> DBusObjectPath:
        return self._queue("RestartUnit", name, mode)

    @dbus_method()
    def LoadUnit(self, name: DBusStr) -> DBusObjectPath:
        if name not in self.units:
            raise DBusError("org.freedesktop.systemd1.NoSuchUnit", f"Unit {name} not found.")
        return unit_path(name)

    @dbus_method()
    def Subscribe(self) -> None:
        self.subscribers += 1

    @dbus_signal()
    def JobRemoved(self, job_id: int, job: str, unit: str, result: str) -> JobRemovedBody:
        return (job_id, job, unit, result)


class FakeHostnamed(ServiceInterface):
    def __init__(self, hostname: str = "sbc-0001") -> None:
        super().__init__("org.freedesktop.hostname1")
        self.hostname = hostname
        self.static = hostname

    @dbus_property(access=PropertyAccess.READ)
    def Hostname(self) -> DBusStr:
        return self.hostname

    @dbus_property(access=PropertyAccess.READ)
    def StaticHostname(self) -> DBusStr:
        return self.static

    @dbus_property(access=PropertyAccess.READ)
    def PrettyHostname(self) -> DBusStr:
        return ""

    @dbus_method()
    def SetStaticHostname(self, name: DBusStr, interactive: DBusBool) -> None:
        if not name or name.startswith("-") or len(name) > 64:
            raise DBusError("org.freedesktop.DBus.Error.InvalidArgs", f"Invalid static hostname '{name}'")
        self.static = name
        self.hostname = name


class FakeTimedated(ServiceInterface):
    ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo")

    def __init__(self) -> None:
        super().__init__("org.freedesktop.timedate1")
        self.timezone = "UTC"
        self.ntp = True
        self.clock_offset_usec = 0

    @dbus_property(access=PropertyAccess.READ)
    def Timezone(self) -> DBusStr:
        return self.timezone

    @dbus_property(access=PropertyAccess.READ)
    def LocalRTC(self) -> DBusBool:
        return False

    @dbus_property(access=PropertyAccess.READ)
    def CanNTP(self) -> DBusBool:
        return True

    @dbus_property(access=PropertyAccess.READ)
    def NTP(self) -> DBusBool:
        return self.ntp

    @dbus_property(access=PropertyAccess.READ)
    def NTPSynchronized(self) -> DBusBool:
        return self.ntp

    @dbus_property(access=PropertyAccess.READ)
    def TimeUSec(self) -> DBusUInt64:
        return int(time.time() * 1_000_000) + self.clock_offset_usec

    @dbus_method()
    def SetTimezone(self, timezone: DBusStr, interactive: DBusBool) -> None:
        if timezone not in self.ZONES:
            raise DBusError("org.freedesktop.DBus.Error.InvalidArgs", f"Invalid time zone '{timezone}'")
        self.timezone = timezone

    @dbus_method()
    def SetNTP(self, use_ntp: DBusBool, interactive: DBusBool) -> None:
        self.ntp = use_ntp

    @dbus_method()
    def SetTime(self, usec_utc: DBusInt64, relative: DBusBool, interactive: DBusBool) -> None:
        if self.ntp:
            raise DBusError("org.freedesktop.timedate1.AutomaticTimeSyncEnabled", "Automatic time sync is enabled")
        self.clock_offset_usec = usec_utc - int(time.time() * 1_000_000)


class FakeTimesyncd(ServiceInterface):
    def __init__(self) -> None:
        super().__init__("org.freedesktop.timesync1.Manager")
        self.runtime: list[str] = []

    @dbus_property(access=PropertyAccess.READ)
    def ServerName(self) -> DBusStr:
        return self.runtime[0] if self.runtime else "ntp.example.net"

    @dbus_property(access=PropertyAccess.READ)
    def RuntimeNTPServers(self) -> DBusStrList:
        return self.runtime

    @dbus_property(access=PropertyAccess.READ)
    def SystemNTPServers(self) -> DBusStrList:
        return ["ntp.example.net"]

    @dbus_property(access=PropertyAccess.READ)
    def FallbackNTPServers(self) -> DBusStrList:
        return ["0.debian.pool.ntp.org"]

    @dbus_method()
    def SetRuntimeNTPServers(self, servers: DBusStrList) -> None:
        self.runtime = list(servers)


@dataclass
class FakeSystem:
    """The four fake services, each on its own connection with its well-known name."""

    systemd: FakeSystemd
    hostnamed: FakeHostnamed
    timedated: FakeTimedated
    timesyncd: FakeTimesyncd | None
    buses: list[MessageBus] = field(default_factory=list)


@contextlib.asynccontextmanager
async def fake_system(address: str, units: list[str], *, timesyncd: bool = True) -> AsyncIterator[FakeSystem]:
    buses: list[MessageBus] = []

    async def own(name: str, path: str, iface: ServiceInterface | None = None) -> MessageBus:
        bus = await MessageBus(bus_address=address, bus_type=BusType.SYSTEM).connect()
        if iface is not None:
            bus.export(path, iface)
        await bus.request_name(name)
        buses.append(bus)
        return bus

    systemd_bus = await MessageBus(bus_address=address, bus_type=BusType.SYSTEM).connect()
    buses.append(systemd_bus)
    systemd = FakeSystemd(systemd_bus, units)
    systemd_bus.export("/org/freedesktop/systemd1", systemd)
    await systemd_bus.request_name("org.freedesktop.systemd1")
    hostnamed = FakeHostnamed()
    await own("org.freedesktop.hostname1", "/org/freedesktop/hostname1", hostnamed)
    timedated = FakeTimedated()
    await own("org.freedesktop.timedate1", "/org/freedesktop/timedate1", timedated)
    sync = FakeTimesyncd() if timesyncd else None
    if sync is not None:
        await own("org.freedesktop.timesync1", "/org/freedesktop/timesync1", sync)
    try:
        yield FakeSystem(systemd, hostnamed, timedated, sync, buses)
    finally:
        for bus in buses:
            bus.disconnect()
