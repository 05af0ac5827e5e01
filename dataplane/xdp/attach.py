"""Attach and detach the relay program on an interface over netlink (pyroute2).

IFLA_XDP carries the program fd and the mode flags. The kernel reads the fd from the
sending process's table, so a netlink socket opened inside another network namespace
(IPRoute(netns=...)) still works with our fd. Detaching must name the mode it was
attached with: a detach with the other mode is a silent no-op, so both calls check
the result.
"""

from __future__ import annotations

from enum import IntFlag, StrEnum
from typing import Any

from pyroute2 import IPRoute

from dataplane.xdp.bpfsys import BpfFd


class XdpFlag(IntFlag):
    """XDP_FLAGS_* (include/uapi/linux/if_link.h)."""

    UPDATE_IF_NOEXIST = 1 << 0
    SKB_MODE = 1 << 1
    DRV_MODE = 1 << 2
    HW_MODE = 1 << 3
    REPLACE = 1 << 4


class XdpMode(StrEnum):
    NATIVE = "native"  # in the driver (veth, most 10G+ NICs)
    GENERIC = "generic"  # after the skb is built: works everywhere, no speed gain

    @property
    def flag(self) -> XdpFlag:
        return XdpFlag.DRV_MODE if self is XdpMode.NATIVE else XdpFlag.SKB_MODE

    @property
    def attached_name(self) -> str:
        """How IFLA_XDP_ATTACHED reports this mode (pyroute2's names)."""
        return "xdp" if self is XdpMode.NATIVE else "xdpgeneric"


class AttachError(RuntimeError):
    pass


def _index(ipr: Any, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise AttachError(f"no interface {ifname}")
    return int(found[0])


def _xdp_state(ipr: Any, index: int) -> tuple[str | None, int | None]:
    """(attached mode name, program id) of an interface."""
    xdp = ipr.get_links(index)[0].get_attr("IFLA_XDP") or {"attrs": []}
    attrs = dict(xdp["attrs"])
    return attrs.get("IFLA_XDP_ATTACHED"), attrs.get("IFLA_XDP_PROG_ID")


def _set_xdp(ipr: Any, index: int, fd: int, flags: XdpFlag) -> None:
    ipr.link("set", index=index, xdp={"attrs": [("IFLA_XDP_FD", fd), ("IFLA_XDP_FLAGS", int(flags))]})


def attach(ifname: str, prog: BpfFd, mode: XdpMode = XdpMode.NATIVE, *, netns: str | None = None) -> int:
    """Attach (or atomically replace) the program; returns the interface index."""
    with IPRoute(netns=netns) as ipr:
        index = _index(ipr, ifname)
        try:
            _set_xdp(ipr, index, prog.fd, mode.flag)
        except Exception as exc:  # pyroute2 raises NetlinkError (an OSError) with the errno
            raise AttachError(
                f"attaching XDP ({mode}) to {ifname}: {exc}; by hand: ip link set dev {ifname} "
                f"{'xdpdrv' if mode is XdpMode.NATIVE else 'xdpgeneric'} pinned <pin>"
            ) from exc
        attached, _ = _xdp_state(ipr, index)
        if attached != mode.attached_name:
            raise AttachError(f"{ifname}: XDP reported as {attached!r} after attaching in {mode} mode")
        return index


def detach(ifname: str, mode: XdpMode = XdpMode.NATIVE, *, netns: str | None = None) -> None:
    """Detach whatever program is attached in `mode`; an error if one stays attached."""
    with IPRoute(netns=netns) as ipr:
        index = _index(ipr, ifname)
        _set_xdp(ipr, index, -1, mode.flag)
        attached, prog_id = _xdp_state(ipr, index)
        if attached == mode.attached_name:
            raise AttachError(f"{ifname}: program {prog_id} still attached in {mode} mode")


def attached_prog_id(ifname: str, *, netns: str | None = None) -> int | None:
    with IPRoute(netns=netns) as ipr:
        _, prog_id = _xdp_state(ipr, _index(ipr, ifname))
        return prog_id
