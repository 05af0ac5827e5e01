"""Run the real SBC and real SIPp peers on loopback addresses for integration tests.

Addresses: the SBC listens on 127.N.1.1 (LAN realm) and 127.N.2.1 (WAN realm); SIPp phones use
127.N.1.x, SIPp trunks/PBXs 127.N.2.x. N is 0 unless `SBC_TEST_NET` names another second octet, so
two test runs on one machine (two worktrees) never meet on a port. Every process is bounded in time
and killed at teardown.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sbc.control.client import ControlError, control_request

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
SBC_BIN = Path(sys.executable).parent / "sbc"

NET = int(os.environ.get("SBC_TEST_NET", "0"))
if not 0 <= NET <= 254:
    raise ValueError(f"SBC_TEST_NET={NET}: expected 0-254 (the second octet of 127.N.x.x)")
LAN_NET = f"127.{NET}.1.0/24"
WAN_NET = f"127.{NET}.2.0/24"
LAN_SBC = f"127.{NET}.1.1"
WAN_SBC = f"127.{NET}.2.1"
SBC_PORT = 15060
PHONE = f"127.{NET}.1.10"
PHONE_B = f"127.{NET}.1.11"
TRUNK = f"127.{NET}.2.10"
TRUNK_PORT = 5082


def sbc_config(
    state_dir: Path,
    *,
    extra_realm_lan: str = "",
    extra_realm_wan: str = "",
    rules: str = "[]",
    routes: str | None = None,
    lan_media: str = "latch: learn",
) -> str:
    routes = (
        routes
        or """
  - name: lan-to-trunk
    from: lan
    to: wan
  - name: trunk-to-phones
    from: wan
    to: lan
    use_registrations: true
"""
    )
    return f"""
sbc:
  user_agent: EdgeSBC-test
  state_dir: {state_dir}
timers: {{t1_ms: 500, t2_ms: 4000, t4_ms: 5000}}
realms:
  - name: lan
    trusted: true
    address: {LAN_SBC}
    networks: [{LAN_NET}]
    listen:
      - {{transport: udp, port: {SBC_PORT}}}
      - {{transport: tcp, port: {SBC_PORT}}}
    sip_dscp: af31
    media:
      address: {LAN_SBC}
      ports: 40000-40999
      {lan_media}
      dscp: ef
{extra_realm_lan}
  - name: wan
    address: {WAN_SBC}
    networks: [{WAN_NET}]
    listen:
      - {{transport: udp, port: {SBC_PORT}}}
      - {{transport: tcp, port: {SBC_PORT}}}
    sip_dscp: cs3
    peer: {{host: {TRUNK}, port: {TRUNK_PORT}, transport: udp}}
    registrar: {{host: {TRUNK}, port: {TRUNK_PORT}, transport: udp}}
    media:
      address: {WAN_SBC}
      ports: 41000-41999
      dscp: af41
{extra_realm_wan}
routes:
{routes}
header_rules: {rules}
"""


@dataclass
class SbcProcess:
    workdir: Path
    config_path: Path
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)
    prefix: list[str] = field(default_factory=list)  # e.g. nsenter into a network namespace
    env: dict[str, str] = field(default_factory=dict)  # added to the environment

    def __post_init__(self) -> None:
        self.log_path = self.workdir / "sbc.log"

    @property
    def control(self) -> Path:
        return self.workdir / "state" / "control.sock"

    def start(self, timeout: float = 15.0) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*self.prefix, str(SBC_BIN), "run", "--config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env={**os.environ, **self.env},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sbc exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            with contextlib.suppress(ControlError, OSError, ValueError):
                self.query("status")
                return
            time.sleep(0.1)
        raise RuntimeError(f"sbc did not start within {timeout} s:\n{self.log_path.read_text()}")

    def query(self, cmd: str) -> dict[str, Any]:
        return control_request(self.control, cmd, timeout=5.0)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class Sipp:
    """One SIPp process. `messages()` is its -trace_msg log: every byte it sent and received."""

    name: str
    workdir: Path
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def message_file(self) -> Path:
        return self.workdir / f"{self.name}_messages.log"

    @property
    def error_file(self) -> Path:
        return self.workdir / f"{self.name}_errors.log"

    @property
    def stat_file(self) -> Path:
        return self.workdir / f"{self.name}_stats.csv"

    def start(self) -> Sipp:
        out = (self.workdir / f"{self.name}.out").open("wb")
        self.proc = subprocess.Popen(
            self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir
        )
        return self

    def wait(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            return -9

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def messages(self) -> str:
        return self.message_file.read_text(errors="replace") if self.message_file.exists() else ""

    def errors(self) -> str:
        return self.error_file.read_text(errors="replace") if self.error_file.exists() else ""

    def report(self) -> str:
        out = self.workdir / f"{self.name}.out"
        tail = out.read_text(errors="replace")[-3000:] if out.exists() else ""
        return f"--- {self.name} errors:\n{self.errors()[-4000:]}\n--- {self.name} output tail:\n{tail}"


def sipp_available() -> bool:
    return shutil.which("sipp") is not None


def sipp(
    name: str,
    workdir: Path,
    scenario: str,
    *,
    local_ip: str,
    local_port: int,
    remote: str | None = None,
    calls: int = 1,
    rate: float | None = None,
    service: str = "bob",
    timeout_s: int = 30,
    transport: str = "u1",
    extra: list[str] | None = None,
    trace: bool = True,
) -> Sipp:
    argv = [
        "sipp",
        "-sf", str(SCENARIOS / scenario),  # an absolute path (a rendered template) stays as it is
        "-i", local_ip,
        "-p", str(local_port),
        "-m", str(calls),
        "-s", service,
        "-t", transport,
        "-timeout", f"{timeout_s}s",
        "-timeout_error",
        "-max_recv_loops", "1000",
        "-nostdin",
        "-trace_err", "-error_file", str(workdir / f"{name}_errors.log"),
        "-trace_stat", "-stf", str(workdir / f"{name}_stats.csv"),
    ]  # fmt: skip
    if trace:
        argv += ["-trace_msg", "-message_file", str(workdir / f"{name}_messages.log")]
    if rate is not None:
        argv += ["-r", str(rate), "-rp", "1000"]
    if extra:
        argv += extra
    if remote is not None:
        argv.append(remote)
    return Sipp(name, workdir, argv)


def render_scenario(workdir: Path, template: str, **values: str | int) -> str:
    """Fill the `@NAME@` markers of a scenario template (`scenarios/NAME.xml.in`) into `workdir`.

    A value may hold several header lines; an empty one removes its marker's line."""
    text = (SCENARIOS / template).read_text()
    for name, value in values.items():
        marker = f"@{name.upper()}@"
        if str(value) == "":
            text = text.replace(marker + "\n", "")
        text = text.replace(marker, str(value))
    left = re.findall(r"@([A-Z_]+)@", text)
    if left:
        raise ValueError(f"{template}: unfilled markers {sorted(set(left))}")
    out = workdir / template.removesuffix(".in")
    out.write_text(text)
    return str(out)


@contextlib.contextmanager
def running_sbc(workdir: Path, config_text: str) -> Iterator[SbcProcess]:
    config_path = workdir / "sbc.yaml"
    config_path.write_text(config_text)
    sbc = SbcProcess(workdir, config_path)
    sbc.start()
    try:
        yield sbc
    finally:
        sbc.stop()


def _trace_blocks(log: str, marker: str) -> list[str]:
    out: list[str] = []
    for block in log.split("----------------------------------------------- ")[1:]:
        _, _, body = block.partition("\n")
        first, _, rest = body.partition("\n")
        if marker in first:
            out.append(rest.strip("\n"))
    return out


def received_messages(log: str) -> list[str]:
    """The messages a SIPp process received, from its -trace_msg log."""
    return _trace_blocks(log, "message received")


def sent_messages(log: str) -> list[str]:
    return _trace_blocks(log, "message sent")


def environment_note() -> str:
    return f"uid={os.geteuid()} sipp={shutil.which('sipp')}"
