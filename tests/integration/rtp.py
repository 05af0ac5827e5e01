"""RTP for the media tests: pcaps that SIPp plays (`play_pcap_audio`), and a tap that sees what arrives.

`write_rtp_pcap` writes a stream whose every packet is known: sequence numbers, timestamps, SSRC,
payload type, gaps (to make loss) and interleaved RTCP. SIPp sends each UDP payload from its media
port (RTP) or media port + 1 (a packet whose destination port is one above the lowest of the pcap) to
the address and port of the SDP it received, paced by the pcap's timestamps.

`RtpTap` is a raw IPv4 socket (root): Linux hands it a copy of every UDP datagram delivered on this
host, whether or not a socket is bound to the destination port, with the IP header, so it sees the
DS field too. SIPp binds its media ports but does not read them unless it echoes, so the tap is how a
test counts what reached a SIPp endpoint.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

RTP_HEADER = struct.Struct("!BBHII")
PCAP_SRC = "198.18.0.1"  # addresses inside the pcap only; SIPp replaces them when it plays
PCAP_DST = "198.18.0.2"
PCAP_BASE_PORT = 6000


@dataclass(frozen=True, slots=True)
class RtpStream:
    """What one pcap carries. Packet i has sequence `first_seq + i` and timestamp `first_ts + i * samples`;
    the packets for which `drop(i)` holds are left out (loss). RTCP: a sender report after every
    `rtcp_every`-th RTP packet, on the RTCP port (RTP port + 1) or, with `rtcp_mux`, on the RTP port."""

    count: int
    ssrc: int
    payload_type: int = 0
    first_seq: int = 1000
    first_ts: int = 160_000
    ptime_ms: int = 20
    payload_size: int = 160
    drop_every: int | None = None  # leave out packet i when i % drop_every == drop_every // 2
    rtcp_every: int | None = None
    rtcp_mux: bool = False
    clock_rate: int = 8000
    port_offset: int = 0  # 2: the second stream of a pcap, played to the SDP's port + 2 (see write_rtp_pcap)
    cname: bytes | None = None  # given: each sender report is followed by an SDES with this CNAME (§6.5.1)

    def dropped(self, i: int) -> bool:
        return self.drop_every is not None and i % self.drop_every == self.drop_every // 2

    @property
    def sent_sequences(self) -> list[int]:
        return [(self.first_seq + i) & 0xFFFF for i in range(self.count) if not self.dropped(i)]

    @property
    def sent(self) -> int:
        return len(self.sent_sequences)

    @property
    def lost(self) -> int:
        return self.count - self.sent

    @property
    def rtcp_sent(self) -> int:
        return 0 if not self.rtcp_every else self.count // self.rtcp_every

    @property
    def duration_s(self) -> float:
        return self.count * self.ptime_ms / 1000

    def rtp_packet(self, i: int) -> bytes:
        samples = self.clock_rate * self.ptime_ms // 1000
        header = RTP_HEADER.pack(
            0x80,
            self.payload_type | (0x80 if i == 0 else 0),  # marker on the first packet of a talkspurt
            (self.first_seq + i) & 0xFFFF,
            (self.first_ts + i * samples) & 0xFFFFFFFF,
            self.ssrc,
        )
        # A payload that names its packet, so a test can tell the relay did not touch it.
        body = struct.pack("!I", i) + bytes((i + k) & 0xFF for k in range(self.payload_size - 4))
        return header + body

    def rtcp_packet(self, i: int) -> bytes:
        """An RTCP sender report (RFC 3550 §6.4.1) without report blocks: 28 bytes (and an SDES with
        `cname`, when given)."""
        samples = self.clock_rate * self.ptime_ms // 1000
        sent = sum(1 for k in range(i + 1) if not self.dropped(k))
        report = struct.pack(
            "!BBHIIIIII",
            0x80,
            200,
            6,
            self.ssrc,
            0x83AA7E80 + i,  # NTP seconds: any value, it only has to be well formed
            0,
            (self.first_ts + i * samples) & 0xFFFFFFFF,
            sent,
            sent * self.payload_size,
        )
        return report + self._sdes()

    def _sdes(self) -> bytes:
        """A compound packet's SDES (RFC 3550 §6.5): the CNAME item, a null octet, padding."""
        if self.cname is None:
            return b""
        chunk = struct.pack("!I", self.ssrc) + bytes((1, len(self.cname))) + self.cname + b"\0"
        chunk += bytes(-len(chunk) % 4)
        return struct.pack("!BBH", 0x81, 202, len(chunk) // 4) + chunk


def write_rtp_pcap(path: Path, *streams: RtpStream) -> Path:
    """One pcap with every packet of `streams`, in time order.

    SIPp 3.6 plays one pcap per call at a time (a second `play_pcap_*` stops the first), so two streams
    (audio and video) that must flow together go into one file: SIPp sends each packet to the port of
    the SDP plus the packet's distance from the lowest port of the pcap, so a stream with
    `port_offset=2` reaches the port two above the audio port."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.utils import wrpcap

    start = 1_700_000_000.0
    timed: list[tuple[float, int, bytes]] = []
    for stream in streams:
        rtp_port = PCAP_BASE_PORT + stream.port_offset
        rtcp_port = rtp_port if stream.rtcp_mux else rtp_port + 1
        for i in range(stream.count):
            at = start + i * stream.ptime_ms / 1000
            if not stream.dropped(i):
                timed.append((at, rtp_port, stream.rtp_packet(i)))
            if stream.rtcp_every and (i + 1) % stream.rtcp_every == 0:
                timed.append((at + 0.001, rtcp_port, stream.rtcp_packet(i)))
    packets = []
    for at, port, payload in sorted(timed, key=lambda item: item[0]):
        p = Ether() / IP(src=PCAP_SRC, dst=PCAP_DST) / UDP(sport=port, dport=port) / Raw(payload)
        p.time = at
        packets.append(p)
    wrpcap(str(path), packets)
    return path


@dataclass(frozen=True, slots=True)
class Datagram:
    at: float  # time.monotonic() when the tap read it
    src: str
    sport: int
    dst: str
    dport: int
    tos: int
    payload: bytes

    @property
    def dscp(self) -> int:
        return self.tos >> 2

    @property
    def is_rtcp(self) -> bool:
        return len(self.payload) >= 8 and self.payload[0] >> 6 == 2 and 192 <= self.payload[1] <= 223

    @property
    def is_rtp(self) -> bool:
        return len(self.payload) >= 12 and self.payload[0] >> 6 == 2 and not self.is_rtcp

    @property
    def ssrc(self) -> int:
        return struct.unpack_from("!I", self.payload, 4 if self.is_rtcp else 8)[0]

    @property
    def seq(self) -> int:
        return struct.unpack_from("!H", self.payload, 2)[0]

    @property
    def payload_type(self) -> int:
        return self.payload[1] & 0x7F


SO_ATTACH_FILTER = 26  # <asm-generic/socket.h>; not exported by the socket module
SO_RCVBUFFORCE = 33


def _destination_filter(networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bytes:
    """A classic BPF socket filter (struct sock_fprog) accepting IPv4 packets whose destination is
    in one of `networks`. A raw IP socket's filter sees the packet from its IP header on."""
    v4 = [n for n in networks if isinstance(n, ipaddress.IPv4Network)]
    code: list[tuple[int, int, int, int]] = []
    accept = 3 * len(v4) + 1
    for i, net in enumerate(v4):
        jeq_at = 3 * i + 2
        code += [
            (0x20, 0, 0, 16),  # ld [16]: destination address
            (0x54, 0, 0, int(net.netmask)),  # and #mask
            (0x15, accept - jeq_at - 1, 0, int(net.network_address)),  # jeq #net, accept, next
        ]
    code += [(0x06, 0, 0, 0), (0x06, 0, 0, 0x40000)]  # ret 0 (drop); ret 256 KiB (keep)
    program = b"".join(struct.pack("HBBI", *insn) for insn in code)
    buffer = ctypes.create_string_buffer(program)
    _FILTERS.append(buffer)  # the kernel copies it at setsockopt; kept only so the address stays valid
    return struct.pack("HL", len(code), ctypes.addressof(buffer))


_FILTERS: list[ctypes.Array[ctypes.c_char]] = []


@dataclass
class RtpTap:
    """Collects every UDP datagram delivered to an address in `networks` while it runs (a thread).

    Datagrams to `ignore_ports` (SIP) are skipped. Bounded: it stops by itself after `max_s` seconds
    or `max_packets` datagrams."""

    networks: tuple[str, ...]
    ignore_ports: frozenset[int] = frozenset()
    max_s: float = 120.0
    max_packets: int = 200_000
    seen: list[Datagram] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _ready: threading.Event = field(default_factory=threading.Event)

    def start(self) -> RtpTap:
        nets = [ipaddress.ip_network(n) for n in self.networks]
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
        # The kernel keeps only datagrams to our networks: on a busy machine every other UDP flow
        # (other tests' SIP and RTP) would otherwise fill the buffer and this thread would miss ours.
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, _destination_filter(nets))
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
        sock.settimeout(0.2)

        def run() -> None:
            deadline = time.monotonic() + self.max_s
            self._ready.set()
            with sock:
                while not self._stop.is_set() and time.monotonic() < deadline and len(self.seen) < self.max_packets:
                    try:
                        data = sock.recv(65535)
                    except TimeoutError:
                        continue
                    now = time.monotonic()
                    ihl = (data[0] & 0x0F) * 4
                    dst = socket.inet_ntoa(data[16:20])
                    if not any(ipaddress.ip_address(dst) in n for n in nets):
                        continue
                    sport, dport = struct.unpack_from("!HH", data, ihl)
                    if dport in self.ignore_ports or sport in self.ignore_ports:
                        continue
                    src = socket.inet_ntoa(data[12:16])
                    self.seen.append(Datagram(now, src, sport, dst, dport, data[1], bytes(data[ihl + 8 :])))

        self._thread = threading.Thread(target=run, name="rtp-tap", daemon=True)
        self._thread.start()
        self._ready.wait(5)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def select(self, predicate: Callable[[Datagram], bool]) -> list[Datagram]:
        return [d for d in list(self.seen) if predicate(d)]

    def to(self, host: str, port: int | None = None) -> list[Datagram]:
        return self.select(lambda d: d.dst == host and (port is None or d.dport == port))

    def between(self, src: str, dst: str, dport: int | None = None) -> list[Datagram]:
        return self.select(lambda d: d.src == src and d.dst == dst and (dport is None or d.dport == dport))


@contextlib.contextmanager
def rtp_tap(*networks: str, ignore_ports: frozenset[int] = frozenset()) -> Iterator[RtpTap]:
    tap = RtpTap(tuple(networks), ignore_ports).start()
    try:
        yield tap
    finally:
        tap.stop()


def send_rtp(source: tuple[str, int], destination: tuple[str, int], stream: RtpStream, *, gap_s: float = 0.0) -> int:
    """Send `stream`'s RTP from `source` (a plain UDP socket, e.g. a spoofer), bounded by its count."""
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(source)
        for i in range(stream.count):
            if stream.dropped(i):
                continue
            s.sendto(stream.rtp_packet(i), destination)
            sent += 1
            if gap_s:
                time.sleep(gap_s)
    return sent
