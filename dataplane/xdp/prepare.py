"""The privileged step before `sbc run` when `dataplane.loader: external`: load the relay object, pin
its program and maps, hand the pins to the SBC's group, attach the program to the interfaces that hold
the media addresses, detach it from interfaces that no longer do, and enter those interfaces in the
egress devmap.

Idempotent: run again (every start of sbc.service in the image), it finds the program pinned and
attached in the mode it would choose and changes nothing, so the session entries of live calls stay
in their maps and their media keeps flowing. It detaches or re-attaches only what changed: a media
address on another interface, an interface whose mode the settings now choose differently.
`reload=True` loads the object again (an upgrade in place): the pinned maps are reused and the new
program replaces the old one on each interface in one netlink request.

What it needs: root's bpffs directory, CAP_BPF (load, pin), CAP_PERFMON (the verifier refuses the
program's packet-pointer comparisons without it), CAP_NET_ADMIN (create the devmap, attach). `sbc run`
then needs only CAP_BPF for map access. The pins get mode 0660 and the SBC's group, their directory
0750: the SBC opens and updates the maps but cannot unpin, replace or add anything there.

Called by `sbc prepare-dataplane`, which reads the config (this package never imports `sbc`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute

from dataplane.api import IPAddress
from dataplane.settings import XdpAttach
from dataplane.xdp import abi, attach, bpfsys, loader, placement
from dataplane.xdp.placement import AttachedInterface
from dataplane.xdp.tables import EgressPorts

__all__ = ["PIN_DIR_MODE", "PIN_MODE", "Prepared", "hand_over", "prepare"]

PIN_DIR_MODE = 0o750
PIN_MODE = 0o660  # a program pin opens read-write only (BPF_OBJ_GET), and so does a map the SBC updates


@dataclass(frozen=True, slots=True)
class Prepared:
    """What the step left: the program's id, where it runs (and why in that mode), what it detached."""

    pin_dir: Path
    prog_id: int
    loaded: bool  # False: the pinned program was kept (a re-run)
    interfaces: tuple[AttachedInterface, ...]
    detached: tuple[AttachedInterface, ...]

    def describe(self) -> str:
        how = "loaded" if self.loaded else "kept"
        parts = [f"program {self.prog_id} {how}, pinned in {self.pin_dir}"]
        for iface in self.interfaces:
            done = "attached" if iface.attached_by_us else "already attached"
            parts.append(f"{iface.describe()}: {done}")
        parts += [f"{iface.name}: detached ({iface.why})" for iface in self.detached]
        return "; ".join(parts)


def hand_over(pin_dir: Path, group: int | None) -> None:
    """Give the pins to `group` (the SBC's): rw on the pins, r-x on their directory. None: leave them
    to root alone."""
    if group is None:
        return
    os.chown(pin_dir, -1, group)
    pin_dir.chmod(PIN_DIR_MODE)
    for name in (abi.PROG_PIN_NAME, *loader.MAP_NAMES):
        pin = pin_dir / name
        os.chown(pin, -1, group)
        pin.chmod(PIN_MODE)


def _pinned_prog_id(pin_dir: Path) -> int | None:
    pin = pin_dir / abi.PROG_PIN_NAME
    if not pin.exists():
        return None
    with bpfsys.obj_get(pin) as prog:
        return bpfsys.prog_info(prog).id


def prepare(
    media_addresses: Sequence[IPAddress],
    *,
    pin_dir: Path = Path(abi.PIN_DIR),
    xdp_mode: XdpAttach = XdpAttach.AUTO,
    mode_origin: str = "",
    group: int | None = None,
    reload: bool = False,
    obj: Path = loader.OBJECT,
) -> Prepared:
    """Load (unless pinned and not `reload`), pin, hand over, attach; see the module docstring.
    Raises `placement.XdpStartError`, `attach.AttachError`, `tool.ToolError` (bpftool), OSError."""
    previous = _pinned_prog_id(pin_dir)
    objects = loader.load(obj, pin_dir, replace=reload)
    try:
        hand_over(pin_dir, group)
        prog_id = bpfsys.prog_info(objects.prog).id
        origin = mode_origin or f"xdp_mode {xdp_mode}"
        with IPRoute() as ipr:
            placed = tuple(
                placement.attach_program(ipr, iface, objects.prog, prog_id, xdp_mode, origin)
                for iface in placement.media_interfaces(ipr, media_addresses)
            )
            ours = {prog_id} if previous is None else {prog_id, previous}
            stale = tuple(placement.foreign_attachments(ipr, ours, (iface.index for iface in placed)))
            for iface in stale:
                attach.detach(iface.name, iface.mode)
        _egress(EgressPorts(objects.egress), (iface.index for iface in placed))
        return Prepared(pin_dir, prog_id, previous != prog_id, placed, stale)
    finally:
        objects.close()


def _egress(ports: EgressPorts, indexes: Iterable[int]) -> None:
    # the relay adds the interfaces its routes lead to as well; these it needs from the first packet
    for index in indexes:
        ports.add(index)
