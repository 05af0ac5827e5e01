"""sd_notify without libsystemd: READY=1, STATUS=..., WATCHDOG=1, STOPPING=1 to $NOTIFY_SOCKET.

systemd gives a `Type=notify` service with `WatchdogSec=` the socket in `NOTIFY_SOCKET` (a path, or
`@name` for the abstract namespace) and the timeout in `WATCHDOG_USEC`; `WATCHDOG_PID`, when set,
names the process meant (a child started by the service must not pet for it). The service sends
datagrams of `KEY=value` lines (sd_notify(3)); if `WATCHDOG=1` does not arrive within the timeout,
systemd kills the service (SIGABRT) and restarts it. The hardware watchdog is systemd's own
(RuntimeWatchdogSec in system.conf.d), petted by PID 1.

`WatchdogPolicy` is the decision, sans-IO: the SBC asks it at every tick of its event loop, with
the health it measured, whether to pet now. A hung loop never asks, so systemd stops hearing from it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


def notify_message(**fields: str) -> bytes:
    """`notify_message(READY="1", STATUS="up")` -> b"READY=1\\nSTATUS=up". Values are one line each."""
    lines = []
    for key, value in fields.items():
        if not key.isupper() or "=" in key:
            raise ValueError(f"bad sd_notify field {key!r}")
        lines.append(f"{key}={value.replace(chr(10), ' ')}")
    return "\n".join(lines).encode("utf-8")


class NotifyTransport(Protocol):
    def send(self, message: bytes) -> None: ...


class UnixDatagramTransport:
    """One AF_UNIX datagram socket, connected to the notify socket; a failed send is counted, never raised
    (systemd being gone must not take the SBC down)."""

    def __init__(self, address: str) -> None:
        target = "\0" + address[1:] if address.startswith("@") else address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.setblocking(False)
        self._target = target
        self.failures = 0
        self.last_error = ""

    def send(self, message: bytes) -> None:
        try:
            self._sock.sendto(message, self._target)
        except OSError as exc:
            self.failures += 1
            self.last_error = str(exc)

    def close(self) -> None:
        self._sock.close()


class FakeTransport:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, message: bytes) -> None:
        self.sent.append(message)


@dataclass(frozen=True, slots=True)
class NotifySettings:
    socket: str | None  # None: not started by systemd with NotifyAccess, nothing to tell
    watchdog_s: float | None  # the timeout systemd enforces; None: no watchdog for us

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None, pid: int | None = None) -> NotifySettings:
        env = os.environ if env is None else env
        pid = os.getpid() if pid is None else pid
        address = env.get("NOTIFY_SOCKET") or None
        watchdog: float | None = None
        usec = env.get("WATCHDOG_USEC", "")
        wanted_pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not wanted_pid or wanted_pid == str(pid)):
            watchdog = int(usec) / 1_000_000
        return cls(address, watchdog if address else None)

    @property
    def pet_interval_s(self) -> float | None:
        """Half the timeout, as sd_watchdog_enabled(3) advises: one late tick is not yet a restart."""
        return None if self.watchdog_s is None else self.watchdog_s / 2


class SdNotifier:
    def __init__(self, transport: NotifyTransport | None) -> None:
        self.transport = transport
        self._last_status: str | None = None
        self.pets = 0

    @classmethod
    def from_settings(cls, settings: NotifySettings) -> SdNotifier:
        return cls(UnixDatagramTransport(settings.socket) if settings.socket else None)

    def _send(self, **fields: str) -> None:
        if self.transport is not None:
            self.transport.send(notify_message(**fields))

    def ready(self, status: str) -> None:
        self._last_status = status
        self._send(READY="1", STATUS=status)

    def status(self, status: str) -> None:
        """Send STATUS= only when it changed (systemctl status shows the latest)."""
        if status != self._last_status:
            self._last_status = status
            self._send(STATUS=status)

    def watchdog(self) -> None:
        self.pets += 1
        self._send(WATCHDOG="1")

    def stopping(self, status: str = "stopping") -> None:
        self._send(STOPPING="1", STATUS=status)

    def close(self) -> None:
        if isinstance(self.transport, UnixDatagramTransport):
            self.transport.close()


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    reason: str = ""  # why not, for the log and STATUS=


class WatchdogPolicy:
    """Pet while healthy; when health fails, stop petting and say so once (and again when it recovers)."""

    def __init__(self) -> None:
        self.withholding: str | None = None  # the reason we stopped petting, while we do

    def decide(self, health: Health) -> tuple[bool, str | None]:
        """(pet now?, a change to log: "withheld: reason" / "resumed", or None)."""
        if health.ok:
            change = "resumed" if self.withholding is not None else None
            self.withholding = None
            return True, change
        change = None if self.withholding == health.reason else f"withheld: {health.reason}"
        self.withholding = health.reason
        return False, change
