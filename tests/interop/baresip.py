"""A baresip softphone driven headless: its config files, its process, its ctrl_tcp command channel.

baresip (Debian `baresip-core`) runs with `-f DIR` on a config written here: SIP on one loopback
address, G.711 only, the `aufile` source playing a tone, the `sndfile` filter recording what it
decodes (`dump-<time>-dec.wav` in DIR), and `ctrl_tcp`, which takes commands and sends events as
netstrings of JSON (`{"command": ..., "params": ..., "token": ...}` in; `{"response": true, ...}` and
`{"event": true, "type": ...}` out). baresip binds its RTP sockets to 0.0.0.0, so each phone gets
its own small RTP port range (its SIP and control sockets are on its own address).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.processes import stop_process

CONTROL_PORT = 4444
MODULES = "/usr/lib/baresip/modules"

Event = dict[str, Any]


class PhoneError(AssertionError):
    """A phone did not do what the test asked; the message carries its recent events and log."""


@dataclass
class Phone:
    name: str
    user: str
    address: str  # the phone's own loopback address (SIP and control)
    registrar: str  # host:port its account registers with and sends every request to
    workdir: Path
    tone: Path  # the WAV its microphone plays
    rtp_ports: tuple[int, int]
    sip_port: int = 5060
    transport: str = "udp"
    register: bool = True
    proc: subprocess.Popen[bytes] | None = None
    events: list[Event] = field(default_factory=list)
    _responses: dict[str, Event] = field(default_factory=dict)
    _sock: socket.socket | None = None
    _reader: threading.Thread | None = None
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _tokens: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def aor(self) -> str:
        return f"sip:{self.user}@{self.registrar}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "baresip.log"

    def _write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "config").write_text(
            "\n".join([
                "poll_method epoll",
                f"sip_listen {self.address}:{self.sip_port}",
                f"net_interface {self.address}",
                f"audio_source aufile,{self.tone}",
                "audio_player aufile,/dev/null",  # nothing plays: sndfile records what is decoded
                "audio_alert aufile,/dev/null",
                f"rtp_ports {self.rtp_ports[0]}-{self.rtp_ports[1]}",
                "rtcp_mux no",
                "call_local_timeout 30",
                f"module_path {MODULES}",
                "module g711.so",
                "module aufile.so",
                "module sndfile.so",
                "module_tmp account.so",
                "module_app menu.so",
                "module_app ctrl_tcp.so",
                f"ctrl_tcp_listen {self.address}:{CONTROL_PORT}",
                f"snd_path {self.workdir}",
                "",
            ])
        )  # fmt: skip
        params = f";transport={self.transport}" if self.transport != "udp" else ""
        regint = 600 if self.register else 0
        (self.workdir / "accounts").write_text(
            f"<sip:{self.user}@{self.registrar}{params}>;regint={regint};answermode=manual;audio_codecs=pcmu\n"
        )

    def start(self, timeout: float = 10.0) -> Phone:
        self._write_config()
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            ["baresip", "-f", str(self.workdir)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while self._sock is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise PhoneError(f"{self.name}: baresip did not open its control port\n{self.log()[-3000:]}")
            with contextlib.suppress(OSError):
                self._sock = socket.create_connection((self.address, CONTROL_PORT), timeout=1.0)
            if self._sock is None:
                time.sleep(0.05)
        self._sock.settimeout(0.2)
        self._reader = threading.Thread(target=self._read, name=f"baresip-{self.name}", daemon=True)
        self._reader.start()
        if self.register:
            self.wait_registered(deadline - time.monotonic())
        return self

    def wait_registered(self, timeout: float) -> None:
        """Registration starts before the control channel is up: ask (`reginfo`) until it says OK."""
        deadline = time.monotonic() + timeout
        while not re.search(r"\sOK\s", info := re.sub(r"\x1b\[[0-9;]*m", "", self.command("reginfo"))):
            if time.monotonic() > deadline:
                raise PhoneError(f"{self.name}: not registered within {timeout:.0f} s: {info!r}\n{self.report()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Quit (baresip unregisters first), then make sure the process is gone."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(OSError, PhoneError):
                self._send("quit", "", "quit")
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=3)
            if self.proc.poll() is None:
                stop_process(self.proc, timeout=5)
        if self._sock is not None:
            self._sock.close()
        if self._reader is not None:
            self._reader.join(2)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # ---- the control channel ---------------------------------------------------------------------
    def _read(self, max_s: float = 300.0) -> None:
        assert self._sock is not None
        buffer = b""
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline:
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            buffer += data
            while True:
                length, colon, rest = buffer.partition(b":")
                if not colon or not length.isdigit() or len(rest) < int(length) + 1:
                    break
                item: Event = json.loads(rest[: int(length)])
                buffer = rest[int(length) + 1 :]
                with self._changed:
                    if item.get("response"):
                        self._responses[str(item.get("token"))] = item
                    else:
                        self.events.append(item)
                    self._changed.notify_all()

    def _send(self, command: str, params: str, token: str) -> None:
        if self._sock is None:
            raise PhoneError(f"{self.name}: not started")
        body = json.dumps({"command": command, "params": params, "token": token}).encode()
        self._sock.sendall(str(len(body)).encode() + b":" + body + b",")

    def command(self, command: str, params: str = "", timeout: float = 5.0) -> str:
        token = f"{command}-{next(self._tokens)}"
        self._send(command, params, token)
        response = self._wait(lambda: self._responses.get(token), timeout, f"an answer to {command!r}")
        if not response.get("ok"):
            raise PhoneError(f"{self.name}: {command} {params!r} failed: {response.get('data')}\n{self.report()}")
        return str(response.get("data", ""))

    def _wait(self, found: Callable[[], Event | None], timeout: float, what: str) -> Event:
        deadline = time.monotonic() + timeout
        with self._changed:
            while (item := found()) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PhoneError(f"{self.name}: no {what} within {timeout} s\n{self.report()}")
                self._changed.wait(left)
        return item

    def wait_event(self, kind: str, timeout: float = 10.0, *, after: int = 0) -> Event:
        """The first event of type `kind` at or after index `after` of `events`."""

        def first() -> Event | None:
            return next((e for e in self.events[after:] if e.get("type") == kind), None)

        return self._wait(first, timeout, f"{kind} event")

    def saw(self, kind: str, *, after: int = 0) -> list[Event]:
        with self._changed:
            return [e for e in self.events[after:] if e.get("type") == kind]

    def mark(self) -> int:
        """An index into `events`: pass it as `after` to wait only for what happens from now on."""
        with self._changed:
            return len(self.events)

    def report(self) -> str:
        with self._changed:
            kinds = [f"{e.get('type')}({e.get('param', '')})" for e in self.events[-25:]]
        return f"--- {self.name} events: {' '.join(kinds)}\n--- {self.name} log tail:\n{self.log()[-2500:]}"

    # ---- what a user does --------------------------------------------------------------------------
    def dial(self, uri: str) -> None:
        self.command("dial", uri)

    def answer(self) -> None:
        self.command("accept")

    def hangup(self) -> None:
        self.command("hangup")

    def hold(self) -> None:
        self.command("hold")

    def resume(self) -> None:
        self.command("resume")

    def transfer(self, uri: str) -> None:
        self.command("transfer", uri)

    def recordings(self) -> list[Path]:
        """What the phone decoded, one WAV per audio stream start, oldest first."""
        return sorted(self.workdir.glob("dump-*-dec.wav"), key=lambda p: p.stat().st_mtime)
