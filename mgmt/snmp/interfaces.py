"""The box's network interfaces for IF-MIB's ifTable, read from /sys/class/net and /proc/net/dev."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

# IANAifType values (RFC 2863 refers to the IANA registry)
IF_TYPE_OTHER = 1
IF_TYPE_ETHERNET = 6
IF_TYPE_LOOPBACK = 24
IF_TYPE_TUNNEL = 131
_ARPHRD_TO_IFTYPE = {1: IF_TYPE_ETHERNET, 772: IF_TYPE_LOOPBACK, 768: IF_TYPE_TUNNEL, 776: IF_TYPE_TUNNEL}

# ifOperStatus (RFC 2863)
OPER_UP, OPER_DOWN, OPER_TESTING, OPER_UNKNOWN, OPER_DORMANT, OPER_NOT_PRESENT, OPER_LOWER_DOWN = 1, 2, 3, 4, 5, 6, 7
_OPERSTATE = {
    "up": OPER_UP,
    "down": OPER_DOWN,
    "testing": OPER_TESTING,
    "unknown": OPER_UNKNOWN,
    "dormant": OPER_DORMANT,
    "notpresent": OPER_NOT_PRESENT,
    "lowerlayerdown": OPER_LOWER_DOWN,
}
IFF_UP = 0x1


@dataclass(frozen=True, slots=True)
class Interface:
    index: int
    name: str
    if_type: int
    mtu: int
    speed_bps: int
    phys_address: bytes
    admin_up: bool
    oper_status: int
    in_octets: int
    out_octets: int


def parse_proc_net_dev(text: str) -> dict[str, tuple[int, int]]:
    """Interface name -> (received bytes, transmitted bytes) from /proc/net/dev."""
    out: dict[str, tuple[int, int]] = {}
    for line in text.splitlines()[2:]:  # two header lines
        name, sep, rest = line.partition(":")
        fields = rest.split()
        if not sep or len(fields) < 9:
            continue
        with contextlib.suppress(ValueError):
            out[name.strip()] = (int(fields[0]), int(fields[8]))
    return out


def oper_status(operstate: str, flags: int) -> int:
    """ifOperStatus; the kernel says `unknown` for interfaces without carrier detection (lo, tun):
    those are up when administratively up."""
    status = _OPERSTATE.get(operstate.strip().lower(), OPER_UNKNOWN)
    if status == OPER_UNKNOWN and flags & IFF_UP:
        return OPER_UP
    return status


def parse_mac(text: str) -> bytes:
    with contextlib.suppress(ValueError):
        return bytes.fromhex(text.strip().replace(":", ""))
    return b""


def read_interfaces(
    sys_net: Path = Path("/sys/class/net"), proc_net_dev: Path = Path("/proc/net/dev")
) -> list[Interface]:
    try:
        counters = parse_proc_net_dev(proc_net_dev.read_text())
    except OSError:
        counters = {}
    out: list[Interface] = []
    try:
        entries = sorted(sys_net.iterdir())
    except OSError:
        return out
    for entry in entries:
        index = _read_int(entry / "ifindex")
        if index <= 0:
            continue
        flags = _read_int(entry / "flags", base=16)
        speed_mbps = _read_int(entry / "speed")  # reading it fails (EINVAL) on virtual interfaces
        rx, tx = counters.get(entry.name, (0, 0))
        out.append(
            Interface(
                index=index,
                name=entry.name,
                if_type=_ARPHRD_TO_IFTYPE.get(_read_int(entry / "type"), IF_TYPE_OTHER),
                mtu=_read_int(entry / "mtu"),
                speed_bps=max(speed_mbps, 0) * 1_000_000,
                phys_address=parse_mac(_read_text(entry / "address")),
                admin_up=bool(flags & IFF_UP),
                oper_status=oper_status(_read_text(entry / "operstate"), flags),
                in_octets=rx,
                out_octets=tx,
            )
        )
    return sorted(out, key=lambda i: i.index)


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _read_int(path: Path, base: int = 10) -> int:
    text = _read_text(path).strip()
    try:
        return int(text, base)
    except ValueError:
        return 0
