"""Which relay runs (`dataplane.select.try_xdp`), without touching the kernel: the choice and its
reason, the prebuilt object, and the dataplane package standing on its own (no `sbc` at run time)."""

from __future__ import annotations

import asyncio
import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

from dataplane import select
from dataplane.api import Fallback, FallbackReason
from dataplane.settings import DataplaneSettings, RelayChoice, with_environment
from dataplane.xdp import loader
from dataplane.xdp.relay import XdpStartError

MEDIA = [ipaddress.ip_address("198.18.1.1")]


def test_a_missing_object_names_make_bpf(tmp_path: Path) -> None:
    with pytest.raises(loader.ObjectMissing) as info:
        loader.require_object(tmp_path / "relay.o")
    assert "relay.o is not built: run `make bpf`" in str(info.value)
    built = tmp_path / "built.o"
    built.write_bytes(b"\x7fELF")
    assert loader.require_object(built) == built


def test_userspace_by_config_or_environment_never_looks_at_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(select, "xdp_unavailable", lambda addresses, chosen: pytest.fail("looked at the kernel"))
    loop = asyncio.new_event_loop()
    try:
        by_config = with_environment(DataplaneSettings(relay=RelayChoice.USERSPACE), {})
        assert select.try_xdp(by_config, MEDIA, loop) == Fallback(FallbackReason.CHOSEN, "dataplane.relay=userspace")
        by_environment = with_environment(DataplaneSettings(), {"SBC_DATAPLANE": "userspace"})
        assert select.try_xdp(by_environment, MEDIA, loop) == Fallback(FallbackReason.CHOSEN, "SBC_DATAPLANE=userspace")
    finally:
        loop.close()


def test_auto_falls_back_with_the_reason_and_xdp_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = Fallback(FallbackReason.NO_OBJECT, "relay.o is not built: run `make bpf`")
    monkeypatch.setattr(select, "xdp_unavailable", lambda addresses, chosen: missing)
    loop = asyncio.new_event_loop()
    try:
        auto = with_environment(DataplaneSettings(), {})
        assert select.try_xdp(auto, MEDIA, loop) == missing
        forced = with_environment(DataplaneSettings(relay=RelayChoice.XDP), {})
        with pytest.raises(XdpStartError, match=r"^dataplane.relay=xdp but XDP is unavailable: relay.o is not built"):
            select.try_xdp(forced, MEDIA, loop)
    finally:
        loop.close()


def test_with_an_external_loader_only_cap_bpf_and_the_pins_are_needed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`sbc run` under sbc.service: no root, no CAP_NET_ADMIN, no bpftool, no object; it needs CAP_BPF
    and what the prepare step pinned."""
    chosen = with_environment(DataplaneSettings(pin_dir=tmp_path), {"SBC_BPF_LOADER": "external"})
    monkeypatch.setattr(select, "_capable", lambda *caps: False)
    assert select.xdp_unavailable(MEDIA, chosen) == Fallback(
        FallbackReason.NOT_PRIVILEGED, "no CAP_BPF to open the pinned maps (SBC_BPF_LOADER=external)"
    )
    monkeypatch.setattr(select, "_capable", lambda *caps: caps == (select.CAP_BPF,))
    assert select.xdp_unavailable(MEDIA, with_environment(DataplaneSettings(), {})) == Fallback(
        FallbackReason.NOT_PRIVILEGED, "not root"
    )
    assert select.xdp_unavailable(MEDIA, chosen) == Fallback(
        FallbackReason.NOT_PREPARED,
        f"nothing pinned in {tmp_path}: with SBC_BPF_LOADER=external the prepare step loads the relay "
        "(`sbc prepare-dataplane`, sbc-dataplane.service)",
    )
    monkeypatch.setattr(loader, "require_object", lambda: pytest.fail("looked for the object"))
    (tmp_path / "prog").touch()
    assert select.xdp_unavailable(MEDIA, chosen) is None
    assert select.xdp_unavailable([ipaddress.ip_address("127.0.1.1")], chosen) == Fallback(
        FallbackReason.MEDIA_ON_LOOPBACK, "media address 127.0.1.1 is on loopback: nothing to offload"
    )


def test_media_on_loopback_is_a_reason() -> None:
    assert select._media_on_lo([ipaddress.ip_address("127.0.1.1")]) == Fallback(
        FallbackReason.MEDIA_ON_LOOPBACK, "media address 127.0.1.1 is on loopback: nothing to offload"
    )
    assert select._media_on_lo(MEDIA) is None


def test_the_dataplane_package_does_not_import_sbc() -> None:
    code = (
        "import sys, pkgutil, importlib, dataplane\n"
        "for m in pkgutil.walk_packages(dataplane.__path__, 'dataplane.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(sorted(n for n in sys.modules if n == 'sbc' or n.startswith('sbc.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
