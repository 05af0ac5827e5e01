"""`sbc-hw`: the hardware service and its one-shot commands.

    sbc-hw run [--links-dir /run/systemd/network]   NIC roles, link alarms, hot-plug, reset button
    sbc-hw links --links-dir /run/systemd/network   write the role map's .link files once (early boot)
    sbc-hw roles [--json]                           show which interface is the WAN and the LAN
    sbc-hw factory-reset [--yes] [--no-reboot]      console: request a factory reset and reboot
    sbc-hw factory-reset-apply                      at boot: wipe the state partition if requested
    sbc-hw firewall render|apply|counters           the host firewall (hw/firewall_command.py)

Logs are JSON lines on stderr, like `sbc run`'s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from pathlib import Path

from hw.factory_reset import MARKER, STATE_ROOT, pending_request, request_factory_reset, wipe_state
from hw.firewall_command import add_firewall_parser, run_firewall
from hw.hw_state import STATE_PATH, interfaces_json
from hw.machine import OPERATOR_PROFILE, read_machine, select_profile
from hw.profile import HardwareProfile, load_profile
from hw.roles import assign_roles
from sbc.yamlsource import ConfigError

log = logging.getLogger("sbc-hw")
CONFIRM_PHRASE = "factory reset"


def emit(level: str, event: str, **fields: object) -> None:
    lvl = getattr(logging, level.upper(), logging.INFO)
    if log.isEnabledFor(lvl):
        log.log(lvl, json.dumps({"ts": round(time.time(), 3), "level": level, "event": event, **fields}, default=str))


def _setup_logging() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False


def _profile(path: Path | None) -> HardwareProfile:
    return load_profile(path) if path is not None else select_profile(read_machine(), OPERATOR_PROFILE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sbc-hw", description="Edge SBC hardware service")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("run", "watch NICs, links and the reset button"), ("links", "write .link files once"),
                       ("roles", "show the role map")):  # fmt: skip
        p = sub.add_parser(name, help=text)
        p.add_argument("--profile", type=Path, help=f"hardware profile (default: {OPERATOR_PROFILE} or built-in)")
        p.add_argument("--links-dir", type=Path, help="write networkd .link files here (/run/systemd/network)")
        if name == "run":
            p.add_argument("--state", type=Path, default=STATE_PATH, help=f"published state (default {STATE_PATH})")
            p.add_argument("--marker", type=Path, default=MARKER, help="factory reset marker")
            p.add_argument("--link-alarm-delay", type=float, default=2.0, help="seconds down before the alarm")
            p.add_argument("--no-rename", action="store_true", help="never ask udev to rename a hot-plugged NIC")
            p.add_argument("--no-reboot", action="store_true", help="reset button: write the marker, do not reboot")
        if name == "roles":
            p.add_argument("--json", action="store_true")
    fr = sub.add_parser("factory-reset", help="request a factory reset (wipes config, users, logs) and reboot")
    fr.add_argument("--yes", action="store_true", help=f"do not ask; otherwise type {CONFIRM_PHRASE!r}")
    fr.add_argument("--no-reboot", action="store_true", help="only write the marker; the next boot wipes")
    fr.add_argument("--marker", type=Path, default=MARKER)
    fa = sub.add_parser("factory-reset-apply", help="at boot: wipe the state partition when a reset was requested")
    fa.add_argument("--root", type=Path, default=STATE_ROOT)
    fa.add_argument("--marker", type=Path, default=MARKER)
    add_firewall_parser(sub)
    args = parser.parse_args(argv)
    _setup_logging()
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "links":
            return _links(args)
        if args.command == "roles":
            return _roles(args)
        if args.command == "factory-reset":
            return _factory_reset(args)
        if args.command == "firewall":
            return run_firewall(args, emit)
        return _factory_reset_apply(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(str(problem), file=sys.stderr)
        what = "the configuration" if args.command == "firewall" else "the hardware profile"
        print(f"sbc-hw: {what} has errors; nothing was changed", file=sys.stderr)
        return 2


def _links(args: argparse.Namespace) -> int:
    from hw.networkd import write_link_files
    from hw.udev_nics import UdevNicInventory

    if args.links_dir is None:
        print("sbc-hw links: --links-dir is required", file=sys.stderr)
        return 2
    role_map = assign_roles(_profile(args.profile), UdevNicInventory().list_nics())
    changed = write_link_files(role_map, args.links_dir)
    emit("info", "nic.link_files", profile=role_map.profile, directory=str(args.links_dir),
         changed=[p.name for p in changed], roles={a.name: a.nic.name for a in role_map.assignments},
         missing=[r.value for r in role_map.missing])  # fmt: skip
    return 0


def _roles(args: argparse.Namespace) -> int:
    from hw.udev_nics import UdevNicInventory

    role_map = assign_roles(_profile(args.profile), UdevNicInventory().list_nics())
    rows = interfaces_json(role_map)
    if args.json:
        print(json.dumps({"profile": role_map.profile, "missing": [r.value for r in role_map.missing],
                          "interfaces": rows}, indent=2))  # fmt: skip
        return 0
    print(f"profile {role_map.profile}" + (f"; missing: {', '.join(r.value for r in role_map.missing)}"
                                           if role_map.missing else ""))  # fmt: skip
    for row in rows:
        link = "up" if row["carrier"] else ("down" if row["carrier"] is False else "admin-down")
        print(f"  {row['name']:<10} {row['role'] or '-':<5} {row['kernel_name']:<16} {row['driver'] or '-':<12} "
              f"{row['path'] or '-':<34} {row['mac'] or '-':<17} {link}  ({row['reason']})")  # fmt: skip
    return 0


def _run(args: argparse.Namespace) -> int:
    from hw.monitor import NicMonitor
    from hw.udev_nics import UdevNicInventory

    profile = _profile(args.profile)
    emit("info", "hw.started", profile=profile.name, source=profile.source)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        monitor = NicMonitor(UdevNicInventory(), profile, emit, links_dir=args.links_dir, state_path=args.state,
                             rename=not args.no_rename, raise_after_s=args.link_alarm_delay)  # fmt: skip
        button = asyncio.create_task(_reset_button(profile, args.marker, not args.no_reboot, stop))
        try:
            await monitor.run(stop)
        finally:
            button.cancel()
            await asyncio.gather(button, return_exceptions=True)
        emit("info", "hw.stopped")
        return 1 if monitor.failed else 0

    return asyncio.run(main())


async def _reset_button(profile: HardwareProfile, marker: Path, reboot: bool, stop: asyncio.Event) -> None:
    """Open the profile's button (retrying: input devices can appear late) and act on its presses."""
    import os

    from hw.reset_button import ButtonAction, ButtonWatcher, ResetRequested, find_input_device

    spec = profile.reset_button
    if spec is None:
        return
    said_missing = False
    while not stop.is_set():
        device = find_input_device(spec.device)
        if device is None:
            if not said_missing:
                emit("info", "reset_button.not_found", device=spec.device)
                said_missing = True
            await asyncio.sleep(30)
            continue
        try:
            fd = os.open(device, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            emit("error", "reset_button.open_failed", device=str(device), error=str(exc))
            await asyncio.sleep(30)
            continue
        done: asyncio.Queue[ButtonAction] = asyncio.Queue()
        watcher = ButtonWatcher(fd, spec.key, spec.hold_s, done.put_nowait)
        emit("info", "reset_button.watching", device=str(device), key=spec.key, hold_s=spec.hold_s)
        try:
            while not watcher.closed.is_set():
                getter = asyncio.create_task(done.get())
                closed = asyncio.create_task(watcher.closed.wait())
                finished, pending = await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
                for task in pending:
                    task.cancel()
                if getter in finished:
                    action = getter.result()
                    if isinstance(action, ResetRequested):
                        await _button_reset(action.held_s, marker, reboot)
                    else:
                        emit("info", "reset_button.short_press", held_s=action.held_s,
                             note=f"hold for {spec.hold_s:.0f} s to reset to factory defaults")  # fmt: skip
        finally:
            watcher.close()
            os.close(fd)
        emit("warning", "reset_button.device_gone", device=str(device))


async def _button_reset(held_s: float, marker: Path, reboot: bool) -> None:
    request_factory_reset("button", "button", f"reset button held {held_s:.1f} s", marker=marker)
    emit("warning", "factory_reset.requested", via="button", held_s=held_s, marker=str(marker), reboot=reboot)
    if reboot:
        await _reboot()


async def _reboot() -> None:
    from hw.dbus_client import SystemBus
    from hw.system import SystemServiceError
    from hw.systemd_units import SystemdUnits

    bus = SystemBus()
    try:
        await SystemdUnits(bus).reboot()
    except SystemServiceError as exc:
        emit("error", "reboot_failed", error=exc.detail, hint="the reset happens at the next boot")
    finally:
        bus.close()


def _factory_reset(args: argparse.Namespace) -> int:
    if not args.yes:
        print("This wipes the configuration, certificates, users and logs, keeps the firmware, and reboots.")
        try:
            answer = input(f"Type {CONFIRM_PHRASE!r} to go on: ")
        except EOFError:
            answer = ""
        if answer.strip().lower() != CONFIRM_PHRASE:
            print("nothing was changed", file=sys.stderr)
            return 1
    request_factory_reset("console", "console", "sbc-hw factory-reset", marker=args.marker)
    emit("warning", "factory_reset.requested", via="console", marker=str(args.marker), reboot=not args.no_reboot)
    if not args.no_reboot:
        asyncio.run(_reboot())
    return 0


def _factory_reset_apply(args: argparse.Namespace) -> int:
    request = pending_request(args.marker)
    if request is None:
        emit("info", "factory_reset.none_requested", marker=str(args.marker))
        return 0
    emit("warning", "factory_reset.wiping", root=str(args.root), **request.as_dict())
    report = wipe_state(args.root, args.marker)
    emit("error" if report.errors else "warning", "factory_reset.done", removed_files=report.removed_files,
         removed_dirs=report.removed_dirs, kept=report.kept, errors=report.errors[:20])  # fmt: skip
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
