"""Messages for the person at the box: written to every active console (serial and screen), never to
the journal, because some of them carry a secret that is shown once."""

from __future__ import annotations

import contextlib
from pathlib import Path

ACTIVE_CONSOLES = Path("/sys/class/tty/console/active")


def console_devices(active: Path = ACTIVE_CONSOLES) -> list[Path]:
    try:
        names = active.read_text().split()
    except OSError:
        names = []
    devices = [Path("/dev") / name for name in names if name.isidentifier() or name.replace(".", "").isalnum()]
    return devices or [Path("/dev/console")]


def show_on_console(text: str, devices: list[Path] | None = None) -> int:
    """Write `text` to each console; returns how many took it."""
    shown = 0
    data = text.replace("\n", "\r\n").encode()
    for device in devices if devices is not None else console_devices():
        with contextlib.suppress(OSError):
            with device.open("wb", buffering=0) as fh:
                fh.write(data)
            shown += 1
    return shown


def banner(title: str, lines: list[str]) -> str:
    bar = "=" * 72
    body = "\n".join(f"    {line}" if line else "" for line in lines)
    return f"\n{bar}\n  {title}\n\n{body}\n{bar}\n\n"
