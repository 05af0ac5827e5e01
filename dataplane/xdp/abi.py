"""ctypes mirrors of dataplane/include/sbc_dataplane.h.

The header is the source of truth. tests/dataplane/test_abi.py checks every size,
field offset and enum value here against the BTF of the compiled object, and the
#define constants against the preprocessor, so a change on one side only fails there.
Addresses and ports inside these structures are in network byte order.
"""

from __future__ import annotations

import ctypes
import ipaddress
import socket
from enum import IntEnum, IntFlag
from pathlib import Path
from typing import Final

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

HEADER: Final = Path(__file__).resolve().parents[1] / "include" / "sbc_dataplane.h"

PIN_DIR: Final = "/sys/fs/bpf/sbc"
PROG_PIN_NAME: Final = "prog"
PROG_NAME: Final = "sbc_relay"
MAP_SESSIONS: Final = "sbc_sessions"
MAP_BLOCKLIST: Final = "sbc_blocklist"
MAP_COUNTERS: Final = "sbc_counters"
MAP_EGRESS: Final = "sbc_egress"
MAP_CONFIG: Final = "sbc_config"
MAX_SESSIONS: Final = 65536
MAX_BLOCKED: Final = 16384
MAX_EGRESS: Final = 64
AF_INET: Final = 2
AF_INET6: Final = 10
DSCP_KEEP: Final = 0xFF
DEFAULT_CLOCK_RATE: Final = 8000
RTP_MAX_DROPOUT: Final = 3000
RTP_MAX_MISORDER: Final = 100
RTP_JITTER_SAMPLE: Final = 8

# Name in the header -> value here; the ABI test compares them with `clang -dM -E`.
DEFINES: Final[dict[str, int | str]] = {
    "SBC_PIN_DIR": PIN_DIR,
    "SBC_PROG_PIN_NAME": PROG_PIN_NAME,
    "SBC_PROG_NAME": PROG_NAME,
    "SBC_MAP_SESSIONS": MAP_SESSIONS,
    "SBC_MAP_BLOCKLIST": MAP_BLOCKLIST,
    "SBC_MAP_COUNTERS": MAP_COUNTERS,
    "SBC_MAP_EGRESS": MAP_EGRESS,
    "SBC_MAP_CONFIG": MAP_CONFIG,
    "SBC_MAX_SESSIONS": MAX_SESSIONS,
    "SBC_MAX_BLOCKED": MAX_BLOCKED,
    "SBC_MAX_EGRESS": MAX_EGRESS,
    "SBC_AF_INET": AF_INET,
    "SBC_AF_INET6": AF_INET6,
    "SBC_DSCP_KEEP": DSCP_KEEP,
    "SBC_DEFAULT_CLOCK_RATE": DEFAULT_CLOCK_RATE,
    "SBC_RTP_MAX_DROPOUT": RTP_MAX_DROPOUT,
    "SBC_RTP_MAX_MISORDER": RTP_MAX_MISORDER,
    "SBC_RTP_JITTER_SAMPLE": RTP_JITTER_SAMPLE,
}


class SessionFlag(IntFlag):
    """enum sbc_session_flag"""

    LATCHED = 1 << 0
    LATCH_ALLOWED = 1 << 1
    RTCP = 1 << 2
    DROP = 1 << 3
    DEC_TTL = 1 << 4
    RTCP_UP = 1 << 5


class Counter(IntEnum):
    """enum sbc_counter: indexes into `CounterSet.count` (one per-CPU value)."""

    RX = 0
    RELAYED = 1
    RELAYED_BYTES = 2
    TX = 3
    REDIRECTED = 4
    PASSED_UNKNOWN = 5
    PASSED_LEARNING = 6
    NOT_IP = 7
    NOT_UDP = 8
    VLAN = 9
    IP_OPTIONS = 10
    FRAGMENT = 11
    FIB_FAILED = 12
    NO_EGRESS = 13
    FAMILY_MISMATCH = 14
    TTL_EXPIRED = 15
    DROPPED_SPOOFED = 16
    DROPPED_BLOCKED = 17
    DROPPED_SESSION = 18
    MALFORMED = 19
    RTCP = 20
    MAX = 21


# C enum name -> (Python enum, prefix of its C constants); used by the ABI test.
ENUMS: Final[dict[str, tuple[type[IntEnum] | type[IntFlag], str]]] = {
    "sbc_session_flag": (SessionFlag, "SBC_F_"),
    "sbc_counter": (Counter, "SBC_CNT_"),
}


class CounterSet(ctypes.Structure):
    """struct sbc_counters: the value of the per-CPU counters map (one per CPU)."""

    _fields_ = (("count", ctypes.c_uint64 * Counter.MAX),)
    count: ctypes.Array[ctypes.c_uint64]


class Config(ctypes.Structure):
    """struct sbc_config: settings the program reads (one element)."""

    _fields_ = (
        ("blocklist_in_use", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
    )
    blocklist_in_use: int
    pad: int


def _family_of(address: IPAddress) -> int:
    return AF_INET if address.version == 4 else AF_INET6


def _packed16(address: IPAddress) -> bytes:
    """IPv4 sits in the first 4 bytes, the rest zero (the header's convention)."""
    return address.packed.ljust(16, b"\0")


class Endpoint(ctypes.Structure):
    """struct sbc_endpoint: address + UDP port, network byte order; family 0 = unset."""

    _fields_ = (
        ("addr", ctypes.c_ubyte * 16),
        ("port", ctypes.c_uint16),
        ("family", ctypes.c_uint8),
        ("pad", ctypes.c_uint8),
    )
    addr: ctypes.Array[ctypes.c_ubyte]
    port: int
    family: int
    pad: int

    @classmethod
    def of(cls, address: str | IPAddress, port: int) -> Endpoint:
        ip = ipaddress.ip_address(address)
        ep = cls(port=socket.htons(port), family=_family_of(ip))
        ctypes.memmove(ep.addr, _packed16(ip), 16)
        return ep

    def address(self) -> IPAddress | None:
        raw = bytes(self.addr)
        if self.family == AF_INET:
            return ipaddress.IPv4Address(raw[:4])
        if self.family == AF_INET6:
            return ipaddress.IPv6Address(raw)
        return None

    def host_port(self) -> int:
        return socket.ntohs(self.port)

    def __repr__(self) -> str:
        return f"Endpoint({self.address()}, {self.host_port()})"


class SessionKey(ctypes.Structure):
    """struct sbc_session_key: the SBC's anchor (local address, local port)."""

    _fields_ = (("local", Endpoint),)
    local: Endpoint

    @classmethod
    def of(cls, address: str | IPAddress, port: int) -> SessionKey:
        return cls(local=Endpoint.of(address, port))


class RtpState(ctypes.Structure):
    """struct sbc_rtp_state (RFC 3550 appendix A receiver state)."""

    _fields_ = (
        ("ssrc", ctypes.c_uint32),
        ("base_seq", ctypes.c_uint32),
        ("max_seq_ext", ctypes.c_uint32),
        ("received", ctypes.c_uint32),
        ("jitter", ctypes.c_uint32),
        ("last_transit", ctypes.c_uint32),
        ("last_seq", ctypes.c_uint16),
        ("payload_type", ctypes.c_uint8),
        ("pad", ctypes.c_uint8),
        ("bad_seq", ctypes.c_uint32),
    )
    ssrc: int
    base_seq: int
    max_seq_ext: int
    received: int
    jitter: int
    last_transit: int
    last_seq: int
    payload_type: int
    pad: int
    bad_seq: int

    def expected(self) -> int:
        """RFC 3550 A.3: extended max - base + 1 (0 before the first packet)."""
        return self.max_seq_ext - self.base_seq + 1 if self.received else 0

    def lost(self) -> int:
        """RFC 3550 A.3 cumulative loss; negative when duplicates outnumber losses."""
        return self.expected() - self.received

    def jitter_units(self) -> float:
        """Interarrival jitter in RTP timestamp units (the kernel keeps it * 16)."""
        return self.jitter / 16.0


class SessionStats(ctypes.Structure):
    """struct sbc_session_stats (written by the kernel)."""

    _fields_ = (
        ("packets", ctypes.c_uint64),
        ("bytes", ctypes.c_uint64),
        ("last_seen_ns", ctypes.c_uint64),
        ("rtcp_packets", ctypes.c_uint64),
        ("dropped", ctypes.c_uint64),
        ("rtp", RtpState),
    )
    packets: int
    bytes: int
    last_seen_ns: int
    rtcp_packets: int
    dropped: int
    rtp: RtpState


class Session(ctypes.Structure):
    """struct sbc_session: how to relay what arrives on an anchor."""

    _fields_ = (
        ("flags", ctypes.c_uint32),
        ("egress_ifindex", ctypes.c_uint32),
        ("expected_src", Endpoint),
        ("dst", Endpoint),
        ("new_src", Endpoint),
        ("src_mac", ctypes.c_ubyte * 6),
        ("dst_mac", ctypes.c_ubyte * 6),
        ("dscp", ctypes.c_uint8),
        ("pad", ctypes.c_uint8 * 3),
        ("clock_rate", ctypes.c_uint32),
        ("stats", SessionStats),
    )
    flags: int
    egress_ifindex: int
    expected_src: Endpoint
    dst: Endpoint
    new_src: Endpoint
    src_mac: ctypes.Array[ctypes.c_ubyte]
    dst_mac: ctypes.Array[ctypes.c_ubyte]
    dscp: int
    pad: ctypes.Array[ctypes.c_uint8]
    clock_rate: int
    stats: SessionStats

    def set_macs(self, src_mac: str | bytes, dst_mac: str | bytes) -> None:
        """MACs as b'\\x..' * 6 or 'aa:bb:..'; leave both unset for bpf_fib_lookup."""
        ctypes.memmove(self.src_mac, mac_bytes(src_mac), 6)
        ctypes.memmove(self.dst_mac, mac_bytes(dst_mac), 6)


class BlockKey(ctypes.Structure):
    """struct sbc_block_key: a blocked source address."""

    _fields_ = (
        ("addr", ctypes.c_ubyte * 16),
        ("family", ctypes.c_uint8),
        ("pad", ctypes.c_uint8 * 3),
    )
    addr: ctypes.Array[ctypes.c_ubyte]
    family: int
    pad: ctypes.Array[ctypes.c_uint8]

    @classmethod
    def of(cls, address: str | IPAddress) -> BlockKey:
        ip = ipaddress.ip_address(address)
        key = cls(family=_family_of(ip))
        ctypes.memmove(key.addr, _packed16(ip), 16)
        return key


class Block(ctypes.Structure):
    """struct sbc_block"""

    _fields_ = (
        ("expires_ns", ctypes.c_uint64),
        ("drops", ctypes.c_uint64),
    )
    expires_ns: int
    drops: int


# C struct name -> mirror; used by the ABI test.
STRUCTS: Final[dict[str, type[ctypes.Structure]]] = {
    "sbc_counters": CounterSet,
    "sbc_config": Config,
    "sbc_endpoint": Endpoint,
    "sbc_session_key": SessionKey,
    "sbc_rtp_state": RtpState,
    "sbc_session_stats": SessionStats,
    "sbc_session": Session,
    "sbc_block_key": BlockKey,
    "sbc_block": Block,
}


def mac_bytes(mac: str | bytes) -> bytes:
    raw = mac if isinstance(mac, bytes) else bytes.fromhex(mac.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return raw
