"""The HTTP side every API module shares: who is calling (a bearer token or a session cookie with its
CSRF header) and whether their role may, the request body and parameters read with a clear 4xx for
whatever does not fit, JSON answers, and the audit line of a change. Errors are `Problem`s, which
the error middleware answers as RFC 9457 problem+json."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from mgmt.auth import csrf_ok
from mgmt.problems import Problem
from mgmt.routes import JSON, ApiCall, Operation, Principal
from mgmt.state import MgmtState

SESSION_COOKIE = "sbc_session"
CSRF_HEADER = "X-CSRF-Token"
SMALL_BODY = 64 * 1024


# ---- who may call --------------------------------------------------------------------------------
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


def authorize(state: MgmtState, request: web.Request, op: Operation) -> Principal | None:
    """The caller of `op` when it may call it (None for a public operation); a 401 or 403 Problem when not."""
    if op.role is None:
        return None
    principal = authenticate(state, request, op.changes_state)
    user = principal.user
    if user.must_change_password and not op.restricted_ok:
        raise Problem(403, "change your password first: POST /api/v1/auth/password",
                      kind="password-change-required")  # fmt: skip
    if not user.role.allows(op.role):
        state.audit.write(user.name, request.remote, f"{op.method} {op.path}", outcome="denied",
                          reason=f"needs role {op.role.value}")  # fmt: skip
        raise Problem(403, f"this needs the {op.role.value} role; {user.name} is {user.role.value}",
                      kind="forbidden")  # fmt: skip
    return principal


# ---- request bodies and parameters ---------------------------------------------------------------
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


async def json_body(call: ApiCall, allowed: tuple[str, ...], limit: int = SMALL_BODY) -> dict[str, Any]:
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


def invalid_field(name: str, message: str) -> Problem:
    return Problem(422, f"{name}: {message}", kind="invalid-field", field=name)


def _present(body: dict[str, Any], name: str) -> Any:
    """The field's value; None when it is absent. An explicit null is refused: no field is nullable."""
    if name in body and body[name] is None:
        raise invalid_field(name, "must not be null (leave the field out instead)")
    return body.get(name)


def get_str(body: dict[str, Any], name: str, *, required: bool = True, max_len: int = 1024) -> str | None:
    value = _present(body, name)
    if value is None:
        if required:
            raise invalid_field(name, "is required")
        return None
    if not isinstance(value, str):
        raise invalid_field(name, "must be a string")
    if len(value) > max_len:
        raise invalid_field(name, f"must be at most {max_len} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid_field(name, "is not valid Unicode text (a lone surrogate)") from None
    return value


def get_int(body: dict[str, Any], name: str, *, required: bool = True, minimum: int = 0,
            maximum: int = 2**31) -> int | None:  # fmt: skip
    value = _present(body, name)
    if value is None:
        if required:
            raise invalid_field(name, "is required")
        return None
    if isinstance(value, float) and value.is_integer():  # JSON Schema: 579.0 is an integer
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_field(name, "must be an integer")
    if not minimum <= value <= maximum:
        raise invalid_field(name, f"must be within {minimum}-{maximum}")
    return value


def get_bool(body: dict[str, Any], name: str) -> bool | None:
    value = _present(body, name)
    if value is not None and not isinstance(value, bool):
        raise invalid_field(name, "must be true or false")
    return value


def query_int(call: ApiCall, name: str, default: int | None, minimum: int, maximum: int) -> int | None:
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


def path_int(call: ApiCall, name: str) -> int:
    raw = call.request.match_info[name]
    if not raw.isdigit() or len(raw) > 9:
        raise Problem(404, f"{name} must be a revision number", kind="not-found", field=name)
    return int(raw)


# ---- answers and the audit log -------------------------------------------------------------------
def reply(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(data, default=str), content_type=JSON)


def no_content() -> web.Response:
    return web.Response(status=204)


def audit(call: ApiCall, action: str, *, outcome: str = "ok", target: str | None = None, **details: Any) -> None:
    who = call.principal.user.name if call.principal else details.pop("user", None)
    call.state.audit.write(who, call.source, action, outcome=outcome, target=target, **details)
