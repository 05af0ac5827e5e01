"""Run the SNMP agent on its own, beside a running SBC: `python -m mgmt.snmp --config FILE`.

The management process normally hosts the agent (`start_snmp_agent`); this runner is the same agent,
data source and alarm rules in a process of their own, for tests and for boxes without the web UI.
FILE (YAML):

    control_socket: /run/sbc/control.sock   # the SBC's control API
    poll_interval_s: 5
    snmp: {address: 127.0.0.1, port: 16161, v3_users: [...], trap_targets: [...]}   # SnmpSettings
    alarms: {max_calls: 2000, expect_xdp: false}                                     # AlarmThresholds

It prints one line `ready engine_id=HEX address=ADDR:PORT` on stdout once it answers, and stops on
SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import yaml

from mgmt.alarm_rules import AlarmRules, AlarmThresholds
from mgmt.alarms import AlarmTable
from mgmt.snmp.agent import start_snmp_agent
from mgmt.snmp.settings import SnmpSettings, SnmpSettingsError
from mgmt.snmp.source import SbcStateSource


def load_runner_config(path: Path) -> tuple[Path, float, SnmpSettings, AlarmThresholds]:
    raw: Any = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict):
        raise SnmpSettingsError(f"{path}: expected a mapping at the top")
    control = raw.get("control_socket")
    if not control:
        raise SnmpSettingsError(f"{path}: control_socket: required")
    settings = SnmpSettings.from_object(raw.get("snmp") or {})
    settings.validate()
    alarm_raw = raw.get("alarms") or {}
    thresholds = AlarmThresholds(
        max_calls=int(alarm_raw.get("max_calls", 0)),
        expect_xdp=bool(alarm_raw.get("expect_xdp", False)),
    )
    return Path(control), float(raw.get("poll_interval_s", 5.0)), settings, thresholds


async def run(config_path: Path) -> int:
    control, interval, settings, thresholds = load_runner_config(config_path)
    alarms = AlarmTable()
    rules = AlarmRules(alarms, thresholds)
    source = SbcStateSource(control, interval_s=interval)
    source.subscribe(rules.evaluate)
    agent = await start_snmp_agent(settings, source, alarms)
    await source.start()
    print(f"ready engine_id={agent.engine_id.hex()} address={settings.address}:{settings.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await source.close()
        agent.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mgmt.snmp", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    try:
        return asyncio.run(run(args.config))
    except (OSError, SnmpSettingsError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
