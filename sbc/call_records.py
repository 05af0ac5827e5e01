"""The SBC's call records: `<state_dir>/cdr.jsonl`, one JSON line per ended call, rotated and pruned.

The file is rotated (cdr.jsonl -> cdr.jsonl.1 -> ... -> cdr.jsonl.<keep>, the oldest deleted) before a
record that would take it past `sbc.cdr.max_bytes`, or when its first record is older than
`sbc.cdr.max_age_days`, so the state partition never fills with records. The settings are read at every
write (a reload applies them to the next record). A file someone else rotated or removed is noticed
and the next record goes to a new file at the path.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from sbc.config.model import CallRecordSettings
from sbc.file_rotation import rotate

CDR_FILE = "cdr.jsonl"
_DAY_S = 86400.0


class CallRecordFile:
    def __init__(
        self, path: Path, settings: Callable[[], CallRecordSettings], clock: Callable[[], float] = time.time
    ) -> None:
        self.path = path
        self.settings = settings
        self.clock = clock
        self._file: TextIO | None = None  # kept open: one record per call ends, many a second
        self._first_at: float | None = None  # when the open file's first record was written

    def append(self, record: dict[str, object]) -> None:
        """Write one record (whole, flushed). OSError from the disk goes to the caller; the file is
        opened again for the next record."""
        self.append_encoded(json.dumps(record, default=str))

    def append_encoded(self, record_json: str) -> None:
        """`append` of a record already encoded as one JSON object (the shell encodes it once for both
        the log line and this file)."""
        line = record_json + "\n"
        now = self.clock()
        try:
            if self._file is not None and not _same_file(self._file, self.path):
                self.close()  # rotated or removed by someone else: write to the file at the path
            if self._file is None:
                self._open(now)
            if self._due(len(line.encode()), now):
                self.close()
                rotate(self.path, self.settings().keep)
                self._open(now)
            assert self._file is not None
            self._file.write(line)
            self._file.flush()  # a record is whole in the file once the call is reported ended
            if self._first_at is None:
                self._first_at = now
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
        self._file = None
        self._first_at = None

    def _open(self, now: float) -> None:
        self._file = self.path.open("a", encoding="utf-8")
        self._first_at = _first_record_time(self.path, now) if self._size() > 0 else None

    def _size(self) -> int:
        return os.fstat(self._file.fileno()).st_size if self._file is not None else 0

    def _due(self, size: int, now: float) -> bool:
        current = self._size()
        if current == 0:
            return False
        settings = self.settings()
        if current + size > settings.max_bytes:
            return True
        age_limit = settings.max_age_days * _DAY_S
        return bool(age_limit) and self._first_at is not None and now - self._first_at >= age_limit


def _first_record_time(path: Path, default: float) -> float:
    """`recorded_at` of the file's first record (the SBC writes it first); `default` when unreadable."""
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            first = fh.readline(65536)
        value = json.loads(first).get("recorded_at")
    except (OSError, ValueError, AttributeError):
        return default
    return float(value) if isinstance(value, int | float) else default


def _same_file(fh: TextIO, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fh.fileno()).st_ino
    except OSError:
        return False
