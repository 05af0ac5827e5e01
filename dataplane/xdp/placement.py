"""Where the relay program runs: the interfaces that hold the media addresses, the XDP mode on each
and why that mode.

Two sides use it. Whoever loads the program attaches it (`attach_program`): `sbc run` itself with
`dataplane.loader: self`, or the privileged prepare step (`dataplane.xdp.prepare`) with `external`.
With `external`, `sbc run` has no CAP_NET_ADMIN and only checks what the step attached
(`attached_program`), so both describe an interface's mode with the same reasons.

Every function takes a pyroute2 `IPRoute` first (`ipr`): the relay calls them on its netlink thread
(`netlink.Netlink.call`), the prepare step with an `IPRoute` of its own.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dataplane.api import IPAddress
from dataplane.settings import XdpAttach
from dataplane.xdp import attach, netlink
from dataplane.xdp.attach import XdpMode
from dataplane.xdp.bpfsys import BpfFd

__all__ = [
    "VETH_GENERIC_WHY",
    "AttachedInterface",
    "XdpStartError",
    "attach_program",
    "attached_program",
    "foreign_attachments",
    "media_interfaces",
]

log = logging.getLogger("sbc.dataplane.xdp")


class XdpStartError(OSError):
    """The XDP relay cannot run here (the message says why)."""


@dataclass(frozen=True, slots=True)
class AttachedInterface:
    name: str
    index: int
    mode: XdpMode
    kind: str
    attached_by_us: bool  # False: the program was already attached (adopted after a restart, or the prepare step's)
    why: str = ""  # why this mode: forced by the settings, a veth, the driver's refusal, adopted

    def describe(self) -> str:
        return f"{self.name} {self.mode} ({self.why})" if self.why else f"{self.name} {self.mode}"


# A veth sends what XDP_TX or a devmap redirect gives it in native mode only when its peer has NAPI
# (GRO on, or an XDP program of its own); otherwise the frames are dropped without a trace. The SBC
# can neither see nor set that on the far side, so on a veth it attaches in generic (SKB) mode,
# which delivers whatever the peer is.
VETH_GENERIC_WHY = "veth: native mode drops the frames the program sends unless the peer has NAPI"
# AUTO on a NIC whose driver refused native mode when the program was attached
_NATIVE_REFUSED = "the driver refused native mode"


def media_interfaces(ipr: Any, addresses: Iterable[IPAddress]) -> list[netlink.Interface]:
    """The interfaces holding `addresses`, each once; XdpStartError for an address on none or on lo."""
    found: dict[int, netlink.Interface] = {}
    for address in addresses:
        address = ipaddress.ip_address(address)
        iface = netlink.interface_of(ipr, address)
        if iface is None:
            raise XdpStartError(f"media address {address} is on no interface")
        if iface.kind == "loopback":
            raise XdpStartError(f"media address {address} is on the loopback interface: XDP has nothing to offload")
        found[iface.index] = iface
    return list(found.values())


def _candidates(iface: netlink.Interface, wanted: XdpAttach, origin: str) -> list[tuple[XdpMode, str]]:
    """The modes to try in order, each with why (empty: generic after native was refused)."""
    if wanted is XdpAttach.NATIVE:
        return [(XdpMode.NATIVE, f"forced: {origin}")]
    if wanted is XdpAttach.GENERIC:
        return [(XdpMode.GENERIC, f"forced: {origin}")]
    if iface.kind == "veth":
        return [(XdpMode.GENERIC, VETH_GENERIC_WHY)]
    return [(XdpMode.NATIVE, "in the driver"), (XdpMode.GENERIC, "")]


def _attached(ipr: Any, index: int) -> tuple[XdpMode | None, int | None]:
    """(mode, program id) of what runs on interface `index`, (None, None) for nothing."""
    mode_name, prog_id = attach._xdp_state(ipr, index)
    for mode in XdpMode:
        if mode_name == mode.attached_name:
            return mode, prog_id
    return None, prog_id


def attach_program(
    ipr: Any, iface: netlink.Interface, prog: BpfFd, prog_id: int, wanted: XdpAttach, origin: str
) -> AttachedInterface:
    """Attach `prog` (id `prog_id`) to `iface` in the mode `wanted` asks for, unless it runs there in
    that mode already (then it is left alone: packets keep flowing)."""
    candidates = _candidates(iface, wanted, origin)
    mode, current = _attached(ipr, iface.index)
    if current == prog_id and mode is not None:
        if wanted is XdpAttach.AUTO and mode in {m for m, _ in candidates}:
            return AttachedInterface(iface.name, iface.index, mode, iface.kind, False, "attached before, adopted")
        if mode is candidates[0][0]:
            return AttachedInterface(iface.name, iface.index, mode, iface.kind, False, candidates[0][1])
        # attached before in the mode not wanted now (e.g. native on a veth by an older version,
        # which delivered nothing): one mode at a time, so detach first
        log.warning("xdp: %s: switching from %s to %s mode", iface.name, mode, candidates[0][0])
        attach.detach(iface.name, mode)
    errors = []
    for mode, why in candidates:
        try:
            attach.attach(iface.name, prog, mode)
        except attach.AttachError as exc:
            errors.append(str(exc))
            continue
        if not why:  # generic after native was refused
            why = f"{_NATIVE_REFUSED}: {errors[-1]}" if errors else "generic"
        log.info("xdp: attached %s in %s mode (%s)", iface.name, mode, why)
        return AttachedInterface(iface.name, iface.index, mode, iface.kind, True, why)
    raise XdpStartError("; ".join(errors))


def attached_program(
    ipr: Any, iface: netlink.Interface, prog_id: int, wanted: XdpAttach, origin: str
) -> AttachedInterface:
    """What the prepare step attached to `iface`: program `prog_id` in some mode, described with the
    reason that mode is chosen; XdpStartError when it does not run there (this side cannot attach)."""
    mode, current = _attached(ipr, iface.index)
    if current != prog_id or mode is None:
        found = "nothing is attached" if current is None else f"program {current} is attached"
        raise XdpStartError(
            f"{iface.name}: {found}, not the pinned relay (program {prog_id}); with dataplane.loader=external "
            "the prepare step attaches it (`sbc prepare-dataplane`, sbc-dataplane.service)"
        )
    reasons = {m: why for m, why in reversed(_candidates(iface, wanted, origin))}
    why = reasons.get(mode)
    if why is None:
        why = "attached before in a mode the settings do not ask for"
    return AttachedInterface(iface.name, iface.index, mode, iface.kind, False, why or _NATIVE_REFUSED)


def foreign_attachments(ipr: Any, prog_ids: Iterable[int], keep: Iterable[int]) -> list[AttachedInterface]:
    """Interfaces other than `keep` (indexes) that run one of `prog_ids`: media addresses the config
    no longer names (or the relay's previous program, after a reload)."""
    ours, kept = set(prog_ids), set(keep)
    out = []
    for msg in ipr.get_links():
        index = int(msg["index"])
        if index in kept:
            continue
        mode, current = _attached(ipr, index)
        if current in ours and mode is not None:
            iface = netlink.link(ipr, index)
            out.append(AttachedInterface(iface.name, index, mode, iface.kind, False, "no media address here"))
    return out
