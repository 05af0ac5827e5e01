"""Calls with RTP through the running SBC: SIPp peers that play pcaps, the `sbc calls` CLI, the CDR file.

Every SIPp here plays its media from port `MEDIA_PORT` of its own loopback address (RTCP on the next
port), so the relay sees `<sipp address>:6000` as the endpoint of each leg.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import SBC_BIN, SBC_PORT, SbcProcess, Sipp, received_messages, sipp, sipp_available

MEDIA_PORT = 6000
LAN_MEDIA_PORTS = range(40000, 41000)  # the harness config's media ranges
WAN_MEDIA_PORTS = range(41000, 42000)

# Raw sockets (the tap) and SIPp's pcap play (a raw socket too) need root.
needs_media_tools = [
    pytest.mark.integration,
    pytest.mark.skipif(not sipp_available(), reason="SIPp (Debian package sip-tester) is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="SIPp plays pcaps and the tap reads from raw sockets: needs root"),
]


_STARTED: list[Sipp] = []  # every SIPp made here, killed after each test (see conftest.py)


def stop_media_peers() -> None:
    while _STARTED:
        _STARTED.pop().kill()


def media_sipp(
    name: str,
    workdir: Path,
    scenario: str,
    *,
    address: str,
    sip_port: int,
    remote: str | None = None,
    service: str = "bob",
    pause_ms: int = 1000,
    timeout_s: int = 40,
    extra: list[str] | None = None,
) -> Sipp:
    """A SIPp with its media on `address`:6000; `pause_ms` is the length of the scenario's <pause/>."""
    peer = sipp(
        name,
        workdir,
        scenario,
        local_ip=address,
        local_port=sip_port,
        remote=remote,
        service=service,
        timeout_s=timeout_s,
        extra=["-mi", address, "-mp", str(MEDIA_PORT), "-d", str(pause_ms), *(extra or [])],
    )
    _STARTED.append(peer)
    return peer


def sbc_cli(sbc: SbcProcess, command: str) -> dict[str, Any]:
    """`sbc <command> --json`, the operator's way of asking the running SBC."""
    out = subprocess.run(
        [str(SBC_BIN), command, "--json", "--socket", str(sbc.control)],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def sbc_cli_text(sbc: SbcProcess, command: str) -> str:
    out = subprocess.run(
        [str(SBC_BIN), command, "--socket", str(sbc.control)], capture_output=True, text=True, timeout=20, check=True
    )
    return out.stdout


def wait_for_calls(
    sbc: SbcProcess, ready: Callable[[list[dict[str, Any]]], bool], timeout: float = 20.0
) -> list[dict[str, Any]]:
    """Poll `sbc calls --json` until `ready(calls)`; returns the last answer either way."""
    deadline = time.monotonic() + timeout
    calls: list[dict[str, Any]] = sbc_cli(sbc, "calls")["calls"]
    while not ready(calls) and time.monotonic() < deadline:
        time.sleep(0.25)
        calls = sbc_cli(sbc, "calls")["calls"]
    return calls


def cdr_records(sbc: SbcProcess, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The call records in <state_dir>/cdr.jsonl, once at least `count` are there."""
    path = sbc.workdir / "state" / "cdr.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            if len(records) >= count:
                return records
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} call records in {path}:\n{sbc.log()[-4000:]}")


def finish(*peers: Sipp, sbc: SbcProcess, timeout: float = 60.0) -> None:
    """Wait for every SIPp to end and insist each succeeded."""
    results = [(p, p.wait(timeout)) for p in peers]
    failed = [(p, rc) for p, rc in results if rc != 0]
    if failed:
        details = "\n".join(f"{p.name} exit {rc}\n{p.report()}" for p, rc in failed)
        raise AssertionError(f"{details}\n--- sbc log tail:\n{sbc.log()[-6000:]}")


@dataclass(frozen=True)
class SdpView:
    """The media lines of one SDP body that a SIPp received."""

    body: str

    @property
    def connections(self) -> list[str]:
        return re.findall(r"^c=IN IP[46] (\S+)", self.body, re.MULTILINE)

    @property
    def ports(self) -> list[int]:
        return [int(p) for p in re.findall(r"^m=\S+ (\d+) ", self.body, re.MULTILINE)]

    @property
    def origin(self) -> str:
        found = re.search(r"^o=(.*)$", self.body, re.MULTILINE)
        return found.group(1).strip() if found else ""

    @property
    def directions(self) -> list[str]:
        """Every direction attribute, session or media level, in order."""
        return re.findall(r"^a=(sendrecv|sendonly|recvonly|inactive)\s*$", self.body, re.MULTILINE)

    def lines(self, prefix: str) -> list[str]:
        return [line.strip() for line in self.body.splitlines() if line.startswith(prefix)]


def received_sdps(peer: Sipp, start_line: str = "") -> list[SdpView]:
    """SDP bodies of the messages `peer` received whose first line contains `start_line`."""
    out: list[SdpView] = []
    for msg in received_messages(peer.messages()):
        first = msg.split("\n", 1)[0]
        if start_line not in first:
            continue
        _, sep, body = msg.replace("\r\n", "\n").partition("\n\n")
        if sep and body.lstrip().startswith("v=0"):
            out.append(SdpView(body))
    return out


def stream_legs(call: dict[str, Any], index: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    stream = call["streams"][index]
    return stream["a"], stream["b"]


def sip_ports(*extra: int) -> frozenset[int]:
    return frozenset({SBC_PORT, *extra})
