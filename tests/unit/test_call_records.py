"""Call records: cdr.jsonl rotated by size and by age with a retention count; the settings come from
`sbc.cdr` (read at every write); a file rotated by someone else is noticed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sbc.call_records import CallRecordFile
from sbc.config.loader import load_config_text
from sbc.config.model import CallRecordSettings
from sbc.yamlsource import ConfigError

DAY = 86400.0
REALMS = """\
realms:
  - name: lan
    address: 10.0.0.1
    listen: [{transport: udp, port: 5060}]
    media: {address: 10.0.0.1, ports: 30000-30999}
routes: []
"""


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def record(i: int, clock: Clock) -> dict[str, object]:
    return {"recorded_at": clock.now, "call": f"c{i}", "status": 200, "pad": "x" * 150}


def calls_in(path: Path) -> list[str]:
    return [json.loads(line)["call"] for line in path.read_text().splitlines()]


def test_rotated_by_size_keeping_the_newest_files(tmp_path: Path) -> None:
    clock = Clock()
    cdr = CallRecordFile(tmp_path / "cdr.jsonl", lambda: CallRecordSettings(max_bytes=4096, keep=2), clock)
    for i in range(100):  # ~20 KiB
        cdr.append(record(i, clock))
    cdr.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cdr.jsonl", "cdr.jsonl.1", "cdr.jsonl.2"]
    assert all(p.stat().st_size <= 4096 for p in tmp_path.iterdir())
    kept = [*calls_in(tmp_path / "cdr.jsonl.2"), *calls_in(tmp_path / "cdr.jsonl.1"), *calls_in(tmp_path / "cdr.jsonl")]
    assert kept == [f"c{i}" for i in range(100 - len(kept), 100)] and len(kept) > 40  # in order, oldest pruned


def test_rotated_by_age_also_after_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    settings = CallRecordSettings(max_age_days=1, keep=3)
    cdr = CallRecordFile(tmp_path / "cdr.jsonl", lambda: settings, clock)
    cdr.append(record(0, clock))
    clock.now += DAY - 1
    cdr.append(record(1, clock))
    assert not (tmp_path / "cdr.jsonl.1").exists()
    cdr.close()  # the SBC restarts: the age comes from the file's first record
    clock.now += 2
    again = CallRecordFile(tmp_path / "cdr.jsonl", lambda: settings, clock)
    again.append(record(2, clock))
    assert calls_in(tmp_path / "cdr.jsonl.1") == ["c0", "c1"] and calls_in(tmp_path / "cdr.jsonl") == ["c2"]


def test_keep_zero_deletes_and_settings_apply_at_the_next_write(tmp_path: Path) -> None:
    clock = Clock()
    settings = [CallRecordSettings(max_bytes=1 << 20, keep=0)]
    cdr = CallRecordFile(tmp_path / "cdr.jsonl", lambda: settings[0], clock)
    for i in range(30):
        cdr.append(record(i, clock))
    settings[0] = CallRecordSettings(max_bytes=4096, keep=0)  # a reload made the limit smaller
    cdr.append(record(30, clock))
    assert [p.name for p in tmp_path.iterdir()] == ["cdr.jsonl"] and calls_in(tmp_path / "cdr.jsonl") == ["c30"]


def test_a_file_moved_away_by_someone_else_is_followed(tmp_path: Path) -> None:
    clock = Clock()
    cdr = CallRecordFile(tmp_path / "cdr.jsonl", CallRecordSettings, clock)
    cdr.append(record(0, clock))
    (tmp_path / "cdr.jsonl").rename(tmp_path / "archived.jsonl")
    cdr.append(record(1, clock))
    assert calls_in(tmp_path / "cdr.jsonl") == ["c1"] and calls_in(tmp_path / "archived.jsonl") == ["c0"]


def test_the_settings_come_from_the_sbc_section_with_defaults() -> None:
    assert load_config_text(REALMS, "t.yaml").cdr == CallRecordSettings()
    text = "sbc:\n  cdr: {max_bytes: 1048576, max_age_days: 0, keep: 3}\n" + REALMS
    assert load_config_text(text, "t.yaml").cdr == CallRecordSettings(max_bytes=1 << 20, max_age_days=0, keep=3)
    with pytest.raises(ConfigError) as info:
        load_config_text("sbc:\n  cdr: {max_bytes: 10, keep: -1, ages: 3}\n" + REALMS, "t.yaml")
    paths = sorted(p.path for p in info.value.problems)
    assert paths == ["sbc.cdr.ages", "sbc.cdr.keep", "sbc.cdr.max_bytes"]
    audit = load_config_text(REALMS + "management:\n  audit: {max_bytes: 8192, keep: 0}\n", "t.yaml")
    assert (audit.management.audit.max_bytes, audit.management.audit.keep) == (8192, 0)
