"""RTP quality measurements: loss, jitter, MOS estimate and one-way audio detection.

Pure computation, no I/O: the userspace relay feeds `RtpStatistics` with every RTP packet it accepts,
the management side turns the numbers into a MOS estimate and one-way-audio alarms.

References: RFC 3550 §5.1 (header), A.1 (sequence number bookkeeping), A.3 (expected/lost), A.8
(interarrival jitter); RFC 5761 §4 (telling RTP from RTCP on a shared port); ITU-T G.107 (E-model),
G.113 (equipment impairment factors).
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from dataplane.api import LegStats

__all__ = [
    "CLOCK_RATES",
    "CODEC_IMPAIRMENTS",
    "MediaFlow",
    "OneWayAudioDetector",
    "Packet",
    "RtpStatistics",
    "clock_rate_for",
    "estimate_mos",
    "is_rtcp",
]

RTP_SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000  # RFC 3550 A.1: a forward jump larger than this is a restart (or garbage)
MAX_MISORDER = 100  # RFC 3550 A.1: a backward jump up to this is a late (reordered) packet
_DUP_WINDOW = 128  # how many recent sequence numbers are remembered to recognise duplicates
_DUP_MASK = (1 << _DUP_WINDOW) - 1
RTP_HEADER_LEN = 12

Packet = bytes | bytearray | memoryview
_HEADER = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, sequence number, timestamp, SSRC


def _static_clock_rates() -> tuple[int, ...]:
    """RFC 3551 table 4/5 for the static payload types; dynamic and unassigned ones default to 8000."""
    rates = [8000] * 128
    for pt in (6,):
        rates[pt] = 16000  # DVI4/16000
    for pt in (10, 11):
        rates[pt] = 44100  # L16
    rates[16] = 11025  # DVI4/11025
    rates[17] = 22050  # DVI4/22050
    for pt in (14, 25, 26, 28, 31, 32, 33, 34):
        rates[pt] = 90000  # MPA and video
    # PT 9 (G.722) stays 8000: RFC 3551 §4.5.2 keeps the RTP clock at 8000 for historical reasons.
    return tuple(rates)


CLOCK_RATES = _static_clock_rates()  # indexed by payload type (0-127)


def clock_rate_for(payload_type: int) -> int:
    """RTP timestamp clock rate of a payload type: 8000 for 0/8/9/18, the RFC 3551 value for the other
    static types, 8000 for dynamic types (96-127) unless the caller knows better from `a=rtpmap`."""
    return CLOCK_RATES[payload_type & 0x7F]


def is_rtcp(packet: Packet) -> bool:
    """RFC 5761 §4 demultiplexing: the second octet of RTCP is its packet type, 192-223 (SR 200, RR 201,
    SDES 202, BYE 203, APP 204, RTPFB 205, PSFB 206, ...). RTP payload types 64-95 are not allowed on
    a muxed port, so an RTP packet never has the marker+PT octet in that range."""
    return len(packet) >= 2 and 192 <= packet[1] <= 223


class RtpStatistics:
    """Receive statistics of one RTP source, RFC 3550 A.1/A.3/A.8 (probation skipped).

    A new SSRC restarts all statistics (the endpoint restarted its stream, or a new endpoint took the
    port). Duplicates within the last 128 sequence numbers are recognised and neither counted as
    received nor used for jitter, so they cannot hide loss; `duplicates` counts them. A late packet
    that is older than the first one seen extends the base, so reordering at the start of a stream is
    not counted as loss either.
    """

    __slots__ = (
        "_bad_seq",
        "_base_ext",
        "_clock_rate",
        "_cycles",
        "_jitter",
        "_max_seq",
        "_prev_arrival_ts",
        "_prev_rtp_ts",
        "_seen",
        "duplicates",
        "invalid",
        "packets",
        "payload_type",
        "received",
        "ssrc",
        "ssrc_changes",
    )

    def __init__(self) -> None:
        self.ssrc: int | None = None
        self.payload_type: int | None = None
        self.packets = 0  # every valid RTP packet observed, duplicates included, across SSRCs
        self.invalid = 0  # too short, wrong version: not RTP
        self.ssrc_changes = 0
        self._clock_rate = 8000
        self._reset_source()

    def _reset_source(self) -> None:
        self.received = 0
        self.duplicates = 0
        self._max_seq = 0
        self._cycles = 0
        self._base_ext = 0
        self._bad_seq = RTP_SEQ_MOD + 1
        self._seen = 0  # bit i set: extended seq (ext_max - i) was received
        self._jitter = 0.0
        self._prev_arrival_ts: float | None = None
        self._prev_rtp_ts = 0

    def _init_seq(self, seq: int) -> None:
        self._max_seq = seq
        self._cycles = 0
        self._base_ext = seq
        self._bad_seq = RTP_SEQ_MOD + 1
        self._seen = 1
        self.received = 0  # `observe` counts the packet that (re)started the sequence

    # -- feeding ------------------------------------------------------------------------------------

    def observe(self, packet: Packet, arrival_s: float, clock_rate: int = 8000) -> bool:
        """Account one packet that arrived at `arrival_s` (seconds, monotonic). Returns False when the
        packet was not counted: not RTP v2, RTCP, too short, a duplicate, or a wild sequence jump."""
        n = len(packet)
        if n < RTP_HEADER_LEN:
            self.invalid += 1
            return False
        b0, b1, seq, rtp_ts, ssrc = _HEADER.unpack_from(packet)
        if b0 >> 6 != 2 or n < RTP_HEADER_LEN + 4 * (b0 & 0x0F):
            self.invalid += 1
            return False
        if 192 <= b1 <= 223:  # RTCP on a muxed port (RFC 5761), not ours to count
            return False
        self.packets += 1
        self.payload_type = b1 & 0x7F

        if ssrc != self.ssrc:
            if self.ssrc is not None:
                self.ssrc_changes += 1
            self.ssrc = ssrc
            self._reset_source()
            self._init_seq(seq)
        else:
            max_seq = self._max_seq
            udelta = (seq - max_seq) & 0xFFFF
            if 0 < udelta < MAX_DROPOUT:  # the common case, inlined: in order, possibly after a gap
                if seq < max_seq:
                    self._cycles += RTP_SEQ_MOD  # sequence number wrapped
                self._max_seq = seq
                self._seen = ((self._seen << udelta) | 1) & _DUP_MASK
            elif not self._update_seq(seq):
                return False
        self.received += 1

        # RFC 3550 A.8: J += (|D(i-1,i)| - J) / 16, D in timestamp units; the timestamp difference is
        # taken modulo 2^32 as a signed value, so a timestamp wrap is not a jump.
        arrival_ts = arrival_s * clock_rate
        prev = self._prev_arrival_ts
        if prev is not None and clock_rate == self._clock_rate:
            ts_delta = (rtp_ts - self._prev_rtp_ts) & 0xFFFFFFFF
            if ts_delta >= 0x80000000:
                ts_delta -= 0x100000000
            d = arrival_ts - prev - ts_delta
            self._jitter += ((d if d >= 0 else -d) - self._jitter) * 0.0625
        elif clock_rate != self._clock_rate:
            self._jitter = 0.0  # the codec changed to one with another clock: start over
            self._clock_rate = clock_rate
        self._prev_arrival_ts = arrival_ts
        self._prev_rtp_ts = rtp_ts
        return True

    def _update_seq(self, seq: int) -> bool:
        """RFC 3550 A.1 `update_seq` plus duplicate detection; True when the packet counts as received."""
        udelta = (seq - self._max_seq) & 0xFFFF  # the in-order case was handled in `observe`
        if udelta == 0:
            self.duplicates += 1
            return False
        if udelta < MAX_DROPOUT:
            # in order, possibly with a gap
            if seq < self._max_seq:
                self._cycles += RTP_SEQ_MOD  # sequence number wrapped
            self._max_seq = seq
            self._seen = ((self._seen << udelta) | 1) & _DUP_MASK
            return True
        if udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            # a very large jump: two sequential packets mean the source restarted without a new SSRC
            if seq == self._bad_seq:
                self._init_seq(seq)
                return True
            self._bad_seq = (seq + 1) & 0xFFFF
            return False
        # late (reordered) or duplicate packet, at most MAX_MISORDER behind
        back = RTP_SEQ_MOD - udelta
        if back < _DUP_WINDOW:
            bit = 1 << back
            if self._seen & bit:
                self.duplicates += 1
                return False
            self._seen |= bit
        ext = self._cycles + self._max_seq - back
        if ext < self._base_ext:
            self._base_ext = ext  # older than the first packet we saw: it belongs to the stream
        return True

    # -- results ------------------------------------------------------------------------------------

    @property
    def extended_max_seq(self) -> int:
        return self._cycles + self._max_seq

    @property
    def expected(self) -> int:
        if self.received == 0:
            return 0
        return self.extended_max_seq - self._base_ext + 1

    @property
    def lost(self) -> int:
        """Cumulative packets lost (RFC 3550 A.3), clamped at 0 (duplicates are already excluded)."""
        return max(0, self.expected - self.received)

    @property
    def loss_fraction(self) -> float:
        expected = self.expected
        return self.lost / expected if expected > 0 else 0.0

    @property
    def jitter_ts(self) -> float:
        """Interarrival jitter in RTP timestamp units (what RTCP reports carry, rounded)."""
        return self._jitter

    @property
    def jitter_ms(self) -> float:
        return self._jitter * 1000.0 / self._clock_rate

    @property
    def clock_rate(self) -> int:
        return self._clock_rate


# --- MOS -------------------------------------------------------------------------------------------

# Equipment impairment factor Ie and packet-loss robustness Bpl (ITU-T G.113 Appendix I). G.711 uses
# the values without packet loss concealment (Bpl 4.3), a conservative choice for arbitrary phones.
CODEC_IMPAIRMENTS: dict[str, tuple[float, float]] = {
    "G.711": (0.0, 4.3),
    "PCMU": (0.0, 4.3),
    "PCMA": (0.0, 4.3),
    "G.729": (11.0, 19.0),
    "G.729A": (11.0, 19.0),
    "G729": (11.0, 19.0),
}


def estimate_mos(loss_fraction: float, jitter_ms: float, one_way_delay_ms: float = 20.0, codec: str = "G.711") -> float:
    """Estimated listening MOS (1.0-4.5) of a stream, from a simplified ITU-T G.107 E-model.

    Simplifications: R0 - Is is the G.107 default 93.2 (no noise, loudness or echo terms, A = 0);
    the delay impairment Id uses the common Cole-Rosenbluth approximation
    `Id = 0.024 d + 0.11 (d - 177.3) H(d - 177.3)` where the mouth-to-ear delay `d` is the one-way
    network delay plus a jitter buffer of twice the jitter; loss is taken as random (BurstR = 1), so
    `Ie_eff = Ie + (95 - Ie) * Ppl / (Ppl + Bpl)` with Ppl in percent. Unknown codecs are rated as
    G.711. MOS = 1 + 0.035 R + R (R - 60) (100 - R) 7e-6, clamped to [1, 4.5].
    """
    ie, bpl = CODEC_IMPAIRMENTS.get(codec.upper(), CODEC_IMPAIRMENTS["G.711"])
    ppl = min(max(loss_fraction, 0.0), 1.0) * 100.0
    d = max(one_way_delay_ms, 0.0) + 2.0 * max(jitter_ms, 0.0)
    i_d = 0.024 * d + (0.11 * (d - 177.3) if d > 177.3 else 0.0)
    ie_eff = ie + (95.0 - ie) * ppl / (ppl + bpl)
    r = 93.2 - i_d - ie_eff
    if r <= 0.0:
        return 1.0
    if r >= 100.0:
        return 4.5
    mos = 1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6
    return min(max(mos, 1.0), 4.5)


# --- one-way audio ---------------------------------------------------------------------------------


class MediaFlow(StrEnum):
    UNKNOWN = "unknown"  # less than one window of history yet
    BOTH = "both"
    NONE = "none"  # nothing either way (both on hold, or the call's media is dead)
    A_ONLY = "a_only"  # media arrives from A's endpoint only: B's endpoint has sent nothing (one-way)
    B_ONLY = "b_only"

    @property
    def one_way(self) -> bool:
        return self in (MediaFlow.A_ONLY, MediaFlow.B_ONLY)


@dataclass(frozen=True, slots=True)
class _Sample:
    t: float
    a: int
    b: int


class OneWayAudioDetector:
    """Flags one-way audio: over the last `window_s` seconds packets arrived from one leg's endpoint and
    none from the other's.

    Fed periodically (e.g. every second) with the `packets_in` counters of the two anchors of a call
    (what each endpoint sent to the SBC). The verdict compares the newest sample with the newest one at
    least `window_s` old, so it does not depend on the polling rate. A counter that went backwards (the
    anchor was re-allocated) restarts the history. Caveat: an endpoint with silence suppression and no
    comfort noise looks one-way while its user is silent; `min_packets` only filters stray packets.
    """

    def __init__(self, window_s: float = 5.0, min_packets: int = 1) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self.window_s = window_s
        self.min_packets = min_packets
        self._samples: deque[_Sample] = deque()
        self.flow = MediaFlow.UNKNOWN

    def observe(self, now: float, a_packets_in: int, b_packets_in: int) -> MediaFlow:
        samples = self._samples
        if samples and (a_packets_in < samples[-1].a or b_packets_in < samples[-1].b or now < samples[-1].t):
            samples.clear()
        samples.append(_Sample(now, a_packets_in, b_packets_in))
        horizon = now - self.window_s
        # keep exactly one sample at or before the horizon: the baseline
        while len(samples) >= 2 and samples[1].t <= horizon:
            samples.popleft()
        base = samples[0]
        if base.t > horizon:
            self.flow = MediaFlow.UNKNOWN
            return self.flow
        da = a_packets_in - base.a
        db = b_packets_in - base.b
        a_flows = da >= self.min_packets
        b_flows = db >= self.min_packets
        if a_flows and b_flows:
            self.flow = MediaFlow.BOTH
        elif a_flows and db == 0:
            self.flow = MediaFlow.A_ONLY
        elif b_flows and da == 0:
            self.flow = MediaFlow.B_ONLY
        elif da == 0 and db == 0:
            self.flow = MediaFlow.NONE
        else:
            self.flow = MediaFlow.BOTH  # a trickle below min_packets on one side: not called one-way
        return self.flow

    def observe_stats(self, now: float, a: LegStats, b: LegStats) -> MediaFlow:
        return self.observe(now, a.packets_in, b.packets_in)

    @property
    def one_way(self) -> bool:
        return self.flow.one_way
