"""The `dataplane:` section (which relay, the pin directory, the XDP attach mode) and the environment
variables that override it (`dataplane.settings.with_environment`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataplane.settings import BpfLoader, DataplaneSettings, RelayChoice, XdpAttach, with_environment
from sbc.config.changes import live_part, restart_required
from sbc.config.loader import ConfigError, load_config, load_config_text
from tests.unit.config.test_config_loader import BASE


def test_left_out_it_is_auto_with_the_default_pins() -> None:
    config = load_config_text(BASE, "sbc.yaml")
    assert config.dataplane == DataplaneSettings(RelayChoice.AUTO, Path("/sys/fs/bpf/sbc"), XdpAttach.AUTO)
    assert load_config(None).dataplane == config.dataplane  # the embedded default spells it out


def test_every_key_is_read() -> None:
    text = BASE + "dataplane: {relay: xdp, pin_dir: /sys/fs/bpf/lab, xdp_mode: generic}\n"
    settings = load_config_text(text, "sbc.yaml").dataplane
    assert settings == DataplaneSettings(RelayChoice.XDP, Path("/sys/fs/bpf/lab"), XdpAttach.GENERIC)


@pytest.mark.parametrize(
    ("section", "path", "message"),
    [
        ("{relay: kernel}", "dataplane.relay", "'kernel' is not one of: auto, xdp, userspace"),
        ("{xdp_mode: offload}", "dataplane.xdp_mode", "'offload' is not one of: auto, native, generic"),
        ("{pin_dir: bpf/sbc}", "dataplane.pin_dir", "is not an absolute path"),
        ("{mode: xdp}", "dataplane.mode", "unknown key 'mode'"),
    ],
)
def test_wrong_values_are_reported_with_their_line(section: str, path: str, message: str) -> None:
    text = BASE + f"dataplane: {section}\n"
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "sbc.yaml")
    (problem,) = info.value.problems
    assert (problem.path, problem.line) == (path, len(text.splitlines()))
    assert message in problem.message


def test_a_change_waits_for_a_restart() -> None:
    old = load_config_text(BASE, "sbc.yaml")
    new = load_config_text(BASE + "dataplane: {relay: userspace}\n", "sbc.yaml")
    assert restart_required(old, new) == ["dataplane"]
    live = live_part(old, new)
    assert live is not None and live.dataplane == old.dataplane


def test_the_environment_overrides_the_config_and_says_so() -> None:
    configured = DataplaneSettings(RelayChoice.XDP, Path("/sys/fs/bpf/sbc"), XdpAttach.AUTO)
    chosen = with_environment(configured, {"SBC_DATAPLANE": "userspace", "SBC_XDP_MODE": "Native", "OTHER": "x"})
    assert chosen.settings == DataplaneSettings(RelayChoice.USERSPACE, Path("/sys/fs/bpf/sbc"), XdpAttach.NATIVE)
    assert chosen.origin("relay") == "SBC_DATAPLANE=userspace"
    assert chosen.origin("xdp_mode") == "SBC_XDP_MODE=Native"
    assert chosen.origin("pin_dir") == "dataplane.pin_dir=/sys/fs/bpf/sbc"  # from the config
    assert with_environment(configured, {"SBC_BPF_PIN_DIR": "/sys/fs/bpf/t"}).settings.pin_dir == Path("/sys/fs/bpf/t")


def test_empty_variables_change_nothing_and_bad_ones_are_named() -> None:
    configured = DataplaneSettings()
    assert with_environment(configured, {"SBC_DATAPLANE": " ", "SBC_XDP_MODE": ""}).settings == configured
    with pytest.raises(ValueError, match=r"SBC_XDP_MODE='offload': expected one of auto, native, generic"):
        with_environment(configured, {"SBC_XDP_MODE": "offload"})
    with pytest.raises(ValueError, match=r"SBC_DATAPLANE='bpf'"):
        with_environment(configured, {"SBC_DATAPLANE": "bpf"})


def test_who_loads_the_program_is_read_and_overridden_by_the_environment() -> None:
    assert load_config_text(BASE, "sbc.yaml").dataplane.loader is BpfLoader.SELF
    external = load_config_text(BASE + "dataplane: {loader: external}\n", "sbc.yaml").dataplane
    assert external == DataplaneSettings(loader=BpfLoader.EXTERNAL)
    # sbc.service in the image sets the variable: a provisioned config without the key still gets it
    chosen = with_environment(DataplaneSettings(), {"SBC_BPF_LOADER": "external"})
    assert chosen.settings.loader is BpfLoader.EXTERNAL
    assert chosen.origin("loader") == "SBC_BPF_LOADER=external"
    assert with_environment(external, {}).origin("loader") == "dataplane.loader=external"
    with pytest.raises(ValueError, match=r"SBC_BPF_LOADER='kernel': expected one of self, external"):
        with_environment(DataplaneSettings(), {"SBC_BPF_LOADER": "kernel"})
    with pytest.raises(ConfigError) as info:
        load_config_text(BASE + "dataplane: {loader: bpftool}\n", "sbc.yaml")
    assert "'bpftool' is not one of: self, external" in info.value.problems[0].message
