"""The appliance's console (serial and screen): a few commands instead of a login prompt.

There is no root login on the box (root is locked; the operators' accounts are the management
API's). Whoever stands at the console has the box in hand anyway, like the reset button, so the
console offers exactly what the box's owner needs there, without a password:

    status          firmware, hostname, addresses, the SBC's status, the last update
    factory-reset   wipe the state partition and reboot (asks to type "factory reset": hw/'s command)
    reboot          asks first
    help

It runs as root in place of getty (rootfs: serial-getty@.service.d and getty@.service.d drop-ins).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import TextIO

from hw.firmware.osinfo import booted_version

PROMPT = "sbc> "
ACTIVE_CONFIG = "/var/lib/sbc-config/sbc.yaml"


def _addresses() -> str:
    done = subprocess.run(["ip", "-br", "-4", "addr", "show"], capture_output=True, text=True, check=False)
    lines = [line.split() for line in done.stdout.splitlines()]
    return ", ".join(f"{parts[0]} {' '.join(parts[2:])}" for parts in lines if parts and parts[0] != "lo") or "none"


def header() -> str:
    return (f"\nEdge SBC {socket.gethostname()} - firmware {booted_version()}\n"
            f"  addresses: {_addresses()}\n  commands: status, factory-reset, reboot, help\n")  # fmt: skip


def status_text() -> str:
    parts = [header().strip()]
    done = subprocess.run(["/usr/lib/sbc/venv/bin/sbc", "status", "--config", ACTIVE_CONFIG],
                          capture_output=True, text=True, check=False, timeout=30)  # fmt: skip
    parts.append(done.stdout.strip() or done.stderr.strip())
    from hw.firmware.spool import read_status

    update = read_status()
    if update.get("state"):
        parts.append("last update: " + json.dumps({k: update.get(k) for k in ("state", "version", "previous",
                                                                             "error", "detail") if update.get(k)}))
    return "\n".join(parts)


def run_console(stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout,
                command: Callable[[list[str]], int] = lambda argv: subprocess.call(argv)) -> int:  # fmt: skip
    stdout.write(header())
    while True:
        stdout.write(PROMPT)
        stdout.flush()
        line = stdin.readline()
        if not line:
            return 0
        word = line.strip().lower()
        if not word:
            continue
        if word == "help":
            stdout.write(__doc__.split("\n\n")[2] + "\n")
        elif word == "status":
            stdout.write(status_text() + "\n")
        elif word in ("factory-reset", "factory reset"):
            # hw/'s console command: it asks to type the phrase, writes the marker and reboots.
            command(["/usr/lib/sbc/venv/bin/sbc-hw", "factory-reset"])
        elif word == "reboot":
            stdout.write("Reboot now? Type 'yes': ")
            stdout.flush()
            if stdin.readline().strip().lower() == "yes":
                command(["systemctl", "reboot"])
        else:
            stdout.write(f"unknown command {word!r}; try help\n")
