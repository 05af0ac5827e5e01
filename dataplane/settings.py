"""Which relay runs and how the XDP program is attached: the `dataplane:` section of the config,
with the process environment as an override (tests and one-off runs change it without a new file).

The config model (`sbc.config.model.SbcConfig.dataplane`) holds a `DataplaneSettings`; the shell hands
it, after `with_environment`, to `dataplane.select.try_xdp`. Pure values: nothing here touches the
kernel.

Environment overrides (each one replaces the config's value when set and not empty):
* `SBC_DATAPLANE=auto|xdp|userspace` -> `relay`
* `SBC_BPF_PIN_DIR=PATH` -> `pin_dir`
* `SBC_XDP_MODE=auto|native|generic` -> `xdp_mode`
* `SBC_BPF_LOADER=self|external` -> `loader` (sbc.service in the image sets `external`)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from dataplane.xdp.abi import PIN_DIR

__all__ = [
    "DEFAULT_PIN_DIR",
    "ENV_LOADER",
    "ENV_MODE",
    "ENV_PIN_DIR",
    "ENV_XDP_MODE",
    "BpfLoader",
    "DataplaneSettings",
    "Overridden",
    "RelayChoice",
    "XdpAttach",
    "with_environment",
]

ENV_MODE = "SBC_DATAPLANE"
ENV_PIN_DIR = "SBC_BPF_PIN_DIR"
ENV_XDP_MODE = "SBC_XDP_MODE"
ENV_LOADER = "SBC_BPF_LOADER"
DEFAULT_PIN_DIR = Path(PIN_DIR)  # the image's tmpfiles.d creates it for sbc.service


class RelayChoice(StrEnum):
    AUTO = "auto"  # XDP when this machine can run it, else the userspace relay (with the reason)
    XDP = "xdp"  # XDP or refuse to start
    USERSPACE = "userspace"  # never try XDP


class XdpAttach(StrEnum):
    """How the program is attached to each media interface."""

    # native in the driver where that delivers what the program sends, generic (SKB) on veths: a veth
    # drops frames sent with XDP_TX or redirected into it unless its peer has NAPI (GRO on or an XDP
    # program of its own), which the SBC can neither see nor set from its side
    AUTO = "auto"
    NATIVE = "native"  # forced everywhere, veths included (the peer must have NAPI)
    GENERIC = "generic"  # forced everywhere: works on any interface, without the driver's speed


class BpfLoader(StrEnum):
    """Who loads, pins and attaches the XDP program."""

    # `sbc run` itself (root, or CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN): a developer's or a test's run
    SELF = "self"
    # a privileged step before it (`sbc prepare-dataplane`, sbc-dataplane.service in the image);
    # `sbc run` only opens the pinned maps and, before it touches the network, confines its own bpf()
    # calls to map access (`dataplane.xdp.syscall_filter`): a bug in the code that parses the
    # networks' input cannot load a program
    EXTERNAL = "external"


@dataclass(frozen=True, slots=True)
class DataplaneSettings:
    relay: RelayChoice = RelayChoice.AUTO
    pin_dir: Path = DEFAULT_PIN_DIR
    xdp_mode: XdpAttach = XdpAttach.AUTO
    loader: BpfLoader = BpfLoader.SELF


@dataclass(frozen=True, slots=True)
class Overridden:
    """Settings after the environment's overrides, and which fields it overrode ("relay" ->
    "SBC_DATAPLANE=userspace"), so that a reason can name where a choice came from."""

    settings: DataplaneSettings
    by_environment: Mapping[str, str]

    def origin(self, name: str) -> str:
        """`ENV=value` when the environment set field `name`, else `dataplane.NAME=value` (the config)."""
        return self.by_environment.get(name) or f"dataplane.{name}={getattr(self.settings, name)}"


def with_environment(settings: DataplaneSettings, environ: Mapping[str, str]) -> Overridden:
    """`settings` with the environment's overrides applied; ValueError names a bad variable."""
    notes: dict[str, str] = {}

    def given(variable: str, name: str) -> str | None:
        text = environ.get(variable, "").strip()
        if text:
            notes[name] = f"{variable}={text}"
        return text or None

    relay, pin_dir, xdp_mode, loader = settings.relay, settings.pin_dir, settings.xdp_mode, settings.loader
    if (text := given(ENV_MODE, "relay")) is not None:
        relay = _parse(RelayChoice, ENV_MODE, text)
    if (text := given(ENV_PIN_DIR, "pin_dir")) is not None:
        pin_dir = Path(text)
    if (text := given(ENV_XDP_MODE, "xdp_mode")) is not None:
        xdp_mode = _parse(XdpAttach, ENV_XDP_MODE, text)
    if (text := given(ENV_LOADER, "loader")) is not None:
        loader = _parse(BpfLoader, ENV_LOADER, text)
    changed = replace(settings, relay=relay, pin_dir=pin_dir, xdp_mode=xdp_mode, loader=loader)
    return Overridden(changed, notes)


_Choice = TypeVar("_Choice", RelayChoice, XdpAttach, BpfLoader)


def _parse(cls: type[_Choice], variable: str, text: str) -> _Choice:
    try:
        return cls(text.lower())
    except ValueError:
        raise ValueError(f"{variable}={text!r}: expected one of {', '.join(cls)}") from None
