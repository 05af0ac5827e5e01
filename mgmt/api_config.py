"""The API's config store routes: the active text, staging, validation, diffs, commit-confirmed,
rollback, the revision history, export and import."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web

from mgmt.alarm_rules import CONFIG_ROLLBACK
from mgmt.http import audit, get_bool, get_int, get_str, json_body, no_content, path_int, query_int, read_limited, reply
from mgmt.problems import Problem
from mgmt.routes import ApiCall
from mgmt.store import MAX_CONFIG_BYTES, CommitResult, ConfigStore, InvalidConfig, PendingConfirm, Revision, StoreError
from sbc.config.model import SbcConfig

CONFIG_BODY = 2 * MAX_CONFIG_BYTES + 1024  # JSON escaping of the YAML text


def store_problem(exc: StoreError) -> Problem:
    if isinstance(exc, InvalidConfig):
        errors = [{"field": p.path, "line": p.line, "message": p.message} for p in exc.problems]
        first = exc.problems[0] if exc.problems else None
        return Problem(422, exc.detail, kind="invalid-config", title=exc.title, errors=errors,
                       field=first.path if first else "text")  # fmt: skip
    kind = {403: "forbidden", 404: "not-found", 409: "conflict", 502: "sbc-refused"}.get(exc.status, "config")
    return Problem(exc.status, exc.detail, kind=kind, title=exc.title, field=exc.field)


async def locked(call: ApiCall, fn: Callable[[], Any]) -> Any:
    """Run a store operation in a thread (it writes files and may wait on the SBC), one at a time."""
    async with call.state.lock:
        try:
            return await asyncio.to_thread(fn)
        except StoreError as exc:
            raise store_problem(exc) from None


def summary(config: SbcConfig) -> dict[str, int]:
    return {"realms": len(config.realms), "routes": len(config.routes), "header_rules": len(config.header_rules)}


def pending_json(p: PendingConfirm | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {"revision": p.revision, "previous": p.previous, "deadline": p.deadline, "timeout_s": p.timeout_s,
            "author": p.author}  # fmt: skip


def commit_json(result: CommitResult, mgmt_restart: list[str] | None = None) -> dict[str, Any]:
    reload = result.reload.as_dict()
    reload["restart_required"] = [*reload["restart_required"], *(mgmt_restart or [])]
    return {"revision": result.revision.as_dict(), "reload": reload, "pending": pending_json(result.pending)}


# What `sbc mgmt` itself bound or read at start: a change to these waits for its restart.
_MGMT_AT_START = ("http", "users_file", "audit")


def mgmt_restart_required(store: ConfigStore, before: str) -> list[str]:
    """The management settings a change from `before` to the active text leaves waiting for a restart of
    `sbc mgmt` (SNMP settings and thresholds are picked up at the next poll, see mgmt.monitor)."""
    try:
        old, new = store.validate(before).management, store.validate(store.active_text()).management
    except StoreError:
        return []
    return [f"management.{key} (restart sbc mgmt)" for key in _MGMT_AT_START if getattr(old, key) != getattr(new, key)]


def _changing(call: ApiCall, change: Callable[[], CommitResult]) -> Callable[[], tuple[CommitResult, list[str]]]:
    """`change` (a commit or a rollback, run by `locked`) and what it leaves for a restart of sbc mgmt."""

    def run() -> tuple[CommitResult, list[str]]:
        before = call.state.store.active_text()
        result = change()
        return result, mgmt_restart_required(call.state.store, before)

    return run


# ---- config --------------------------------------------------------------------------------------
async def get_config(call: ApiCall) -> web.StreamResponse:
    store = call.state.store
    cand = store.candidate()
    text = store.active_text()
    return reply({
        "text": text,
        "revision": store.active_revision(),
        "pending": pending_json(store.pending()),
        "candidate": None if cand is None else {"author": cand.author, "time": cand.time,
                                                "base_revision": cand.base_revision},
    })  # fmt: skip


async def get_candidate(call: ApiCall) -> web.StreamResponse:
    cand = call.state.store.candidate()
    if cand is None:
        raise Problem(404, "nothing is staged", kind="not-found")
    return reply({"text": cand.text, "author": cand.author, "time": cand.time, "base_revision": cand.base_revision})


async def stage(call: ApiCall) -> web.StreamResponse:
    body = await json_body(call, ("text",), CONFIG_BODY)
    return await _staged(call, get_str(body, "text", max_len=MAX_CONFIG_BYTES) or "", "config.stage")


async def _staged(call: ApiCall, text: str, action: str, **details: Any) -> web.StreamResponse:
    """Stage `text` as the candidate (validated by the store), audited as `action` either way."""
    state = call.state
    try:
        config = await locked(call, lambda: state.store.stage(text, call.who.name, state.clock()))
    except Problem as exc:
        audit(call, action, outcome="refused", problems=len(exc.errors or []), reason=exc.detail)
        raise
    audit(call, action, **details)
    return reply({"staged": True, "summary": summary(config)})


async def discard(call: ApiCall) -> web.StreamResponse:
    await locked(call, call.state.store.discard)
    audit(call, "config.discard")
    return no_content()


async def validate(call: ApiCall) -> web.StreamResponse:
    body = await json_body(call, ("text",), CONFIG_BODY)
    text = get_str(body, "text", required=False, max_len=MAX_CONFIG_BYTES)
    store = call.state.store
    if text is None:
        cand = store.candidate()
        if cand is None:
            raise Problem(404, "no text given and nothing is staged", kind="not-found", field="text")
        text = cand.text
    try:
        config = await asyncio.to_thread(store.validate, text)
    except InvalidConfig as exc:
        errors = [{"field": p.path, "line": p.line, "message": p.message} for p in exc.problems]
        return reply({"valid": False, "errors": errors, "summary": None})
    except StoreError as exc:
        raise store_problem(exc) from None
    return reply({"valid": True, "errors": [], "summary": summary(config)})


async def diff(call: ApiCall) -> web.StreamResponse:
    old = query_int(call, "from", None, 1, 10**9)
    new = query_int(call, "to", None, 1, 10**9)
    text = await locked(call, lambda: call.state.store.diff(old, new))
    return reply({"diff": text, "from": old, "to": new})


async def commit(call: ApiCall) -> web.StreamResponse:
    body = await json_body(call, ("comment", "confirm_timeout_s", "confirm"))
    comment = get_str(body, "comment", required=False, max_len=500) or ""
    timeout = get_int(body, "confirm_timeout_s", required=False, minimum=1, maximum=86400)
    if timeout is None and get_bool(body, "confirm"):
        timeout = call.state.default_confirm_timeout_s
    state = call.state
    try:
        result, mgmt_restart = await locked(
            call, _changing(call, lambda: state.store.commit(call.who.name, state.clock(), comment, timeout))
        )
    except Problem as exc:
        audit(call, "config.commit", outcome="refused", reason=exc.detail)
        raise
    state.config_changed.set()
    if result.pending is None:  # a change that stands: an earlier rollback alarm is over
        state.alarms.clear(CONFIG_ROLLBACK)
    audit(call, "config.commit", target=f"r{result.revision.number}", comment=comment, confirm_timeout_s=timeout,
          reload=result.reload.as_dict(), mgmt_restart_required=mgmt_restart)  # fmt: skip
    return reply(commit_json(result, mgmt_restart))


async def confirm(call: ApiCall) -> web.StreamResponse:
    revision: Revision = await locked(call, call.state.store.confirm)
    call.state.config_changed.set()
    call.state.alarms.clear(CONFIG_ROLLBACK)
    audit(call, "config.confirm", target=f"r{revision.number}")
    return reply({"confirmed": revision.number})


async def rollback(call: ApiCall) -> web.StreamResponse:
    body = await json_body(call, ("revision", "comment", "confirm_timeout_s"))
    number = get_int(body, "revision", minimum=1, maximum=10**9) or 1
    comment = get_str(body, "comment", required=False, max_len=500) or ""
    timeout = get_int(body, "confirm_timeout_s", required=False, minimum=1, maximum=86400)
    state = call.state
    try:
        result, mgmt_restart = await locked(
            call, _changing(call, lambda: state.store.rollback(number, call.who.name, state.clock(), comment, timeout))
        )
    except Problem as exc:
        audit(call, "config.rollback", outcome="refused", target=f"r{number}", reason=exc.detail)
        raise
    state.config_changed.set()
    audit(call, "config.rollback", target=f"r{number}", new_revision=result.revision.number)
    return reply(commit_json(result, mgmt_restart))


async def list_revisions(call: ApiCall) -> web.StreamResponse:
    store = call.state.store
    revisions = await asyncio.to_thread(store.revisions)
    return reply({"revisions": [r.as_dict() for r in revisions], "active": store.active_revision(),
                  "pending": pending_json(store.pending())})  # fmt: skip


async def get_revision(call: ApiCall) -> web.StreamResponse:
    number = path_int(call, "number")
    try:
        meta, text = call.state.store.revision(number)
    except StoreError as exc:
        raise store_problem(exc) from None
    return reply({**meta.as_dict(), "text": text})


async def export(call: ApiCall) -> web.StreamResponse:
    store = call.state.store
    audit(call, "config.export")
    name = f"sbc-config-r{store.active_revision()}.yaml"
    return web.Response(
        text=store.active_text(), content_type="application/yaml",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )  # fmt: skip


async def import_config(call: ApiCall) -> web.StreamResponse:
    raw = await read_limited(call.request, MAX_CONFIG_BYTES)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Problem(422, "the file is not UTF-8 text", kind="invalid-config", field="body") from None
    return await _staged(call, text, "config.import", size=len(raw))
