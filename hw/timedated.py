"""`TimeControl` over D-Bus: org.freedesktop.timedate1 (systemd-timedated: zone, clock, NTP on/off) and
org.freedesktop.timesync1 (systemd-timesyncd: which NTP servers). timesyncd not running is not an
error for reading: the answer then has no server."""

from __future__ import annotations

from hw.dbus_client import SystemBus
from hw.system import SystemServiceError, TimeInfo

TIMEDATED = "org.freedesktop.timedate1"
TIMEDATED_PATH = "/org/freedesktop/timedate1"
TIMESYNCD = "org.freedesktop.timesync1"
TIMESYNCD_PATH = "/org/freedesktop/timesync1"
TIMESYNCD_MANAGER = "org.freedesktop.timesync1.Manager"
MAX_NTP_SERVERS = 8


def _strings(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


class Timedated:
    def __init__(self, bus: SystemBus) -> None:
        self.bus = bus

    async def get_time(self) -> TimeInfo:
        props = await self.bus.get_all(TIMEDATED, TIMEDATED_PATH, TIMEDATED)
        try:
            sync = await self.bus.get_all(TIMESYNCD, TIMESYNCD_PATH, TIMESYNCD_MANAGER)
        except SystemServiceError as exc:
            if exc.kind != "unavailable":
                raise
            sync = None
        return TimeInfo(
            timezone=str(props.get("Timezone", "")),
            time_usec=int(props.get("TimeUSec", 0)),
            ntp_enabled=bool(props.get("NTP", False)),
            ntp_synchronized=bool(props.get("NTPSynchronized", False)),
            can_ntp=bool(props.get("CanNTP", False)),
            rtc_in_local_time=bool(props.get("LocalRTC", False)),
            ntp_server=(str(sync.get("ServerName", "")) or "") if sync is not None else None,
            ntp_servers=_strings(sync.get("RuntimeNTPServers")) if sync else (),
            system_ntp_servers=_strings(sync.get("SystemNTPServers")) if sync else (),
            fallback_ntp_servers=_strings(sync.get("FallbackNTPServers")) if sync else (),
        )

    async def set_timezone(self, timezone: str) -> None:
        if not timezone or len(timezone) > 64 or ".." in timezone or timezone.startswith("/"):
            raise SystemServiceError("invalid", f"{timezone!r} is not a time zone name (like Europe/Berlin)")
        await self.bus.call(TIMEDATED, TIMEDATED_PATH, TIMEDATED, "SetTimezone", "sb", [timezone, False])

    async def set_ntp(self, enabled: bool) -> None:
        await self.bus.call(TIMEDATED, TIMEDATED_PATH, TIMEDATED, "SetNTP", "bb", [enabled, False])

    async def set_time(self, usec_utc: int) -> None:
        if usec_utc <= 0:
            raise SystemServiceError("invalid", "the time is microseconds since 1970 (UTC), above 0")
        await self.bus.call(TIMEDATED, TIMEDATED_PATH, TIMEDATED, "SetTime", "xbb", [usec_utc, False, False])

    async def set_ntp_servers(self, servers: list[str]) -> None:
        if len(servers) > MAX_NTP_SERVERS:
            raise SystemServiceError("invalid", f"at most {MAX_NTP_SERVERS} NTP servers")
        for server in servers:
            if not server or len(server) > 253 or any(c.isspace() for c in server):
                raise SystemServiceError("invalid", f"{server!r} is not a host name or address")
        await self.bus.call(TIMESYNCD, TIMESYNCD_PATH, TIMESYNCD_MANAGER, "SetRuntimeNTPServers", "as", [servers])
