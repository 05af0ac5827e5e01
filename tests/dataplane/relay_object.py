"""The relay object for the tests and benchmarks: built by `make bpf`, the one build command (the
product never compiles it at run time: `dataplane.xdp.loader.require_object`)."""

from __future__ import annotations

from pathlib import Path

from dataplane.xdp import loader
from dataplane.xdp.tool import run

ROOT = Path(__file__).resolve().parents[2]


def built_relay_object() -> Path:
    """`make bpf` (a no-op when the object is newer than its sources), then the object's path."""
    run(["make", "-C", str(ROOT), "--no-print-directory", "-s", "bpf"], hint="make bpf needs clang")
    return loader.require_object()
