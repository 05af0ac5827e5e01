"""One connection to the system bus (dbus-fast), shared by the systemd, hostname and time clients.

Calls are explicit messages (destination, path, interface, member, signature, body) rather than
introspected proxies: one round trip per call, and the signature we send is the one the systemd
manual documents. The connection opens on first use and again after it drops, so a management
process started before dbus-daemon, or outliving a bus restart, recovers. D-Bus errors become
`SystemServiceError` with a kind the API can answer with.

The address is `DBUS_SYSTEM_BUS_ADDRESS` or the standard system bus socket; tests pass the address
of a private dbus-daemon.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from hw.system import ErrorKind, SystemServiceError

SYSTEM_BUS = "unix:path=/run/dbus/system_bus_socket"
CALL_TIMEOUT_S = 25.0  # D-Bus's own default method timeout
PROPERTIES = "org.freedesktop.DBus.Properties"

_ERROR_KINDS: dict[str, ErrorKind] = {
    "org.freedesktop.DBus.Error.ServiceUnknown": "unavailable",
    "org.freedesktop.DBus.Error.NameHasNoOwner": "unavailable",
    "org.freedesktop.DBus.Error.NoReply": "unavailable",
    "org.freedesktop.DBus.Error.Disconnected": "unavailable",
    "org.freedesktop.DBus.Error.Spawn.ChildExited": "unavailable",
    "org.freedesktop.DBus.Error.AccessDenied": "denied",
    "org.freedesktop.DBus.Error.AuthFailed": "denied",
    "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired": "denied",
    "org.freedesktop.DBus.Error.InvalidArgs": "invalid",
    "org.freedesktop.DBus.Error.UnknownObject": "not-found",
    "org.freedesktop.DBus.Error.UnknownMethod": "unavailable",
    "org.freedesktop.systemd1.NoSuchUnit": "not-found",
    "org.freedesktop.systemd1.UnitMasked": "conflict",
    "org.freedesktop.systemd1.OnlyByDependency": "denied",
    "org.freedesktop.systemd1.TransactionIsDestructive": "conflict",
    "org.freedesktop.timedate1.AutomaticTimeSyncEnabled": "conflict",
    "org.freedesktop.timedate1.NoNTPSupport": "conflict",
}


def unwrap(value: Any) -> Any:
    """Variants (and containers of them) to plain Python values."""
    if isinstance(value, Variant):
        return unwrap(value.value)
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


SignalHandler = Callable[[Message], None]


class SystemBus:
    def __init__(self, address: str | None = None, timeout_s: float = CALL_TIMEOUT_S) -> None:
        self.address = address or os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or SYSTEM_BUS
        self.timeout_s = timeout_s
        self._bus: MessageBus | None = None
        self._lock = asyncio.Lock()
        self._signal_handlers: list[SignalHandler] = []
        self._matches: list[str] = []
        self.on_connect: list[Callable[[], Any]] = []  # clients re-subscribe (systemd's Subscribe) here
        self.generation = 0  # counts connections made: a client can tell whether its hook already ran

    async def connection(self) -> MessageBus:
        async with self._lock:
            if self._bus is not None and self._bus.connected:
                return self._bus
            try:
                bus = await asyncio.wait_for(MessageBus(bus_address=self.address, bus_type=BusType.SYSTEM).connect(),
                                             timeout=self.timeout_s)  # fmt: skip
            except (OSError, TimeoutError, ValueError) as exc:
                detail = f"the system bus at {self.address} does not answer: {exc}"
                raise SystemServiceError("unavailable", detail) from None
            except Exception as exc:  # dbus-fast's AuthError and friends
                raise SystemServiceError("unavailable", f"cannot connect to the system bus: {exc}") from None
            bus.add_message_handler(self._dispatch_signal)
            self._bus = bus
            self.generation += 1
            for rule in self._matches:
                await self._add_match(bus, rule)
        for hook in self.on_connect:  # outside the lock: hooks make calls on the new connection
            await hook()
        return bus

    def _dispatch_signal(self, msg: Message) -> bool | None:
        if msg.message_type == MessageType.SIGNAL:
            for handler in list(self._signal_handlers):
                handler(msg)
        return None

    async def _add_match(self, bus: MessageBus, rule: str) -> None:
        reply = await bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                                       interface="org.freedesktop.DBus", member="AddMatch", signature="s",
                                       body=[rule]))  # fmt: skip
        if reply.message_type == MessageType.ERROR:
            raise SystemServiceError("failed", f"AddMatch {rule}: {reply.error_name}")

    async def subscribe(self, rule: str, handler: SignalHandler) -> None:
        """Receive signals matching `rule` (a D-Bus match rule), now and after every reconnect."""
        self._signal_handlers.append(handler)
        self._matches.append(rule)
        if self._bus is not None and self._bus.connected:
            await self._add_match(self._bus, rule)

    async def call(
        self, destination: str, path: str, interface: str, member: str, signature: str = "",
        body: list[Any] | None = None,
    ) -> list[Any]:  # fmt: skip
        bus = await self.connection()
        msg = Message(destination=destination, path=path, interface=interface, member=member, signature=signature,
                      body=body or [])  # fmt: skip
        try:
            reply = await asyncio.wait_for(bus.call(msg), timeout=self.timeout_s)
        except TimeoutError:
            detail = f"{destination} did not answer {member} within {self.timeout_s} s"
            raise SystemServiceError("unavailable", detail) from None
        except (OSError, EOFError) as exc:
            self._bus = None
            raise SystemServiceError("unavailable", f"the system bus connection dropped: {exc}") from None
        if reply.message_type == MessageType.ERROR:
            name = reply.error_name or "?"
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else name
            raise SystemServiceError(_ERROR_KINDS.get(name, "failed"), f"{destination} {member}: {text} ({name})")
        return list(reply.body)

    async def get_all(self, destination: str, path: str, interface: str) -> dict[str, Any]:
        (props,) = await self.call(destination, path, PROPERTIES, "GetAll", "s", [interface])
        result: dict[str, Any] = unwrap(props)
        return result

    def close(self) -> None:
        if self._bus is not None:
            self._bus.disconnect()
            self._bus = None
