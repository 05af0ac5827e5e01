"""The relay attached to a veth in a namespace, relaying real packets between two others.

A (phone) sends RTP to the SBC's anchor 198.18.1.1:40000 on ns M; the program on
`m_a` rewrites it to 198.18.2.1:40002 -> 198.18.2.2:5004 and redirects it out of `m_b`;
a socket in B receives it (which also proves the UDP checksum, the stack checks it).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataplane.xdp import abi, loader
from dataplane.xdp.attach import XdpMode, attach, attached_prog_id, detach
from dataplane.xdp.bpfsys import prog_info
from dataplane.xdp.loader import RelayObjects
from dataplane.xdp.tables import RelayTables
from dataplane.xdp.testrun import rtp_payload
from dataplane.xdp.tool import missing_tools, run
from tests.bench import relay_traffic
from tests.bench.relay import load_bench_program
from tests.dataplane import xdp_netns
from tests.dataplane.xdp_netns import Topology, inside

pytestmark = pytest.mark.root

PHONE = ("198.18.1.2", 5000)
LAN_ANCHOR = ("198.18.1.1", 40000)
WAN_ANCHOR = ("198.18.2.1", 40002)
FAR_END = ("198.18.2.2", 5004)
PACKETS = 5


@pytest.fixture
def topology(xdp_relay: RelayObjects) -> Iterator[Topology]:
    reason = missing_tools("ip", "ethtool")
    if reason:
        pytest.skip(reason)
    topo = xdp_netns.build(str(os.getpid()))
    try:
        # Native XDP on the SBC's ingress; the redirect target's peer needs an XDP
        # program too, or veth drops redirected frames silently (the relay passes
        # everything there: nothing is addressed to an anchor in B).
        attach("m_a", xdp_relay.prog, XdpMode.NATIVE, netns=topo.m)
        attach("b0", xdp_relay.prog, XdpMode.NATIVE, netns=topo.b)
        yield topo
    finally:
        topo.destroy()


def entry(topo: Topology, *, with_macs: bool) -> abi.Session:
    s = abi.Session(
        flags=abi.SessionFlag.LATCHED,
        egress_ifindex=topo.mb.ifindex,
        expected_src=abi.Endpoint.of(*PHONE),
        dst=abi.Endpoint.of(*FAR_END),
        new_src=abi.Endpoint.of(*WAN_ANCHOR),
        dscp=46,
    )
    if with_macs:
        s.set_macs(topo.mb.mac, topo.b0.mac)
    return s


Received = tuple[bytes, tuple[str, int], int]  # payload, source, TOS


def far_end_socket(topo: Topology) -> socket.socket:
    """The far end's UDP socket in B, reporting each datagram's TOS, 3 s per receive at most."""
    with inside(topo.b):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)
    rx.bind(FAR_END)
    rx.settimeout(3.0)
    return rx


def receive_one(rx: socket.socket) -> Received | None:
    """The next datagram at the far end, or None when none came within the socket's timeout."""
    try:
        data, ancillary, _, source = rx.recvmsg(2048, socket.CMSG_SPACE(1))
    except TimeoutError:
        return None
    return data, source, next((c[2][0] for c in ancillary if c[1] == socket.IP_TOS), -1)


def send_and_receive(topo: Topology, count: int) -> list[Received]:
    """Send `count` RTP packets from A; return what B received."""
    with inside(topo.a):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    received = []
    with far_end_socket(topo) as rx, tx:
        tx.bind(PHONE)
        for seq in range(1, count + 1):  # bounded: `count` packets, 3 s each at most
            tx.sendto(rtp_payload(seq, timestamp=seq * 160), LAN_ANCHOR)
            got = receive_one(rx)
            if got is None:
                break
            received.append(got)
    return received


def test_packet_from_a_arrives_rewritten_in_b(
    xdp_relay: RelayObjects, xdp_tables: RelayTables, topology: Topology
) -> None:
    key = abi.SessionKey.of(*LAN_ANCHOR)
    xdp_tables.sessions.put(key, entry(topology, with_macs=True))
    with inside(topology.m):  # a devmap resolves the ifindex in the caller's namespace
        xdp_tables.egress.add(topology.mb.ifindex)

    received = send_and_receive(topology, PACKETS)

    assert len(received) == PACKETS
    for seq, (data, source, tos) in enumerate(received, start=1):
        assert source == WAN_ANCHOR
        assert data == rtp_payload(seq, timestamp=seq * 160)
        assert tos == 46 << 2
    counters = xdp_tables.counters.read()
    assert counters[abi.Counter.RELAYED] == PACKETS
    assert counters[abi.Counter.REDIRECTED] == PACKETS
    stats = xdp_tables.sessions.get(key)
    assert stats is not None
    assert (stats.stats.packets, stats.stats.rtp.received, stats.stats.rtp.lost()) == (PACKETS, PACKETS, 0)


def test_frames_handed_over_as_by_a_nic_driver_are_relayed_too(
    xdp_relay: RelayObjects, xdp_tables: RelayTables, topology: Topology, tmp_path: Path
) -> None:
    """A NIC driver gives XDP a page, not a socket buffer, and a redirect then sends an XDP frame:
    the path of a real box, which packets from a socket on a veth never take. The benchmark's
    generator (gen.c in BPF_PROG_TEST_RUN live-frames mode) sends such frames out of A's veth. Where
    the kernel refuses that mode (e.g. a root without CAP_SYS_RESOURCE), the test is skipped with
    the kernel's reason."""
    refusal = relay_traffic.probe_live_frames(xdp_relay.prog)
    if refusal:
        pytest.skip(refusal)
    key = abi.SessionKey.of(*LAN_ANCHOR)
    xdp_tables.sessions.put(key, entry(topology, with_macs=True))
    with inside(topology.m):
        xdp_tables.egress.add(topology.mb.ifindex)
    pins = Path(f"/sys/fs/bpf/sbc-test-gen-{os.getpid()}")
    gen = load_bench_program("gen", pins, tmp_path)
    try:
        with far_end_socket(topology) as rx:
            with inside(topology.a):
                sent = relay_traffic.frames(str(gen), "a0", topology.a0.mac, topology.ma.mac, PHONE, LAN_ANCHOR,
                                            PACKETS, max_s=5.0)  # fmt: skip
            received = []
            for _ in range(PACKETS):  # bounded: 3 s each at most
                got = receive_one(rx)
                if got is None:
                    break
                received.append(got)
    finally:
        loader.unpin(pins)

    assert sent["sent"] == PACKETS
    # B's stack checked each UDP checksum (gen.c's and then the relay's incremental updates)
    assert received == [
        (rtp_payload(seq, timestamp=seq * 160, size=relay_traffic.PAYLOAD), WAN_ANCHOR, 46 << 2)
        for seq in range(PACKETS)
    ]
    counters = xdp_tables.counters.read()
    assert (counters[abi.Counter.RELAYED], counters[abi.Counter.REDIRECTED]) == (PACKETS, PACKETS)


def test_fib_lookup_finds_the_macs_once_forwarding_and_neighbour_are_there(
    xdp_relay: RelayObjects, xdp_tables: RelayTables, topology: Topology
) -> None:
    key = abi.SessionKey.of(*LAN_ANCHOR)
    xdp_tables.sessions.put(key, entry(topology, with_macs=False))
    with inside(topology.m):
        xdp_tables.egress.add(topology.mb.ifindex)

    # Forwarding off on the ingress: bpf_fib_lookup refuses, the packet goes to the stack.
    assert send_and_receive(topology, 1) == []
    assert xdp_tables.counters.read()[abi.Counter.FIB_FAILED] == 1

    xdp_netns.sysctl(topology.m, "net.ipv4.conf.all.forwarding", "1")
    xdp_netns.sysctl(topology.m, "net.ipv4.conf.m_a.forwarding", "1")
    # bpf_fib_lookup reads the neighbour table but never resolves: fill it in.
    run(["ip", "-n", topology.m, "neigh", "replace", FAR_END[0], "lladdr", topology.b0.mac,
                   "dev", "m_b", "nud", "permanent"])  # fmt: skip
    received = send_and_receive(topology, PACKETS)
    assert [source for _, source, _ in received] == [WAN_ANCHOR] * PACKETS
    assert xdp_tables.counters.read()[abi.Counter.RELAYED] == PACKETS


def test_attach_reports_the_program_and_detach_needs_the_same_mode(xdp_relay: RelayObjects, topology: Topology) -> None:
    prog_id = prog_info(xdp_relay.prog).id
    assert attached_prog_id("m_a", netns=topology.m) == prog_id
    detach("m_a", XdpMode.NATIVE, netns=topology.m)
    assert attached_prog_id("m_a", netns=topology.m) is None
    attach("m_a", xdp_relay.prog, XdpMode.GENERIC, netns=topology.m)
    assert attached_prog_id("m_a", netns=topology.m) == prog_id
    detach("m_a", XdpMode.GENERIC, netns=topology.m)
    assert attached_prog_id("m_a", netns=topology.m) is None
