"""Type checks and lint run as tests, so `make test` fails on either."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)


def test_ruff_clean() -> None:
    result = _run([str(BIN / "ruff"), "check", "sbc", "dataplane", "mgmt", "hw", "tests", "image"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_clean() -> None:
    result = _run([str(BIN / "mypy")])
    assert result.returncode == 0, result.stdout + result.stderr
