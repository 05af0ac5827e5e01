"""The privileged prepare step (`dataplane.xdp.prepare`, `sbc prepare-dataplane`) in the three
namespaces of `xdp_netns`: it loads, pins and attaches; run again it changes nothing (the maps and
their entries stay: live calls keep their media); it detaches from an interface the config no longer
names, re-attaches where the mode changes, and swaps the program in on `reload`. A relay built on its
pins (`attach=False`, `dataplane.loader: external`) only checks where the program runs."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import IPRoute

from dataplane.api import IPAddress
from dataplane.settings import XdpAttach
from dataplane.xdp import abi, attach, bpfsys, loader
from dataplane.xdp.placement import VETH_GENERIC_WHY, XdpStartError
from dataplane.xdp.prepare import Prepared, prepare
from dataplane.xdp.relay import XdpRelay
from dataplane.xdp.tables import RelayTables
from dataplane.xdp.tool import missing_tools
from tests.dataplane import xdp_netns
from tests.dataplane.xdp_netns import Topology, inside

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="bpf(), bpffs and namespaces need root")]

LAN = ipaddress.ip_address("198.18.1.1")
WAN = ipaddress.ip_address("198.18.2.1")
NOGROUP = 65534


@pytest.fixture
def topo(relay_object: Path) -> Iterator[Topology]:
    reason = missing_tools("ip")
    if reason:
        pytest.skip(reason)
    t = xdp_netns.build(f"p{os.getpid()}")
    try:
        yield t
    finally:
        t.destroy()


@pytest.fixture
def pin_dir() -> Iterator[Path]:
    path = Path(f"/sys/fs/bpf/sbc-prepare-test-{os.getpid()}")
    loader.unpin(path)
    yield path
    loader.unpin(path)


def prepared(topo: Topology, pin_dir: Path, relay_object: Path, *addresses: IPAddress, **kw: Any) -> Prepared:
    with inside(topo.m):
        return prepare(list(addresses), pin_dir=pin_dir, group=NOGROUP, obj=relay_object, **kw)


def xdp_on(topo: Topology, dev: str) -> tuple[str | None, int | None]:
    """(IFLA_XDP_ATTACHED's mode name, program id) of `dev` in the SBC's namespace."""
    with IPRoute(netns=topo.m) as ipr:
        return attach._xdp_state(ipr, ipr.link_lookup(ifname=dev)[0])


def a_session(port: int) -> tuple[abi.SessionKey, abi.Session]:
    session = abi.Session(
        expected_src=abi.Endpoint.of("198.18.1.2", 6000),
        dst=abi.Endpoint.of("198.18.2.2", 6000),
        new_src=abi.Endpoint.of(WAN, port + 1000),
    )
    return abi.SessionKey.of(LAN, port), session


def test_a_rerun_keeps_the_program_the_maps_and_their_entries(
    topo: Topology, pin_dir: Path, relay_object: Path
) -> None:
    first = prepared(topo, pin_dir, relay_object, LAN, WAN)
    assert first.loaded and first.detached == ()
    assert [(i.name, i.mode.value, i.attached_by_us, i.why) for i in first.interfaces] == [
        ("m_a", "generic", True, VETH_GENERIC_WHY),
        ("m_b", "generic", True, VETH_GENERIC_WHY),
    ]
    key, session = a_session(40000)
    with loader.open_pinned(pin_dir) as objects:
        RelayTables(objects).sessions.put(key, session)
    attached_before = (xdp_on(topo, "m_a"), xdp_on(topo, "m_b"))

    again = prepared(topo, pin_dir, relay_object, LAN, WAN)
    assert not again.loaded and again.prog_id == first.prog_id and again.detached == ()
    assert [(i.attached_by_us, i.why) for i in again.interfaces] == [(False, "attached before, adopted")] * 2
    assert (xdp_on(topo, "m_a"), xdp_on(topo, "m_b")) == attached_before == (("xdpgeneric", first.prog_id),) * 2
    with loader.open_pinned(pin_dir) as objects:
        kept = RelayTables(objects).sessions.get(key)
        assert kept is not None and bytes(kept) == bytes(session), "the live call's entry is untouched"
        for index in (topo.ma.ifindex, topo.mb.ifindex):  # in the egress devmap from the first packet on
            assert bpfsys.map_lookup(objects.egress, struct.pack("=I", index), 4) == struct.pack("=I", index)
    assert f"program {first.prog_id} kept" in again.describe()


def test_an_interface_the_config_no_longer_names_is_detached(topo: Topology, pin_dir: Path, relay_object: Path) -> None:
    prepared(topo, pin_dir, relay_object, LAN, WAN)
    lan_only = prepared(topo, pin_dir, relay_object, LAN)
    assert [i.name for i in lan_only.detached] == ["m_b"] and [i.name for i in lan_only.interfaces] == ["m_a"]
    assert xdp_on(topo, "m_b") == (None, None)
    assert xdp_on(topo, "m_a") == ("xdpgeneric", lan_only.prog_id)


def test_a_mode_the_settings_now_choose_differently_is_reattached(
    topo: Topology, pin_dir: Path, relay_object: Path
) -> None:
    prepared(topo, pin_dir, relay_object, LAN, WAN)
    native = prepared(topo, pin_dir, relay_object, LAN, WAN, xdp_mode=XdpAttach.NATIVE, mode_origin="SBC_XDP_MODE=x")
    assert [(i.mode.value, i.attached_by_us, i.why) for i in native.interfaces] == [
        ("native", True, "forced: SBC_XDP_MODE=x")
    ] * 2
    assert xdp_on(topo, "m_a") == ("xdp", native.prog_id)


def test_reload_swaps_the_program_in_and_keeps_the_maps(topo: Topology, pin_dir: Path, relay_object: Path) -> None:
    first = prepared(topo, pin_dir, relay_object, LAN, WAN)
    key, session = a_session(40002)
    with loader.open_pinned(pin_dir) as objects:
        RelayTables(objects).sessions.put(key, session)
    reloaded = prepared(topo, pin_dir, relay_object, LAN, WAN, reload=True)
    assert reloaded.loaded and reloaded.prog_id != first.prog_id
    assert [i.attached_by_us for i in reloaded.interfaces] == [True, True]
    assert xdp_on(topo, "m_a") == xdp_on(topo, "m_b") == ("xdpgeneric", reloaded.prog_id)
    with loader.open_pinned(pin_dir) as objects:
        assert RelayTables(objects).sessions.get(key) is not None


def test_a_relay_on_the_pins_only_checks_where_the_program_runs(
    topo: Topology, pin_dir: Path, relay_object: Path
) -> None:
    loop = asyncio.new_event_loop()
    try:
        prepared(topo, pin_dir, relay_object, LAN)
        with inside(topo.m), pytest.raises(XdpStartError, match="m_b: nothing is attached, not the pinned relay"):
            XdpRelay(loop, loader.open_pinned(pin_dir), [LAN, WAN], attach=False)
        assert xdp_on(topo, "m_b") == (None, None), "the relay attached nothing itself"
        done = prepared(topo, pin_dir, relay_object, LAN, WAN)
        with inside(topo.m):
            relay = XdpRelay(loop, loader.open_pinned(pin_dir), [LAN, WAN], attach=False)
        assert relay.describe() == (
            f"XDP on m_a generic ({VETH_GENERIC_WHY}); m_b generic ({VETH_GENERIC_WHY}); "
            "loaded and attached by the prepare step"
        )
        with inside(topo.m):
            relay.shutdown(detach=True)
        assert xdp_on(topo, "m_a") == xdp_on(topo, "m_b") == ("xdpgeneric", done.prog_id), "not the relay's to detach"
    finally:
        loop.close()
