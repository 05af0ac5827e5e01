"""The `sbc` command against a running SBC, as the README's command table describes it."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from tests.integration.harness import LAN_SBC, PHONE, SBC_BIN, SBC_PORT, running_sbc, sbc_config

pytestmark = [pytest.mark.integration]


def sbc_cmd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SBC_BIN), *args], capture_output=True, text=True, timeout=60, check=False)


def options_server_header() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((PHONE, 0))
        s.settimeout(3)
        port = s.getsockname()[1]
        s.sendto(
            (
                f"OPTIONS sip:{LAN_SBC}:{SBC_PORT} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {PHONE}:{port};branch=z9hG4bKcli{port}\r\n"
                f"From: <sip:cli@{PHONE}>;tag=c\r\nTo: <sip:{LAN_SBC}>\r\nCall-ID: cli-{port}\r\nCSeq: 1 OPTIONS\r\n"
                "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            ).encode(),
            (LAN_SBC, SBC_PORT),
        )
        data = s.recvfrom(4096)[0].decode()
    return next(line.split(":", 1)[1].strip() for line in data.split("\r\n") if line.startswith("Server:"))


def test_status_calls_registrations_and_reload(tmp_path: Path) -> None:
    text = sbc_config(tmp_path / "state")
    with running_sbc(tmp_path, text) as sbc:
        config = str(sbc.config_path)
        status = sbc_cmd("status", "--config", config)
        assert status.returncode == 0 and "dataplane: userspace" in status.stdout and "lan" in status.stdout
        raw = json.loads(sbc_cmd("status", "--config", config, "--json").stdout)
        assert raw["active_calls"] == 0 and "internal_errors" in raw["counters"]
        assert sbc_cmd("calls", "--socket", str(sbc.control)).stdout.strip() == "no active calls"
        assert sbc_cmd("registrations", "--config", config).stdout.strip() == "no registrations"

        # A live change applies at once.
        sbc.config_path.write_text(text.replace("user_agent: EdgeSBC-test", "user_agent: EdgeSBC-reloaded"))
        done = sbc_cmd("reload", "--config", config)
        assert done.returncode == 0 and "applied" in done.stdout, done.stderr
        assert options_server_header() == "EdgeSBC-reloaded"
        # A broken file is refused with its line, and the running config stays.
        sbc.config_path.write_text(text.replace("sip_dscp: af31", "sip_dscp: af99"))
        refused = sbc_cmd("reload", "--config", config)
        assert refused.returncode == 2 and f"{config}:" in refused.stderr and "sip_dscp" in refused.stderr
        assert options_server_header() == "EdgeSBC-reloaded"
        asked = sbc_cmd("reload", config, "--socket", str(sbc.control))  # the SBC itself refuses it
        assert asked.returncode == 2 and "sip_dscp" in asked.stderr
        assert options_server_header() == "EdgeSBC-reloaded"
        # Another file can be named; what only a restart can change is said.
        other = tmp_path / "other.yaml"
        other.write_text(text.replace("t1_ms: 500", "t1_ms: 400"))
        later = sbc_cmd("reload", str(other), "--socket", str(sbc.control))
        assert later.returncode == 0 and "waits for a restart: timers" in later.stderr
        assert sbc.query("status")["config"] == str(other)
