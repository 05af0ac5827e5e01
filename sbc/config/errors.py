"""What is wrong with a configuration: every problem, each with the file line an operator must edit."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    source: str  # the file name (or "<embedded>")
    line: int  # 1-based line of the offending YAML node
    path: str  # where in the document, e.g. `realms[1].media.ports`
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.path}: {self.message}"


class ConfigError(Exception):
    """The configuration was refused; `problems` lists everything found, sorted by line."""

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems: list[ConfigProblem] = sorted(problems, key=lambda p: p.line)
        super().__init__("\n".join(str(p) for p in self.problems))
