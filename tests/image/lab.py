"""Talking to the booted appliance from the lab namespace: HTTPS to its management API (certificate
pinned to the fingerprint its console showed), a web server on the WAN side, SIPp peers.

Sockets are opened with the calling thread inside the lab namespace (setns is per thread), so the
test process itself never leaves the host's network; child processes run under `ip netns exec`.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import re
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from image.labnet import LabNet
from tests.dataplane.xdp_netns import inside
from tests.processes import stop_process


@dataclass(frozen=True, slots=True)
class FirstBootBanner:
    hostname: str
    password: str | None
    fingerprint: str
    snmp_user: str | None
    snmp_auth: str | None
    snmp_priv: str | None
    config: str


def parse_banner(console: str, start: int = 0) -> FirstBootBanner:
    """The last first-boot banner on the console after `start`."""
    at = console.rfind("FIRST BOOT: this SBC is ready")
    assert at >= start, "no first-boot banner on the console"
    text = console[at:at + 4000]

    def field_(pattern: str) -> str | None:
        m = re.search(pattern, text)
        return m.group(1) if m else None

    hostname = field_(r"hostname:\s+(\S+)")
    fingerprint = field_(r"TLS SHA-256 fingerprint: ([0-9A-F:]+)")
    assert hostname and fingerprint, text
    return FirstBootBanner(hostname=hostname, password=field_(r"password:\s+(\S+)"), fingerprint=fingerprint,
                           snmp_user=field_(r"SNMPv3 user (\S+):"), snmp_auth=field_(r"auth key (\S+)"),
                           snmp_priv=field_(r"priv key (\S+)"), config=field_(r"config:\s+(\S+)") or "")  # fmt: skip


def pinned_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the self-signed certificate is checked by fingerprint instead
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


@dataclass
class Api:
    """The REST API at https://HOST/api/v1 reached from inside the lab namespace."""

    net: LabNet
    host: str
    fingerprint: str
    headers: dict[str, str] = field(default_factory=dict)
    tls_version: str = ""

    def request(self, method: str, path: str, body: Any = None, *, raw: Any = None, length: int | None = None,
                content_type: str = "application/json", timeout: float = 120) -> tuple[int, Any]:  # fmt: skip
        with inside(self.net.netns):
            conn = http.client.HTTPSConnection(self.host, 443, context=pinned_context(), timeout=timeout)
            try:
                conn.connect()
            except OSError:
                conn.close()
                raise
        try:
            sock = conn.sock
            assert isinstance(sock, ssl.SSLSocket)
            der = sock.getpeercert(binary_form=True)
            assert der is not None
            seen = hashlib.sha256(der).hexdigest().upper()
            assert ":".join(seen[i:i + 2] for i in range(0, len(seen), 2)) == self.fingerprint, "TLS certificate"
            self.tls_version = sock.version() or ""
            headers = dict(self.headers)
            data: Any = None
            if raw is not None:
                data = raw
                headers["Content-Type"] = content_type
                if length is not None:
                    headers["Content-Length"] = str(length)
            elif body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            conn.request(method, f"/api/v1{path}", body=data, headers=headers)
            response = conn.getresponse()
            text = response.read().decode(errors="replace")
            try:
                return response.status, json.loads(text) if text else None
            except ValueError:
                return response.status, text
        finally:
            conn.close()

    def wait_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                status, _ = self.request("GET", "/openapi.json", timeout=20)
                if status == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the management API on {self.host} did not answer within {timeout:.0f} s")
            time.sleep(3)

    def log_in(self, user: str, password: str, new_password: str | None = None) -> None:
        """Log in (changing a generated password first when asked), then use a bearer token."""
        session, must_change = self._login_session(user, password)
        if must_change:
            assert new_password, "the generated password must be changed first"
            status, answer = self._with(session, "POST", "/auth/password",
                                        {"current_password": password, "new_password": new_password})  # fmt: skip
            assert status in (200, 204), answer
            session, _ = self._login_session(user, new_password)
        status, token = self._with(session, "POST", "/auth/tokens", {"name": "image-tests"})
        assert status == 201, token
        self.headers = {"Authorization": f"Bearer {token['token']}"}

    def _login_session(self, user: str, password: str) -> tuple[dict[str, str], bool]:
        with inside(self.net.netns):
            conn = http.client.HTTPSConnection(self.host, 443, context=pinned_context(), timeout=60)
            conn.connect()
        try:
            conn.request("POST", "/api/v1/auth/login", body=json.dumps({"username": user, "password": password}),
                         headers={"Content-Type": "application/json"})  # fmt: skip
            response = conn.getresponse()
            body = json.loads(response.read())
            assert response.status == 200, body
            cookie = (response.getheader("Set-Cookie") or "").split(";", 1)[0]
            return {"Cookie": cookie, "X-CSRF-Token": body["csrf_token"]}, bool(body.get("must_change_password"))
        finally:
            conn.close()

    def _with(self, session: dict[str, str], method: str, path: str, body: Any) -> tuple[int, Any]:
        saved, self.headers = self.headers, session
        try:
            return self.request(method, path, body)
        finally:
            self.headers = saved


@contextlib.contextmanager
def web_server(net: LabNet, directory: Path, address: str, port: int = 8080) -> Iterator[str]:
    """A plain web server on a lab address (provisioning configs, update bundles); yields its base URL."""
    log = (directory / "http.log").open("wb")
    proc = subprocess.Popen(
        net.exec_argv(["python3", "-m", "http.server", "--bind", address, "--directory", str(directory), str(port)]),
        stdout=log, stderr=log, start_new_session=True,
    )  # fmt: skip
    try:
        time.sleep(1.5)
        assert proc.poll() is None, (directory / "http.log").read_text()
        yield f"http://{address}:{port}"
    finally:
        stop_process(proc)
        log.close()
