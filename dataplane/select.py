"""Which relay the SBC runs: `try_xdp(config, loop)` answers with an `XdpRelay` or the reason why not.

`sbc.app.make_dataplane` calls it and falls back to the userspace relay with the reason (a
`Fallback`: its kind and the details), which `sbc status` shows. The checks, cheapest first: root,
the bpf() syscall on this architecture, a bpf filesystem (mounted if missing), the clang-built object
(built when clang is there and the object is missing or older than its sources), bpftool, and media
addresses on real interfaces (XDP on `lo` offloads nothing: the loopback-only default config stays on
the userspace relay).

Environment:
* `SBC_DATAPLANE=userspace|xdp|auto` (default auto): `userspace` never tries XDP; `xdp` raises
  `XdpStartError` (an OSError: `sbc run` prints it and exits 1) instead of falling back.
* `SBC_BPF_PIN_DIR`: bpffs directory of the pinned program and maps (default /sys/fs/bpf/sbc); tests
  use their own so they never touch a running SBC's pins.
* `SBC_XDP_MODE=native|generic`: force the attach mode (default: native, else generic).
"""

from __future__ import annotations

import asyncio
import os
import platform
from typing import TYPE_CHECKING

from dataplane.api import Fallback, FallbackReason

if TYPE_CHECKING:
    from dataplane.xdp.relay import XdpRelay
    from sbc.config.model import SbcConfig

__all__ = ["ENV_MODE", "ENV_PIN_DIR", "ENV_XDP_MODE", "try_xdp", "xdp_unavailable"]

ENV_MODE = "SBC_DATAPLANE"
ENV_PIN_DIR = "SBC_BPF_PIN_DIR"
ENV_XDP_MODE = "SBC_XDP_MODE"


def xdp_unavailable(config: SbcConfig) -> Fallback | None:
    """Why XDP cannot run here (None: it can). Builds the object if clang can."""
    if not _bpf_privileged():
        # nor with CAP_BPF and CAP_NET_ADMIN, as sbc.service in the image runs
        return Fallback(FallbackReason.NOT_PRIVILEGED, "not root")
    if platform.machine() not in ("x86_64", "aarch64", "arm64"):
        return Fallback(FallbackReason.NO_BPF_SYSCALL, f"no bpf() syscall number known for {platform.machine()}")
    from dataplane.xdp import loader
    from dataplane.xdp.tool import ToolError, missing_tools

    try:
        loader.ensure_bpffs()
    except (ToolError, OSError) as exc:
        return Fallback(FallbackReason.NO_BPFFS, f"no bpf filesystem: {exc}")
    if missing_tools("clang") is None:
        try:
            loader.build()
        except ToolError as exc:
            return Fallback(FallbackReason.NO_OBJECT, f"building the XDP object failed: {exc}")
    elif not loader.OBJECT.exists():
        return Fallback(FallbackReason.NO_OBJECT, f"{loader.OBJECT.name} is not built and clang is not installed")
    missing = missing_tools("bpftool")
    if missing:
        return Fallback(FallbackReason.MISSING_TOOL, missing)
    return _media_on_lo(config)


CAP_NET_ADMIN = 12
CAP_BPF = 39


def _bpf_privileged() -> bool:
    """Root, or what sbc.service grants its own user instead: CAP_BPF and CAP_NET_ADMIN effective."""
    if os.geteuid() == 0:
        return True
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    effective = int(line.split()[1], 16)
                    return all(effective >> cap & 1 for cap in (CAP_BPF, CAP_NET_ADMIN))
    except (OSError, ValueError):
        pass
    return False


def _media_on_lo(config: SbcConfig) -> Fallback | None:
    for realm in config.realms:
        if realm.media.address.is_loopback:
            detail = f"media address {realm.media.address} of realm {realm.name} is on loopback: nothing to offload"
            return Fallback(FallbackReason.MEDIA_ON_LOOPBACK, detail)
    return None


def try_xdp(config: SbcConfig, loop: asyncio.AbstractEventLoop) -> XdpRelay | Fallback:
    """The started XdpRelay, or why the userspace relay runs instead."""
    from dataplane.xdp.relay import XdpRelay, XdpStartError

    choice = os.environ.get(ENV_MODE, "auto").strip().lower() or "auto"
    if choice not in ("auto", "xdp", "userspace"):
        raise XdpStartError(f"{ENV_MODE}={choice!r}: expected userspace, xdp or auto")
    if choice == "userspace":
        return Fallback(FallbackReason.CHOSEN, f"{ENV_MODE}=userspace")
    reason = xdp_unavailable(config)
    if reason is None:
        from dataplane.xdp.attach import XdpMode

        mode_text = os.environ.get(ENV_XDP_MODE, "").strip().lower()
        try:
            mode = XdpMode(mode_text) if mode_text else None
        except ValueError:
            raise XdpStartError(f"{ENV_XDP_MODE}={mode_text!r}: expected native or generic") from None
        addresses = list(dict.fromkeys(r.media.address for r in config.realms))
        try:
            return XdpRelay.start(loop, addresses, pin_dir=os.environ.get(ENV_PIN_DIR) or None, xdp_mode=mode)
        except Exception as exc:
            reason = Fallback(FallbackReason.START_FAILED, f"XDP start failed: {exc}")
    if choice == "xdp":
        raise XdpStartError(f"{ENV_MODE}=xdp but XDP is unavailable: {reason}")
    return reason
