"""The REST API, `/api/v1/...`: handlers and the operation table (with the schemas the OpenAPI shows).

Roles: read-only may read status, calls, registrations, realms, routes, header rules, alarms, the audit
log and the revision list; operators also read the config text (it holds SNMP keys) and stage,
validate, commit, confirm and roll back; admins also manage users and API tokens.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from mgmt import totp
from mgmt.alarm_rules import CONFIG_ROLLBACK
from mgmt.alarms import Alarm, AlarmTable
from mgmt.audit import AuditLog, tail_json_lines
from mgmt.auth import Authenticator, AuthError, Role, UserStore, check_password_policy, csrf_ok, valid_user_name
from mgmt.host import HostStats
from mgmt.monitor import Monitoring
from mgmt.problems import Problem
from mgmt.routes import JSON, Call, Principal
from mgmt.sbc_link import SbcLink, SbcUnavailable
from mgmt.store import MAX_CONFIG_BYTES, CommitResult, ConfigStore, InvalidConfig, PendingConfirm, Revision, StoreError
from mgmt.system_api import SystemServices
from sbc.config.model import SbcConfig

SESSION_COOKIE = "sbc_session"
CSRF_HEADER = "X-CSRF-Token"
SMALL_BODY = 64 * 1024
CONFIG_BODY = 2 * MAX_CONFIG_BYTES + 1024  # JSON escaping of the YAML text


@dataclass
class MgmtState:
    store: ConfigStore
    users: UserStore
    auth: Authenticator
    audit: AuditLog
    sbc: SbcLink
    alarms: AlarmTable
    monitor: Monitoring | None = None  # the SBC poll, alarm rules and SNMP agent (None in unit tests)
    cdr_path: Path | None = None  # the SBC's call records (<state_dir>/cdr.jsonl)
    system: SystemServices | None = None  # hw/: systemd units, hostname, time (None: answers 503)
    host: HostStats = field(default_factory=HostStats)
    default_confirm_timeout_s: int = 300
    clock: Callable[[], float] = time.time
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    config_changed: asyncio.Event = field(default_factory=asyncio.Event)  # wakes the confirm timer


# ---- request helpers -----------------------------------------------------------------------------
async def read_limited(request: web.Request, limit: int) -> bytes:
    """The body, streamed in chunks: refused (413) as soon as it passes `limit`, never read whole first."""
    if request.content_length is not None and request.content_length > limit:
        raise Problem(413, f"the body is larger than {limit} bytes", kind="too-large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            raise Problem(413, f"the body is larger than {limit} bytes", kind="too-large")
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(call: Call, allowed: tuple[str, ...], limit: int = SMALL_BODY) -> dict[str, Any]:
    request = call.request
    raw = await read_limited(request, limit)
    if not raw and request.content_type != JSON:
        return {}
    if request.content_type != JSON:
        raise Problem(415, f"send {JSON}", kind="unsupported-media-type")
    try:
        data = json.loads(raw) if raw else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(400, f"the body is not JSON: {exc}", kind="bad-json") from None
    if not isinstance(data, dict):
        raise Problem(422, "the body must be a JSON object", kind="invalid-field", field="")
    extra = sorted(set(data) - set(allowed))
    if extra:
        raise Problem(422, f"unknown field {extra[0]!r}; expected: {', '.join(allowed)}", kind="invalid-field",
                      field=extra[0])  # fmt: skip
    return data


def _bad(name: str, message: str) -> Problem:
    return Problem(422, f"{name}: {message}", kind="invalid-field", field=name)


def _present(body: dict[str, Any], name: str) -> Any:
    """The field's value; None when it is absent. An explicit null is refused: no field is nullable."""
    if name in body and body[name] is None:
        raise _bad(name, "must not be null (leave the field out instead)")
    return body.get(name)


def get_str(body: dict[str, Any], name: str, *, required: bool = True, max_len: int = 1024) -> str | None:
    value = _present(body, name)
    if value is None:
        if required:
            raise _bad(name, "is required")
        return None
    if not isinstance(value, str):
        raise _bad(name, "must be a string")
    if len(value) > max_len:
        raise _bad(name, f"must be at most {max_len} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(name, "is not valid Unicode text (a lone surrogate)") from None
    return value


def get_int(body: dict[str, Any], name: str, *, required: bool = True, minimum: int = 0,
            maximum: int = 2**31) -> int | None:  # fmt: skip
    value = _present(body, name)
    if value is None:
        if required:
            raise _bad(name, "is required")
        return None
    if isinstance(value, float) and value.is_integer():  # JSON Schema: 579.0 is an integer
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(name, "must be an integer")
    if not minimum <= value <= maximum:
        raise _bad(name, f"must be within {minimum}-{maximum}")
    return value


def get_bool(body: dict[str, Any], name: str) -> bool | None:
    value = _present(body, name)
    if value is not None and not isinstance(value, bool):
        raise _bad(name, "must be true or false")
    return value


def get_role(body: dict[str, Any], name: str = "role", *, required: bool = True) -> Role | None:
    value = get_str(body, name, required=required)
    if value is None:
        return None
    try:
        return Role(value)
    except ValueError:
        raise _bad(name, f"must be one of: {', '.join(r.value for r in Role)}") from None


def query_int(call: Call, name: str, default: int | None, minimum: int, maximum: int) -> int | None:
    values = call.request.query.getall(name, [])
    if not values:
        return default
    if len(values) > 1:
        raise Problem(400, f"{name}: give it once", kind="invalid-parameter", field=name)
    raw = values[0]
    try:
        value = int(raw)
    except ValueError:
        raise Problem(400, f"{name}: must be an integer", kind="invalid-parameter", field=name) from None
    if not minimum <= value <= maximum:
        raise Problem(400, f"{name}: must be within {minimum}-{maximum}", kind="invalid-parameter", field=name)
    return value


def path_int(call: Call, name: str) -> int:
    raw = call.request.match_info[name]
    if not raw.isdigit() or len(raw) > 9:
        raise Problem(404, f"{name} must be a revision number", kind="not-found", field=name)
    return int(raw)


def reply(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(data, default=str), content_type=JSON)


def no_content() -> web.Response:
    return web.Response(status=204)


def auth_problem(exc: AuthError) -> Problem:
    kinds = {401: "unauthorized", 403: "forbidden", 404: "not-found", 409: "conflict", 422: "invalid-field",
             429: "rate-limited"}  # fmt: skip
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
    return Problem(exc.status, exc.detail, kind=kinds.get(exc.status), field=exc.field, headers=headers)


def store_problem(exc: StoreError) -> Problem:
    if isinstance(exc, InvalidConfig):
        errors = [{"field": p.path, "line": p.line, "message": p.message} for p in exc.problems]
        first = exc.problems[0] if exc.problems else None
        return Problem(422, exc.detail, kind="invalid-config", title=exc.title, errors=errors,
                       field=first.path if first else "text")  # fmt: skip
    kind = {403: "forbidden", 404: "not-found", 409: "conflict", 502: "sbc-refused"}.get(exc.status, "config")
    return Problem(exc.status, exc.detail, kind=kind, title=exc.title, field=exc.field)


async def locked(call: Call, fn: Callable[[], Any]) -> Any:
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


def _changing(call: Call, change: Callable[[], CommitResult]) -> Callable[[], tuple[CommitResult, list[str]]]:
    """`change` (a commit or a rollback, run by `locked`) and what it leaves for a restart of sbc mgmt."""

    def run() -> tuple[CommitResult, list[str]]:
        before = call.state.store.active_text()
        result = change()
        return result, mgmt_restart_required(call.state.store, before)

    return run


def audit(call: Call, action: str, *, outcome: str = "ok", target: str | None = None, **details: Any) -> None:
    who = call.principal.user.name if call.principal else details.pop("user", None)
    call.state.audit.write(who, call.source, action, outcome=outcome, target=target, **details)


# ---- auth ----------------------------------------------------------------------------------------
def session_json(call: Call, csrf: str | None) -> dict[str, Any]:
    user = call.who
    return {
        "user": user.name,
        "role": user.role.value,
        "must_change_password": user.must_change_password,
        "totp_enrolled": user.totp_enrolled,
        "csrf_token": csrf,
        "auth": call.principal.via if call.principal else "session",
    }


async def login(call: Call) -> web.StreamResponse:
    body = await json_body(call, ("username", "password", "totp"))
    name = get_str(body, "username", max_len=64) or ""
    password = get_str(body, "password", max_len=1024) or ""
    code = get_str(body, "totp", required=False, max_len=16)
    state = call.state
    try:
        # scrypt takes ~0.1 s: off the event loop.
        result = await asyncio.to_thread(state.auth.login, name, password, code, call.source, state.clock())
    except AuthError as exc:
        if exc.status == 429 or (exc.status == 401 and not (exc.field == "totp" and not code)):
            state.audit.write(name, call.source, "auth.login", outcome="denied", reason=exc.detail)
        raise auth_problem(exc) from None
    state.audit.write(name, call.source, "auth.login")
    user = result.user
    response = reply(
        {
            "user": user.name,
            "role": user.role.value,
            "must_change_password": user.must_change_password,
            "totp_enrolled": user.totp_enrolled,
            "csrf_token": result.session.csrf,
            "auth": "session",
        }
    )
    response.set_cookie(
        SESSION_COOKIE, result.session.token, httponly=True, secure=True, samesite="Strict", path="/",
        max_age=state.auth.sessions.absolute_s,
    )  # fmt: skip
    return response


async def logout(call: Call) -> web.StreamResponse:
    principal = call.principal
    if principal is not None and principal.session is not None:
        call.state.auth.sessions.drop(principal.session.token)
    audit(call, "auth.logout")
    response = no_content()
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def get_session(call: Call) -> web.StreamResponse:
    session = call.principal.session if call.principal else None
    return reply(session_json(call, session.csrf if session else None))


async def change_password(call: Call) -> web.StreamResponse:
    body = await json_body(call, ("current_password", "new_password"))
    current = get_str(body, "current_password", max_len=1024) or ""
    new = get_str(body, "new_password", max_len=1024) or ""
    users = call.state.users
    name = call.who.name
    try:
        check_password_policy(new, "new_password")
        if await asyncio.to_thread(users.check_password, name, current) is None:
            audit(call, "auth.password", outcome="denied", reason="wrong current password")
            raise AuthError(403, "the current password is wrong", field="current_password")
        if new == current:
            raise AuthError(422, "the new password must differ from the current one", field="new_password")
        await asyncio.to_thread(users.set_password, name, new)
    except AuthError as exc:
        raise auth_problem(exc) from None
    session = call.principal.session if call.principal else None
    call.state.auth.sessions.drop_user(name, keep=session.token if session else None)
    audit(call, "auth.password", target=name)
    return no_content()


async def totp_enroll(call: Call) -> web.StreamResponse:
    body = await json_body(call, ("password",))
    password = get_str(body, "password", max_len=1024) or ""
    users = call.state.users
    name = call.who.name
    if await asyncio.to_thread(users.check_password, name, password) is None:
        audit(call, "auth.totp.enroll", outcome="denied", reason="wrong password")
        raise Problem(403, "the password is wrong", kind="forbidden", field="password")
    if call.who.totp_enrolled:
        raise Problem(409, "TOTP is enrolled already: an admin can reset it", kind="conflict")
    secret = users.totp_enroll(name)
    audit(call, "auth.totp.enroll")
    return reply({"secret": secret, "otpauth_uri": totp.otpauth_uri(secret, name)})


async def totp_verify(call: Call) -> web.StreamResponse:
    body = await json_body(call, ("code",))
    code = get_str(body, "code", max_len=16) or ""
    users = call.state.users
    name = call.who.name
    if users.get(name).totp_secret is None:
        raise Problem(409, "enroll first: POST /api/v1/auth/totp/enroll", kind="conflict")
    if not users.totp_activate(name, code, call.state.clock()):
        audit(call, "auth.totp.verify", outcome="denied")
        raise Problem(422, "wrong or already used code", kind="invalid-field", field="code")
    audit(call, "auth.totp.verify")
    return reply({"totp_enrolled": True})


async def list_tokens(call: Call) -> web.StreamResponse:
    return reply({"tokens": [t.public() for t in call.state.users.tokens()]})


async def create_token(call: Call) -> web.StreamResponse:
    body = await json_body(call, ("name", "user", "expires_in_s"))
    name = get_str(body, "name", max_len=100) or ""
    user = get_str(body, "user", required=False, max_len=64) or call.who.name
    expires = get_int(body, "expires_in_s", required=False, minimum=60, maximum=10 * 365 * 86400)
    try:
        token, secret = call.state.users.create_token(user, name, call.state.clock(), expires)
    except AuthError as exc:
        raise auth_problem(exc) from None
    audit(call, "auth.token.create", target=user, id=token.id, name=name)
    return reply({**token.public(), "token": secret}, 201)


async def revoke_token(call: Call) -> web.StreamResponse:
    token_id = call.request.match_info["id"]
    try:
        call.state.users.revoke_token(token_id)
    except AuthError as exc:
        raise auth_problem(exc) from None
    audit(call, "auth.token.revoke", target=token_id)
    return no_content()


# ---- users ---------------------------------------------------------------------------------------
async def list_users(call: Call) -> web.StreamResponse:
    return reply({"users": [u.public() for u in call.state.users.users()]})


async def create_user(call: Call) -> web.StreamResponse:
    body = await json_body(call, ("name", "role", "password", "must_change_password"))
    name = get_str(body, "name", max_len=64) or ""
    role = get_role(body) or Role.READ_ONLY
    password = get_str(body, "password", max_len=1024) or ""
    must_change = get_bool(body, "must_change_password")
    try:
        user = await asyncio.to_thread(call.state.users.create, name, role, password, call.state.clock(),
                                       must_change=True if must_change is None else must_change)  # fmt: skip
    except AuthError as exc:
        raise auth_problem(exc) from None
    audit(call, "users.create", target=name, role=role.value)
    return reply(user.public(), 201)


def _user_name(call: Call) -> str:
    name = call.request.match_info["name"]
    if not valid_user_name(name) or not call.state.users.exists(name):
        raise Problem(404, f"there is no user {name!r}", kind="not-found", field="name")
    return name


async def get_user(call: Call) -> web.StreamResponse:
    return reply(call.state.users.get(_user_name(call)).public())


async def update_user(call: Call) -> web.StreamResponse:
    name = _user_name(call)
    body = await json_body(call, ("role", "disabled", "password", "must_change_password", "totp_reset"))
    role = get_role(body, required=False)
    disabled = get_bool(body, "disabled")
    password = get_str(body, "password", required=False, max_len=1024)
    must_change = get_bool(body, "must_change_password")
    totp_reset = get_bool(body, "totp_reset")
    users = call.state.users
    try:
        if password is not None:
            check_password_policy(password)
        user = users.update(name, role=role, disabled=disabled)
        if password is not None or must_change is not None:
            if password is not None:
                user = await asyncio.to_thread(users.set_password, name, password,
                                               must_change=True if must_change is None else must_change)  # fmt: skip
            else:
                user = users.set_must_change(name, bool(must_change))
        if totp_reset:
            user = users.totp_disable(name)
    except AuthError as exc:
        raise auth_problem(exc) from None
    if role is not None or disabled or password is not None:
        keep = call.principal.session.token if call.principal and call.principal.session else None
        call.state.auth.sessions.drop_user(name, keep=keep if name == call.who.name else None)
    changed = sorted(k for k in body if body[k] is not None and k != "password")
    audit(call, "users.update", target=name, changed=changed, password_set=password is not None)
    return reply(user.public())


async def delete_user(call: Call) -> web.StreamResponse:
    name = _user_name(call)
    try:
        call.state.users.delete(name)
    except AuthError as exc:
        raise auth_problem(exc) from None
    call.state.auth.sessions.drop_user(name)
    audit(call, "users.delete", target=name)
    return no_content()


# ---- the SBC's live state ------------------------------------------------------------------------
async def sbc_query(call: Call, cmd: str) -> dict[str, Any]:
    try:
        return await call.state.sbc.query(cmd)
    except SbcUnavailable as exc:
        raise Problem(503, f"the SBC does not answer: {exc}", kind="sbc-unavailable") from None


async def get_status(call: Call) -> web.StreamResponse:
    state = call.state
    sbc: dict[str, Any] | None
    error = None
    try:
        sbc = await state.sbc.status()
    except SbcUnavailable as exc:
        sbc, error = None, str(exc)
    host = await asyncio.to_thread(state.host.snapshot)
    return reply({
        "sbc": sbc,
        "sbc_error": error,
        "host": host,
        "alarms": len(state.alarms.active()),
        "config": {"revision": state.store.active_revision(), "pending": pending_json(state.store.pending())},
    })  # fmt: skip


async def get_calls(call: Call) -> web.StreamResponse:
    return reply(await sbc_query(call, "calls"))


async def get_registrations(call: Call) -> web.StreamResponse:
    return reply(await sbc_query(call, "registrations"))


def _active_section(call: Call, key: str) -> list[Any]:
    try:
        data = yaml.safe_load(call.state.store.active_text())
    except (OSError, yaml.YAMLError) as exc:
        raise Problem(500, f"cannot read the active configuration: {exc}") from None
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, list) else []


async def get_realms(call: Call) -> web.StreamResponse:
    return reply({"realms": _active_section(call, "realms")})


async def get_routes(call: Call) -> web.StreamResponse:
    return reply({"routes": _active_section(call, "routes")})


async def get_header_rules(call: Call) -> web.StreamResponse:
    return reply({"header_rules": _active_section(call, "header_rules")})


def alarm_json(alarm: Alarm) -> dict[str, Any]:
    return {"id": str(alarm.id), "name": alarm.name, "severity": alarm.severity.value, "text": alarm.text,
            "raised_at": alarm.raised_at, "cleared_at": alarm.cleared_at}  # fmt: skip


async def get_alarms(call: Call) -> web.StreamResponse:
    return reply({"alarms": [alarm_json(a) for a in call.state.alarms.active()]})


async def clear_alarm(call: Call) -> web.StreamResponse:
    """Acknowledge an alarm: it leaves the table (and sbcAlarmCleared goes out). An alarm whose condition
    still holds is raised again by its rule at the next poll, with a new id."""
    raw = call.request.match_info["id"]
    found = next((a for a in call.state.alarms.active() if str(a.id) == raw), None)
    if found is None:
        raise Problem(404, f"there is no active alarm {raw!r}", kind="not-found", field="id")
    call.state.alarms.clear(found.name)
    audit(call, "alarms.clear", target=found.name, id=found.id)
    return no_content()


async def get_cdrs(call: Call) -> web.StreamResponse:
    lines = query_int(call, "lines", 100, 1, 1000) or 100
    path = call.state.cdr_path
    records = await asyncio.to_thread(tail_json_lines, path, lines) if path is not None else []
    return reply({"records": records})


async def get_logs(call: Call) -> web.StreamResponse:
    lines = query_int(call, "lines", 100, 1, 1000) or 100
    return reply({"entries": await asyncio.to_thread(call.state.audit.tail, lines)})


# ---- config --------------------------------------------------------------------------------------
async def get_config(call: Call) -> web.StreamResponse:
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


async def get_candidate(call: Call) -> web.StreamResponse:
    cand = call.state.store.candidate()
    if cand is None:
        raise Problem(404, "nothing is staged", kind="not-found")
    return reply({"text": cand.text, "author": cand.author, "time": cand.time, "base_revision": cand.base_revision})


async def stage(call: Call) -> web.StreamResponse:
    body = await json_body(call, ("text",), CONFIG_BODY)
    text = get_str(body, "text", max_len=MAX_CONFIG_BYTES) or ""
    state = call.state
    try:
        config = await locked(call, lambda: state.store.stage(text, call.who.name, state.clock()))
    except Problem as exc:
        audit(call, "config.stage", outcome="refused", problems=len(exc.errors or []), reason=exc.detail)
        raise
    audit(call, "config.stage")
    return reply({"staged": True, "summary": summary(config)})


async def discard(call: Call) -> web.StreamResponse:
    await locked(call, call.state.store.discard)
    audit(call, "config.discard")
    return no_content()


async def validate(call: Call) -> web.StreamResponse:
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


async def diff(call: Call) -> web.StreamResponse:
    old = query_int(call, "from", None, 1, 10**9)
    new = query_int(call, "to", None, 1, 10**9)
    text = await locked(call, lambda: call.state.store.diff(old, new))
    return reply({"diff": text, "from": old, "to": new})


async def commit(call: Call) -> web.StreamResponse:
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


async def confirm(call: Call) -> web.StreamResponse:
    revision: Revision = await locked(call, call.state.store.confirm)
    call.state.config_changed.set()
    call.state.alarms.clear(CONFIG_ROLLBACK)
    audit(call, "config.confirm", target=f"r{revision.number}")
    return reply({"confirmed": revision.number})


async def rollback(call: Call) -> web.StreamResponse:
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


async def list_revisions(call: Call) -> web.StreamResponse:
    store = call.state.store
    revisions = await asyncio.to_thread(store.revisions)
    return reply({"revisions": [r.as_dict() for r in revisions], "active": store.active_revision(),
                  "pending": pending_json(store.pending())})  # fmt: skip


async def get_revision(call: Call) -> web.StreamResponse:
    number = path_int(call, "number")
    try:
        meta, text = call.state.store.revision(number)
    except StoreError as exc:
        raise store_problem(exc) from None
    return reply({**meta.as_dict(), "text": text})


async def export(call: Call) -> web.StreamResponse:
    store = call.state.store
    audit(call, "config.export")
    name = f"sbc-config-r{store.active_revision()}.yaml"
    return web.Response(
        text=store.active_text(), content_type="application/yaml",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )  # fmt: skip


async def import_config(call: Call) -> web.StreamResponse:
    raw = await read_limited(call.request, MAX_CONFIG_BYTES)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Problem(422, "the file is not UTF-8 text", kind="invalid-config", field="body") from None
    state = call.state
    try:
        config = await locked(call, lambda: state.store.stage(text, call.who.name, state.clock()))
    except Problem as exc:
        audit(call, "config.import", outcome="refused", problems=len(exc.errors or []), reason=exc.detail)
        raise
    audit(call, "config.import", size=len(raw))
    return reply({"staged": True, "summary": summary(config)})


def authenticate(state: MgmtState, request: web.Request, needs_csrf: bool) -> Principal:
    """A bearer token, or a session cookie (plus the CSRF header when the request changes state)."""
    now = state.clock()
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "bearer" or not credentials:
            raise Problem(401, "use `Authorization: Bearer <token>`", kind="unauthorized",
                          headers={"WWW-Authenticate": 'Bearer realm="sbc"'})  # fmt: skip
        found = state.users.check_token(credentials.strip(), now)
        if found is None:
            raise Problem(401, "the API token is unknown, revoked or expired", kind="unauthorized",
                          headers={"WWW-Authenticate": 'Bearer realm="sbc", error="invalid_token"'})  # fmt: skip
        return Principal(found[0], token=found[1])
    cookie = request.cookies.get(SESSION_COOKIE)
    session = state.auth.sessions.get(cookie, now) if cookie else None
    if session is None:
        raise Problem(401, "log in first (or send an API token)", kind="unauthorized",
                      headers={"WWW-Authenticate": 'Bearer realm="sbc"'})  # fmt: skip
    if not state.users.exists(session.user):
        state.auth.sessions.drop(session.token)
        raise Problem(401, "the session's user is gone", kind="unauthorized")
    user = state.users.get(session.user)
    if user.disabled:
        state.auth.sessions.drop(session.token)
        raise Problem(401, "the account is disabled", kind="unauthorized")
    if needs_csrf and not csrf_ok(session, request.headers.get(CSRF_HEADER)):
        raise Problem(403, f"missing or wrong {CSRF_HEADER} header", kind="csrf", field=CSRF_HEADER)
    return Principal(user, session=session)
