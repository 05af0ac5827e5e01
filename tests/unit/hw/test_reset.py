"""Reset button (press-duration logic, and key events read from a real file descriptor) and the
factory reset's marker and wipe. The kernel here has no uinput, so events come through a pipe."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from hw.factory_reset import cancel_request, pending_request, request_factory_reset, wipe_state
from hw.profile import KEY_CODES
from hw.reset_button import (
    KEY_PRESSED,
    KEY_RELEASED,
    KEY_REPEAT,
    ButtonAction,
    ButtonWatcher,
    PressTracker,
    ResetRequested,
    ShortPress,
    find_input_device,
    input_event,
)

KEY = KEY_CODES["KEY_RESTART"]


def test_short_press_is_only_reported() -> None:
    t = PressTracker(hold_s=10)
    assert t.key(KEY_PRESSED, 100.0) == []
    assert t.next_deadline() == 110.0
    assert t.tick(105.0) == []
    assert t.key(KEY_RELEASED, 103.5) == [ShortPress(3.5)]
    assert t.next_deadline() is None


def test_long_press_fires_once_at_the_hold_time_while_still_held() -> None:
    t = PressTracker(hold_s=10)
    t.key(KEY_PRESSED, 0.0)
    assert t.key(KEY_REPEAT, 5.0) == []  # autorepeat is not a new press
    assert t.tick(9.99) == []
    assert t.tick(10.0) == [ResetRequested(10.0)]
    assert t.tick(20.0) == []
    assert t.key(KEY_RELEASED, 25.0) == []  # released after it fired: nothing more


def test_release_after_the_hold_time_with_a_late_tick_still_resets() -> None:
    t = PressTracker(hold_s=10)
    t.key(KEY_PRESSED, 0.0)
    assert t.key(KEY_RELEASED, 12.0) == [ResetRequested(12.0)]


def test_a_button_down_at_start_counts_only_after_a_release() -> None:
    t = PressTracker(hold_s=10, initially_down=True)
    assert t.key(KEY_PRESSED, 0.0) == []  # e.g. the state replayed at open
    assert t.tick(60.0) == []
    assert t.key(KEY_RELEASED, 61.0) == []
    t.key(KEY_PRESSED, 70.0)
    assert t.tick(80.0) == [ResetRequested(10.0)]


def test_watcher_reads_input_events_from_a_descriptor() -> None:
    async def main() -> list[ButtonAction]:
        read_fd, write_fd = os.pipe()
        actions: list[ButtonAction] = []
        watcher = ButtonWatcher(read_fd, KEY, hold_s=0.3, on_action=actions.append)
        # another key and a sync event are ignored; a short press is reported on release
        os.write(write_fd, input_event(KEY_CODES["KEY_POWER"], KEY_PRESSED) + input_event(0, 0, etype=0))
        os.write(write_fd, input_event(KEY, KEY_PRESSED))
        await asyncio.sleep(0.05)
        os.write(write_fd, input_event(KEY, KEY_RELEASED)[:10])  # a record split across reads
        await asyncio.sleep(0.02)
        os.write(write_fd, input_event(KEY, KEY_RELEASED)[10:])
        await asyncio.sleep(0.05)
        assert len(actions) == 1 and isinstance(actions[0], ShortPress)
        os.write(write_fd, input_event(KEY, KEY_PRESSED))
        await asyncio.sleep(0.6)  # held: fires at 0.3 s without any further event
        os.close(write_fd)  # the device goes away
        await asyncio.wait_for(watcher.closed.wait(), 2)
        os.close(read_fd)
        return actions

    actions = asyncio.run(main())
    assert [type(a) for a in actions] == [ShortPress, ResetRequested]
    assert 0.3 <= actions[1].held_s < 0.6


def test_find_input_device_by_name(tmp_path: Path) -> None:
    for index, name in ((0, "AT Translated Set 2 keyboard"), (3, "gpio-keys")):
        node = tmp_path / "sys" / "class" / "input" / f"event{index}" / "device"
        node.mkdir(parents=True)
        (node / "name").write_text(name + "\n")
    found = find_input_device("gpio-keys*", tmp_path / "sys", tmp_path / "dev")
    assert found == tmp_path / "dev" / "input" / "event3"
    assert find_input_device("nothing", tmp_path / "sys", tmp_path / "dev") is None


def test_factory_reset_request_and_wipe(tmp_path: Path) -> None:
    var = tmp_path / "var"
    marker = var / "lib" / "sbc-factory-reset" / "request.json"
    outside = tmp_path / "firmware.img"
    outside.write_text("firmware")
    state = ("lib/sbc/cdr.jsonl", "lib/sbc-mgmt/users.json", "lib/sbc-config/sbc.yaml", "log/journal/x/system.journal",
             "lib/sbc-credentials/admin")  # fmt: skip
    for rel in state:
        (var / rel).parent.mkdir(parents=True, exist_ok=True)
        (var / rel).write_text("state")
    (var / "lost+found").mkdir()
    (var / "lib" / "link-out").symlink_to(outside)
    (var / "lib" / "dir-link").symlink_to(tmp_path, target_is_directory=True)
    assert pending_request(marker) is None

    request = request_factory_reset("admin", "api", "moving the box", marker=marker, now=1000.0)
    assert pending_request(marker) == request
    assert json.loads(marker.read_text())["by"] == "admin"
    assert oct(marker.stat().st_mode & 0o777) == "0o600"

    report = wipe_state(var, marker)
    assert report.errors == []
    assert sorted(p.name for p in var.iterdir()) == ["lost+found"]
    assert outside.read_text() == "firmware"  # symlinks were removed, never followed
    assert (tmp_path / "firmware.img").exists()
    assert report.removed_files >= 8 and not marker.exists()
    assert pending_request(marker) is None


def test_a_torn_marker_is_still_a_request_and_cancel_removes_it(tmp_path: Path) -> None:
    marker = tmp_path / "request.json"
    marker.write_text("{not json")
    assert pending_request(marker) is not None
    assert cancel_request(marker) and not cancel_request(marker)
