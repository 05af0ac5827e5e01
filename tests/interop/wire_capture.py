"""What crossed the wire around the SBC: a dumpcap capture on loopback limited to this run's 127.N/16.

The WAN side is every packet to or from 127.N.2.0/24 (the SBC's WAN address, the PBX, the WAN
phone), so the topology-hiding check sees SIP headers, SDP bodies, RTP and RTCP alike: an inside
address (127.N.1.x) written anywhere in such a payload is a leak. The LAN side's packets are kept
too: what the SBC sent to each phone is the audio the phone was given. The pcap file is read here (IPv4 over the
Ethernet or Linux-cooked link types loopback captures use); SIP over TCP is taken one segment per
message, which holds on loopback (a 64 KiB MTU).
"""

from __future__ import annotations

import re
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.processes import stop_process


@dataclass(frozen=True)
class Packet:
    time: float
    src: str
    sport: int
    dst: str
    dport: int
    transport: str  # "udp" or "tcp"
    payload: bytes

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", "replace")

    @property
    def is_sip(self) -> bool:
        return self.payload.startswith(b"SIP/2.0 ") or bool(re.match(rb"[A-Z]+ sip:\S+ SIP/2\.0\r\n", self.payload))

    def __str__(self) -> str:
        return f"{self.transport} {self.src}:{self.sport} -> {self.dst}:{self.dport}"


def _ipv4(time: float, data: bytes) -> Packet | None:
    if len(data) < 20 or data[0] >> 4 != 4:
        return None
    header_len = (data[0] & 0x0F) * 4
    total = struct.unpack("!H", data[2:4])[0]
    proto = data[9]
    src = ".".join(str(b) for b in data[12:16])
    dst = ".".join(str(b) for b in data[16:20])
    segment = data[header_len:total]
    if proto == 17 and len(segment) >= 8:
        sport, dport = struct.unpack("!HH", segment[:4])
        return Packet(time, src, sport, dst, dport, "udp", segment[8:])
    if proto == 6 and len(segment) >= 20:
        sport, dport = struct.unpack("!HH", segment[:4])
        return Packet(time, src, sport, dst, dport, "tcp", segment[(segment[12] >> 4) * 4 :])
    return None


def read_pcap(path: Path) -> Iterator[Packet]:
    data = path.read_bytes()
    if len(data) < 24:
        return
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    link_type = struct.unpack(endian + "I", data[20:24])[0]
    link_header = {1: 14, 113: 16, 228: 0}.get(link_type)
    if link_header is None:
        raise ValueError(f"{path}: link type {link_type} not handled")
    offset = 24
    while offset + 16 <= len(data):
        seconds, micros, captured = struct.unpack(endian + "III", data[offset : offset + 12])
        frame = data[offset + 16 : offset + 16 + captured]
        offset += 16 + captured
        if link_type == 1 and frame[12:14] != b"\x08\x00":
            continue
        if link_type == 113 and frame[14:16] != b"\x08\x00":
            continue
        packet = _ipv4(seconds + micros / 1e6, frame[link_header:])
        if packet is not None and packet.payload:
            yield packet


@dataclass
class Capture:
    network: str  # e.g. 127.15.0.0/16
    path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> Capture:
        errors = self.path.with_suffix(".err")
        self.proc = subprocess.Popen(
            ["dumpcap", "-i", "lo", "-f", f"net {self.network}", "-P", "-w", str(self.path)],
            stdout=subprocess.DEVNULL, stderr=errors.open("wb"), stdin=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while "Capturing on" not in errors.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dumpcap did not start: {errors.read_text(errors='replace')}")
            time.sleep(0.05)
        time.sleep(0.5)  # "Capturing on" comes a little before the filter sees the first packets
        return self

    def stop(self, timeout: float = 5.0) -> list[Packet]:
        """Stop once everything sent so far is in the file: dumpcap hands packets over in blocks, so
        a last datagram (the sentinel, to an address of the network nobody uses) is awaited first."""
        if self.proc is not None and self.proc.poll() is None:
            sentinel = f"capture-sentinel-{time.monotonic_ns()}".encode()
            host = self.network.split("/")[0].rsplit(".", 2)[0] + ".0.254"
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                deadline = time.monotonic() + timeout
                sock.sendto(sentinel, (host, 9))
                while sentinel not in self.path.read_bytes() and time.monotonic() < deadline:
                    time.sleep(0.05)
            stop_process(self.proc)
        if not self.path.exists():
            return []
        return [p for p in read_pcap(self.path) if not p.payload.startswith(b"capture-sentinel-")]


def on_network(packets: list[Packet], prefix: str) -> list[Packet]:
    """The packets from or to addresses starting with `prefix` (e.g. the WAN side's `127.15.2.`)."""
    return [p for p in packets if p.src.startswith(prefix) or p.dst.startswith(prefix)]


def sip_messages(packets: list[Packet]) -> list[Packet]:
    return [p for p in packets if p.is_sip]


def first_line(packet: Packet) -> str:
    return packet.text.split("\r\n", 1)[0]


def leaks(packets: list[Packet], inside_prefix: str) -> list[str]:
    """Each packet whose payload carries an inside address, with the text around the address."""
    pattern = re.compile(re.escape(inside_prefix.encode()) + rb"\d{1,3}")
    found = []
    for packet in packets:
        match = pattern.search(packet.payload)
        if match is not None:
            around = packet.payload[max(0, match.start() - 60) : match.end() + 20].decode("ascii", "backslashreplace")
            found.append(f"{packet} ({'SIP' if packet.is_sip else 'media'}): ...{around}...")
    return found
