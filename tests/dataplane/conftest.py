"""Fixtures for the XDP relay tests: a built object, a loaded and pinned relay, clean maps.

Everything here needs root (bpf(), bpffs, network namespaces) and clang + bpftool; the
fixtures skip with the reason instead of failing on a machine without them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataplane.xdp import loader
from dataplane.xdp.loader import RelayObjects
from dataplane.xdp.tables import RelayTables
from dataplane.xdp.tool import missing_tools
from tests.dataplane.relay_object import built_relay_object


def not_root() -> str | None:
    return None if os.geteuid() == 0 else "needs root: bpf(), bpffs and network namespaces"


@pytest.fixture(scope="session")
def relay_object() -> Path:
    reason = missing_tools("clang", "make", "bpftool")
    if reason:
        pytest.skip(reason)
    return built_relay_object()


@pytest.fixture(scope="session")
def xdp_relay(relay_object: Path) -> Iterator[RelayObjects]:
    """The relay loaded under a private pin dir, so a running SBC's pins are untouched."""
    reason = not_root()
    if reason:
        pytest.skip(reason)
    pin_dir = Path(f"/sys/fs/bpf/sbc-test-{os.getpid()}")
    objects = loader.load(relay_object, pin_dir, replace=True)
    try:
        yield objects
    finally:
        objects.close()
        loader.unpin(pin_dir)


@pytest.fixture
def xdp_tables(xdp_relay: RelayObjects) -> RelayTables:
    """The relay's maps, emptied and counters zeroed before each test."""
    t = RelayTables(xdp_relay)
    t.sessions.clear()
    t.blocklist.clear()
    t.counters.reset()
    return t
