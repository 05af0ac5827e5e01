"""`sbc run` under a stand-in for systemd: a real unix datagram socket as NOTIFY_SOCKET receives READY=1,
STATUS= and WATCHDOG=1 from the running SBC, and the pets stop while its event loop is blocked or its
core's timers are stuck (SBC_DEBUG_HOOKS=1 enables the two control commands that cause either)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sbc.control.client import ControlError, control_request
from tests.integration.harness import SBC_BIN, sbc_config

pytestmark = pytest.mark.integration

WATCHDOG_USEC = 400_000  # pets every 0.2 s


@dataclass
class NotifyListener:
    """Plays systemd's side of sd_notify: every datagram, with the time it arrived."""

    path: Path
    sock: socket.socket = field(init=False)
    received: list[tuple[float, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.05)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.received.append((time.monotonic(), data.decode()))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.sock.close()

    def pets(self, start: float = 0.0, end: float = float("inf")) -> list[float]:
        return [t for t, m in list(self.received) if "WATCHDOG=1" in m.split("\n") and start <= t <= end]

    def wait_for(self, needle: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, m in list(self.received):
                if needle in m:
                    return t
            time.sleep(0.02)
        raise AssertionError(f"no {needle!r} within {timeout} s; got {[m for _, m in self.received][-5:]}")


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], NotifyListener, Path]]:
    listener = NotifyListener(tmp_path / "notify.sock")
    listener.start()
    config = tmp_path / "sbc.yaml"
    config.write_text(sbc_config(tmp_path / "state"))
    env = {**os.environ, "NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": str(WATCHDOG_USEC),
           "SBC_DEBUG_HOOKS": "1"}  # fmt: skip
    env.pop("WATCHDOG_PID", None)
    log = (tmp_path / "sbc.log").open("wb")
    proc = subprocess.Popen([str(SBC_BIN), "run", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT,
                            env=env, cwd=tmp_path)  # fmt: skip
    try:
        yield proc, listener, tmp_path / "state" / "control.sock"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        listener.close()


def test_ready_status_and_pets_while_healthy_then_stopping(
    supervised: tuple[subprocess.Popen[bytes], NotifyListener, Path],
) -> None:
    proc, listener, _ = supervised
    ready_at = listener.wait_for("READY=1", timeout=20)
    ready = next(m for t, m in listener.received if t == ready_at)
    assert "STATUS=0 active calls, media relay userspace, realms lan, wan" in ready
    time.sleep(1.5)
    pets = listener.pets(ready_at)
    assert len(pets) >= 4, pets  # 0.2 s apart: about 7 in 1.5 s on an idle machine
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    listener.wait_for("STOPPING=1", timeout=2)


def test_a_blocked_event_loop_stops_the_pets_and_they_resume_after(
    supervised: tuple[subprocess.Popen[bytes], NotifyListener, Path],
) -> None:
    _, listener, control = supervised
    listener.wait_for("READY=1", timeout=20)
    time.sleep(0.5)
    t0 = time.monotonic()
    answer = control_request(control, "debug.block-loop", {"seconds": 2.5}, timeout=10)
    t1 = time.monotonic()
    assert answer == {"blocked_s": 2.5}
    assert t1 - t0 >= 2.4
    assert listener.pets(t0 + 0.3, t1 - 0.3) == []  # ten pets would have been due in that window
    time.sleep(1.0)
    assert len(listener.pets(t1)) >= 2


def test_stuck_core_timers_stop_the_pets_although_the_loop_answers(
    supervised: tuple[subprocess.Popen[bytes], NotifyListener, Path],
) -> None:
    _, listener, control = supervised
    listener.wait_for("READY=1", timeout=20)
    time.sleep(0.5)
    assert not any("unhealthy" in m for _, m in listener.received)
    assert control_request(control, "debug.stall-core", timeout=5) == {"stalled": True}
    # the next media check was due within 2 s; 5 s after that the core counts as stuck
    withheld_at = listener.wait_for("STATUS=unhealthy, watchdog not petted: core timers", timeout=12)
    time.sleep(1.5)
    assert listener.pets(withheld_at + 0.05) == [], [m for _, m in listener.received if "STATUS" in m]
    assert control_request(control, "status", timeout=5)["active_calls"] == 0  # the loop itself still runs


def test_debug_hooks_are_off_without_the_environment(tmp_path: Path) -> None:
    from tests.integration.harness import running_sbc

    with running_sbc(tmp_path, sbc_config(tmp_path / "state")) as sbc, pytest.raises(ControlError, match="unknown"):
        control_request(sbc.control, "debug.block-loop", {"seconds": 30})
