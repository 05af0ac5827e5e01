"""The audit log's hash chain and rotation: every record carries the SHA-256 of the one before, across
rotated files; the verifier names the line an edit broke; the tail reads on into the rotated file."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import pytest

from mgmt.audit import GENESIS, AuditLog, main, verify_chain

CONFIG = """\
sbc: {state_dir: STATE}
realms:
  - name: lan
    address: 10.0.0.1
    listen: [{transport: udp, port: 5060}]
    media: {address: 10.0.0.1, ports: 30000-30999}
routes: []
management:
  audit: {max_bytes: 4096, keep: 2}
"""


def fill(log: AuditLog, count: int) -> None:
    for i in range(count):
        log.write("alice", "127.0.0.1", "config.commit", target=f"r{i}", now=float(i), comment="x" * 100)


def test_each_record_carries_the_hash_of_the_line_before(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    fill(log, 3)
    lines = log.path.read_bytes().splitlines()
    assert json.loads(lines[0])["prev"] == GENESIS
    for before, after in itertools.pairwise(lines):
        assert json.loads(after)["prev"] == hashlib.sha256(before).hexdigest()
    report = verify_chain(log.path)
    assert report.broken is None and report.records == 3 and report.anchored


def test_rotation_by_size_keeps_the_chain_across_files_and_the_retention(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log", max_bytes=4096, keep=2)
    fill(log, 100)  # ~25 KiB: rotated several times
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["audit.log", "audit.log.1", "audit.log.2"]
    assert all(p.stat().st_size <= 4096 for p in tmp_path.iterdir())
    newest_rotated = (tmp_path / "audit.log.1").read_bytes().splitlines()[-1]
    first_current = json.loads(log.path.read_bytes().splitlines()[0])
    assert first_current["prev"] == hashlib.sha256(newest_rotated).hexdigest()
    report = verify_chain(log.path)
    assert report.broken is None and not report.anchored  # older records were rotated away
    assert report.records == sum(len(p.read_bytes().splitlines()) for p in tmp_path.iterdir())
    assert len(log.path.read_bytes().splitlines()) < 20
    tail = log.tail(20)  # more than the current file holds: continued from audit.log.1
    assert [e["target"] for e in tail] == [f"r{i}" for i in range(80, 100)]


@pytest.mark.parametrize("victim", ["audit.log", "audit.log.1"])
def test_the_verifier_names_an_edited_line(tmp_path: Path, victim: str, capsys: pytest.CaptureFixture[str]) -> None:
    log = AuditLog(tmp_path / "audit.log", max_bytes=4096, keep=2)
    fill(log, 60)
    path = tmp_path / victim
    lines = path.read_text().splitlines(keepends=True)
    lines[4] = lines[4].replace('"user": "alice"', '"user": "mallory"')
    path.write_text("".join(lines))
    report = verify_chain(log.path)
    assert report.broken is not None and report.broken.file == path and report.broken.line == 5
    assert main(["verify", "--log", str(log.path)]) == 1
    assert f"{path} line 5:" in capsys.readouterr().err


def test_a_removed_line_and_a_line_that_is_not_a_record_are_named(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    fill(log, 6)
    lines = log.path.read_text().splitlines(keepends=True)
    log.path.write_text("".join(lines[:2] + lines[3:]))  # the third record removed
    broken = verify_chain(log.path).broken
    assert broken is not None and broken.line == 2
    log.path.write_text("".join([*lines[:3], "garbage\n", *lines[3:]]))
    broken = verify_chain(log.path).broken
    assert broken is not None and broken.line == 4 and "not an audit record" in broken.reason


def test_a_torn_last_line_is_ended_and_stays_in_the_chain(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    fill(log, 2)
    with log.path.open("a") as fh:
        fh.write('{"time": 3, "user": "al')  # a crash in the middle of a write
    log.write("alice", "127.0.0.1", "auth.login")
    lines = log.path.read_bytes().splitlines()
    assert len(lines) == 4 and json.loads(lines[3])["prev"] == hashlib.sha256(lines[2]).hexdigest()
    broken = verify_chain(log.path).broken
    assert broken is not None and broken.line == 3  # the torn fragment is reported, not hidden


def test_verify_command_reads_the_log_of_a_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "sbc.yaml"
    config.write_text(CONFIG.replace("STATE", str(tmp_path / "state")))
    assert main(["verify", "--config", str(config)]) == 2  # no log yet
    log = AuditLog(tmp_path / "state" / "audit.log", max_bytes=4096, keep=2)
    fill(log, 10)
    assert main(["verify", "--config", str(config)]) == 0
    assert "10 records in 1 file(s) chain intact from the first record" in capsys.readouterr().out
