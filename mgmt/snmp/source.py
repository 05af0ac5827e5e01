"""What the management plane knows about the running SBC: a snapshot of its control API, polled.

`SbcStateSource` asks the SBC's control socket for `status` and `calls` every few seconds and keeps
the last answer. Readers (the SNMP agent, alarm rules, the REST API) read `source.snapshot`, which
never blocks on the socket; when the SBC stops answering the last good figures stay, marked stale
(`reachable` false, `taken_at` old). Keys the SBC does not report yet read as 0 through `number`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("mgmt.source")

MAX_ANSWER = 16 * 1024 * 1024  # a `calls` answer with thousands of calls is a few MiB


@dataclass(frozen=True, slots=True)
class SbcSnapshot:
    status: Mapping[str, Any] = field(default_factory=dict)
    calls: tuple[Mapping[str, Any], ...] = ()
    taken_at: float = 0.0  # monotonic time of the last successful poll; 0: never
    reachable: bool = False
    error: str = ""  # why the last poll failed
    calls_per_second: float = 0.0
    generation: int = 0  # increases with every poll, successful or not

    def age(self, now: float) -> float:
        return now - self.taken_at if self.taken_at else 0.0


def number(data: object, *path: str) -> float:
    """The number at `path` inside nested mappings; missing, null or not a number: 0."""
    for key in path:
        if not isinstance(data, Mapping):
            return 0
        data = data.get(key)
    if isinstance(data, bool) or not isinstance(data, (int, float)):
        return 0
    return data


def calls_rate(previous: SbcSnapshot, status: Mapping[str, Any], now: float) -> float:
    """New calls per second between the previous good snapshot and this status (counter deltas)."""
    if not previous.reachable or not previous.taken_at or now <= previous.taken_at:
        return 0.0
    delta = number(status, "counters", "calls_total") - number(previous.status, "counters", "calls_total")
    if delta < 0:  # the SBC restarted: its counters began again
        return 0.0
    return delta / (now - previous.taken_at)


async def control_query(path: Path, cmd: str, timeout: float) -> dict[str, Any]:
    """One request on the SBC's control socket (JSON lines, see sbc.control.server), without blocking."""

    async def exchange() -> bytes:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=MAX_ANSWER)
        try:
            writer.write(json.dumps({"cmd": cmd, "args": {}}).encode() + b"\n")
            await writer.drain()
            return await reader.readline()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    line = await asyncio.wait_for(exchange(), timeout)
    if not line:
        raise ConnectionError("the SBC closed the control connection without answering")
    answer = json.loads(line)
    if not isinstance(answer, dict) or not answer.get("ok"):
        error = answer.get("error") if isinstance(answer, dict) else answer
        raise RuntimeError(f"control API refused {cmd!r}: {error}")
    result = answer.get("result")
    if not isinstance(result, dict):
        raise RuntimeError(f"control API answered {cmd!r} without a result object")
    return result


SnapshotListener = Callable[[SbcSnapshot], None]


class SbcStateSource:
    def __init__(
        self,
        control_path: Path,
        interval_s: float = 5.0,
        timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.control_path = control_path
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._clock = clock
        self.snapshot = SbcSnapshot()
        self._listeners: list[SnapshotListener] = []
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, listener: SnapshotListener) -> None:
        """Call `listener` with every new snapshot (after each poll), e.g. the alarm rules."""
        self._listeners.append(listener)

    async def start(self) -> None:
        """Poll once now (bounded by the timeout), then every `interval_s` in the background."""
        await self.poll_once()
        self._task = asyncio.create_task(self._run(), name="sbc-state-poll")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def poll_once(self) -> SbcSnapshot:
        previous = self.snapshot
        try:
            status = await control_query(self.control_path, "status", self.timeout_s)
            calls_answer = await control_query(self.control_path, "calls", self.timeout_s)
        except (TimeoutError, OSError, ValueError, RuntimeError) as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if previous.reachable or not previous.error:
                log.warning("SBC control API at %s does not answer: %s", self.control_path, reason)
            self.snapshot = SbcSnapshot(
                status=previous.status,
                calls=previous.calls,
                taken_at=previous.taken_at,
                reachable=False,
                error=reason,
                calls_per_second=0.0,
                generation=previous.generation + 1,
            )
        else:
            now = self._clock()
            raw_calls = calls_answer.get("calls")
            calls = tuple(c for c in raw_calls if isinstance(c, Mapping)) if isinstance(raw_calls, list) else ()
            self.snapshot = SbcSnapshot(
                status=status,
                calls=calls,
                taken_at=now,
                reachable=True,
                calls_per_second=calls_rate(previous, status, now),
                generation=previous.generation + 1,
            )
        for listener in list(self._listeners):
            try:
                listener(self.snapshot)
            except Exception:
                log.exception("snapshot listener %r failed", listener)
        return self.snapshot

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.poll_once()
