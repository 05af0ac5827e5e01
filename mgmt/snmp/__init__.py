"""SNMP for fleets: the read-only agent (SNMPv3 by default), the EDGE-SBC-MIB mapping and notifications.

Entry points: `mgmt.snmp.agent.start_snmp_agent` for the management process, `python -m mgmt.snmp`
to run the agent on its own (see `mgmt/snmp/__main__.py`). The MIB file is mgmt/mibs/EDGE-SBC-MIB.txt.
"""
