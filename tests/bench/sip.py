"""SIP benchmark: calls per second the SBC carries between two SIPp instances, and CPU time per call.

The rate is stepped up; each step places a bounded number of calls (rate x seconds) and stops by
itself. A step passes when every call succeeded. The SBC's CPU time (user + system, from
/proc/PID/stat) divided by the calls of the step gives the CPU time per call, and from it the calls
per second one core could carry. The load average of the machine is printed with the figures: on a
shared machine a busy neighbour shows up as failed calls and as CPU time per call.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from tests.integration.harness import (
    LAN_SBC,
    PHONE,
    SBC_PORT,
    TRUNK,
    TRUNK_PORT,
    running_sbc,
    sbc_config,
    sipp,
    sipp_available,
)

STEPS = (50, 100, 200, 300, 400, 500)
STEP_SECONDS = 8


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _stats(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(zip(lines[0].split(";"), lines[-1].split(";"), strict=False))


def run_step(workdir: Path, sbc_pid: int, rate: int) -> dict[str, float]:
    calls = rate * STEP_SECONDS
    uas = sipp("uas", workdir, "uas_bench.xml", local_ip=TRUNK, local_port=TRUNK_PORT, calls=calls,
               timeout_s=STEP_SECONDS + 30, trace=False).start()  # fmt: skip
    time.sleep(0.3)
    cpu0 = _cpu_seconds(sbc_pid)
    wall0 = time.monotonic()
    uac = sipp(
        "uac", workdir, "uac_bench.xml", local_ip=PHONE, local_port=5071, remote=f"{LAN_SBC}:{SBC_PORT}",
        calls=calls, rate=rate, timeout_s=STEP_SECONDS + 30, trace=False,
        extra=["-l", str(rate * 4)],
    ).start()  # fmt: skip
    uac.wait(STEP_SECONDS + 45)
    uas.wait(15)
    wall = time.monotonic() - wall0
    cpu = _cpu_seconds(sbc_pid) - cpu0
    st = _stats(uac.stat_file)
    ok = int(st.get("SuccessfulCall(C)", "0"))
    failed = int(st.get("FailedCall(C)", "0"))
    return {
        "rate": rate,
        "calls": calls,
        "successful": ok,
        "failed": failed + (calls - ok - failed),
        "wall_s": wall,
        "cpu_s": cpu,
        "cpu_ms_per_call": 1000 * cpu / max(ok, 1),
    }


def main() -> int:
    if not sipp_available():
        print("sip bench: SIPp is not installed (apt-get install sip-tester)")
        return 1
    print("SIP benchmark: SIPp uac -> SBC (LAN) -> SBC (WAN) -> SIPp uas, INVITE/200/ACK/BYE per call")
    print(f"load average at start: {_loadavg()} ({os.cpu_count()} CPUs)")
    print(
        f"{'rate/s':>7} {'calls':>6} {'ok':>6} {'failed':>6} {'wall s':>7} {'cpu s':>7} {'core %':>7} "
        f"{'cpu ms/call':>12} {'calls/s/core':>13}"
    )
    best = 0
    last_cpu = 0.0
    with tempfile.TemporaryDirectory(prefix="sbc-bench-") as tmp:
        workdir = Path(tmp)
        with running_sbc(workdir, sbc_config(workdir / "state")) as sbc:
            assert sbc.proc is not None
            for rate in STEPS:
                r = run_step(workdir, sbc.proc.pid, rate)
                per_core = 1000 / r["cpu_ms_per_call"] if r["cpu_ms_per_call"] else 0.0
                print(
                    f"{rate:>7} {r['calls']:>6.0f} {r['successful']:>6.0f} {r['failed']:>6.0f} {r['wall_s']:>7.1f} "
                    f"{r['cpu_s']:>7.2f} {100 * r['cpu_s'] / r['wall_s']:>7.0f} {r['cpu_ms_per_call']:>12.3f} "
                    f"{per_core:>13.0f}"
                )
                if r["failed"]:
                    break
                best = rate
                last_cpu = r["cpu_ms_per_call"]
                time.sleep(1)
    print(f"load average at end: {_loadavg()}")
    print(f"highest rate with zero failed calls: {best} calls/s")
    if last_cpu:
        print(f"CPU time per call at that rate: {last_cpu:.3f} ms -> {1000 / last_cpu:.0f} calls/s per core")
    return 0
