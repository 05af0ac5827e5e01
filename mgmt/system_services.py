"""The box's own services the system API drives (systemd units, hostname, time over D-Bus on the box,
fakes in tests), and what it may restart."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from hw.factory_reset import MARKER
from hw.hw_state import STATE_PATH
from hw.system import HostnameControl, TimeControl, UnitControl

ACT_AFTER_S = 0.5  # the 202 answer leaves before the box (or this process) goes down


@dataclass
class SystemServices:
    units: UnitControl
    hostname: HostnameControl
    time: TimeControl
    services: tuple[str, ...] = ("sbc.service", "sbc-mgmt.service", "sbc-hw.service")  # what may be restarted
    own_unit: str = "sbc-mgmt.service"
    hw_state_path: Path = STATE_PATH
    factory_reset_marker: Path = MARKER
    ntp_servers_file: Path | None = None  # the servers set here, applied again at start
    act_after_s: float = ACT_AFTER_S
    background: set[asyncio.Task[None]] = field(default_factory=set)


def real_system_services(state_dir: Path) -> SystemServices:
    """systemd over the system bus; the connection opens on first use."""
    from hw.dbus_client import SystemBus
    from hw.hostnamed import Hostnamed
    from hw.systemd_units import SystemdUnits
    from hw.timedated import Timedated

    bus = SystemBus()
    return SystemServices(SystemdUnits(bus), Hostnamed(bus), Timedated(bus),
                          ntp_servers_file=state_dir / "ntp-servers.json")  # fmt: skip
