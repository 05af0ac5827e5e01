"""`HostnameControl` over D-Bus: org.freedesktop.hostname1 (systemd-hostnamed, started on demand by
the bus). The static hostname is the one that survives a reboot; hostnamed sets the kernel's from it."""

from __future__ import annotations

from hw.dbus_client import SystemBus
from hw.system import HostnameInfo, check_hostname

HOSTNAMED = "org.freedesktop.hostname1"
PATH = "/org/freedesktop/hostname1"


class Hostnamed:
    def __init__(self, bus: SystemBus) -> None:
        self.bus = bus

    async def get_hostname(self) -> HostnameInfo:
        props = await self.bus.get_all(HOSTNAMED, PATH, HOSTNAMED)
        return HostnameInfo(
            hostname=str(props.get("Hostname", "")),
            static_hostname=str(props.get("StaticHostname", "")),
            pretty_hostname=str(props.get("PrettyHostname", "")),
        )

    async def set_hostname(self, name: str) -> HostnameInfo:
        check_hostname(name)
        # interactive=false: polkit must allow it outright, never prompt
        await self.bus.call(HOSTNAMED, PATH, HOSTNAMED, "SetStaticHostname", "sb", [name, False])
        return await self.get_hostname()
