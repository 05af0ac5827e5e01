"""SNMP notifications to the configured managers: coldStart, alarm raised/cleared, trunk down/up.

Sent as SNMPv2-Trap PDUs (RFC 3416 4.2.6): SNMPv3 traps signed and encrypted with the target's USM
user (the agent is the authoritative engine, so managers configure the agent's engine ID for the
user, e.g. snmptrapd's `createUser -e ENGINEID`), or SNMPv2c traps with the target's community.
Traps leave from their own client socket, not the agent's listening one: the agent often listens on
loopback only while managers are elsewhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pysnmp.carrier.asyncio.dgram import udp, udp6  # type: ignore[import-untyped]
from pysnmp.entity import config  # type: ignore[import-untyped]
from pysnmp.entity.rfc3413 import ntforg  # type: ignore[import-untyped]
from pysnmp.proto import rfc1902  # type: ignore[import-untyped]

from mgmt.alarm_rules import trunk_of_alarm
from mgmt.alarms import AlarmEvent
from mgmt.snmp import figures
from mgmt.snmp import oids as o
from mgmt.snmp.mib import Notification, alarm_notification, cold_start, timeticks, trunk_notification
from mgmt.snmp.source import SbcSnapshot
from mgmt.snmp.wire import to_wire
from sbc.config.model import SnmpSettings, SnmpVersion
from sbc.control.contract import TrunkState

log = logging.getLogger("mgmt.snmp.traps")

# Sub-domains of snmpUDPDomain for the notification sockets (pysnmp picks a transport by domain).
NOTIFY_DOMAIN = (*udp.DOMAIN_NAME, 2)
NOTIFY_DOMAIN6 = (*udp6.DOMAIN_NAME, 2)
READ_SECURITY_NAME = "sbc-read"  # the v2c read community's security name (set up by the agent)


class SnmpNotifier:
    def __init__(
        self,
        engine: Any,
        settings: SnmpSettings,
        uptime_s: Callable[[], float],
        snapshot: Callable[[], SbcSnapshot],
    ) -> None:
        self._engine = engine
        self._uptime_s = uptime_s
        self._snapshot = snapshot
        self._originator = ntforg.NotificationOriginator()
        self._notify_names: list[str] = []
        self.sent = 0
        if settings.trap_targets:
            self._configure(settings)

    def _configure(self, settings: SnmpSettings) -> None:
        if any(":" not in t.host for t in settings.trap_targets):
            config.add_transport(self._engine, NOTIFY_DOMAIN, udp.UdpAsyncioTransport().open_client_mode())
        if any(":" in t.host for t in settings.trap_targets):
            config.add_transport(self._engine, NOTIFY_DOMAIN6, udp6.Udp6AsyncioTransport().open_client_mode())
        for i, target in enumerate(settings.trap_targets):
            params, address, tag, notify = f"trap-params-{i}", f"trap-addr-{i}", f"trap-tag-{i}", f"trap-{i}"
            if target.version is SnmpVersion.V3:
                assert target.user is not None  # the loader: a v3 target names one of v3_users
                config.add_target_parameters(self._engine, params, target.user, "authPriv", mpModel=3)
            else:
                assert target.community is not None
                if target.community == settings.v2c_community:
                    security_name = READ_SECURITY_NAME
                else:
                    # a community only for traps: VACM gives it no read view, so requests with it get
                    # authorizationError and no data
                    security_name = f"trap-community-{i}"
                    config.add_v1_system(self._engine, security_name, target.community)
                    config.add_vacm_user(self._engine, 2, security_name, "noAuthNoPriv", notifySubTree=o.EDGE_SBC[:4])
                config.add_target_parameters(self._engine, params, security_name, "noAuthNoPriv", mpModel=1)
            domain = NOTIFY_DOMAIN6 if ":" in target.host else NOTIFY_DOMAIN
            config.add_target_address(
                self._engine, address, domain, (target.host, target.port), params, timeout=300, retryCount=0,
                tagList=tag,
            )  # fmt: skip
            config.add_notification_target(self._engine, notify, params, tag, "trap")
            self._notify_names.append(notify)

    def send(self, notification: Notification) -> None:
        if not self._notify_names:
            return
        varbinds = [
            (o.SYS_UPTIME, to_wire(timeticks(self._uptime_s()))),
            (o.SNMP_TRAP_OID, rfc1902.ObjectIdentifier(notification.trap_oid)),
            *((oid, to_wire(value)) for oid, value in notification.varbinds),
        ]
        for name in self._notify_names:
            try:
                self._originator.send_varbinds(self._engine, name, None, b"", varbinds, self._sent_callback)
                self.sent += 1
            except Exception:  # a broken target must not take the agent (or the alarm table) down
                log.exception("sending %s to %s failed", o.dotted(notification.trap_oid), name)

    def cold_start(self) -> None:
        self.send(cold_start())

    def on_alarm(self, event: AlarmEvent) -> None:
        """AlarmTable listener: sbcAlarmRaised/Cleared; for trunk alarms also sbcTrunkDown/Up."""
        alarm = event.alarm
        trunk = trunk_of_alarm(alarm.name)
        if trunk is not None:
            for index, row in enumerate(figures.trunks(self._snapshot()), start=1):
                if row.name == trunk and row.state is not TrunkState.UNKNOWN:
                    self.send(trunk_notification(index, row))
                    break
        self.send(alarm_notification(alarm))

    @staticmethod
    def _sent_callback(
        engine: Any, handle: Any, error_indication: Any, error_status: Any, error_index: Any, varbinds: Any, ctx: Any
    ) -> None:
        if error_indication:
            log.warning("notification not delivered: %s", error_indication)
