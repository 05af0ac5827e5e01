"""`sbc mgmt`: the management process — REST API, web UI and the commit-confirmed timer over HTTPS.

It reads the SBC's own config file (the `management:` section and `sbc.state_dir`), keeps its state
beside the SBC's (revisions, users, audit log, certificate), and reaches the SBC only through the
control socket.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from mgmt.alarm_rules import raise_config_rollback
from mgmt.alarms import AlarmTable
from mgmt.audit import AUDIT_FILE, AuditLog
from mgmt.auth import Authenticator, LoginLimiter, SessionTable, UserStore, first_run
from mgmt.http import authorize
from mgmt.monitor import Monitoring
from mgmt.openapi import build_document
from mgmt.operations import OPERATIONS
from mgmt.problems import Problem
from mgmt.routes import API, ApiCall, Operation
from mgmt.sbc_link import SbcLink
from mgmt.state import STATE, MgmtState
from mgmt.store import ConfigStore, PendingConfirm, Revision
from mgmt.system_api import hw_background
from mgmt.system_services import real_system_services
from mgmt.tls import ensure_self_signed, server_context
from sbc.config.loader import load_config
from sbc.config.model import SbcConfig
from sbc.yamlsource import ConfigError

log = logging.getLogger("mgmt")
WEB_DIR = Path(__file__).resolve().parent / "web"
# The UI loads only its own files; no inline script, no framing, no third-party anything.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


# ---- middlewares ---------------------------------------------------------------------------------
@web.middleware
async def problems(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every error as RFC 9457 problem+json, also aiohttp's own (404, 405, 413)."""
    try:
        return await handler(request)
    except Problem as exc:
        return exc.response(request.path)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return Problem(exc.status, exc.reason, kind=None, headers=headers).response(request.path)
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return Problem(500, "internal error: see the management log").response(request.path)


@web.middleware
async def security_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    if request.path.startswith(API):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _wrap(op: Operation) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        return await op.handler(ApiCall(request, state, authorize(state, request, op)))

    handle.__name__ = op.operation_id
    return handle


def build_app(state: MgmtState, operations: tuple[Operation, ...] = OPERATIONS) -> web.Application:
    app = web.Application(middlewares=[security_headers, problems])
    app[STATE] = state
    for op in operations:
        app.router.add_route(op.method, op.full_path, _wrap(op), name=op.operation_id)
    document = build_document(operations)
    body = json.dumps(document)

    async def openapi(request: web.Request) -> web.StreamResponse:
        return web.Response(text=body, content_type="application/json")

    app.router.add_get(f"{API}/openapi.json", openapi, name="getOpenApi")

    async def index(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(WEB_DIR / "index.html")

    app.router.add_get("/", index, name="ui")
    if WEB_DIR.is_dir():
        app.router.add_static("/ui/", WEB_DIR, name="ui-static")
    app.cleanup_ctx.append(_confirm_timer)
    app.cleanup_ctx.append(_monitoring)
    app.cleanup_ctx.append(hw_background)
    return app


async def _monitoring(app: web.Application) -> AsyncIterator[None]:
    monitor = app[STATE].monitor
    if monitor is not None:
        await monitor.start()
    yield
    if monitor is not None:
        await monitor.close()


# ---- commit-confirmed --------------------------------------------------------------------------
async def _confirm_timer(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(watch_confirm_deadline(app[STATE]), name="commit-confirmed timer")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def watch_confirm_deadline(state: MgmtState, max_sleep: float = 3600.0) -> None:
    """Sleep until the pending deadline (or a change wakes us), then let the store revert if it ran out."""
    while True:
        state.config_changed.clear()
        deadline = state.store.next_deadline()
        delay = max_sleep if deadline is None else max(0.0, deadline - state.clock())
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.config_changed.wait(), timeout=min(delay, max_sleep))
        if deadline is not None and state.clock() >= deadline:
            async with state.lock:
                try:
                    await asyncio.to_thread(state.store.expire, state.clock())
                except Exception:  # keep the timer alive: the next round tries again
                    log.exception("automatic rollback failed")
                    await asyncio.sleep(5)


def _on_auto_rollback(audit: AuditLog, alarms: AlarmTable) -> Callable[[Revision, PendingConfirm], None]:
    def handle(revision: Revision, pending: PendingConfirm) -> None:
        audit.write("system", None, "config.auto-rollback", target=f"r{pending.revision}",
                    new_revision=revision.number, restored=pending.previous, reason=revision.comment)  # fmt: skip
        raise_config_rollback(alarms, pending.previous, revision.comment)
        log.warning("%s", revision.comment)

    return handle


# ---- start-up ------------------------------------------------------------------------------------
def make_state(
    config: SbcConfig,
    config_path: Path,
    *,
    alarms: AlarmTable | None = None,
    monitoring: bool = True,
    scrypt_n: int | None = None,
    env: dict[str, str] | None = None,
    clock: Callable[[], float] = time.time,
) -> MgmtState:
    state_dir = config.management_dir
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    audit = AuditLog(state_dir / AUDIT_FILE, max_bytes=config.management.audit.max_bytes,
                     keep=config.management.audit.keep)  # fmt: skip
    alarms = alarms if alarms is not None else AlarmTable()
    users = UserStore(config.management.users_path(config.state_dir), **({"scrypt_n": scrypt_n} if scrypt_n else {}))
    how = first_run(users, clock(), env=env)
    if how is not None:
        audit.write("system", None, "users.create", target="admin", role="admin", how=how)
    link = SbcLink(config.control_path)
    store = ConfigStore(
        config_path,
        state_dir / "config",
        link.reload,
        on_auto_rollback=_on_auto_rollback(audit, alarms),
        is_admin=users.is_admin,
    )
    store.open(clock())
    auth = Authenticator(users, SessionTable(), LoginLimiter())
    monitor = Monitoring(config, config_path, alarms) if monitoring else None
    system = real_system_services(state_dir) if monitoring else None
    return MgmtState(store=store, users=users, auth=auth, audit=audit, sbc=link, alarms=alarms, monitor=monitor,
                     cdr_path=config.state_dir / "cdr.jsonl",  # the SBC's (group-readable)
                     system=system, default_confirm_timeout_s=config.management.confirm_timeout_s,
                     clock=clock)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sbc mgmt", description="REST API, web UI and config store of the SBC")
    parser.add_argument("--config", type=Path, required=True, help="the SBC's YAML config file (the active one)")
    args = parser.parse_args(argv)
    return run(args.config)


def run(config_path: Path) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    config_path = config_path.resolve()
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(str(problem), file=sys.stderr)
        print("sbc mgmt: refusing to start: the active configuration has errors", file=sys.stderr)
        return 2
    http = config.management.http
    state = make_state(config, config_path)
    if http.tls_certificate is not None and http.tls_key is not None:
        cert, key = http.tls_certificate, http.tls_key
    else:
        cert, key = ensure_self_signed(config.management_dir / "tls", str(http.address))
    try:
        ctx = server_context(cert, key)
    except (OSError, ValueError) as exc:
        print(f"sbc mgmt: cannot use the certificate {cert}: {exc}", file=sys.stderr)
        return 1
    app = build_app(state)
    host = str(http.address)
    url_host = f"[{host}]" if ":" in host else host

    def announce(_: Any) -> None:
        print(f"sbc mgmt: listening on https://{url_host}:{http.port}/", flush=True)

    try:
        web.run_app(app, host=host, port=http.port, ssl_context=ctx, print=announce, access_log=None)
    except OSError as exc:
        print(f"sbc mgmt: cannot listen on {host}:{http.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
