"""SNMP for fleets, with net-snmp's own tools against the real `sbc mgmt` beside a real SBC and SIPp:

- snmpwalk -v3 (SHA-256 authentication, AES privacy) with the configured user walks EDGE-SBC-MIB,
  SNMPv2-MIB's system group and IF-MIB, loaded from the project's MIB files (-M mgmt/mibs); during a
  SIPp call the values match what `sbc status` / `sbc calls` say;
- wrong users, keys and security levels are refused; SNMPv2c is off until configured, then read-only;
- a real snmptrapd receives coldStart, sbcAlarmRaised/Cleared (high load during the call, a config
  rollback) and sbcTrunkDown/Up (OPTIONS keepalives toward a SIPp trunk that stops answering).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mgmt.snmp import oids as o
from mgmt.snmp.settings import default_engine_id
from tests.integration.harness import (
    LAN_SBC,
    NET,
    PHONE,
    SBC_PORT,
    SCENARIOS,
    TRUNK,
    TRUNK_PORT,
    SbcProcess,
    Sipp,
    running_sbc,
    sbc_config,
    sipp,
)
from tests.integration.media_harness import media_sipp, stream_legs
from tests.integration.mgmt_harness import (
    ADMIN_PASSWORD,
    API,
    CARRIER_PEER,
    CARRIER_PEER_PORT,
    CARRIER_SBC,
    MANAGER_HOST,
    MGMT_HOST,
    MgmtProcess,
    TrapReceiver,
    api_session,
    free_port,
    running_mgmt,
    snmp,
    v3_args,
)
from tests.integration.rtp import RtpStream, write_rtp_pcap

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not all(shutil.which(t) for t in ("snmpwalk", "snmptrapd", "sipp")),
        reason="needs net-snmp (snmp, snmptrapd) and SIPp (sip-tester): make test installs them",
    ),
]

USER, AUTH_KEY, PRIV_KEY = "noc", "noc-auth-secret-1", "noc-priv-secret-1"
USER512, AUTH512, PRIV512 = "noc512", "noc512-auth-secret", "noc512-priv-secret"
SNMP_PORT = 16161
TRAP_PORT = 16162
COMMUNITY = "ro-community-42"
# SIPp plays RTP from pcaps through raw sockets: with root the call carries media both ways (one side
# with 10 % loss, so MOS says something); without, the same call runs without media.
WITH_MEDIA = os.geteuid() == 0
A_STREAM = RtpStream(count=150, ssrc=0x5A5A0001)  # the phone: 3 s of PCMU
B_STREAM = RtpStream(count=150, ssrc=0x5A5A0002, drop_every=10)  # the trunk: every tenth packet lost


def carrier_realm() -> str:
    """A third realm whose peer (a SIPp that answers OPTIONS) is a monitored trunk."""
    return f"""
  - name: carrier
    address: {CARRIER_SBC}
    listen:
      - {{transport: udp, port: {SBC_PORT}}}
    peer: {{host: {CARRIER_PEER}, port: {CARRIER_PEER_PORT}, transport: udp, keepalive_s: 1}}
    media:
      address: {CARRIER_SBC}
      ports: 42000-42099
"""


def management(http_port: int, v2c: bool = False) -> str:
    community = f"\n    v2c_community: {COMMUNITY}" if v2c else ""
    return f"""
management:
  http: {{address: {MGMT_HOST}, port: {http_port}}}
  poll_interval_s: 1
  snmp:
    address: {MGMT_HOST}
    port: {SNMP_PORT}
    sys_location: "test rack {NET}"
    sys_contact: noc@example.net
    v3_users:
      - {{name: {USER}, auth: sha256, auth_key: {AUTH_KEY}, priv: aes128, priv_key: {PRIV_KEY}}}
      - {{name: {USER512}, auth: sha512, auth_key: {AUTH512}, priv: aes256, priv_key: {PRIV512}}}{community}
    trap_targets:
      - {{host: {MANAGER_HOST}, port: {TRAP_PORT}, version: v3, user: {USER}}}
"""


@dataclass
class Env:
    workdir: Path
    sbc: SbcProcess
    mgmt: MgmtProcess
    traps: TrapReceiver
    options_trunk: Sipp | None = None


def start_options_trunk(workdir: Path, name: str) -> Sipp:
    return sipp(name, workdir, "uas_options.xml", local_ip=CARRIER_PEER, local_port=CARRIER_PEER_PORT,
                calls=100000, timeout_s=600, trace=False).start()  # fmt: skip


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    workdir = tmp_path_factory.mktemp("snmp")
    engine = "0x" + default_engine_id().hex()
    traps = TrapReceiver(workdir, MANAGER_HOST, TRAP_PORT)
    traps.start([f"createUser -e {engine} {USER} SHA-256 {AUTH_KEY} AES {PRIV_KEY}", f"authUser log {USER}"])
    http_port = free_port(MGMT_HOST)
    config = sbc_config(workdir / "state", extra_realm_wan=carrier_realm()).replace(
        "user_agent: EdgeSBC-test\n", "user_agent: EdgeSBC-test\n  max_calls: 1\n"
    ) + management(http_port)
    env = Env(workdir, None, None, traps, start_options_trunk(workdir, "options1"))  # type: ignore[arg-type]
    try:
        with running_sbc(workdir, config) as sbc, running_mgmt(sbc.config_path, MGMT_HOST, http_port) as mgmt:
            env.sbc, env.mgmt = sbc, mgmt
            yield env
    finally:
        if env.options_trunk is not None:  # the test that takes the trunk down starts a new one
            env.options_trunk.kill()
        traps.stop()


def walk(env: Env, root: str, args: list[str] | None = None) -> dict[str, str]:
    """`snmpwalk` of one subtree (names from the MIB files, -OQ: `NAME.INDEX = VALUE`, enums as numbers)."""
    result = snmp(env.workdir, "snmpwalk", *(args or v3_args(USER, AUTH_KEY, PRIV_KEY)), "-OQesU", "-Ot",
                  f"{MGMT_HOST}:{SNMP_PORT}", root)  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    out = {}
    for line in result.stdout.splitlines():
        name, sep, value = line.partition(" = ")
        if sep:
            out[name.strip()] = value.strip().strip('"')
    return out


def call_without_media(workdir: Path) -> tuple[Sipp, Sipp]:
    uas = sipp("uas", workdir, "uas_basic.xml", local_ip=TRUNK, local_port=TRUNK_PORT, timeout_s=40).start()
    time.sleep(0.3)
    scenario = workdir / "uac_long.xml"
    scenario.write_text((SCENARIOS / "uac_basic.xml").read_text().replace('milliseconds="200"', 'milliseconds="7000"'))
    uac = sipp("uac", workdir, str(scenario), local_ip=PHONE, local_port=5071, remote=f"{LAN_SBC}:{SBC_PORT}",
               timeout_s=40).start()  # fmt: skip
    return uas, uac


def call_with_media(workdir: Path) -> tuple[Sipp, Sipp]:
    write_rtp_pcap(workdir / "a_leg.pcap", A_STREAM)
    write_rtp_pcap(workdir / "b_leg.pcap", B_STREAM)
    uas = media_sipp("uas", workdir, "media_uas.xml", address=TRUNK, sip_port=TRUNK_PORT, pause_ms=7000).start()
    time.sleep(0.3)
    uac = media_sipp("uac", workdir, "media_uac.xml", address=PHONE, sip_port=5071, remote=f"{LAN_SBC}:{SBC_PORT}",
                     pause_ms=7000).start()  # fmt: skip
    return uas, uac


def wait_calls(sbc: SbcProcess, count: int, *, media: bool = False, timeout: float = 15.0) -> list[dict[str, Any]]:
    """`count` confirmed calls (with `media`: the pcaps of both sides played through)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        calls: list[dict[str, Any]] = sbc.query("calls")["calls"]
        through = not media or all(
            c["streams"] and stream_legs(c)[0]["packets_in"] >= A_STREAM.sent
            and stream_legs(c)[1]["packets_in"] >= B_STREAM.sent - B_STREAM.lost
            for c in calls
        )
        if len(calls) == count and all(c["state"] == "confirmed" for c in calls) and through:
            return calls
        time.sleep(0.1)
    raise AssertionError(f"not {count} confirmed calls within {timeout} s: {sbc.query('calls')}")


def test_cold_start_reaches_snmptrapd(env: Env) -> None:
    env.traps.wait_for_trap(o.dotted(o.COLD_START), timeout=20)


def test_walk_matches_the_sbc_during_a_sipp_call(env: Env) -> None:
    workdir = env.workdir
    mark = len(env.traps.log())
    uas, uac = call_with_media(workdir) if WITH_MEDIA else call_without_media(workdir)
    try:
        calls = wait_calls(env.sbc, 1, media=WITH_MEDIA)
        time.sleep(2.5)  # two polls of sbc mgmt (poll_interval_s: 1)
        status = env.sbc.query("status")
        calls = env.sbc.query("calls")["calls"]
        got = walk(env, "EDGE-SBC-MIB::edgeSbcMIB")
        assert got["sbcActiveCalls.0"] == str(len(calls)) == str(status["active_calls"]) == "1"
        assert got["sbcCallsTotal.0"] == str(status["counters"]["calls_total"])
        assert got["sbcCallsAnswered.0"] == str(status["counters"]["calls_answered"])
        assert got["sbcRegistrations.0"] == str(status["registrations"])
        assert got["sbcMaxCalls.0"] == "1"
        assert got["sbcDataplaneMode.0"] == {"xdp": "2", "userspace": "3"}[status["dataplane"]]
        assert got["sbcMediaSessionsUserspace.0"] == "1" and got["sbcMediaSessionsDirect.0"] == "0"
        assert got["sbcControlReachable.0"] == "1"
        assert got["sbcRelayedPackets.0"] == str(status["relay"]["relayed_packets"])
        assert got["sbcDroppedPackets.0"] == str(status["relay"]["dropped_packets"])
        if WITH_MEDIA:  # all media is through: the figures stand still, SNMP and `sbc calls` agree
            a, b = stream_legs(calls[0])
            assert int(got["sbcRelayedPackets.0"]) >= A_STREAM.sent + B_STREAM.sent - B_STREAM.lost
            legs = [leg["mos"] for leg in (a, b) if leg.get("mos") is not None]
            assert legs and abs(float(got["sbcMeanMos.0"]) - sum(legs) / len(legs)) <= 0.011, (got, a, b)
            assert 1.0 < float(got["sbcMeanMos.0"]) < 4.5 and b["lost"] > 0
        realms = [v for k, v in got.items() if k.startswith("sbcRealmName.")]
        assert realms == [r["name"] for r in status["realms"]] == ["lan", "wan", "carrier"]
        assert got["sbcRealmActiveCalls.1"] == "1" and got["sbcRealmActiveCalls.3"] == "0"
        assert got["sbcTrunkName.1"] == "carrier" and got["sbcTrunkState.1"] == "1"  # up(1)
        assert got["sbcTrunkAddress.1"] == f"udp:{CARRIER_PEER}:{CARRIER_PEER_PORT}"
        alarms = {v for k, v in got.items() if k.startswith("sbcAlarmName.")}
        assert "high-load" in alarms  # one call of at most one: above 80 %
        assert 0.0 <= float(got["sbcCallsPerSecond.0"]) <= 10.0  # DISPLAY-HINT d-2: hundredths shown as 1.50
        # the SIP-COMMON-MIB-like counters are there and count what the SBC counted
        assert int(got["sbcMessagesReceived.0"]) >= status["counters"]["messages_received"] - 5

        # RFC 4780 SIP-COMMON-MIB for applIndex 1: requests in stand still during the call's pause,
        # the trunk keepalives move the others by a few a second
        sip = walk(env, "SIP-COMMON-MIB::sipCommonMIB")
        after = env.sbc.query("status")["sip"]
        assert sip["sipCommonCfgProtocolVersion.1"] == "SIP/2.0"
        assert sip["sipCommonCfgServiceOperStatus.1"] == "4"  # congested(4): the high-load alarm is up
        assert sip["sipCommonSummaryInRequests.1"] == str(after["in_requests"]) == str(status["sip"]["in_requests"])
        for name, key in (("OutRequests", "out_requests"), ("InResponses", "in_responses"),
                          ("OutResponses", "out_responses"), ("TotalTransactions", "transactions_total")):  # fmt: skip
            assert after[key] - 10 <= int(sip[f"sipCommonSummary{name}.1"]) <= after[key], (name, sip, after)
        assert int(sip["sipCommonTransCurrentactions.1"]) >= 0
        assert walk(env, "NETWORK-SERVICES-MIB::applName")["applName.1"] == "edge-sbc SIP service"

        system = walk(env, "SNMPv2-MIB::system")
        assert system["sysObjectID.0"].endswith("sbcApplianceProduct")
        assert system["sysLocation.0"] == f"test rack {NET}" and system["sysContact.0"] == "noc@example.net"
        assert "Edge SBC" in system["sysDescr.0"] and status["version"] in system["sysDescr.0"]
        interfaces = {**walk(env, "IF-MIB::interfaces"), **walk(env, "IF-MIB::ifXTable")}
        names = {v for k, v in interfaces.items() if k.startswith("ifDescr.")}
        assert "lo" in names and interfaces["ifNumber.0"] == str(len(names))
        lo = next(k.split(".")[1] for k, v in interfaces.items() if k.startswith("ifDescr.") and v == "lo")
        assert interfaces[f"ifName.{lo}"] == "lo" and int(interfaces[f"ifHCInOctets.{lo}"]) > 0

        print(f"walked: EDGE-SBC-MIB {len(got)}, SIP-COMMON-MIB {len(sip)}, system {len(system)}, "
              f"IF-MIB {len(interfaces)} instances")  # fmt: skip
        raised = env.traps.wait_for_trap(o.dotted(o.SBC_ALARM_RAISED), "STRING: high-load", after=mark)
        assert "INTEGER: major(4)" in raised and "active calls of at most 1" in raised
        if WITH_MEDIA:  # mean MOS of 4.4 and ~1.5 is below 3.5: media quality below the threshold
            assert "media-quality" in alarms
            env.traps.wait_for_trap(o.dotted(o.SBC_ALARM_RAISED), "STRING: media-quality", "mean MOS", after=mark)
    finally:
        assert uac.wait(40) == 0, uac.report() + env.sbc.log()[-3000:]
        uas.wait(20)
        uac.kill()
        uas.kill()
    cleared = env.traps.wait_for_trap(o.dotted(o.SBC_ALARM_CLEARED), "STRING: high-load", timeout=20, after=mark)
    assert "INTEGER: cleared(1)" in cleared
    if WITH_MEDIA:
        env.traps.wait_for_trap(o.dotted(o.SBC_ALARM_CLEARED), "STRING: media-quality", timeout=20, after=mark)
    assert walk(env, "EDGE-SBC-MIB::sbcActiveCalls")["sbcActiveCalls.0"] == "0"
    operational = walk(env, "SIP-COMMON-MIB::sipCommonCfgServiceOperStatus")
    assert operational["sipCommonCfgServiceOperStatus.1"] == "2"  # up(2) again: the call ended


def test_sha512_aes256_user_walks_too(env: Env) -> None:
    got = walk(env, "EDGE-SBC-MIB::sbcSystem", args=v3_args(USER512, AUTH512, PRIV512, "SHA-512", "AES-256"))
    assert got["sbcControlReachable.0"] == "1"


@pytest.mark.parametrize(
    ("label", "args", "error"),
    [
        ("unknown user", v3_args("intruder", AUTH_KEY, PRIV_KEY), "Unknown user name"),
        ("wrong auth key", v3_args(USER, "wrong-auth-key-1", PRIV_KEY), "Authentication failure"),
        ("wrong priv key", v3_args(USER, AUTH_KEY, "wrong-priv-key-1"), "Decryption error"),
        ("wrong auth protocol", v3_args(USER, AUTH_KEY, PRIV_KEY, auth="SHA-512"), "Authentication failure"),
        ("no privacy", ["-v3", "-l", "authNoPriv", "-u", USER, "-a", "SHA-256", "-A", AUTH_KEY, "-t", "2", "-r", "0"],
         "Unsupported security level"),
        ("v2c while off", ["-v2c", "-c", "public", "-t", "1", "-r", "0"], "Timeout"),
        ("v2c with a guessed community", ["-v2c", "-c", COMMUNITY, "-t", "1", "-r", "0"], "Timeout"),
    ],
)  # fmt: skip
def test_wrong_credentials_are_refused(env: Env, label: str, args: list[str], error: str) -> None:
    result = snmp(env.workdir, "snmpget", *args, f"{MGMT_HOST}:{SNMP_PORT}", "SNMPv2-MIB::sysDescr.0")
    text = result.stdout + result.stderr
    assert "Edge SBC" not in result.stdout, (label, text)
    assert result.returncode != 0, (label, text)
    assert error.lower() in text.lower(), (label, text)


def test_set_is_refused_over_v3(env: Env) -> None:
    result = snmp(env.workdir, "snmpset", *v3_args(USER, AUTH_KEY, PRIV_KEY), f"{MGMT_HOST}:{SNMP_PORT}",
                  "SNMPv2-MIB::sysLocation.0", "s", "moved")  # fmt: skip
    assert result.returncode != 0 and re.search(r"noAccess|notWritable|authorizationError", result.stderr), result


async def _commit(env: Env, change: Any, **commit: Any) -> dict[str, Any]:
    async with api_session(env.mgmt.url, "admin", ADMIN_PASSWORD) as (s, csrf):
        async with s.get(f"{API}/config") as resp:
            text = (await resp.json())["text"]
        async with s.put(f"{API}/config/candidate", json={"text": change(text)}, headers=csrf) as resp:
            assert resp.status == 200, await resp.text()
        async with s.post(f"{API}/config/commit", json=commit, headers=csrf) as resp:
            assert resp.status == 200, await resp.text()
            result: dict[str, Any] = await resp.json()
            return result


def _add_community(text: str) -> str:
    marker = "    trap_targets:"
    assert marker in text and "v2c_community" not in text
    return text.replace(marker, f"    v2c_community: {COMMUNITY}\n{marker}")


def test_v2c_configured_through_the_api_is_read_only(env: Env) -> None:
    asyncio.run(_commit(env, _add_community, comment="v2c for the old poller"))
    v2c = ["-v2c", "-c", COMMUNITY, "-t", "1", "-r", "1"]
    deadline = time.monotonic() + 15
    result = None
    while time.monotonic() < deadline:  # the agent restarts with the new settings at the next poll
        result = snmp(env.workdir, "snmpget", *v2c, f"{MGMT_HOST}:{SNMP_PORT}", "EDGE-SBC-MIB::sbcControlReachable.0")
        if result.returncode == 0:
            break
        time.sleep(0.5)
    assert result is not None and result.returncode == 0 and "true" in result.stdout, result
    refused = snmp(env.workdir, "snmpset", *v2c, f"{MGMT_HOST}:{SNMP_PORT}", "SNMPv2-MIB::sysLocation.0", "s", "x")
    assert refused.returncode != 0 and re.search(r"noAccess|notWritable|authorizationError", refused.stderr)
    # v3 keeps working after the restart
    assert walk(env, "EDGE-SBC-MIB::sbcActiveCalls")["sbcActiveCalls.0"] == "0"


def test_config_rollback_alarm_is_raised_and_cleared(env: Env) -> None:
    mark = len(env.traps.log())
    result = asyncio.run(
        _commit(env, lambda t: t.replace("user_agent: EdgeSBC-test", "user_agent: EdgeSBC-risky"), confirm_timeout_s=2)
    )
    assert result["pending"] is not None
    raised = env.traps.wait_for_trap(o.dotted(o.SBC_ALARM_RAISED), "STRING: config-rollback", after=mark, timeout=20)
    assert "not confirmed" in raised
    got = walk(env, "EDGE-SBC-MIB::sbcAlarmTable")
    index = next(k.split(".")[1] for k, v in got.items() if k.startswith("sbcAlarmName.") and v == "config-rollback")

    async def acknowledge() -> None:
        async with (
            api_session(env.mgmt.url, "admin", ADMIN_PASSWORD) as (s, csrf),
            s.delete(f"{API}/alarms/{index}", headers=csrf) as resp,
        ):
            assert resp.status == 204, await resp.text()

    asyncio.run(acknowledge())
    env.traps.wait_for_trap(o.dotted(o.SBC_ALARM_CLEARED), "STRING: config-rollback", after=mark, timeout=20)
    assert "config-rollback" not in walk(env, "EDGE-SBC-MIB::sbcAlarmTable").values()


def test_trunk_down_and_up_traps(env: Env) -> None:
    assert env.options_trunk is not None
    mark = len(env.traps.log())
    env.options_trunk.kill()
    down = env.traps.wait_for_trap(o.dotted(o.SBC_TRUNK_DOWN), "STRING: carrier", after=mark, timeout=30)
    assert "INTEGER: down(2)" in down and f"udp:{CARRIER_PEER}:{CARRIER_PEER_PORT}" in down
    env.traps.wait_for_trap(o.dotted(o.SBC_ALARM_RAISED), "STRING: trunk-down:carrier", after=mark)
    assert walk(env, "EDGE-SBC-MIB::sbcTrunkState")["sbcTrunkState.1"] == "2"  # down(2)
    status = env.sbc.query("status")
    assert [t["state"] for t in status["trunks"]] == ["down"]
    mark = len(env.traps.log())
    env.options_trunk = start_options_trunk(env.workdir, "options2")
    up = env.traps.wait_for_trap(o.dotted(o.SBC_TRUNK_UP), "STRING: carrier", after=mark, timeout=30)
    assert "INTEGER: up(1)" in up
    env.traps.wait_for_trap(o.dotted(o.SBC_ALARM_CLEARED), "STRING: trunk-down:carrier", after=mark, timeout=30)
    assert walk(env, "EDGE-SBC-MIB::sbcTrunkState")["sbcTrunkState.1"] == "1"


def test_no_secret_reaches_a_log(env: Env) -> None:
    """The USM keys, the community and the admin password are in the config and the users file only."""
    logs = {
        "sbc mgmt": env.mgmt.log(),
        "sbc run": env.sbc.log(),
        "audit": (env.workdir / "state" / "audit.log").read_text(),
        "revisions": "".join(p.read_text() for p in (env.workdir / "state" / "config" / "revisions").glob("*.json")),
    }
    assert len(logs["audit"]) > 0 and "config.commit" in logs["audit"]
    for secret in (AUTH_KEY, PRIV_KEY, AUTH512, PRIV512, COMMUNITY, ADMIN_PASSWORD):
        for name, text in logs.items():
            assert secret not in text, f"{secret!r} in the {name} log"
