"""The firmware update spool: the hand-over between the unprivileged management process, which drops a
verified bundle and a request file into it, and the root service that installs it
(hw/appliance/update.py). Both sides read and write it through this module.

    /var/lib/sbc-update/incoming/    written by sbc-mgmt (its own, 0700): bundles and request.json
    /var/lib/sbc-update/ready/       root only: the verified files, sysupdate's source directory
    /var/lib/sbc-update/status.json  written by root: what happened last, read by the API
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from hw.firmware.osinfo import booted_version
from hw.firmware.versions import compare_versions

log = logging.getLogger(__name__)

SPOOL = Path("/var/lib/sbc-update")


class UpdateState(StrEnum):
    VERIFYING = "verifying"
    INSTALLING = "installing"
    REBOOTING = "rebooting"  # installed; the next boot tries the new slot
    INSTALLED = "installed"  # installed, reboot left to the operator
    FAILED = "failed"  # refused or sysupdate failed: nothing changed
    GOOD = "good"  # the new slot booted and passed the health check
    ROLLED_BACK = "rolled-back"  # the new slot failed its tries: the old one runs again


@dataclass(frozen=True, slots=True)
class Spool:
    root: Path = SPOOL

    @property
    def incoming(self) -> Path:
        return self.root / "incoming"

    @property
    def ready(self) -> Path:
        return self.root / "ready"

    @property
    def request(self) -> Path:
        return self.incoming / "request.json"

    @property
    def status(self) -> Path:
        return self.root / "status.json"


def write_json(path: Path, doc: dict[str, Any], mode: int = 0o640) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh, indent=2, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def read_status(spool: Spool = Spool(), booted: str | None = None) -> dict[str, Any]:
    """The last update's status, with a reboot's outcome filled in: a slot that was installed but is
    not the one running after the reboot has been rolled back by systemd-boot."""
    booted = booted or booted_version()
    status = read_json(spool.status) or {"state": None}
    status["booted"] = booted
    state = status.get("state")
    target = status.get("version")
    if state in (UpdateState.REBOOTING, UpdateState.INSTALLED) and target and status.get("boot_id") != _boot_id():
        if target != booted:
            status["state"] = UpdateState.ROLLED_BACK.value
            status["detail"] = f"{target} did not pass its health check; {booted} runs again"
    return status


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def set_status(spool: Spool, state: UpdateState, **fields: Any) -> None:
    doc = {"state": state.value, "time": time.time(), "boot_id": _boot_id(), **fields}
    write_json(spool.status, doc, mode=0o644)
    log.info("update %s %s", state.value, json.dumps(fields, sort_keys=True))


def is_downgrade(version: str, booted: str) -> bool:
    return compare_versions(version, booted) < 0


def check_version(version: str, booted: str, allow_downgrade: bool) -> str | None:
    """Why this version may not be installed over the running one (None: it may). Anti-rollback: an older
    version only when the operator asked for it explicitly (an admin, through the API; audited there)."""
    order = compare_versions(version, booted)
    if order == 0:
        return f"{version} is the version running now"
    if order < 0 and not allow_downgrade:
        return f"{version} is older than the running {booted}; ask for a downgrade explicitly"
    return None
