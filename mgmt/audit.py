"""The audit log: one JSON line per change or login attempt — who, when, what, from where.

Secrets never reach it: callers pass only names and outcomes, and any detail whose key looks like a
secret is replaced by "[redacted]" as a second line of defence.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from pathlib import Path
from typing import Any

_SECRET_WORDS = ("password", "secret", "token", "totp", "code", "key", "community", "cookie")
MAX_TAIL = 1000


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def write(
        self,
        who: str | None,
        source: str | None,
        action: str,
        *,
        outcome: str = "ok",
        target: str | None = None,
        now: float | None = None,
        **details: Any,
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "time": round(time.time() if now is None else now, 3),
            "user": who,
            "source": source,
            "action": action,
            "target": target,
            "outcome": outcome,
        }
        for key, value in details.items():
            entry[key] = "[redacted]" if any(word in key.lower() for word in _SECRET_WORDS) else value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, default=str) + "\n")
        return entry

    def tail(self, lines: int = 100) -> list[dict[str, Any]]:
        return tail_json_lines(self.path, lines)


def tail_json_lines(path: Path, lines: int = 100) -> list[dict[str, Any]]:
    """The last `lines` JSON objects of a JSON-lines file (the audit log, the SBC's cdr.jsonl); lines that
    are not JSON objects (a torn last write) are left out. A missing file has none."""
    lines = max(1, min(lines, MAX_TAIL))
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            last = deque(fh, maxlen=lines)
    except (FileNotFoundError, PermissionError):
        return []
    out = []
    for line in last:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out
