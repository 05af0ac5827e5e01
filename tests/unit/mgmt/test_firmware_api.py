"""The firmware update endpoints in-process: a streamed upload that verifies is handed to the spool;
bad bundles, wrong versions and wrong roles are refused with the reason and leave nothing behind."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hw.firmware.bundle import payload_names, public_pem, write_bundle
from mgmt import firmware
from mgmt.routes import API
from mgmt.state import MgmtState
from tests.unit.mgmt.conftest import FakeSbc
from tests.unit.mgmt.test_api import Client, bearer, make_state, problem, serve

KEY = Ed25519PrivateKey.generate()


@pytest.fixture(autouse=True)
def _spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "build.pem").write_bytes(public_pem(KEY))
    (tmp_path / "spool" / "incoming").mkdir(parents=True)
    monkeypatch.setenv("SBC_UPDATE_SPOOL", str(tmp_path / "spool"))
    monkeypatch.setenv("SBC_UPDATE_KEYS", str(keys))
    monkeypatch.setattr(firmware, "booted_version", lambda: "0.1.0")
    monkeypatch.setattr(firmware, "machine_arch", lambda: "x86-64")


def bundle(tmp_path: Path, version: str = "0.2.0", key: Ed25519PrivateKey = KEY, size: int = 3 << 20) -> bytes:
    root, uki = payload_names(version)
    work = tmp_path / f"payload-{version}"
    work.mkdir(exist_ok=True)
    (work / root).write_bytes(b"R" * size)  # bigger than aiohttp's 1 MiB body limit
    (work / uki).write_bytes(b"MZ")
    out = work / "b.sbcupdate"
    write_bundle(out, version, "x86-64", [work / root, work / uki], key)
    return out.read_bytes()


def run_with(tmp_path: Path, body: Callable[[Client, MgmtState], Awaitable[None]]) -> None:
    async def main() -> None:
        state = make_state(tmp_path, FakeSbc())
        async with serve(state) as client:
            await body(client, state)

    asyncio.run(main())


def upload(client: Client, headers: dict[str, str], data: bytes, query: str = "") -> object:
    return client.post(f"{API}/firmware/update{query}", data=data,
                       headers={**headers, "Content-Type": "application/octet-stream"})  # fmt: skip


def test_a_good_bundle_is_streamed_verified_and_handed_over(tmp_path: Path) -> None:
    data = bundle(tmp_path)

    async def body(client: Client, state: MgmtState) -> None:
        resp = await upload(client, bearer(state, "admin"), data)  # type: ignore[misc]
        assert resp.status == 202, await resp.text()
        answer = await resp.json()
        assert answer["version"] == "0.2.0" and answer["previous"] == "0.1.0" and answer["reboot"] is True
        spool = tmp_path / "spool" / "incoming"
        request = json.loads((spool / "request.json").read_text())
        assert request["bundle"] == "sbc_0.2.0_x86-64.sbcupdate" and request["requested_by"] == "admin"
        assert (spool / request["bundle"]).read_bytes() == data
        again = await upload(client, bearer(state, "admin"), data)  # type: ignore[misc]
        await problem(again, 409)
        resp = await client.get(f"{API}/firmware", headers=bearer(state, "viewer"))
        assert (await resp.json())["version"] == "0.1.0"
        assert "firmware.update" in (tmp_path / "state" / "audit.log").read_text()

    run_with(tmp_path, body)


@pytest.mark.parametrize(
    ("make", "status", "words"),
    [(lambda p: bundle(p, key=Ed25519PrivateKey.generate()), 422, "does not verify"),
     (lambda p: bundle(p)[:-5000], 422, "refused"),
     (lambda p: bundle(p, version="0.1.0"), 409, "running now"),
     (lambda p: bundle(p, version="0.0.5"), 409, "older")],
)  # fmt: skip
def test_bad_bundles_are_refused_and_nothing_is_kept(tmp_path: Path, make: Callable[[Path], bytes], status: int,
                                                     words: str) -> None:  # fmt: skip
    data = make(tmp_path)

    async def body(client: Client, state: MgmtState) -> None:
        resp = await upload(client, bearer(state, "admin"), data)  # type: ignore[misc]
        detail = (await problem(resp, status))["detail"]
        assert words in detail
        assert list((tmp_path / "spool" / "incoming").iterdir()) == []

    run_with(tmp_path, body)


def test_without_the_appliance_spool_uploads_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SBC_UPDATE_SPOOL", str(tmp_path / "not-an-appliance"))

    async def body(client: Client, state: MgmtState) -> None:
        resp = await upload(client, bearer(state, "admin"), bundle(tmp_path))  # type: ignore[misc]
        assert "appliance image" in (await problem(resp, 503))["detail"]

    run_with(tmp_path, body)


def test_operators_may_not_install_firmware(tmp_path: Path) -> None:
    async def body(client: Client, state: MgmtState) -> None:
        resp = await upload(client, bearer(state, "oper"), b"x")  # type: ignore[misc]
        await problem(resp, 403)

    run_with(tmp_path, body)


def test_update_from_url_streams_from_a_server(tmp_path: Path) -> None:
    data = bundle(tmp_path)

    async def body(client: Client, state: MgmtState) -> None:
        async def serve_bundle(request: web.Request) -> web.StreamResponse:
            return web.Response(body=data)

        async def missing(request: web.Request) -> web.StreamResponse:
            raise web.HTTPNotFound()

        app = web.Application()
        app.router.add_get("/b.sbcupdate", serve_bundle)
        app.router.add_get("/missing", missing)
        async with TestServer(app, host="127.0.0.1") as server:
            base = f"http://127.0.0.1:{server.port}"
            resp = await client.post(f"{API}/firmware/update-from-url", json={"url": f"{base}/missing"},
                                     headers=bearer(state, "admin"))  # fmt: skip
            assert "404" in (await problem(resp, 422))["detail"]
            resp = await client.post(f"{API}/firmware/update-from-url",
                                     json={"url": f"{base}/b.sbcupdate", "reboot": False},
                                     headers=bearer(state, "admin"))  # fmt: skip
            assert resp.status == 202, await resp.text()
            assert (await resp.json())["reboot"] is False

    run_with(tmp_path, body)


def audit_entries(tmp_path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (tmp_path / "state" / "audit.log").read_text().splitlines()]


def test_a_downgrade_needs_the_explicit_flag_and_is_audited(tmp_path: Path) -> None:
    data = bundle(tmp_path, version="0.0.5")

    async def body(client: Client, state: MgmtState) -> None:
        admin = bearer(state, "admin")
        for query in ("", "?allow_downgrade=false"):
            refused = await problem(await upload(client, admin, data, query), 409)  # type: ignore[arg-type]
            assert "older" in refused["detail"]
        await problem(await upload(client, admin, data, "?allow_downgrade=maybe"), 400)  # type: ignore[arg-type]
        denied = [e for e in audit_entries(tmp_path) if e["action"] == "firmware.downgrade"]
        assert [(e["outcome"], e["allow_downgrade"]) for e in denied] == [("refused", False), ("refused", False)]
        assert list((tmp_path / "spool" / "incoming").iterdir()) == []
        resp = await upload(client, admin, data, "?allow_downgrade=true")  # type: ignore[misc]
        assert resp.status == 202, await resp.text()
        request = json.loads((tmp_path / "spool" / "incoming" / "request.json").read_text())
        assert request["allow_downgrade"] is True and request["version"] == "0.0.5"
        last = audit_entries(tmp_path)[-1]
        assert (last["action"], last["outcome"], last["allow_downgrade"], last["user"]) == (
            "firmware.downgrade", "ok", True, "admin")  # fmt: skip

    run_with(tmp_path, body)


def test_an_upgrade_never_hands_on_a_downgrade_permission(tmp_path: Path) -> None:
    data = bundle(tmp_path, version="0.3.0")

    async def body(client: Client, state: MgmtState) -> None:
        resp = await upload(client, bearer(state, "admin"), data, "?allow_downgrade=true")  # type: ignore[misc]
        assert resp.status == 202, await resp.text()
        request = json.loads((tmp_path / "spool" / "incoming" / "request.json").read_text())
        assert request["allow_downgrade"] is False

    run_with(tmp_path, body)


def test_update_from_url_takes_only_a_boolean_downgrade_flag(tmp_path: Path) -> None:
    async def body(client: Client, state: MgmtState) -> None:
        for value in ("yes", 1, "true"):
            resp = await client.post(f"{API}/firmware/update-from-url", headers=bearer(state, "admin"),
                                     json={"url": "http://127.0.0.1:9/x", "allow_downgrade": value})  # fmt: skip
            assert (await problem(resp, 422))["field"] == "allow_downgrade"

    run_with(tmp_path, body)
