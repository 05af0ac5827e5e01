"""The monitoring half of sbc mgmt without an SBC: an SNMP port that is taken raises an alarm instead of
stopping the web UI, and a commit that changes management.snmp restarts the agent with the new settings."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from mgmt.alarms import AlarmTable
from mgmt.monitor import SNMP_DOWN, Monitoring
from sbc.config.loader import load_config
from tests.unit.mgmt.conftest import BASE_CONFIG


def write_config(path: Path, port: int, community: str | None = None) -> Path:
    v2c = f"\n    v2c_community: {community}" if community else ""
    path.write_text(
        BASE_CONFIG.replace("sbc:\n", f"sbc:\n  state_dir: {path.parent / 'state'}\n")
        + "management:\n  poll_interval_s: 1\n  snmp:\n    address: 127.0.0.1\n"
        + f"    port: {port}\n    v3_users: [{{name: u, auth_key: k1234567, priv_key: p1234567}}]{v2c}\n"
    )
    return path


def test_a_taken_snmp_port_is_an_alarm_not_a_crash(tmp_path: Path) -> None:
    async def main() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
            taken.bind(("127.0.0.1", 0))
            path = write_config(tmp_path / "sbc.yaml", taken.getsockname()[1])
            alarms = AlarmTable()
            monitor = Monitoring(load_config(path), path, alarms)
            await monitor.start()
            try:
                assert monitor.agent is None
                assert alarms.is_active(SNMP_DOWN) and "cannot start" in alarms.active()[0].text
                assert not monitor.snapshot.reachable  # the poll runs all the same (no SBC here)
            finally:
                await monitor.close()

    asyncio.run(main())


def test_changed_snmp_settings_restart_the_agent(tmp_path: Path) -> None:
    async def main() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        path = write_config(tmp_path / "sbc.yaml", port)
        monitor = Monitoring(load_config(path), path, AlarmTable())
        await monitor.start()
        try:
            first = monitor.agent
            assert first is not None and first.enabled and first.settings.v2c_community is None
            await asyncio.sleep(0.05)
            write_config(path, port, community="now-on")
            for _ in range(60):  # the next polls (1 s) notice the file
                await asyncio.sleep(0.1)
                if monitor.agent is not first and monitor.agent is not None:
                    break
            assert monitor.agent is not None and monitor.agent.settings.v2c_community == "now-on"
        finally:
            await monitor.close()

    asyncio.run(main())
