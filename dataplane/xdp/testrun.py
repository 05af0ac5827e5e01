"""Run the relay on packets through BPF_PROG_TEST_RUN, and measure its cost per packet.

Caveat (kernel behaviour): with repeat > 1 every run after the first sees the packet
the previous run rewrote. A cost measured on an ordinary session therefore times one
relay and repeat-1 slow-path verdicts (the rewritten packet matches no anchor). For a
fair number, `fixed_point_session` installs an entry that rewrites a packet into
itself (anchor = expected source = destination = new source), so every run takes
the full relay path: lookup, source check, rewrite, checksum update, RTP statistics.
Its checksum deltas are zero, which costs the same instructions as any other delta.
"""

from __future__ import annotations

import socket
import statistics
import struct
from dataclasses import dataclass

from dataplane.xdp import abi, bpfsys
from dataplane.xdp.bpfsys import BpfFd, TestRun

XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = range(5)

# The ingress device of BPF_PROG_TEST_RUN without a context is the loopback of the
# caller's network namespace, so an entry egressing on ifindex 1 answers XDP_TX.
TEST_RUN_IFINDEX = 1
# MACs of the fixed-point entry, and the defaults of ipv4_udp_frame, so they match.
SRC_MAC = "02:00:00:00:00:01"
DST_MAC = "02:00:00:00:00:02"


@dataclass(frozen=True, slots=True)
class RunCost:
    """ns per packet over several rounds of `repeat` runs (the kernel averages each round)."""

    repeat: int
    rounds: tuple[int, ...]
    retval: int

    @property
    def best_ns(self) -> int:
        return min(self.rounds)

    @property
    def median_ns(self) -> float:
        return float(statistics.median(self.rounds))


def run_packet(prog: BpfFd, frame: bytes) -> TestRun:
    """One packet in, verdict and packet out (repeat=1: see the module caveat)."""
    return bpfsys.prog_test_run(prog, frame, repeat=1)


def measure(prog: BpfFd, frame: bytes, *, repeat: int = 100_000, rounds: int = 5) -> RunCost:
    """Cost of the program per packet; bounded: rounds * repeat runs in total."""
    durations = []
    retval = -1
    for _ in range(rounds):
        result = bpfsys.prog_test_run(prog, frame, repeat=repeat)
        durations.append(result.duration_ns)
        retval = result.retval
    return RunCost(repeat=repeat, rounds=tuple(durations), retval=retval)


def fixed_point_session(address: str, port: int, *, dscp: int = abi.DSCP_KEEP) -> tuple[abi.SessionKey, abi.Session]:
    """An entry under which a packet address:port -> address:port relays onto itself."""
    key = abi.SessionKey.of(address, port)
    session = abi.Session(
        flags=abi.SessionFlag.LATCHED,
        egress_ifindex=TEST_RUN_IFINDEX,
        expected_src=abi.Endpoint.of(address, port),
        dst=abi.Endpoint.of(address, port),
        new_src=abi.Endpoint.of(address, port),
        dscp=dscp,
    )
    session.set_macs(SRC_MAC, DST_MAC)
    return key, session


def _csum(data: bytes) -> int:
    """RFC 1071 Internet checksum."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def ipv4_udp_frame(
    src: str,
    sport: int,
    dst: str,
    dport: int,
    payload: bytes,
    *,
    src_mac: str = SRC_MAC,
    dst_mac: str = DST_MAC,
    tos: int = 0,
    ttl: int = 64,
) -> bytes:
    """Ethernet/IPv4/UDP frame with correct checksums, for benchmarks without scapy."""
    saddr, daddr = socket.inet_aton(src), socket.inet_aton(dst)
    udp_len = 8 + len(payload)
    pseudo = saddr + daddr + struct.pack("!BBH", 0, socket.IPPROTO_UDP, udp_len)
    udp = struct.pack("!HHHH", sport, dport, udp_len, 0) + payload
    udp_sum = _csum(pseudo + udp) or 0xFFFF  # RFC 768: a computed 0 is sent as all ones
    udp = udp[:6] + struct.pack("!H", udp_sum) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + udp_len, 0, 0x4000, ttl, socket.IPPROTO_UDP, 0, saddr, daddr)
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    eth = abi.mac_bytes(dst_mac) + abi.mac_bytes(src_mac) + struct.pack("!H", 0x0800)
    return eth + ip + udp


def rtp_payload(seq: int, timestamp: int = 0, ssrc: int = 0x5BC0FFEE, payload_type: int = 0, size: int = 160) -> bytes:
    """RTP v2 fixed header (RFC 3550 section 5.1) and `size` bytes of silence."""
    return struct.pack("!BBHII", 0x80, payload_type & 0x7F, seq & 0xFFFF, timestamp, ssrc) + b"\xff" * size
