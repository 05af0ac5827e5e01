"""The MIB files net-snmp loads (mgmt/mibs) against the OIDs the agent serves (mgmt/snmp/oids.py), and the
snapshot -> MIB mapping. net-snmp's `snmptranslate` is the judge: every module loads without a
warning, and every name resolves to the OID the agent uses."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mgmt.alarms import AlarmTable
from mgmt.snmp import oids as o
from mgmt.snmp.interfaces import Interface
from mgmt.snmp.mib import SystemInfo, build_mib
from mgmt.snmp.source import SbcSnapshot
from tests.unit.contract_samples import call, status_report

MIBS = Path(__file__).resolve().parents[3] / "mgmt" / "mibs"
MODULES = ["SNMPv2-SMI", "SNMPv2-TC", "SNMPv2-CONF", "SNMPv2-MIB", "IANAifType-MIB", "IF-MIB", "SNMP-FRAMEWORK-MIB",
           "NETWORK-SERVICES-MIB", "SIP-COMMON-MIB", "EDGE-SBC-MIB"]  # fmt: skip

needs_netsnmp = pytest.mark.skipif(shutil.which("snmptranslate") is None, reason="net-snmp (snmp) not installed")


def translate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["snmptranslate", "-M", str(MIBS), "-m", ":".join(MODULES), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_module_file_is_shipped() -> None:
    assert sorted(p.stem for p in MIBS.glob("*.txt")) == sorted(MODULES)


@needs_netsnmp
@pytest.mark.parametrize("module", MODULES)
def test_module_loads_without_warnings(module: str) -> None:
    result = subprocess.run(
        ["snmptranslate", "-M", str(MIBS), "-m", module, "-PW", "-Pe", "-Tp"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    noise = [line for line in result.stderr.splitlines() if line.strip() and "parsed and ignored" not in line]
    assert result.returncode == 0 and not noise, result.stderr


@needs_netsnmp
def test_every_served_name_resolves_to_the_agents_oid() -> None:
    names = {**o.STANDARD_NAMES, **{f"EDGE-SBC-MIB::{k}": v for k, v in o.MIB_NAMES.items()}}
    result = translate("-On", *names)
    assert result.returncode == 0, result.stderr
    got = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    assert got == ["." + o.dotted(oid) for oid in names.values()]


@needs_netsnmp
def test_every_object_of_the_enterprise_mib_is_known_to_the_agent() -> None:
    """Each OBJECT-TYPE and NOTIFICATION-TYPE of EDGE-SBC-MIB (leaves with access) is in oids.MIB_NAMES."""
    result = translate("-Tz")  # "name"  "oid" for every node
    assert result.returncode == 0, result.stderr
    prefix = o.dotted(o.EDGE_SBC)
    in_mib = {}
    for line in result.stdout.splitlines():
        name, _, oid = line.replace('"', "").partition("\t")
        oid = oid.strip()
        if oid == prefix or oid.startswith(prefix + "."):
            in_mib[name.strip()] = oid
    leaves = {n for n in in_mib if translate("-Td", f"EDGE-SBC-MIB::{n}").stdout.count("MAX-ACCESS\tread-only")}
    leaves |= {n for n in in_mib if "NOTIFICATION-TYPE" in translate("-Td", f"EDGE-SBC-MIB::{n}").stdout}
    assert leaves <= set(o.MIB_NAMES), sorted(leaves - set(o.MIB_NAMES))


def snapshot() -> SbcSnapshot:
    return SbcSnapshot(
        status=status_report(), calls=(call(),), taken_at=1.0, reachable=True, calls_per_second=1.5, generation=1
    )


def test_snapshot_figures_land_on_their_oids() -> None:
    alarms = AlarmTable(clock=lambda: 1_700_000_000.0)
    alarms.raise_alarm("high-load", "major", "too many calls")
    eth = Interface(2, "eth0", 6, 1500, 10**9, b"\x02\x00\x00\x00\x00\x01", True, 1, 2**33, 5)
    table = build_mib(SystemInfo("descr", "box"), snapshot(), alarms.active(), [eth], now=2.0)

    def value(oid: o.Oid) -> object:
        found = table.get(oid)
        assert found is not None, o.dotted(oid)
        return found.value

    assert value((*o.SBC_ACTIVE_CALLS, 0)) == 1
    assert value((*o.SBC_CALLS_PER_SECOND, 0)) == 150
    assert value((*o.SBC_CALLS_ANSWERED, 0)) == 5
    assert value((*o.SBC_REGISTRATIONS, 0)) == 2
    assert value((*o.SBC_MEDIA_USERSPACE, 0)) == 1
    assert value((*o.SBC_RELAYED_PACKETS, 0)) == 1234 and value((*o.SBC_DROPPED_PACKETS, 0)) == 1
    assert value((*o.SBC_MEAN_MOS, 0)) == 440
    assert value((*o.TRUNK_ENTRY, o.TRUNK_STATE, 1)) == 1
    assert value((*o.REALM_ENTRY, o.REALM_ACTIVE_CALLS, 1)) == 1
    assert value((*o.REALM_ENTRY, o.REALM_CALLS_IN, 1)) == 3 and value((*o.REALM_ENTRY, o.REALM_CALLS_OUT, 2)) == 3
    assert value((*o.REALM_ENTRY, o.REALM_LISTEN, 2)) == b"udp:5060 tcp:5060"
    assert value((*o.ALARM_ENTRY, o.ALARM_NAME, 1)) == b"high-load"
    assert value((*o.IF_ENTRY, o.IF_IN_OCTETS, 2)) == 0  # Counter32 wraps
    assert value((*o.IF_X_ENTRY, o.IF_HC_IN_OCTETS, 2)) == 2**33
    assert value((*o.IF_X_ENTRY, o.IF_HIGH_SPEED, 2)) == 1000
    assert value(o.IF_NUMBER) == 1
    sip_in = (*o.SIP_SUMMARY_ENTRY, o.SIP_IN_REQUESTS, o.SIP_APPL_INDEX)
    assert value(sip_in) == 11 and value((*o.SIP_SUMMARY_ENTRY, o.SIP_TOTAL_TRANSACTIONS, 1)) == 9
    assert value((*o.SIP_TRANS_CURRENT_ENTRY, o.SIP_TRANS_CURRENT, 1)) == 2
    assert value((*o.SIP_CFG_ENTRY, o.SIP_CFG_OPER_STATUS, 1)) == 4  # congested: the high-load alarm is active
    assert value((*o.SIP_CFG_ENTRY, o.SIP_CFG_PROTOCOL_VERSION, 1)) == b"SIP/2.0"


def test_before_the_sbc_answers_no_figure_is_served_as_if_measured() -> None:
    table = build_mib(SystemInfo("descr", "box"), SbcSnapshot(), [], [], now=2.0)
    assert table.get((*o.SBC_CONTROL_REACHABLE, 0)) is not None
    assert table.get((*o.SBC_DATAPLANE_MODE, 0)).value == 1  # type: ignore[union-attr]  # unknown
    assert table.get((*o.SBC_ACTIVE_CALLS, 0)) is None and table.get((*o.REALM_ENTRY, o.REALM_NAME, 1)) is None
    assert table.get((*o.SIP_SUMMARY_ENTRY, o.SIP_IN_REQUESTS, o.SIP_APPL_INDEX)) is None
    assert table.get((*o.SIP_CFG_ENTRY, o.SIP_CFG_OPER_STATUS, o.SIP_APPL_INDEX)).value == 1  # type: ignore[union-attr]
