"""Limits on TCP and TLS connections: how many, from whom, for how long, holding how much.

One `StreamGuard` watches every stream connection of every realm. It admits a connection or refuses
it (all connections together, or those from one source address, at their limit), hands each one a
framer with the configured size limits, and sweeps them on a short timer: a connection that has
received nothing for `idle_timeout_s`, or whose current message has spent longer than
`header_timeout_s` on its header block (slowloris) or `body_timeout_s` on its body, is closed. The
sweep reads the framer's progress (bytes received, messages framed, phase), so the hot path of
receiving pays nothing for the timers. Every limit reached is counted by name (`sbc status`:
`transport.limits`) and logged at most once a minute per limit and source, never raised.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from sbc.config.model import StreamLimits
from sbc.sip.framing import FramePhase, FramingLimit, StreamFramer

log = logging.getLogger("sbc.transport")

LOG_EVERY_S = 60.0  # one log line per limit and source in this interval; the counters count them all
_LOG_MEMORY = 4096  # sources remembered for that; forgotten all at once beyond it (bounded memory)
SWEEP_MIN_S = 0.05
SWEEP_MAX_S = 1.0


class StreamLimitHit(StrEnum):
    """A limit a connection reached: the counter's name in `sbc status`."""

    CONNECTIONS = "connections"  # all connections together: the new one refused
    PER_SOURCE = "connections_per_source"  # from one address: the new one refused
    IDLE = "idle_timeout"
    HEADER_TIMEOUT = "header_timeout"
    BODY_TIMEOUT = "body_timeout"
    HEADER_SIZE = FramingLimit.HEADER_SIZE.value
    BODY_SIZE = FramingLimit.BODY_SIZE.value
    BUFFERED = "buffer_full"  # too many bytes received unframed, or waiting to be sent


@dataclass(slots=True, eq=False)
class GuardedConnection:
    """One admitted connection and its progress as the last sweep saw it."""

    source: str
    framer: StreamFramer
    close: Callable[[], None]  # abort the connection (the transport's `abort`)
    inbound: bool
    seen_bytes: int
    seen_frames: int
    seen_phase: FramePhase
    active_since: float  # when the sweep last saw bytes arrive
    phase_since: float  # when the sweep first saw the current message in its current phase
    closing: bool = False


class StreamGuard:
    def __init__(self, limits: StreamLimits | None = None) -> None:
        self.limits = limits or StreamLimits()
        self.connections: set[GuardedConnection] = set()
        self._per_source: dict[str, int] = {}
        self.inbound = 0
        self.counters: dict[StreamLimitHit, int] = dict.fromkeys(StreamLimitHit, 0)
        self.accepted = 0
        self.opened = 0
        self.peak = 0
        self._logged: dict[tuple[StreamLimitHit, str], float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def configure(self, limits: StreamLimits) -> None:
        """New limits (a reload): counts and timeouts apply at once, sizes to new connections."""
        self.limits = limits

    def new_framer(self) -> StreamFramer:
        return StreamFramer(max_head_size=self.limits.max_header_bytes, max_body_size=self.limits.max_body_bytes)

    # ---- admission -------------------------------------------------------------------------------
    def admit(
        self, source: str, framer: StreamFramer, close: Callable[[], None], *, inbound: bool, now: float
    ) -> GuardedConnection | None:
        """Track a new connection, or None: refused (counted and logged), the caller aborts it.

        Only connections a peer opened are limited; those the SBC opens itself (to its trunk) are
        tracked (timeouts, report) but never refused.
        """
        if inbound:
            if self.inbound >= self.limits.connections:
                self.hit(StreamLimitHit.CONNECTIONS, source, now)
                return None
            if self._per_source.get(source, 0) >= self.limits.connections_per_source:
                self.hit(StreamLimitHit.PER_SOURCE, source, now)
                return None
            self._per_source[source] = self._per_source.get(source, 0) + 1
            self.inbound += 1
            self.accepted += 1
        else:
            self.opened += 1
        conn = GuardedConnection(
            source, framer, close, inbound, framer.bytes_received, framer.messages_framed, framer.phase, now, now
        )
        self.connections.add(conn)
        self.peak = max(self.peak, len(self.connections))
        return conn

    def release(self, conn: GuardedConnection) -> None:
        """The connection is gone (closed by either side)."""
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        if conn.inbound:
            self.inbound -= 1
            left = self._per_source.get(conn.source, 0) - 1
            if left > 0:
                self._per_source[conn.source] = left
            else:
                self._per_source.pop(conn.source, None)

    # ---- limits reached --------------------------------------------------------------------------
    def hit(self, limit: StreamLimitHit, source: str, now: float) -> None:
        """Count a limit reached by `source`; log it unless it was logged for that source lately."""
        self.counters[limit] += 1
        key = (limit, source)
        last = self._logged.get(key)
        if last is not None and now - last < LOG_EVERY_S:
            return
        if len(self._logged) >= _LOG_MEMORY:
            self._logged.clear()
        self._logged[key] = now
        line = {"event": "transport.limit", "limit": limit.value, "source": source, "count": self.counters[limit]}
        log.warning(json.dumps({"level": "warning", **line}))

    def framing_limit(self, limit: FramingLimit, source: str, now: float) -> None:
        self.hit(StreamLimitHit(limit.value), source, now)

    def over_buffer_hit(self, conn: GuardedConnection, now: float) -> None:
        """The connection holds more bytes (unframed, or waiting to be sent) than allowed; the caller
        closes it."""
        if not conn.closing:
            conn.closing = True
            self.hit(StreamLimitHit.BUFFERED, conn.source, now)

    # ---- timeouts --------------------------------------------------------------------------------
    def sweep(self, now: float) -> list[tuple[GuardedConnection, StreamLimitHit]]:
        """Close the connections past a timeout; what was closed and why."""
        closed: list[tuple[GuardedConnection, StreamLimitHit]] = []
        limits = self.limits
        for conn in list(self.connections):
            if conn.closing:
                continue
            framer = conn.framer
            if framer.bytes_received != conn.seen_bytes:
                conn.seen_bytes = framer.bytes_received
                conn.active_since = now
            phase = framer.phase
            if phase is not conn.seen_phase or framer.messages_framed != conn.seen_frames:
                conn.seen_phase = phase
                conn.seen_frames = framer.messages_framed
                conn.phase_since = now
            reason: StreamLimitHit | None = None
            if phase is FramePhase.HEAD and now - conn.phase_since >= limits.header_timeout_s:
                reason = StreamLimitHit.HEADER_TIMEOUT
            elif phase is FramePhase.BODY and now - conn.phase_since >= limits.body_timeout_s:
                reason = StreamLimitHit.BODY_TIMEOUT
            elif now - conn.active_since >= limits.idle_timeout_s:
                reason = StreamLimitHit.IDLE
            if reason is not None:
                conn.closing = True
                self.hit(reason, conn.source, now)
                conn.close()
                closed.append((conn, reason))
        return closed

    @property
    def sweep_interval_s(self) -> float:
        """A quarter of the shortest timeout, within 50 ms to 1 s: a timeout fires at most a couple of
        intervals late."""
        shortest = min(self.limits.header_timeout_s, self.limits.body_timeout_s, self.limits.idle_timeout_s)
        return min(SWEEP_MAX_S, max(SWEEP_MIN_S, shortest / 4))

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Sweep every `sweep_interval_s` on `loop` until `stop` (a second start does nothing)."""
        if self._loop is not None:
            return
        self._loop = loop
        self._timer = loop.call_later(self.sweep_interval_s, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None
        self.sweep(self._loop.time())
        self._timer = self._loop.call_later(self.sweep_interval_s, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._loop = None

    # ---- sbc status ------------------------------------------------------------------------------
    def report(self) -> dict[str, object]:
        limits = self.limits
        return {
            "connections": len(self.connections),
            "connections_inbound": self.inbound,
            "connections_peak": self.peak,
            "sources": len(self._per_source),
            "accepted_total": self.accepted,
            "opened_total": self.opened,
            "limits": {hit.value: count for hit, count in self.counters.items()},
            "settings": {
                "connections": limits.connections,
                "connections_per_source": limits.connections_per_source,
                "idle_timeout_s": limits.idle_timeout_s,
                "header_timeout_s": limits.header_timeout_s,
                "body_timeout_s": limits.body_timeout_s,
                "max_header_bytes": limits.max_header_bytes,
                "max_body_bytes": limits.max_body_bytes,
                "max_buffered_bytes": limits.max_buffered_bytes,
            },
        }
