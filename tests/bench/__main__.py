"""`make bench`: every benchmark, each bounded in time, printing figures measured in this one run."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("tests.bench.sip", "tests.bench.sip_replay", "tests.bench.relay")


def main() -> int:
    status = 0
    for name in BENCHMARKS:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            print(f"{name}: not available ({exc})")
            continue
        print(f"=== {name}")
        status |= int(module.main())
        print()
    return status


if __name__ == "__main__":
    sys.exit(main())
