"""Test tones for the phones and the check that some audio carries the other side's tone.

Each phone plays its own sine (made by sox) and records what it decodes; a recording, or the G.711
RTP the SBC sent a phone (decoded here), proves the audio path when the far side's frequency
dominates it and it is not silence. The check is a Goertzel filter (the power at one frequency)
over the samples, in plain Python.
"""

from __future__ import annotations

import math
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

SAMPLE_RATE = 8000  # G.711, what the phones are limited to: no resampling anywhere on the path


def make_tone(path: Path, frequency: int, seconds: float) -> Path:
    """A mono 16-bit 8 kHz WAV of a sine at half scale."""
    subprocess.run(
        ["sox", "-n", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(path),
         "synth", str(seconds), "sine", str(frequency), "vol", "0.5"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return path


def read_samples(path: Path) -> list[int]:
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
            raise ValueError(f"{path}: expected 16-bit mono, got {wav.getsampwidth() * 8}-bit x{wav.getnchannels()}")
        frames = wav.readframes(wav.getnframes())
    return [int.from_bytes(frames[i : i + 2], "little", signed=True) for i in range(0, len(frames) - 1, 2)]


def _power_at(samples: list[int], frequency: float) -> float:
    """Goertzel: the squared magnitude of the DFT bin nearest `frequency`, normalised by length."""
    coeff = 2 * math.cos(2 * math.pi * frequency / SAMPLE_RATE)
    prev = prev2 = 0.0
    for x in samples:
        prev, prev2 = x + coeff * prev - prev2, prev
    return (prev2 * prev2 + prev * prev - coeff * prev * prev2) / max(1, len(samples)) ** 2


@dataclass(frozen=True)
class ToneReport:
    seconds: float
    rms: float  # of the whole recording, in 16-bit units (silence is ~0)
    share: float  # the wanted tone's power as a share of the recording's total power (0..1)
    other_share: float  # the same for the tone that must not be there (the phone's own)

    def __str__(self) -> str:
        return f"{self.seconds:.2f} s, rms {self.rms:.0f}, tone {self.share:.0%}, own tone {self.other_share:.0%}"


def tone_report(path: Path, frequency: int, other_frequency: int) -> ToneReport:
    return samples_report(read_samples(path), frequency, other_frequency)


def ulaw_samples(payloads: list[bytes]) -> list[int]:
    """G.711 μ-law (RTP payload type 0) to 16-bit linear samples (ITU-T G.711 expansion)."""
    out = []
    for payload in payloads:
        for byte in payload:
            code = ~byte & 0xFF
            magnitude = ((code & 0x0F) << 3 | 0x84) << ((code >> 4) & 0x07)
            out.append(0x84 - magnitude if code & 0x80 else magnitude - 0x84)
    return out


def samples_report(samples: list[int], frequency: int, other_frequency: int) -> ToneReport:
    if not samples:
        return ToneReport(0.0, 0.0, 0.0, 0.0)
    mean_square = sum(x * x for x in samples) / len(samples)
    # A pure sine of amplitude A has mean square A²/2 and a Goertzel power of A²/4: scale to a share.
    total = mean_square / 2 or 1.0
    return ToneReport(
        seconds=len(samples) / SAMPLE_RATE,
        rms=math.sqrt(mean_square),
        share=_power_at(samples, frequency) / total,
        other_share=_power_at(samples, other_frequency) / total,
    )


def carries_tone(report: ToneReport, *, min_seconds: float = 0.5) -> bool:
    """Enough audio, not silence, the far side's tone dominating and the near side's absent."""
    return report.seconds >= min_seconds and report.rms > 1000 and report.share > 0.5 and report.other_share < 0.1
