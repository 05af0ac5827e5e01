"""The management plane's only way into the SBC: its local control socket (`sbc.control`), read into the
control contract's types (`sbc.control.contract`).

Also keeps the last `calls_total` sample to turn the counter into calls per second.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, TypeVar

from mgmt.store import ReloadResult
from sbc.control.client import ControlError, control_query, control_request
from sbc.control.contract import (
    CallList,
    ContractError,
    RegistrationList,
    ReloadReport,
    StatusReport,
    decode,
)

T = TypeVar("T")


class SbcUnavailable(Exception):
    pass


class SbcLink:
    def __init__(self, socket_path: Path, timeout: float = 5.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self._sample: tuple[float, int] | None = None
        self._rate = 0.0

    async def _query(self, cmd: str, answer: type[T]) -> T:
        try:
            return decode(answer, await control_query(self.socket_path, cmd, self.timeout))
        except (ControlError, ContractError, OSError, TimeoutError) as exc:
            raise SbcUnavailable(str(exc) or type(exc).__name__) from exc

    async def status(self) -> tuple[StatusReport, float]:
        """The SBC's status and its calls per second since the previous call."""
        status = await self._query("status", StatusReport)
        return status, self.calls_per_second(status.counters.calls_total, time.monotonic())

    async def calls(self) -> CallList:
        return await self._query("calls", CallList)

    async def registrations(self) -> RegistrationList:
        return await self._query("registrations", RegistrationList)

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
        args: dict[str, Any] = {"path": str(path.resolve())}
        try:
            answer = decode(ReloadReport, control_request(self.socket_path, "reload", args, timeout=30.0))
        except (ControlError, ContractError, OSError, ValueError) as exc:
            return ReloadResult(applied=False, error=str(exc))
        return ReloadResult(applied=answer.applied, restart_required=answer.restart_required, problems=answer.problems)
