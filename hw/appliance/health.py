"""The boot health check (sbc-health.service, ordered before boot-complete.target).

A boot is healthy when `sbc.service` and `sbc-mgmt.service` are active, the SBC answers `status` on
its control socket with its dataplane running (XDP unless the unit asks for the userspace relay),
and the management HTTPS port accepts connections. Then boot-complete.target is reached and
systemd-bless-boot removes the boot counter: the slot is good.

When the boot is on trial (a freshly installed slot, still counting tries) and the check fails, it
reboots: systemd-boot tries again while tries are left and then boots the previous slot by itself.
A boot that is not on trial (the factory slot, or one already blessed) never reboots for a failed
check: there is nothing to fall back to, and a reboot loop would only hide the problem.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hw.firmware.osinfo import boot_on_trial

log = logging.getLogger(__name__)
UNITS = ("sbc.service", "sbc-mgmt.service")
ACTIVE_CONFIG = Path("/var/lib/sbc-config/sbc.yaml")


@dataclass(frozen=True, slots=True)
class Verdict:
    healthy: bool
    problems: tuple[str, ...] = ()
    final: bool = False  # no point waiting longer: a unit failed for good


def unit_states(units: tuple[str, ...] = UNITS) -> dict[str, str]:
    """ActiveState of each unit, asked of systemd over D-Bus with hw/'s client."""
    from hw.dbus_client import SystemBus
    from hw.systemd_units import SystemdUnits

    async def ask() -> dict[str, str]:
        bus = SystemBus()
        try:
            systemd = SystemdUnits(bus)
            return {unit: (await systemd.unit_state(unit)).active_state for unit in units}
        finally:
            bus.close()

    try:
        return asyncio.run(ask())
    except Exception as exc:  # the bus not up yet counts as "not up yet"
        log.info("cannot ask systemd over D-Bus yet: %s", exc)
        return {}


def reboot_now() -> None:
    """Reboot the way systemctl does (reboot.target, replace-irreversibly), over D-Bus."""
    from hw.dbus_client import SystemBus
    from hw.systemd_units import SystemdUnits

    async def go() -> None:
        bus = SystemBus()
        try:
            await SystemdUnits(bus).reboot()
        finally:
            bus.close()

    asyncio.run(go())


@dataclass
class Probe:
    """Where to look; each step is replaceable so the logic is tested without a booted box."""

    config_path: Path = ACTIVE_CONFIG
    states: Callable[[], dict[str, str]] = unit_states
    want_xdp: bool = field(default_factory=lambda: os.environ.get("SBC_DATAPLANE", "auto") != "userspace")

    def sbc_status(self) -> dict[str, object]:
        from sbc.config.loader import load_config
        from sbc.control.client import control_request

        config = load_config(self.config_path)
        return control_request(config.control_path, "status")

    def management_port(self) -> tuple[str, int]:
        from sbc.config.loader import load_config

        http = load_config(self.config_path).management.http
        host = str(http.address)
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        return host, http.port


def check(probe: Probe) -> Verdict:
    problems: list[str] = []
    final = False
    states = probe.states()
    for unit in UNITS:
        state = states.get(unit, "unknown")
        if state != "active":
            problems.append(f"{unit} is {state}")
            final = final or state == "failed"
    if problems:
        return Verdict(False, tuple(problems), final)
    try:
        status = probe.sbc_status()
    except Exception as exc:  # any failure to ask is "not up yet"
        return Verdict(False, (f"sbc does not answer on its control socket: {exc}",))
    mode = str(status.get("dataplane", ""))
    if probe.want_xdp and mode != "xdp":
        note = status.get("dataplane_note") or "no reason given"
        problems.append(f"the dataplane runs {mode or 'nothing'}, not XDP ({note})")
    try:
        host, port = probe.management_port()
        with socket.create_connection((host, port), timeout=5):
            pass
    except OSError as exc:
        problems.append(f"management HTTPS does not accept connections: {exc}")
    return Verdict(not problems, tuple(problems))


def wait_healthy(probe: Probe, timeout_s: float, interval_s: float = 3.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> Verdict:  # fmt: skip
    deadline = clock() + timeout_s
    while True:
        verdict = check(probe)
        if verdict.healthy or verdict.final or clock() >= deadline:
            return verdict
        sleep(interval_s)


def run_health_check(timeout_s: float, probe: Probe | None = None,
                     reboot: Callable[[], None] | None = None) -> int:  # fmt: skip
    """0 when healthy (the boot may be blessed); 1 when not, after asking for a reboot if on trial."""
    from hw.appliance.update import mark_good

    probe = probe or Probe()
    trial = boot_on_trial()
    verdict = wait_healthy(probe, timeout_s)
    if verdict.healthy:
        log.info("healthy: sbc, management and dataplane are up%s", f"; blessing {trial}" if trial else "")
        mark_good()
        return 0
    log.error("unhealthy: %s", "; ".join(verdict.problems))
    if trial:
        log.error("this boot of %s is on trial: rebooting so systemd-boot can fall back", trial)
        (reboot or reboot_now)()
    return 1
