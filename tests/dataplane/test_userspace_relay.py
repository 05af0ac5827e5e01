"""UserspaceRelay on loopback only (127.0.0.0/8, ::1): real sockets, an asyncio loop per test."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import socket
import struct
import time
from collections.abc import Iterator

import pytest

from dataplane.api import AnchorPort, DataplaneMode, Endpoint, Latch, LegProgram, PortsExhausted
from dataplane.rtcp import CnameTokens
from dataplane.userspace import UserspaceRelay
from tests.unit.dataplane.rtcp_packets import CNAME, NAME, SDES, SR, read_compound, sdes, sender_report

LAN_ANCHOR = "127.0.1.1"
WAN_ANCHOR = "127.0.2.1"
LAN_PHONE = "127.0.1.10"
WAN_PEER = "127.0.2.10"
EF = 46

Addr = tuple[str, int]


class Clock:
    """Monotonic time that a test can move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def relay(loop: asyncio.AbstractEventLoop, clock: Clock) -> Iterator[UserspaceRelay]:
    r = UserspaceRelay(loop, clock)
    yield r
    r.close()


@pytest.fixture
def ports() -> tuple[int, int]:
    """A random 200-port range, so parallel test runs rarely meet (and EADDRINUSE is skipped anyway)."""
    base = random.randrange(20000, 60000, 2)
    return base, base + 199


@pytest.fixture
def socks() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for s in opened:
        s.close()


def udp(opened: list[socket.socket], host: str, port: int = 0) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    opened.append(s)
    s.setblocking(False)
    s.bind((host, port))
    return s


def udp_pair(opened: list[socket.socket], host: str) -> tuple[socket.socket, socket.socket]:
    """Two sockets on consecutive ports (RTP, RTCP = RTP + 1)."""
    for _ in range(50):
        rtp = udp(opened, host)
        port = rtp.getsockname()[1]
        if port % 2 == 0 and port < 65535:
            with contextlib.suppress(OSError):
                return rtp, udp(opened, host, port + 1)
    raise RuntimeError("no consecutive port pair found")


def ep(sock: socket.socket) -> Endpoint:
    host, port = sock.getsockname()[:2]
    return Endpoint(ipaddress.ip_address(host), port)


def rtp(seq: int, ssrc: int = 0xA1B2C3D4, pt: int = 0, size: int = 160) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, ssrc) + bytes([seq & 0xFF]) * size


def rtcp_sr(ssrc: int = 0xA1B2C3D4) -> bytes:
    return struct.pack("!BBHI", 0x80, 200, 6, ssrc) + b"\x11" * 20


def pump(loop: asyncio.AbstractEventLoop, seconds: float = 0.002) -> None:
    loop.run_until_complete(asyncio.sleep(seconds))


def drain(sock: socket.socket) -> list[tuple[bytes, Addr]]:
    out: list[tuple[bytes, Addr]] = []
    for _ in range(10000):
        try:
            data, src = sock.recvfrom(65536)
        except BlockingIOError:
            break
        out.append((data, (src[0], src[1])))
    return out


def receive(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, count: int, timeout: float = 2.0
) -> list[tuple[bytes, Addr]]:
    """Run the loop until `count` datagrams arrived at `sock` (or the timeout)."""
    got: list[tuple[bytes, Addr]] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        pump(loop)
        got.extend(drain(sock))
    return got


def settle(loop: asyncio.AbstractEventLoop, *sockets: socket.socket, seconds: float = 0.1) -> list[bytes]:
    """Run the loop for a while and return whatever arrived (for asserting that nothing did)."""
    deadline = time.monotonic() + seconds
    got: list[bytes] = []
    while time.monotonic() < deadline:
        pump(loop, 0.005)
        for s in sockets:
            got.extend(d for d, _ in drain(s))
    return got


def a_addr(anchor: AnchorPort, rtcp: bool = False) -> Addr:
    return (str(anchor.address), anchor.rtcp_port if rtcp else anchor.rtp_port)


class Call:
    """A LAN phone and a WAN peer relayed through a LAN anchor and a WAN anchor."""

    def __init__(
        self,
        relay: UserspaceRelay,
        opened: list[socket.socket],
        ports: tuple[int, int],
        lan_leg: dict[str, object] | None = None,
        wan_leg: dict[str, object] | None = None,
    ) -> None:
        self.phone = udp(opened, LAN_PHONE)
        self.peer = udp(opened, WAN_PEER)
        self.lan = relay.allocate("lan", ipaddress.ip_address(LAN_ANCHOR), *ports)
        self.wan = relay.allocate("wan", ipaddress.ip_address(WAN_ANCHOR), *ports)
        relay.program(self.lan, LegProgram(remote_rtp=ep(self.phone), **(lan_leg or {})))  # type: ignore[arg-type]
        relay.program(self.wan, LegProgram(remote_rtp=ep(self.peer), **(wan_leg or {})))  # type: ignore[arg-type]
        relay.connect(self.lan, self.wan)


# --- relaying ---------------------------------------------------------------------------------------


def test_relays_both_ways_with_exact_counters(
    relay: UserspaceRelay, loop: asyncio.AbstractEventLoop, socks: list[socket.socket], ports: tuple[int, int]
) -> None:
    assert relay.mode is DataplaneMode.USERSPACE
    call = Call(relay, socks, ports)
    assert call.lan.rtp_port % 2 == 0 and ports[0] <= call.lan.rtp_port < call.lan.rtcp_port <= ports[1]
    up = [rtp(i, ssrc=1) for i in range(30)]
    down = [rtp(1000 + i, ssrc=2, pt=8, size=80) for i in range(25)]
    for p in up:
        call.phone.sendto(p, a_addr(call.lan))
    got_up = receive(loop, call.peer, len(up))
    for p in down:
        call.peer.sendto(p, a_addr(call.wan))
    got_down = receive(loop, call.phone, len(down))

    assert [d for d, _ in got_up] == up
    assert {src for _, src in got_up} == {a_addr(call.wan)}
    assert [d for d, _ in got_down] == down
    assert {src for _, src in got_down} == {a_addr(call.lan)}
    assert settle(loop, call.phone, call.peer) == []

    lan, wan = relay.stats(call.lan), relay.stats(call.wan)
    assert (lan.packets_in, lan.bytes_in, lan.packets_out, lan.bytes_out) == (30, 30 * 172, 25, 25 * 92)
    assert (wan.packets_in, wan.bytes_in, wan.packets_out, wan.bytes_out) == (25, 25 * 92, 30, 30 * 172)
    assert lan.dropped_spoofed == lan.dropped_other == wan.dropped_spoofed == wan.dropped_other == 0
    assert lan.latched_source == ep(call.phone) and wan.latched_source == ep(call.peer)
    assert (lan.ssrc, lan.payload_type, lan.rtp_expected, lan.rtp_lost) == (1, 0, 30, 0)
    assert (wan.ssrc, wan.payload_type, wan.rtp_expected, wan.rtp_lost) == (2, 8, 25, 0)
    assert lan.last_in_s is not None and not lan.in_kernel
    t = relay.totals()
    assert (t.relayed_packets, t.relayed_bytes, t.dropped_spoofed, t.anchors) == (55, 30 * 172 + 25 * 92, 0, 2)


def test_loss_is_measured_on_the_receiving_anchor(
    relay: UserspaceRelay, loop: asyncio.AbstractEventLoop, socks: list[socket.socket], ports: tuple[int, int]
) -> None:
    call = Call(relay, socks, ports)
    sent = [rtp(i) for i in range(20) if i not in (5, 6, 13)]
    for p in sent:
        call.phone.sendto(p, a_addr(call.lan))
    assert len(receive(loop, call.peer, len(sent))) == len(sent)
    stats = relay.stats(call.lan)
    assert (stats.rtp_expected, stats.rtp_lost) == (20, 3)
    assert stats.loss_fraction == pytest.approx(3 / 20)


def test_spoofed_source_is_dropped_while_media_continues(
    relay: UserspaceRelay, loop: asyncio.AbstractEventLoop, socks: list[socket.socket], ports: tuple[int, int]
) -> None:
    call = Call(relay, socks, ports)
    same_host_other_port = udp(socks, LAN_PHONE)
    other_host = udp(socks, "127.0.1.66")
    for i in range(10):
        call.phone.sendto(rtp(i), a_addr(call.lan))
        same_host_other_port.sendto(rtp(500 + i, ssrc=666), a_addr(call.lan))
        other_host.sendto(rtp(600 + i, ssrc=667), a_addr(call.lan))
        other_host.sendto(rtcp_sr(667), a_addr(call.lan, rtcp=True))
    got = receive(loop, call.peer, 10)
    assert [d for d, _ in got] == [rtp(i) for i in range(10)]
    assert settle(loop, call.peer) == []
    stats = relay.stats(call.lan)
    assert (stats.packets_in, stats.dropped_spoofed, stats.dropped_other) == (10, 30, 0)
    assert stats.ssrc == 0xA1B2C3D4 and stats.rtp_lost == 0
    assert relay.totals().dropped_spoofed == 30


def test_unconnected_or_unprogrammed_anchor_drops_as_other(
    relay: UserspaceRelay, loop: asyncio.AbstractEventLoop, socks: list[socket.socket], ports: tuple[int, int]
) -> None:
    phone = udp(socks, LAN_PHONE)
    lan = relay.allocate("lan", ipaddress.ip_address(LAN_ANCHOR), *ports)
    phone.sendto(rtp(1), a_addr(lan))  # not programmed
    settle(loop)
    relay.program(lan, LegProgram(remote_rtp=ep(phone)))
    phone.sendto(rtp(2), a_addr(lan))  # programmed, no partner
    settle(loop)
    stats = relay.stats(lan)
    assert (stats.dropped_other, stats.packets_in, stats.latched_source) == (2, 0, None)
    assert relay.totals().dropped_other == 2


def test_late_offer_leg_without_endpoint(
    relay: UserspaceRelay, loop: asyncio.AbstractEventLoop, socks: list[socket.socket], ports: tuple[int, int]
) -> None:
    call = Call(relay, socks, ports)
    relay.program(call.wan, LegProgram(remote_rtp=None))  # e.g. c=0.0.0.0
    call.phone.sendto(rtp(1), a_addr(call.lan))
    call.peer.sendto(rtp(2), a_addr(call.wan))
    assert settle(loop, call.peer, call.phone) == []
    lan, wan = relay.stats(call.lan), relay.stats(call.wan)
    assert (lan.packets_in, wan.extra["not_sent_no_endpoint"], wan.dropped_other) == (1, 1, 1)


# --- latching ---------------------------------------------------------------------------------------


def test_learn_latches_first_source_in_window_and_never_relatches(
    relay: UserspaceRelay,
    loop: asyncio.AbstractEventLoop,
    clock: Clock,
    socks: list[socket.socket],
    ports: tuple[int, int],
) -> None:
    call = Call(relay, socks, ports)
    nat_public = udp(socks, "127.0.1.20")  # the phone behind NAT: SDP says one thing, packets come from here
    sdp_private = Endpoint(ipaddress.ip_address("127.0.1.200"), 40000)
    relay.program(call.lan, LegProgram(remote_rtp=sdp_private, latch=Latch.LEARN, latch_window_s=2.0))
    nat_public.sendto(rtp(1), a_addr(call.lan))
    assert [d for d, _ in receive(loop, call.peer, 1)] == [rtp(1)]
    assert relay.stats(call.lan).latched_source == ep(nat_public)
    # symmetric RTP: the peer's media now goes to the latched source, not to the SDP address
    call.peer.sendto(rtp(7, ssrc=2), a_addr(call.wan))
    assert [d for d, _ in receive(loop, nat_public, 1)] == [rtp(7, ssrc=2)]
    # another source inside the window, and after it, is refused; even the SDP address is
    intruder = udp(socks, "127.0.1.21")
    intruder.sendto(rtp(100, ssrc=9), a_addr(call.lan))
    call.phone.sendto(rtp(101, ssrc=9), a_addr(call.lan))
    clock.advance(5.0)  # after the window
    intruder.sendto(rtp(102, ssrc=9), a_addr(call.lan))
    nat_public.sendto(rtp(2), a_addr(call.lan))
    assert [d for d, _ in receive(loop, call.peer, 1)] == [rtp(2)]
    assert settle(loop, call.peer) == []
    stats = relay.stats(call.lan)
    assert (stats.packets_in, stats.dropped_spoofed, stats.latched_source) == (2, 3, ep(nat_public))
    assert stats.extra["relatched"] == 0


def test_learn_after_window_accepts_only_the_sdp_endpoint(
    relay: UserspaceRelay,
    loop: asyncio.AbstractEventLoop,
    clock: Clock,
    socks: list[socket.socket],
    ports: tuple[int, int],
) -> None:
    call = Call(relay, socks, ports, lan_leg={"latch": Latch.LEARN, "latch_window_s": 1.0})
    clock.advance(1.5)
    stranger = udp(socks, "127.0.1.30")
    stranger.sendto(rtp(1), a_addr(call.lan))
    assert settle(loop, call.peer) == []
    call.phone.sendto(rtp(2), a_addr(call.lan))
    assert [d for d, _ in receive(loop, call.peer, 1)] == [rtp(2)]
    stats = relay.stats(call.lan)
    assert (stats.dropped_spoofed, stats.packets_in, stats.latched_source) == (1, 1, ep(call.phone))


def test_relatch_moves_only_to_a_new_ssrc(
    relay: UserspaceRelay, loop: asyncio.AbstractEventLoop, socks: list[socket.socket], ports: tuple[int, int]
) -> None:
    call = Call(relay, socks, ports, lan_leg={"latch": Latch.LEARN, "relatch": True})
    call.phone.sendto(rtp(1, ssrc=1), a_addr(call.lan))
    assert len(receive(loop, call.peer, 1)) == 1
    moved = udp(socks, "127.0.1.40")  # the same phone after a NAT rebinding
    moved.sendto(rtp(2, ssrc=1), a_addr(call.lan))  # same SSRC from elsewhere: not a new stream, refused
    moved.sendto(rtcp_sr(5), a_addr(call.lan))  # RTCP never moves the latch
    assert settle(loop, call.peer) == []
    moved.sendto(rtp(3, ssrc=5), a_addr(call.lan))
    assert [d for d, _ in receive(loop, call.peer, 1)] == [rtp(3, ssrc=5)]
    call.phone.sendto(rtp(4, ssrc=1), a_addr(call.lan))  # the old source is now refused (old SSRC)
    assert settle(loop, call.peer) == []
    call.peer.sendto(rtp(9, ssrc=2), a_addr(call.wan))
    assert [d for d, _ in receive(loop, moved, 1)] == [rtp(9, ssrc=2)]
    stats = relay.stats(call.lan)
    assert (stats.latched_source, stats.extra["relatched"], stats.dropped_spoofed) == (ep(moved), 1, 3)


def test_sdp_latch_ignores_relatch(
    relay: UserspaceRelay, loop: asyncio.AbstractEventLoop, socks: list[socket.socket], ports: tuple[int, int]
) -> None:
    call = Call(relay, socks, ports, lan_leg={"relatch": True})
    call.phone.sendto(rtp(1, ssrc=1), a_addr(call.lan))
    other = udp(socks, "127.0.1.41")
    other.sendto(rtp(2, ssrc=2), a_addr(call.lan))
    assert len(receive(loop, call.peer, 1)) == 1
    assert settle(loop, call.peer) == []
    assert relay.stats(call.lan).dropped_spoofed == 1


# --- RTCP -------------------------------------------------------------------------------------------


def test_separate_rtcp_both_ways(
    relay: UserspaceRelay, loop: asyncio.AbstractEventLoop, socks: list[socket.socket], ports: tuple[int, int]
) -> None:
    phone_rtp, phone_rtcp = udp_pair(socks, LAN_PHONE)  # RTCP on RTP + 1, not named in the SDP
    peer_rtp = udp(socks, WAN_PEER)
    peer_rtcp = udp(socks, WAN_PEER)  # a=rtcp:<port> names it explicitly
    lan = relay.allocate("lan", ipaddress.ip_address(LAN_ANCHOR), *ports)
    wan = relay.allocate("wan", ipaddress.ip_address(WAN_ANCHOR), *ports)
    relay.program(lan, LegProgram(remote_rtp=ep(phone_rtp)))
    relay.program(wan, LegProgram(remote_rtp=ep(peer_rtp), remote_rtcp=ep(peer_rtcp)))
    relay.connect(lan, wan)

    phone_rtcp.sendto(rtcp_sr(1), a_addr(lan, rtcp=True))
    assert receive(loop, peer_rtcp, 1) == [(rtcp_sr(1), a_addr(wan, rtcp=True))]
    peer_rtcp.sendto(rtcp_sr(2), a_addr(wan, rtcp=True))
    assert receive(loop, phone_rtcp, 1) == [(rtcp_sr(2), a_addr(lan, rtcp=True))]
    # RTCP from the RTP socket (wrong port) to the RTCP port is refused; RTP still goes RTP to RTP
    phone_rtp.sendto(rtcp_sr(1), a_addr(lan, rtcp=True))
    phone_rtp.sendto(rtp(1), a_addr(lan))
    assert receive(loop, peer_rtp, 1) == [(rtp(1), a_addr(wan))]
    assert settle(loop, peer_rtp, peer_rtcp, phone_rtp, phone_rtcp) == []
    lan_stats = relay.stats(lan)
    assert (lan_stats.packets_in, lan_stats.packets_out, lan_stats.dropped_spoofed) == (2, 1, 1)
    assert lan_stats.rtp_expected == 1  # RTCP is not in the RTP statistics


# --- RTCP toward another realm: SDES CNAMEs replaced (topology hiding) ------------------------------


TOKENS = CnameTokens(b"t" * 16)


def test_rtcp_cnames_are_replaced_toward_the_other_realm_both_ways(
    loop: asyncio.AbstractEventLoop, clock: Clock, socks: list[socket.socket], ports: tuple[int, int]
) -> None:
    relay = UserspaceRelay(loop, clock, cname_tokens=TOKENS)
    try:
        phone_rtp, phone_rtcp = udp_pair(socks, LAN_PHONE)
        peer_rtp, peer_rtcp = udp_pair(socks, WAN_PEER)
        lan = relay.allocate("lan", ipaddress.ip_address(LAN_ANCHOR), *ports)
        wan = relay.allocate("wan", ipaddress.ip_address(WAN_ANCHOR), *ports)
        relay.program(lan, LegProgram(remote_rtp=ep(phone_rtp)))
        relay.program(wan, LegProgram(remote_rtp=ep(peer_rtp)))
        relay.connect(lan, wan)
        from_phone = sender_report(0xA11CE) + sdes((0xA11CE, [(CNAME, b"alice@127.0.1.10"), (NAME, b"Alice")]))
        from_peer = sender_report(0xB0B) + sdes((0xB0B, [(CNAME, b"pbx@127.0.2.10")]))

        phone_rtcp.sendto(from_phone, a_addr(lan, rtcp=True))
        ((at_peer, source),) = receive(loop, peer_rtcp, 1)
        peer_rtcp.sendto(from_peer, a_addr(wan, rtcp=True))
        ((at_phone, _),) = receive(loop, phone_rtcp, 1)

        assert source == a_addr(wan, rtcp=True)
        assert LAN_PHONE.encode() not in at_peer
        assert read_compound(at_peer) == [
            (SR, sender_report(0xA11CE)[4:]),
            (SDES, [(0xA11CE, [(CNAME, TOKENS.token(b"alice@127.0.1.10")), (NAME, b"Alice")])]),
        ]
        assert read_compound(at_phone)[1] == (SDES, [(0xB0B, [(CNAME, TOKENS.token(b"pbx@127.0.2.10"))])])
        lan_stats, wan_stats = relay.stats(lan), relay.stats(wan)
        assert lan_stats.extra["rtcp_cnames_scrubbed"] == 1 and wan_stats.extra["rtcp_cnames_scrubbed"] == 1
        assert lan_stats.bytes_in == len(from_phone) and wan_stats.bytes_out == len(at_peer)  # as they went
    finally:
        relay.close()


def test_rtcp_within_one_realm_goes_on_unchanged(
    relay: UserspaceRelay, loop: asyncio.AbstractEventLoop, socks: list[socket.socket], ports: tuple[int, int]
) -> None:
    """A hairpin (two phones of the branch): nothing crosses into another realm."""
    phone_a, phone_b = udp(socks, LAN_PHONE), udp(socks, "127.0.1.11")
    a = relay.allocate("lan", ipaddress.ip_address(LAN_ANCHOR), *ports)
    b = relay.allocate("lan", ipaddress.ip_address(LAN_ANCHOR), *ports)
    relay.program(a, LegProgram(remote_rtp=ep(phone_a), rtcp_mux=True))
    relay.program(b, LegProgram(remote_rtp=ep(phone_b), rtcp_mux=True))
    relay.connect(a, b)
    packet = sender_report(1) + sdes((1, [(CNAME, b"alice@127.0.1.10")]))
    phone_a.sendto(packet, a_addr(a))
    assert receive(loop, phone_b, 1) == [(packet, a_addr(b))]
    assert relay.stats(a).extra["rtcp_cnames_scrubbed"] == 0


def test_muxed_rtcp_is_scrubbed_and_rtp_is_not_touched(
    loop: asyncio.AbstractEventLoop, clock: Clock, socks: list[socket.socket], ports: tuple[int, int]
) -> None:
    relay = UserspaceRelay(loop, clock, cname_tokens=TOKENS)
    try:
        call = Call(relay, socks, ports, lan_leg={"rtcp_mux": True}, wan_leg={"rtcp_mux": True})
        packet = sender_report(7) + sdes((7, [(CNAME, b"alice@127.0.1.10")]))
        call.phone.sendto(rtp(1), a_addr(call.lan))
        call.phone.sendto(packet, a_addr(call.lan))
        got = dict(receive(loop, call.peer, 2))
        assert rtp(1) in got
        (rewritten,) = (d for d in got if d[1] == SR)
        assert read_compound(rewritten)[1] == (SDES, [(7, [(CNAME, TOKENS.token(b"alice@127.0.1.10"))])])
    finally:
        relay.close()


def test_rtcp_mux_on_one_side(
    relay: UserspaceRelay, loop: asyncio.AbstractEventLoop, socks: list[socket.socket], ports: tuple[int, int]
) -> None:
    phone = udp(socks, LAN_PHONE)  # WebRTC-style: everything on one port
    peer_rtp, peer_rtcp = udp_pair(socks, WAN_PEER)
    lan = relay.allocate("lan", ipaddress.ip_address(LAN_ANCHOR), *ports)
    wan = relay.allocate("wan", ipaddress.ip_address(WAN_ANCHOR), *ports)
    relay.program(lan, LegProgram(remote_rtp=ep(phone), rtcp_mux=True))
    relay.program(wan, LegProgram(remote_rtp=ep(peer_rtp)))
    relay.connect(lan, wan)

    phone.sendto(rtp(1), a_addr(lan))
    phone.sendto(rtcp_sr(1), a_addr(lan))  # RTCP on the RTP port
    assert receive(loop, peer_rtp, 1) == [(rtp(1), a_addr(wan))]
    assert receive(loop, peer_rtcp, 1) == [(rtcp_sr(1), a_addr(wan, rtcp=True))]
    peer_rtcp.sendto(rtcp_sr(2), a_addr(wan, rtcp=True))
    peer_rtp.sendto(rtp(2, ssrc=2), a_addr(wan))
    got = receive(loop, phone, 2)
    assert sorted(got) == sorted([(rtcp_sr(2), a_addr(lan)), (rtp(2, ssrc=2), a_addr(lan))])
    assert settle(loop, phone, peer_rtp, peer_rtcp) == []
    lan_stats = relay.stats(lan)
    assert (lan_stats.packets_in, lan_stats.packets_out, lan_stats.rtp_expected) == (2, 2, 1)


def test_rtcp_mux_on_both_sides(
    relay: UserspaceRelay, loop: asyncio.AbstractEventLoop, socks: list[socket.socket], ports: tuple[int, int]
) -> None:
    call = Call(relay, socks, ports, lan_leg={"rtcp_mux": True}, wan_leg={"rtcp_mux": True})
    call.phone.sendto(rtcp_sr(1), a_addr(call.lan))
    assert receive(loop, call.peer, 1) == [(rtcp_sr(1), a_addr(call.wan))]
    call.peer.sendto(rtcp_sr(2), a_addr(call.wan))
    assert receive(loop, call.phone, 1) == [(rtcp_sr(2), a_addr(call.lan))]


def test_learn_rtcp_latches_to_the_latched_rtp_address(
    relay: UserspaceRelay,
    loop: asyncio.AbstractEventLoop,
    clock: Clock,
    socks: list[socket.socket],
    ports: tuple[int, int],
) -> None:
    nat = udp(socks, "127.0.1.50")
    nat_rtcp = udp(socks, "127.0.1.50")  # the NAT maps RTCP to an unrelated port
    stranger = udp(socks, "127.0.1.51")
    peer_rtp, peer_rtcp = udp_pair(socks, WAN_PEER)
    private = Endpoint(ipaddress.ip_address("127.0.1.201"), 40000)
    lan = relay.allocate("lan", ipaddress.ip_address(LAN_ANCHOR), *ports)
    wan = relay.allocate("wan", ipaddress.ip_address(WAN_ANCHOR), *ports)
    relay.program(lan, LegProgram(remote_rtp=private, latch=Latch.LEARN, latch_window_s=1.0))
    relay.program(wan, LegProgram(remote_rtp=ep(peer_rtp)))
    relay.connect(lan, wan)
    nat.sendto(rtp(1), a_addr(lan))
    assert len(receive(loop, peer_rtp, 1)) == 1
    clock.advance(10)  # RTCP usually starts after the learning window
    stranger.sendto(rtcp_sr(3), a_addr(lan, rtcp=True))
    assert settle(loop, peer_rtcp) == []
    nat_rtcp.sendto(rtcp_sr(1), a_addr(lan, rtcp=True))
    assert receive(loop, peer_rtcp, 1) == [(rtcp_sr(1), a_addr(wan, rtcp=True))]
    peer_rtcp.sendto(rtcp_sr(2), a_addr(wan, rtcp=True))
    assert receive(loop, nat_rtcp, 1) == [(rtcp_sr(2), a_addr(lan, rtcp=True))]  # symmetric RTCP
    nat.sendto(rtcp_sr(1), a_addr(lan, rtcp=True))  # RTCP latched: another port of the same host is refused
    peer_rtp.sendto(rtcp_sr(2), a_addr(wan, rtcp=True))  # SDP leg: only from RTP port + 1
    assert settle(loop, peer_rtcp, nat_rtcp) == []
    assert (relay.stats(lan).packets_in, relay.stats(lan).dropped_spoofed) == (2, 2)
    assert (relay.stats(wan).packets_in, relay.stats(wan).dropped_spoofed) == (1, 1)


# --- DSCP -------------------------------------------------------------------------------------------


def recv_tos(loop: asyncio.AbstractEventLoop, sock: socket.socket, v6: bool = False) -> tuple[bytes, int]:
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        pump(loop)
        try:
            data, anc, _flags, _src = sock.recvmsg(65536, socket.CMSG_SPACE(4))
        except BlockingIOError:
            continue
        for level, kind, value in anc:
            if not v6 and level == socket.IPPROTO_IP and kind == socket.IP_TOS:
                return data, value[0]
            if v6 and level == socket.IPPROTO_IPV6 and kind == socket.IPV6_TCLASS:
                return data, int.from_bytes(value[:4], "little")
        raise AssertionError(f"no TOS in ancillary data {anc}")
    raise AssertionError("nothing received")


def test_dscp_is_set_per_anchor(
    relay: UserspaceRelay, loop: asyncio.AbstractEventLoop, socks: list[socket.socket], ports: tuple[int, int]
) -> None:
    call = Call(relay, socks, ports, lan_leg={"dscp": EF}, wan_leg={"dscp": 26})
    for s in (call.phone, call.peer):
        s.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)
    call.peer.sendto(rtp(1), a_addr(call.wan))
    assert recv_tos(loop, call.phone) == (rtp(1), EF << 2)
    call.phone.sendto(rtp(2), a_addr(call.lan))
    assert recv_tos(loop, call.peer) == (rtp(2), 26 << 2)
    relay.program(call.wan, LegProgram(remote_rtp=ep(call.peer), dscp=EF))
    call.phone.sendto(rtp(3), a_addr(call.lan))
    assert recv_tos(loop, call.peer) == (rtp(3), EF << 2)


# --- re-programming ---------------------------------------------------------------------------------


def test_hold_and_resume_keep_ports_and_latch(
    relay: UserspaceRelay, loop: asyncio.AbstractEventLoop, socks: list[socket.socket], ports: tuple[int, int]
) -> None:
    phone_rtp, phone_rtcp = udp_pair(socks, LAN_PHONE)
    peer_rtp, peer_rtcp = udp_pair(socks, WAN_PEER)
    lan = relay.allocate("lan", ipaddress.ip_address(LAN_ANCHOR), *ports)
    wan = relay.allocate("wan", ipaddress.ip_address(WAN_ANCHOR), *ports)
    relay.program(lan, LegProgram(remote_rtp=ep(phone_rtp), latch=Latch.LEARN))
    relay.program(wan, LegProgram(remote_rtp=ep(peer_rtp)))
    relay.connect(lan, wan)
    phone_rtp.sendto(rtp(1), a_addr(lan))
    assert len(receive(loop, peer_rtp, 1)) == 1

    # the phone puts the call on hold (a=sendonly, music on hold from it): nothing is sent toward it
    relay.program(lan, LegProgram(remote_rtp=ep(phone_rtp), latch=Latch.LEARN, send_enabled=False))
    relay.connect(lan, wan)  # the core re-connects on every SDP: a no-op
    peer_rtp.sendto(rtp(2, ssrc=2), a_addr(wan))
    peer_rtcp.sendto(rtcp_sr(2), a_addr(wan, rtcp=True))
    phone_rtp.sendto(rtp(3), a_addr(lan))  # music on hold still flows from the phone
    assert receive(loop, phone_rtcp, 1) == [(rtcp_sr(2), a_addr(lan, rtcp=True))]  # RTCP keeps flowing
    assert [d for d, _ in receive(loop, peer_rtp, 1)] == [rtp(3)]
    assert settle(loop, phone_rtp) == []
    held = relay.stats(lan)
    assert (held.extra["not_sent_hold"], held.packets_out, held.latched_source) == (1, 1, ep(phone_rtp))

    # resume, same address: latch kept, same ports, media flows again
    relay.program(lan, LegProgram(remote_rtp=ep(phone_rtp), latch=Latch.LEARN))
    peer_rtp.sendto(rtp(4, ssrc=2), a_addr(wan))
    assert receive(loop, phone_rtp, 1) == [(rtp(4, ssrc=2), a_addr(lan))]
    resumed = relay.stats(lan)
    assert resumed.latched_source == ep(phone_rtp) and resumed.packets_out == 2

    # re-INVITE with a new address: the latch is reset and learned again
    new_phone = udp(socks, "127.0.1.11")
    relay.program(lan, LegProgram(remote_rtp=ep(new_phone), latch=Latch.LEARN))
    assert relay.stats(lan).latched_source is None
    new_phone.sendto(rtp(5, ssrc=3), a_addr(lan))
    assert [d for d, _ in receive(loop, peer_rtp, 1)] == [rtp(5, ssrc=3)]
    assert relay.stats(lan).latched_source == ep(new_phone)


def test_hairpin_connect_repoints_the_partner(
    relay: UserspaceRelay, loop: asyncio.AbstractEventLoop, socks: list[socket.socket], ports: tuple[int, int]
) -> None:
    call = Call(relay, socks, ports)
    phone_b = udp(socks, "127.0.1.12")
    lan_b = relay.allocate("lan", ipaddress.ip_address("127.0.1.2"), *ports)
    relay.program(lan_b, LegProgram(remote_rtp=ep(phone_b)))
    relay.connect(call.lan, lan_b)  # the call came back to the branch: phone A <-> phone B locally
    call.phone.sendto(rtp(1), a_addr(call.lan))
    assert receive(loop, phone_b, 1) == [(rtp(1), ("127.0.1.2", lan_b.rtp_port))]
    phone_b.sendto(rtp(2, ssrc=2), a_addr(lan_b))
    assert receive(loop, call.phone, 1) == [(rtp(2, ssrc=2), a_addr(call.lan))]
    call.peer.sendto(rtp(3, ssrc=3), a_addr(call.wan))  # the WAN anchor lost its partner
    assert settle(loop, call.phone, phone_b, call.peer) == []
    assert relay.stats(call.wan).dropped_other == 1
    relay.disconnect(call.lan)
    call.phone.sendto(rtp(4), a_addr(call.lan))
    assert settle(loop, phone_b) == []
    assert relay.stats(call.lan).dropped_other == 1


def test_program_and_connect_validation(relay: UserspaceRelay, ports: tuple[int, int]) -> None:
    lan = relay.allocate("lan", ipaddress.ip_address(LAN_ANCHOR), *ports)
    with pytest.raises(ValueError):
        relay.program(lan, LegProgram(remote_rtp=Endpoint(ipaddress.ip_address("::1"), 4000)))
    with pytest.raises(ValueError):
        relay.program(lan, LegProgram(remote_rtp=None, dscp=64))
    with pytest.raises(ValueError):
        relay.connect(lan, lan)


# --- allocation -------------------------------------------------------------------------------------


def free_ports(host: str, count: int = 2) -> int:
    """An even port starting `count` consecutive ports that are free right now."""
    for _ in range(200):
        port = random.randrange(20000, 60000, 2)
        probes: list[socket.socket] = []
        try:
            for i in range(count):
                probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                probes.append(probe)
                probe.bind((host, port + i))
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
        return port
    raise RuntimeError("no free ports")


def test_ports_exhausted_with_a_tiny_range(relay: UserspaceRelay) -> None:
    port = free_ports(LAN_ANCHOR)
    address = ipaddress.ip_address(LAN_ANCHOR)
    first = relay.allocate("lan", address, port, port + 1)
    assert (first.rtp_port, first.rtcp_port) == (port, port + 1)
    with pytest.raises(PortsExhausted):
        relay.allocate("lan", address, port, port + 1)
    with pytest.raises(PortsExhausted):
        relay.allocate("lan", address, port + 1, port + 2)  # odd start: no pair fits in 2 ports
    relay.release(first)
    assert relay.allocate("lan", address, port, port + 1).rtp_port == port


def test_allocation_rotates_and_skips_ports_in_use(relay: UserspaceRelay, socks: list[socket.socket]) -> None:
    port = free_ports(LAN_ANCHOR, 6)
    address = ipaddress.ip_address(LAN_ANCHOR)
    squatter = udp(socks, LAN_ANCHOR, port + 1)  # someone else holds the first pair's RTCP port
    a = relay.allocate("lan", address, port, port + 5)
    assert a.rtp_port == port + 2
    b = relay.allocate("lan", address, port, port + 5)
    assert b.rtp_port == port + 4
    squatter.close()
    relay.release(a)
    c = relay.allocate("lan", address, port, port + 5)  # wraps around to the start
    assert c.rtp_port == port
    d = relay.allocate("lan", address, port, port + 5)  # the pair released last is reused last
    assert d.rtp_port == port + 2
    assert len({a.anchor_id, b.anchor_id, c.anchor_id, d.anchor_id}) == 4


def test_release_closes_ports(relay: UserspaceRelay, socks: list[socket.socket], ports: tuple[int, int]) -> None:
    anchor = relay.allocate("lan", ipaddress.ip_address(LAN_ANCHOR), *ports)
    with pytest.raises(OSError):
        udp(socks, LAN_ANCHOR, anchor.rtp_port)
    relay.release(anchor)
    relay.release(anchor)  # twice: harmless
    udp(socks, LAN_ANCHOR, anchor.rtp_port)
    udp(socks, LAN_ANCHOR, anchor.rtcp_port)
    with pytest.raises(KeyError):
        relay.stats(anchor)
    assert relay.totals().anchors == 0


def test_close_releases_everything(loop: asyncio.AbstractEventLoop, socks: list[socket.socket]) -> None:
    relay = UserspaceRelay(loop)
    port = free_ports(LAN_ANCHOR)
    anchor = relay.allocate("lan", ipaddress.ip_address(LAN_ANCHOR), port, port + 1)
    relay.close()
    udp(socks, LAN_ANCHOR, anchor.rtp_port)
    with pytest.raises(RuntimeError):
        relay.allocate("lan", ipaddress.ip_address(LAN_ANCHOR), port, port + 1)


def test_default_loop_is_the_running_one() -> None:
    async def main() -> None:
        relay = UserspaceRelay()
        relay.close()

    asyncio.run(main())
    with pytest.raises(RuntimeError):
        UserspaceRelay()


# --- IPv6 -------------------------------------------------------------------------------------------


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no ::1 in this kernel/namespace")
def test_ipv6_relay_with_traffic_class(
    relay: UserspaceRelay, loop: asyncio.AbstractEventLoop, socks: list[socket.socket], ports: tuple[int, int]
) -> None:
    v6 = ipaddress.ip_address("::1")
    phone = udp(socks, "::1")
    peer = udp(socks, "::1")
    spoof = udp(socks, "::1")
    lan = relay.allocate("lan", v6, *ports)
    wan = relay.allocate("wan", v6, *ports)
    assert lan.rtp_port != wan.rtp_port
    relay.program(lan, LegProgram(remote_rtp=ep(phone), dscp=EF))
    relay.program(wan, LegProgram(remote_rtp=ep(peer), dscp=EF))
    relay.connect(lan, wan)
    peer.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVTCLASS, 1)
    spoof.sendto(rtp(9, ssrc=9), ("::1", lan.rtp_port))
    phone.sendto(rtp(1), ("::1", lan.rtp_port))
    assert recv_tos(loop, peer, v6=True) == (rtp(1), EF << 2)
    peer.sendto(rtp(2, ssrc=2), ("::1", wan.rtp_port))
    assert receive(loop, phone, 1) == [(rtp(2, ssrc=2), ("::1", lan.rtp_port))]
    stats = relay.stats(lan)
    assert (stats.packets_in, stats.dropped_spoofed, stats.latched_source) == (1, 1, ep(phone))


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no ::1 in this kernel/namespace")
def test_ipv4_lan_to_ipv6_wan(
    relay: UserspaceRelay, loop: asyncio.AbstractEventLoop, socks: list[socket.socket], ports: tuple[int, int]
) -> None:
    phone = udp(socks, LAN_PHONE)
    peer = udp(socks, "::1")
    lan = relay.allocate("lan", ipaddress.ip_address(LAN_ANCHOR), *ports)
    wan = relay.allocate("wan", ipaddress.ip_address("::1"), *ports)
    relay.program(lan, LegProgram(remote_rtp=ep(phone)))
    relay.program(wan, LegProgram(remote_rtp=ep(peer)))
    relay.connect(lan, wan)
    phone.sendto(rtp(1), a_addr(lan))
    assert receive(loop, peer, 1) == [(rtp(1), ("::1", wan.rtp_port))]
    peer.sendto(rtp(2, ssrc=2), ("::1", wan.rtp_port))
    assert receive(loop, phone, 1) == [(rtp(2, ssrc=2), a_addr(lan))]
