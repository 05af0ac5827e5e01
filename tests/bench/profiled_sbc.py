"""`sbc run` under cProfile, for `python -m tests.bench.sip --profile`: the profile is written when the
SBC stops (SIGTERM ends `sbc run` normally, so the profiler sees the whole run).

The profiler keeps its default clock (the monotonic wall clock, read through the vDSO): the process
CPU clock is a system call per function entry and exit, which made the profiled SBC about seven times
slower here and distorted the breakdown. The time the loop spends waiting in epoll is in the profile
and is subtracted by the reader (tests/bench/sip.py) to get the SBC's busy time.

Usage: python -m tests.bench.profiled_sbc OUTPUT.prof SBC_BIN run --config FILE (SBC_BIN, the path of
the `sbc` script the harness would have run, is skipped: its `main` is called in this process).
"""

from __future__ import annotations

import cProfile
import sys

from sbc.cli import main as sbc_main


def main(argv: list[str]) -> int:
    output, sbc_args = argv[0], argv[2:]
    profiler = cProfile.Profile()
    status = 1
    try:
        status = profiler.runcall(sbc_main, sbc_args)
    finally:
        profiler.dump_stats(output)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
