"""The API's session and account routes: log in and out, the session, password changes, TOTP
enrolment, API tokens, and the users an admin manages."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from mgmt import totp
from mgmt.auth import AuthError, Role, check_password_policy, valid_user_name
from mgmt.http import SESSION_COOKIE, audit, get_bool, get_int, get_str, invalid_field, json_body, no_content, reply
from mgmt.problems import Problem
from mgmt.routes import ApiCall


def auth_problem(exc: AuthError) -> Problem:
    kinds = {401: "unauthorized", 403: "forbidden", 404: "not-found", 409: "conflict", 422: "invalid-field",
             429: "rate-limited"}  # fmt: skip
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
    return Problem(exc.status, exc.detail, kind=kinds.get(exc.status), field=exc.field, headers=headers)


def get_role(body: dict[str, Any], name: str = "role", *, required: bool = True) -> Role | None:
    value = get_str(body, name, required=required)
    if value is None:
        return None
    try:
        return Role(value)
    except ValueError:
        raise invalid_field(name, f"must be one of: {', '.join(r.value for r in Role)}") from None


# ---- auth ----------------------------------------------------------------------------------------
def session_json(call: ApiCall, csrf: str | None) -> dict[str, Any]:
    user = call.who
    return {
        "user": user.name,
        "role": user.role.value,
        "must_change_password": user.must_change_password,
        "totp_enrolled": user.totp_enrolled,
        "csrf_token": csrf,
        "auth": call.principal.via if call.principal else "session",
    }


async def login(call: ApiCall) -> web.StreamResponse:
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


async def logout(call: ApiCall) -> web.StreamResponse:
    principal = call.principal
    if principal is not None and principal.session is not None:
        call.state.auth.sessions.drop(principal.session.token)
    audit(call, "auth.logout")
    response = no_content()
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def get_session(call: ApiCall) -> web.StreamResponse:
    session = call.principal.session if call.principal else None
    return reply(session_json(call, session.csrf if session else None))


async def change_password(call: ApiCall) -> web.StreamResponse:
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


async def totp_enroll(call: ApiCall) -> web.StreamResponse:
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


async def totp_verify(call: ApiCall) -> web.StreamResponse:
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


async def list_tokens(call: ApiCall) -> web.StreamResponse:
    return reply({"tokens": [t.public() for t in call.state.users.tokens()]})


async def create_token(call: ApiCall) -> web.StreamResponse:
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


async def revoke_token(call: ApiCall) -> web.StreamResponse:
    token_id = call.request.match_info["id"]
    try:
        call.state.users.revoke_token(token_id)
    except AuthError as exc:
        raise auth_problem(exc) from None
    audit(call, "auth.token.revoke", target=token_id)
    return no_content()


# ---- users ---------------------------------------------------------------------------------------
async def list_users(call: ApiCall) -> web.StreamResponse:
    return reply({"users": [u.public() for u in call.state.users.users()]})


async def create_user(call: ApiCall) -> web.StreamResponse:
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


def _user_name(call: ApiCall) -> str:
    name = call.request.match_info["name"]
    if not valid_user_name(name) or not call.state.users.exists(name):
        raise Problem(404, f"there is no user {name!r}", kind="not-found", field="name")
    return name


async def get_user(call: ApiCall) -> web.StreamResponse:
    return reply(call.state.users.get(_user_name(call)).public())


async def update_user(call: ApiCall) -> web.StreamResponse:
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


async def delete_user(call: ApiCall) -> web.StreamResponse:
    name = _user_name(call)
    try:
        call.state.users.delete(name)
    except AuthError as exc:
        raise auth_problem(exc) from None
    call.state.auth.sessions.drop_user(name)
    audit(call, "users.delete", target=name)
    return no_content()
