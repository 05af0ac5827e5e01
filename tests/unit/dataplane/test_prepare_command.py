"""`sbc prepare-dataplane` without the kernel: what it prepares from the config (and the environment),
and its exit codes, which sbc-dataplane.service's state shows (tests/dataplane/test_prepare.py runs
the step itself in namespaces)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from dataplane.settings import BpfLoader, Overridden, XdpAttach
from dataplane.xdp import prepare as prepare_module
from dataplane.xdp.prepare import Prepared
from sbc import prepare_dataplane
from sbc.cli import main
from tests.unit.config.test_config_loader import BASE


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "sbc.yaml"
    path.write_text(BASE)
    return path


def test_the_userspace_relay_needs_nothing(config: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setenv("SBC_DATAPLANE", "userspace")
    monkeypatch.setattr(prepare_dataplane, "xdp_unavailable", lambda *a: pytest.fail("looked at the kernel"))
    assert main(["prepare-dataplane", "--config", str(config)]) == 0
    assert capsys.readouterr().out == "sbc prepare-dataplane: nothing to prepare (SBC_DATAPLANE=userspace)\n"


def test_without_xdp_auto_leaves_it_to_sbc_run_and_xdp_fails(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setattr(prepare_dataplane, "xdp_unavailable", lambda *a: "relay.o is not built: run `make bpf`")
    assert main(["prepare-dataplane", "--config", str(config)]) == 0
    assert "XDP cannot run here: relay.o is not built" in capsys.readouterr().out
    monkeypatch.setenv("SBC_DATAPLANE", "xdp")
    assert main(["prepare-dataplane", "--config", str(config)]) == 1
    assert capsys.readouterr().out.endswith("run `make bpf` (SBC_DATAPLANE=xdp)\n")


def test_it_prepares_the_realms_media_addresses_as_a_loader_would(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    checked: list[Overridden] = []
    calls: list[tuple[list[Any], dict[str, Any]]] = []

    def unavailable(addresses: Any, chosen: Overridden) -> None:
        checked.append(chosen)

    def fake_prepare(addresses: list[Any], **kw: Any) -> Prepared:
        calls.append((addresses, kw))
        return Prepared(kw["pin_dir"], 7, True, (), ())

    monkeypatch.setattr(prepare_dataplane, "xdp_unavailable", unavailable)
    monkeypatch.setattr(prepare_module, "prepare", fake_prepare)
    monkeypatch.setenv("SBC_BPF_LOADER", "external")  # sbc.service's setting: the check is still a loader's
    monkeypatch.setenv("SBC_XDP_MODE", "generic")
    monkeypatch.setenv("SBC_BPF_PIN_DIR", "/sys/fs/bpf/lab")
    assert main(["prepare-dataplane", "--config", str(config), "--group", "root", "--reload"]) == 0
    assert checked[0].settings.loader is BpfLoader.SELF
    ((addresses, kw),) = calls
    assert addresses == [ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("2001:db8::1")]
    assert kw == {
        "pin_dir": Path("/sys/fs/bpf/lab"),
        "xdp_mode": XdpAttach.GENERIC,
        "mode_origin": "SBC_XDP_MODE=generic",
        "group": 0,
        "reload": True,
    }
    assert capsys.readouterr().out == "sbc prepare-dataplane: program 7 loaded, pinned in /sys/fs/bpf/lab\n"


def test_an_unknown_group_or_a_bad_config_is_an_error(config: Path, tmp_path: Path, capsys: Any) -> None:
    assert main(["prepare-dataplane", "--config", str(config), "--group", "no-such-group-here"]) == 1
    assert "no-such-group-here" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("realms: []\n")
    assert main(["prepare-dataplane", "--config", str(broken)]) == 2
