"""hw/'s D-Bus clients against a private dbus-daemon with fake systemd services on the far side:
unit jobs followed to JobRemoved, reboot/power off/update as units, hostname, time zone, clock, NTP,
and errors mapped to kinds (policy denial by the daemon itself, unknown unit, NTP conflict, no bus)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from hw.dbus_client import SystemBus
from hw.hostnamed import Hostnamed
from hw.system import SystemServiceError
from hw.systemd_units import SystemdUnits
from hw.timedated import Timedated
from tests.integration.dbus_fakes import FakeSystem, dbus_daemon_available, fake_system, private_bus

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not dbus_daemon_available(), reason="dbus-daemon (Debian package dbus) is not installed"),
]
UNITS = ["sbc.service", "sbc-mgmt.service", "sbc-hw.service", "systemd-sysupdate.service"]


@pytest.fixture
def bus_address(tmp_path: Path) -> Iterator[str]:
    with private_bus(tmp_path) as address:
        yield address


def run(address: str, body: Callable[[FakeSystem, SystemBus], Awaitable[None]], *, timesyncd: bool = True) -> None:
    async def main() -> None:
        async with fake_system(address, UNITS, timesyncd=timesyncd) as fakes:
            bus = SystemBus(address, timeout_s=5)
            try:
                await body(fakes, bus)
            finally:
                bus.close()

    asyncio.run(asyncio.wait_for(main(), timeout=60))


def test_unit_jobs_are_followed_to_their_end(bus_address: str) -> None:
    async def body(fakes: FakeSystem, bus: SystemBus) -> None:
        units = SystemdUnits(bus)
        result = await units.restart_unit("sbc.service")
        assert (result.unit, result.result, result.ok) == ("sbc.service", "done", True)
        assert result.job.startswith("/org/freedesktop/systemd1/job/")
        stopped = await units.stop_unit("sbc-hw.service")
        assert stopped.ok
        state = await units.unit_state("sbc-hw.service")
        assert (state.load_state, state.active_state, state.sub_state) == ("loaded", "inactive", "dead")
        await units.start_unit("sbc-hw.service")
        assert (await units.unit_state("sbc-hw.service")).active_state == "active"
        fakes.systemd.fail.add("sbc-mgmt.service")
        failed = await units.restart_unit("sbc-mgmt.service")
        assert (failed.result, failed.ok) == ("failed", False)
        assert fakes.systemd.subscribers == 1  # Subscribe once per connection, not per job
        queued = await units.restart_unit("sbc-mgmt.service", wait=False)
        assert queued.result == "queued"
        assert fakes.systemd.calls[0] == ("RestartUnit", "sbc.service", "replace")

    run(bus_address, body)


def test_reboot_power_off_and_update_are_units(bus_address: str) -> None:
    async def body(fakes: FakeSystem, bus: SystemBus) -> None:
        units = SystemdUnits(bus)
        await units.reboot()
        await units.power_off()
        update = await units.start_update()
        assert update.ok and update.unit == "systemd-sysupdate.service"
        assert fakes.systemd.calls == [
            ("StartUnit", "reboot.target", "replace-irreversibly"),
            ("StartUnit", "poweroff.target", "replace-irreversibly"),
            ("StartUnit", "systemd-sysupdate.service", "replace"),
        ]

    run(bus_address, body)


def test_unknown_and_malformed_units(bus_address: str) -> None:
    async def body(fakes: FakeSystem, bus: SystemBus) -> None:
        units = SystemdUnits(bus)
        with pytest.raises(SystemServiceError) as err:
            await units.restart_unit("nope.service")
        assert err.value.kind == "not-found"
        assert "Unit nope.service not found" in err.value.detail
        with pytest.raises(SystemServiceError) as err:
            await units.unit_state("nope.service")
        assert err.value.kind == "not-found"
        for bad in ("sbc", "../etc/passwd.service", "a b.service", ""):
            with pytest.raises(SystemServiceError) as err:
                await units.restart_unit(bad)
            assert err.value.kind == "invalid"
        assert fakes.systemd.calls == []  # refused before anything was sent

    run(bus_address, body)


def test_hostname(bus_address: str) -> None:
    async def body(fakes: FakeSystem, bus: SystemBus) -> None:
        hostnamed = Hostnamed(bus)
        info = await hostnamed.get_hostname()
        assert (info.hostname, info.static_hostname) == ("sbc-0001", "sbc-0001")
        info = await hostnamed.set_hostname("branch-42.example")
        assert info.static_hostname == "branch-42.example" == fakes.hostnamed.static
        for bad in ("-x", "UPPER", "a_b", "x" * 65, "a..b", ""):
            with pytest.raises(SystemServiceError) as err:
                await hostnamed.set_hostname(bad)
            assert err.value.kind == "invalid"
        assert fakes.hostnamed.static == "branch-42.example"

    run(bus_address, body)


def test_time_zone_clock_and_ntp(bus_address: str) -> None:
    async def body(fakes: FakeSystem, bus: SystemBus) -> None:
        timedated = Timedated(bus)
        info = await timedated.get_time()
        assert (info.timezone, info.ntp_enabled, info.can_ntp, info.ntp_server) == ("UTC", True, True,
                                                                                  "ntp.example.net")  # fmt: skip
        assert info.system_ntp_servers == ("ntp.example.net",)
        await timedated.set_timezone("Europe/Berlin")
        assert (await timedated.get_time()).timezone == "Europe/Berlin"
        with pytest.raises(SystemServiceError) as err:
            await timedated.set_timezone("Mars/Olympus")
        assert err.value.kind == "invalid" and "Mars/Olympus" in err.value.detail
        target = 2_000_000_000 * 1_000_000
        with pytest.raises(SystemServiceError) as err:
            await timedated.set_time(target)
        assert err.value.kind == "conflict"
        await timedated.set_ntp(False)
        await timedated.set_time(target)
        info = await timedated.get_time()
        assert not info.ntp_enabled and abs(info.time_usec - target) < 5_000_000
        await timedated.set_ntp_servers(["ntp1.example.org", "192.0.2.123"])
        info = await timedated.get_time()
        assert info.ntp_servers == ("ntp1.example.org", "192.0.2.123") and info.ntp_server == "ntp1.example.org"
        with pytest.raises(SystemServiceError):
            await timedated.set_ntp_servers(["has space"])

    run(bus_address, body)


def test_time_without_timesyncd_has_no_server(bus_address: str) -> None:
    async def body(fakes: FakeSystem, bus: SystemBus) -> None:
        info = await Timedated(bus).get_time()
        assert info.ntp_server is None and info.ntp_servers == ()
        with pytest.raises(SystemServiceError) as err:
            await Timedated(bus).set_ntp_servers(["ntp.example.org"])
        assert err.value.kind == "unavailable"

    run(bus_address, body, timesyncd=False)


def test_the_bus_policy_denies_and_the_client_says_so(tmp_path: Path) -> None:
    deny = '<policy context="mandatory"><deny send_destination="org.freedesktop.hostname1" ' \
           'send_interface="org.freedesktop.hostname1" send_member="SetStaticHostname"/></policy>'  # fmt: skip
    with private_bus(tmp_path, deny) as address:

        async def body(fakes: FakeSystem, bus: SystemBus) -> None:
            with pytest.raises(SystemServiceError) as err:
                await Hostnamed(bus).set_hostname("allowed-name")
            assert err.value.kind == "denied"
            assert fakes.hostnamed.static == "sbc-0001"
            assert (await Hostnamed(bus).get_hostname()).hostname == "sbc-0001"  # reading is still allowed

        run(address, body)


def test_no_bus_is_unavailable(tmp_path: Path) -> None:
    async def main() -> None:
        bus = SystemBus(f"unix:path={tmp_path}/nothing-here", timeout_s=2)
        with pytest.raises(SystemServiceError) as err:
            await Hostnamed(bus).get_hostname()
        assert err.value.kind == "unavailable"

    asyncio.run(main())
