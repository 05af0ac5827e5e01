"""The one interface between the SIP core and the media relay, whichever implementation is behind it.

Vocabulary: an *anchor* is a local UDP port pair (RTP, RTCP = RTP + 1) the SBC owns in one realm. A
*leg* is what the relay knows about the endpoint on the far side of an anchor: where its media comes
from and goes to, how to latch onto it, which DSCP to send with. Two anchors are *connected* when a
packet arriving at one is sent out of the other toward that anchor's endpoint. A normal anchored call
connects a LAN anchor with a WAN anchor; a hairpin short-circuit connects two LAN anchors.

Calls are synchronous and cheap: they update tables (a dict in userspace, BPF maps for XDP), so the
sans-IO core can call them without awaiting.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class DataplaneMode(StrEnum):
    XDP = "xdp"
    USERSPACE = "userspace"


class FallbackReason(StrEnum):
    """Why the userspace relay runs instead of XDP."""

    CHOSEN = "chosen"  # SBC_DATAPLANE=userspace
    NOT_PRIVILEGED = "not-privileged"  # neither root nor CAP_BPF + CAP_NET_ADMIN
    NO_BPF_SYSCALL = "no-bpf-syscall"  # an architecture whose bpf() syscall number is not known
    MEDIA_ON_LOOPBACK = "media-on-loopback"  # nothing to offload (the developer's default config)
    NO_BPFFS = "no-bpffs"
    NO_OBJECT = "no-object"  # the XDP object is not built and cannot be
    MISSING_TOOL = "missing-tool"
    START_FAILED = "start-failed"
    NOT_PREPARED = "not-prepared"  # the prepare step (sbc-dataplane.service) pinned nothing

    @property
    def is_failure(self) -> bool:
        """XDP was meant to run here: the userspace relay is a fallback to alarm on, not a choice or a
        property of the machine."""
        return self not in _NOT_A_FAILURE


_NOT_A_FAILURE = frozenset(
    {
        FallbackReason.CHOSEN,
        FallbackReason.NOT_PRIVILEGED,
        FallbackReason.NO_BPF_SYSCALL,
        FallbackReason.MEDIA_ON_LOOPBACK,
    }
)


@dataclass(frozen=True, slots=True)
class Fallback:
    """The userspace relay runs instead of XDP: why (`reason`, for machines) and the details (`detail`)."""

    reason: FallbackReason
    detail: str

    def __str__(self) -> str:
        return self.detail


class Latch(StrEnum):
    SDP = "sdp"  # accept media only from the address and port the SDP named
    LEARN = "learn"  # NATed endpoint: latch onto the first source seen inside the learning window


@dataclass(frozen=True, slots=True)
class Endpoint:
    address: IPAddress
    port: int

    def __str__(self) -> str:
        host = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class AnchorPort:
    anchor_id: int
    realm: str
    address: IPAddress
    rtp_port: int

    @property
    def rtcp_port(self) -> int:
        return self.rtp_port + 1


@dataclass(frozen=True, slots=True)
class LegProgram:
    """The endpoint behind an anchor, as the SDP of that side describes it."""

    remote_rtp: Endpoint | None  # None: not known yet (late offer) or on hold with 0.0.0.0
    remote_rtcp: Endpoint | None = None  # None with rtcp_mux: RTCP shares the RTP port
    rtcp_mux: bool = False
    latch: Latch = Latch.SDP
    latch_window_s: float = 2.0
    relatch: bool = False  # allow a new source mid-call (never by default: RTP bleed, hijack)
    dscp: int = 46  # DS field value for packets sent toward this endpoint
    send_enabled: bool = True  # False while this endpoint put the stream on hold (inactive/sendonly)
    clock_rate: int = 8000  # RTP clock of the codec in use, for jitter in milliseconds


@dataclass(slots=True)
class LegStats:
    """Counters of one anchor: what arrived from its endpoint and what was sent to it."""

    packets_in: int = 0
    bytes_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0
    dropped_spoofed: int = 0
    dropped_other: int = 0
    last_in_s: float | None = None  # monotonic time of the last packet from the endpoint
    latched_source: Endpoint | None = None
    rtp_expected: int = 0
    rtp_lost: int = 0
    jitter_ms: float = 0.0
    ssrc: int | None = None
    payload_type: int | None = None
    in_kernel: bool = False
    extra: dict[str, int] = field(default_factory=dict)

    @property
    def loss_fraction(self) -> float:
        return self.rtp_lost / self.rtp_expected if self.rtp_expected > 0 else 0.0


@dataclass(frozen=True, slots=True)
class DataplaneCounters:
    """Relay-wide counters: what `sbc status` shows and SNMP exports.

    `relayed_packets`/`relayed_bytes` count every packet sent on toward an endpoint, wherever it was
    relayed (the kernel fast path and the userspace slow path). `dropped` is by reason: "spoofed"
    (source is not the latched/SDP endpoint), "blocked" (source in the blocklist), "not_connected"
    (anchor not programmed or without a partner), "torn_down" (entry marked to drop), "send_error".
    `slow_path` is the userspace relay's own share, `kernel` the XDP program's raw counters (empty
    for the userspace relay); kernel counters live as long as the loaded program, across restarts of
    the SBC, the others since the relay started.
    """

    mode: DataplaneMode
    relayed_packets: int = 0
    relayed_bytes: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    slow_path: dict[str, int] = field(default_factory=dict)
    kernel: dict[str, int] = field(default_factory=dict)

    @property
    def dropped_packets(self) -> int:
        return sum(self.dropped.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "mode": self.mode.value,
            "relayed_packets": self.relayed_packets,
            "relayed_bytes": self.relayed_bytes,
            "dropped_packets": self.dropped_packets,
            "dropped": dict(self.dropped),
            "slow_path": dict(self.slow_path),
            "kernel": dict(self.kernel),
        }


class PortsExhausted(Exception):
    """No free port pair is left in the realm's media range: the call gets 503."""


class Dataplane(Protocol):
    """Implemented by `dataplane.userspace.UserspaceRelay` and `dataplane.xdp.XdpRelay`."""

    @property
    def mode(self) -> DataplaneMode: ...

    def allocate(self, realm: str, address: IPAddress, port_min: int, port_max: int) -> AnchorPort: ...

    def allocate_at(self, realm: str, address: IPAddress, rtp_port: int) -> AnchorPort:
        """Take this exact port pair again: re-adopting a live call after the control plane restarted."""
        ...

    def program(self, anchor: AnchorPort, leg: LegProgram) -> None: ...

    def connect(self, a: AnchorPort, b: AnchorPort) -> None: ...

    def disconnect(self, anchor: AnchorPort) -> None: ...

    def release(self, anchor: AnchorPort) -> None: ...

    def stats(self, anchor: AnchorPort) -> LegStats: ...

    def counters(self) -> DataplaneCounters:
        """Relay-wide counters (see `DataplaneCounters`)."""
        ...

    def close(self) -> None: ...
