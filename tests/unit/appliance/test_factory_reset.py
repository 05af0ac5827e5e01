"""Factory reset request and apply, with the EFI variable as a plain file."""

from __future__ import annotations

import json
from pathlib import Path

from sbc.appliance.factory_reset import apply_factory_reset, ask_for_factory_reset, request_factory_reset


def test_request_sets_the_variable_and_clears_the_spool(tmp_path: Path) -> None:
    var, spool = tmp_path / "SbcFactoryReset-x", tmp_path / "factory-reset"
    ask_for_factory_reset("admin", request_file=spool)
    assert json.loads(spool.read_text())["requested_by"] == "admin"
    request_factory_reset(var=var, reboot=False, request_file=spool)
    assert var.read_bytes() == b"\x07\x00\x00\x00" + b"1"
    assert not spool.exists()


def test_apply_runs_repart_once_and_clears(tmp_path: Path) -> None:
    var = tmp_path / "SbcFactoryReset-x"
    calls: list[int] = []
    assert apply_factory_reset(var, repart=lambda: calls.append(1) or 0) is False
    var.write_bytes(b"\x07\x00\x00\x001")
    assert apply_factory_reset(var, repart=lambda: calls.append(1) or 0) is True
    assert calls == [1] and not var.exists()


def test_a_failing_repart_still_clears_the_request(tmp_path: Path) -> None:
    var = tmp_path / "SbcFactoryReset-x"
    var.write_bytes(b"\x07\x00\x00\x001")
    assert apply_factory_reset(var, repart=lambda: 1) is False
    assert not var.exists()
