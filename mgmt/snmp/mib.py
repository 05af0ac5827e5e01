"""Snapshot -> MIB: the OIDs and values the agent serves, as plain data (no pysnmp, no I/O).

`build_mib` turns what the management plane knows (the SBC snapshot, the active alarms, the box's
interfaces, the agent's own system texts) into a `MibTable`: the sorted OID -> `Value` map that
GET, GETNEXT and GETBULK read. The agent converts `Value`s to wire types at the last moment.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from mgmt.alarms import Alarm, Severity
from mgmt.snmp import figures
from mgmt.snmp import oids as o
from mgmt.snmp.interfaces import Interface
from mgmt.snmp.source import SbcSnapshot
from sbc.control.contract import DataplaneMode, StatusReport, TrunkState, TrunkView

MAX32 = 2**32 - 1
DISPLAY_STRING_MAX = 255
SYS_SERVICES = 72  # RFC 3418 sysServices: end-to-end (layer 4, 8) + applications (layer 7, 64)


class Syntax(StrEnum):
    INTEGER = "Integer32"
    OCTETS = "OctetString"
    OID = "ObjectIdentifier"
    TIMETICKS = "TimeTicks"
    GAUGE32 = "Gauge32"
    COUNTER32 = "Counter32"
    COUNTER64 = "Counter64"
    UNSIGNED32 = "Unsigned32"


@dataclass(frozen=True, slots=True)
class Value:
    syntax: Syntax
    value: int | bytes | tuple[int, ...]


def integer(n: int) -> Value:
    return Value(Syntax.INTEGER, max(min(int(n), 2**31 - 1), -(2**31)))


def octets(s: str | bytes, limit: int = DISPLAY_STRING_MAX) -> Value:
    raw = s.encode("utf-8", "replace") if isinstance(s, str) else s
    return Value(Syntax.OCTETS, raw[:limit])


def object_id(oid: o.Oid) -> Value:
    return Value(Syntax.OID, oid)


def timeticks(seconds: float) -> Value:
    return Value(Syntax.TIMETICKS, int(max(seconds, 0) * 100) % 2**32)  # wraps after 497 days, as it must


def gauge(n: float) -> Value:
    return Value(Syntax.GAUGE32, max(min(int(n), MAX32), 0))  # RFC 2578 7.1.7: a gauge latches at its max


def unsigned(n: float) -> Value:
    return Value(Syntax.UNSIGNED32, max(min(int(n), MAX32), 0))


def counter32(n: float) -> Value:
    return Value(Syntax.COUNTER32, int(n) % 2**32)


def counter64(n: float) -> Value:
    return Value(Syntax.COUNTER64, int(n) % 2**64)


def hundredths(x: float) -> Value:
    return gauge(round(x * 100))


def date_and_time(unix: float) -> Value:
    """SNMPv2-TC DateAndTime in UTC, 11 octets: year, month, day, hour, minute, second, deci-second,
    '+', 0, 0."""
    t = time.gmtime(unix)
    deci = int((unix % 1) * 10)
    raw = t.tm_year.to_bytes(2, "big") + bytes((t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, deci))
    return Value(Syntax.OCTETS, raw + b"+\x00\x00")


# SbcPerceivedSeverity (ITU-T X.733 numbering)
SEVERITY_CODES = {
    Severity.INDETERMINATE: 2,
    Severity.CRITICAL: 3,
    Severity.MAJOR: 4,
    Severity.MINOR: 5,
    Severity.WARNING: 6,
}
SEVERITY_CLEARED = 1
DATAPLANE_UNKNOWN = 1  # the SBC has not answered yet
DATAPLANE_CODES = {DataplaneMode.XDP: 2, DataplaneMode.USERSPACE: 3}
TRUNK_STATE_CODES = {TrunkState.UP: 1, TrunkState.DOWN: 2, TrunkState.UNKNOWN: 3}
TRUTH_TRUE, TRUTH_FALSE = 1, 2


class MibTable:
    """An immutable, sorted OID -> Value map with the lookups an SNMP agent needs."""

    def __init__(self, entries: Iterable[tuple[o.Oid, Value]]) -> None:
        self._values = dict(entries)
        self._oids = sorted(self._values)

    def __len__(self) -> int:
        return len(self._oids)

    def __contains__(self, oid: object) -> bool:
        return oid in self._values

    def get(self, oid: o.Oid) -> Value | None:
        return self._values.get(oid)

    def next_after(self, oid: o.Oid) -> tuple[o.Oid, Value] | None:
        """The first object whose OID is lexicographically greater than `oid` (RFC 3416 4.2.2)."""
        i = bisect.bisect_right(self._oids, oid)
        if i == len(self._oids):
            return None
        found = self._oids[i]
        return found, self._values[found]

    def items(self) -> list[tuple[o.Oid, Value]]:
        return [(oid, self._values[oid]) for oid in self._oids]

    def subtree(self, prefix: o.Oid) -> list[tuple[o.Oid, Value]]:
        return [(oid, v) for oid, v in self.items() if oid[: len(prefix)] == prefix]


@dataclass(frozen=True, slots=True)
class SystemInfo:
    """SNMPv2-MIB system group texts and the agent's own uptime (sysUpTime)."""

    descr: str
    name: str
    contact: str = ""
    location: str = ""
    agent_uptime_s: float = 0.0
    service_last_change_s: float = 0.0  # agent uptime when sipCommonCfgServiceOperStatus last changed


def system_description(snapshot: SbcSnapshot, platform_text: str) -> str:
    version = snapshot.status.version if snapshot.status is not None else "(version unknown)"
    return f"Edge SBC {version}, SIP session border controller; {platform_text}"


def system_objects(system: SystemInfo) -> list[tuple[o.Oid, Value]]:
    return [
        (o.SYS_DESCR, octets(system.descr)),
        (o.SYS_OBJECT_ID, object_id(o.APPLIANCE_PRODUCT)),
        (o.SYS_UPTIME, timeticks(system.agent_uptime_s)),
        (o.SYS_CONTACT, octets(system.contact)),
        (o.SYS_NAME, octets(system.name)),
        (o.SYS_LOCATION, octets(system.location)),
        (o.SYS_SERVICES, integer(SYS_SERVICES)),
    ]


def interface_objects(interfaces: Sequence[Interface]) -> list[tuple[o.Oid, Value]]:
    out = [(o.IF_NUMBER, integer(len(interfaces)))]
    for i in interfaces:

        def col(column: int, value: Value, index: int = i.index) -> tuple[o.Oid, Value]:
            return (*o.IF_ENTRY, column, index), value

        out += [
            col(o.IF_INDEX, integer(i.index)),
            col(o.IF_DESCR, octets(i.name)),
            col(o.IF_TYPE, integer(i.if_type)),
            col(o.IF_MTU, integer(i.mtu)),
            col(o.IF_SPEED, gauge(i.speed_bps)),
            col(o.IF_PHYS_ADDRESS, octets(i.phys_address)),
            col(o.IF_ADMIN_STATUS, integer(1 if i.admin_up else 2)),
            col(o.IF_OPER_STATUS, integer(i.oper_status)),
            col(o.IF_IN_OCTETS, counter32(i.in_octets)),
            col(o.IF_OUT_OCTETS, counter32(i.out_octets)),
        ]
    for i in interfaces:  # ifXTable after ifTable: the map is sorted anyway, this keeps the list readable

        def xcol(column: int, value: Value, index: int = i.index) -> tuple[o.Oid, Value]:
            return (*o.IF_X_ENTRY, column, index), value

        out += [
            xcol(o.IF_NAME, octets(i.name)),
            xcol(o.IF_HC_IN_OCTETS, counter64(i.in_octets)),
            xcol(o.IF_HC_OUT_OCTETS, counter64(i.out_octets)),
            xcol(o.IF_HIGH_SPEED, gauge(i.speed_bps // 1_000_000)),
        ]
    return out


def sbc_objects(snapshot: SbcSnapshot, now: float) -> list[tuple[o.Oid, Value]]:
    """The EDGE-SBC-MIB scalars and the realm and trunk tables, from one snapshot. Until the SBC first
    answers, only whether it answers: no figure is served that it did not report."""
    out = [
        ((*o.SBC_CONTROL_REACHABLE, 0), integer(TRUTH_TRUE if snapshot.reachable else TRUTH_FALSE)),
        ((*o.SBC_SNAPSHOT_AGE, 0), unsigned(snapshot.age(now))),
    ]
    status = snapshot.status
    if status is None:
        return [*out, ((*o.SBC_DATAPLANE_MODE, 0), integer(DATAPLANE_UNKNOWN))]
    media = figures.media_sessions(snapshot.calls)
    counters = status.counters
    out += [
        ((*o.SBC_VERSION, 0), octets(status.version)),
        ((*o.SBC_UPTIME, 0), timeticks(status.uptime_s)),
        ((*o.SBC_DATAPLANE_MODE, 0), integer(DATAPLANE_CODES[status.dataplane])),
        ((*o.SBC_DATAPLANE_NOTE, 0), octets(status.dataplane_note)),
        ((*o.SBC_MAX_CALLS, 0), unsigned(status.max_calls)),
        ((*o.SBC_ACTIVE_CALLS, 0), gauge(status.active_calls)),
        ((*o.SBC_CALLS_PER_SECOND, 0), hundredths(snapshot.calls_per_second)),
        ((*o.SBC_CALLS_TOTAL, 0), counter64(counters.calls_total)),
        ((*o.SBC_CALLS_ANSWERED, 0), counter64(counters.calls_answered)),
        ((*o.SBC_CALLS_FAILED, 0), counter64(counters.calls_failed)),
        ((*o.SBC_CALLS_CANCELLED, 0), counter64(counters.calls_cancelled)),
        ((*o.SBC_REGISTRATIONS, 0), gauge(status.registrations)),
        ((*o.SBC_MESSAGES_RECEIVED, 0), counter64(counters.messages_received)),
        ((*o.SBC_MALFORMED_ANSWERED, 0), counter64(counters.malformed_answered)),
        ((*o.SBC_MALFORMED_DROPPED, 0), counter64(counters.malformed_dropped)),
        ((*o.SBC_MEDIA_XDP, 0), gauge(media.xdp)),
        ((*o.SBC_MEDIA_USERSPACE, 0), gauge(media.userspace)),
        ((*o.SBC_MEDIA_DIRECT, 0), gauge(media.direct)),
        ((*o.SBC_RELAYED_PACKETS, 0), counter64(status.relay.relayed_packets)),
        ((*o.SBC_DROPPED_PACKETS, 0), counter64(status.relay.dropped_packets)),
        ((*o.SBC_MEAN_MOS, 0), hundredths(figures.mean_mos(snapshot.calls) or 0.0)),
        ((*o.SBC_HAIRPINNED_CALLS, 0), counter64(counters.hairpins)),
    ]
    for index, realm in enumerate(figures.realm_rows(status, snapshot.calls), start=1):
        out += [
            ((*o.REALM_ENTRY, o.REALM_NAME, index), octets(realm.name)),
            ((*o.REALM_ENTRY, o.REALM_ADDRESS, index), octets(realm.address)),
            ((*o.REALM_ENTRY, o.REALM_LISTEN, index), octets(realm.listen)),
            ((*o.REALM_ENTRY, o.REALM_MEDIA_PORTS, index), octets(realm.media_ports)),
            ((*o.REALM_ENTRY, o.REALM_ACTIVE_CALLS, index), gauge(realm.active_calls)),
            ((*o.REALM_ENTRY, o.REALM_CALLS_IN, index), counter64(realm.calls_in)),
            ((*o.REALM_ENTRY, o.REALM_CALLS_OUT, index), counter64(realm.calls_out)),
        ]
    for index, trunk in enumerate(status.trunks, start=1):
        out += trunk_columns(index, trunk)
    return out


def trunk_columns(index: int, trunk: TrunkView) -> list[tuple[o.Oid, Value]]:
    return [
        ((*o.TRUNK_ENTRY, o.TRUNK_NAME, index), octets(trunk.name)),
        ((*o.TRUNK_ENTRY, o.TRUNK_ADDRESS, index), octets(trunk.address)),
        ((*o.TRUNK_ENTRY, o.TRUNK_STATE, index), integer(TRUNK_STATE_CODES[trunk.state])),
        ((*o.TRUNK_ENTRY, o.TRUNK_REALM, index), octets(trunk.realm)),
    ]


def alarm_columns(alarm: Alarm) -> list[tuple[o.Oid, Value]]:
    """sbcAlarmEntry's columns for one alarm; a cleared alarm reads severity cleared(1)."""
    severity = SEVERITY_CLEARED if alarm.cleared_at is not None else SEVERITY_CODES[alarm.severity]
    return [
        ((*o.ALARM_ENTRY, o.ALARM_NAME, alarm.id), octets(alarm.name)),
        ((*o.ALARM_ENTRY, o.ALARM_SEVERITY, alarm.id), integer(severity)),
        ((*o.ALARM_ENTRY, o.ALARM_TEXT, alarm.id), octets(alarm.text)),
        ((*o.ALARM_ENTRY, o.ALARM_RAISED_TIME, alarm.id), date_and_time(alarm.raised_at)),
    ]


def alarm_objects(alarms: Sequence[Alarm]) -> list[tuple[o.Oid, Value]]:
    out = [((*o.SBC_ALARMS_ACTIVE, 0), gauge(len(alarms)))]
    for alarm in alarms:
        out += alarm_columns(alarm)
    return out


# SIP-COMMON-MIB sipCommonCfgServiceOperStatus and NETWORK-SERVICES-MIB applOperStatus
SIP_UNKNOWN, SIP_UP, SIP_DOWN, SIP_CONGESTED = 1, 2, 3, 4
APPL_UP, APPL_DOWN, APPL_CONGESTED = 1, 2, 4
HIGH_LOAD_ALARM = "high-load"


def sip_service_status(snapshot: SbcSnapshot, alarms: Sequence[Alarm]) -> int:
    if snapshot.generation == 0:
        return SIP_UNKNOWN
    if not snapshot.reachable:
        return SIP_DOWN
    return SIP_CONGESTED if any(a.name == HIGH_LOAD_ALARM for a in alarms) else SIP_UP


def sip_common_objects(
    system: SystemInfo, snapshot: SbcSnapshot, alarms: Sequence[Alarm], now: float
) -> list[tuple[o.Oid, Value]]:
    """RFC 4780 (and RFC 2788's applTable row it is indexed by) for the SBC's SIP service, applIndex 1.
    Until the SBC first answers, the service's state only (unknown): no counters."""
    i = o.SIP_APPL_INDEX
    service = sip_service_status(snapshot, alarms)
    appl = {SIP_UP: APPL_UP, SIP_CONGESTED: APPL_CONGESTED}.get(service, APPL_DOWN)
    out = [
        ((*o.APPL_ENTRY, o.APPL_NAME, i), octets("edge-sbc SIP service")),
        ((*o.APPL_ENTRY, o.APPL_OPER_STATUS, i), integer(appl)),
        ((*o.SIP_CFG_ENTRY, o.SIP_CFG_PROTOCOL_VERSION, i), octets("SIP/2.0")),
        ((*o.SIP_CFG_ENTRY, o.SIP_CFG_OPER_STATUS, i), integer(service)),
        ((*o.SIP_CFG_ENTRY, o.SIP_CFG_LAST_CHANGE, i), timeticks(system.service_last_change_s)),
    ]
    if snapshot.status is not None:
        out += sip_service_figures(system, snapshot.status, snapshot.age(now))
    return out


def sip_service_figures(system: SystemInfo, status: StatusReport, age_s: float) -> list[tuple[o.Oid, Value]]:
    i = o.SIP_APPL_INDEX
    # the SBC's start on the agent's clock (sysUpTime); 0 when it started before the agent
    started = timeticks(max(system.agent_uptime_s - status.uptime_s - age_s, 0.0))
    sip = status.sip
    return [
        ((*o.APPL_ENTRY, o.APPL_VERSION, i), octets(status.version)),
        ((*o.APPL_ENTRY, o.APPL_UPTIME, i), started),
        ((*o.SIP_CFG_ENTRY, o.SIP_CFG_START_TIME, i), started),
        ((*o.SIP_SUMMARY_ENTRY, o.SIP_IN_REQUESTS, i), counter32(sip.in_requests)),
        ((*o.SIP_SUMMARY_ENTRY, o.SIP_OUT_REQUESTS, i), counter32(sip.out_requests)),
        ((*o.SIP_SUMMARY_ENTRY, o.SIP_IN_RESPONSES, i), counter32(sip.in_responses)),
        ((*o.SIP_SUMMARY_ENTRY, o.SIP_OUT_RESPONSES, i), counter32(sip.out_responses)),
        ((*o.SIP_SUMMARY_ENTRY, o.SIP_TOTAL_TRANSACTIONS, i), counter32(sip.transactions_total)),
        ((*o.SIP_SUMMARY_ENTRY, o.SIP_SUMMARY_DISCON_TIME, i), started),
        ((*o.SIP_TRANS_CURRENT_ENTRY, o.SIP_TRANS_CURRENT, i), gauge(sip.transactions_active)),
        ((*o.SIP_OTHER_ENTRY, o.SIP_UNSUPPORTED_URIS, i), counter32(sip.unsupported_uris)),
        ((*o.SIP_OTHER_ENTRY, o.SIP_UNSUPPORTED_METHODS, i), counter32(sip.unsupported_methods)),
        ((*o.SIP_OTHER_ENTRY, o.SIP_OTHERWISE_DISCARDED, i), counter32(sip.otherwise_discarded)),
        ((*o.SIP_OTHER_ENTRY, o.SIP_OTHER_DISCON_TIME, i), started),
    ]


def build_mib(
    system: SystemInfo,
    snapshot: SbcSnapshot,
    alarms: Sequence[Alarm],
    interfaces: Sequence[Interface],
    now: float,
) -> MibTable:
    return MibTable(
        [
            *system_objects(system),
            *interface_objects(interfaces),
            *sip_common_objects(system, snapshot, alarms, now),
            *sbc_objects(snapshot, now),
            *alarm_objects(alarms),
        ]
    )


# ---- notifications (RFC 3416 4.2.6: the agent adds sysUpTime.0 and snmpTrapOID.0 in front) -------


@dataclass(frozen=True, slots=True)
class Notification:
    trap_oid: o.Oid
    varbinds: tuple[tuple[o.Oid, Value], ...] = ()


def cold_start() -> Notification:
    return Notification(o.COLD_START)


def alarm_notification(alarm: Alarm) -> Notification:
    """sbcAlarmRaised for an active alarm, sbcAlarmCleared for a cleared one."""
    trap = o.SBC_ALARM_RAISED if alarm.cleared_at is None else o.SBC_ALARM_CLEARED
    return Notification(trap, tuple(alarm_columns(alarm)))


def trunk_notification(index: int, trunk: TrunkView) -> Notification:
    """sbcTrunkDown or sbcTrunkUp with the trunk's row (index: its position in sbcTrunkTable)."""
    trap = o.SBC_TRUNK_UP if trunk.state is TrunkState.UP else o.SBC_TRUNK_DOWN
    columns = [vb for vb in trunk_columns(index, trunk) if vb[0][len(o.TRUNK_ENTRY)] != o.TRUNK_REALM]
    return Notification(trap, tuple(columns))
