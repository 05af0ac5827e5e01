"""The SNMP agent of the management process (pysnmp, asyncio), read-only.

It runs in the management process's event loop and answers from memory: the last snapshot of the
SBC (`SbcStateSource`), the alarm table and the box's interfaces, built into a `MibTable` at most
once a second or when the snapshot or the alarms change. A request never waits on the SBC.

Security (RFC 3414, 3415): SNMPv3 USM users with SHA-2 authentication and AES privacy; each user may
read everything under 1.3.6.1 at security level authPriv only. SNMPv2c exists only when a community
is configured, read-only. There is no write access at all: SET is refused by VACM (no write view)
and by the instrumentation itself (notWritable).
"""

from __future__ import annotations

import logging
import platform
import socket
import time
from collections.abc import Callable
from typing import Any

from pysnmp.carrier.asyncio.dgram import udp, udp6  # type: ignore[import-untyped]
from pysnmp.entity import config, engine  # type: ignore[import-untyped]
from pysnmp.entity.rfc3413 import cmdrsp, context  # type: ignore[import-untyped]
from pysnmp.proto import rfc1902, rfc1905  # type: ignore[import-untyped]
from pysnmp.smi import error as smi_error  # type: ignore[import-untyped]

from mgmt.alarms import AlarmTable
from mgmt.snmp import oids as o
from mgmt.snmp.interfaces import read_interfaces
from mgmt.snmp.mib import MibTable, SystemInfo, build_mib, sip_service_status, system_description, timeticks
from mgmt.snmp.settings import engine_id, system_name
from mgmt.snmp.source import SbcStateSource
from mgmt.snmp.traps import READ_SECURITY_NAME, SnmpNotifier
from mgmt.snmp.wire import to_wire
from sbc.config.model import SnmpAuth, SnmpPriv, SnmpSettings

log = logging.getLogger("mgmt.snmp")

READ_VIEW = (1, 3, 6, 1)
REBUILD_AFTER_S = 1.0  # interface counters move without a new snapshot

_AUTH = {
    SnmpAuth.SHA256: config.USM_AUTH_HMAC192_SHA256,
    SnmpAuth.SHA512: config.USM_AUTH_HMAC384_SHA512,
}
_PRIV = {
    SnmpPriv.AES128: config.USM_PRIV_CFB128_AES,
    # net-snmp's "AES256" localizes the key with the Blumenthal draft's extension
    SnmpPriv.AES256: config.USM_PRIV_CFB256_AES_BLUMENTHAL,
}


class SnapshotInstrumentation:
    """pysnmp's MIB instrumentation interface (read_variables, read_next_variables, write_variables)
    over a `MibTable`, with VACM checked for every object through the responder's `acFun`."""

    def __init__(self, table: Callable[[], MibTable], uptime_s: Callable[[], float]) -> None:
        self._table = table
        self._uptime_s = uptime_s

    def _value(self, oid: o.Oid, table: MibTable) -> Any:
        if oid == o.SYS_UPTIME:  # live, not as old as the table
            return to_wire(timeticks(self._uptime_s()))
        value = table.get(oid)
        return None if value is None else to_wire(value)

    def read_variables(self, *var_binds: Any, **ctx: Any) -> list[tuple[Any, Any]]:
        table = self._table()
        ac_fun = ctx.get("acFun")
        out: list[tuple[Any, Any]] = []
        for idx, (name, _) in enumerate(var_binds):
            oid = tuple(name)
            value = self._value(oid, table)
            if value is None:
                # RFC 3416 4.2.1: the object type exists (e.g. a column) but not this instance
                following = table.next_after(oid[:-1])
                known_object = following is not None and following[0][: len(oid) - 1] == oid[:-1]
                value = rfc1905.noSuchInstance if known_object else rfc1905.noSuchObject
            elif ac_fun is not None and ac_fun("read", (rfc1902.ObjectName(oid), value), **dict(ctx, idx=idx)):
                value = rfc1905.noSuchObject  # RFC 3416 4.2.1: not in the view reads as no such object
            out.append((rfc1902.ObjectName(oid), value))
        return out

    def read_next_variables(self, *var_binds: Any, **ctx: Any) -> list[tuple[Any, Any]]:
        table = self._table()
        ac_fun = ctx.get("acFun")
        out: list[tuple[Any, Any]] = []
        for idx, (name, _) in enumerate(var_binds):
            oid = tuple(name)
            answer: tuple[Any, Any] = (rfc1902.ObjectName(oid), rfc1905.endOfMibView)
            for _ in range(len(table)):  # bounded: each step moves forward
                following = table.next_after(oid)
                if following is None:
                    break
                oid = following[0]
                candidate = (rfc1902.ObjectName(oid), self._value(oid, table))
                if ac_fun is not None:
                    try:
                        if ac_fun("read", candidate, **dict(ctx, idx=idx)):
                            continue  # not in this user's view: skip to the next object
                    except smi_error.NoAccessError:
                        continue  # e.g. Counter64 asked for over SNMPv1 (RFC 2576 4.1.2.1)
                answer = candidate
                break
            out.append(answer)
        return out

    def write_variables(self, *var_binds: Any, **ctx: Any) -> list[tuple[Any, Any]]:
        ac_fun = ctx.get("acFun")
        for idx, (name, value) in enumerate(var_binds):
            if ac_fun is not None:
                ac_fun("write", (name, value), **dict(ctx, idx=idx))  # raises AuthorizationError: no write view
            raise smi_error.NotWritableError(name=name, idx=idx)
        return []


class SnmpAgent:
    def __init__(self, settings: SnmpSettings, source: SbcStateSource, alarms: AlarmTable) -> None:
        self.settings = settings
        self.source = source
        self.alarms = alarms
        self.started = time.monotonic()
        self.engine: Any = None
        self.notifier: SnmpNotifier | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._table: MibTable | None = None
        self._table_key: tuple[int, int] = (-1, -1)
        self._table_built = 0.0
        self._platform = f"{platform.system()} {platform.release()} {platform.machine()}"
        self._service_status = 0
        self._service_changed_s = 0.0

    @property
    def enabled(self) -> bool:
        return self.engine is not None

    @property
    def engine_id(self) -> bytes:
        return engine_id(self.settings)

    def uptime_s(self) -> float:
        return time.monotonic() - self.started

    def mib(self) -> MibTable:
        """The current MIB, rebuilt when the snapshot or the alarms changed or after a second."""
        now = time.monotonic()
        snapshot = self.source.snapshot
        key = (snapshot.generation, self.alarms.generation)
        if self._table is None or key != self._table_key or now - self._table_built >= REBUILD_AFTER_S:
            active = self.alarms.active()
            service = sip_service_status(snapshot, active)
            if service != self._service_status:
                self._service_status, self._service_changed_s = service, self.uptime_s()
            system = SystemInfo(
                descr=system_description(snapshot, self._platform),
                name=system_name(self.settings),
                contact=self.settings.sys_contact,
                location=self.settings.sys_location,
                agent_uptime_s=self.uptime_s(),
                service_last_change_s=self._service_changed_s,
            )
            self._table = build_mib(system, snapshot, active, read_interfaces(), now)
            self._table_key = key
            self._table_built = now
        return self._table

    def start(self) -> None:
        s = self.settings
        self.engine = engine.SnmpEngine(snmpEngineID=rfc1902.OctetString(engine_id(s)))
        family = socket.AF_INET6 if s.address.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((str(s.address), s.port))  # here, so a port in use fails start_snmp_agent, not later
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"SNMP agent cannot listen on {s.address}:{s.port}: {exc.strerror}") from exc
        sock.setblocking(False)
        if family == socket.AF_INET6:
            config.add_transport(self.engine, udp6.DOMAIN_NAME, udp6.Udp6AsyncioTransport().open_server_mode(sock=sock))
        else:
            config.add_transport(self.engine, udp.DOMAIN_NAME, udp.UdpAsyncioTransport().open_server_mode(sock=sock))

        for user in s.v3_users:
            config.add_v3_user(self.engine, user.name, _AUTH[user.auth], user.auth_key, _PRIV[user.priv], user.priv_key)
            config.add_vacm_user(self.engine, 3, user.name, "authPriv", readSubTree=READ_VIEW, notifySubTree=READ_VIEW)
        if s.v2c_community:
            config.add_v1_system(self.engine, READ_SECURITY_NAME, s.v2c_community)
            config.add_vacm_user(
                self.engine, 2, READ_SECURITY_NAME, "noAuthNoPriv", readSubTree=READ_VIEW, notifySubTree=READ_VIEW
            )

        snmp_context = context.SnmpContext(self.engine)
        snmp_context.unregister_context_name(b"")
        snmp_context.register_context_name(b"", SnapshotInstrumentation(self.mib, self.uptime_s))
        for responder in (
            cmdrsp.GetCommandResponder,
            cmdrsp.NextCommandResponder,
            cmdrsp.BulkCommandResponder,
            cmdrsp.SetCommandResponder,
        ):
            responder(self.engine, snmp_context)

        self.notifier = SnmpNotifier(self.engine, s, self.uptime_s, lambda: self.source.snapshot)
        self._unsubscribe = self.alarms.subscribe(self.notifier.on_alarm)
        log.info(
            "SNMP agent on %s:%d (engine ID %s, %d v3 users, v2c %s, %d trap targets)",
            s.address, s.port, engine_id(s).hex(), len(s.v3_users),
            "read-only" if s.v2c_community else "off", len(s.trap_targets),
        )  # fmt: skip
        self.notifier.cold_start()

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self.engine is not None:
            self.engine.close_dispatcher()
            self.engine = None


async def start_snmp_agent(settings: SnmpSettings, source: SbcStateSource, alarms: AlarmTable) -> SnmpAgent:
    """Start the agent in the running event loop with the config's `management.snmp` section. A
    disabled agent is returned unstarted (`enabled` false); close() always works."""
    agent = SnmpAgent(settings, source, alarms)
    if agent.settings.enabled:
        agent.start()
    return agent
