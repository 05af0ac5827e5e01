"""Which relay the SBC runs: `try_xdp(settings, addresses, loop)` answers with an `XdpRelay` and what
it chose, or with the reason it cannot run XDP.

`sbc.app.make_dataplane` calls it with the config's `dataplane:` section (environment overrides
applied: `dataplane.settings`) and falls back to the userspace relay with the reason (a `Fallback`:
its kind and the details), which `sbc status` shows. The checks, cheapest first. When `sbc run` loads the program itself
(`dataplane.loader: self`): root (or CAP_BPF + CAP_NET_ADMIN), the bpf() syscall on this
architecture, a bpf filesystem (mounted if missing), the object built by `make bpf` (never compiled
here: the image carries it prebuilt and has no compiler), bpftool. When a privileged step loaded it
(`external`, sbc.service in the image): CAP_BPF and the step's pins. Both: media addresses on real
interfaces (XDP on `lo` offloads nothing: the loopback-only default config stays on the userspace
relay).
"""

from __future__ import annotations

import asyncio
import os
import platform
from collections.abc import Sequence
from typing import TYPE_CHECKING

from dataplane.api import Fallback, FallbackReason, IPAddress
from dataplane.settings import BpfLoader, Overridden, RelayChoice

if TYPE_CHECKING:
    from dataplane.xdp.relay import XdpRelay

__all__ = ["try_xdp", "xdp_unavailable"]


def xdp_unavailable(media_addresses: Sequence[IPAddress], chosen: Overridden) -> Fallback | None:
    """Why XDP cannot run here (None: it can)."""
    external = chosen.settings.loader is BpfLoader.EXTERNAL
    if external and not _capable(CAP_BPF):
        detail = f"no CAP_BPF to open the pinned maps ({chosen.origin('loader')})"
        return Fallback(FallbackReason.NOT_PRIVILEGED, detail)
    if not external and not _capable(CAP_BPF, CAP_NET_ADMIN):
        return Fallback(FallbackReason.NOT_PRIVILEGED, "not root")  # nor with CAP_BPF and CAP_NET_ADMIN
    if platform.machine() not in ("x86_64", "aarch64", "arm64"):
        return Fallback(FallbackReason.NO_BPF_SYSCALL, f"no bpf() syscall number known for {platform.machine()}")
    from dataplane.xdp import abi, loader
    from dataplane.xdp.tool import ToolError, missing_tools

    if external:
        if not (chosen.settings.pin_dir / abi.PROG_PIN_NAME).exists():
            detail = (
                f"nothing pinned in {chosen.settings.pin_dir}: with {chosen.origin('loader')} the prepare step "
                "loads the relay (`sbc prepare-dataplane`, sbc-dataplane.service)"
            )
            return Fallback(FallbackReason.NOT_PREPARED, detail)
        return _media_on_lo(media_addresses)
    try:
        loader.ensure_bpffs()
    except (ToolError, OSError) as exc:
        return Fallback(FallbackReason.NO_BPFFS, f"no bpf filesystem: {exc}")
    try:
        loader.require_object()
    except loader.ObjectMissing as exc:
        return Fallback(FallbackReason.NO_OBJECT, str(exc))
    missing = missing_tools("bpftool")
    if missing:
        return Fallback(FallbackReason.MISSING_TOOL, missing)
    return _media_on_lo(media_addresses)


CAP_NET_ADMIN = 12
CAP_BPF = 39


def _capable(*caps: int) -> bool:
    """Root, or these capabilities effective (what sbc.service grants its own user instead)."""
    if os.geteuid() == 0:
        return True
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    effective = int(line.split()[1], 16)
                    return all(effective >> cap & 1 for cap in caps)
    except (OSError, ValueError):
        pass
    return False


def _media_on_lo(addresses: Sequence[IPAddress]) -> Fallback | None:
    for address in addresses:
        if address.is_loopback:
            detail = f"media address {address} is on loopback: nothing to offload"
            return Fallback(FallbackReason.MEDIA_ON_LOOPBACK, detail)
    return None


def try_xdp(
    chosen: Overridden, media_addresses: Sequence[IPAddress], loop: asyncio.AbstractEventLoop
) -> XdpRelay | Fallback:
    """The started XdpRelay (its `describe()` says what it attached where and why), or why the
    userspace relay runs instead. Raises `XdpStartError` when the relay is set to `xdp` and XDP cannot
    run."""
    from dataplane.xdp.relay import XdpRelay, XdpStartError

    settings = chosen.settings
    if settings.relay is RelayChoice.USERSPACE:
        return Fallback(FallbackReason.CHOSEN, chosen.origin("relay"))
    addresses = list(dict.fromkeys(media_addresses))
    reason = xdp_unavailable(addresses, chosen)
    if reason is None:
        try:
            relay = XdpRelay.start(
                loop,
                addresses,
                pin_dir=settings.pin_dir,
                xdp_mode=settings.xdp_mode,
                mode_origin=chosen.origin("xdp_mode"),
                bpf_loader=settings.loader,
            )
        except Exception as exc:
            reason = Fallback(FallbackReason.START_FAILED, f"XDP start failed: {exc}")
        else:
            return relay
    if settings.relay is RelayChoice.XDP:
        raise XdpStartError(f"{chosen.origin('relay')} but XDP is unavailable: {reason}")
    return reason
