"""One way to call external tools (bpftool, ip, ethtool): no shell, a readable error."""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
from collections.abc import Sequence

log = logging.getLogger(__name__)


class ToolError(RuntimeError):
    """An external command failed; the message carries the command line to paste."""

    def __init__(self, argv: Sequence[str], returncode: int, output: str, hint: str = "") -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.output = output
        text = f"command failed (exit {returncode}): {shlex.join(argv)}\n{output.strip()}"
        if hint:
            text += f"\nhint: {hint}"
        super().__init__(text)


def run(argv: Sequence[str], *, hint: str = "", timeout: float = 60.0) -> str:
    """Run argv without a shell and return stdout; raise ToolError on failure."""
    log.debug("run: %s", shlex.join(argv))
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise ToolError(argv, 127, str(exc), hint or f"is {argv[0]} installed?") from exc
    except subprocess.TimeoutExpired as exc:
        raise ToolError(argv, -1, f"timed out after {timeout} s", hint) from exc
    if done.returncode != 0:
        raise ToolError(argv, done.returncode, done.stderr + done.stdout, hint)
    return done.stdout


def missing_tools(*tools: str) -> str | None:
    """Why the tools cannot be used (the first one absent from PATH), or None."""
    for tool in tools:
        if shutil.which(tool) is None:
            return f"{tool} is not installed (make system-deps installs it)"
    return None
