"""The firmware update hand-over: the unprivileged management process drops a verified bundle and a
request file into the spool; `sbc-update.path` starts `sbc-update.service` (root), which verifies
the bundle again, hands its files to systemd-sysupdate and reboots into the new slot.

    /var/lib/sbc-update/incoming/    written by sbc-mgmt (its own, 0700): bundles and request.json
    /var/lib/sbc-update/ready/       root only: the verified files, sysupdate's source directory
    /var/lib/sbc-update/status.json  written by root: what happened last, read by the API

The new slot boots with a boot counter (rootfs/usr/lib/sysupdate.d/90-uki.conf, TriesLeft=2); the
health check blesses it, or reboots so systemd-boot falls back to the slot that ran before.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from sbc.appliance.bundle import BundleError, load_trusted_keys, verify_bundle
from sbc.appliance.firstboot import FirstBoot, Provisioning
from sbc.appliance.osinfo import booted_version, machine_arch
from sbc.appliance.versions import compare_versions

log = logging.getLogger("sbc.appliance.update")

SPOOL = Path("/var/lib/sbc-update")
SYSUPDATE = "/usr/lib/systemd/systemd-sysupdate"


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


# ---- the root side ----------------------------------------------------------------------------------
def install_requested(spool: Spool = Spool(), *, reboot: Callable[[], None] | None = None) -> int:
    """sbc-update.service: take the request, verify the bundle again as root, run sysupdate, reboot."""
    request = read_json(spool.request)
    with contextlib.suppress(FileNotFoundError):
        spool.request.unlink()
    if request is None:
        log.warning("no readable update request in %s", spool.incoming)
        return 0
    name = str(request.get("bundle", ""))
    bundle = spool.incoming / name
    booted = booted_version()
    try:
        if "/" in name or not name or not bundle.is_file():
            raise BundleError(f"the request names no bundle in the spool: {name!r}")
        set_status(spool, UpdateState.VERIFYING, bundle=name, requested_by=request.get("requested_by"), previous=booted)
        if spool.ready.exists():
            shutil.rmtree(spool.ready)
        spool.ready.mkdir(mode=0o700)
        manifest = verify_bundle(bundle, load_trusted_keys(), arch=machine_arch(), extract_to=spool.ready)
        # Only a JSON `true` allows a downgrade: a missing, misspelt or string value refuses it.
        why = check_version(manifest.version, booted, request.get("allow_downgrade") is True)
        if why:
            raise BundleError(why)
        set_status(spool, UpdateState.INSTALLING, version=manifest.version, previous=booted,
                   signed_by=manifest.signed_by)  # fmt: skip
        _sysupdate(manifest.version)
    except (BundleError, OSError, subprocess.SubprocessError) as exc:
        set_status(spool, UpdateState.FAILED, bundle=name, previous=booted, error=str(exc))
        return 1
    finally:
        with contextlib.suppress(OSError):
            bundle.unlink()
        shutil.rmtree(spool.ready, ignore_errors=True)
    # The new slot has no hostname of its own: record this slot's (the operator may have changed it).
    with contextlib.suppress(OSError):
        FirstBoot(provisioning=Provisioning()).apply_every_boot()
    reboot_after = bool(request.get("reboot", True))
    state = UpdateState.REBOOTING if reboot_after else UpdateState.INSTALLED
    set_status(spool, state, version=manifest.version, previous=booted, signed_by=manifest.signed_by)
    if reboot_after:
        if reboot is None:
            from sbc.appliance.health import reboot_now

            reboot = reboot_now
        reboot()
    return 0


def _sysupdate(version: str) -> None:
    argv = [SYSUPDATE, "--no-pager", "update", version]
    log.info("running %s", " ".join(argv))
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=1800)
    for line in (done.stdout + done.stderr).splitlines():
        log.info("sysupdate: %s", line)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise BundleError(f"systemd-sysupdate failed ({done.returncode}): {' / '.join(tail)}")


def mark_good(spool: Spool = Spool()) -> None:
    """The health check passed: record that the slot an update installed is now good."""
    status = read_json(spool.status)
    booted = booted_version()
    if status and status.get("version") == booted and status.get("state") in (
        UpdateState.REBOOTING, UpdateState.INSTALLED
    ):  # fmt: skip
        set_status(spool, UpdateState.GOOD, version=booted, previous=status.get("previous"))
