"""What the management plane knows about the running SBC: a snapshot of its control API, polled.

`SbcStateSource` asks the SBC's control socket for `status` and `calls` every few seconds and keeps
the last answer. Readers (the SNMP agent, alarm rules, the REST API) read `source.snapshot`, which
never blocks on the socket; when the SBC stops answering the last good figures stay, marked stale
(`reachable` false, `taken_at` old). Before the first answer there are no figures (`status` None).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sbc.control.client import ControlError, control_query
from sbc.control.contract import CallList, CallSnapshot, ContractError, StatusReport, decode

log = logging.getLogger("mgmt.source")


@dataclass(frozen=True, slots=True)
class SbcSnapshot:
    status: StatusReport | None = None  # None: the SBC has not answered yet
    calls: tuple[CallSnapshot, ...] = ()
    taken_at: float = 0.0  # monotonic time of the last successful poll; 0: never
    reachable: bool = False
    error: str = ""  # why the last poll failed
    calls_per_second: float = 0.0
    generation: int = 0  # increases with every poll, successful or not

    def age(self, now: float) -> float:
        return now - self.taken_at if self.taken_at else 0.0


def calls_rate(previous: SbcSnapshot, status: StatusReport, now: float) -> float:
    """New calls per second between the previous good snapshot and this status (counter deltas)."""
    if previous.status is None or not previous.reachable or not previous.taken_at or now <= previous.taken_at:
        return 0.0
    delta = status.counters.calls_total - previous.status.counters.calls_total
    if delta < 0:  # the SBC restarted: its counters began again
        return 0.0
    return delta / (now - previous.taken_at)


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
            status = decode(StatusReport, await control_query(self.control_path, "status", self.timeout_s))
            calls = decode(CallList, await control_query(self.control_path, "calls", self.timeout_s)).calls
        except (TimeoutError, OSError, ControlError, ContractError) as exc:
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
