"""`sbc-hw run` in a network namespace of its own, on veth pairs standing in for NICs: roles and
.link files from a profile, carrier loss raising and clearing link alarms, a hot-plugged NIC mapped
and named, an unplugged WAN reported gone and missing — all read from the state file it publishes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2 (netns)"),
]
SBC_HW = Path(sys.executable).parent / "sbc-hw"
PROFILE = """\
name: netns-test
include_virtual: true
ports:
  - {match: {name: "hw?wan*"}, role: wan}
  - {match: {name: "hw?lan*"}, role: lan}
unmatched: ignore
required: [wan, lan]
"""


def ip(netns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", netns, *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"sbchw{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        ip(name, "link", "set", "lo", "up")
        for port in ("hwawan", "hwalan"):
            ip(name, "link", "add", port, "type", "veth", "peer", "name", f"p{port}")
            ip(name, "link", "set", port, "up")
            ip(name, "link", "set", f"p{port}", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=10)


def wait_state(path: Path, check: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            state = {}
        if state and check(state):
            return state
        time.sleep(0.05)
    raise AssertionError(f"state never matched; last: {json.dumps(state, indent=1)}")


def roles(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in state["interfaces"] if i["role"] is not None]


def alarms(state: dict[str, Any]) -> dict[str, str]:
    return {a["name"]: a["severity"] for a in state["alarms"]}


def test_roles_link_alarms_and_hot_plug_in_a_namespace(netns: str, tmp_path: Path) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text(PROFILE)
    state_path = tmp_path / "state.json"
    links = tmp_path / "network"
    log = (tmp_path / "sbc-hw.log").open("wb")
    proc = subprocess.Popen(
        ["ip", "netns", "exec", netns, str(SBC_HW), "run", "--profile", str(profile), "--links-dir", str(links),
         "--state", str(state_path), "--marker", str(tmp_path / "marker.json"), "--link-alarm-delay", "0.3"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        state = wait_state(state_path, lambda s: len(roles(s)) == 2)
        assert [(i["name"], i["role"], i["kernel_name"], i["carrier"]) for i in roles(state)] == [
            ("lan0", "lan", "hwalan", True), ("wan0", "wan", "hwawan", True)]  # fmt: skip
        assert {i["name"] for i in state["interfaces"] if i["role"] is None} == {"phwawan", "phwalan"}  # ignored
        assert state["profile"] == "netns-test" and state["missing"] == [] and state["alarms"] == []
        assert "OriginalName=hwawan" in (links / "10-sbc-hw-wan0.link").read_text()
        assert "Name=lan0" in (links / "10-sbc-hw-lan0.link").read_text()

        ip(netns, "link", "set", "phwalan", "down")  # the far end goes away: hwalan loses its carrier
        state = wait_state(state_path, lambda s: "link-down:lan0" in alarms(s))
        assert alarms(state) == {"link-down:lan0": "major"}
        assert "LAN interface lan0" in state["alarms"][0]["text"] and "no carrier" in state["alarms"][0]["text"]
        ip(netns, "link", "set", "phwalan", "up")
        wait_state(state_path, lambda s: s["alarms"] == [])

        # a short flap (well under the delay) raises nothing
        ip(netns, "link", "set", "phwalan", "down")
        ip(netns, "link", "set", "phwalan", "up")
        time.sleep(0.8)
        assert json.loads(state_path.read_text())["alarms"] == []

        ip(netns, "link", "add", "hwblan", "type", "veth", "peer", "name", "phwblan")  # hot-plug, still down
        state = wait_state(state_path, lambda s: "link-down:lan1" in alarms(s))
        assert ("lan1", "hwblan") in [(i["name"], i["kernel_name"]) for i in state["interfaces"]]
        assert "administratively down" in next(a["text"] for a in state["alarms"] if a["name"] == "link-down:lan1")
        assert (links / "10-sbc-hw-lan1.link").exists()

        ip(netns, "link", "del", "hwawan")  # the WAN NIC is unplugged
        state = wait_state(state_path, lambda s: "nic-missing:wan" in alarms(s) and "link-down:wan0" in alarms(s))
        assert alarms(state)["nic-missing:wan"] == "critical" and alarms(state)["link-down:wan0"] == "critical"
        assert not (links / "10-sbc-hw-wan0.link").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    assert proc.returncode == 0, (tmp_path / "sbc-hw.log").read_text()
    assert '"event": "hw.stopped"' in (tmp_path / "sbc-hw.log").read_text()
