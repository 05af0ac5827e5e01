"""The firmware image booted in QEMU: first boot, the SBC carrying a call with XDP, management over
HTTPS and SNMPv3 from the LAN, an A/B update, a broken update that rolls back, a factory reset.

The tests run in file order on one VM (see conftest.py); each names what it builds on.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from image.labnet import LAN_HOST, SBC_LAN, SBC_WAN, WAN_HOST, LabNet
from tests.image.conftest import ARCH, HOSTNAME, LAB_SNMP, LAB_USER_AGENT, ROOT, Appliance, Firmware, Provisioning
from tests.image.lab import Api, FirstBootBanner, parse_banner, web_server
from tests.portscan import passed, scan

# Builds and boots under emulation take minutes: far beyond the suite's default 600 s per test.
pytestmark = [pytest.mark.image, pytest.mark.root, pytest.mark.timeout(3600)]
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
NEW_PASSWORD = "image tests change this password"
REPORT: dict[str, Any] = {}


def report(key: str, value: Any) -> None:
    REPORT[key] = value
    print(f"[image] {key}: {value}")


@pytest.fixture(scope="module")
def banner(appliance: Appliance) -> FirstBootBanner:
    appliance.vm.wait_console("FIRST BOOT: this SBC is ready", timeout=300)
    time.sleep(2)  # the rest of the banner
    return parse_banner(appliance.vm.console_text())


@pytest.fixture(scope="module")
def api(appliance: Appliance, banner: FirstBootBanner) -> Api:
    client = Api(appliance.net, SBC_LAN, banner.fingerprint)
    client.wait_up(600)
    assert banner.password
    client.log_in("admin", banner.password, NEW_PASSWORD)
    return client


def systemd_analyze(appliance: Appliance) -> str:
    return appliance.vm.run(["systemd-analyze", "time"], check=False).stdout.strip()


# ---- first boot ----------------------------------------------------------------------------------
def test_first_boot_creates_the_state_partition_and_is_provisioned(
    appliance: Appliance, banner: FirstBootBanner, firmware: Firmware, provisioning: Provisioning
) -> None:
    vm = appliance.vm
    report("image_size_mib", round(firmware.base.info["size_bytes"] / 2**20))
    report("image_allocated_mib", round(firmware.base.info["allocated_bytes"] / 2**20))
    report("bundle_mib", round(firmware.base.bundle.stat().st_size / 2**20, 1))
    report("build_seconds", firmware.build_seconds)
    assert appliance.hello["version"] == firmware.base.version
    parts = vm.run(["lsblk", "--json", "-o", "NAME,PARTLABEL,MOUNTPOINTS,FSTYPE,SIZE"]).stdout
    labels = {p.get("partlabel"): p for d in json.loads(parts)["blockdevices"] for p in d.get("children", [])}
    assert set(labels) >= {"ESP", f"sbc_{firmware.base.version}", "_empty", "sbc-state"}, labels
    assert labels["sbc-state"]["mountpoints"] == ["/var"] and labels["sbc-state"]["fstype"] == "ext4"
    assert labels[f"sbc_{firmware.base.version}"]["mountpoints"] == ["/"]
    # Provisioned: the hostname and the config's URL through SMBIOS credentials; the WAN's DHCP server,
    # which offers an http:// URL too, is not what provisioned it (DHCP provisioning is opt-in).
    assert banner.hostname == HOSTNAME and vm.run(["hostname"]).stdout.strip() == HOSTNAME
    assert banner.config == provisioning.url
    assert "DHCP option" not in vm.console_text()
    active = vm.run(["cat", "/var/lib/sbc-config/sbc.yaml"]).stdout
    assert f"user_agent: {LAB_USER_AGENT}" in active
    # The admin password is generated, shown on the console once, and never logged.
    assert banner.password and banner.snmp_auth is None  # the provisioned config brings its own keys
    journal = vm.run(["journalctl", "-b", "--no-pager", "-o", "cat"], timeout=300).stdout
    assert banner.password not in journal
    users = vm.run(["cat", "/var/lib/sbc-mgmt/users.json"]).stdout
    assert banner.password not in users and '"admin"' in users
    shadow = vm.run(["getent", "shadow", "root"]).stdout
    assert shadow.split(":")[1].startswith("!"), "root must stay locked: no default password"


def test_all_units_are_healthy_and_the_boot_is_timed(appliance: Appliance) -> None:
    appliance.wait_running()
    vm = appliance.vm
    for unit in ("sbc.service", "sbc-mgmt.service", "sbc-health.service", "sbc-firstboot.service",
                 "systemd-networkd.service", "sbc-update.path", "sbc-hw.service"):  # fmt: skip
        assert vm.run(["systemctl", "is-active", unit], check=False).stdout.strip() == "active", unit
    timing = systemd_analyze(appliance)
    report("first_boot_systemd_analyze", timing)
    report("first_boot_seconds_qemu_start_to_agent", appliance.hello["seconds_since_start"])
    assert "multi-user.target reached after" in timing, timing  # the appliance has no graphical target


def test_services_run_with_least_privilege(appliance: Appliance) -> None:
    appliance.wait_running()  # already so after the test above; run alone (-k), the boot may still go on
    vm = appliance.vm
    sbc_caps = {"cap_bpf", "cap_net_bind_service"}  # sbc-dataplane.service loads and attaches the program
    mgmt_caps = {"cap_net_bind_service"}
    for unit, user, caps in (("sbc.service", "sbc", sbc_caps), ("sbc-mgmt.service", "sbc-mgmt", mgmt_caps)):
        props = vm.run(["systemctl", "show", unit, "-p", "User", "-p", "MainPID", "-p", "NoNewPrivileges",
                        "-p", "ProtectSystem", "-p", "CapabilityBoundingSet"]).stdout  # fmt: skip
        fields = dict(line.split("=", 1) for line in props.splitlines() if "=" in line)
        assert fields["User"] == user and fields["NoNewPrivileges"] == "yes" and fields["ProtectSystem"] == "strict"
        assert set(fields["CapabilityBoundingSet"].split()) == caps, fields
        status = vm.run(["cat", f"/proc/{fields['MainPID']}/status"]).stdout
        uid = re.search(r"^Uid:\s+(\d+)", status, re.M)
        assert uid and uid.group(1) != "0", f"{unit} runs as root"
    # The SBC's user (the one facing the networks) reads the config but not management's secrets, and
    # cannot change the config; management's user reaches the SBC's control socket.
    def as_user(user: str, *argv: str) -> int:
        return vm.run(["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *argv], check=False).rc

    # Fixed IDs (rootfs/usr/lib/sysusers.d/sbc.conf): the state partition's owners are the same in every slot.
    ids = [vm.run(["id", "-u", name]).stdout.strip() for name in ("sbc", "sbc-mgmt")]
    assert ids == ["991", "990"], ids
    assert as_user("sbc", "cat", "/var/lib/sbc-config/sbc.yaml") == 0
    assert as_user("sbc", "cat", "/var/lib/sbc-mgmt/users.json") != 0
    assert as_user("sbc", "touch", "/var/lib/sbc-config/sbc.yaml") != 0
    assert as_user("sbc", "touch", "/var/lib/sbc-factory-reset/request.json") != 0
    mgmt_status = vm.run(["setpriv", "--reuid=sbc-mgmt", "--regid=sbc", "--clear-groups", "sbc", "status", "--json",
                          "--config", "/var/lib/sbc-config/sbc.yaml"], check=False)  # fmt: skip
    assert mgmt_status.rc == 0 and json.loads(mgmt_status.stdout).get("version"), mgmt_status
    exposure = vm.run(["systemd-analyze", "security", "--no-pager", "sbc.service", "sbc-mgmt.service",
                       "sbc-dataplane.service"], check=False, timeout=300).stdout  # fmt: skip
    report("systemd_analyze_security", " / ".join(line.strip() for line in exposure.splitlines() if "Overall" in line))
    sbc_exposure = re.search(r"Overall exposure level for sbc\.service: (\d+\.\d+)", exposure)
    assert sbc_exposure and float(sbc_exposure.group(1)) < 2.1, exposure  # 2.1 while it loaded programs itself


def test_the_sbc_cannot_load_a_bpf_program(appliance: Appliance) -> None:
    """Issue 16 item 1: sbc-dataplane.service (root) loaded and attached the relay and pinned its maps
    for group sbc; sbc.service runs with CAP_BPF (every bpf() command needs it on this kernel) and
    CAP_NET_BIND_SERVICE only, under its own seccomp filter. The probe, as user sbc with CAP_BPF and the
    SBC's filter, shows what that leaves: updating the pinned maps, not loading a program."""
    appliance.wait_running()
    vm = appliance.vm
    step = vm.run(["systemctl", "show", "sbc-dataplane.service", "-p", "ActiveState", "-p", "Result"]).stdout
    assert "ActiveState=active" in step and "Result=success" in step, step
    journal = vm.run(["journalctl", "-b", "-u", "sbc-dataplane.service", "--no-pager", "-o", "cat"]).stdout
    report("sbc_dataplane_service", journal.strip().splitlines()[-2:])
    pins = vm.run(["stat", "-c", "%a %U %G", "/sys/fs/bpf/sbc", "/sys/fs/bpf/sbc/sbc_sessions"]).stdout.split("\n")
    assert pins[:2] == ["750 root sbc", "660 root sbc"], pins
    pid = vm.run(["systemctl", "show", "sbc.service", "-p", "MainPID", "--value"]).stdout.strip()
    status = dict(line.split(":", 1) for line in vm.run(["cat", f"/proc/{pid}/status"]).stdout.splitlines())
    cap_bpf, cap_net_bind_service = 1 << 39, 1 << 10
    assert int(status["CapEff"], 16) == cap_bpf | cap_net_bind_service, status["CapEff"]
    assert status["Seccomp"].strip() == "2" and int(status["Seccomp_filters"]) >= 2, status  # systemd's and its own
    probe = (ROOT / "tests/dataplane/bpf_probe.py").read_text()
    as_sbc = ["setpriv", "--reuid=sbc", "--regid=sbc", "--clear-groups", "--inh-caps=-all,+bpf",
              "--ambient-caps=-all,+bpf", "--bounding-set=-all,+bpf", "--no-new-privs"]  # fmt: skip
    done = vm.run([*as_sbc, "/usr/lib/sbc/venv/bin/python3", "-c", probe, "/sys/fs/bpf/sbc/sbc_sessions"], check=False)
    assert done.rc == 0, done
    result = json.loads(done.stdout)
    report("bpf_probe_as_sbc", result)
    assert result == {"prog_load_before": "ok", "seccomp": [2, 1], "map_update": "ok", "prog_load": "EPERM",
                      "map_create": "EPERM"}, result  # fmt: skip


# ---- the SBC and its dataplane ------------------------------------------------------------------
def sipp(appliance: Appliance, name: str, args: list[str], workdir: Path) -> subprocess.Popen[bytes]:
    log = (workdir / f"{name}.log").open("wb")
    return subprocess.Popen(appliance.net.exec_argv(["sipp", *args]), stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip


def test_a_call_from_lan_to_wan_is_relayed_by_xdp(appliance: Appliance, tmp_path: Path) -> None:
    vm = appliance.vm
    status = json.loads(vm.run(["sbc", "status", "--json", "--config", "/var/lib/sbc-config/sbc.yaml"]).stdout)
    assert status["dataplane"] == "xdp", status.get("dataplane_note")
    common = ["-t", "u1", "-nostdin", "-m", "1", "-timeout", "90s", "-timeout_error", "-trace_err",
              "-error_file"]  # fmt: skip
    uas = sipp(appliance, "uas", ["-sf", str(SCENARIOS / "uas_echo.xml"), "-i", WAN_HOST, "-p", "5060",
                                  "-mi", WAN_HOST, "-mp", "40000", "-rtp_echo", *common,
                                  str(tmp_path / "uas_err.log")], tmp_path)  # fmt: skip
    time.sleep(2)
    uac = sipp(appliance, "uac", ["-sf", str(SCENARIOS / "uac_pcma.xml"), "-i", LAN_HOST, "-p", "5070",
                                  "-mi", LAN_HOST, "-mp", "42000", "-s", "2000", *common,
                                  str(tmp_path / "uac_err.log"), f"{SBC_LAN}:5060"], tmp_path)  # fmt: skip
    calls: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # sample `sbc calls` while the media flows
            time.sleep(4)
            answer = vm.run(["sbc", "calls", "--json", "--config", "/var/lib/sbc-config/sbc.yaml"], check=False)
            if answer.rc == 0:
                now = json.loads(answer.stdout)
                if now.get("calls") and any(s.get("a", {}).get("packets_in", 0) > 20
                                            for c in now["calls"] for s in c["streams"]):  # fmt: skip
                    calls = now
                    break
        uac_rc = uac.wait(timeout=120)
        uas_rc = uas.wait(timeout=60)
    finally:
        for proc in (uac, uas):
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    logs = {n: (tmp_path / f"{n}.log").read_text(errors="replace")[-2000:] for n in ("uac", "uas")}
    assert uac_rc == 0 and uas_rc == 0, logs
    assert calls, "no call with media seen in `sbc calls`"
    report("sbc_calls_during_call", calls["calls"][0]["streams"])
    stream = calls["calls"][0]["streams"][0]
    assert stream["a"]["in_kernel"] or stream["b"]["in_kernel"], stream
    text = vm.run(["sbc", "status", "--config", "/var/lib/sbc-config/sbc.yaml"]).stdout
    report("sbc_status_after_call", text.splitlines()[:3])
    after = json.loads(vm.run(["sbc", "status", "--json", "--config", "/var/lib/sbc-config/sbc.yaml"]).stdout)
    assert after["counters"]["calls_answered"] >= 1


# ---- management from the LAN ---------------------------------------------------------------------
def test_snmpwalk_v3_from_the_lan(appliance: Appliance) -> None:
    user, auth, priv = LAB_SNMP  # the provisioned config's SNMPv3 user
    argv = ["snmpwalk", "-v3", "-l", "authPriv", "-u", user, "-a", "SHA-256", "-A", auth,
            "-x", "AES", "-X", priv, "-On", "-t", "10", "-r", "2", SBC_LAN, "1.3.6.1"]  # fmt: skip
    done = subprocess.run(appliance.net.exec_argv(argv), capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith(".1.3.6.1")]
    report("snmpwalk_oids", len(lines))
    assert any(line.startswith(".1.3.6.1.4.1.99999.") for line in lines), done.stdout[-2000:]
    wrong = argv.copy()
    wrong[wrong.index("-A") + 1] = "not-the-right-key"
    bad = subprocess.run(appliance.net.exec_argv(wrong), capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode != 0


# ---- the host firewall (hw/firewall.py, sbc-firewall.service) -------------------------------------
@contextlib.contextmanager
def routed_via(net: LabNet, source: str, target: str, gateway: str, device: str) -> Iterator[None]:
    """Packets from `source` to `target` go to `gateway` on `device` (policy routing in the lab namespace):
    aiming at one of the box's addresses through its other port."""
    net.ip("route", "add", f"{target}/32", "via", gateway, "dev", device, "table", "219")
    net.ip("rule", "add", "from", source, "to", target, "lookup", "219", "priority", "219")
    try:
        yield
    finally:
        subprocess.run(net.exec_argv(["ip", "rule", "del", "priority", "219"]), check=False, capture_output=True)
        subprocess.run(net.exec_argv(["ip", "route", "flush", "table", "219"]), check=False, capture_output=True)


def test_port_scan_from_wan_and_lan_finds_only_the_expected_ports(appliance: Appliance) -> None:
    """The provisioned config opens SIP and media per realm, HTTPS and SNMP on the LAN address. UDP is
    probed only where no socket listens, or where the port is a media port: there a refusal (ICMP
    unreachable) means the firewall let it through; SIP over UDP and SNMP are shown by the call and
    snmpwalk tests."""
    vm, net = appliance.vm, appliance.net
    assert vm.run(["systemctl", "is-enabled", "sbc-firewall.service"], check=False).stdout.strip() == "enabled"
    assert vm.run(["systemctl", "is-active", "sbc-firewall.path"], check=False).stdout.strip() == "active"
    ruleset = vm.run(["nft", "list", "table", "inet", "sbc_filter"]).stdout
    assert f"ip daddr {SBC_WAN} tcp dport 5060" in ruleset, ruleset
    closed = (22, 80, 8443, 7777)
    wan = [("tcp", SBC_WAN, port) for port in (5060, 443, *closed)] + [
        ("udp", SBC_WAN, port) for port in (31000, 31999, 30000, 161, 7777)
    ]
    lan = [("tcp", SBC_LAN, port) for port in (5060, 443, *closed)] + [
        ("udp", SBC_LAN, port) for port in (30000, 30999, 31000, 7777)
    ]
    inside = net.exec_argv([])
    before = json.loads(vm.run(["sbc-hw", "firewall", "counters", "--json"]).stdout)
    from_wan = scan(inside, wan, source=WAN_HOST)
    from_lan = scan(inside, lan, source=LAN_HOST)
    with routed_via(net, WAN_HOST, SBC_LAN, SBC_WAN, net.wan_tap):
        wan_to_lan_address = scan(inside, lan, source=WAN_HOST)
    with routed_via(net, LAN_HOST, SBC_WAN, SBC_LAN, net.lan_tap):
        lan_to_wan_address = scan(inside, wan, source=LAN_HOST)
    after = json.loads(vm.run(["sbc-hw", "firewall", "counters", "--json"]).stdout)
    report("firewall_scan", {"wan": {f"{p}/{n}": s for (p, _, n), s in from_wan.items()},
                             "lan": {f"{p}/{n}": s for (p, _, n), s in from_lan.items()}})  # fmt: skip
    report("firewall_counters", after)
    assert passed(from_wan) == {("tcp", SBC_WAN, 5060), ("udp", SBC_WAN, 31000), ("udp", SBC_WAN, 31999)}
    assert passed(from_lan) == {("tcp", SBC_LAN, 5060), ("tcp", SBC_LAN, 443), ("udp", SBC_LAN, 30000),
                                ("udp", SBC_LAN, 30999)}  # fmt: skip
    assert passed(wan_to_lan_address) == set()  # the weak-host check: the LAN address only on the LAN port
    assert passed(lan_to_wan_address) == set()
    assert after["dropped"]["packets"] > before["dropped"]["packets"]
    assert after["sip"]["packets"] > before["sip"]["packets"]


def test_rest_api_over_tls13_with_the_generated_credential(api: Api, firmware: Firmware) -> None:
    status, body = api.request("GET", "/firmware")
    assert status == 200 and body["version"] == firmware.base.version and body["arch"] == ARCH
    assert api.tls_version == "TLSv1.3"


def test_web_ui_over_https_in_chromium(appliance: Appliance, tmp_path: Path) -> None:
    profile = tmp_path / "chromium"
    argv = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--ignore-certificate-errors", f"--user-data-dir={profile}", "--virtual-time-budget=15000",
            "--dump-dom", f"https://{SBC_LAN}/"]  # fmt: skip
    done = subprocess.run(appliance.net.exec_argv(argv), capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert "<html" in dom.lower() and "<title" in dom.lower(), dom[:2000]
    report("web_ui_title", re.search(r"<title>(.*?)</title>", dom, re.S | re.I).group(1) if "<title>" in dom else "")


# ---- A/B update ----------------------------------------------------------------------------------
def upload(api: Api, bundle: Path) -> tuple[int, Any]:
    with bundle.open("rb") as fh:
        return api.request("POST", "/firmware/update", raw=fh, length=bundle.stat().st_size,
                           content_type="application/octet-stream", timeout=1800)  # fmt: skip


def test_a_tampered_bundle_is_refused_and_nothing_changes(api: Api, firmware: Firmware, tmp_path: Path) -> None:
    data = bytearray(firmware.update.bundle.read_bytes()[: 8 << 20])
    data[-100] ^= 0xFF  # inside the root file system: its hash no longer matches the signed manifest
    bad = tmp_path / "tampered.sbcupdate"
    bad.write_bytes(bytes(data))
    status, body = upload(api, bad)
    assert status == 422, body
    assert "refused" in body["detail"]
    status, body = api.request("GET", "/firmware")
    assert body["version"] == firmware.base.version and body["update"]["state"] is None


def test_update_to_a_newer_image_boots_the_other_slot_and_keeps_the_state(
    appliance: Appliance, api: Api, firmware: Firmware
) -> None:
    vm = appliance.vm
    before_users = vm.run(["cat", "/var/lib/sbc-mgmt/users.json"]).stdout
    started = time.monotonic()
    status, body = upload(api, firmware.update.bundle)
    assert status == 202, body
    report("update_upload_seconds", round(time.monotonic() - started, 1))
    assert body["version"] == firmware.update.version
    hello = appliance.wait_boot()
    report("update_seconds_upload_to_new_boot", round(time.monotonic() - started, 1))
    assert hello["version"] == firmware.update.version
    appliance.wait_running()
    vm.run(["systemctl", "is-active", "systemd-bless-boot.service"])
    entries = vm.run(["bootctl", "list", "--no-pager"]).stdout
    report("boot_entries_after_update", re.findall(r"id: (\S+)", entries))
    assert f"sbc_{firmware.update.version}.efi" in entries, entries  # blessed: no counter left
    root = vm.run(["findmnt", "-n", "-o", "SOURCE", "/"]).stdout.strip()
    label = vm.run(["lsblk", "-n", "-o", "PARTLABEL", root]).stdout.strip()
    assert label == f"sbc_{firmware.update.version}"
    assert vm.run(["cat", "/var/lib/sbc-mgmt/users.json"]).stdout == before_users, "state must survive the update"
    api.wait_up(600)
    status, body = api.request("GET", "/firmware")
    assert body["version"] == firmware.update.version and body["update"]["state"] == "good", body
    report("update_boot_systemd_analyze", systemd_analyze(appliance))


def test_a_broken_image_from_a_url_rolls_back_by_itself(
    appliance: Appliance, api: Api, firmware: Firmware, tmp_path: Path
) -> None:
    vm = appliance.vm
    serve = tmp_path / "www"
    serve.mkdir()
    (serve / firmware.broken.bundle.name).symlink_to(firmware.broken.bundle)
    with web_server(appliance.net, serve, WAN_HOST, port=8081) as base:  # 8080: the provisioning server
        started = time.monotonic()
        status, body = api.request("POST", "/firmware/update-from-url",
                                   {"url": f"{base}/{firmware.broken.bundle.name}"}, timeout=1800)  # fmt: skip
        assert status == 202, body
        assert body["version"] == firmware.broken.version
    # Two tries of the broken slot (each fails its health check and reboots), then the previous one.
    seen = []
    while True:
        hello = appliance.wait_boot()
        seen.append(hello["version"])
        if hello["version"] != firmware.broken.version or len(seen) > 4:
            break
    report("rollback_boot_versions", seen)
    report("rollback_seconds", round(time.monotonic() - started, 1))
    assert seen[-1] == firmware.update.version and seen.count(firmware.broken.version) == 2, seen
    appliance.wait_running()
    entries = vm.run(["bootctl", "list", "--no-pager"]).stdout
    assert re.search(rf"sbc_{re.escape(firmware.broken.version)}\+0-2\.efi", entries), entries
    api.wait_up(600)
    status, body = api.request("GET", "/firmware")
    assert body["version"] == firmware.update.version and body["update"]["state"] == "rolled-back", body


# ---- factory reset -------------------------------------------------------------------------------
def test_factory_reset_from_the_console_wipes_the_state_and_keeps_the_firmware(
    appliance: Appliance, firmware: Firmware, provisioning: Provisioning, banner: FirstBootBanner
) -> None:
    vm = appliance.vm
    marker = "/var/lib/sbc-config/left-by-the-tests"
    vm.run(["touch", marker])
    old_users = vm.run(["cat", "/var/lib/sbc-mgmt/users.json"]).stdout
    provisioning.stop()  # this time the box finds no provisioning server: it must fall back to the default
    mark = len(vm.console_text())
    # At the console (no login: the console's own commands), as a person would type it.
    vm.send_console("\r")
    vm.wait_console("sbc> ", timeout=120, start=mark)
    vm.send_console("factory-reset\r")
    vm.wait_console("Type 'factory reset' to go on:", timeout=120, start=mark)
    vm.send_console("factory reset\r")
    hello = appliance.wait_boot()
    assert hello["version"] == firmware.update.version, "the firmware stays"
    vm.wait_console("PROVISIONING FAILED: running the default config", timeout=600, start=mark)
    vm.wait_console("FIRST BOOT: this SBC is ready", timeout=600, start=mark)
    time.sleep(2)
    fresh = parse_banner(vm.console_text(), start=mark)
    assert fresh.config == "default" and fresh.password and fresh.password != banner.password
    assert fresh.snmp_auth and fresh.snmp_auth != LAB_SNMP[1], "new SNMPv3 keys with the default config"
    assert vm.run(["test", "-e", marker], check=False).rc != 0, "the state partition was wiped"
    assert vm.run(["test", "-e", "/var/lib/sbc-factory-reset/request.json"], check=False).rc != 0
    assert vm.run(["cat", "/var/lib/sbc-mgmt/users.json"]).stdout != old_users
    appliance.wait_running()


def test_factory_reset_by_holding_the_reset_button(appliance: Appliance, firmware: Firmware) -> None:
    """The QEMU profile's button (hw/profiles/qemu.yaml): Help on the VM's virtio keyboard, read by sbc-hw."""
    vm = appliance.vm

    def hw_journal() -> str:
        return vm.run(["journalctl", "-b", "-u", "sbc-hw.service", "--no-pager", "-o", "cat"]).stdout

    deadline = time.monotonic() + 120
    while "reset_button.watching" not in hw_journal():
        assert time.monotonic() < deadline, "sbc-hw never found the reset button:\n" + hw_journal()[-3000:]
        time.sleep(3)
    marker = "/var/lib/sbc-config/left-by-the-tests"
    vm.run(["touch", marker])
    old_users = vm.run(["cat", "/var/lib/sbc-mgmt/users.json"]).stdout
    # A short press is only reported: nothing is wiped.
    vm.hold_key("help", 1.0)
    deadline = time.monotonic() + 30
    while "reset_button.short_press" not in hw_journal():
        assert time.monotonic() < deadline, "the short press was not seen:\n" + hw_journal()[-3000:]
        time.sleep(2)
    assert vm.run(["test", "-e", "/var/lib/sbc-factory-reset/request.json"], check=False).rc != 0
    # Held past hold_s: the marker is written and the box reboots into a wiped state partition.
    mark = len(vm.console_text())
    started = time.monotonic()
    vm.hold_key("help", 12.0)
    hello = appliance.wait_boot()
    assert hello["version"] == firmware.update.version, "the firmware stays"
    vm.wait_console("FIRST BOOT: this SBC is ready", timeout=600, start=mark)
    report("button_reset_seconds_to_first_boot", round(time.monotonic() - started, 1))
    assert vm.run(["test", "-e", marker], check=False).rc != 0, "the state partition was wiped"
    assert vm.run(["cat", "/var/lib/sbc-mgmt/users.json"]).stdout != old_users
    appliance.wait_running()
    report("boots", [(b["version"], b.get("seconds_to_agent", b.get("seconds_since_start"))) for b in appliance.boots])
    print(json.dumps(REPORT, indent=2, default=str))
