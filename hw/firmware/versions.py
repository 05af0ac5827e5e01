"""Image versions compared the way systemd-sysupdate and systemd-boot order them (the UAPI version
format): runs of digits compare as numbers, runs of letters as text, separators only split, and a
`~` marks a pre-release that sorts before the version it precedes (`1.0~rc1` < `1.0`)."""

from __future__ import annotations

import re

_TOKEN = re.compile(r"~|\d+|[A-Za-z]+")
SAFE_VERSION = re.compile(r"^[0-9][0-9A-Za-z.~^_-]{0,63}$")


def _tokens(version: str) -> list[str]:
    return _TOKEN.findall(version)


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as `a` is older than, the same as, or newer than `b`."""
    ta, tb = _tokens(a), _tokens(b)
    for x, y in zip(ta, tb, strict=False):
        if x == y:
            continue
        if x == "~" or y == "~":
            return -1 if x == "~" else 1
        if x.isdigit() and y.isdigit():
            return -1 if int(x) < int(y) else (1 if int(x) > int(y) else 0)
        if x.isdigit() != y.isdigit():
            return 1 if x.isdigit() else -1  # a number is newer than a word ("1.0.1" > "1.0.beta")
        return -1 if x < y else 1
    if len(ta) == len(tb):
        return 0
    longer, sign = (ta, 1) if len(ta) > len(tb) else (tb, -1)
    # "1.0~rc1" is older than "1.0"; "1.0.1" is newer than "1.0".
    return -sign if longer[min(len(ta), len(tb))] == "~" else sign


def is_safe_version(version: str) -> bool:
    """A version that can stand in a file name and a GPT partition label (36 UTF-16 units, `sbc_` first)."""
    return bool(SAFE_VERSION.match(version)) and len(version) <= 32
