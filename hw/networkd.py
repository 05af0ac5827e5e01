"""The role map as systemd `.link` files: udev renames each role interface to its role name.

The image's networkd `.network` files match `Name=wan0` / `Name=lan0` (rootfs/usr/lib/systemd/network/);
these `.link` files make the right NIC carry that name. `sbc-hw links` writes them into a directory
given as a parameter — `/run/systemd/network` on the box, before `systemd-udev-trigger.service`, so the
coldplug pass applies them. Files are named `10-sbc-hw-<name>.link`: they sort before the image's
`70-sbc-qemu-*.link` and Debian's `99-default.link`, and the first matching `.link` file wins.

The [Match] section pins the hardware, never the current name (which the rename changes): the bus
path when the rule matched on it or the MAC is not the hardware's own, else the permanent MAC; the
driver is added whenever known, so a VLAN or bridge that copies the MAC is not matched too.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from hw.roles import RoleAssignment, RoleMap

FILE_PREFIX = "10-sbc-hw-"
SUFFIX = ".link"


@dataclass(frozen=True, slots=True)
class LinkFile:
    filename: str
    text: str


def link_file(assignment: RoleAssignment, profile: str) -> LinkFile | None:
    """The `.link` file for one role interface; None when nothing stable identifies its hardware."""
    nic = assignment.nic
    match: list[str] = []
    by_path = nic.path is not None and ("path=" in assignment.reason or not (nic.mac and nic.mac_permanent))
    if by_path:
        match.append(f"Path={nic.path}")
    elif nic.mac and nic.mac_permanent:
        match.append(f"PermanentMACAddress={nic.mac}")
    elif nic.name != assignment.name:
        match.append(f"OriginalName={nic.name}")  # a virtual test NIC: its kernel name is all there is
    else:
        return None
    if nic.driver:
        match.append(f"Driver={nic.driver}")
    text = "\n".join(
        [
            f"# Written by sbc-hw from hardware profile {profile!r}: the {assignment.role.value.upper()} role",
            f"# ({assignment.reason}). Regenerated at every boot and hot-plug; edit the profile instead.",
            "[Match]",
            *match,
            "",
            "[Link]",
            f"Name={assignment.name}",
            "",
        ]
    )
    return LinkFile(f"{FILE_PREFIX}{assignment.name}{SUFFIX}", text)


def link_files(role_map: RoleMap) -> list[LinkFile]:
    return [f for f in (link_file(a, role_map.profile) for a in role_map.assignments) if f is not None]


def write_link_files(role_map: RoleMap, directory: Path) -> list[Path]:
    """Write the role map's `.link` files into `directory` (atomically each) and remove our stale ones.
    Returns the paths whose content changed (new, rewritten or removed)."""
    directory.mkdir(parents=True, exist_ok=True)
    changed: list[Path] = []
    wanted = {f.filename: f.text for f in link_files(role_map)}
    for filename, text in wanted.items():
        target = directory / filename
        with contextlib.suppress(OSError):
            if target.read_text(encoding="utf-8") == text:
                continue
        tmp = directory / f".{filename}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        changed.append(target)
    for old in directory.glob(f"{FILE_PREFIX}*{SUFFIX}"):
        if old.name not in wanted:
            old.unlink()
            changed.append(old)
    return changed


def request_rename(assignment: RoleAssignment, sys_root: Path = Path("/sys")) -> bool:
    """Ask udev to apply the `.link` files to a hot-plugged interface again (a synthetic "add" uevent,
    what `udevadm trigger` does). udev renames it only while it is down. Returns False if the interface
    is gone."""
    uevent = sys_root / "class" / "net" / assignment.nic.name / "uevent"
    try:
        uevent.write_text("add\n")
    except FileNotFoundError:
        return False
    return True
