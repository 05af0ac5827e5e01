"""The host firewall loaded into a network namespace standing in for the box, probed from both sides.

    ns W (WAN peer)  w0 198.18.102.2/24 ===veth=== s_wan 198.18.102.1/24  ns S (the SBC)
    ns L (LAN peer)  l0 198.18.101.2/24 ===veth=== s_lan 198.18.101.1/24  ns S

S runs small listeners (TCP accept, UDP echo) on both its addresses for every port the config names
and for one it does not; W and L each have a route to the other side's subnet through S, so W can
aim at S's LAN address through S's WAN port (the weak-host case). Which ports answer from W and from
L is the firewall's doing alone: every port has a listener on both addresses (tests/portscan.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hw.firewall_apply import FirewallRefused, load_script
from hw.firewall_counters import FirewallCounters, read_counters
from tests.portscan import PortState, Target, scan

pytestmark = [
    pytest.mark.integration,
    pytest.mark.root,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("nft") is None,
        reason="needs root, iproute2 (netns) and nftables",
    ),
]
SBC_HW = Path(sys.executable).parent / "sbc-hw"
SBC_LAN, SBC_WAN, LAN_PEER, WAN_PEER = "198.18.101.1", "198.18.102.1", "198.18.101.2", "198.18.102.2"
SPOOFED_SOURCE = "198.18.101.50"  # a LAN-side address that W claims for itself
UNLISTED = 7777
CONFIG = textwrap.dedent(
    f"""\
    realms:
      - name: lan
        trusted: true
        address: {SBC_LAN}
        networks: [198.18.101.0/24]
        listen: [{{transport: udp, port: 5060}}, {{transport: tcp, port: 5060}}]
        media: {{address: {SBC_LAN}, ports: 30000-30009}}
      - name: wan
        address: {SBC_WAN}
        listen: [{{transport: udp, port: 5060}}, {{transport: tcp, port: 5061}}]
        media: {{address: {SBC_WAN}, ports: 31000-31009}}
    routes: [{{name: out, from: lan, to: wan}}]
    management:
      http: {{address: {SBC_LAN}, port: 8443}}
      snmp: {{address: {SBC_LAN}, port: 16161}}
    firewall:
      allow:
        - {{from: 198.18.102.0/24, port: 2222, protocol: tcp, to: wan}}
    """
)
# Every port the config names, and one it does not: each gets a listener on both of S's addresses.
PORTS = (
    ("udp", 5060), ("tcp", 5060), ("tcp", 5061), ("udp", 30000), ("udp", 30009), ("udp", 31000), ("udp", 31009),
    ("tcp", 8443), ("udp", 16161), ("tcp", 2222), ("tcp", UNLISTED), ("udp", UNLISTED),
)  # fmt: skip

# Listeners: bind everything, say "ready", accept and close TCP, echo UDP, until stdin closes (or 120 s).
SERVER = """
import json, selectors, socket, sys, time
sel = selectors.DefaultSelector()
for proto, addr, port in json.loads(sys.argv[1]):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    if proto == "tcp":
        s.listen(16)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, proto)
sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
print("ready", flush=True)
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    for key, _ in sel.select(timeout=1):
        if key.data == "stdin":
            sys.exit(0)
        try:
            if key.data == "tcp":
                key.fileobj.accept()[0].close()
            else:
                data, peer = key.fileobj.recvfrom(2048)
                key.fileobj.sendto(data, peer)
        except OSError:
            pass
"""


@dataclass(frozen=True)
class Box:
    sbc: str
    wan_peer: str
    lan_peer: str

    @property
    def nft(self) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.sbc, "nft")

    def counters(self) -> FirewallCounters:
        return read_counters(self.nft)


def ip(netns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", netns, *args], check=True, capture_output=True, timeout=10)


def in_netns(netns: str, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def box() -> Iterator[Box]:
    tag = os.getpid()
    names = Box(sbc=f"fw{tag}s", wan_peer=f"fw{tag}w", lan_peer=f"fw{tag}l")
    namespaces = (names.sbc, names.wan_peer, names.lan_peer)
    try:
        for netns in namespaces:
            subprocess.run(["ip", "netns", "add", netns], check=True, timeout=10)
            ip(netns, "link", "set", "lo", "up")
        ip(names.sbc, "link", "add", "s_wan", "type", "veth", "peer", "name", "w0", "netns", names.wan_peer)
        ip(names.sbc, "link", "add", "s_lan", "type", "veth", "peer", "name", "l0", "netns", names.lan_peer)
        for netns, link, address in ((names.sbc, "s_wan", SBC_WAN), (names.sbc, "s_lan", SBC_LAN),
                                     (names.wan_peer, "w0", WAN_PEER), (names.lan_peer, "l0", LAN_PEER)):  # fmt: skip
            ip(netns, "addr", "add", f"{address}/24", "dev", link)
            ip(netns, "link", "set", link, "up")
        ip(names.wan_peer, "route", "add", "198.18.101.0/24", "via", SBC_WAN)
        ip(names.lan_peer, "route", "add", "198.18.102.0/24", "via", SBC_LAN)
        # Forwarding on, so that only the firewall's forward chain stands between L and W.
        in_netns(names.sbc, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        yield names
    finally:
        for netns in namespaces:
            subprocess.run(["ip", "netns", "del", netns], check=False, timeout=10)


@pytest.fixture
def listeners(box: Box) -> Iterator[None]:
    """Listeners on both of S's addresses for every port, and a DNS/HTTP stand-in on W for S to ask."""
    sbc_sockets = [[proto, address, port] for address in (SBC_LAN, SBC_WAN) for proto, port in PORTS]
    wan_peer_sockets = [["udp", WAN_PEER, 53], ["tcp", WAN_PEER, 80]]
    servers = []
    for netns, sockets in ((box.sbc, sbc_sockets), (box.wan_peer, wan_peer_sockets)):
        argv = ["ip", "netns", "exec", netns, sys.executable, "-c", SERVER, json.dumps(sockets)]
        servers.append(subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
    try:
        for server in servers:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        yield
    finally:
        for server in servers:
            if server.stdin is not None:
                server.stdin.close()
            try:
                server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=5)


def open_ports(netns: str, targets: list[Target], source: str = "") -> set[Target]:
    """The targets that answer; every other one must be dropped (with a listener everywhere, a refusal
    would mean a listener failed to start, not a firewall at work)."""
    states = scan(("ip", "netns", "exec", netns), targets, source)
    assert PortState.CLOSED not in states.values(), states
    return {target for target, state in states.items() if state is PortState.OPEN}


def every_port(*addresses: str) -> list[Target]:
    return [(proto, address, port) for address in addresses for proto, port in PORTS]


def apply_with_cli(box: Box, config: Path) -> None:
    done = in_netns(box.sbc, str(SBC_HW), "firewall", "apply", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert '"event": "firewall.applied"' in done.stderr


@pytest.mark.usefixtures("listeners")
def test_each_side_reaches_only_what_the_config_opens_there(box: Box, tmp_path: Path) -> None:
    config = tmp_path / "sbc.yaml"
    config.write_text(CONFIG)
    targets = every_port(SBC_LAN, SBC_WAN)
    assert open_ports(box.wan_peer, targets) == set(targets)  # no firewall yet: everything answers, both sides

    apply_with_cli(box, config)
    before = box.counters()
    # From the WAN: its SIP listeners and media range, and the operator's opening; nothing of the LAN
    # address although S has it and listens on it (the weak-host check).
    wan_reaches = {
        ("udp", SBC_WAN, 5060), ("tcp", SBC_WAN, 5061), ("udp", SBC_WAN, 31000), ("udp", SBC_WAN, 31009),
        ("tcp", SBC_WAN, 2222),
    }  # fmt: skip
    lan_reaches = {
        ("udp", SBC_LAN, 5060), ("tcp", SBC_LAN, 5060), ("udp", SBC_LAN, 30000), ("udp", SBC_LAN, 30009),
        ("tcp", SBC_LAN, 8443), ("udp", SBC_LAN, 16161),
    }  # fmt: skip
    assert open_ports(box.wan_peer, targets) == wan_reaches
    assert open_ports(box.lan_peer, targets) == lan_reaches
    after = box.counters()
    # W: 2 SIP probes answered, L: 2. A TCP connect counts its SYN only (the rest is established).
    assert after.sip.packets - before.sip.packets == 4
    assert after.media.packets - before.media.packets == 4
    assert after.mgmt.packets - before.mgmt.packets == 1
    assert after.snmp.packets - before.snmp.packets == 1
    assert after.allowed.packets - before.allowed.packets == 1
    # W's 12 probes of the LAN address and L's 12 of the WAN address (weak host), plus the closed ports.
    assert after.dropped.packets - before.dropped.packets >= 24 + 7 + 6
    assert after.spoofed.packets == before.spoofed.packets


@pytest.mark.usefixtures("listeners")
def test_the_box_still_gets_its_answers_and_forwards_nothing(box: Box, tmp_path: Path) -> None:
    config = tmp_path / "sbc.yaml"
    config.write_text(CONFIG)
    apply_with_cli(box, config)
    answers = [("udp", WAN_PEER, 53), ("tcp", WAN_PEER, 80)]  # DNS, a provisioning or update fetch
    assert open_ports(box.sbc, answers) == set(answers)
    before = box.counters()
    assert open_ports(box.lan_peer, answers) == set()  # through S: forwarding is on, the chain drops it
    assert box.counters().forward_dropped.packets - before.forward_dropped.packets >= 2


@pytest.mark.usefixtures("listeners")
def test_a_source_from_the_other_side_is_dropped_by_the_reverse_path_check(box: Box, tmp_path: Path) -> None:
    config = tmp_path / "sbc.yaml"
    config.write_text(CONFIG)
    apply_with_cli(box, config)
    ip(box.wan_peer, "addr", "add", f"{SPOOFED_SOURCE}/32", "dev", "w0")
    before = box.counters()
    wan_sip = [("udp", SBC_WAN, 5060)]
    assert open_ports(box.wan_peer, wan_sip, source=SPOOFED_SOURCE) == set()
    after = box.counters()
    assert after.spoofed.packets - before.spoofed.packets == 1
    assert after.sip.packets == before.sip.packets  # never reached the input chain
    assert open_ports(box.wan_peer, wan_sip) == set(wan_sip)  # from its own address, the same port answers


@pytest.mark.usefixtures("listeners")
def test_a_refused_ruleset_keeps_the_old_and_disabling_removes_the_table(box: Box, tmp_path: Path) -> None:
    config = tmp_path / "sbc.yaml"
    config.write_text(CONFIG)
    apply_with_cli(box, config)
    listed = in_netns(box.sbc, "nft", "list", "table", "inet", "sbc_filter").stdout
    rendered = in_netns(box.sbc, str(SBC_HW), "firewall", "render", "--config", str(config)).stdout
    with pytest.raises(FirewallRefused):
        load_script(rendered.replace("udp dport 161", "udp dport 16161-"), box.nft)
    with pytest.raises(FirewallRefused):  # passes the syntax check, fails in the kernel: a missing interface
        load_script(rendered.replace('iif "lo" accept', 'iif "nosuchif0" accept'), box.nft)
    assert in_netns(box.sbc, "nft", "list", "table", "inet", "sbc_filter").stdout == listed
    unlisted = [("tcp", SBC_WAN, UNLISTED)]
    assert open_ports(box.wan_peer, unlisted) == set()
    assert box.counters().dropped.packets > 0
    apply_with_cli(box, config)  # replaces the table in force: one transaction, counters from zero
    assert box.counters().dropped.packets == 0
    assert in_netns(box.sbc, "nft", "list", "tables").stdout == "table inet sbc_filter\n"

    config.write_text(CONFIG + "  enabled: false\n")
    done = in_netns(box.sbc, str(SBC_HW), "firewall", "apply", "--config", str(config))
    assert done.returncode == 0 and '"event": "firewall.removed"' in done.stderr, done.stderr
    assert in_netns(box.sbc, "nft", "list", "tables").stdout == ""
    assert open_ports(box.wan_peer, unlisted) == set(unlisted)
