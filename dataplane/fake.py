"""`FakeDataplane`: a `Dataplane` without sockets, for unit tests of the SIP core.

It hands out port pairs from the requested range the way the real relays do (even RTP port, RTCP on
the next one, rotating order, `PortsExhausted` when the range is full), records every call, keeps the
current programs and connections, and returns whatever `LegStats` the test told it to.
"""

from __future__ import annotations

import copy
import ipaddress
import itertools
from typing import TYPE_CHECKING

from dataplane.api import (
    AnchorPort,
    DataplaneCounters,
    DataplaneMode,
    IPAddress,
    LegProgram,
    LegStats,
    PortsExhausted,
)

if TYPE_CHECKING:
    from dataplane.api import Dataplane

__all__ = ["FakeDataplane"]


class FakeDataplane:
    """Records: `allocated`, `programs` (anchor, leg), `connects` (a, b), `disconnects`, `releases`,
    and `calls` (method name and arguments, in order). State: `legs` (anchor_id -> current program),
    `partners` (anchor_id -> anchor_id), `live` (anchor_id -> AnchorPort). Stats: `set_stats`."""

    def __init__(self, mode: DataplaneMode = DataplaneMode.USERSPACE) -> None:
        self._mode = mode
        self._ids = itertools.count(1)
        self._cursor: dict[tuple[str, str], int] = {}
        self._in_use: set[tuple[str, int]] = set()
        self._stats: dict[int, LegStats] = {}
        self.calls: list[tuple[str, tuple[object, ...]]] = []
        self.allocated: list[AnchorPort] = []
        self.programs: list[tuple[AnchorPort, LegProgram]] = []
        self.connects: list[tuple[AnchorPort, AnchorPort]] = []
        self.disconnects: list[AnchorPort] = []
        self.releases: list[AnchorPort] = []
        self.live: dict[int, AnchorPort] = {}
        self.legs: dict[int, LegProgram] = {}
        self.partners: dict[int, int] = {}
        self.closed = False

    @property
    def mode(self) -> DataplaneMode:
        return self._mode

    def allocate(self, realm: str, address: IPAddress, port_min: int, port_max: int) -> AnchorPort:
        self.calls.append(("allocate", (realm, address, port_min, port_max)))
        address = ipaddress.ip_address(address)
        host = str(address)
        first = port_min + (port_min & 1)
        last = port_max - 1
        last -= last & 1
        pairs = (last - first) // 2 + 1 if last >= first else 0
        previous = self._cursor.get((realm, host))
        start = (previous - first) // 2 + 1 if previous is not None and first <= previous <= last else 0
        for i in range(pairs):
            port = first + 2 * ((start + i) % pairs)
            if (host, port) in self._in_use:
                continue
            self._in_use.add((host, port))
            self._cursor[(realm, host)] = port
            anchor = AnchorPort(anchor_id=next(self._ids), realm=realm, address=address, rtp_port=port)
            self.allocated.append(anchor)
            self.live[anchor.anchor_id] = anchor
            return anchor
        raise PortsExhausted(f"no free port pair on {host} in {port_min}-{port_max}")

    def allocate_at(self, realm: str, address: IPAddress, rtp_port: int) -> AnchorPort:
        """Take this exact pair again (a live call re-adopted after a restart); PortsExhausted if taken."""
        return self.allocate(realm, address, rtp_port, rtp_port + 1)

    def program(self, anchor: AnchorPort, leg: LegProgram) -> None:
        self.calls.append(("program", (anchor, leg)))
        self._check(anchor)
        self.programs.append((anchor, leg))
        self.legs[anchor.anchor_id] = leg

    def connect(self, a: AnchorPort, b: AnchorPort) -> None:
        self.calls.append(("connect", (a, b)))
        self._check(a)
        self._check(b)
        if a.anchor_id == b.anchor_id:
            raise ValueError("cannot connect an anchor to itself")
        self.connects.append((a, b))
        for anchor_id in (a.anchor_id, b.anchor_id):
            self._unlink(anchor_id)
        self.partners[a.anchor_id] = b.anchor_id
        self.partners[b.anchor_id] = a.anchor_id

    def disconnect(self, anchor: AnchorPort) -> None:
        self.calls.append(("disconnect", (anchor,)))
        self._check(anchor)
        self.disconnects.append(anchor)
        self._unlink(anchor.anchor_id)

    def release(self, anchor: AnchorPort) -> None:
        self.calls.append(("release", (anchor,)))
        self.releases.append(anchor)
        if self.live.pop(anchor.anchor_id, None) is None:
            return
        self._unlink(anchor.anchor_id)
        self.legs.pop(anchor.anchor_id, None)
        self._stats.pop(anchor.anchor_id, None)
        self._in_use.discard((str(anchor.address), anchor.rtp_port))

    def stats(self, anchor: AnchorPort) -> LegStats:
        self._check(anchor)
        return copy.deepcopy(self._stats.get(anchor.anchor_id, LegStats()))

    def counters(self) -> DataplaneCounters:
        """Sums of the stats the test set (relayed = packets sent toward the endpoints)."""
        out = [s for aid, s in self._stats.items() if aid in self.live]
        return DataplaneCounters(
            self._mode,
            relayed_packets=sum(s.packets_out for s in out),
            relayed_bytes=sum(s.bytes_out for s in out),
            dropped={
                "spoofed": sum(s.dropped_spoofed for s in out),
                "not_connected": sum(s.dropped_other for s in out),
            },
        )

    def close(self) -> None:
        self.calls.append(("close", ()))
        for anchor in list(self.live.values()):
            self.release(anchor)
        self.closed = True

    # -- test helpers -------------------------------------------------------------------------------

    def set_stats(self, anchor: AnchorPort, stats: LegStats) -> None:
        """What `stats(anchor)` returns from now on (a copy each time)."""
        self._check(anchor)
        self._stats[anchor.anchor_id] = stats

    def partner_of(self, anchor: AnchorPort) -> AnchorPort | None:
        partner = self.partners.get(anchor.anchor_id)
        return self.live[partner] if partner is not None else None

    def leg_of(self, anchor: AnchorPort) -> LegProgram | None:
        return self.legs.get(anchor.anchor_id)

    def _check(self, anchor: AnchorPort) -> None:
        if anchor.anchor_id not in self.live:
            raise KeyError(f"unknown or released anchor {anchor.anchor_id}")

    def _unlink(self, anchor_id: int) -> None:
        partner = self.partners.pop(anchor_id, None)
        if partner is not None and self.partners.get(partner) == anchor_id:
            del self.partners[partner]


if TYPE_CHECKING:

    def _conforms(fake: FakeDataplane) -> Dataplane:
        return fake
