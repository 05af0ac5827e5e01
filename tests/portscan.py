"""A small port scan run inside a network namespace: every probe at once, one deadline for all.

A probe is `open` when a TCP connect completes or a UDP datagram is echoed, `closed` when the host
refuses (a TCP reset, an ICMP port unreachable): the packet passed its firewall and found no socket,
and `filtered` when nothing comes back before the deadline (dropped). A UDP service that ignores a
stray datagram also looks filtered: probe UDP ports where the answer is unambiguous (an echo, or no
socket bound at that address).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from enum import StrEnum

Target = tuple[str, str, int]  # (protocol "tcp"/"udp", address, port)


class PortState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    FILTERED = "filtered"


_PROBE = """
import errno, json, selectors, socket, sys, time
targets, source, wait_s = json.loads(sys.argv[1])
sel = selectors.DefaultSelector()
states = ["filtered"] * len(targets)
for i, (proto, addr, port) in enumerate(targets):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM)
    s.setblocking(False)
    if source:
        s.bind((source, 0))
    if proto == "udp":
        s.connect((addr, port))
        s.send(b"probe")
        sel.register(s, selectors.EVENT_READ, i)
    else:
        s.connect_ex((addr, port))
        sel.register(s, selectors.EVENT_WRITE, i)
deadline = time.monotonic() + wait_s
while time.monotonic() < deadline and len(sel.get_map()):
    for key, _ in sel.select(timeout=0.1):
        s, i = key.fileobj, key.data
        try:
            if s.type == socket.SOCK_DGRAM:
                s.recv(64)
                states[i] = "open"
            else:
                error = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                states[i] = "open" if error == 0 else "closed" if error == errno.ECONNREFUSED else "filtered"
        except ConnectionRefusedError:
            states[i] = "closed"
        except OSError:
            states[i] = "filtered"
        sel.unregister(s)
print(json.dumps(states))
"""


def scan(exec_prefix: Sequence[str], targets: Sequence[Target], source: str = "",
         wait_s: float = 1.5) -> dict[Target, PortState]:  # fmt: skip
    """Probe `targets` from the namespace `exec_prefix` enters (`ip netns exec NS`), from `source` if given."""
    argv = [*exec_prefix, sys.executable, "-c", _PROBE, json.dumps([list(targets), source, wait_s])]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=wait_s + 30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"port scan failed: {done.stderr.strip()}")
    states = json.loads(done.stdout)
    return {target: PortState(state) for target, state in zip(targets, states, strict=True)}


def passed(states: dict[Target, PortState]) -> set[Target]:
    """The probes the firewall let through (open or refused by the host itself)."""
    return {target for target, state in states.items() if state is not PortState.FILTERED}
