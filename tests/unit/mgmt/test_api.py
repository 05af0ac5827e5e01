"""The REST API in-process (aiohttp test server, plain HTTP): roles on every operation, CSRF, problem+json,
the config workflow, and the OpenAPI document against the router."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from mgmt.alarms import AlarmTable
from mgmt.app import build_app
from mgmt.audit import AuditLog
from mgmt.auth import Authenticator, LoginLimiter, Role, SessionTable, UserStore
from mgmt.http import CSRF_HEADER, SESSION_COOKIE
from mgmt.openapi import openapi_path
from mgmt.operations import OPERATIONS
from mgmt.routes import API
from mgmt.sbc_link import SbcLink
from mgmt.state import MgmtState
from mgmt.store import MAX_CONFIG_BYTES, ConfigStore
from sbc.control.contract import CallRecord, MediaMode, encode
from tests.unit.mgmt.conftest import BASE_CONFIG, FakeSbc, with_rule

PW = "correct horse battery"
Client = TestClient  # type: ignore[type-arg]


def make_state(tmp_path: Path, sbc: FakeSbc) -> MgmtState:
    active = tmp_path / "sbc.yaml"
    active.write_text(BASE_CONFIG)
    store = ConfigStore(active, tmp_path / "state" / "config", sbc)
    store.open(time.time())
    users = UserStore(tmp_path / "state" / "users.json", scrypt_n=2**10)
    for name, role in (("admin", Role.ADMIN), ("oper", Role.OPERATOR), ("viewer", Role.READ_ONLY)):
        users.create(name, role, PW, 0.0)
    store.is_admin = users.is_admin
    auth = Authenticator(users, SessionTable(), LoginLimiter(pair_failures=3, address_failures=50))
    return MgmtState(store=store, users=users, auth=auth, audit=AuditLog(tmp_path / "state" / "audit.log"),
                     sbc=SbcLink(tmp_path / "no-such.sock", timeout=0.5), alarms=AlarmTable())  # fmt: skip


@contextlib.asynccontextmanager
async def serve(state: MgmtState) -> AsyncIterator[Client]:
    # DummyCookieJar: tests send the session cookie by hand (the jar would hold back a Secure cookie on http).
    async with TestClient(TestServer(build_app(state)), cookie_jar=aiohttp.DummyCookieJar()) as client:
        yield client


def run_with(tmp_path: Path, body: Callable[[Client, MgmtState], Awaitable[None]]) -> None:
    async def main() -> None:
        state = make_state(tmp_path, FakeSbc())
        async with serve(state) as client:
            await body(client, state)

    asyncio.run(main())


def bearer(state: MgmtState, user: str) -> dict[str, str]:
    _, secret = state.users.create_token(user, "test", time.time())
    return {"Authorization": f"Bearer {secret}"}


async def login(client: Client, user: str, password: str = PW, **extra: Any) -> tuple[dict[str, str], str]:
    resp = await client.post(f"{API}/auth/login", json={"username": user, "password": password, **extra})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    token = resp.cookies[SESSION_COOKIE].value
    return {"Cookie": f"{SESSION_COOKIE}={token}", CSRF_HEADER: body["csrf_token"]}, resp.headers["Set-Cookie"]


async def problem(resp: aiohttp.ClientResponse, status: int) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/problem+json"
    body: dict[str, Any] = await resp.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: "1" if m[1] == "number" else "nobody", path)


SAMPLE_BODIES: dict[str, Any] = {
    "login": {"username": "x", "password": "y"},
    "changePassword": {"current_password": "wrong-one-here", "new_password": "another long one"},
    "enrollTotp": {"password": "wrong password"},
    "verifyTotp": {"code": "000000"},
    "createToken": {"name": "t", "user": "nobody"},
    "createUser": {"name": "x", "role": "admin", "password": "short"},
    "updateUser": {},
    "stageConfig": {"text": "realms: nope"},
    "validateConfig": {"text": "realms: nope"},
    "commitConfig": {"comment": "x"},
    "rollbackConfig": {"revision": 999},
}


# ---- OpenAPI ↔ router ----------------------------------------------------------------------------
def test_every_route_is_documented_and_every_documented_operation_is_routed(tmp_path: Path) -> None:
    state = make_state(tmp_path, FakeSbc())
    app = build_app(state)
    routed = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if path and path.startswith(API) and route.method != "HEAD":
            routed.add((route.method.lower(), openapi_path(path)))
    from mgmt.openapi import build_document

    doc = build_document(OPERATIONS)
    documented = {(method, path) for path, item in doc["paths"].items() for method in item}
    assert routed == documented
    assert doc["openapi"].startswith("3.1")
    for path, item in doc["paths"].items():
        params = set(re.findall(r"\{(\w+)\}", path))
        for method, op in item.items():
            assert "default" in op["responses"], (method, path)
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == params, (method, path)
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_openapi_is_served_without_login(tmp_path: Path) -> None:
    async def body(client: Client, state: MgmtState) -> None:
        resp = await client.get(f"{API}/openapi.json")
        assert resp.status == 200
        doc = await resp.json()
        assert f"{API}/config/commit" in doc["paths"]

    run_with(tmp_path, body)


# ---- RBAC on every operation ------------------------------------------------------------------------
def test_every_protected_operation_needs_authentication(tmp_path: Path) -> None:
    async def body(client: Client, state: MgmtState) -> None:
        for op in OPERATIONS:
            if op.role is None:
                continue
            resp = await client.request(op.method, concrete(op.full_path), json=SAMPLE_BODIES.get(op.operation_id))
            await problem(resp, 401)

    run_with(tmp_path, body)


@pytest.mark.parametrize("role", list(Role))
def test_roles_matrix(tmp_path: Path, role: Role) -> None:
    names = {Role.ADMIN: "admin", Role.OPERATOR: "oper", Role.READ_ONLY: "viewer"}

    async def body(client: Client, state: MgmtState) -> None:
        headers = bearer(state, names[role])
        for op in OPERATIONS:
            if op.role is None:
                continue
            resp = await client.request(
                op.method, concrete(op.full_path), json=SAMPLE_BODIES.get(op.operation_id), headers=headers
            )
            text = await resp.text()
            if role.allows(op.role):
                assert resp.status != 403 or op.operation_id in ("changePassword", "enrollTotp"), (op.path, text)
                assert resp.status < 500 or resp.status == 503, (op.path, text)
            else:
                assert resp.status == 403, (role, op.method, op.path, text)
                assert "needs the" in text

    run_with(tmp_path, body)


def test_read_only_cannot_commit_and_it_is_audited(tmp_path: Path) -> None:
    async def body(client: Client, state: MgmtState) -> None:
        resp = await client.post(f"{API}/config/commit", json={"comment": "x"}, headers=bearer(state, "viewer"))
        p = await problem(resp, 403)
        assert p["type"] == "urn:edge-sbc:problem:forbidden"
        assert state.audit.tail(1)[0]["outcome"] == "denied"

    run_with(tmp_path, body)


# ---- sessions, cookies, CSRF ----------------------------------------------------------------------
def test_session_cookie_flags_and_csrf(tmp_path: Path) -> None:
    async def body(client: Client, state: MgmtState) -> None:
        headers, set_cookie = await login(client, "oper")
        assert "HttpOnly" in set_cookie and "Secure" in set_cookie and "SameSite=Strict" in set_cookie
        cookie_only = {"Cookie": headers["Cookie"]}
        assert (await client.get(f"{API}/config", headers=cookie_only)).status == 200  # reads need no CSRF
        p = await problem(await client.put(f"{API}/config/candidate", json={"text": with_rule()},
                                           headers=cookie_only), 403)  # fmt: skip
        assert p["field"] == CSRF_HEADER
        wrong = {**cookie_only, CSRF_HEADER: "not-the-token"}
        await problem(await client.put(f"{API}/config/candidate", json={"text": with_rule()}, headers=wrong), 403)
        resp = await client.put(f"{API}/config/candidate", json={"text": with_rule()}, headers=headers)
        assert resp.status == 200
        session = await (await client.get(f"{API}/auth/session", headers=cookie_only)).json()
        assert session["csrf_token"] == headers[CSRF_HEADER] and session["role"] == "operator"
        assert (await client.post(f"{API}/auth/logout", headers=headers)).status == 204
        await problem(await client.get(f"{API}/config", headers=cookie_only), 401)

    run_with(tmp_path, body)


def test_login_rate_limit_answers_429(tmp_path: Path) -> None:
    async def body(client: Client, state: MgmtState) -> None:
        for _ in range(3):
            resp = await client.post(f"{API}/auth/login", json={"username": "oper", "password": "wrong password"})
            await problem(resp, 401)
        resp = await client.post(f"{API}/auth/login", json={"username": "oper", "password": PW})
        await problem(resp, 429)
        assert int(resp.headers["Retry-After"]) > 0
        log = (Path(state.audit.path)).read_text()
        assert PW not in log and "wrong password" not in log

    run_with(tmp_path, body)


def test_bad_logins_from_one_address_do_not_stop_the_right_login_from_another(tmp_path: Path) -> None:
    async def body(client: Client, state: MgmtState) -> None:
        url = client.make_url(f"{API}/auth/login")
        guesser = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        async with aiohttp.ClientSession(connector=guesser) as attacker:
            statuses = []
            for _ in range(5):
                async with attacker.post(url, json={"username": "admin", "password": "wrong password"}) as resp:
                    statuses.append(resp.status)
            assert statuses == [401, 401, 401, 429, 429]
        await login(client, "admin")  # from 127.0.0.1
        denied = [e for e in state.audit.tail(10) if e["outcome"] == "denied"]
        assert len(denied) == 5 and {e["source"] for e in denied} == {"127.0.0.2"}

    run_with(tmp_path, body)


def test_forced_password_change(tmp_path: Path) -> None:
    async def body(client: Client, state: MgmtState) -> None:
        state.users.set_password("oper", PW, must_change=True)
        headers, _ = await login(client, "oper")
        p = await problem(await client.get(f"{API}/status", headers=headers), 403)
        assert p["type"].endswith("password-change-required")
        resp = await client.post(f"{API}/auth/password", headers=headers,
                                 json={"current_password": PW, "new_password": "a brand new secret"})  # fmt: skip
        assert resp.status == 204, await resp.text()
        assert (await client.get(f"{API}/status", headers=headers)).status == 200

    run_with(tmp_path, body)


def test_totp_enrolment_then_required_at_login(tmp_path: Path) -> None:
    from mgmt import totp

    async def body(client: Client, state: MgmtState) -> None:
        headers, _ = await login(client, "admin")
        resp = await client.post(f"{API}/auth/totp/enroll", headers=headers, json={"password": PW})
        secret = (await resp.json())["secret"]
        code = totp.totp(totp.secret_key(secret), time.time())
        resp = await client.post(f"{API}/auth/totp/verify", headers=headers, json={"code": code})
        assert resp.status == 200 and (await resp.json())["totp_enrolled"]
        p = await problem(await client.post(f"{API}/auth/login", json={"username": "admin", "password": PW}), 401)
        assert p["field"] == "totp"
        state.users.totp_check("admin", "000000", 0)  # nothing: just keep mypy quiet about unused helpers
        later = time.time() + 30
        code = totp.totp(totp.secret_key(secret), later)
        resp = await client.post(f"{API}/auth/login", json={"username": "admin", "password": PW, "totp": code})
        assert resp.status == 200, await resp.text()

    run_with(tmp_path, body)


# ---- the config workflow over HTTP -----------------------------------------------------------------
def test_invalid_stage_is_422_with_lines(tmp_path: Path) -> None:
    async def body(client: Client, state: MgmtState) -> None:
        bad = BASE_CONFIG.replace("to: wan", "to: wna")
        resp = await client.put(f"{API}/config/candidate", json={"text": bad}, headers=bearer(state, "oper"))
        p = await problem(resp, 422)
        assert p["type"].endswith("invalid-config")
        assert {"field": "routes[0].to", "line": 13, "message": "unknown realm 'wna' (did you mean 'wan'?)"} in p[
            "errors"
        ]
        assert state.store.active_text() == BASE_CONFIG

    run_with(tmp_path, body)


def test_stage_diff_commit_confirm_rollback(tmp_path: Path) -> None:
    async def body(client: Client, state: MgmtState) -> None:
        h = bearer(state, "oper")
        assert (await client.put(f"{API}/config/candidate", json={"text": with_rule()}, headers=h)).status == 200
        diff = await (await client.get(f"{API}/config/diff", headers=h)).json()
        assert "+  - {realm: wan" in diff["diff"]
        valid = await (await client.post(f"{API}/config/validate", json={}, headers=h)).json()
        assert valid["valid"] and valid["summary"]["header_rules"] == 1
        resp = await client.post(f"{API}/config/commit", json={"comment": "branch id"}, headers=h)
        result = await resp.json()
        assert resp.status == 200 and result["revision"]["number"] == 2 and result["reload"]["applied"]
        revs = await (await client.get(f"{API}/config/revisions", headers=bearer(state, "viewer"))).json()
        assert [r["number"] for r in revs["revisions"]] == [1, 2] and revs["active"] == 2
        r2 = await (await client.get(f"{API}/config/revisions/2", headers=h)).json()
        assert r2["text"] == with_rule() and r2["comment"] == "branch id" and r2["author"] == "oper"
        resp = await client.post(f"{API}/config/rollback", json={"revision": 1}, headers=h)
        assert resp.status == 200 and state.store.active_text() == BASE_CONFIG
        await problem(await client.post(f"{API}/config/rollback", json={"revision": 42}, headers=h), 404)
        await problem(await client.post(f"{API}/config/confirm", headers=h), 409)
        export = await client.get(f"{API}/config/export", headers=h)
        assert export.content_type == "application/yaml" and await export.text() == BASE_CONFIG
        actions = [e["action"] for e in state.audit.tail(20)]
        assert {"config.stage", "config.commit", "config.rollback", "config.export"} <= set(actions)

    run_with(tmp_path, body)


def test_commit_confirmed_reverts_by_itself(tmp_path: Path) -> None:
    async def body(client: Client, state: MgmtState) -> None:
        h = bearer(state, "oper")
        await client.put(f"{API}/config/candidate", json={"text": with_rule()}, headers=h)
        resp = await client.post(f"{API}/config/commit", json={"comment": "risky", "confirm_timeout_s": 1},
                                 headers=h)  # fmt: skip
        assert (await resp.json())["pending"]["timeout_s"] == 1
        for _ in range(40):
            await asyncio.sleep(0.1)
            if state.store.pending() is None:
                break
        assert state.store.active_text() == BASE_CONFIG
        latest = state.store.latest()
        assert latest is not None and latest.kind == "auto-rollback" and latest.author == "system"

    run_with(tmp_path, body)


def test_import_is_streamed_and_validated(tmp_path: Path) -> None:
    async def body(client: Client, state: MgmtState) -> None:
        h = bearer(state, "oper")
        resp = await client.post(f"{API}/config/import", data=with_rule().encode(), headers=h)
        assert resp.status == 200, await resp.text()
        assert state.store.candidate() is not None
        await problem(await client.post(f"{API}/config/import", data=b"realms: [", headers=h), 422)
        big = b"#" * (MAX_CONFIG_BYTES + 10)
        await problem(await client.post(f"{API}/config/import", data=big, headers=h), 413)

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: refused while streaming
            for _ in range(40):
                yield b"#" * 65536 + b"\n"

        await problem(await client.post(f"{API}/config/import", data=chunks(), headers=h), 413)

    run_with(tmp_path, body)


def test_bad_bodies_are_problems_naming_the_field(tmp_path: Path) -> None:
    async def body(client: Client, state: MgmtState) -> None:
        h = bearer(state, "oper")
        p = await problem(await client.post(f"{API}/config/commit", json={"confirm_timeout_s": "soon"}, headers=h), 422)
        assert p["field"] == "confirm_timeout_s"
        p = await problem(await client.post(f"{API}/config/commit", json={"colour": 1}, headers=h), 422)
        assert p["field"] == "colour"
        as_json = {**h, "Content-Type": "application/json"}
        await problem(await client.post(f"{API}/config/commit", data=b"{", headers=as_json), 400)
        await problem(await client.post(f"{API}/config/commit", data=b"x=1", headers={**h, "Content-Type":
                                                                                       "text/plain"}), 415)  # fmt: skip
        await problem(await client.get(f"{API}/nothing-here", headers=h), 404)
        resp = await client.delete(f"{API}/status", headers=h)
        await problem(resp, 405)
        assert "GET" in resp.headers["Allow"]

    run_with(tmp_path, body)


def test_nulls_floats_repeats_and_bad_text_are_answered_not_crashed(tmp_path: Path) -> None:
    """What schemathesis found against the served document, kept as plain cases."""

    async def body(client: Client, state: MgmtState) -> None:
        h = bearer(state, "admin")
        p = await problem(await client.post(f"{API}/auth/tokens", json={"name": "x", "expires_in_s": None},
                                            headers=h), 422)  # fmt: skip
        assert p["field"] == "expires_in_s" and "null" in p["detail"]
        resp = await client.post(f"{API}/auth/tokens", json={"name": "x", "expires_in_s": 600.0}, headers=h)
        assert resp.status == 201, await resp.text()  # 600.0 is an integer to JSON Schema
        p = await problem(await client.get(f"{API}/logs?lines=5&lines=6", headers=h), 400)
        assert p["field"] == "lines"
        await problem(await client.get(f"{API}/logs?lines=", headers=h), 400)
        resp = await client.post(f"{API}/config/validate", json={"text": "realms: []\nx: \u0080"}, headers=h)
        result = await resp.json()
        assert resp.status == 200 and not result["valid"] and result["errors"][0]["line"] == 2
        raw = b'{"text": "\\ud800"}'  # a lone surrogate survives json.loads but not UTF-8
        p = await problem(await client.put(f"{API}/config/candidate", data=raw,
                                           headers={**h, "Content-Type": "application/json"}), 422)  # fmt: skip
        assert p["field"] == "text"

    run_with(tmp_path, body)


def test_a_change_to_the_https_listener_says_sbc_mgmt_needs_a_restart(tmp_path: Path) -> None:
    async def body(client: Client, state: MgmtState) -> None:
        h = bearer(state, "admin")
        text = BASE_CONFIG + "management:\n  http: {port: 9443}\n"
        assert (await client.put(f"{API}/config/candidate", json={"text": text}, headers=h)).status == 200
        result = await (await client.post(f"{API}/config/commit", json={}, headers=h)).json()
        assert result["reload"]["restart_required"] == ["management.http (restart sbc mgmt)"]
        resp = await client.post(f"{API}/config/rollback", json={"revision": 1}, headers=h)
        assert (await resp.json())["reload"]["restart_required"] == ["management.http (restart sbc mgmt)"]

    run_with(tmp_path, body)


def test_only_admins_change_the_management_section(tmp_path: Path) -> None:
    text = BASE_CONFIG + "management:\n  users_file: /tmp/elsewhere.json\n  http: {address: 0.0.0.0}\n"

    async def body(client: Client, state: MgmtState) -> None:
        oper, admin = bearer(state, "oper"), bearer(state, "admin")
        p = await problem(await client.put(f"{API}/config/candidate", json={"text": text}, headers=oper), 403)
        assert p["field"] == "management.http.address" and "management.users_file" in p["detail"]
        assert p["type"] == "urn:edge-sbc:problem:forbidden" and state.store.candidate() is None
        imported = await client.post(f"{API}/config/import", data=text.encode(),
                                     headers={**oper, "Content-Type": "text/plain"})  # fmt: skip
        await problem(imported, 403)
        moved = BASE_CONFIG.replace("user_agent: TestSBC", "user_agent: TestSBC\n  state_dir: /tmp/other")
        p = await problem(await client.put(f"{API}/config/candidate", json={"text": moved}, headers=oper), 403)
        assert p["field"] == "sbc.state_dir"
        # An admin's candidate is not the operator's to commit ...
        assert (await client.put(f"{API}/config/candidate", json={"text": text}, headers=admin)).status == 200
        p = await problem(await client.post(f"{API}/config/commit", json={}, headers=oper), 403)
        assert p["field"] == "management.http.address" and state.store.active_text() == BASE_CONFIG
        # ... the admin commits it, and the operator may not roll it back either.
        assert (await client.post(f"{API}/config/commit", json={}, headers=admin)).status == 200
        p = await problem(await client.post(f"{API}/config/rollback", json={"revision": 1}, headers=oper), 403)
        assert p["field"] == "management.http.address" and state.store.active_text() == text
        # Everything else stays the operator's: a header rule beside the (unchanged) management section.
        ruled = with_rule() + text[len(BASE_CONFIG) :]
        assert (await client.put(f"{API}/config/candidate", json={"text": ruled}, headers=oper)).status == 200
        assert (await client.post(f"{API}/config/commit", json={}, headers=oper)).status == 200
        refused = [e for e in state.audit.tail(50) if e["outcome"] == "refused"]
        assert [e["action"] for e in refused] == ["config.stage", "config.import", "config.stage", "config.commit",
                                                  "config.rollback"]  # fmt: skip
        assert all("management" in e["reason"] or "sbc.state_dir" in e["reason"] for e in refused)

    run_with(tmp_path, body)


def test_call_records_are_the_tail_of_the_sbcs_cdr_file(tmp_path: Path) -> None:
    async def body(client: Client, state: MgmtState) -> None:
        h = bearer(state, "viewer")
        assert (await (await client.get(f"{API}/cdrs", headers=h)).json()) == {"records": []}
        state.cdr_path = tmp_path / "cdr.jsonl"
        record = encode(CallRecord(
            recorded_at=1.0, call="c0", a_call_id="a@x", b_call_id="b@y", route="out", a_realm="lan",
            b_realm="wan", start="2026-01-01T00:00:00.000Z", answer=None, end="2026-01-01T00:00:01.000Z",
            duration_s=0.0, status=486, reason="busy", media_mode=MediaMode.ANCHOR, streams=(),
        ))  # fmt: skip
        lines = [json.dumps({**record, "call": f"c{i}"}) for i in range(5)] + ['{"call": "torn']
        lines.insert(4, '{"call": "from another version"}')
        state.cdr_path.write_text("\n".join(lines) + "\n")
        got = await (await client.get(f"{API}/cdrs?lines=4", headers=h)).json()
        # the torn last line and a line that is not a call record are left out
        assert [r["call"] for r in got["records"]] == ["c3", "c4"]
        assert got["records"][0] == {**record, "call": "c3"}
        rotated = [json.dumps({**record, "call": f"r{i}"}) for i in range(2)]
        state.cdr_path.with_name("cdr.jsonl.1").write_text("\n".join(rotated) + "\n")  # rotated by the SBC
        got = await (await client.get(f"{API}/cdrs?lines=9", headers=h)).json()
        assert [r["call"] for r in got["records"]] == ["r0", "r1", "c0", "c1", "c2", "c3", "c4"]

    run_with(tmp_path, body)


def test_ui_is_served_with_its_assets_under_the_csp(tmp_path: Path) -> None:
    async def body(client: Client, state: MgmtState) -> None:
        resp = await client.get("/")
        assert resp.status == 200 and resp.content_type == "text/html"
        html = await resp.text()
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert "<script>" not in html and "http://" not in html and "https://" not in html  # no CDN, no inline
        for asset in re.findall(r'(?:src|href)="(/ui/[^"]+)"', html):
            got = await client.get(asset)
            assert got.status == 200, asset
            text = await got.text()
            assert "http://" not in text and "https://" not in text, asset

    run_with(tmp_path, body)


def test_users_crud(tmp_path: Path) -> None:
    async def body(client: Client, state: MgmtState) -> None:
        h = bearer(state, "admin")
        resp = await client.post(f"{API}/users", json={"name": "carol", "role": "operator", "password": PW}, headers=h)
        assert resp.status == 201 and (await resp.json())["role"] == "operator"
        await problem(await client.post(f"{API}/users", json={"name": "carol", "role": "operator", "password": PW},
                                        headers=h), 409)  # fmt: skip
        resp = await client.patch(f"{API}/users/carol", json={"role": "read-only", "disabled": True}, headers=h)
        assert (await resp.json())["disabled"]
        users = await (await client.get(f"{API}/users", headers=h)).json()
        assert "carol" in [u["name"] for u in users["users"]]
        assert (await client.delete(f"{API}/users/carol", headers=h)).status == 204
        await problem(await client.get(f"{API}/users/carol", headers=h), 404)
        p = await problem(await client.delete(f"{API}/users/admin", headers=h), 409)
        assert "last enabled admin" in p["detail"]
        resp = await client.post(f"{API}/auth/tokens", json={"name": "ci", "user": "viewer"}, headers=h)
        token = await resp.json()
        assert resp.status == 201 and token["token"].startswith("sbc_")
        resp = await client.get(f"{API}/status", headers={"Authorization": f"Bearer {token['token']}"})
        assert resp.status == 200
        assert (await client.delete(f"{API}/auth/tokens/{token['id']}", headers=h)).status == 204
        await problem(await client.get(f"{API}/status", headers={"Authorization": f"Bearer {token['token']}"}), 401)

    run_with(tmp_path, body)


def test_status_without_sbc_still_answers(tmp_path: Path) -> None:
    async def body(client: Client, state: MgmtState) -> None:
        h = bearer(state, "viewer")
        status = await (await client.get(f"{API}/status", headers=h)).json()
        assert status["sbc"] is None and status["sbc_error"] and status["config"]["revision"] == 1
        assert status["host"]["memory"]["total_bytes"] > 0
        await problem(await client.get(f"{API}/calls", headers=h), 503)
        realms = await (await client.get(f"{API}/realms", headers=h)).json()
        assert [r["name"] for r in realms["realms"]] == ["lan", "wan"]

    run_with(tmp_path, body)
