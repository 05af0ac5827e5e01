"""Factory reset: wipe the state partition (config, certificates, users, logs, update spool) and keep
the firmware (ESP and both root slots).

A reset is requested from one boot and carried out early in the next, before anything mounts /var:

* `request_factory_reset()` (root: the console command `sbc factory-reset`, or
  sbc-factory-reset.service, which the management API and hw/'s reset button start by dropping
  `REQUEST_FILE`) sets the EFI variable `SbcFactoryReset` and reboots;
* `apply_factory_reset()` (sbc-factory-reset-apply.service, before systemd-repart.service and
  var.mount) sees the variable, runs `systemd-repart --factory-reset=yes`, which deletes every
  partition marked FactoryReset=yes and creates it afresh and empty, then clears the variable.
  sbc-firstboot.service then provisions the box as on its first day.

An EFI variable (not a file) carries the request because it must outlive the partition it erases
and be readable before any file system but efivarfs is mounted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from sbc.appliance.osinfo import EFIVARS

log = logging.getLogger("sbc.appliance.factory_reset")

VENDOR_GUID = "5b4e0c3a-6f0e-4c55-9d2a-8a3f1c2e7b61"  # this project's EFI vendor GUID
REQUEST_VAR = EFIVARS / f"SbcFactoryReset-{VENDOR_GUID}"
# The unprivileged request: sbc-factory-reset.path watches it (the directory is writable by group sbc).
REQUEST_FILE = Path("/var/lib/sbc-requests/factory-reset")
_EFI_ATTRS = (0x1 | 0x2 | 0x4).to_bytes(4, "little")  # NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS


def ask_for_factory_reset(requested_by: str, request_file: Path = REQUEST_FILE) -> None:
    """For unprivileged callers (the management API, hw/'s reset button): drop the request file."""
    tmp = request_file.with_name(f".{request_file.name}.{os.getpid()}")
    tmp.write_text(json.dumps({"requested_by": requested_by, "time": time.time()}) + "\n")
    tmp.replace(request_file)


def factory_reset_pending(var: Path = REQUEST_VAR) -> bool:
    return var.exists()


def request_factory_reset(*, reboot: bool = True, var: Path = REQUEST_VAR,
                          reboot_command: tuple[str, ...] = ("systemctl", "reboot"),
                          request_file: Path = REQUEST_FILE) -> None:  # fmt: skip
    """Root: mark the reset for the next boot, then reboot into it."""
    with contextlib.suppress(FileNotFoundError):
        request_file.unlink()
    var.write_bytes(_EFI_ATTRS + b"1")
    log.warning("factory reset requested: the state partition is wiped at the next boot")
    if reboot:
        subprocess.run(list(reboot_command), check=False)


def apply_factory_reset(var: Path = REQUEST_VAR,
                        repart: Callable[[], int] | None = None) -> bool:  # fmt: skip
    """Early boot: carry out a pending reset. Returns True if one was done."""
    if not var.exists():
        return False
    log.warning("factory reset: recreating the state partition")
    status = (repart or _repart)()
    if status != 0:
        log.error("systemd-repart --factory-reset=yes failed with status %d; the state partition stays", status)
    # Cleared in either case: a reset that cannot run must not turn every boot into a failed attempt.
    _clear(var)
    return status == 0


def _repart() -> int:
    return subprocess.run(["systemd-repart", "--dry-run=no", "--factory-reset=yes"], check=False).returncode


def _clear(var: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        try:
            var.unlink()
        except PermissionError:
            # efivarfs may mark variables immutable; lift it and try once more.
            subprocess.run(["chattr", "-i", str(var)], check=False)
            var.unlink()
