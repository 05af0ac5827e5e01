"""The audit log: one JSON line per change or login attempt — who, when, what, from where.

Secrets never reach it: callers pass only names and outcomes, and any detail whose key looks like a
secret is replaced by "[redacted]" as a second line of defence.

Tamper evidence: each record carries `prev`, the SHA-256 (hex) of the previous record's line exactly
as written (without its newline); the very first record carries 64 zeros. The log is rotated by size
(`management.audit.max_bytes`, `keep` rotated files: audit.log.1 is the newest), and the first record
of a new file chains to the last record of the file just rotated, so the chain runs across files.
`verify_chain` (`python -m mgmt.audit verify --config FILE`) walks the files oldest first and names
the first line that no longer matches: an edited line breaks the link to it from the next record.
A chain proves nothing about records removed from the end or about files deleted by rotation; ship
the log off the box (syslog, an SIEM) when that matters.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sbc.file_rotation import generations, rotate, rotated_files

_SECRET_WORDS = ("password", "secret", "token", "totp", "code", "key", "community", "cookie")
MAX_TAIL = 1000
AUDIT_FILE = "audit.log"
GENESIS = "0" * 64  # `prev` of the first record ever written
DEFAULT_MAX_BYTES = 10 << 20
DEFAULT_KEEP = 5
_READ_CHUNK = 64 << 10
_MAX_LINE = 16 << 20  # a record is a few hundred bytes; a bound for reading back the last one


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


class AuditLog:
    def __init__(self, path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, keep: int = DEFAULT_KEEP) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self._lock = threading.Lock()  # handlers write on the loop, the confirm timer from a thread

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
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            last, torn = _last_record(self.path)
            if last is None:
                older = rotated_files(self.path)
                last = _last_record(older[0][1])[0] if older else None
            entry["prev"] = GENESIS if last is None else line_hash(last)
            line = json.dumps(entry, default=str).encode()
            size = _size(self.path)
            if size and size + len(line) + 1 > self.max_bytes:
                rotate(self.path, self.keep)
                torn = False
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                # One write of the whole line: O_APPEND keeps it in one piece. A torn last line (a crash
                # mid-write) is ended first; it stays in the chain, and the verifier names it.
                os.write(fd, (b"\n" if torn else b"") + line + b"\n")
            finally:
                os.close(fd)
        return entry

    def tail(self, lines: int = 100) -> list[dict[str, Any]]:
        return tail_json_lines(self.path, lines)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _last_record(path: Path) -> tuple[bytes | None, bool]:
    """The last line of `path` (without its newline) and whether it is torn (no newline after it)."""
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return None, False
    with fh:
        end = fh.seek(0, os.SEEK_END)
        if end == 0:
            return None, False
        fh.seek(end - 1)
        torn = fh.read(1) != b"\n"
        stop = end if torn else end - 1
        start, tail = stop, b""
        while start > 0 and b"\n" not in tail and stop - start < _MAX_LINE:
            start = max(0, start - _READ_CHUNK)
            fh.seek(start)
            tail = fh.read(stop - start)
        return tail.rsplit(b"\n", 1)[-1], torn


# ---- reading -------------------------------------------------------------------------------------
def tail_json_lines(path: Path, lines: int = 100) -> list[dict[str, Any]]:
    """The last `lines` JSON objects of a JSON-lines file (the audit log, the SBC's cdr.jsonl), continued
    into its newest rotated file (`path.1`) when the current one holds fewer; lines that are not JSON
    objects (a torn last write) are left out. A missing file has none."""
    lines = max(1, min(lines, MAX_TAIL))
    last: deque[str] = deque(maxlen=lines)
    older = rotated_files(path)
    for source in ([older[0][1]] if older else []) + [path]:
        try:
            with source.open(encoding="utf-8", errors="replace") as fh:
                last.extend(fh)
        except (FileNotFoundError, PermissionError):
            continue
    out = []
    for line in last:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out


# ---- verifying -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ChainBreak:
    file: Path
    line: int  # 1-based
    reason: str

    def __str__(self) -> str:
        return f"{self.file} line {self.line}: {self.reason}"


@dataclass(frozen=True, slots=True)
class ChainReport:
    records: int
    files: tuple[Path, ...]
    broken: ChainBreak | None
    anchored: bool  # the oldest record kept is the first ever written (GENESIS): nothing rotated away


def _numbered_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, 1):
            yield number, raw.rstrip(b"\n")


def verify_chain(path: Path) -> ChainReport:
    """Check every record of the log at `path` and its rotated files, oldest first, against the hash the
    next record carries of it; stop at the first line where the chain breaks."""
    files = tuple(generations(path))
    records = 0
    anchored = False
    previous: tuple[Path, int, bytes] | None = None  # the record before, for the message and its hash
    for file in files:
        for number, raw in _numbered_lines(file):
            try:
                entry = json.loads(raw)
            except ValueError:
                entry = None
            prev = entry.get("prev") if isinstance(entry, dict) else None
            if not isinstance(prev, str):
                return ChainReport(records, files, ChainBreak(file, number, "not an audit record"), anchored)
            if previous is None:
                anchored = prev == GENESIS  # otherwise it follows records rotated away: taken as given
            elif prev != line_hash(previous[2]):
                where, line_no, _ = previous
                same = where == file
                reason = (
                    "this record was changed, or records after it were removed or inserted: "
                    f"the next record ({'line ' + str(number) if same else f'{file.name} line {number}'}) "
                    "carries a different hash of it"
                )
                return ChainReport(records, files, ChainBreak(where, line_no, reason), anchored)
            records += 1
            previous = (file, number, raw)
    return ChainReport(records, files, None, anchored)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mgmt.audit", description="the management audit log")
    sub = parser.add_subparsers(dest="command", required=True)
    verify = sub.add_parser("verify", help="check the hash chain; name the first line where it breaks")
    where = verify.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", type=Path, help="the SBC's YAML config (the audit log of its management)")
    where.add_argument("--log", type=Path, help="the audit log file itself")
    args = parser.parse_args(argv)
    return verify_command(args.config, args.log)


def verify_command(config: Path | None, log: Path | None = None) -> int:
    """Exit 0: the chain holds; 1: it breaks (the line is printed); 2: no log or no readable config."""
    if log is None:
        from sbc.config.loader import load_config
        from sbc.yamlsource import ConfigError

        assert config is not None
        try:
            log = load_config(config).management_dir / AUDIT_FILE
        except (ConfigError, OSError) as exc:
            print(f"audit verify: cannot read {config}: {exc}", file=sys.stderr)
            return 2
    if not generations(log):
        print(f"audit verify: no audit log at {log}", file=sys.stderr)
        return 2
    try:
        report = verify_chain(log)
    except OSError as exc:
        print(f"audit verify: {exc}", file=sys.stderr)
        return 2
    if report.broken is not None:
        print(f"audit verify: the chain breaks at {report.broken}", file=sys.stderr)
        return 1
    start = "from the first record" if report.anchored else "from the oldest kept record (older ones rotated away)"
    print(f"audit verify: {report.records} records in {len(report.files)} file(s) chain intact {start}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
