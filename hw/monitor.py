"""`sbc-hw run`'s NIC side: watch links and hot-plug, keep the role map, `.link` files, link alarms and
the published state current.

Triggers: rtnetlink link messages through pyroute2 (carrier up/down, interfaces added, renamed,
removed: every change of an interface's state), udev's "add" events through pyudev (a NIC that
udev has finished naming), and a heartbeat. Each trigger re-reads the NICs from /sys — a handful of
files per interface — and rebuilds the role map, so no event order or lost message can leave the
picture wrong for longer than one heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hw.hw_state import HEARTBEAT_S, state_json, write_state
from hw.links import AlarmChange, AlarmSink, LinkTracker, apply_changes
from hw.networkd import request_rename, write_link_files
from hw.nics import NicInventory
from hw.profile import HardwareProfile
from hw.roles import RoleMap, assign_roles

log = logging.getLogger("sbc-hw")
Emit = Callable[..., None]


class NicMonitor:
    def __init__(
        self,
        inventory: NicInventory,
        profile: HardwareProfile,
        emit: Emit,
        *,
        sink: AlarmSink | None = None,
        links_dir: Path | None = None,
        state_path: Path | None = None,
        sys_root: Path = Path("/sys"),
        rename: bool = True,
        raise_after_s: float = 2.0,
    ) -> None:
        self.inventory = inventory
        self.profile = profile
        self.emit = emit
        self.sink = sink
        self.links_dir = links_dir
        self.state_path = state_path
        self.sys_root = sys_root
        self.rename = rename
        self.tracker = LinkTracker(raise_after_s)
        self.role_map: RoleMap | None = None
        self._links: dict[str, tuple[bool | None, str]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.failed = False

    # ---- one refresh ---------------------------------------------------------------------------
    def refresh(self, *, hotplug: bool = False) -> RoleMap:
        now = self._loop.time() if self._loop is not None else time.monotonic()
        role_map = assign_roles(self.profile, self.inventory.list_nics())
        previous = self.role_map
        self.role_map = role_map
        if previous is None or _roles(previous) != _roles(role_map):
            self.emit("info", "nic.roles", profile=role_map.profile, missing=[r.value for r in role_map.missing],
                      roles={a.name: {"kernel_name": a.nic.name, "role": a.role.value, "reason": a.reason}
                             for a in role_map.assignments})  # fmt: skip
        for a in role_map.assignments:
            link = (a.nic.carrier, a.nic.operstate)
            if self._links.get(a.name) != link:
                self.emit("info", "nic.link", interface=a.name, kernel_name=a.nic.name, role=a.role.value,
                          carrier=a.nic.carrier, operstate=a.nic.operstate)  # fmt: skip
            self._links[a.name] = link
        if self.links_dir is not None:
            try:
                changed = write_link_files(role_map, self.links_dir)
            except OSError as exc:
                self.emit("error", "nic.link_files_failed", directory=str(self.links_dir), error=str(exc))
                changed = []
            if changed:
                self.emit("info", "nic.link_files", directory=str(self.links_dir), changed=[p.name for p in changed])
            if hotplug and self.rename:
                for a in role_map.assignments:
                    new = previous is None or previous.for_interface(a.nic.name) is None
                    if new and a.needs_rename and request_rename(a, self.sys_root):
                        self.emit("info", "nic.rename_requested", kernel_name=a.nic.name, name=a.name)
        self._apply(self.tracker.update(role_map, now))
        return role_map

    def _apply(self, changes: list[AlarmChange]) -> None:
        for change in changes:
            self.emit("warning" if change.active else "info", "alarm.raised" if change.active else "alarm.cleared",
                      alarm=change.name, severity=change.severity, text=change.text)  # fmt: skip
        if self.sink is not None:
            apply_changes(changes, self.sink)
        self._publish()
        self._rearm()

    def _publish(self) -> None:
        if self.state_path is None or self.role_map is None:
            return
        try:
            write_state(self.state_path, state_json(self.role_map, list(self.tracker.active.values()), time.time()))
        except OSError as exc:
            self.emit("error", "hw.state_write_failed", path=str(self.state_path), error=str(exc))

    def _rearm(self) -> None:
        if self._loop is None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.tracker.next_deadline()
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_deadline)

    def _on_deadline(self) -> None:
        assert self._loop is not None
        self._timer = None
        self._apply(self.tracker.tick(self._loop.time()))

    # ---- the watchers --------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        from pyroute2 import AsyncIPRoute
        from pyroute2.netlink.rtnl import RTMGRP_LINK

        self._loop = asyncio.get_running_loop()
        ipr = AsyncIPRoute()
        await ipr.bind(groups=RTMGRP_LINK)  # before the first look: no change can fall in between
        udev = self._udev_monitor()
        self.refresh(hotplug=True)
        tasks = [asyncio.create_task(self._netlink(ipr), name="netlink links"),
                 asyncio.create_task(self._heartbeat(), name="heartbeat")]  # fmt: skip

        def ended(task: asyncio.Task[None]) -> None:
            # a watcher that dies leaves the picture stale: stop, and let systemd restart the service
            if not task.cancelled() and task.exception() is not None:
                self.emit("error", "hw.watcher_failed", watcher=task.get_name(), error=repr(task.exception()))
                self.failed = True
                stop.set()

        for task in tasks:
            task.add_done_callback(ended)
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if udev is not None:
                self._loop.remove_reader(udev.fileno())
            if self._timer is not None:
                self._timer.cancel()

    async def _netlink(self, ipr: Any) -> None:
        try:
            while True:
                batch = [msg async for msg in ipr.get()]
                if batch:
                    self.refresh(hotplug=any(m.get("event") == "RTM_NEWLINK" for m in batch))
        finally:
            ipr.close()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            self.refresh()

    def _udev_monitor(self) -> Any:
        """udev's own events (after its rules and .link files ran); absent where no udevd runs."""
        try:
            import pyudev

            monitor = pyudev.Monitor.from_netlink(pyudev.Context(), source="udev")
            monitor.filter_by("net")
            monitor.start()
        except (OSError, ImportError, ValueError) as exc:
            self.emit("info", "nic.udev_monitor_unavailable", error=str(exc))
            return None
        assert self._loop is not None

        def readable() -> None:
            added = False
            while (device := monitor.poll(timeout=0)) is not None:
                added = added or device.action in ("add", "move")
            self.refresh(hotplug=added)

        self._loop.add_reader(monitor.fileno(), readable)
        return monitor


def _roles(role_map: RoleMap) -> list[tuple[str, str, str]]:
    return [(a.nic.name, a.name, a.role.value) for a in role_map.assignments]
