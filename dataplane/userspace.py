"""Userspace media relay: the `Dataplane` implementation on plain UDP sockets and an asyncio loop.

It is the fallback when XDP is not available, and the reference behaviour the XDP relay matches.
Everything runs on the event loop's thread: the control calls (allocate, program, connect, ...) are
synchronous table updates, and packets are relayed from `loop.add_reader` callbacks, so there are no
coroutines, no locks, and the object is not thread-safe.

Readiness: the anchors' sockets are registered in one epoll set of the relay's own, and only that
set's descriptor is registered with the event loop. Setting up and tearing down an anchor is then
one `epoll_ctl` per socket instead of the loop's reader bookkeeping (a callback handle and a selector
key per socket, created and dropped for every call), which cost about 4% of an SBC's CPU time at a
few hundred calls per second. Where `select.epoll` is missing, each socket is a reader of the loop.

Per packet (hot path): `recvfrom_into` a preallocated buffer (at most 64 packets per readiness
callback, so one busy port cannot starve the others), check that the leg is programmed and connected,
check the source against the latched/SDP endpoint, count, feed RTP to `RtpStatistics`, `sendto` out of
the partner anchor's socket toward the partner's endpoint.

Policy details (the parts `dataplane.api` leaves open):

* Source checks (RTP bleed / media hijack protection). `Latch.SDP`: RTP is accepted only from the
  SDP's address and port, RTCP only from the SDP's RTCP endpoint (`remote_rtcp`, else RTP port + 1;
  with rtcp-mux the RTP endpoint). `Latch.LEARN`: the first RTP source seen within `latch_window_s`
  after the leg was (re)programmed latches (address and port); if nothing arrived in the window, the
  SDP endpoint is accepted (and latched) as with `Latch.SDP`. RTCP of a LEARN leg latches separately
  (NATs map it to another port), because RTCP often starts later than the window: once RTP is
  latched, the first RTCP from the same *address* latches; before that, the first RTCP source within
  the window, or the SDP RTCP endpoint. With rtcp-mux, RTCP shares the RTP latch.
* Once latched, a leg never moves to another source, except with `relatch=True` on a LEARN leg: an
  RTP packet (version 2, not RTCP) from another source whose SSRC is new (neither the stream's current
  SSRC nor one the latch already moved away from, so two sources cannot make it flap) moves the latch
  there (counted in `extra["relatched"]`) and the RTCP latch is learned again.
  This follows an endpoint that restarts its stream from a new address/port (e.g. NAT rebinding after
  a Wi-Fi roam) at the price of letting anyone who can guess the port take the stream over: opt-in.
  `relatch` is ignored for `Latch.SDP`, where only the SDP endpoint is ever accepted.
* Re-programming keeps the sockets and ports, and keeps the latch unless the SDP endpoint changed
  (compared with the last endpoint that was not `None`, so hold with `c=0.0.0.0` and resume to the
  same address keeps the latch) or the latch mode changed; a reset latch restarts the learning window.
* Packets that arrive while the leg is not programmed, has no endpoint (`remote_rtp` None) or no
  partner are counted in `dropped_other` (before any source check, so they never latch). Packets
  that fail the source check are counted in `dropped_spoofed`. Neither is in `packets_in`, and only
  accepted RTP feeds the quality statistics.
* The destination toward an endpoint is its latched source if latched (symmetric RTP, RFC 4961),
  else its SDP endpoint. Toward an endpoint whose `remote_rtp` is None nothing is sent
  (`extra["not_sent_no_endpoint"]` of that anchor).
* `send_enabled=False` (this endpoint put the stream on hold): RTP toward it is not sent and is
  counted in that anchor's `extra["not_sent_hold"]`; RTCP still flows both ways (RFC 3264 §5.1 keeps
  RTCP running for sendonly/recvonly/inactive streams, and it keeps NAT bindings open). Packets
  *from* a held endpoint are still relayed (music on hold).
* RTCP toward another realm (the partner anchor's realm is not this anchor's) loses its SDES CNAMEs
  (RFC 3550 §6.5.1: phones put their inside address there): each is replaced by an opaque token of
  fixed length and the length fields are fixed (`dataplane.rtcp`); counted in the receiving
  anchor's `extra["rtcp_cnames_scrubbed"]`. A packet that does not parse (SRTCP) goes on unchanged.
* DSCP: IP_TOS / IPV6_TCLASS = dscp << 2 (ECN bits 0) on both sockets of an anchor when it is
  programmed, so packets sent toward an endpoint carry that endpoint's leg's DSCP.
* Addresses are compared as the kernel reports them; IPv6 link-local endpoints (with a zone) are not
  supported. IPv6 sockets are V6ONLY, so an IPv4 endpoint needs an IPv4 anchor (ValueError otherwise).
* Quality statistics use the RTP clock rate of the static payload type (`quality.CLOCK_RATES`) and,
  for dynamic payload types (96-127), the negotiated `LegProgram.clock_rate` of the leg the stream
  arrives on (e.g. 48000 for Opus), so jitter in milliseconds is right for both.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import itertools
import os
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dataplane.api import (
    AnchorPort,
    DataplaneCounters,
    DataplaneMode,
    Endpoint,
    IPAddress,
    Latch,
    LegProgram,
    LegStats,
    PortsExhausted,
)
from dataplane.quality import CLOCK_RATES, RtpStatistics
from dataplane.rtcp import CnameTokens, scrub_cnames

if TYPE_CHECKING:
    from dataplane.api import Dataplane

__all__ = ["AnchorState", "LatchCallback", "RelayTotals", "UserspaceRelay"]

MAX_BATCH = 64  # packets read per readiness callback before yielding to the loop
_MAX_RETIRED_SSRCS = 64
_BUFSIZE = 65536  # a UDP datagram never exceeds this: nothing is ever truncated

Addr = tuple[str, int]
LatchCallback = Callable[[int], None]  # called with the anchor id after a packet (re)latched a source


@dataclass(slots=True)
class RelayTotals:
    """Relay-wide counters, summed over all anchors ever allocated (they survive `release`)."""

    relayed_packets: int = 0
    relayed_bytes: int = 0
    dropped_spoofed: int = 0
    dropped_other: int = 0
    not_sent: int = 0  # accepted but not sent: destination on hold or without endpoint
    send_errors: int = 0
    recv_errors: int = 0
    anchors: int = 0  # currently allocated


@dataclass(frozen=True, slots=True)
class AnchorState:
    """What the relay knows about one anchor at the moment it is asked: its leg, its partner, where
    it accepts media from and where it sends toward its endpoint (`UserspaceRelay.anchor_state`)."""

    port: AnchorPort
    leg: LegProgram | None
    partner: AnchorPort | None
    sdp_rtp: Addr | None  # the endpoint the SDP names (None: no endpoint yet, or on hold with 0.0.0.0)
    sdp_rtcp: Addr | None
    latched_rtp: Addr | None  # the source a packet latched (None: nothing latched yet)
    latched_rtcp: Addr | None
    dst_rtp: Addr | None  # where RTP toward this anchor's endpoint goes: latched source, else SDP
    dst_rtcp: Addr | None
    send_enabled: bool  # False: this endpoint holds the stream, RTP toward it is not sent
    rewrites_rtcp: bool  # RTCP arriving here is rewritten before it goes on (CNAMEs, another realm)


class _Anchor:
    """Everything the relay knows about one anchor; the hot path reads the precomputed fields."""

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "dropped_other",
        "dropped_spoofed",
        "dst_rtcp",
        "dst_rtp",
        "host",
        "last_in_s",
        "last_remote_rtcp",
        "last_remote_rtp",
        "latched_endpoint",
        "latched_rtcp",
        "latched_rtp",
        "leg",
        "not_sent_hold",
        "not_sent_no_endpoint",
        "packets_in",
        "packets_out",
        "partner",
        "port",
        "quality",
        "relatched",
        "retired_ssrcs",
        "rtcp",
        "rtcp_out",
        "rtcp_scrubbed",
        "rtp",
        "scrub_rtcp",
        "sdp_rtcp",
        "sdp_rtp",
        "send_enabled",
        "send_errors",
        "window_start",
    )

    def __init__(self, port: AnchorPort, rtp: socket.socket, rtcp: socket.socket) -> None:
        self.port = port
        self.host = str(port.address)
        self.rtp = rtp
        self.rtcp = rtcp
        self.leg: LegProgram | None = None
        self.partner: _Anchor | None = None
        self.window_start = 0.0
        # derived from the leg (see UserspaceRelay._refresh)
        self.sdp_rtp: Addr | None = None
        self.sdp_rtcp: Addr | None = None
        self.last_remote_rtp: Endpoint | None = None
        self.last_remote_rtcp: Endpoint | None = None
        self.latched_rtp: Addr | None = None
        self.latched_rtcp: Addr | None = None
        self.latched_endpoint: Endpoint | None = None
        self.dst_rtp: Addr | None = None
        self.dst_rtcp: Addr | None = None
        self.rtcp_out = rtcp
        self.send_enabled = True
        self.scrub_rtcp = False  # the partner is in another realm: RTCP from here loses its CNAMEs
        # counters
        self.packets_in = 0
        self.bytes_in = 0
        self.packets_out = 0
        self.bytes_out = 0
        self.dropped_spoofed = 0
        self.dropped_other = 0
        self.not_sent_hold = 0
        self.not_sent_no_endpoint = 0
        self.send_errors = 0
        self.relatched = 0
        self.rtcp_scrubbed = 0  # RTCP packets from this endpoint sent on with their CNAMEs replaced
        self.retired_ssrcs: set[int] = set()  # SSRCs of sources the latch moved away from
        self.last_in_s: float | None = None
        self.quality = RtpStatistics()


def _addr(ep: Endpoint) -> Addr:
    return (str(ep.address), ep.port)


class UserspaceRelay:
    """`Dataplane` on UDP sockets driven by `loop.add_reader`; see the module docstring for the rules."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_batch: int = MAX_BATCH,
        on_latch: LatchCallback | None = None,
        cname_tokens: CnameTokens | None = None,
    ) -> None:
        """`loop` defaults to the running loop (so construct it from inside the loop when omitted);
        `clock` is the monotonic clock used for latching windows and `last_in_s`; `on_latch` is told
        (synchronously, on the loop's thread) whenever a packet latches or relatches a source;
        `cname_tokens` replaces the CNAMEs of RTCP crossing realms (default: a fresh random key)."""
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self._on_latch = on_latch
        self._cname_tokens = cname_tokens if cname_tokens is not None else CnameTokens(os.urandom(16))
        self._clock = clock
        self._max_batch = max_batch
        self._anchors: dict[int, _Anchor] = {}
        self._in_use: set[Addr] = set()  # (host, rtp_port) of our own anchors
        self._cursor: dict[tuple[str, str], int] = {}  # (realm, host) -> last allocated RTP port
        self._ids = itertools.count(1)
        self._buf = bytearray(_BUFSIZE)
        self._view = memoryview(self._buf)
        self._totals = RelayTotals()
        self._closed = False
        # fd -> (anchor, socket, is the RTCP port): what the epoll set reports readable
        self._readers: dict[int, tuple[_Anchor, socket.socket, bool]] = {}
        self._epoll: select.epoll | None = None  # opened with the first anchor

    @property
    def mode(self) -> DataplaneMode:
        return DataplaneMode.USERSPACE

    # -- control ------------------------------------------------------------------------------------

    def allocate(self, realm: str, address: IPAddress, port_min: int, port_max: int) -> AnchorPort:
        """Bind RTP on an even port and RTCP on the next one, trying the range's pairs in rotating order
        starting after the pair allocated last in this realm on this address."""
        if self._closed:
            raise RuntimeError("relay is closed")
        if not 0 < port_min <= port_max <= 65535:
            raise ValueError(f"bad port range {port_min}-{port_max}")
        address = ipaddress.ip_address(address)
        host = str(address)
        first = port_min + (port_min & 1)
        last = port_max - 1  # the RTCP port (RTP + 1) must be in the range too
        last -= last & 1
        if first > last:
            raise PortsExhausted(f"{host} {port_min}-{port_max} holds no RTP/RTCP port pair")
        pairs = (last - first) // 2 + 1
        key = (realm, host)
        previous = self._cursor.get(key)
        start = (previous - first) // 2 + 1 if previous is not None and first <= previous <= last else 0
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        for i in range(pairs):
            port = first + 2 * ((start + i) % pairs)
            if (host, port) in self._in_use:
                continue
            socks = _bind_pair(family, host, port)
            if socks is None:
                continue
            self._cursor[key] = port
            anchor_port = AnchorPort(anchor_id=next(self._ids), realm=realm, address=address, rtp_port=port)
            anchor = _Anchor(anchor_port, *socks)
            try:
                self._add_reader(anchor, socks[0], False)
                self._add_reader(anchor, socks[1], True)
            except BaseException:
                self._remove_readers(anchor)
                socks[0].close()
                socks[1].close()
                raise
            self._anchors[anchor_port.anchor_id] = anchor
            self._in_use.add((host, port))
            self._totals.anchors += 1
            return anchor_port
        raise PortsExhausted(f"no free RTP/RTCP port pair on {host} in {port_min}-{port_max}")

    def allocate_at(self, realm: str, address: IPAddress, rtp_port: int) -> AnchorPort:
        """Take this exact pair again (a live call re-adopted after a restart); PortsExhausted if taken."""
        return self.allocate(realm, address, rtp_port, rtp_port + 1)

    def program(self, anchor: AnchorPort, leg: LegProgram) -> None:
        a = self._get(anchor)
        family_version = a.port.address.version
        for ep in (leg.remote_rtp, leg.remote_rtcp):
            if ep is not None and ep.address.version != family_version:
                raise ValueError(f"endpoint {ep} is not reachable from anchor {a.host} (address family)")
        if not 0 <= leg.dscp <= 63:
            raise ValueError(f"bad DSCP {leg.dscp}")
        if not 0 < leg.clock_rate <= 0xFFFFFFFF:
            raise ValueError(f"bad RTP clock rate {leg.clock_rate}")
        old = a.leg
        if old is None or old.dscp != leg.dscp:
            _set_dscp(a, leg.dscp)
        now = self._clock()
        reset_rtp = (
            old is None
            or old.latch is not leg.latch
            or (leg.remote_rtp is not None and leg.remote_rtp != a.last_remote_rtp)
        )
        reset_rtcp = (
            reset_rtp
            or (old is not None and old.rtcp_mux != leg.rtcp_mux)
            or (leg.remote_rtcp is not None and leg.remote_rtcp != a.last_remote_rtcp)
        )
        if reset_rtp:
            a.latched_rtp = None
            a.latched_endpoint = None
            a.window_start = now
        if reset_rtcp:
            a.latched_rtcp = None
        if leg.remote_rtp is not None:
            a.last_remote_rtp = leg.remote_rtp
        if leg.remote_rtcp is not None:
            a.last_remote_rtcp = leg.remote_rtcp
        a.leg = leg
        self._refresh(a)

    def connect(self, a: AnchorPort, b: AnchorPort) -> None:
        """Relay between `a` and `b`; either one's previous partner (if another) is left unconnected."""
        x = self._get(a)
        y = self._get(b)
        if x is y:
            raise ValueError("cannot connect an anchor to itself")
        if x.partner is y:
            return
        _unlink(x)
        _unlink(y)
        x.partner = y
        y.partner = x
        x.scrub_rtcp = y.scrub_rtcp = x.port.realm != y.port.realm

    def disconnect(self, anchor: AnchorPort) -> None:
        _unlink(self._get(anchor))

    def release(self, anchor: AnchorPort) -> None:
        """Stop relaying, close both sockets, forget the anchor. Releasing twice is harmless."""
        a = self._anchors.pop(anchor.anchor_id, None)
        if a is None:
            return
        _unlink(a)
        self._remove_readers(a)
        a.rtp.close()
        a.rtcp.close()
        self._in_use.discard((a.host, a.port.rtp_port))
        self._totals.anchors -= 1

    def stats(self, anchor: AnchorPort) -> LegStats:
        a = self._get(anchor)
        q = a.quality
        return LegStats(
            packets_in=a.packets_in,
            bytes_in=a.bytes_in,
            packets_out=a.packets_out,
            bytes_out=a.bytes_out,
            dropped_spoofed=a.dropped_spoofed,
            dropped_other=a.dropped_other,
            last_in_s=a.last_in_s,
            latched_source=a.latched_endpoint,
            rtp_expected=q.expected,
            rtp_lost=q.lost,
            jitter_ms=q.jitter_ms,
            ssrc=q.ssrc,
            payload_type=q.payload_type,
            in_kernel=False,
            extra={
                "not_sent_hold": a.not_sent_hold,
                "not_sent_no_endpoint": a.not_sent_no_endpoint,
                "send_errors": a.send_errors,
                "relatched": a.relatched,
                "rtcp_cnames_scrubbed": a.rtcp_scrubbed,
                "rtp_duplicates": q.duplicates,
                "rtp_packets": q.packets,
                "ssrc_changes": q.ssrc_changes,
            },
        )

    def totals(self) -> RelayTotals:
        t = self._totals
        return RelayTotals(
            t.relayed_packets,
            t.relayed_bytes,
            t.dropped_spoofed,
            t.dropped_other,
            t.not_sent,
            t.send_errors,
            t.recv_errors,
            t.anchors,
        )

    def counters(self) -> DataplaneCounters:
        t = self._totals
        return DataplaneCounters(
            DataplaneMode.USERSPACE,
            relayed_packets=t.relayed_packets,
            relayed_bytes=t.relayed_bytes,
            dropped={"spoofed": t.dropped_spoofed, "not_connected": t.dropped_other, "send_error": t.send_errors},
            slow_path={
                "relayed_packets": t.relayed_packets,
                "relayed_bytes": t.relayed_bytes,
                "dropped_spoofed": t.dropped_spoofed,
                "dropped_other": t.dropped_other,
                "not_sent": t.not_sent,
                "send_errors": t.send_errors,
                "recv_errors": t.recv_errors,
                "anchors": t.anchors,
            },
        )

    def close(self) -> None:
        for anchor in list(self._anchors.values()):
            self.release(anchor.port)
        self._closed = True
        if self._epoll is not None:
            self._loop.remove_reader(self._epoll.fileno())
            self._epoll.close()
            self._epoll = None

    # -- anchor state (for a fast path that offloads what this relay decided) -----------------------

    def anchor_ids(self) -> list[int]:
        return list(self._anchors)

    def anchor_state(self, anchor_id: int) -> AnchorState | None:
        """The anchor's current state, or None if it is unknown or released."""
        a = self._anchors.get(anchor_id)
        if a is None:
            return None
        return AnchorState(
            port=a.port,
            leg=a.leg,
            partner=a.partner.port if a.partner is not None else None,
            sdp_rtp=a.sdp_rtp,
            sdp_rtcp=a.sdp_rtcp,
            latched_rtp=a.latched_rtp,
            latched_rtcp=a.latched_rtcp,
            dst_rtp=a.dst_rtp,
            dst_rtcp=a.dst_rtcp,
            send_enabled=a.send_enabled,
            rewrites_rtcp=a.scrub_rtcp,
        )

    def restore_latches(self, anchor: AnchorPort, rtp: Addr | None, rtcp: Addr | None) -> None:
        """Latch these sources as if packets had come from them (latches learned before a restart,
        e.g. by the kernel); the latch callback is not called."""
        a = self._get(anchor)
        if rtp is not None:
            self._set_rtp_latch(a, *rtp)
        if rtcp is not None:
            self._set_rtcp_latch(a, *rtcp)

    # -- internals ----------------------------------------------------------------------------------

    def _get(self, anchor: AnchorPort) -> _Anchor:
        a = self._anchors.get(anchor.anchor_id)
        if a is None:
            raise KeyError(f"unknown or released anchor {anchor.anchor_id}")
        return a

    def _add_reader(self, a: _Anchor, sock: socket.socket, on_rtcp_port: bool) -> None:
        fd = sock.fileno()
        if not _HAVE_EPOLL:
            self._loop.add_reader(fd, self._on_readable, a, sock, on_rtcp_port)
            return
        if self._epoll is None:
            epoll = select.epoll()
            try:
                self._loop.add_reader(epoll.fileno(), self._on_epoll_ready)
            except BaseException:
                epoll.close()
                raise
            self._epoll = epoll
        self._epoll.register(fd, select.EPOLLIN)
        self._readers[fd] = (a, sock, on_rtcp_port)

    def _remove_readers(self, a: _Anchor) -> None:
        for sock in (a.rtp, a.rtcp):
            fd = sock.fileno()
            if fd < 0:
                continue
            if not _HAVE_EPOLL:
                self._loop.remove_reader(fd)
            elif self._readers.pop(fd, None) is not None and self._epoll is not None:
                self._epoll.unregister(fd)

    def _on_epoll_ready(self) -> None:
        """The loop saw the epoll set readable: serve every ready socket once (level-triggered, so a
        socket with more than a batch left is reported again on the loop's next turn)."""
        epoll = self._epoll
        if epoll is None:
            return
        readers = self._readers
        for fd, _events in epoll.poll(0):
            entry = readers.get(fd)
            if entry is not None:  # a socket released by an earlier callback of this round is gone
                self._on_readable(*entry)

    @staticmethod
    def _refresh(a: _Anchor) -> None:
        """Recompute the per-packet lookups after the leg or a latch changed."""
        leg = a.leg
        if leg is None:
            return
        remote = leg.remote_rtp
        a.send_enabled = leg.send_enabled
        if remote is None:  # late offer or hold with c=0.0.0.0: nothing accepted, nothing sent
            a.sdp_rtp = a.sdp_rtcp = a.dst_rtp = a.dst_rtcp = None
        else:
            a.sdp_rtp = _addr(remote)
            if leg.rtcp_mux:
                a.sdp_rtcp = a.sdp_rtp
                a.latched_rtcp = a.latched_rtp
            elif leg.remote_rtcp is not None:
                a.sdp_rtcp = _addr(leg.remote_rtcp)
            else:
                a.sdp_rtcp = (a.sdp_rtp[0], remote.port + 1)
            a.dst_rtp = a.latched_rtp or a.sdp_rtp
            a.dst_rtcp = a.dst_rtp if leg.rtcp_mux else (a.latched_rtcp or a.sdp_rtcp)
        a.rtcp_out = a.rtp if leg.rtcp_mux else a.rtcp

    def _set_rtp_latch(self, a: _Anchor, host: str, port: int) -> None:
        a.latched_rtp = (host, port)
        a.latched_endpoint = Endpoint(ipaddress.ip_address(host.partition("%")[0]), port)
        self._refresh(a)

    def _set_rtcp_latch(self, a: _Anchor, host: str, port: int) -> None:
        a.latched_rtcp = (host, port)
        self._refresh(a)

    def _latch_rtp(self, a: _Anchor, host: str, port: int) -> None:
        self._set_rtp_latch(a, host, port)
        if self._on_latch is not None:
            self._on_latch(a.port.anchor_id)

    def _latch_rtcp(self, a: _Anchor, host: str, port: int) -> None:
        self._set_rtcp_latch(a, host, port)
        if self._on_latch is not None:
            self._on_latch(a.port.anchor_id)

    def _accept_rtp(self, a: _Anchor, leg: LegProgram, data: memoryview, n: int, host: str, port: int) -> bool:
        """Source check for an RTP packet whose source is not the latched one (or nothing is latched)."""
        learn = leg.latch is Latch.LEARN
        if a.latched_rtp is not None:
            if (
                learn
                and leg.relatch
                and n >= 12
                and data[0] >> 6 == 2
                and not 192 <= data[1] <= 223
                and int.from_bytes(data[8:12], "big") not in a.retired_ssrcs
                and int.from_bytes(data[8:12], "big") != a.quality.ssrc
            ):
                if a.quality.ssrc is not None:
                    if len(a.retired_ssrcs) >= _MAX_RETIRED_SSRCS:
                        a.retired_ssrcs.clear()
                    a.retired_ssrcs.add(a.quality.ssrc)
                a.relatched += 1
                a.latched_rtcp = None
                self._latch_rtp(a, host, port)
                return True
            return False
        if learn and self._clock() - a.window_start <= leg.latch_window_s:
            self._latch_rtp(a, host, port)
            return True
        sdp = a.sdp_rtp
        if sdp is not None and host == sdp[0] and port == sdp[1]:
            self._latch_rtp(a, host, port)
            return True
        return False

    def _accept_rtcp(self, a: _Anchor, leg: LegProgram, data: memoryview, n: int, host: str, port: int) -> bool:
        """Source check for an RTCP packet whose source is not the latched RTCP source."""
        if a.latched_rtcp is not None:
            return False
        if leg.rtcp_mux:  # RTCP shares the RTP 5-tuple and its latch
            return a.latched_rtp is None and self._accept_rtp(a, leg, data, n, host, port)
        if leg.latch is Latch.LEARN:
            if a.latched_rtp is not None:
                if host == a.latched_rtp[0]:
                    self._latch_rtcp(a, host, port)
                    return True
                return False
            if self._clock() - a.window_start <= leg.latch_window_s:
                self._latch_rtcp(a, host, port)
                return True
        sdp = a.sdp_rtcp
        if sdp is not None and host == sdp[0] and port == sdp[1]:
            self._latch_rtcp(a, host, port)
            return True
        return False

    def _on_readable(self, a: _Anchor, sock: socket.socket, on_rtcp_port: bool) -> None:
        recv = sock.recvfrom_into
        buf = self._buf
        view = self._view
        clock = self._clock
        totals = self._totals
        for _ in range(self._max_batch):
            try:
                n, src = recv(buf)
            except BlockingIOError:
                return
            except OSError:
                totals.recv_errors += 1
                return
            leg = a.leg
            partner = a.partner
            if leg is None or partner is None or leg.remote_rtp is None:
                a.dropped_other += 1
                totals.dropped_other += 1
                continue
            data = view[:n]
            host: str = src[0]
            port: int = src[1]
            rtcp = on_rtcp_port or (leg.rtcp_mux and n >= 2 and 192 <= buf[1] <= 223)
            if rtcp:
                latched = a.latched_rtcp
                if (latched is None or host != latched[0] or port != latched[1]) and not self._accept_rtcp(
                    a, leg, data, n, host, port
                ):
                    a.dropped_spoofed += 1
                    totals.dropped_spoofed += 1
                    continue
                dst = partner.dst_rtcp
                out = partner.rtcp_out
            else:
                latched = a.latched_rtp
                if (latched is None or host != latched[0] or port != latched[1]) and not self._accept_rtp(
                    a, leg, data, n, host, port
                ):
                    a.dropped_spoofed += 1
                    totals.dropped_spoofed += 1
                    continue
                dst = partner.dst_rtp
                out = partner.rtp
            now = clock()
            a.packets_in += 1
            a.bytes_in += n
            a.last_in_s = now
            if not rtcp:
                pt = buf[1] & 0x7F
                a.quality.observe(data, now, CLOCK_RATES[pt] if pt < 96 else leg.clock_rate)
                if not partner.send_enabled:
                    partner.not_sent_hold += 1
                    totals.not_sent += 1
                    continue
            if dst is None:
                partner.not_sent_no_endpoint += 1
                totals.not_sent += 1
                continue
            sent = n
            if rtcp and a.scrub_rtcp:  # toward another realm: no CNAME of this one (RFC 3550 6.5.1)
                scrubbed = scrub_cnames(data, self._cname_tokens)
                if scrubbed is not None:
                    data = memoryview(scrubbed)
                    sent = len(scrubbed)
                    a.rtcp_scrubbed += 1
            try:
                out.sendto(data, dst)
            except OSError:
                partner.send_errors += 1
                totals.send_errors += 1
                continue
            partner.packets_out += 1
            partner.bytes_out += sent
            totals.relayed_packets += 1
            totals.relayed_bytes += sent


_HAVE_EPOLL = hasattr(select, "epoll")


def _unlink(a: _Anchor) -> None:
    partner = a.partner
    if partner is not None:
        if partner.partner is a:
            partner.partner = None
            partner.scrub_rtcp = False
        a.partner = None
        a.scrub_rtcp = False


def _open_socket(family: socket.AddressFamily, host: str, port: int) -> socket.socket | None:
    """A non-blocking UDP socket bound to host:port, or None when the port is taken."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setblocking(False)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            return None
        raise
    return sock


def _bind_pair(family: socket.AddressFamily, host: str, port: int) -> tuple[socket.socket, socket.socket] | None:
    rtp = _open_socket(family, host, port)
    if rtp is None:
        return None
    try:
        rtcp = _open_socket(family, host, port + 1)
    except BaseException:
        rtp.close()
        raise
    if rtcp is None:
        rtp.close()
        return None
    return rtp, rtcp


def _set_dscp(a: _Anchor, dscp: int) -> None:
    tos = dscp << 2
    for sock in (a.rtp, a.rtcp):
        if a.port.address.version == 6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, tos)
        else:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)


if TYPE_CHECKING:

    def _conforms(relay: UserspaceRelay) -> Dataplane:
        return relay
