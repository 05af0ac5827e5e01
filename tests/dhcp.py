"""A real DHCP server for the tests (dnsmasq, DHCP only: no DNS), inside a network namespace."""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.processes import stop_process


@contextlib.contextmanager
def dnsmasq_dhcp(netns: str, interface: str, subnet: str, options: dict[int, str], workdir: Path) -> Iterator[Path]:
    """Serve `subnet` (a network, or an address with its prefix) on `interface` with `options`
    {code: text}; no address pool: it answers DHCPINFORMs. Yields the log of what it answered."""
    network = ipaddress.ip_interface(subnet).network
    log = workdir / f"dnsmasq-{interface}.log"
    argv = ["ip", "netns", "exec", netns, "dnsmasq", "--no-daemon", "--port=0", f"--interface={interface}",
            "--bind-interfaces", "--log-dhcp", "--log-facility=-", f"--dhcp-leasefile={workdir / 'dnsmasq.leases'}",
            f"--pid-file={workdir / 'dnsmasq.pid'}",
            f"--dhcp-range={network.network_address},static,{network.netmask}"]  # fmt: skip
    argv += [f"--dhcp-option={code},{value}" for code, value in options.items()]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=out, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while "started" not in log.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.1)
        yield log
    finally:
        stop_process(proc)


@contextlib.contextmanager
def wan_pair(name: str, server_dev: str, server: str, box: str) -> Iterator[tuple[str, str]]:
    """Two namespaces, `<name>s` (a server at `server`/24 on `server_dev`) and `<name>b` (the box at
    `box`/24 on a veth end called wan0), joined by that veth; both removed afterwards."""
    server_ns, box_ns = f"{name}s", f"{name}b"
    _ip("netns", "add", server_ns)
    _ip("netns", "add", box_ns)
    try:
        _ip("link", "add", server_dev, "netns", server_ns, "type", "veth", "peer", "name", "wan0", "netns", box_ns)
        _ip("-n", server_ns, "addr", "add", f"{server}/24", "dev", server_dev)
        _ip("-n", box_ns, "addr", "add", f"{box}/24", "dev", "wan0")
        for ns, dev in ((server_ns, server_dev), (box_ns, "wan0")):
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield server_ns, box_ns
    finally:
        for ns in (server_ns, box_ns):
            subprocess.run(["ip", "netns", "del", ns], check=False, timeout=10)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)
