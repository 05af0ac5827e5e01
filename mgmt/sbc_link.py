"""The management plane's only way into the SBC: its local control socket (`sbc.control`).

Blocking socket calls run in a worker thread so the event loop never waits on the SBC.
Also keeps the last `calls_total` sample to turn the counter into calls per second.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from mgmt.store import ReloadResult
from sbc.control.client import ControlError, control_request


class SbcUnavailable(Exception):
    pass


class SbcLink:
    def __init__(self, socket_path: Path, timeout: float = 5.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self._sample: tuple[float, int] | None = None
        self._rate = 0.0

    def request(self, cmd: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            return control_request(self.socket_path, cmd, args, timeout=self.timeout)
        except (ControlError, OSError, ValueError) as exc:
            raise SbcUnavailable(str(exc)) from exc

    async def query(self, cmd: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.request, cmd)

    async def status(self) -> dict[str, Any]:
        status = await self.query("status")
        counters = status.get("counters") or {}
        total = counters.get("calls_total")
        if isinstance(total, int):
            status["calls_per_second"] = self.calls_per_second(total, time.monotonic())
        return status

    def calls_per_second(self, calls_total: int, now: float) -> float:
        """Rate since the previous sample; samples closer than 1 s keep the last rate (too noisy)."""
        if self._sample is None or calls_total < self._sample[1]:  # first call, or the SBC restarted
            self._sample = (now, calls_total)
            return self._rate
        then, before = self._sample
        if now - then >= 1.0:
            self._rate = round((calls_total - before) / (now - then), 2)
            self._sample = (now, calls_total)
        return self._rate

    def reload(self, path: Path) -> ReloadResult:
        """The store's `Reloader`: ask the SBC to re-read `path` (synchronous, called in a thread)."""
        try:
            answer = control_request(self.socket_path, "reload", {"path": str(path.resolve())}, timeout=30.0)
        except (ControlError, OSError, ValueError) as exc:
            return ReloadResult(applied=False, error=str(exc))
        return ReloadResult(
            applied=bool(answer.get("applied")),
            restart_required=tuple(str(x) for x in answer.get("restart_required") or ()),
            problems=tuple(str(x) for x in answer.get("problems") or ()),
        )
