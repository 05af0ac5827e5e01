"""The config store: revisions, diff, commit, commit-confirmed expiry with driven time, rollback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mgmt.store import (
    ConfigStore,
    InvalidConfig,
    NotFound,
    PendingConfirm,
    ReloadResult,
    Revision,
    RevisionKind,
    SbcRefused,
    StoreError,
)
from tests.unit.mgmt.conftest import BASE_CONFIG, FakeSbc, with_rule


def test_first_open_records_revision_1(store: ConfigStore) -> None:
    (r1,) = store.revisions()
    assert (r1.number, r1.kind, r1.author) == (1, RevisionKind.INITIAL, "system")
    assert store.revision(1)[1] == BASE_CONFIG
    assert store.active_revision() == 1 and store.pending() is None and store.candidate() is None


def test_reopen_notices_an_edit_outside(store: ConfigStore, sbc: FakeSbc) -> None:
    store.open(now=1001.0)
    assert store.active_revision() == 1  # unchanged file: nothing new
    store.active.write_text(with_rule())
    store.open(now=1002.0)
    assert store.latest() is not None and store.latest().kind == RevisionKind.EXTERNAL  # type: ignore[union-attr]


def test_stage_diff_commit(store: ConfigStore, sbc: FakeSbc) -> None:
    store.stage(with_rule(), "alice", now=1010.0)
    diff = store.diff()
    assert diff.startswith("--- active\n+++ candidate\n")
    assert "+  - {realm: wan, direction: outbound, actions: [{add: X-Branch-Id, value: b42}]}" in diff
    result = store.commit("alice", now=1020.0, comment="branch id")
    assert result.revision.number == 2 and result.revision.author == "alice" and result.revision.comment == "branch id"
    assert result.pending is None and result.reload.applied
    assert store.active.read_text() == with_rule()
    assert sbc.reloads == [with_rule()]  # the SBC was asked once, with the new file in place
    assert store.candidate() is None
    assert "X-Branch-Id" in store.diff(1, 2)
    meta = json.loads((store.revisions_dir / "000002.json").read_text())
    assert meta["author"] == "alice" and meta["time"] == 1020.0 and meta["kind"] == "commit"


def test_invalid_config_is_refused_with_lines_and_the_old_kept(store: ConfigStore, sbc: FakeSbc) -> None:
    store.stage(with_rule(), "alice", now=1010.0)
    bad = BASE_CONFIG.replace("ports: 31000-31999", "ports: 31001-31999").replace("to: wan", "to: wna")
    with pytest.raises(InvalidConfig) as info:
        store.stage(bad, "bob", now=1011.0)
    found = [(p.line, p.path) for p in info.value.problems]
    assert (11, "realms[1].media.ports") in found and (13, "routes[0].to") in found
    assert store.candidate() is not None and store.candidate().text == with_rule()  # type: ignore[union-attr]
    assert store.active.read_text() == BASE_CONFIG and sbc.reloads == []


def test_yaml_syntax_error_names_its_line(store: ConfigStore) -> None:
    with pytest.raises(InvalidConfig) as info:
        store.validate("realms:\n  - name: [unclosed\n")
    assert info.value.problems[0].line >= 2


def test_commit_needs_a_candidate_and_a_change(store: ConfigStore) -> None:
    with pytest.raises(StoreError, match="nothing is staged"):
        store.commit("alice", 1.0, "x")
    store.stage(BASE_CONFIG, "alice", 2.0)
    with pytest.raises(StoreError, match="identical"):
        store.commit("alice", 3.0, "x")


def test_stale_candidate_is_refused(store: ConfigStore) -> None:
    store.stage(with_rule(), "alice", 2.0)
    other = ConfigStore(store.active, store.root, store.reloader)
    other.stage(with_rule("X-Other"), "bob", 3.0)  # the shared candidate: bob's replaces alice's
    other.commit("bob", 4.0, "bob's")
    store.stage(with_rule(), "alice", 5.0)
    store._candidate_meta.write_text(json.dumps({"author": "alice", "time": 5.0, "base_revision": 1}))
    with pytest.raises(StoreError, match="staged against revision 1"):
        store.commit("alice", 6.0, "late")


def test_commit_confirmed_reverts_by_itself_when_time_runs_out(tmp_path: Path, sbc: FakeSbc) -> None:
    events: list[tuple[Revision, PendingConfirm]] = []
    active = tmp_path / "sbc.yaml"
    active.write_text(BASE_CONFIG)
    store = ConfigStore(active, tmp_path / "config", sbc, on_auto_rollback=lambda r, p: events.append((r, p)))
    store.open(100.0)
    store.stage(with_rule(), "alice", 110.0)
    result = store.commit("alice", 120.0, "risky", confirm_timeout_s=60)
    assert result.pending is not None and result.pending.deadline == 180.0 and store.next_deadline() == 180.0
    assert store.expire(179.9) is None and active.read_text() == with_rule()
    reverted = store.expire(180.0)
    assert reverted is not None and reverted.kind == RevisionKind.AUTO_ROLLBACK and reverted.number == 3
    assert reverted.rolled_back_to == 1 and "not confirmed within 60 s" in reverted.comment
    assert active.read_text() == BASE_CONFIG and sbc.reloads[-1] == BASE_CONFIG
    assert store.pending() is None and store.expire(1000.0) is None
    assert [(r.number, p.revision) for r, p in events] == [(3, 2)]


def test_confirm_keeps_the_commit(store: ConfigStore) -> None:
    store.stage(with_rule(), "alice", 110.0)
    store.commit("alice", 120.0, "risky", confirm_timeout_s=60)
    with pytest.raises(StoreError, match="waiting for confirmation"):
        store.commit("alice", 121.0, "second")
    assert store.confirm().number == 2
    assert store.expire(10_000.0) is None and store.active.read_text() == with_rule()
    with pytest.raises(StoreError, match="no commit is waiting"):
        store.confirm()


def test_pending_deadline_survives_a_restart(tmp_path: Path, sbc: FakeSbc) -> None:
    active = tmp_path / "sbc.yaml"
    active.write_text(BASE_CONFIG)
    first = ConfigStore(active, tmp_path / "config", sbc)
    first.open(100.0)
    first.stage(with_rule(), "alice", 110.0)
    first.commit("alice", 120.0, "risky", confirm_timeout_s=30)
    # mgmt restarts (a new object over the same files) after the deadline passed while it was down
    second = ConfigStore(active, tmp_path / "config", sbc)
    second.open(500.0)
    assert second.next_deadline() == 150.0
    reverted = second.expire(500.0)
    assert reverted is not None and active.read_text() == BASE_CONFIG


def test_rollback_to_any_revision(store: ConfigStore, sbc: FakeSbc) -> None:
    store.stage(with_rule("X-A"), "alice", 1.0)
    store.commit("alice", 2.0, "a")
    store.stage(with_rule("X-B"), "alice", 3.0)
    store.commit("alice", 4.0, "b")
    result = store.rollback(2, "bob", 5.0)
    assert result.revision.number == 4 and result.revision.rolled_back_to == 2
    assert result.revision.comment == "rollback to revision 2" and result.revision.kind == RevisionKind.ROLLBACK
    assert store.active.read_text() == with_rule("X-A")
    store.rollback(1, "bob", 6.0, "back to the start")
    assert store.active.read_text() == BASE_CONFIG and [r.number for r in store.revisions()] == [1, 2, 3, 4, 5]
    with pytest.raises(NotFound):
        store.rollback(99, "bob", 7.0)


def test_sbc_refusal_puts_the_old_file_back(store: ConfigStore, sbc: FakeSbc) -> None:
    sbc.answer = ReloadResult(applied=False, problems=("realm lan: cannot bind 10.0.0.1:5060",))
    store.stage(with_rule(), "alice", 1.0)
    with pytest.raises(SbcRefused, match="cannot bind"):
        store.commit("alice", 2.0, "x")
    assert store.active.read_text() == BASE_CONFIG and store.active_revision() == 1


def test_unreachable_sbc_still_commits_and_says_so(store: ConfigStore, sbc: FakeSbc) -> None:
    sbc.answer = ReloadResult(applied=False, error="cannot reach the SBC")
    store.stage(with_rule(), "alice", 1.0)
    result = store.commit("alice", 2.0, "x")
    assert result.reload.error == "cannot reach the SBC" and store.active.read_text() == with_rule()


def test_restart_required_is_recorded(store: ConfigStore, sbc: FakeSbc) -> None:
    sbc.answer = ReloadResult(applied=True, restart_required=("realm lan: listener changed",))
    store.stage(with_rule(), "alice", 1.0)
    result = store.commit("alice", 2.0, "x")
    assert store.revision(result.revision.number)[0].restart_required == ("realm lan: listener changed",)


def test_diff_without_candidate_is_not_found(store: ConfigStore) -> None:
    with pytest.raises(NotFound):
        store.diff()
    with pytest.raises(NotFound):
        store.revision(7)
