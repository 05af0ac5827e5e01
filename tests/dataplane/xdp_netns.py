"""Network namespaces for the XDP relay tests: phone (A) -- SBC (M) -- far end (B).

    ns A  a0 198.18.1.2/24 ===veth=== m_a 198.18.1.1/24  ns M  m_b 198.18.2.1/24 ===veth=== b0 198.18.2.2/24  ns B

(Not "ma"/"mb": iproute2 takes "ma" for an abbreviation of its "master" keyword.)

Addresses come from the benchmarking range 198.18.0.0/15 (RFC 2544), and nothing is
routed outside the namespaces this module creates.
"""

from __future__ import annotations

import ctypes
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from dataplane.xdp.tool import run

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextmanager
def inside(netns: str) -> Iterator[None]:
    """Run the block with this thread in `netns`. setns(2) is per thread, and sockets
    and bpf() calls made here stay tied to that namespace (e.g. devmap ifindexes)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)


@dataclass(frozen=True)
class Link:
    netns: str
    name: str
    address: str
    ifindex: int
    mac: str


@dataclass(frozen=True)
class Topology:
    a: str
    m: str
    b: str
    a0: Link
    ma: Link
    mb: Link
    b0: Link

    def destroy(self) -> None:
        destroy_namespaces(self.a, self.m, self.b)


def _ip(netns: str, *args: str) -> str:
    return run(["ip", "-n", netns, *args])


def _link(netns: str, name: str, address: str) -> Link:
    info = json.loads(_ip(netns, "-j", "link", "show", "dev", name))[0]
    return Link(netns, name, address, int(info["ifindex"]), str(info["address"]))


def destroy_namespaces(*names: str) -> None:
    """Deleting a namespace deletes its veths, which detaches their XDP programs."""
    for name in names:
        if os.path.exists(f"/run/netns/{name}"):
            run(["ip", "netns", "del", name])


def build(tag: str) -> Topology:
    a, m, b = f"sbc-a-{tag}", f"sbc-m-{tag}", f"sbc-b-{tag}"
    destroy_namespaces(a, m, b)
    try:
        for ns in (a, m, b):
            run(["ip", "netns", "add", ns])
            _ip(ns, "link", "set", "dev", "lo", "up")
        _ip(a, "link", "add", "a0", "type", "veth", "peer", "name", "m_a", "netns", m)
        _ip(m, "link", "add", "m_b", "type", "veth", "peer", "name", "b0", "netns", b)
        for ns, dev, cidr in ((a, "a0", "198.18.1.2/24"), (m, "m_a", "198.18.1.1/24"),
                              (m, "m_b", "198.18.2.1/24"), (b, "b0", "198.18.2.2/24")):  # fmt: skip
            _ip(ns, "addr", "add", cidr, "dev", dev)
            _ip(ns, "link", "set", "dev", dev, "up")
        # The sender must put a full UDP checksum in the packet: with TX offload the
        # veth carries a partial one, which the relay's incremental update cannot finish.
        run(["ip", "netns", "exec", a, "ethtool", "-K", "a0", "tx", "off"])
        return Topology(
            a, m, b,
            a0=_link(a, "a0", "198.18.1.2"), ma=_link(m, "m_a", "198.18.1.1"),
            mb=_link(m, "m_b", "198.18.2.1"), b0=_link(b, "b0", "198.18.2.2"),
        )  # fmt: skip
    except BaseException:
        destroy_namespaces(a, m, b)
        raise


def sysctl(netns: str, key: str, value: str) -> None:
    run(["ip", "netns", "exec", netns, "sysctl", "-q", "-w", f"{key}={value}"])
