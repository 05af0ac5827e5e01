from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.api import LegStats
from dataplane.quality import (
    MediaFlow,
    OneWayAudioDetector,
    RtpStatistics,
    clock_rate_for,
    estimate_mos,
    is_rtcp,
)


def rtp(seq: int, ts: int = 0, ssrc: int = 0x1234, pt: int = 0, payload: bytes = b"\x00" * 160) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def feed(stats: RtpStatistics, seqs: list[int], ssrc: int = 0x1234) -> None:
    for i, seq in enumerate(seqs):
        stats.observe(rtp(seq, ts=seq * 160, ssrc=ssrc), i * 0.02)


def test_in_order_stream_has_no_loss() -> None:
    s = RtpStatistics()
    feed(s, list(range(100, 150)))
    assert (s.received, s.expected, s.lost) == (50, 50, 0)
    assert s.ssrc == 0x1234
    assert s.payload_type == 0


def test_sequence_wrap_around() -> None:
    s = RtpStatistics()
    feed(s, [65533, 65534, 65535, 0, 1, 2])
    assert s.extended_max_seq == 65536 + 2
    assert (s.expected, s.received, s.lost) == (6, 6, 0)


def test_gap_counts_as_loss() -> None:
    s = RtpStatistics()
    feed(s, [1, 2, 4])
    assert (s.expected, s.received, s.lost) == (4, 3, 1)
    assert s.loss_fraction == pytest.approx(0.25)


def test_loss_across_wrap() -> None:
    s = RtpStatistics()
    feed(s, [65534, 1, 2])  # 65535 and 0 lost
    assert (s.expected, s.lost) == (5, 2)


def test_reorder_is_not_loss() -> None:
    s = RtpStatistics()
    feed(s, [1, 3, 2, 4, 6, 5])
    assert (s.expected, s.received, s.lost) == (6, 6, 0)


def test_reorder_before_first_packet_extends_base() -> None:
    s = RtpStatistics()
    feed(s, [2, 1, 3])
    assert (s.expected, s.received, s.lost) == (3, 3, 0)


def test_reorder_across_wrap() -> None:
    s = RtpStatistics()
    feed(s, [65534, 0, 65535, 1])
    assert (s.expected, s.received, s.lost) == (4, 4, 0)


def test_duplicates_do_not_hide_loss() -> None:
    s = RtpStatistics()
    feed(s, [1, 2, 2, 4, 4, 2])
    assert (s.expected, s.received, s.lost, s.duplicates) == (4, 3, 1, 3)


def test_large_jump_needs_two_sequential_packets_to_restart() -> None:
    s = RtpStatistics()
    feed(s, [10, 11, 30000])
    assert (s.received, s.expected) == (2, 2)  # the wild packet is not counted
    s.observe(rtp(30001), 1.0)
    assert (s.received, s.expected, s.lost) == (1, 1, 0)  # restarted at 30001


def test_ssrc_change_resets() -> None:
    s = RtpStatistics()
    feed(s, [1, 2, 5])
    assert s.lost == 2
    feed(s, [500, 501], ssrc=0x9999)
    assert (s.ssrc, s.expected, s.lost, s.ssrc_changes) == (0x9999, 2, 0, 1)


def test_rtcp_short_and_non_v2_packets_are_ignored() -> None:
    s = RtpStatistics()
    sr = struct.pack("!BBH", 0x80, 200, 6) + b"\x00" * 24
    assert is_rtcp(sr)
    assert not is_rtcp(rtp(1))
    assert s.observe(sr, 0.0) is False
    assert s.observe(b"\x80\x00\x00", 0.0) is False
    assert s.observe(b"\x40" + rtp(1)[1:], 0.0) is False  # version 1
    assert s.observe(bytes([0x8F]) + rtp(1)[1:20], 0.0) is False  # 15 CSRCs announced, not present
    assert s.ssrc is None and s.received == 0 and s.invalid == 3


def test_jitter_is_zero_for_a_perfectly_paced_stream() -> None:
    s = RtpStatistics()
    for i in range(500):
        s.observe(rtp(i, ts=1000 + 160 * i), 5.0 + 0.02 * i)
    assert s.jitter_ms == pytest.approx(0.0, abs=1e-6)


def test_jitter_converges_for_a_known_pattern() -> None:
    # every other packet arrives 10 ms late: |D| is 80 timestamp units (10 ms at 8 kHz) for every packet
    s = RtpStatistics()
    for i in range(400):
        s.observe(rtp(i, ts=160 * i), 0.02 * i + (0.010 if i % 2 else 0.0))
    assert s.jitter_ts == pytest.approx(80.0, rel=1e-3)
    assert s.jitter_ms == pytest.approx(10.0, rel=1e-3)


def test_jitter_ignores_constant_delay_and_timestamp_wrap() -> None:
    s = RtpStatistics()
    start_ts = 0xFFFFFFFF - 160 * 10
    for i in range(50):
        s.observe(rtp(i, ts=start_ts + 160 * i), 100.0 + 0.02 * i)
    assert s.jitter_ms == pytest.approx(0.0, abs=1e-6)


def test_jitter_uses_the_clock_rate() -> None:
    s = RtpStatistics()
    for i in range(400):  # 48 kHz: 960 units per 20 ms, 10 ms late on every other packet = 480 units
        s.observe(rtp(i, ts=960 * i, pt=111), 0.02 * i + (0.010 if i % 2 else 0.0), clock_rate=48000)
    assert s.jitter_ms == pytest.approx(10.0, rel=1e-3)
    assert s.payload_type == 111


def test_clock_rates() -> None:
    assert [clock_rate_for(pt) for pt in (0, 8, 9, 18, 96, 111)] == [8000] * 6
    assert clock_rate_for(34) == 90000


@given(
    start=st.integers(0, 65535),
    length=st.integers(2, 400),
    drops=st.sets(st.integers(1, 398), max_size=60),
)
@settings(max_examples=200, deadline=None)
def test_loss_equals_dropped_packets(start: int, length: int, drops: set[int]) -> None:
    s = RtpStatistics()
    kept = [start + i for i in range(length) if i not in drops or i == length - 1]
    feed(s, kept)
    assert s.expected == length
    assert s.lost == length - len(kept)


@given(st.randoms(use_true_random=False))
@settings(max_examples=50, deadline=None)
def test_local_shuffle_is_not_loss(rnd: object) -> None:
    import random

    assert isinstance(rnd, random.Random)
    seqs = list(range(65500, 65500 + 200))
    for i in range(0, len(seqs), 8):  # reorder within blocks of 8
        block = seqs[i : i + 8]
        rnd.shuffle(block)
        seqs[i : i + 8] = block
    s = RtpStatistics()
    feed(s, seqs)
    assert (s.expected, s.received, s.lost) == (200, 200, 0)


# --- MOS --------------------------------------------------------------------------------------------


def test_mos_without_loss_is_about_4_4() -> None:
    assert estimate_mos(0.0, 0.0) == pytest.approx(4.4, abs=0.05)


def test_mos_drops_as_loss_grows() -> None:
    m0, m1, m5, m20 = (estimate_mos(p, 5.0) for p in (0.0, 0.01, 0.05, 0.20))
    assert m0 > m1 > m5 > m20 >= 1.0
    assert 3.5 < m1 < 4.0
    assert m5 < 2.6
    assert m20 < 1.5


def test_mos_drops_with_delay_and_jitter_and_codec() -> None:
    assert estimate_mos(0.0, 0.0, one_way_delay_ms=300) < estimate_mos(0.0, 0.0, one_way_delay_ms=100)
    assert estimate_mos(0.0, 60.0) < estimate_mos(0.0, 5.0)
    assert estimate_mos(0.0, 0.0, codec="G.729") < estimate_mos(0.0, 0.0, codec="G.711")
    assert estimate_mos(0.05, 0.0, codec="G.729") > estimate_mos(0.05, 0.0, codec="G.711")  # Bpl 19 vs 4.3


def test_mos_is_clamped() -> None:
    assert estimate_mos(1.0, 500.0, one_way_delay_ms=2000) == 1.0
    assert estimate_mos(-1.0, -5.0, one_way_delay_ms=-3) <= 4.5
    assert estimate_mos(0.0, 0.0, codec="no-such-codec") == estimate_mos(0.0, 0.0)


# --- one-way audio ----------------------------------------------------------------------------------


def test_one_way_audio_is_flagged_after_the_window() -> None:
    d = OneWayAudioDetector(window_s=5.0)
    a = b = 0
    flows = []
    for t in range(12):
        a += 50
        if t <= 2:
            b += 50  # B's endpoint sends nothing after the sample at t=2
        flows.append(d.observe(float(t), a, b))
    assert flows[0] is MediaFlow.UNKNOWN
    assert flows[5] is MediaFlow.BOTH  # window 0..5 still has B's packets
    assert flows[6] is MediaFlow.BOTH  # B's counter moved between t=1 and t=2
    assert flows[7] is MediaFlow.A_ONLY  # no change from t=2 to t=7: five seconds one way
    assert flows[11] is MediaFlow.A_ONLY
    assert d.one_way


def test_two_way_and_silent_calls_are_not_one_way() -> None:
    both = OneWayAudioDetector(window_s=5.0)
    silent = OneWayAudioDetector(window_s=5.0)
    for t in range(10):
        flow = both.observe(t * 1.0, 50 * t, 50 * t)
        still = silent.observe(t * 1.0, 7, 7)
    assert flow is MediaFlow.BOTH and not both.one_way
    assert still is MediaFlow.NONE and not silent.one_way


def test_one_way_b_only_from_legstats_and_counter_reset() -> None:
    d = OneWayAudioDetector(window_s=2.0)
    for t in range(5):
        flow = d.observe_stats(t * 1.0, LegStats(packets_in=3), LegStats(packets_in=100 * t))
    assert flow is MediaFlow.B_ONLY
    assert d.observe(5.0, 0, 0) is MediaFlow.UNKNOWN  # counters went backwards: history restarts
    with pytest.raises(ValueError):
        OneWayAudioDetector(window_s=0)
