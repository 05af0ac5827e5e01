"""`XdpRelay`: the `Dataplane` whose steady-state media never leaves the kernel.

Design: the userspace relay is the slow path, the XDP program the fast path.

* Every anchor is allocated by an embedded `UserspaceRelay` (the slow path): it binds the RTP and RTCP
  sockets, so the ports are reserved and whatever the XDP program passes up (first packets, unknown
  sources, packets the kernel cannot relay) lands on a socket and is handled with the userspace
  relay's exact rules (latching, RTP bleed protection, hold, DSCP, statistics).
* Each connected direction is offloaded to the session map as soon as both of its ends are known:
  the source the anchor accepts (the SDP endpoint for `Latch.SDP`; the latched source for
  `Latch.LEARN`, i.e. after the slow path latched on the first packet: it calls back synchronously
  through its latch callback) and the destination toward the partner (its latched source, or its
  SDP endpoint for a `Latch.SDP` partner). The XDP relay composes the userspace relay through its
  public API only: the latch callback (`on_latch`) and the anchor state (`anchor_state`,
  `restore_latches`). Entry for packets arriving at anchor X from X's endpoint:
  key (X address, X RTP port) [+ (X address, X RTCP port) unless rtcp-mux], expected source = the
  endpoint, new source = partner Y's anchor, destination = Y's endpoint, DSCP = Y's leg DSCP,
  egress = the route's output interface toward Y's endpoint, with its MAC and the next hop's MAC.
* RTCP toward another realm is rewritten (SDES CNAMEs replaced: `dataplane.rtcp`), which the program
  does not do: rewriting a compound packet changes its length and needs a loop over its items, and
  RTCP is a few packets a second per stream. So the RTCP port gets no entry (its packets go up to
  the slow path's socket) and, with rtcp-mux, the RTP-port entry has `RTCP_UP`: the program passes
  what RFC 5761 classifies as RTCP up and relays the RTP itself.
* Not offloaded (the slow path relays, with identical results): directions toward a held endpoint
  (`send_enabled=False`: the RTP-port entry is removed, RTCP keeps flowing), an
  rtcp-mux anchor whose partner is not muxed (the kernel cannot split one port's RTP and RTCP),
  anchors of different address families, LEARN legs before they latched, and next hops whose MAC
  the neighbour table does not know yet (the slow path's own packets make the kernel resolve it;
  a 1 s tick offloads them afterwards). `relatch=True` legs get the LATCH_ALLOWED flag instead of
  LATCHED, so a packet from a new source goes up to the slow path, which decides.
* MACs are resolved here rather than by `bpf_fib_lookup` in the program: the helper refuses unless
  IPv4/IPv6 forwarding is on for the ingress interface, and forwarding on would turn the SBC into a
  router between its realms (topology hiding and the whole point of a border element gone).
  The neighbour table is re-read every few seconds and changed MACs are rewritten in place.
* `stats()` merges the slow path's counters with the kernel's per-entry counters (read with one
  BPF_MAP_LOOKUP_BATCH per `stats_cache_s`) and the folded counters of entries removed earlier.
* Restarts: the maps and the program are pinned (`loader`), and `close()` leaves the program
  attached and every entry in place, so media of live calls keeps flowing while `sbc run` is down.
  A new `XdpRelay` adopts the pinned maps and the attached program; the entries it finds are
  *adopted*: `allocate_at` claims the entries of its two ports, and `program`/`connect` re-derive
  them from the restored legs; the slow path's latches are seeded from the entries' expected
  sources, so re-programming rewrites an entry in place (one atomic map update, no gap) or, when
  nothing changed, does not touch it at all. Entries nobody claimed within `adopt_grace_s` are
  deleted; `allocate` deletes an unclaimed entry on a port pair it hands out.
* `shutdown(detach=True)` is the full stop: delete this relay's entries, detach the program.
* Who loads: with `dataplane.loader: self` `start` loads, pins and attaches the program itself (root);
  with `external` a privileged step did that before (`dataplane.xdp.prepare`) and the relay only
  opens the pins and checks where the program runs (`placement.attached_program`): from then on
  every bpf() call it makes is a map access, which `dataplane.xdp.syscall_filter` lets it keep.

Thread model: like the userspace relay, everything runs on the event loop's thread; netlink requests
go to a worker thread (`netlink.Netlink`) and are waited for.
"""

from __future__ import annotations

import asyncio
import ctypes
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataplane.api import AnchorPort, DataplaneCounters, DataplaneMode, IPAddress, Latch, LegProgram, LegStats
from dataplane.settings import BpfLoader, XdpAttach
from dataplane.userspace import AnchorState, UserspaceRelay
from dataplane.xdp import abi, attach, bpfsys, netlink, placement
from dataplane.xdp.attach import XdpMode
from dataplane.xdp.loader import RelayObjects
from dataplane.xdp.placement import AttachedInterface, XdpStartError
from dataplane.xdp.tables import RelayTables

if TYPE_CHECKING:
    from dataplane.api import Dataplane

__all__ = ["AttachedInterface", "XdpRelay", "XdpStartError"]

log = logging.getLogger("sbc.dataplane.xdp")

Addr = tuple[str, int]
_STATS_SIZE = ctypes.sizeof(abi.SessionStats)
_STATS_OFFSET = abi.Session.stats.offset


@dataclass(slots=True)
class _Installed:
    """An entry this relay owns: which anchor receives on its key, whose endpoint it sends to."""

    anchor_id: int
    target_id: int | None  # None: adopted after a restart, not re-derived yet
    config: bytes  # the value with zeroed statistics: what a rewrite compares against


@dataclass(slots=True)
class _Folded:
    """Kernel counters of entries removed while their anchors lived (hold, latch reset, re-connect)."""

    packets_in: int = 0
    bytes_in: int = 0
    dropped: int = 0
    rtcp_in: int = 0
    rtp_expected: int = 0
    rtp_lost: int = 0
    packets_out: int = 0
    bytes_out: int = 0


@dataclass(slots=True)
class _Seed:
    rtp: Addr | None = None
    rtcp: Addr | None = None


@dataclass(slots=True)
class _Snapshot:
    at: float = -1e9
    entries: dict[bytes, abi.Session] = field(default_factory=dict)


def _key(address: IPAddress, port: int) -> bytes:
    return bytes(abi.SessionKey.of(address, port))


def _anchor_keys(anchor: AnchorPort) -> tuple[bytes, bytes]:
    return _key(anchor.address, anchor.rtp_port), _key(anchor.address, anchor.rtcp_port)


def _config_of(value: bytes) -> bytes:
    return value[:_STATS_OFFSET] + bytes(_STATS_SIZE) + value[_STATS_OFFSET + _STATS_SIZE :]


def _addr_of(ep: abi.Endpoint) -> Addr | None:
    address = ep.address()
    return None if address is None else (str(address), ep.host_port())


def _partner_id(a: AnchorState) -> int | None:
    return a.partner.anchor_id if a.partner is not None else None


def _detach(_ipr: Any, iface: AttachedInterface) -> None:
    attach.detach(iface.name, iface.mode)


def _egress_add(_ipr: Any, tables: RelayTables, ifindex: int) -> None:
    tables.egress.add(ifindex)


def _egress_remove(_ipr: Any, tables: RelayTables, ifindex: int) -> None:
    tables.egress.remove(ifindex)


class XdpRelay:
    """`Dataplane` with the XDP fast path; see the module docstring. Construct it through
    `dataplane.select.try_xdp` (or `XdpRelay.start`) from inside the running loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        objects: RelayObjects,
        media_addresses: Iterable[IPAddress],
        *,
        xdp_mode: XdpAttach = XdpAttach.AUTO,
        mode_origin: str = "",
        attach: bool = True,
        adopt_grace_s: float = 60.0,
        stats_cache_s: float = 0.2,
        tick_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Attach the program (already loaded and pinned: `objects`) to every interface holding one of
        `media_addresses` (`XdpAttach.AUTO`: generic on veths, else native when the driver has it, else
        generic; `xdp_mode` native or generic forces one, `mode_origin` says who forced it), or with
        `attach=False` check that the prepare step attached it there (`placement.attached_program`);
        fill the egress devmap and adopt the entries already in the session map."""
        self._loop = loop
        self._attaches = attach
        self._objects = objects
        self._tables = RelayTables(objects)
        self._clock = clock
        self._stats_cache_s = stats_cache_s
        self._tick_s = tick_s
        self._ticks = 0
        self._closed = False
        self._installed: dict[bytes, _Installed] = {}
        self._by_anchor: dict[int, set[bytes]] = {}
        self._by_target: dict[int, set[bytes]] = {}
        self._folded: dict[int, _Folded] = {}
        self._seeds: dict[int, _Seed] = {}
        self._adopting: set[int] = set()
        self._pending: set[int] = set()
        self._egress: set[int] = set()
        self._snapshot = _Snapshot()
        self._timers: list[asyncio.TimerHandle] = []
        self._netlink = netlink.Netlink()
        try:
            self._hops = netlink.NextHops(self._netlink, clock=clock)
            origin = mode_origin or f"xdp_mode {xdp_mode}"
            self.interfaces = self._place(media_addresses, xdp_mode, origin, attach)
            for iface in self.interfaces:
                self._add_egress(iface.index)
            self._adopted: dict[bytes, abi.Session] = {bytes(k): v for k, v in self._tables.sessions.items()}
        except BaseException:
            self._netlink.close()
            raise
        self._slow = UserspaceRelay(loop, on_latch=self._on_latch)
        if self._adopted:
            log.info("xdp: adopting %d pinned session entries", len(self._adopted))
            self._timers.append(loop.call_later(adopt_grace_s, self._sweep_unclaimed))
        self._schedule_tick()

    # -- construction helpers ----------------------------------------------------------------------

    def _place(
        self, addresses: Iterable[IPAddress], wanted: XdpAttach, origin: str, attach: bool
    ) -> list[AttachedInterface]:
        """Attach the program to the media interfaces (`attach`), or check that the prepare step did."""
        prog_id = bpfsys.prog_info(self._objects.prog).id
        out: list[AttachedInterface] = []
        for iface in self._netlink.call(placement.media_interfaces, list(addresses)):
            if attach:
                prog = self._objects.prog
                placed = self._netlink.call(placement.attach_program, iface, prog, prog_id, wanted, origin)
            else:
                placed = self._netlink.call(placement.attached_program, iface, prog_id, wanted, origin)
            out.append(placed)
            if iface.kind == "veth" and placed.mode is XdpMode.NATIVE:
                log.warning(
                    "xdp: %s is a veth in native mode (%s): its peer needs NAPI (GRO on, or an XDP program)"
                    " or the frames the program sends there vanish",
                    iface.name,
                    placed.why,
                )
        return out

    def describe(self) -> str:
        """What `sbc status` shows: where the program runs, in which mode, and why that mode."""
        text = "XDP on " + "; ".join(iface.describe() for iface in self.interfaces)
        return text if self._attaches else text + "; loaded and attached by the prepare step"

    def _add_egress(self, ifindex: int) -> None:
        if ifindex in self._egress:
            return
        # a DEVMAP resolves the ifindex in the updating thread's namespace: the netlink thread's
        self._netlink.call(_egress_add, self._tables, ifindex)
        self._egress.add(ifindex)

    # -- Dataplane ---------------------------------------------------------------------------------

    @property
    def mode(self) -> DataplaneMode:
        return DataplaneMode.XDP

    def allocate(self, realm: str, address: IPAddress, port_min: int, port_max: int) -> AnchorPort:
        anchor = self._slow.allocate(realm, address, port_min, port_max)
        for key in _anchor_keys(anchor):
            if self._adopted.pop(key, None) is not None:  # a stale entry of a call nobody re-adopted
                self._tables.sessions.delete(abi.SessionKey.from_buffer_copy(key))
        return anchor

    def allocate_at(self, realm: str, address: IPAddress, rtp_port: int) -> AnchorPort:
        anchor = self._slow.allocate_at(realm, address, rtp_port)
        rtp_key, rtcp_key = _anchor_keys(anchor)
        seed = _Seed()
        for key in (rtp_key, rtcp_key):
            entry = self._adopted.pop(key, None)
            if entry is None:
                continue
            self._index(key, _Installed(anchor.anchor_id, None, _config_of(bytes(entry))))
            if key == rtp_key:
                seed.rtp = _addr_of(entry.expected_src)
            else:
                seed.rtcp = _addr_of(entry.expected_src)
        if anchor.anchor_id in self._by_anchor:
            self._adopting.add(anchor.anchor_id)
            self._seeds[anchor.anchor_id] = seed
        return anchor

    def program(self, anchor: AnchorPort, leg: LegProgram) -> None:
        self._slow.program(anchor, leg)
        seed = self._seeds.pop(anchor.anchor_id, None)
        a = self._slow.anchor_state(anchor.anchor_id)
        assert a is not None
        if seed is not None and leg.remote_rtp is not None:
            learn = leg.latch is Latch.LEARN
            rtp = seed.rtp if seed.rtp is not None and (learn or seed.rtp == a.sdp_rtp) else None
            rtcp_ok = seed.rtcp is not None and not leg.rtcp_mux and (learn or seed.rtcp == a.sdp_rtcp)
            rtcp = seed.rtcp if rtcp_ok else None
            self._slow.restore_latches(anchor, rtp, rtcp)
        self._sync(anchor.anchor_id, _partner_id(a))

    def connect(self, a: AnchorPort, b: AnchorPort) -> None:
        previous = [
            p.anchor_id for p in (self._partner_of(a.anchor_id), self._partner_of(b.anchor_id)) if p is not None
        ]
        self._slow.connect(a, b)
        self._sync(a.anchor_id, b.anchor_id, *previous)

    def disconnect(self, anchor: AnchorPort) -> None:
        a = self._slow.anchor_state(anchor.anchor_id)
        partner = _partner_id(a) if a is not None else None
        self._slow.disconnect(anchor)
        self._adopting.discard(anchor.anchor_id)
        self._sync(anchor.anchor_id, partner)

    def release(self, anchor: AnchorPort) -> None:
        a = self._slow.anchor_state(anchor.anchor_id)
        if a is None:
            return
        partner = _partner_id(a)
        self._slow.release(anchor)
        self._adopting.discard(anchor.anchor_id)
        self._seeds.pop(anchor.anchor_id, None)
        self._pending.discard(anchor.anchor_id)
        for key in list(self._by_anchor.get(anchor.anchor_id, ())):
            self._remove(key, fold=False)
        self._folded.pop(anchor.anchor_id, None)
        self._sync(partner)

    def stats(self, anchor: AnchorPort) -> LegStats:
        st = self._slow.stats(anchor)
        aid = anchor.anchor_id
        entries = self._read_entries()
        overhead = 28 if anchor.address.version == 4 else 48  # the kernel counts IP bytes, userspace UDP payload
        folded = self._folded.get(aid, _Folded())
        k_in = folded.packets_in
        k_in_bytes = folded.bytes_in
        k_dropped = folded.dropped
        k_rtcp = folded.rtcp_in
        k_expected = folded.rtp_expected
        k_lost = folded.rtp_lost
        last_ns = 0
        rtp_key = _key(anchor.address, anchor.rtp_port)
        for key in self._by_anchor.get(aid, ()):
            e = entries.get(key)
            if e is None:
                continue
            k_in += e.stats.packets
            k_in_bytes += max(0, e.stats.bytes - overhead * e.stats.packets)
            k_dropped += e.stats.dropped
            k_rtcp += e.stats.rtcp_packets
            last_ns = max(last_ns, e.stats.last_seen_ns)
            if key == rtp_key and e.stats.rtp.received:
                rs = e.stats.rtp
                k_expected += rs.expected()
                k_lost += rs.lost()
                rate = e.clock_rate or abi.DEFAULT_CLOCK_RATE
                st.jitter_ms = rs.jitter_units() / rate * 1000.0
                st.ssrc = rs.ssrc
                st.payload_type = rs.payload_type
        k_out = folded.packets_out
        k_out_bytes = folded.bytes_out
        for key in self._by_target.get(aid, ()):
            e = entries.get(key)
            if e is not None:
                k_out += e.stats.packets
                k_out_bytes += max(0, e.stats.bytes - overhead * e.stats.packets)
        st.packets_in += k_in
        st.bytes_in += k_in_bytes
        st.packets_out += k_out
        st.bytes_out += k_out_bytes
        st.dropped_spoofed += k_dropped
        st.rtp_expected += k_expected
        st.rtp_lost += k_lost
        if last_ns:
            kernel_last = last_ns / 1e9
            st.last_in_s = kernel_last if st.last_in_s is None else max(st.last_in_s, kernel_last)
        st.in_kernel = bool(self._by_anchor.get(aid))
        st.extra.update(
            kernel_packets_in=k_in,
            kernel_packets_out=k_out,
            kernel_dropped_spoofed=k_dropped,
            kernel_rtcp_packets=k_rtcp,
        )
        return st

    def close(self) -> None:
        """Stop the control side only: sockets closed, program attached, entries kept (restart)."""
        if self._closed:
            return
        self._closed = True
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self._slow.close()
        self._netlink.close()
        self._objects.close()

    def shutdown(self, detach: bool = True) -> None:
        """Full stop: delete every entry this relay owns or adopted, detach what it attached (all
        interfaces it runs on when `detach`, unless the prepare step attached them), then `close()`."""
        if self._closed:
            return
        for key in list(self._installed):
            self._remove(key, fold=False)
        for key in list(self._adopted):
            self._tables.sessions.delete(abi.SessionKey.from_buffer_copy(key))
        self._adopted.clear()
        if detach and self._attaches:
            for iface in self.interfaces:
                try:
                    self._netlink.call(_detach, iface)
                except Exception as exc:  # keep going: the other interfaces still need detaching
                    log.warning("xdp: detaching %s: %s", iface.name, exc)
            for ifindex in list(self._egress):
                self._netlink.call(_egress_remove, self._tables, ifindex)
            self._egress.clear()
        self.close()

    # -- per-source blocklist (flood protection) ---------------------------------------------------

    def block_source(self, address: IPAddress | str, for_s: float | None = None) -> None:
        """Drop everything from `address` in the kernel before any other check, every port and
        protocol, for `for_s` seconds or until `unblock_source` (counted as dropped "blocked")."""
        expires_ns = 0 if for_s is None else max(1, time.monotonic_ns() + int(for_s * 1e9))  # CLOCK_MONOTONIC
        self._tables.blocklist.add(ipaddress.ip_address(address), expires_ns=expires_ns)

    def unblock_source(self, address: IPAddress | str) -> bool:
        return self._tables.blocklist.remove(ipaddress.ip_address(address))

    def blocked_sources(self) -> dict[IPAddress, tuple[float | None, int]]:
        """Blocked address -> (seconds left or None for no expiry, packets dropped so far)."""
        now = time.monotonic_ns()
        out: dict[IPAddress, tuple[float | None, int]] = {}
        for key, block in self._tables.blocklist.items():
            raw = bytes(key.addr)
            address: IPAddress = (
                ipaddress.IPv4Address(raw[:4]) if key.family == abi.AF_INET else ipaddress.IPv6Address(raw)
            )
            left = None if block.expires_ns == 0 else max(0.0, (block.expires_ns - now) / 1e9)
            out[address] = (left, block.drops)
        return out

    # -- introspection (tests, `sbc status` later) -------------------------------------------------

    def kernel_counters(self) -> dict[abi.Counter, int]:
        """The XDP program's per-CPU counters, summed."""
        return self._tables.counters.read()

    def counters(self) -> DataplaneCounters:
        k = self._tables.counters.read()
        slow = self._slow.counters()
        kernel_drops = {
            "spoofed": k[abi.Counter.DROPPED_SPOOFED],
            "blocked": k[abi.Counter.DROPPED_BLOCKED],
            "torn_down": k[abi.Counter.DROPPED_SESSION],
        }
        dropped = dict(slow.dropped)
        for reason, n in kernel_drops.items():
            dropped[reason] = dropped.get(reason, 0) + n
        return DataplaneCounters(
            DataplaneMode.XDP,
            relayed_packets=k[abi.Counter.RELAYED] + slow.relayed_packets,
            relayed_bytes=k[abi.Counter.RELAYED_BYTES] + slow.relayed_bytes,
            dropped=dropped,
            slow_path=slow.slow_path,
            kernel={c.name.lower(): n for c, n in k.items()},
        )

    def offloaded(self, anchor: AnchorPort) -> list[abi.Session]:
        """The entries installed for packets arriving at `anchor` (RTP port first)."""
        out = []
        for key in _anchor_keys(anchor):
            if key in self._installed:
                s = self._tables.sessions.get(abi.SessionKey.from_buffer_copy(key))
                if s is not None:
                    out.append(s)
        return out

    @property
    def adopted_unclaimed(self) -> int:
        return len(self._adopted)

    # -- synchronisation of the session map with the slow path's state -----------------------------

    def _partner_of(self, anchor_id: int) -> AnchorPort | None:
        a = self._slow.anchor_state(anchor_id)
        return a.partner if a is not None else None

    def _on_latch(self, anchor_id: int) -> None:
        """The slow path latched a source of this anchor: its direction (and the partner's, which
        sends toward the latched source) may be offloadable now."""
        a = self._slow.anchor_state(anchor_id)
        if a is not None:
            self._sync(anchor_id, _partner_id(a))

    def _sync(self, *anchor_ids: int | None) -> None:
        if self._closed:
            return
        for aid in dict.fromkeys(i for i in anchor_ids if i is not None):
            self._sync_one(aid)

    def _sync_one(self, aid: int) -> None:
        a = self._slow.anchor_state(aid)
        current = set(self._by_anchor.get(aid, ()))
        desired = self._desired(a) if a is not None else {}
        pending = False
        for key, want in desired.items():
            if want is None:
                pending = True  # next hop unknown: keep what is installed, offload later
                continue
            target, session = want
            self._put(aid, key, target, session)
        if pending:
            self._pending.add(aid)
        else:
            self._pending.discard(aid)
        stale = current - desired.keys()
        if aid in self._adopting:
            if not stale:
                self._adopting.discard(aid)  # every adopted entry is re-derived: normal rules from now on
            return
        for key in stale:
            self._remove(key)

    def _desired(self, a: AnchorState) -> dict[bytes, tuple[int, abi.Session] | None]:
        """Entries for packets arriving at `a`: key -> (target anchor id, value), None = next hop pending."""
        leg = a.leg
        b = self._slow.anchor_state(a.partner.anchor_id) if a.partner is not None else None
        if leg is None or leg.remote_rtp is None or b is None or b.leg is None:
            return {}
        if a.port.address.version != b.port.address.version:
            return {}  # IPv4 <-> IPv6: the slow path translates, the program cannot
        out: dict[bytes, tuple[int, abi.Session] | None] = {}
        sdp_a = leg.latch is Latch.SDP
        sdp_b = b.leg.latch is Latch.SDP
        flags = abi.SessionFlag.LATCH_ALLOWED if leg.latch is Latch.LEARN and leg.relatch else abi.SessionFlag.LATCHED
        if a.rewrites_rtcp and leg.rtcp_mux:
            flags |= abi.SessionFlag.RTCP_UP  # its RTCP shares the RTP port: the program tells them apart
        dst_rtp = b.dst_rtp if b.dst_rtp is not None and (b.latched_rtp is not None or sdp_b) else None
        # RTP port (and RTCP with rtcp-mux, when the partner muxes too)
        if b.send_enabled and not (leg.rtcp_mux and not b.leg.rtcp_mux):
            src = a.latched_rtp or (a.sdp_rtp if sdp_a else None)
            if src is not None and dst_rtp is not None:
                out[_key(a.port.address, a.port.rtp_port)] = self._entry(a, b, src, dst_rtp, b.port.rtp_port, flags)
        if not leg.rtcp_mux and not a.rewrites_rtcp:  # rewritten RTCP: the slow path relays it
            src = a.latched_rtcp or (a.sdp_rtcp if sdp_a else None)
            if b.leg.rtcp_mux:
                dst, port = dst_rtp, b.port.rtp_port
            else:
                ok = b.dst_rtcp is not None and (b.latched_rtcp is not None or sdp_b)
                dst, port = (b.dst_rtcp if ok else None), b.port.rtcp_port
            if src is not None and dst is not None:
                out[_key(a.port.address, a.port.rtcp_port)] = self._entry(
                    a, b, src, dst, port, flags | abi.SessionFlag.RTCP
                )
        return out

    def _entry(
        self, a: AnchorState, b: AnchorState, src: Addr, dst: Addr, new_port: int, flags: int
    ) -> tuple[int, abi.Session] | None:
        assert a.leg is not None and b.leg is not None
        hop = self._hops.resolve(str(b.port.address), dst[0])
        if hop is None:
            return None
        self._add_egress(hop.ifindex)
        session = abi.Session(
            flags=flags,
            egress_ifindex=hop.ifindex,
            expected_src=abi.Endpoint.of(*src),
            dst=abi.Endpoint.of(*dst),
            new_src=abi.Endpoint.of(b.port.address, new_port),
            dscp=b.leg.dscp,
            clock_rate=a.leg.clock_rate,
        )
        session.set_macs(hop.src_mac, hop.dst_mac)
        return b.port.anchor_id, session

    def _index(self, key: bytes, inst: _Installed) -> None:
        old = self._installed.get(key)
        if old is not None:
            self._by_anchor.get(old.anchor_id, set()).discard(key)
            if old.target_id is not None:
                self._by_target.get(old.target_id, set()).discard(key)
        self._installed[key] = inst
        self._by_anchor.setdefault(inst.anchor_id, set()).add(key)
        if inst.target_id is not None:
            self._by_target.setdefault(inst.target_id, set()).add(key)

    def _put(self, aid: int, key: bytes, target: int, session: abi.Session) -> None:
        config = bytes(session)  # statistics are zero in a fresh value
        inst = self._installed.get(key)
        if inst is not None and inst.anchor_id == aid and inst.config == config:
            if inst.target_id != target:
                self._index(key, _Installed(aid, target, config))
            return
        ckey = abi.SessionKey.from_buffer_copy(key)
        if inst is not None:
            old = self._tables.sessions.get(ckey)
            if old is not None:
                if inst.anchor_id == aid and inst.target_id in (target, None):
                    session.stats = old.stats  # rewritten in place: counters and RTP state go on
                else:
                    self._fold(inst, old)
        self._tables.sessions.put(ckey, session)  # one atomic replace: no packet sees a missing entry
        self._index(key, _Installed(aid, target, config))
        self._snapshot.at = -1e9

    def _remove(self, key: bytes, *, fold: bool = True) -> None:
        inst = self._installed.pop(key, None)
        if inst is None:
            return
        self._by_anchor.get(inst.anchor_id, set()).discard(key)
        if inst.target_id is not None:
            self._by_target.get(inst.target_id, set()).discard(key)
        ckey = abi.SessionKey.from_buffer_copy(key)
        if fold:
            old = self._tables.sessions.get(ckey)
            if old is not None:
                self._fold(inst, old)
        self._tables.sessions.delete(ckey)
        self._snapshot.at = -1e9

    def _fold(self, inst: _Installed, old: abi.Session) -> None:
        family_overhead = 28 if old.new_src.family == abi.AF_INET else 48
        s = old.stats
        payload = max(0, s.bytes - family_overhead * s.packets)
        if self._slow.anchor_state(inst.anchor_id) is not None:
            f = self._folded.setdefault(inst.anchor_id, _Folded())
            f.packets_in += s.packets
            f.bytes_in += payload
            f.dropped += s.dropped
            f.rtcp_in += s.rtcp_packets
            if not old.flags & abi.SessionFlag.RTCP and s.rtp.received:
                f.rtp_expected += s.rtp.expected()
                f.rtp_lost += s.rtp.lost()
        if inst.target_id is not None and self._slow.anchor_state(inst.target_id) is not None:
            t = self._folded.setdefault(inst.target_id, _Folded())
            t.packets_out += s.packets
            t.bytes_out += payload

    def _read_entries(self) -> dict[bytes, abi.Session]:
        now = self._clock()
        if now - self._snapshot.at > self._stats_cache_s:
            self._snapshot = _Snapshot(now, {bytes(k): v for k, v in self._tables.sessions.items()})
        return self._snapshot.entries

    # -- timers ------------------------------------------------------------------------------------

    def _schedule_tick(self) -> None:
        if not self._closed:
            self._timers = [t for t in self._timers if not t.cancelled()]
            self._timers.append(self._loop.call_later(self._tick_s, self._tick))

    def _tick(self) -> None:
        """Offload what waited for a next hop; re-check every entry's MACs (cached lookups)."""
        try:
            self._ticks += 1
            if self._ticks % 10 == 0:
                self._sync(*self._slow.anchor_ids())
            elif self._pending:
                self._sync(*list(self._pending))
        except Exception:  # a failed lookup must not stop the ticks
            log.exception("xdp: periodic synchronisation failed")
        self._schedule_tick()

    def _sweep_unclaimed(self) -> None:
        """The grace period after a restart is over: entries no call re-adopted are stale."""
        for key in list(self._adopted):
            self._tables.sessions.delete(abi.SessionKey.from_buffer_copy(key))
        if self._adopted:
            log.info("xdp: removed %d pinned entries no call re-adopted", len(self._adopted))
        self._adopted.clear()
        adopting, self._adopting = self._adopting, set()
        self._sync(*adopting)

    @classmethod
    def start(
        cls,
        loop: asyncio.AbstractEventLoop,
        media_addresses: Sequence[IPAddress],
        *,
        pin_dir: Path | str | None = None,
        xdp_mode: XdpAttach = XdpAttach.AUTO,
        mode_origin: str = "",
        bpf_loader: BpfLoader = BpfLoader.SELF,
        adopt_grace_s: float = 60.0,
    ) -> XdpRelay:
        """Load (or adopt) the pinned program and maps, then construct the relay. With
        `BpfLoader.EXTERNAL` only open the pins the prepare step made (no program is loaded here)."""
        from dataplane.xdp import loader

        pins = Path(pin_dir or abi.PIN_DIR)
        external = bpf_loader is BpfLoader.EXTERNAL
        objects = loader.open_pinned(pins) if external else loader.load(loader.OBJECT, pins)
        try:
            return cls(
                loop,
                objects,
                media_addresses,
                xdp_mode=xdp_mode,
                mode_origin=mode_origin,
                attach=not external,
                adopt_grace_s=adopt_grace_s,
            )
        except BaseException:
            objects.close()
            raise


if TYPE_CHECKING:

    def _conforms(relay: XdpRelay) -> Dataplane:
        return relay
