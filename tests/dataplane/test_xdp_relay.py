"""`XdpRelay` in three namespaces: phone (A) -- SBC (M) -- far end (B), see `xdp_netns`.

The relay runs in M with two anchors (LAN 198.18.1.1, WAN 198.18.2.1); real UDP sockets in A and B
play the phone and the far end. Each test asserts where the packets were relayed: the kernel (the
session entries' counters) or the userspace slow path (the embedded `UserspaceRelay`'s counters).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataplane.api import AnchorPort, DataplaneMode, Endpoint, Latch, LegProgram
from dataplane.settings import XdpAttach
from dataplane.xdp import abi, loader
from dataplane.xdp.relay import XdpRelay
from dataplane.xdp.testrun import rtp_payload
from dataplane.xdp.tool import missing_tools, run
from tests.dataplane import xdp_netns
from tests.dataplane.conftest import not_root
from tests.dataplane.xdp_netns import Topology, inside

pytestmark = pytest.mark.root

LAN = ipaddress.ip_address("198.18.1.1")
WAN = ipaddress.ip_address("198.18.2.1")
PHONE = Endpoint(ipaddress.ip_address("198.18.1.2"), 5000)
FAR = Endpoint(ipaddress.ip_address("198.18.2.2"), 5004)


def prepare_peers(topo: Topology) -> None:
    """What the far sides of the SBC's veths need for XDP redirects to reach them (ENVIRONMENT.md):
    GRO on the receiving peer (it enables veth NAPI), and full checksums from the senders."""
    for ns, dev in ((topo.a, "a0"), (topo.b, "b0")):
        run(["ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off", "gro", "on"])


def prime_neighbours(topo: Topology) -> None:
    """The relay takes MACs from the neighbour table (see relay.py); signalling fills it in real life.
    A datagram from M to each host makes the kernel resolve them (ARP)."""
    wanted = {"198.18.1.2", "198.18.2.2"}
    with inside(topo.m), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for address in wanted:
            s.sendto(b"arp", (address, 9))
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        known = {
            n["dst"]
            for n in json.loads(run(["ip", "-n", topo.m, "-j", "neigh", "show"]))
            if "lladdr" in n and not {"INCOMPLETE", "FAILED"} & set(n.get("state", []))
        }
        if wanted <= known:
            return
        time.sleep(0.05)
    raise AssertionError(f"neighbours not resolved in {topo.m}")


@pytest.fixture
def topo(relay_object: Path) -> Iterator[Topology]:
    reason = not_root() or missing_tools("ip", "ethtool")
    if reason:
        pytest.skip(reason)
    t = xdp_netns.build(f"r{os.getpid()}")
    try:
        prepare_peers(t)
        yield t
    finally:
        t.destroy()


@pytest.fixture
def pin_dir(relay_object: Path) -> Iterator[Path]:
    path = Path(f"/sys/fs/bpf/sbc-relay-test-{os.getpid()}")
    loader.unpin(path)
    yield path
    loader.unpin(path)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def new_relay(topo: Topology, pin_dir: Path, loop: asyncio.AbstractEventLoop, relay_object: Path) -> XdpRelay:
    with inside(topo.m):
        objects = loader.load(relay_object, pin_dir)
        # native: `prepare_peers` gave the veth peers NAPI (the attach mode itself: test_sbc_netns)
        return XdpRelay(loop, objects, [LAN, WAN], xdp_mode=XdpAttach.NATIVE, stats_cache_s=0.0, tick_s=0.2)


@pytest.fixture
def relay(topo: Topology, pin_dir: Path, loop: asyncio.AbstractEventLoop, relay_object: Path) -> Iterator[XdpRelay]:
    r = new_relay(topo, pin_dir, loop, relay_object)
    try:
        yield r
    finally:
        with inside(topo.m):
            r.shutdown(detach=True)


class Peer:
    """A UDP socket in a namespace: the phone or the far end."""

    def __init__(self, netns: str, ep: Endpoint) -> None:
        with inside(netns):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)
        self.sock.bind((str(ep.address), ep.port))
        self.sock.setblocking(False)

    def send(self, to: AnchorPort, count: int, *, first_seq: int = 1, rtcp: bool = False) -> None:
        port = to.rtcp_port if rtcp else to.rtp_port
        for seq in range(first_seq, first_seq + count):
            data = rtcp_packet() if rtcp else rtp_payload(seq, timestamp=seq * 160)
            self.sock.sendto(data, (str(to.address), port))

    def drain(self) -> list[tuple[bytes, tuple[str, int], int]]:
        out = []
        for _ in range(100_000):
            try:
                data, anc, _, src = self.sock.recvmsg(2048, socket.CMSG_SPACE(1))
            except BlockingIOError:
                break
            tos = next((c[2][0] for c in anc if c[1] == socket.IP_TOS), -1)
            out.append((data, src, tos))
        return out

    def close(self) -> None:
        self.sock.close()


def rtcp_packet() -> bytes:
    """An RTCP receiver report without report blocks (RFC 3550 6.4.2)."""
    return struct.pack("!BBHI", 0x80, 201, 1, 0x1234)


@pytest.fixture
def peers(topo: Topology) -> Iterator[tuple[Peer, Peer, Peer, Peer]]:
    phone, far = Peer(topo.a, PHONE), Peer(topo.b, FAR)
    phone_rtcp = Peer(topo.a, Endpoint(PHONE.address, PHONE.port + 1))
    far_rtcp = Peer(topo.b, Endpoint(FAR.address, FAR.port + 1))
    yield phone, far, phone_rtcp, far_rtcp
    for p in (phone, far, phone_rtcp, far_rtcp):
        p.close()


def pump(loop: asyncio.AbstractEventLoop, seconds: float = 0.2) -> None:
    loop.run_until_complete(asyncio.sleep(seconds))


def leg(remote: Endpoint | None, **kw: object) -> LegProgram:
    return LegProgram(remote_rtp=remote, **kw)  # type: ignore[arg-type]


def call(
    relay: XdpRelay,
    topo: Topology,
    lan_leg: LegProgram,
    wan_leg: LegProgram,
    *,
    realms: tuple[str, str] = ("lan", "wan"),
) -> tuple[AnchorPort, AnchorPort]:
    """Anchors on LAN and WAN addresses, in two realms unless `realms` says otherwise: between realms
    RTCP goes up to the slow path, which replaces its CNAMEs (`dataplane.rtcp`)."""
    with inside(topo.m):
        lan = relay.allocate(realms[0], LAN, 40000, 40099)
        wan = relay.allocate(realms[1], WAN, 41000, 41099)
        relay.program(lan, lan_leg)
        relay.program(wan, wan_leg)
        relay.connect(lan, wan)
    return lan, wan


def slow_stats(relay: XdpRelay, anchor: AnchorPort) -> tuple[int, int]:
    s = relay._slow.stats(anchor)
    return s.packets_in, s.packets_out


def test_rtp_and_rtcp_both_ways_are_relayed_in_the_kernel_within_a_realm(
    relay: XdpRelay, topo: Topology, peers: tuple[Peer, Peer, Peer, Peer], loop: asyncio.AbstractEventLoop
) -> None:
    phone, far, phone_rtcp, far_rtcp = peers
    prime_neighbours(topo)
    lan, wan = call(relay, topo, leg(PHONE, dscp=46), leg(FAR, dscp=34), realms=("lan", "lan"))
    assert relay.stats(lan).in_kernel and relay.stats(wan).in_kernel
    assert len(relay.offloaded(lan)) == 2  # RTP and RTCP ports

    phone.send(lan, 20)
    far.send(wan, 15)
    phone_rtcp.send(lan, 2, rtcp=True)
    pump(loop)

    at_far = far.drain()
    at_phone = phone.drain()
    assert [src for _, src, _ in at_far] == [(str(WAN), wan.rtp_port)] * 20
    assert [data for data, _, _ in at_far] == [rtp_payload(s, timestamp=s * 160) for s in range(1, 21)]
    assert {tos for _, _, tos in at_far} == {34 << 2}  # toward B: the WAN leg's DSCP
    assert [src for _, src, _ in at_phone] == [(str(LAN), lan.rtp_port)] * 15
    assert {tos for _, _, tos in at_phone} == {46 << 2}
    assert [src for _, src, _ in far_rtcp.drain()] == [(str(WAN), wan.rtcp_port)] * 2

    s_lan, s_wan = relay.stats(lan), relay.stats(wan)
    assert (s_lan.packets_in, s_lan.packets_out, s_wan.packets_in, s_wan.packets_out) == (22, 15, 15, 22)
    assert s_lan.extra["kernel_packets_in"] == 22
    assert s_lan.bytes_in == 20 * (12 + 160) + 2 * 8
    assert (s_lan.rtp_expected, s_lan.rtp_lost, s_lan.ssrc) == (20, 0, 0x5BC0FFEE)
    assert slow_stats(relay, lan) == (0, 0) and slow_stats(relay, wan) == (0, 0)  # userspace saw nothing
    counters = relay.kernel_counters()
    assert counters[abi.Counter.REDIRECTED] == 37
    assert counters[abi.Counter.RTCP] == 2


def sr_with_cname(cname: bytes, ssrc: int = 0x5BC0FFEE) -> bytes:
    """A compound packet as phones send it: a sender report (RFC 3550 6.4.1, no report blocks) and an
    SDES with the CNAME (6.5.1), padded to its 32-bit boundary."""
    sr = struct.pack("!BBHIIIIII", 0x80, 200, 6, ssrc, 0xE1000000, 0, 160, 20, 3440)
    chunk = struct.pack("!I", ssrc) + bytes((1, len(cname))) + cname + b"\0"
    chunk += bytes(-len(chunk) % 4)
    return sr + struct.pack("!BBH", 0x81, 202, len(chunk) // 4) + chunk


def test_rtcp_toward_another_realm_goes_up_and_leaves_without_the_inside_cname(
    relay: XdpRelay, topo: Topology, peers: tuple[Peer, Peer, Peer, Peer], loop: asyncio.AbstractEventLoop
) -> None:
    phone, far, phone_rtcp, far_rtcp = peers
    prime_neighbours(topo)
    lan, wan = call(relay, topo, leg(PHONE), leg(FAR))
    assert [s.flags & abi.SessionFlag.RTCP for s in relay.offloaded(lan)] == [0]  # the RTP port only
    compound = sr_with_cname(b"alice@198.18.1.2")

    phone.send(lan, 10)
    phone_rtcp.sock.sendto(compound, (str(LAN), lan.rtcp_port))
    phone_rtcp.sock.sendto(compound, (str(LAN), lan.rtcp_port))
    pump(loop)

    assert len(far.drain()) == 10
    at_far = far_rtcp.drain()
    assert [src for _, src, _ in at_far] == [(str(WAN), wan.rtcp_port)] * 2
    for data, _, _ in at_far:
        assert data[:28] == compound[:28]  # the sender report as it was
        assert b"198.18.1.2" not in data and b"alice" not in data
        assert len(data) == 28 + 4 + 4 + 2 + 16 + 2  # SDES: header, SSRC, CNAME of 16, end + padding
    assert at_far[0][0] == at_far[1][0]  # one participant, one token
    assert slow_stats(relay, lan) == (2, 0) and slow_stats(relay, wan) == (0, 2)
    s_lan = relay.stats(lan)
    assert (s_lan.packets_in, s_lan.extra["kernel_packets_in"], s_lan.extra["rtcp_cnames_scrubbed"]) == (12, 10, 2)
    assert relay.kernel_counters()[abi.Counter.RTCP] == 0


def test_muxed_rtcp_goes_up_to_be_rewritten_while_rtp_stays_in_the_kernel(
    relay: XdpRelay, topo: Topology, peers: tuple[Peer, Peer, Peer, Peer], loop: asyncio.AbstractEventLoop
) -> None:
    phone, far, _, _ = peers
    prime_neighbours(topo)
    lan, wan = call(relay, topo, leg(PHONE, rtcp_mux=True), leg(FAR, rtcp_mux=True))
    (entry,) = relay.offloaded(lan)
    assert entry.flags & abi.SessionFlag.RTCP_UP

    phone.send(lan, 5)
    phone.sock.sendto(sr_with_cname(b"bob@198.18.1.2"), (str(LAN), lan.rtp_port))
    phone.send(lan, 5, first_seq=6)
    pump(loop)

    got = [data for data, src, _ in far.drain() if src == (str(WAN), wan.rtp_port)]
    rtcp = [d for d in got if d[1] == 200]
    assert len(got) == 11 and len(rtcp) == 1
    assert b"198.18.1.2" not in rtcp[0]
    assert slow_stats(relay, lan) == (1, 0)  # the RTCP only
    assert relay.stats(lan).extra["kernel_packets_in"] == 10


def test_learn_latches_on_the_first_packet_then_offloads(
    relay: XdpRelay, topo: Topology, peers: tuple[Peer, Peer, Peer, Peer], loop: asyncio.AbstractEventLoop
) -> None:
    phone, far, _, _ = peers
    prime_neighbours(topo)
    nat_sdp = Endpoint(ipaddress.ip_address("198.18.1.99"), 7000)  # the phone's private SDP address
    lan, wan = call(relay, topo, leg(nat_sdp, latch=Latch.LEARN), leg(FAR))
    assert not relay.stats(lan).in_kernel  # nothing latched yet: the slow path learns
    assert relay.stats(wan).in_kernel is False  # toward a LEARN leg that has not latched: slow path

    phone.send(lan, 1)
    pump(loop)
    assert len(far.drain()) == 1
    assert slow_stats(relay, lan) == (1, 0)
    assert relay.stats(lan).in_kernel and relay.stats(wan).in_kernel
    assert relay.stats(lan).latched_source == PHONE

    phone.send(lan, 30, first_seq=2)
    far.send(wan, 10)
    pump(loop)
    assert len(far.drain()) == 30
    assert [src for _, src, _ in phone.drain()] == [(str(LAN), lan.rtp_port)] * 10  # to the latched source
    assert slow_stats(relay, lan) == (1, 0) and slow_stats(relay, wan) == (0, 1)
    s = relay.stats(lan)
    assert (s.packets_in, s.extra["kernel_packets_in"], s.packets_out) == (31, 30, 10)
    assert (s.rtp_expected, s.rtp_lost) == (31, 0)
    c = relay.counters()  # relay-wide, what `sbc status` shows: both paths together
    assert (c.mode, c.relayed_packets, c.slow_path["relayed_packets"], c.kernel["relayed"]) == (
        DataplaneMode.XDP,
        41,
        1,
        40,
    )
    assert c.relayed_bytes == 41 * (12 + 160)


def test_a_blocked_source_is_dropped_in_the_kernel_until_unblocked(
    relay: XdpRelay, topo: Topology, peers: tuple[Peer, Peer, Peer, Peer], loop: asyncio.AbstractEventLoop
) -> None:
    phone, far, _, _ = peers
    prime_neighbours(topo)
    lan, _ = call(relay, topo, leg(PHONE), leg(FAR))
    relay.block_source(PHONE.address, for_s=60)
    ((left, drops),) = relay.blocked_sources().values()
    assert left is not None and 55 < left <= 60 and drops == 0
    phone.send(lan, 5)
    pump(loop)
    assert far.drain() == []
    assert relay.blocked_sources()[PHONE.address][1] == 5
    assert (relay.counters().dropped["blocked"], slow_stats(relay, lan)) == (5, (0, 0)), "never reached userspace"
    assert relay.unblock_source(PHONE.address)
    assert relay.blocked_sources() == {}
    phone.send(lan, 3, first_seq=6)
    pump(loop)
    assert len(far.drain()) == 3


def test_spoofed_source_is_dropped_in_the_kernel_and_counted(
    relay: XdpRelay, topo: Topology, peers: tuple[Peer, Peer, Peer, Peer], loop: asyncio.AbstractEventLoop
) -> None:
    phone, far, _, _ = peers
    prime_neighbours(topo)
    lan, _ = call(relay, topo, leg(PHONE), leg(FAR))
    spoofer = Peer(topo.a, Endpoint(PHONE.address, 5010))  # right address, wrong port
    try:
        spoofer.send(lan, 7)
        phone.send(lan, 3)
        pump(loop)
    finally:
        spoofer.close()
    assert len(far.drain()) == 3
    s = relay.stats(lan)
    assert (s.packets_in, s.dropped_spoofed) == (3, 7)
    assert relay.kernel_counters()[abi.Counter.DROPPED_SPOOFED] == 7
    assert slow_stats(relay, lan) == (0, 0)
    assert (relay.counters().dropped["spoofed"], relay.counters().dropped_packets) == (7, 7)


def test_hold_stops_media_toward_the_held_side_and_resume_offloads_again(
    relay: XdpRelay, topo: Topology, peers: tuple[Peer, Peer, Peer, Peer], loop: asyncio.AbstractEventLoop
) -> None:
    phone, far, phone_rtcp, far_rtcp = peers
    prime_neighbours(topo)
    lan, wan = call(relay, topo, leg(PHONE), leg(FAR), realms=("lan", "lan"))  # RTCP in the kernel too
    with inside(topo.m):
        relay.program(wan, leg(FAR, send_enabled=False))  # the far end put the call on hold
    assert [s.flags & abi.SessionFlag.RTCP for s in relay.offloaded(lan)] == [abi.SessionFlag.RTCP]

    phone.send(lan, 5)
    phone_rtcp.send(lan, 1, rtcp=True)
    far.send(wan, 4)  # music on hold still reaches the phone
    pump(loop)
    assert far.drain() == []
    assert len(far_rtcp.drain()) == 1  # RTCP keeps flowing (RFC 3264 5.1)
    assert len(phone.drain()) == 4
    assert relay.stats(wan).extra["not_sent_hold"] == 5

    with inside(topo.m):
        relay.program(wan, leg(FAR))  # resume
    phone.send(lan, 6, first_seq=6)
    pump(loop)
    assert len(far.drain()) == 6
    assert relay.stats(lan).extra["kernel_packets_in"] == 6 + 1


def test_release_removes_the_entries(
    relay: XdpRelay, topo: Topology, peers: tuple[Peer, Peer, Peer, Peer], loop: asyncio.AbstractEventLoop
) -> None:
    prime_neighbours(topo)
    lan, wan = call(relay, topo, leg(PHONE), leg(FAR), realms=("lan", "lan"))
    assert len(relay._tables.sessions.keys()) == 4
    with inside(topo.m):
        relay.release(lan)
    assert relay._tables.sessions.keys() == []  # the partner's entries toward the released anchor too
    with inside(topo.m):
        relay.release(wan)
    assert relay._tables.sessions.keys() == []


def test_neighbour_unknown_first_packets_take_the_slow_path_then_the_tick_offloads(
    relay: XdpRelay, topo: Topology, peers: tuple[Peer, Peer, Peer, Peer], loop: asyncio.AbstractEventLoop
) -> None:
    phone, far, _, _ = peers
    lan, wan = call(relay, topo, leg(PHONE), leg(FAR))
    assert not relay.stats(lan).in_kernel  # no ARP entry for the far end yet
    phone.send(lan, 1)  # relayed by userspace, whose send resolves the neighbour
    far.send(wan, 1)
    pump(loop, 1.0)  # a few ticks
    assert relay.stats(lan).in_kernel and relay.stats(wan).in_kernel
    phone.send(lan, 10, first_seq=2)
    pump(loop)
    assert len(far.drain()) == 11
    assert relay.stats(lan).extra["kernel_packets_in"] == 10


class Stream:
    """A paced RTP sender in A and a receiver in B that records every sequence number."""

    def __init__(self, phone: Peer, far: Peer, to: AnchorPort, rate: float) -> None:
        self.phone, self.far, self.to, self.rate = phone, far, to, rate
        self.sent = 0
        self.received: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set() and self.sent < 100_000:  # bounded
            self.sent += 1
            self.phone.send(self.to, 1, first_seq=self.sent)
            for data, _, _ in self.far.drain():
                self.received.add(struct.unpack("!H", data[2:4])[0])
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        time.sleep(0.1)
        for data, _, _ in self.far.drain():
            self.received.add(struct.unpack("!H", data[2:4])[0])


def test_close_keeps_the_entries_and_a_new_relay_adopts_them_without_a_gap(
    topo: Topology,
    pin_dir: Path,
    peers: tuple[Peer, Peer, Peer, Peer],
    loop: asyncio.AbstractEventLoop,
    relay_object: Path,
) -> None:
    phone, far, phone_rtcp, far_rtcp = peers
    prime_neighbours(topo)
    first = new_relay(topo, pin_dir, loop, relay_object)
    nat_sdp = Endpoint(ipaddress.ip_address("198.18.1.99"), 7000)
    lan_leg, wan_leg = leg(nat_sdp, latch=Latch.LEARN), leg(FAR, dscp=34)
    lan, wan = call(first, topo, lan_leg, wan_leg, realms=("lan", "lan"))  # RTCP in the kernel too
    phone.send(lan, 1)  # latches RTP; RTP both ways offloaded
    pump(loop)
    assert len(first._tables.sessions.keys()) == 2  # RTCP waits for the LEARN leg's RTCP to latch
    phone_rtcp.send(lan, 1, rtcp=True)
    pump(loop)
    far.drain()
    far_rtcp.drain()
    entries_before = {bytes(k): bytes(v)[: abi.Session.stats.offset] for k, v in first._tables.sessions.items()}
    assert len(entries_before) == 4

    with Stream(phone, far, lan, rate=500) as stream:
        time.sleep(0.3)
        with inside(topo.m):
            first.close()  # the SBC stops (or crashes): program and entries stay
        time.sleep(0.3)  # nobody in userspace: the kernel alone relays
        second = new_relay(topo, pin_dir, loop, relay_object)
        try:
            assert second.adopted_unclaimed == 4
            with inside(topo.m):  # what the SBC does for each call it re-creates at start
                lan2 = second.allocate_at("lan", LAN, lan.rtp_port)
                wan2 = second.allocate_at("lan", WAN, wan.rtp_port)
                second.program(lan2, lan_leg)
                second.program(wan2, wan_leg)
                second.connect(lan2, wan2)
            pump(loop, 0.3)
            assert second.adopted_unclaimed == 0
            after = {bytes(k): bytes(v)[: abi.Session.stats.offset] for k, v in second._tables.sessions.items()}
            assert after == entries_before  # re-derived identically: rewritten in place or untouched
            assert second.stats(lan2).latched_source == PHONE
            assert second.stats(lan2).in_kernel
        except BaseException:
            with inside(topo.m):
                second.shutdown()
            raise
    assert stream.sent > 300
    assert stream.received == set(range(1, stream.sent + 1)), f"lost {stream.sent - len(stream.received)}"
    s = second.stats(lan2)
    assert s.packets_in >= stream.sent  # kernel counters span both processes
    with inside(topo.m):
        second.release(lan2)
        second.release(wan2)
        assert second._tables.sessions.keys() == []
        second.shutdown()
