"""Network interfaces as the hardware layer sees them, and the `NicInventory` interface that lists them.

A `Nic` is one observation of one interface: what identifies the hardware (driver, udev-style PCI/USB
path, MAC) and its link state (carrier, operstate). Role mapping (`hw.profile`) and link alarms
(`hw.links`) are pure functions of these; `hw.udev_nics` reads them from /sys with pyudev, and
`FakeNicInventory` stands in for unit tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol


class PortRole(StrEnum):
    """What an interface is for. The networkd files of the image match the names these roles get."""

    WAN = "wan"  # toward the carrier's trunk or the cloud PBX
    LAN = "lan"  # the branch's phones


@dataclass(frozen=True, slots=True)
class Nic:
    name: str  # the current kernel name (after any renaming by udev)
    ifindex: int
    mac: str | None = None  # lower case, colon separated
    driver: str | None = None  # the kernel driver bound to the device ("virtio_net", "igb", "r8152")
    path: str | None = None  # udev's ID_PATH form: "pci-0000:00:03.0", "pci-0000:00:14.0-usb-0:1:1.0"
    physical: bool = True  # backed by a device (not veth, bridge, VLAN, dummy...)
    mac_permanent: bool = True  # the MAC is the hardware's (addr_assign_type 0), not random or set
    carrier: bool | None = None  # None: the interface is administratively down, carrier unknown
    operstate: str = "unknown"  # RFC 2863 operstate as the kernel reports it: up, down, dormant...
    speed_mbps: int | None = None
    mtu: int | None = None

    @property
    def link_up(self) -> bool:
        return self.carrier is True

    def with_link(self, carrier: bool | None, operstate: str) -> Nic:
        return replace(self, carrier=carrier, operstate=operstate)


class NicInventory(Protocol):
    """Lists the network interfaces of the box (physical and virtual; callers filter)."""

    def list_nics(self) -> list[Nic]: ...


class FakeNicInventory:
    """In-memory inventory for unit tests: the test sets `nics` and changes them as it likes."""

    def __init__(self, nics: Sequence[Nic] = ()) -> None:
        self.nics: list[Nic] = list(nics)

    def list_nics(self) -> list[Nic]:
        return list(self.nics)

    def set_link(self, name: str, carrier: bool | None, operstate: str | None = None) -> None:
        state = operstate if operstate is not None else ("up" if carrier else "down")
        self.nics = [n.with_link(carrier, state) if n.name == name else n for n in self.nics]
