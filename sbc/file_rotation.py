"""Numbered rotation of an append-only file: `name` is written, `name.1` is the newest rotated one,
`name.<keep>` the oldest kept. Used by the call records (sbc.call_records) and the audit log (mgmt.audit).
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path


def numbered(path: Path, n: int) -> Path:
    return path.with_name(f"{path.name}.{n}")


def rotated_files(path: Path) -> list[tuple[int, Path]]:
    """The rotated files that exist beside `path`, newest (`.1`) first."""
    pattern = re.compile(rf"^{re.escape(path.name)}\.([1-9][0-9]{{0,5}})$")
    try:
        found = [(int(m[1]), p) for p in path.parent.iterdir() if (m := pattern.match(p.name))]
    except FileNotFoundError:
        return []
    return sorted(found)


def generations(path: Path) -> list[Path]:
    """Every existing file of the series, oldest first, `path` itself last (when it exists)."""
    out = [p for _, p in reversed(rotated_files(path))]
    return [*out, path] if path.exists() else out


def rotate(path: Path, keep: int) -> None:
    """`path` becomes `path.1`, each `path.N` becomes `path.N+1`; beyond `keep` rotated files are deleted
    (keep 0: `path` itself is deleted). The next write creates `path` anew."""
    for n, old in reversed(rotated_files(path)):
        if n >= keep:
            old.unlink(missing_ok=True)
        else:
            old.replace(numbered(path, n + 1))
    if keep > 0:
        with contextlib.suppress(FileNotFoundError):
            path.replace(numbered(path, 1))
    else:
        path.unlink(missing_ok=True)
