"""Object identifiers served by the agent: SNMPv2-MIB, IF-MIB and EDGE-SBC-MIB (mgmt/mibs/EDGE-SBC-MIB.txt).

Keep this in step with the MIB file: tests/unit/mgmt/test_snmp_mib.py checks every OID here against
what `snmptranslate` reads from it.
"""

from __future__ import annotations

Oid = tuple[int, ...]

# Placeholder: the project has no IANA Private Enterprise Number yet (see the MIB's DESCRIPTION).
ENTERPRISE_NUMBER = 99999

# SNMPv2-MIB (RFC 3418)
SYSTEM: Oid = (1, 3, 6, 1, 2, 1, 1)
SYS_DESCR: Oid = (*SYSTEM, 1, 0)
SYS_OBJECT_ID: Oid = (*SYSTEM, 2, 0)
SYS_UPTIME: Oid = (*SYSTEM, 3, 0)
SYS_CONTACT: Oid = (*SYSTEM, 4, 0)
SYS_NAME: Oid = (*SYSTEM, 5, 0)
SYS_LOCATION: Oid = (*SYSTEM, 6, 0)
SYS_SERVICES: Oid = (*SYSTEM, 7, 0)
SNMP_TRAP_OID: Oid = (1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0)
COLD_START: Oid = (1, 3, 6, 1, 6, 3, 1, 1, 5, 1)

# IF-MIB (RFC 2863)
IF_NUMBER: Oid = (1, 3, 6, 1, 2, 1, 2, 1, 0)
IF_ENTRY: Oid = (1, 3, 6, 1, 2, 1, 2, 2, 1)
IF_INDEX, IF_DESCR, IF_TYPE, IF_MTU, IF_SPEED, IF_PHYS_ADDRESS = 1, 2, 3, 4, 5, 6
IF_ADMIN_STATUS, IF_OPER_STATUS, IF_IN_OCTETS, IF_OUT_OCTETS = 7, 8, 10, 16
IF_X_ENTRY: Oid = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)
IF_NAME, IF_HC_IN_OCTETS, IF_HC_OUT_OCTETS, IF_HIGH_SPEED = 1, 6, 10, 15

# NETWORK-SERVICES-MIB (RFC 2788) applTable, and SIP-COMMON-MIB (RFC 4780): one row, applIndex 1
SIP_APPL_INDEX = 1
APPL_ENTRY: Oid = (1, 3, 6, 1, 2, 1, 27, 1, 1)
APPL_NAME, APPL_VERSION, APPL_UPTIME, APPL_OPER_STATUS = 2, 4, 5, 6
SIP_COMMON: Oid = (1, 3, 6, 1, 2, 1, 149, 1)
SIP_CFG_ENTRY: Oid = (*SIP_COMMON, 1, 1, 1)
SIP_CFG_PROTOCOL_VERSION, SIP_CFG_OPER_STATUS, SIP_CFG_START_TIME, SIP_CFG_LAST_CHANGE = 1, 2, 3, 4
SIP_SUMMARY_ENTRY: Oid = (*SIP_COMMON, 3, 1, 1)
SIP_IN_REQUESTS, SIP_OUT_REQUESTS, SIP_IN_RESPONSES, SIP_OUT_RESPONSES = 1, 2, 3, 4
SIP_TOTAL_TRANSACTIONS, SIP_SUMMARY_DISCON_TIME = 5, 6
SIP_TRANS_CURRENT_ENTRY: Oid = (*SIP_COMMON, 6, 1, 1)
SIP_TRANS_CURRENT = 1
SIP_OTHER_ENTRY: Oid = (*SIP_COMMON, 8, 1, 1)
SIP_UNSUPPORTED_URIS, SIP_UNSUPPORTED_METHODS, SIP_OTHERWISE_DISCARDED, SIP_OTHER_DISCON_TIME = 1, 2, 3, 4

# EDGE-SBC-MIB
EDGE_SBC: Oid = (1, 3, 6, 1, 4, 1, ENTERPRISE_NUMBER)
NOTIFICATIONS: Oid = (*EDGE_SBC, 0)
APPLIANCE_PRODUCT: Oid = (*EDGE_SBC, 1, 1)  # sysObjectID
OBJECTS: Oid = (*EDGE_SBC, 2)

SBC_SYSTEM: Oid = (*OBJECTS, 1)
SBC_VERSION: Oid = (*SBC_SYSTEM, 1)
SBC_UPTIME: Oid = (*SBC_SYSTEM, 2)
SBC_DATAPLANE_MODE: Oid = (*SBC_SYSTEM, 3)
SBC_DATAPLANE_NOTE: Oid = (*SBC_SYSTEM, 4)
SBC_CONTROL_REACHABLE: Oid = (*SBC_SYSTEM, 5)
SBC_SNAPSHOT_AGE: Oid = (*SBC_SYSTEM, 6)
SBC_MAX_CALLS: Oid = (*SBC_SYSTEM, 7)

SBC_CALLS: Oid = (*OBJECTS, 2)
SBC_ACTIVE_CALLS: Oid = (*SBC_CALLS, 1)
SBC_CALLS_PER_SECOND: Oid = (*SBC_CALLS, 2)
SBC_CALLS_TOTAL: Oid = (*SBC_CALLS, 3)
SBC_CALLS_ANSWERED: Oid = (*SBC_CALLS, 4)
SBC_CALLS_FAILED: Oid = (*SBC_CALLS, 5)
SBC_CALLS_CANCELLED: Oid = (*SBC_CALLS, 6)
SBC_REGISTRATIONS: Oid = (*SBC_CALLS, 7)
SBC_MESSAGES_RECEIVED: Oid = (*SBC_CALLS, 8)
SBC_MALFORMED_ANSWERED: Oid = (*SBC_CALLS, 9)
SBC_MALFORMED_DROPPED: Oid = (*SBC_CALLS, 10)

SBC_MEDIA: Oid = (*OBJECTS, 3)
SBC_MEDIA_XDP: Oid = (*SBC_MEDIA, 1)
SBC_MEDIA_USERSPACE: Oid = (*SBC_MEDIA, 2)
SBC_MEDIA_DIRECT: Oid = (*SBC_MEDIA, 3)
SBC_RELAYED_PACKETS: Oid = (*SBC_MEDIA, 4)
SBC_DROPPED_PACKETS: Oid = (*SBC_MEDIA, 5)
SBC_MEAN_MOS: Oid = (*SBC_MEDIA, 6)
SBC_HAIRPINNED_CALLS: Oid = (*SBC_MEDIA, 7)

REALM_ENTRY: Oid = (*OBJECTS, 4, 1)
REALM_NAME, REALM_ADDRESS, REALM_LISTEN, REALM_MEDIA_PORTS = 2, 3, 4, 5
REALM_ACTIVE_CALLS, REALM_CALLS_IN, REALM_CALLS_OUT = 6, 7, 8

TRUNK_ENTRY: Oid = (*OBJECTS, 5, 1)
TRUNK_NAME, TRUNK_ADDRESS, TRUNK_STATE, TRUNK_REALM = 2, 3, 4, 5

SBC_ALARMS: Oid = (*OBJECTS, 6)
SBC_ALARMS_ACTIVE: Oid = (*SBC_ALARMS, 1)
ALARM_ENTRY: Oid = (*SBC_ALARMS, 2, 1)
ALARM_NAME, ALARM_SEVERITY, ALARM_TEXT, ALARM_RAISED_TIME = 2, 3, 4, 5

SBC_ALARM_RAISED: Oid = (*NOTIFICATIONS, 1)
SBC_ALARM_CLEARED: Oid = (*NOTIFICATIONS, 2)
SBC_TRUNK_DOWN: Oid = (*NOTIFICATIONS, 3)
SBC_TRUNK_UP: Oid = (*NOTIFICATIONS, 4)

# Named for the MIB cross-check test: MODULE::name -> OID without instance suffix.
STANDARD_NAMES: dict[str, Oid] = {
    "SNMPv2-MIB::sysDescr": SYS_DESCR[:-1],
    "SNMPv2-MIB::sysObjectID": SYS_OBJECT_ID[:-1],
    "SNMPv2-MIB::sysUpTime": SYS_UPTIME[:-1],
    "SNMPv2-MIB::sysContact": SYS_CONTACT[:-1],
    "SNMPv2-MIB::sysName": SYS_NAME[:-1],
    "SNMPv2-MIB::sysLocation": SYS_LOCATION[:-1],
    "SNMPv2-MIB::sysServices": SYS_SERVICES[:-1],
    "SNMPv2-MIB::snmpTrapOID": SNMP_TRAP_OID[:-1],
    "SNMPv2-MIB::coldStart": COLD_START,
    "IF-MIB::ifNumber": IF_NUMBER[:-1],
    "IF-MIB::ifIndex": (*IF_ENTRY, IF_INDEX),
    "IF-MIB::ifDescr": (*IF_ENTRY, IF_DESCR),
    "IF-MIB::ifType": (*IF_ENTRY, IF_TYPE),
    "IF-MIB::ifMtu": (*IF_ENTRY, IF_MTU),
    "IF-MIB::ifSpeed": (*IF_ENTRY, IF_SPEED),
    "IF-MIB::ifPhysAddress": (*IF_ENTRY, IF_PHYS_ADDRESS),
    "IF-MIB::ifAdminStatus": (*IF_ENTRY, IF_ADMIN_STATUS),
    "IF-MIB::ifOperStatus": (*IF_ENTRY, IF_OPER_STATUS),
    "IF-MIB::ifInOctets": (*IF_ENTRY, IF_IN_OCTETS),
    "IF-MIB::ifOutOctets": (*IF_ENTRY, IF_OUT_OCTETS),
    "IF-MIB::ifName": (*IF_X_ENTRY, IF_NAME),
    "IF-MIB::ifHCInOctets": (*IF_X_ENTRY, IF_HC_IN_OCTETS),
    "IF-MIB::ifHCOutOctets": (*IF_X_ENTRY, IF_HC_OUT_OCTETS),
    "IF-MIB::ifHighSpeed": (*IF_X_ENTRY, IF_HIGH_SPEED),
    "NETWORK-SERVICES-MIB::applName": (*APPL_ENTRY, APPL_NAME),
    "NETWORK-SERVICES-MIB::applVersion": (*APPL_ENTRY, APPL_VERSION),
    "NETWORK-SERVICES-MIB::applUptime": (*APPL_ENTRY, APPL_UPTIME),
    "NETWORK-SERVICES-MIB::applOperStatus": (*APPL_ENTRY, APPL_OPER_STATUS),
    "SIP-COMMON-MIB::sipCommonCfgProtocolVersion": (*SIP_CFG_ENTRY, SIP_CFG_PROTOCOL_VERSION),
    "SIP-COMMON-MIB::sipCommonCfgServiceOperStatus": (*SIP_CFG_ENTRY, SIP_CFG_OPER_STATUS),
    "SIP-COMMON-MIB::sipCommonCfgServiceStartTime": (*SIP_CFG_ENTRY, SIP_CFG_START_TIME),
    "SIP-COMMON-MIB::sipCommonCfgServiceLastChange": (*SIP_CFG_ENTRY, SIP_CFG_LAST_CHANGE),
    "SIP-COMMON-MIB::sipCommonSummaryInRequests": (*SIP_SUMMARY_ENTRY, SIP_IN_REQUESTS),
    "SIP-COMMON-MIB::sipCommonSummaryOutRequests": (*SIP_SUMMARY_ENTRY, SIP_OUT_REQUESTS),
    "SIP-COMMON-MIB::sipCommonSummaryInResponses": (*SIP_SUMMARY_ENTRY, SIP_IN_RESPONSES),
    "SIP-COMMON-MIB::sipCommonSummaryOutResponses": (*SIP_SUMMARY_ENTRY, SIP_OUT_RESPONSES),
    "SIP-COMMON-MIB::sipCommonSummaryTotalTransactions": (*SIP_SUMMARY_ENTRY, SIP_TOTAL_TRANSACTIONS),
    "SIP-COMMON-MIB::sipCommonSummaryDisconTime": (*SIP_SUMMARY_ENTRY, SIP_SUMMARY_DISCON_TIME),
    "SIP-COMMON-MIB::sipCommonTransCurrentactions": (*SIP_TRANS_CURRENT_ENTRY, SIP_TRANS_CURRENT),
    "SIP-COMMON-MIB::sipCommonOtherStatsNumUnsupportedUris": (*SIP_OTHER_ENTRY, SIP_UNSUPPORTED_URIS),
    "SIP-COMMON-MIB::sipCommonOtherStatsNumUnsupportedMethods": (*SIP_OTHER_ENTRY, SIP_UNSUPPORTED_METHODS),
    "SIP-COMMON-MIB::sipCommonOtherStatsOtherwiseDiscardedMsgs": (*SIP_OTHER_ENTRY, SIP_OTHERWISE_DISCARDED),
    "SIP-COMMON-MIB::sipCommonOtherStatsDisconTime": (*SIP_OTHER_ENTRY, SIP_OTHER_DISCON_TIME),
}
MIB_NAMES: dict[str, Oid] = {
    "edgeSbcMIB": EDGE_SBC,
    "sbcApplianceProduct": APPLIANCE_PRODUCT,
    "sbcVersion": SBC_VERSION,
    "sbcUptime": SBC_UPTIME,
    "sbcDataplaneMode": SBC_DATAPLANE_MODE,
    "sbcDataplaneNote": SBC_DATAPLANE_NOTE,
    "sbcControlReachable": SBC_CONTROL_REACHABLE,
    "sbcSnapshotAge": SBC_SNAPSHOT_AGE,
    "sbcMaxCalls": SBC_MAX_CALLS,
    "sbcActiveCalls": SBC_ACTIVE_CALLS,
    "sbcCallsPerSecond": SBC_CALLS_PER_SECOND,
    "sbcCallsTotal": SBC_CALLS_TOTAL,
    "sbcCallsAnswered": SBC_CALLS_ANSWERED,
    "sbcCallsFailed": SBC_CALLS_FAILED,
    "sbcCallsCancelled": SBC_CALLS_CANCELLED,
    "sbcRegistrations": SBC_REGISTRATIONS,
    "sbcMessagesReceived": SBC_MESSAGES_RECEIVED,
    "sbcMalformedAnswered": SBC_MALFORMED_ANSWERED,
    "sbcMalformedDropped": SBC_MALFORMED_DROPPED,
    "sbcMediaSessionsXdp": SBC_MEDIA_XDP,
    "sbcMediaSessionsUserspace": SBC_MEDIA_USERSPACE,
    "sbcMediaSessionsDirect": SBC_MEDIA_DIRECT,
    "sbcRelayedPackets": SBC_RELAYED_PACKETS,
    "sbcDroppedPackets": SBC_DROPPED_PACKETS,
    "sbcMeanMos": SBC_MEAN_MOS,
    "sbcHairpinnedCalls": SBC_HAIRPINNED_CALLS,
    "sbcRealmName": (*REALM_ENTRY, REALM_NAME),
    "sbcRealmAddress": (*REALM_ENTRY, REALM_ADDRESS),
    "sbcRealmListen": (*REALM_ENTRY, REALM_LISTEN),
    "sbcRealmMediaPorts": (*REALM_ENTRY, REALM_MEDIA_PORTS),
    "sbcRealmActiveCalls": (*REALM_ENTRY, REALM_ACTIVE_CALLS),
    "sbcRealmCallsIn": (*REALM_ENTRY, REALM_CALLS_IN),
    "sbcRealmCallsOut": (*REALM_ENTRY, REALM_CALLS_OUT),
    "sbcTrunkName": (*TRUNK_ENTRY, TRUNK_NAME),
    "sbcTrunkAddress": (*TRUNK_ENTRY, TRUNK_ADDRESS),
    "sbcTrunkState": (*TRUNK_ENTRY, TRUNK_STATE),
    "sbcTrunkRealm": (*TRUNK_ENTRY, TRUNK_REALM),
    "sbcAlarmsActive": SBC_ALARMS_ACTIVE,
    "sbcAlarmName": (*ALARM_ENTRY, ALARM_NAME),
    "sbcAlarmSeverity": (*ALARM_ENTRY, ALARM_SEVERITY),
    "sbcAlarmText": (*ALARM_ENTRY, ALARM_TEXT),
    "sbcAlarmRaisedTime": (*ALARM_ENTRY, ALARM_RAISED_TIME),
    "sbcAlarmRaised": SBC_ALARM_RAISED,
    "sbcAlarmCleared": SBC_ALARM_CLEARED,
    "sbcTrunkDown": SBC_TRUNK_DOWN,
    "sbcTrunkUp": SBC_TRUNK_UP,
}


def dotted(oid: Oid) -> str:
    return ".".join(str(n) for n in oid)
