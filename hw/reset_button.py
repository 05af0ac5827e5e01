"""The reset button: held for `hold_s` (10 s by default) it requests a factory reset; a shorter press
does nothing but log (a bumped button must not drop every call by rebooting the box).

Buttons are read through evdev: a GPIO button is an input device too, once the device tree (or
ACPI) declares it with the `gpio-keys` driver, so one reader serves x86 boxes and ARM boards. The
reset fires while the button is still held, at the moment the hold time is reached, so the user
knows when to let go. A button already down when watching starts is ignored until it is released:
a stuck button must not reset the box at every boot.

`PressTracker` is the decision (sans-IO: key events and time in, actions out); `ButtonWatcher` is
the asyncio shell that reads `struct input_event` records from /dev/input/eventN.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import fnmatch
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

EV_KEY = 1
KEY_RELEASED, KEY_PRESSED, KEY_REPEAT = 0, 1, 2
# struct input_event on 64-bit Linux: struct timeval (two longs), __u16 type, __u16 code, __s32 value
INPUT_EVENT = struct.Struct("@llHHi")
KEY_MAX = 0x2FF
_EVIOCGKEY = (2 << 30) | (((KEY_MAX + 7) // 8 + 1) << 16) | (ord("E") << 8) | 0x18


@dataclass(frozen=True, slots=True)
class ShortPress:
    held_s: float


@dataclass(frozen=True, slots=True)
class ResetRequested:
    held_s: float


ButtonAction = ShortPress | ResetRequested


class PressTracker:
    def __init__(self, hold_s: float, initially_down: bool = False) -> None:
        self.hold_s = hold_s
        self._armed = not initially_down
        self._pressed_at: float | None = None
        self._fired = False

    def key(self, value: int, now: float) -> list[ButtonAction]:
        if value == KEY_REPEAT:
            return []
        if value == KEY_PRESSED:
            if self._armed and self._pressed_at is None:
                self._pressed_at = now
                self._fired = False
            return []
        # released
        out: list[ButtonAction] = []
        if self._pressed_at is not None and not self._fired:
            held = now - self._pressed_at
            out = self._check(now) or [ShortPress(round(held, 3))]
        self._pressed_at = None
        self._armed = True
        return out

    def tick(self, now: float) -> list[ButtonAction]:
        return self._check(now)

    def _check(self, now: float) -> list[ButtonAction]:
        if self._pressed_at is None or self._fired or now - self._pressed_at < self.hold_s:
            return []
        self._fired = True
        return [ResetRequested(round(now - self._pressed_at, 3))]

    def next_deadline(self) -> float | None:
        if self._pressed_at is None or self._fired:
            return None
        return self._pressed_at + self.hold_s


def find_input_device(pattern: str, sys_root: Path = Path("/sys"), dev_root: Path = Path("/dev")) -> Path | None:
    """The /dev/input/eventN whose path or device name (e.g. "gpio-keys") matches the glob."""
    if pattern.startswith("/"):
        return Path(pattern) if Path(pattern).exists() else None
    for node in sorted((sys_root / "class" / "input").glob("event*")):
        try:
            name = (node / "device" / "name").read_text().strip()
        except OSError:
            continue
        if fnmatch.fnmatchcase(name, pattern):
            return dev_root / "input" / node.name
    return None


def key_is_down(fd: int, key: int) -> bool:
    """EVIOCGKEY: the key's state now; False where the fd is not an input device (a test pipe)."""
    buf = bytearray((KEY_MAX + 7) // 8 + 1)
    try:
        fcntl.ioctl(fd, _EVIOCGKEY, buf, True)
    except OSError:
        return False
    return bool(buf[key // 8] & (1 << (key % 8)))


class ButtonWatcher:
    """Reads key events from `fd` in the running loop; calls `on_action` for each ButtonAction."""

    def __init__(self, fd: int, key: int, hold_s: float, on_action: Callable[[ButtonAction], None],
                 clock: Callable[[], float] | None = None) -> None:  # fmt: skip
        self.fd = fd
        self.key = key
        self.on_action = on_action
        self.tracker = PressTracker(hold_s, initially_down=key_is_down(fd, key))
        self._loop = asyncio.get_running_loop()
        self._clock = clock or self._loop.time
        self._buffer = b""
        self._timer: asyncio.TimerHandle | None = None
        os.set_blocking(fd, False)
        self._loop.add_reader(fd, self._readable)
        self.closed = asyncio.Event()

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, INPUT_EVENT.size * 64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the device went away (unplugged, driver unbound)
            self.close()
            return
        self._buffer += data
        now = self._clock()
        while len(self._buffer) >= INPUT_EVENT.size:
            _, _, etype, code, value = INPUT_EVENT.unpack_from(self._buffer)
            self._buffer = self._buffer[INPUT_EVENT.size :]
            if etype == EV_KEY and code == self.key:
                self._emit(self.tracker.key(value, now))
        self._rearm()

    def _emit(self, actions: list[ButtonAction]) -> None:
        for action in actions:
            self.on_action(action)

    def _rearm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.tracker.next_deadline()
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._emit(self.tracker.tick(self._clock()))
        self._rearm()

    def close(self) -> None:
        if self.closed.is_set():
            return
        if self._timer is not None:
            self._timer.cancel()
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self.fd)
        self.closed.set()


def input_event(code: int, value: int, etype: int = EV_KEY, sec: int = 0, usec: int = 0) -> bytes:
    """One `struct input_event` record (tests write these into a pipe)."""
    return INPUT_EVENT.pack(sec, usec, etype, code, value)
