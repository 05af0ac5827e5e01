"""System operations of the REST API over hw/'s fakes: roles, audit, confirmation, error mapping,
interfaces from sbc-hw's state file, and sbc-hw's alarms mirrored into the alarm table."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from hw.fakes import FakeHostname, FakeTime, FakeUnits
from mgmt.alarms import AlarmTable
from mgmt.routes import API
from mgmt.state import MgmtState
from mgmt.system_api import HW_MONITOR_DOWN, sync_hw_alarms
from mgmt.system_services import SystemServices
from tests.unit.mgmt.conftest import FakeSbc
from tests.unit.mgmt.test_api import Client, bearer, make_state, problem, serve


def system_state(tmp_path: Path) -> tuple[MgmtState, SystemServices]:
    state = make_state(tmp_path, FakeSbc())
    system = SystemServices(FakeUnits(), FakeHostname(), FakeTime(), hw_state_path=tmp_path / "hw" / "state.json",
                            factory_reset_marker=tmp_path / "var" / "request.json",
                            ntp_servers_file=tmp_path / "ntp.json", act_after_s=0.01)  # fmt: skip
    state.system = system
    return state, system


def run(tmp_path: Path, body: Any) -> None:
    async def main() -> None:
        state, system = system_state(tmp_path)
        async with serve(state) as client:
            await body(client, state, system)

    asyncio.run(main())


def audit_actions(state: MgmtState) -> list[tuple[str, str, str | None]]:
    return [(e["action"], e["outcome"], e["user"]) for e in state.audit.tail(100) if e["action"].startswith("system")]


def test_services_restart_and_roles(tmp_path: Path) -> None:
    async def body(client: Client, state: MgmtState, system: SystemServices) -> None:
        viewer, oper = bearer(state, "viewer"), bearer(state, "oper")
        resp = await client.get(f"{API}/system/services", headers=viewer)
        assert resp.status == 200
        assert [s["unit"] for s in (await resp.json())["services"]] == ["sbc.service", "sbc-mgmt.service",
                                                                      "sbc-hw.service"]  # fmt: skip
        await problem(await client.post(f"{API}/system/services/sbc.service/restart", headers=viewer), 403)
        resp = await client.post(f"{API}/system/services/sbc.service/restart", headers=oper)
        assert resp.status == 200 and (await resp.json())["result"] == "done"
        await problem(await client.post(f"{API}/system/services/ssh.service/restart", headers=oper), 404)
        assert isinstance(system.units, FakeUnits)
        system.units.fail.add("sbc-hw.service")
        body_ = await problem(await client.post(f"{API}/system/services/sbc-hw.service/restart", headers=oper), 502)
        assert "failed" in body_["detail"]
        resp = await client.post(f"{API}/system/services/sbc-mgmt.service/restart", headers=oper)
        assert resp.status == 202  # its own restart: answered first
        await asyncio.sleep(0.1)
        assert system.units.calls == [("restart", "sbc.service"), ("restart", "sbc-hw.service"),
                                      ("restart", "sbc-mgmt.service")]  # fmt: skip
        assert ("system.service.restart", "failed", "oper") in audit_actions(state)

    run(tmp_path, body)


def test_reboot_and_power_off_are_admin_only_and_audited(tmp_path: Path) -> None:
    async def body(client: Client, state: MgmtState, system: SystemServices) -> None:
        await problem(await client.post(f"{API}/system/reboot", headers=bearer(state, "oper")), 403)
        resp = await client.post(f"{API}/system/reboot", headers=bearer(state, "admin"))
        assert resp.status == 202
        resp = await client.post(f"{API}/system/poweroff", headers=bearer(state, "admin"))
        assert resp.status == 202
        await asyncio.sleep(0.1)
        assert isinstance(system.units, FakeUnits)
        assert system.units.calls == [("start", "reboot.target"), ("start", "poweroff.target")]
        assert [a for a in audit_actions(state) if a[0] in ("system.reboot", "system.poweroff")] == [
            ("system.reboot", "ok", "admin"), ("system.poweroff", "ok", "admin")]  # fmt: skip

    run(tmp_path, body)


def test_hostname(tmp_path: Path) -> None:
    async def body(client: Client, state: MgmtState, system: SystemServices) -> None:
        admin = bearer(state, "admin")
        resp = await client.get(f"{API}/system/hostname", headers=bearer(state, "viewer"))
        assert (await resp.json())["hostname"] == "sbc-0001"
        resp = await client.put(f"{API}/system/hostname", json={"hostname": "branch-7"}, headers=admin)
        assert resp.status == 200 and (await resp.json())["static_hostname"] == "branch-7"
        bad = await problem(await client.put(f"{API}/system/hostname", json={"hostname": "Bad_Name"}, headers=admin),
                            422)  # fmt: skip
        assert bad["field"] == "hostname"
        await problem(await client.put(f"{API}/system/hostname", json={"name": "x"}, headers=admin), 422)
        entry = next(e for e in state.audit.tail(100) if e["action"] == "system.hostname" and e["outcome"] == "ok")
        assert entry["target"] == "branch-7" and entry["previous"] == "sbc-0001"

    run(tmp_path, body)


def test_time_zone_ntp_and_clock(tmp_path: Path) -> None:
    async def body(client: Client, state: MgmtState, system: SystemServices) -> None:
        admin = bearer(state, "admin")
        resp = await client.get(f"{API}/system/time", headers=bearer(state, "viewer"))
        info = await resp.json()
        assert info["timezone"] == "UTC" and info["ntp"]["enabled"] is True and info["time"].endswith("Z")
        resp = await client.patch(f"{API}/system/time", headers=admin,
                                  json={"timezone": "Europe/Berlin", "ntp_servers": ["ntp1.example.org"]})
        info = await resp.json()
        assert resp.status == 200 and info["timezone"] == "Europe/Berlin"
        assert info["ntp"]["servers"] == ["ntp1.example.org"]
        assert json.loads((tmp_path / "ntp.json").read_text()) == {"ntp_servers": ["ntp1.example.org"]}
        bad = await problem(await client.patch(f"{API}/system/time", json={"timezone": "Mars/Base"}, headers=admin),
                            422)  # fmt: skip
        assert bad["field"] == "timezone"
        conflict = await problem(await client.patch(f"{API}/system/time", json={"time": "2030-01-01T00:00:00Z"},
                                                    headers=admin), 409)  # fmt: skip
        assert "ntp" in conflict["detail"]
        await problem(await client.patch(f"{API}/system/time", json={"time": "2030-01-01T00:00:00", "ntp": False},
                                         headers=admin), 422)  # fmt: skip
        resp = await client.patch(f"{API}/system/time", json={"time": "2030-01-01T00:00:00Z", "ntp": False},
                                  headers=admin)  # fmt: skip
        info = await resp.json()
        assert resp.status == 200 and info["ntp"]["enabled"] is False and info["time"].startswith("2030-01-01T00:00")
        await problem(await client.patch(f"{API}/system/time", json={}, headers=admin), 422)

    run(tmp_path, body)


def test_factory_reset_needs_admin_and_confirmation(tmp_path: Path) -> None:
    async def body(client: Client, state: MgmtState, system: SystemServices) -> None:
        marker = system.factory_reset_marker
        await problem(await client.post(f"{API}/system/factory-reset", json={"confirm": "factory-reset"},
                                        headers=bearer(state, "oper")), 403)  # fmt: skip
        admin = bearer(state, "admin")
        for wrong in ({}, {"confirm": "yes"}, {"confirm": True}):
            bad = await problem(await client.post(f"{API}/system/factory-reset", json=wrong, headers=admin), 422)
            assert bad["field"] == "confirm"
        assert not marker.exists()
        resp = await client.post(f"{API}/system/factory-reset", json={"confirm": "factory-reset", "reason": "RMA"},
                                 headers=admin)  # fmt: skip
        assert resp.status == 202
        request = json.loads(marker.read_text())
        assert (request["by"], request["via"], request["reason"]) == ("admin", "api", "RMA")
        await asyncio.sleep(0.1)
        assert isinstance(system.units, FakeUnits)
        assert system.units.calls == [("start", "reboot.target")]
        outcomes = [a[1] for a in audit_actions(state) if a[0] == "system.factory-reset"]
        assert outcomes == ["refused", "refused", "refused", "ok"]

    run(tmp_path, body)


def test_bus_unavailable_is_503(tmp_path: Path) -> None:
    async def body(client: Client, state: MgmtState, system: SystemServices) -> None:
        assert isinstance(system.units, FakeUnits)
        system.units.unavailable = True
        body_ = await problem(await client.get(f"{API}/system/services", headers=bearer(state, "viewer")), 503)
        assert "system bus" in body_["detail"]

    run(tmp_path, body)


HW_STATE = {
    "profile": "qemu",
    "missing": [],
    "interfaces": [{"name": "wan0", "role": "wan", "kernel_name": "wan0", "mac": "52:54:00:00:00:01",
                    "driver": "virtio_net", "path": "pci-0000:00:03.0", "carrier": False, "operstate": "down",
                    "speed_mbps": None, "mtu": 1500, "reason": "ports[0] path=pci-0000:00:03.0"}],
    "alarms": [{"name": "link-down:wan0", "severity": "critical", "text": "WAN interface wan0 has no carrier"}],
}  # fmt: skip


def test_interfaces_from_sbc_hw_and_from_sysfs(tmp_path: Path) -> None:
    async def body(client: Client, state: MgmtState, system: SystemServices) -> None:
        viewer = bearer(state, "viewer")
        resp = await client.get(f"{API}/system/interfaces", headers=viewer)
        data = await resp.json()
        assert resp.status == 200 and data["source"] == "sysfs" and "does not exist" in data["note"]
        system.hw_state_path.parent.mkdir(parents=True)
        system.hw_state_path.write_text(json.dumps({**HW_STATE, "updated_at": time.time()}))
        data = await (await client.get(f"{API}/system/interfaces", headers=viewer)).json()
        assert data["source"] == "sbc-hw" and data["interfaces"][0]["name"] == "wan0"
        assert data["alarms"][0]["name"] == "link-down:wan0"

    run(tmp_path, body)


def test_sbc_hw_alarms_are_mirrored_and_a_stale_monitor_is_an_alarm(tmp_path: Path) -> None:
    _, system = system_state(tmp_path)
    alarms = AlarmTable()
    assert sync_hw_alarms(system, alarms, seen_before=False) is False and alarms.active() == []
    system.hw_state_path.parent.mkdir(parents=True)
    system.hw_state_path.write_text(json.dumps({**HW_STATE, "updated_at": time.time()}))
    assert sync_hw_alarms(system, alarms, seen_before=False) is True
    assert [(a.name, a.severity.value) for a in alarms.active()] == [("link-down:wan0", "critical")]
    system.hw_state_path.write_text(json.dumps({**HW_STATE, "alarms": [], "updated_at": time.time()}))
    sync_hw_alarms(system, alarms, seen_before=True)
    assert alarms.active() == []
    system.hw_state_path.write_text(json.dumps({**HW_STATE, "updated_at": time.time() - 3600}))
    sync_hw_alarms(system, alarms, seen_before=True)
    assert [a.name for a in alarms.active()] == [HW_MONITOR_DOWN]
