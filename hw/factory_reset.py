"""Factory reset: wipe the state partition's contents (config, certificates, users, logs), keep the
firmware (the ESP and both root slots are not touched).

It is two steps, so the wipe happens before any service has the state open:
1. `request_factory_reset` writes the marker `/var/lib/sbc-factory-reset/request.json` (who asked,
   how, when) and the caller reboots (REST API, the `sbc-hw factory-reset` console command, the reset
   button). The directory must be writable by the requester: root, and the sbc-mgmt user for the API.
2. At the next boot, `sbc-hw factory-reset-apply` (the image's unit, after var.mount and before
   every service that writes /var) finds the marker and `wipe_state` empties /var. First boot then
   runs as on a new box. The marker goes last, so a wipe cut short by a power loss resumes.

The wipe never leaves the state file system (a mount point below it is kept and reported) and
never follows a symlink.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE_ROOT = Path("/var")
MARKER = STATE_ROOT / "lib" / "sbc-factory-reset" / "request.json"
KEEP = ("lost+found",)  # e2fsck's, belongs to the file system


@dataclass(frozen=True, slots=True)
class FactoryResetRequest:
    requested_at: float
    by: str  # user name, "button", "console"
    via: str  # api, button, console
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"requested_at": self.requested_at, "by": self.by, "via": self.via, "reason": self.reason}


def request_factory_reset(by: str, via: str, reason: str = "", marker: Path = MARKER,
                          now: float | None = None) -> FactoryResetRequest:  # fmt: skip
    """Write the marker atomically (fsync'd: the reboot follows at once)."""
    request = FactoryResetRequest(time.time() if now is None else now, by, via, reason)
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_name(f".{marker.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(request.as_dict(), fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, marker)
    dir_fd = os.open(marker.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return request


def pending_request(marker: Path = MARKER) -> FactoryResetRequest | None:
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
        return FactoryResetRequest(float(data["requested_at"]), str(data["by"]), str(data["via"]),
                                   str(data.get("reason", "")))  # fmt: skip
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        # unreadable or torn: somebody asked for a reset; honour it rather than ignore it
        return FactoryResetRequest(0.0, "unknown", "unknown", "the marker is unreadable")


def cancel_request(marker: Path = MARKER) -> bool:
    try:
        marker.unlink()
    except FileNotFoundError:
        return False
    return True


@dataclass(slots=True)
class WipeReport:
    removed_files: int = 0
    removed_dirs: int = 0
    kept: list[str] = field(default_factory=list)  # mount points and KEEP names left in place
    errors: list[str] = field(default_factory=list)


def _remove_tree(path: Path, device: int, report: WipeReport, skip: set[Path]) -> bool:
    """Remove `path` (not following symlinks, not leaving `device`); True if it is gone."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return True
    if path in skip:
        return False
    if not stat.S_ISDIR(st.st_mode):
        try:
            path.unlink()
            report.removed_files += 1
            return True
        except OSError as exc:
            report.errors.append(f"{path}: {exc.strerror or exc}")
            return False
    if st.st_dev != device:
        report.kept.append(f"{path} (another file system)")
        return False
    gone = True
    try:
        entries = list(os.scandir(path))
    except OSError as exc:
        report.errors.append(f"{path}: {exc.strerror or exc}")
        return False
    for entry in entries:
        gone = _remove_tree(Path(entry.path), device, report, skip) and gone
    if gone:
        try:
            path.rmdir()
            report.removed_dirs += 1
        except OSError as exc:
            report.errors.append(f"{path}: {exc.strerror or exc}")
            return False
    return gone


def wipe_state(root: Path = STATE_ROOT, marker: Path = MARKER) -> WipeReport:
    """Empty `root` except KEEP names and other file systems; the marker (and its directory) last."""
    report = WipeReport()
    device = root.lstat().st_dev
    skip = {marker}
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name in KEEP:
            report.kept.append(entry.path)
            continue
        _remove_tree(Path(entry.path), device, report, skip)
    if marker.exists() and not report.errors:
        marker.unlink()
        report.removed_files += 1
        parent = marker.parent
        while parent != root and root in parent.parents:
            with contextlib.suppress(OSError):
                parent.rmdir()
                report.removed_dirs += 1
            parent = parent.parent
    return report
