"""Run the real `sbc mgmt` (HTTPS, SNMP) beside a real SBC, and net-snmp's tools against it.

Addresses follow harness.py: the management listeners of a test run bind 127.N.3.1, managers
(snmptrapd) 127.N.3.2, extra SIP peers 127.N.3.x; N is `SBC_TEST_NET`. net-snmp's clients and
snmptrapd get a config and persistent directory of their own (`SNMPCONFPATH`,
`SNMP_PERSISTENT_DIR`), so nothing under the user's ~/.snmp or /var/lib/snmp changes what they do.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from tests.integration.harness import NET, ROOT
from tests.processes import stop_process

SBC_BIN = Path(sys.executable).parent / "sbc"
API = "/api/v1"
MGMT_HOST = f"127.{NET}.3.1"
MANAGER_HOST = f"127.{NET}.3.2"
CARRIER_SBC = f"127.{NET}.3.5"
CARRIER_PEER = f"127.{NET}.3.10"
CARRIER_PEER_PORT = 5090
MIBS = ROOT / "mgmt" / "mibs"
MIB_MODULES = "SNMPv2-MIB:IF-MIB:NETWORK-SERVICES-MIB:SIP-COMMON-MIB:EDGE-SBC-MIB"
ADMIN_PASSWORD = "integration-admin-pw"


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class MgmtProcess:
    config_path: Path
    host: str
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        env = {**os.environ, "SBC_ADMIN_PASSWORD": ADMIN_PASSWORD}
        self.proc = subprocess.Popen(
            [str(SBC_BIN), "mgmt", "--config", str(self.config_path)],
            stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT, env=env, cwd=self.config_path.parent,
        )  # fmt: skip
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sbc mgmt exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(
                f"{self.url}{API}/openapi.json", context=ctx, timeout=2
            ) as resp:
                if resp.status == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"sbc mgmt did not start within {timeout} s:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextlib.contextmanager
def running_mgmt(config_path: Path, host: str, port: int) -> Iterator[MgmtProcess]:
    mgmt = MgmtProcess(config_path, host, port, config_path.parent / "mgmt.log")
    mgmt.start()
    try:
        yield mgmt
    finally:
        mgmt.stop()


@contextlib.asynccontextmanager
async def api_session(
    url: str, user: str, password: str
) -> AsyncIterator[tuple[aiohttp.ClientSession, dict[str, str]]]:
    """A logged-in browser-like client: the cookie jar keeps the session, the CSRF header goes on changes."""
    jar = aiohttp.CookieJar(unsafe=True)  # unsafe: the host is an IP address
    async with aiohttp.ClientSession(url, cookie_jar=jar, connector=aiohttp.TCPConnector(ssl=False)) as s:
        async with s.post(f"{API}/auth/login", json={"username": user, "password": password}) as resp:
            assert resp.status == 200, await resp.text()
            body = await resp.json()
        yield s, {"X-CSRF-Token": body["csrf_token"]}


# ---- net-snmp -------------------------------------------------------------------------------------
def snmp_env(workdir: Path) -> dict[str, str]:
    persist = workdir / "snmp-persist"
    persist.mkdir(exist_ok=True)
    conf = workdir / "snmp-conf"
    conf.mkdir(exist_ok=True)
    return {**os.environ, "SNMPCONFPATH": str(conf), "SNMP_PERSISTENT_DIR": str(persist), "MIBS": "", "MIBDIRS": ""}


def snmp(workdir: Path, tool: str, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """snmpwalk/snmpget/... with the project's MIB files (`-M mgmt/mibs -m ...`); `args` after the tool."""
    argv = [tool, "-M", str(MIBS), "-m", MIB_MODULES, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=snmp_env(workdir), check=False)


def v3_args(user: str, auth_key: str, priv_key: str, auth: str = "SHA-256", priv: str = "AES") -> list[str]:
    return ["-v3", "-l", "authPriv", "-u", user, "-a", auth, "-A", auth_key, "-x", priv, "-X", priv_key,
            "-t", "2", "-r", "1"]  # fmt: skip


@dataclass
class TrapReceiver:
    """A real snmptrapd that logs every notification it accepts, numeric OIDs, one file."""

    workdir: Path
    host: str
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "snmptrapd.log"

    def start(self, users: list[str], communities: tuple[str, ...] = ()) -> None:
        conf = self.workdir / "snmptrapd.conf"
        lines = [*users, *(f"authCommunity log {c}" for c in communities), "doNotRetainNotificationLogs yes"]
        conf.write_text("\n".join(lines) + "\n")
        argv = ["snmptrapd", "-f", "-C", "-c", str(conf), "-n", "-On", "-Lf", str(self.log_path),
                "-p", str(self.workdir / "snmptrapd.pid"), "-M", str(MIBS), "-m", MIB_MODULES,
                f"udp:{self.host}:{self.port}"]  # fmt: skip
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=(self.workdir / "snmptrapd.err").open("wb"),
            env=snmp_env(self.workdir), stdin=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"snmptrapd exited: {(self.workdir / 'snmptrapd.err').read_text()}")
            if self.log_path.exists() and "NET-SNMP version" in self.log():
                return
            time.sleep(0.1)
        raise RuntimeError(f"snmptrapd did not start: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for(self, *needles: str, timeout: float = 30.0, after: int = 0) -> str:
        """The log from offset `after` once every needle is in it (raises with the log if not in time)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log()[after:]
            if all(n in text for n in needles):
                return text
            time.sleep(0.2)
        raise AssertionError(f"snmptrapd did not receive {needles} within {timeout} s:\n{self.log()[after:]}")

    def notifications(self, after: int = 0) -> list[str]:
        """One line per notification received (snmptrapd -Lf: a header line, then the varbinds)."""
        return [line for line in self.log()[after:].splitlines() if line.startswith(".1.3.6.1.2.1.1.3.0 = ")]

    def wait_for_trap(self, trap_oid: str, *needles: str, after: int = 0, timeout: float = 30.0) -> str:
        """The first notification since `after` whose snmpTrapOID is `trap_oid` and that holds every needle."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.notifications(after):
                if f"= OID: .{trap_oid}\t" in line + "\t" and all(n in line for n in needles):
                    return line
            time.sleep(0.2)
        raise AssertionError(f"no notification {trap_oid} with {needles} within {timeout} s:\n{self.log()[after:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_process(self.proc, timeout=5)
