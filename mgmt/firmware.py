"""Firmware update over the REST API: `/api/v1/firmware...` (admin to install, read-only to look).

    GET  /firmware                   running version, architecture, the last update and its outcome
    POST /firmware/update            the bundle as the body (application/octet-stream), streamed to disk
    POST /firmware/update-from-url   {"url": "https://…/sbc_0.1.1_x86-64.sbcupdate"}: fetched, streamed

The bundle (hw/firmware/bundle.py) is streamed into the update spool, never held in memory (a root
image is hundreds of MiB; aiohttp refuses bodies over 1 MiB unless read as a stream), then its
signature and every file's SHA-256 are checked here, so a bad bundle is refused with 422 and the
reason before anything else happens. A good one is handed to the root side through the spool's
request file (sbc-update.path starts sbc-update.service, which verifies it again, runs
systemd-sysupdate and reboots into the new slot, on trial until its health check passes).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from hw.firmware.bundle import TRUSTED_KEYS_DIR, BundleError, load_trusted_keys, verify_bundle
from hw.firmware.osinfo import booted_version, machine_arch
from hw.firmware.spool import SPOOL, Spool, UpdateState, check_version, is_downgrade, read_json, read_status, write_json
from mgmt.auth import Role
from mgmt.http import audit, get_bool, json_body, reply
from mgmt.problems import Problem
from mgmt.routes import JSON, ApiCall, Operation, Response
from mgmt.schemas import BOOL, STR

MAX_BUNDLE_BYTES = 2 << 30
FREE_MARGIN_BYTES = 64 << 20
CHUNK = 1 << 20
_BUSY: dict[int, asyncio.Lock] = {}  # one update at a time per management process


def spool() -> Spool:
    return Spool(Path(os.environ.get("SBC_UPDATE_SPOOL", str(SPOOL))))


def trusted_keys_dir() -> Path:
    return Path(os.environ.get("SBC_UPDATE_KEYS", str(TRUSTED_KEYS_DIR)))


def _lock(call: ApiCall) -> asyncio.Lock:
    return _BUSY.setdefault(id(call.state), asyncio.Lock())


def _flag(call: ApiCall, name: str, default: bool) -> bool:
    raw = call.request.query.get(name)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise Problem(400, f"?{name}= takes true or false", kind="invalid-field", field=name)


# ---- handlers ------------------------------------------------------------------------------------
async def get_firmware(call: ApiCall) -> web.StreamResponse:
    status = await asyncio.to_thread(read_status, spool())
    return reply({"version": booted_version(), "arch": machine_arch(), "update": status,
                  "max_bundle_bytes": MAX_BUNDLE_BYTES})  # fmt: skip


async def upload_update(call: ApiCall) -> web.StreamResponse:
    reboot = _flag(call, "reboot", True)
    downgrade = _flag(call, "allow_downgrade", False)
    request = call.request
    if request.content_type not in ("application/octet-stream", "application/x-tar"):
        raise Problem(415, "send the bundle as application/octet-stream", kind="unsupported-media-type")
    async with _begin(call) as target:
        await _receive(target, request.content, request.content_length)
        return await _accept(call, target, reboot=reboot, downgrade=downgrade, source="upload")


async def update_from_url(call: ApiCall) -> web.StreamResponse:
    body = await json_body(call, ("url", "reboot", "allow_downgrade"))
    url = body.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise Problem(422, "url: an http:// or https:// URL of a bundle", kind="invalid-field", field="url")
    # Strictly booleans: `"allow_downgrade": "no"` must not read as a yes.
    reboot, downgrade = get_bool(body, "reboot") is not False, get_bool(body, "allow_downgrade") is True
    async with _begin(call) as target:
        timeout = aiohttp.ClientTimeout(total=3600, sock_connect=30, sock_read=120)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
                if response.status != 200:
                    raise Problem(422, f"{url} answered {response.status} {response.reason}", kind="bad-bundle",
                                  field="url")  # fmt: skip
                await _receive(target, response.content, response.content_length)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Problem(422, f"cannot fetch {url}: {exc or type(exc).__name__}", kind="bad-bundle",
                          field="url") from None  # fmt: skip
        return await _accept(call, target, reboot=reboot, downgrade=downgrade, source=url)


# ---- the steps -----------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def _begin(call: ApiCall) -> Any:
    """One update at a time; a file in the spool for the body, removed unless it was accepted."""
    lock = _lock(call)
    sp = spool()
    if not sp.incoming.is_dir():
        # Not the firmware image (a developer's `sbc mgmt`): there is no installer to hand a bundle to.
        raise Problem(503, f"firmware updates need the appliance image: no update spool at {sp.incoming}",
                      kind="system-unavailable")  # fmt: skip
    if lock.locked() or sp.request.exists() or _busy(sp):
        raise Problem(409, "another firmware update is in progress", kind="busy")
    async with lock:
        target = sp.incoming / f"upload-{secrets.token_hex(8)}.part"
        try:
            yield target
        finally:
            target.unlink(missing_ok=True)


def _busy(sp: Spool) -> bool:
    status = read_json(sp.status) or {}
    started = float(status.get("time", 0) or 0)
    running = status.get("state") in (UpdateState.VERIFYING, UpdateState.INSTALLING)
    return running and time.time() - started < 3600


async def _receive(target: Path, content: aiohttp.StreamReader, length: int | None) -> None:
    if length is not None and length > MAX_BUNDLE_BYTES:
        raise Problem(413, f"a bundle is at most {MAX_BUNDLE_BYTES} bytes", kind="too-large")
    free = shutil.disk_usage(target.parent).free
    if length is not None and length + FREE_MARGIN_BYTES > free:
        raise Problem(507, f"{length} bytes do not fit in the update spool ({free} free)", kind="no-space")
    size = 0
    fd = await asyncio.to_thread(os.open, target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    with os.fdopen(fd, "wb") as out:
        async for chunk in content.iter_chunked(CHUNK):
            size += len(chunk)
            if size > MAX_BUNDLE_BYTES:
                raise Problem(413, f"a bundle is at most {MAX_BUNDLE_BYTES} bytes", kind="too-large")
            await asyncio.to_thread(out.write, chunk)
    if length is not None and size != length:
        raise Problem(400, f"the body ended after {size} of {length} bytes", kind="truncated")


async def _accept(call: ApiCall, target: Path, *, reboot: bool, downgrade: bool, source: str) -> web.StreamResponse:
    keys = load_trusted_keys(trusted_keys_dir())
    try:
        manifest = await asyncio.to_thread(verify_bundle, target, keys, arch=machine_arch())
    except BundleError as exc:
        audit(call, "firmware.update", outcome="refused", origin=source, reason=str(exc))
        raise Problem(422, f"refused: {exc}", kind="bad-bundle") from None
    booted = booted_version()
    why = check_version(manifest.version, booted, downgrade)
    older = is_downgrade(manifest.version, booted)
    action = "firmware.downgrade" if older else "firmware.update"
    if why:
        audit(call, action, outcome="refused", origin=source, version=manifest.version, previous=booted,
              allow_downgrade=downgrade, reason=why)  # fmt: skip
        raise Problem(409, f"refused: {why}", kind="version")
    sp = spool()
    name = f"sbc_{manifest.version}_{manifest.arch}.sbcupdate"
    await asyncio.to_thread(target.replace, sp.incoming / name)
    # The root side checks the version again and installs an older one only with allow_downgrade true.
    request = {"bundle": name, "version": manifest.version, "reboot": reboot, "allow_downgrade": downgrade and older,
               "requested_by": call.who.name, "source": source, "time": time.time()}  # fmt: skip
    write_json(sp.request, request)
    audit(call, action, origin=source, version=manifest.version, previous=booted, reboot=reboot,
          allow_downgrade=downgrade, signed_by=manifest.signed_by)  # fmt: skip
    return reply({"accepted": True, "version": manifest.version, "previous": booted, "reboot": reboot,
                  "signed_by": manifest.signed_by, "state": UpdateState.VERIFYING.value}, status=202)  # fmt: skip


# ---- the operation table (mgmt.operations adds these to OPERATIONS) -----------------------------
_UPDATE_STATUS = {"type": "object", "properties": {
    "state": {"type": ["string", "null"], "enum": [*(s.value for s in UpdateState), None]},
    "version": STR, "previous": STR, "booted": STR, "error": STR, "detail": STR, "time": {"type": "number"},
}}  # fmt: skip
_FIRMWARE = {"type": "object", "required": ["version", "arch", "update"], "properties": {
    "version": STR, "arch": STR, "update": _UPDATE_STATUS, "max_bundle_bytes": {"type": "integer"},
}}  # fmt: skip
_ACCEPTED = {"type": "object", "required": ["accepted", "version"], "properties": {
    "accepted": BOOL, "version": STR, "previous": STR, "reboot": BOOL, "signed_by": STR, "state": STR,
}}  # fmt: skip
_QUERY = (
    {"name": "reboot", "in": "query", "required": False, "schema": BOOL,
     "description": "reboot into the new slot when installed (default true)"},
    {"name": "allow_downgrade", "in": "query", "required": False, "schema": BOOL,
     "description": "install a version older than the running one (refused with 409 otherwise; audited)"},
)  # fmt: skip
_REFUSED = {
    409: Response("Another update is running, or the version is not newer", None, media="application/problem+json"),
    422: Response("The bundle is refused: signature, hash, architecture or format", None,
                  media="application/problem+json"),
}  # fmt: skip

OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", "/firmware", "getFirmware", "Running firmware version and the last update's outcome",
              "firmware", Role.READ_ONLY, get_firmware, {200: Response("OK", _FIRMWARE)}),
    Operation("POST", "/firmware/update", "uploadFirmwareUpdate",
              "Install a signed update bundle sent as the body (streamed; verified before anything changes)",
              "firmware", Role.ADMIN, upload_update, {202: Response("Verified and handed to the installer", _ACCEPTED),
                                                       **_REFUSED},
              body={"type": "string", "format": "binary"}, body_media="application/octet-stream",
              params=_QUERY),
    Operation("POST", "/firmware/update-from-url", "updateFirmwareFromUrl",
              "Fetch a signed update bundle from a URL and install it", "firmware", Role.ADMIN, update_from_url,
              {202: Response("Verified and handed to the installer", _ACCEPTED), **_REFUSED},
              body={"type": "object", "required": ["url"], "additionalProperties": False,
                    "properties": {"url": {"type": "string", "pattern": "^https?://[^\\s]+$", "maxLength": 2048},
                                   "reboot": BOOL, "allow_downgrade": BOOL}}, body_media=JSON),
)  # fmt: skip
