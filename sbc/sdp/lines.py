"""Splitting a body into lines that keep their own terminators, so joining them gives the input back.

A line is a `str` that ends with its original terminator ("\\r\\n", "\\n", or nothing for a last line
without one). Bytes are decoded as UTF-8 with `surrogateescape`, so every byte sequence survives.
"""

from __future__ import annotations

from collections.abc import Sequence

ENCODING = "utf-8"
ERRORS = "surrogateescape"


def split_lines(text: str) -> list[str]:
    parts = text.split("\n")
    last = parts.pop()
    lines = [part + "\n" for part in parts]
    if last:
        lines.append(last)
    return lines


def content(line: str) -> str:
    """The line without its terminator."""
    if line.endswith("\n"):
        return line[:-2] if line.endswith("\r\n") else line[:-1]
    return line


def terminator(line: str) -> str:
    return line[len(content(line)) :]


def replace_content(line: str, new: str) -> str:
    """`new` with the terminator of `line`, so a rewritten line keeps the body's line ending style."""
    return new + terminator(line)


def insert_line(lines: Sequence[str], index: int, new: str, eol: str) -> tuple[str, ...]:
    """Insert `new` before `lines[index]`; appending after an unterminated last line moves its end."""
    out = list(lines)
    if index == len(out) and out and not out[-1].endswith("\n"):
        out[-1] += eol
        out.append(new)
    else:
        out.insert(index, new + eol)
    return tuple(out)


def join_lines(lines: Sequence[str]) -> bytes:
    return "".join(lines).encode(ENCODING, ERRORS)
