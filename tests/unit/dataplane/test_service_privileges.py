"""The privilege split in the image's units (issue 16 item 1): sbc-dataplane.service (root, with just
what loading and attaching take) prepares the XDP relay before sbc.service, which keeps CAP_BPF for
the pinned maps and nothing else of the dataplane's; and what `systemd-analyze security` makes of it,
read offline from rootfs/ (the booted image repeats it: tests/image/test_appliance.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
UNITS = ROOT / "rootfs/usr/lib/systemd/system"
EXPOSURE_BEFORE_THE_SPLIT = 2.1  # sbc.service with CAP_NET_ADMIN, CAP_PERFMON and program loading


def unit(name: str) -> dict[str, list[str]]:
    """Key -> every value given (systemd units repeat keys), comments and sections left out."""
    out: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def words(values: list[str]) -> set[str]:
    return {word for value in values for word in value.split()}


def test_sbc_service_keeps_cap_bpf_for_the_maps_and_nothing_else_of_the_dataplane() -> None:
    sbc = unit("sbc.service")
    assert words(sbc["CapabilityBoundingSet"]) == {"CAP_NET_BIND_SERVICE", "CAP_BPF"}
    assert words(sbc["AmbientCapabilities"]) == {"CAP_NET_BIND_SERVICE", "CAP_BPF"}
    # the program is loaded before it starts; it confines its own bpf() calls (needs no_new_privs)
    assert "SBC_BPF_LOADER=external" in words(sbc["Environment"])
    assert sbc["NoNewPrivileges"] == ["yes"] and sbc["User"] == ["sbc"]
    assert "sbc-dataplane.service" in words(sbc["Wants"]) and "sbc-dataplane.service" in words(sbc["After"])
    assert "ReadWritePaths" not in sbc, "the SBC writes nothing to bpffs any more"


def test_the_prepare_step_runs_first_on_every_start_with_only_the_loaders_capabilities() -> None:
    step = unit("sbc-dataplane.service")
    assert step["Type"] == ["oneshot"] and step["RemainAfterExit"] == ["yes"]
    assert step["Before"] == ["sbc.service"] and step["PartOf"] == ["sbc.service"]
    assert "ExecStop" not in step, "stopping must not detach: media of live calls flows across restarts"
    (command,) = step["ExecStart"]
    assert command.split()[1:] == ["prepare-dataplane", "--config", "/var/lib/sbc-config/sbc.yaml", "--group", "sbc"]
    assert words(step["CapabilityBoundingSet"]) == {"CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"}
    assert "User" not in step and step["Group"] == ["sbc"]  # root's files, the SBC's group
    tmpfiles = (ROOT / "rootfs/usr/lib/tmpfiles.d/sbc.conf").read_text().splitlines()
    assert "d /sys/fs/bpf/sbc 0750 root sbc -" in tmpfiles


def exposure(name: str) -> float:
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", f"--root={ROOT / 'rootfs'}", "--no-pager", name],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(rf"Overall exposure level for {re.escape(name)}: (\d+\.\d+)", done.stdout)
    assert found, done.stdout + done.stderr
    return float(found.group(1))


def test_systemd_analyze_security_rates_sbc_service_lower_than_before() -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    version = subprocess.run(["systemd-analyze", "--version"], capture_output=True, text=True, check=True).stdout
    if int(version.split()[1]) < 252:
        pytest.skip("systemd-analyze security --offline needs systemd 252 or newer")
    sbc = exposure("sbc.service")
    print(f"\nsystemd-analyze security (offline): sbc.service {sbc}, sbc-dataplane.service "
          f"{exposure('sbc-dataplane.service')}")  # fmt: skip
    assert sbc < EXPOSURE_BEFORE_THE_SPLIT
