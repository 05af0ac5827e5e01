"""`NicInventory` on the real box: pyudev enumerates the `net` subsystem in /sys.

Everything is read from sysfs attributes and the device tree of /sys, not from the udev database,
so it works where no udevd runs (a build machine, an early-boot unit before udev has settled). The
path is computed the way udev's `path_id` builtin does for the buses NICs sit on (PCI, USB,
platform), so profile globs and generated `.link` files can use the `Path=` udev shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyudev

from hw.nics import Nic

ARPHRD_ETHER = 1
NET_ADDR_PERM = 0


def _attr(device: Any, name: str) -> str | None:
    try:
        value = device.attributes.get(name)
    except (OSError, KeyError):
        return None
    if value is None:
        return None
    text: str = value.decode("utf-8", "replace").strip() if isinstance(value, bytes) else str(value).strip()
    return text or None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def udev_path(device: Any) -> str | None:
    """ID_PATH as udev's path_id builds it for PCI, USB and platform parents (nearest first)."""
    parts: list[str] = []
    parent = device.parent
    while parent is not None:
        subsystem = parent.subsystem
        if subsystem == "pci":
            parts.insert(0, f"pci-{parent.sys_name}")
            break  # path_id skips the PCI bridges above: the nearest PCI function names the slot
        if subsystem == "usb" and parent.device_type == "usb_interface":
            port = parent.sys_name.split("-", 1)[1] if "-" in parent.sys_name else parent.sys_name
            parts.insert(0, f"usb-0:{port}")
            parent = _skip(parent, "usb")
            continue
        if subsystem == "platform":
            parts.insert(0, f"platform-{parent.sys_name}")
            break
        parent = parent.parent
    return "-".join(parts) if parts else None


def _skip(device: Any, subsystem: str) -> Any:
    parent = device.parent
    while parent is not None and parent.subsystem == subsystem:
        parent = parent.parent
    return parent


def _driver(device: Any) -> str | None:
    parent = device.parent
    while parent is not None:
        if parent.driver:
            return str(parent.driver)
        parent = parent.parent
    return None


def nic_from_device(device: Any) -> Nic | None:
    """A Nic from a pyudev `net` device; None for what is not an Ethernet-type interface."""
    if _int(_attr(device, "type")) != ARPHRD_ETHER:
        return None
    sys_path = Path(device.sys_path)
    physical = (sys_path / "device").exists()
    operstate = _attr(device, "operstate") or "unknown"
    carrier_raw = _attr(device, "carrier")  # reading it fails (EINVAL) while the interface is down
    carrier = None if carrier_raw is None else carrier_raw == "1"
    speed = _int(_attr(device, "speed")) if carrier else None
    return Nic(
        name=device.sys_name,
        ifindex=_int(_attr(device, "ifindex")) or 0,
        mac=(_attr(device, "address") or "").lower() or None,
        driver=_driver(device) if physical else None,
        path=udev_path(device) if physical else None,
        physical=physical,
        mac_permanent=_int(_attr(device, "addr_assign_type")) == NET_ADDR_PERM,
        carrier=carrier,
        operstate=operstate,
        speed_mbps=speed if speed is not None and speed > 0 else None,
        mtu=_int(_attr(device, "mtu")),
    )


class UdevNicInventory:
    """The interfaces of the network namespace /sys shows (the process's own, normally)."""

    def __init__(self, context: pyudev.Context | None = None) -> None:
        self.context = context if context is not None else pyudev.Context()

    def list_nics(self) -> list[Nic]:
        out = []
        for device in self.context.list_devices(subsystem="net"):
            nic = nic_from_device(device)
            if nic is not None:
                out.append(nic)
        return sorted(out, key=lambda n: n.ifindex)

    def device(self, name: str) -> Nic | None:
        try:
            found = pyudev.Devices.from_name(self.context, "net", name)
        except pyudev.DeviceNotFoundError:
            return None
        return nic_from_device(found)
