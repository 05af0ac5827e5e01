"""Netlink from inside an asyncio program: one worker thread that owns a pyroute2 `IPRoute`.

pyroute2 0.9's synchronous API runs its own event loop on the calling thread, so it cannot be used
from a thread whose loop is running (the SBC's): "This event loop is already running". The relay
therefore sends every netlink request to this thread and waits for the answer (a millisecond or
so; control calls only, never per packet). The thread is created by the constructor and inherits
the constructing thread's network namespace, which is the one every lookup and every devmap update
must be made in (a DEVMAP resolves ifindexes in the namespace of the process updating it).

`NextHops` answers "which interface and which MACs does a packet from our address S to D leave
with", from the routing table and the neighbour table, with small caches so a burst of new calls
does not dump the tables once per call.
"""

from __future__ import annotations

import ipaddress
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from pyroute2 import IPRoute

T = TypeVar("T")

# NUD_* (include/uapi/linux/neighbour.h): states whose link-layer address can be used.
NUD_INCOMPLETE = 0x01
NUD_FAILED = 0x20
_UNUSABLE = NUD_INCOMPLETE | NUD_FAILED
RTN_UNICAST = 1


class Netlink:
    """A thread with an `IPRoute`; `call(fn)` runs `fn(ipr)` there and returns its result."""

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[tuple[Callable[..., Any], Future[Any]] | None] = queue.SimpleQueue()
        started: Future[None] = Future()
        self._thread = threading.Thread(target=self._run, args=(started,), name="sbc-netlink", daemon=True)
        self._thread.start()
        started.result(timeout=10)
        self._closed = False

    def _run(self, started: Future[None]) -> None:
        try:
            ipr = IPRoute()
        except BaseException as exc:
            started.set_exception(exc)
            return
        started.set_result(None)
        try:
            while True:
                item = self._requests.get()
                if item is None:
                    return
                fn, fut = item
                if not fut.set_running_or_notify_cancel():
                    continue
                try:
                    fut.set_result(fn(ipr))
                except BaseException as exc:
                    fut.set_exception(exc)
        finally:
            ipr.close()

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = 10.0) -> T:
        """`fn(ipr, *args)` on the netlink thread."""
        if self._closed:
            raise RuntimeError("netlink worker is closed")
        fut: Future[T] = Future()
        self._requests.put(((lambda ipr: fn(ipr, *args)), fut))
        return fut.result(timeout=timeout)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._requests.put(None)
            self._thread.join(timeout=5)


@dataclass(frozen=True, slots=True)
class Interface:
    index: int
    name: str
    kind: str  # "veth", "loopback" (for lo), "" when the kernel reports no kind (physical NICs)
    mac: bytes


def interface_of(ipr: Any, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Interface | None:
    """The interface that holds `address`, or None."""
    for msg in ipr.get_addr():
        for attr in ("IFA_LOCAL", "IFA_ADDRESS"):
            value = msg.get_attr(attr)
            if value is not None and ipaddress.ip_address(value) == address:
                return link(ipr, int(msg["index"]))
    return None


def link(ipr: Any, index: int) -> Interface:
    msg = ipr.get_links(index)[0]
    info = msg.get_attr("IFLA_LINKINFO")
    kind = ""
    if info is not None:
        kind = dict(info["attrs"]).get("IFLA_INFO_KIND", "") or ""
    name = str(msg.get_attr("IFLA_IFNAME"))
    if name == "lo" or msg["flags"] & 0x8:  # IFF_LOOPBACK
        kind = "loopback"
    mac_text = msg.get_attr("IFLA_ADDRESS") or "00:00:00:00:00:00"
    return Interface(index, name, str(kind), bytes.fromhex(str(mac_text).replace(":", "")))


@dataclass(frozen=True, slots=True)
class NextHop:
    ifindex: int
    src_mac: bytes
    dst_mac: bytes


class NextHops:
    """Route + neighbour lookups for (our source address, destination), cached for `ttl_s`.

    `resolve` returns None while the next hop's MAC is unknown (no neighbour entry yet, or the route
    leads nowhere usable); the caller keeps that direction on the userspace path, whose own packets
    make the kernel resolve the neighbour, and asks again later.
    """

    def __init__(self, netlink: Netlink, ttl_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._netlink = netlink
        self._ttl = ttl_s
        self._clock = clock
        self._routes: dict[tuple[str, str], tuple[float, tuple[int, str] | None]] = {}
        self._neigh: dict[tuple[int, str], bytes] = {}
        self._neigh_at = -1e9
        self._links: dict[int, tuple[float, bytes]] = {}

    def resolve(self, src: str, dst: str) -> NextHop | None:
        now = self._clock()
        cached = self._routes.get((src, dst))
        if cached is None or now - cached[0] > self._ttl:
            route = self._netlink.call(lambda ipr: _route(ipr, src, dst))
            self._routes[(src, dst)] = (now, route)
        else:
            route = cached[1]
        if route is None:
            return None
        oif, nexthop = route
        mac = self._neighbour(oif, nexthop, now)
        if mac is None:
            return None
        link_cached = self._links.get(oif)
        if link_cached is None or now - link_cached[0] > self._ttl:
            own = self._netlink.call(lambda ipr: link(ipr, oif)).mac
            self._links[oif] = (now, own)
        else:
            own = link_cached[1]
        return NextHop(oif, own, mac)

    def _neighbour(self, oif: int, nexthop: str, now: float) -> bytes | None:
        mac = self._neigh.get((oif, nexthop))
        if (mac is None and now - self._neigh_at > 0.2) or now - self._neigh_at > self._ttl:
            self._neigh = self._netlink.call(_neighbours)
            self._neigh_at = now
            mac = self._neigh.get((oif, nexthop))
        return mac


def _route(ipr: Any, src: str, dst: str) -> tuple[int, str] | None:
    try:
        msg = ipr.route("get", dst=dst, src=src)[0]
    except Exception:  # NetlinkError: no route (ENETUNREACH), bad source...
        return None
    if msg["type"] != RTN_UNICAST:  # local, blackhole, unreachable...
        return None
    oif = msg.get_attr("RTA_OIF")
    if oif is None:
        return None
    gateway = msg.get_attr("RTA_GATEWAY")
    return int(oif), str(ipaddress.ip_address(gateway or dst))


def _neighbours(ipr: Any) -> dict[tuple[int, str], bytes]:
    out: dict[tuple[int, str], bytes] = {}
    for msg in ipr.get_neighbours():
        dst = msg.get_attr("NDA_DST")
        lladdr = msg.get_attr("NDA_LLADDR")
        if dst is None or lladdr is None or msg["state"] & _UNUSABLE or not msg["state"]:
            continue
        mac = bytes.fromhex(str(lladdr).replace(":", ""))
        if len(mac) == 6:
            out[(int(msg["ifindex"]), str(ipaddress.ip_address(dst)))] = mac
    return out
