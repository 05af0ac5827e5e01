"""The firmware update on the root side: `sbc-update.path` starts `sbc-update.service` (root) when
management has queued a request in the spool (hw/firmware/spool.py); this verifies the bundle again,
hands its files to systemd-sysupdate and reboots into the new slot.

The new slot boots with a boot counter (rootfs/usr/lib/sysupdate.d/90-uki.conf, TriesLeft=2); the
health check blesses it, or reboots so systemd-boot falls back to the slot that ran before.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
from collections.abc import Callable

from hw.appliance.firstboot import FirstBoot, Provisioning
from hw.firmware.bundle import BundleError, load_trusted_keys, verify_bundle
from hw.firmware.osinfo import booted_version, machine_arch
from hw.firmware.spool import SPOOL, Spool, UpdateState, check_version, read_json, set_status

log = logging.getLogger(__name__)

SYSUPDATE = "/usr/lib/systemd/systemd-sysupdate"
BOX_SPOOL = Spool(SPOOL)  # the image's spool; tests pass their own


def install_requested(spool: Spool = BOX_SPOOL, *, reboot: Callable[[], None] | None = None) -> int:
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
            from hw.appliance.health import reboot_now

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


def mark_good(spool: Spool = BOX_SPOOL) -> None:
    """The health check passed: record that the slot an update installed is now good."""
    status = read_json(spool.status)
    booted = booted_version()
    if status and status.get("version") == booted and status.get("state") in (
        UpdateState.REBOOTING, UpdateState.INSTALLED
    ):  # fmt: skip
        set_status(spool, UpdateState.GOOD, version=booted, previous=status.get("previous"))
