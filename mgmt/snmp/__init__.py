"""SNMP for fleets: the read-only agent (SNMPv3 by default), the EDGE-SBC-MIB mapping and notifications.

Entry point: `mgmt.snmp.agent.start_snmp_agent`, run by the management process (`mgmt.monitor`) with
the config's `management.snmp` section. The MIB files are in mgmt/mibs/.
"""
