"""SIP benchmark: calls per second the SBC carries cleanly between two SIPp instances, and CPU per call.

The condition is the one a branch box meets: SIPp UAC -> SBC (LAN) -> SBC (WAN) -> SIPp UAS, INVITE
with an SDP offer, media anchored in userspace (the relay binds an RTP/RTCP socket pair per leg),
200 with SDP, ACK, a 1 s hold, BYE from the caller. The SBC runs its default config apart from
addresses and media port ranges (wide enough for the calls a step keeps up at once): info logging,
dialog persistence, anchoring on.

The SBC is pinned to one core (taskset -c 0) and both SIPps to the other, so the figures say what one
core carries. The rate is stepped up; each step places rate x STEP_SECONDS calls and stops by itself.
A step is clean when no call failed and SIPp retransmitted for fewer than 5% of the calls (a rate the
SBC keeps up with, not one it survives). Per step: calls/s attempted (SIPp's own creation rate) and
completed, failed calls, retransmissions (both SIPps, from their statistics CSV), the SBC's CPU time
(user + system, /proc/PID/stat) per completed call.

`--profile RATE` runs one step at RATE with the SBC under cProfile and prints where its time went:
entry points by cumulative time and the top functions by own time, as % of the profiled busy time
(epoll waits left out), and that time per call. Choose a RATE the profiled SBC keeps up with (cProfile
slows it down about twofold), e.g. 100: an overloaded SBC spends its time on retransmissions.
"""

from __future__ import annotations

import argparse
import os
import pstats
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.integration.harness import (
    LAN_SBC,
    PHONE,
    ROOT,
    SBC_PORT,
    TRUNK,
    TRUNK_PORT,
    SbcProcess,
    Sipp,
    sbc_config,
    sipp,
    sipp_available,
)

STEPS = (200, 300, 400, 500)
STEP_SECONDS = 10
HOLD_S = 1.0  # uac_bench.xml's pause between ACK and BYE
CLEAN_RETRANSMISSIONS = 0.05  # of the calls placed
GIVE_UP_FAILED = 0.2  # a step failing this share of its calls ends the run: higher rates only fail more
SBC_CORE = "0"
SIPP_CORE = "1"
# Wide enough for 500 calls/s x (hold + setup and teardown) calls at once, two ports per anchor.
LAN_MEDIA_PORTS = "20000-29999"
WAN_MEDIA_PORTS = "30000-39999"


@dataclass(frozen=True, slots=True)
class StepResult:
    rate: int
    calls: int
    attempted_per_s: float
    successful: int
    failed: int
    retransmissions: int
    wall_s: float
    cpu_s: float

    @property
    def completed_per_s(self) -> float:
        return self.successful / STEP_SECONDS

    @property
    def cpu_ms_per_call(self) -> float:
        return 1000 * self.cpu_s / max(self.successful, 1)

    @property
    def clean(self) -> bool:
        return self.failed == 0 and self.retransmissions < CLEAN_RETRANSMISSIONS * self.calls


def bench_config(state_dir: Path) -> str:
    text = sbc_config(state_dir)
    for harness_range, wide in (("40000-40999", LAN_MEDIA_PORTS), ("41000-41999", WAN_MEDIA_PORTS)):
        if harness_range not in text:
            raise RuntimeError(f"the harness config no longer has media ports {harness_range}: update the bench")
        text = text.replace(harness_range, wide)
    return text


def _pinning(core: str) -> list[str]:
    """taskset on a machine with two cores or more; nothing to pin to on one."""
    if (os.cpu_count() or 1) < 2 or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", core]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _stat_rows(path: Path) -> list[dict[str, str]]:
    """The lines of a SIPp -trace_stat CSV (one a second with -fd 1, and one when SIPp ends), by column."""
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    names = lines[0].split(";") if lines else []
    return [dict(zip(names, line.split(";"), strict=False)) for line in lines[1:]]


def _count(stats: dict[str, str], column: str) -> int:
    try:
        return int(stats.get(column, "0") or "0")
    except ValueError:
        return 0


def _epoch(stats: dict[str, str], column: str) -> float:
    """StartTime/CurrentTime read 'YYYY-MM-DD\tHH:MM:SS.us\tEPOCH': the epoch seconds at the end."""
    try:
        return float(stats.get(column, "").split()[-1])
    except (IndexError, ValueError):
        return 0.0


def _placing_seconds(rows: list[dict[str, str]]) -> float:
    """Seconds from SIPp's start to the first statistics line that counts every call it created:
    how long placing the calls took (to the second of -fd 1), whatever the calls did afterwards."""
    if not rows:
        return 0.0
    created = _count(rows[-1], "TotalCallCreated")
    first = next(r for r in rows if _count(r, "TotalCallCreated") >= created)
    return _epoch(first, "CurrentTime") - _epoch(first, "StartTime")


def _pinned(proc: Sipp) -> Sipp:
    proc.argv[:0] = _pinning(SIPP_CORE)
    return proc


def run_step(workdir: Path, sbc_pid: int, rate: int, seconds: int = STEP_SECONDS) -> StepResult:
    calls = rate * seconds
    step_dir = workdir / f"step-{rate}"
    step_dir.mkdir(exist_ok=True)
    bound_s = seconds + 30
    uas = _pinned(
        sipp("uas", step_dir, "uas_bench.xml", local_ip=TRUNK, local_port=TRUNK_PORT, calls=calls,
             timeout_s=bound_s, trace=False)
    ).start()  # fmt: skip
    time.sleep(0.3)
    cpu0 = _cpu_seconds(sbc_pid)
    wall0 = time.monotonic()
    uac = _pinned(
        sipp("uac", step_dir, "uac_bench.xml", local_ip=PHONE, local_port=5071, remote=f"{LAN_SBC}:{SBC_PORT}",
             calls=calls, rate=rate, timeout_s=bound_s, trace=False, extra=["-l", str(rate * 4), "-fd", "1"])
    ).start()  # fmt: skip
    uac.wait(bound_s + 15)
    uas.wait(15)
    wall = time.monotonic() - wall0
    cpu = _cpu_seconds(sbc_pid) - cpu0
    rows_uac = _stat_rows(uac.stat_file)
    st_uac = rows_uac[-1] if rows_uac else {}
    st_uas = next(reversed(_stat_rows(uas.stat_file)), {})
    created = _count(st_uac, "TotalCallCreated")
    ok = _count(st_uac, "SuccessfulCall(C)")
    failed = _count(st_uac, "FailedCall(C)") + _count(st_uas, "FailedCall(C)")
    failed += max(calls - ok - _count(st_uac, "FailedCall(C)"), 0)  # never placed or never finished
    placing_s = _placing_seconds(rows_uac)
    return StepResult(
        rate=rate,
        calls=calls,
        attempted_per_s=created / placing_s if placing_s > 0 else 0.0,
        successful=ok,
        failed=failed,
        retransmissions=_count(st_uac, "Retransmissions(C)") + _count(st_uas, "Retransmissions(C)"),
        wall_s=wall,
        cpu_s=cpu,
    )


HEADER = (
    f"{'rate/s':>7} {'attempted/s':>11} {'completed/s':>11} {'calls':>6} {'failed':>6} {'retrans':>8} "
    f"{'retr %':>6} {'cpu s':>6} {'core %':>6} {'cpu ms/call':>11} {'calls/cpu-s':>11} {'clean':>5}"
)


def format_step(r: StepResult) -> str:
    per_cpu_s = 1000 / r.cpu_ms_per_call if r.cpu_ms_per_call else 0.0
    return (
        f"{r.rate:>7} {r.attempted_per_s:>11.0f} {r.completed_per_s:>11.0f} {r.calls:>6} {r.failed:>6} "
        f"{r.retransmissions:>8} {100 * r.retransmissions / r.calls:>6.1f} {r.cpu_s:>6.2f} "
        f"{100 * r.cpu_s / r.wall_s:>6.0f} {r.cpu_ms_per_call:>11.3f} {per_cpu_s:>11.0f} "
        f"{'yes' if r.clean else 'no':>5}"
    )


def _start_sbc(workdir: Path, profile_path: Path | None) -> SbcProcess:
    config_path = workdir / "sbc.yaml"
    config_path.write_text(bench_config(workdir / "state"))
    sbc = SbcProcess(workdir, config_path, prefix=_pinning(SBC_CORE))
    if profile_path is not None:
        # SbcProcess runs `<prefix> sbc run --config FILE`: the profiler wrapper takes the `sbc` binary's place.
        sbc.prefix += [sys.executable, "-m", "tests.bench.profiled_sbc", str(profile_path)]
        sbc.env["PYTHONPATH"] = str(ROOT)
    sbc.start()
    return sbc


def stepped_run(steps: tuple[int, ...]) -> int:
    print("SIP calls per second: SIPp uac -> SBC (LAN) -> SBC (WAN) -> SIPp uas; INVITE with SDP, media anchored")
    print(f"(userspace relay), 200 with SDP, ACK, {HOLD_S:.0f} s hold, BYE from the caller; {STEP_SECONDS} s per step;")
    print(f"SBC on core {SBC_CORE}, SIPps on core {SIPP_CORE}; clean = 0 failed and retransmissions < "
          f"{100 * CLEAN_RETRANSMISSIONS:.0f}% of the calls")  # fmt: skip
    print(f"load average at start: {_loadavg()} ({os.cpu_count()} CPUs)")
    print(HEADER)
    results: list[StepResult] = []
    with tempfile.TemporaryDirectory(prefix="sbc-bench-") as tmp:
        workdir = Path(tmp)
        sbc = _start_sbc(workdir, None)
        try:
            assert sbc.proc is not None
            for rate in steps:
                r = run_step(workdir, sbc.proc.pid, rate)
                results.append(r)
                print(format_step(r), flush=True)
                if r.failed > GIVE_UP_FAILED * r.calls:
                    print(f"{r.failed} of {r.calls} calls failed: higher rates left out")
                    break
                time.sleep(2)  # the step's last dialogs and anchors are gone before the next one
        finally:
            sbc.stop()
    print(f"load average at end: {_loadavg()}")
    clean = [r for r in results if r.clean]
    best = max(clean, key=lambda r: r.rate, default=None)
    if best is None:
        print("clean maximum: none of the steps was clean")
    else:
        print(
            f"clean maximum: {best.rate} calls/s (CPU per call there {best.cpu_ms_per_call:.3f} ms, "
            f"{1000 / best.cpu_ms_per_call:.0f} calls per CPU-second)"
        )
    return 0


# Entry points whose cumulative time says where the SBC's time went, by concern. (file suffix, function)
CONCERNS: tuple[tuple[str, str, str], ...] = (
    ("whole input (SIP datagram -> outputs)", "sbc/app.py", "_on_datagram"),
    ("  parsing (message.parse)", "sbc/sip/message.py", "parse"),
    ("  core: datagram_received", "sbc/b2bua/core.py", "datagram_received"),
    ("  sending (transport send)", "sbc/transport/sockets.py", "send"),
    ("  logging (emit)", "sbc/app.py", "emit"),
    ("  persistence (after_input)", "sbc/dialog_state.py", "after_input"),
    ("  persistence (state file write)", "sbc/dialog_state.py", "_write"),
    ("timers (tick)", "sbc/app.py", "_on_timer"),
    ("anchor allocate", "dataplane/userspace.py", "allocate"),
    ("anchor program", "dataplane/userspace.py", "program"),
    ("anchor release", "dataplane/userspace.py", "release"),
    ("topology hiding: requests", "sbc/policy/topology.py", "scrub_request"),
    ("topology hiding: responses", "sbc/policy/topology.py", "scrub_response"),
    ("header rules", "sbc/policy/header_rules.py", "apply"),
    ("SDP rewrite", "sbc/sdp/rewrite.py", "rewrite"),
    ("CDR write", "sbc/app.py", "_write_cdr"),
)
# The event loop waiting for input: not busy time.
IDLE_FUNCTIONS = ("<method 'poll' of 'select.epoll' objects>",)


def print_profile(profile_path: Path, calls: int, top: int = 30, roots: tuple[tuple[str, str], ...] = ()) -> None:
    """`roots` (file suffix, function): the SBC's own entry points, when the profile holds more than the
    SBC (the replay's peers); their cumulative time is then the total. Else every function's own time
    but the epoll waits."""
    stats = pstats.Stats(str(profile_path))
    raw = stats.stats  # type: ignore[attr-defined]
    if roots:
        total = sum(v[3] for (path, _ln, fn), v in raw.items() if any(path.endswith(s) and fn == f for s, f in roots))
        what = "SBC entry points"
    else:
        waiting = sum(tt for (_path, _line, fn), (_cc, _nc, tt, _ct, _c) in raw.items() if fn in IDLE_FUNCTIONS)
        total = sum(tt for (_cc, _nc, tt, _ct, _callers) in raw.values()) - waiting
        what = "epoll waits left out"
    print(f"profiled busy time {total:.2f} s ({what}) over {calls} completed calls: "
          f"{1000 * total / max(calls, 1):.3f} ms per call")  # fmt: skip
    print("where the time went (cumulative time of entry points, % of the profiled busy time):")
    for label, suffix, name in CONCERNS:
        cum = sum(v[3] for (path, _ln, fn), v in raw.items() if fn == name and path.endswith(suffix))
        if cum:
            per_call = 1000 * cum / max(calls, 1)
            print(f"  {label:<40} {cum:>7.2f} s {100 * cum / total:>5.1f} %  {per_call:>6.3f} ms/call")
    print(f"top {top} functions by own time:")
    rows = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    for (path, line, fn), (_cc, nc, tt, ct, _callers) in rows:
        where = _short(path)
        if fn in IDLE_FUNCTIONS:
            continue
        print(f"  {100 * tt / total:>5.1f} % own {100 * ct / total:>5.1f} % cum {nc:>9} calls  {where}:{line}({fn})")


def _short(path: str) -> str:
    for marker in ("/sbc/", "/dataplane/", "/tests/", "/lib/python3"):
        if marker in path:
            return path[path.index(marker) + 1 :]
    return path


def profiled_run(rate: int) -> int:
    print(f"SIP calls per second under cProfile: one {STEP_SECONDS} s step at {rate} calls/s (as `make bench`)")
    with tempfile.TemporaryDirectory(prefix="sbc-bench-prof-") as tmp:
        workdir = Path(tmp)
        profile_path = workdir / "sbc.prof"
        sbc = _start_sbc(workdir, profile_path)
        try:
            assert sbc.proc is not None
            print(HEADER)
            r = run_step(workdir, sbc.proc.pid, rate)
            print(format_step(r), flush=True)
        finally:
            sbc.stop()
        keep = os.environ.get("SBC_BENCH_PROFILE_OUT")
        if keep:
            shutil.copy(profile_path, keep)
        print_profile(profile_path, r.successful)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.sip", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default=",".join(str(s) for s in STEPS), help="rates to step through")
    parser.add_argument("--profile", type=int, metavar="RATE", help="one step at RATE under cProfile")
    args = parser.parse_args(argv if argv is not None else [])
    if not sipp_available():
        print("sip bench: SIPp is not installed (apt-get install sip-tester)")
        return 1
    if args.profile:
        return profiled_run(args.profile)
    return stepped_run(tuple(int(s) for s in args.steps.split(",")))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
