"""The update hand-over's decisions: version policy, status after a reboot, and the installer refusing a
bundle that the spool holds but that does not verify."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hw.appliance import update
from hw.appliance.update import install_requested
from hw.firmware import spool as update_spool
from hw.firmware.bundle import payload_names, write_bundle
from hw.firmware.spool import Spool, UpdateState, check_version, read_status, write_json


def test_version_policy() -> None:
    assert check_version("0.2.0", "0.1.0", False) is None
    assert "running now" in str(check_version("0.1.0", "0.1.0", True))
    assert "older" in str(check_version("0.0.9", "0.1.0", False))
    assert check_version("0.0.9", "0.1.0", True) is None


def test_status_after_reboot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(tmp_path)
    write_json(spool.status, {"state": "rebooting", "version": "0.2.0", "previous": "0.1.0", "boot_id": "old"})
    monkeypatch.setattr(update_spool, "_boot_id", lambda: "new")
    assert read_status(spool, booted="0.1.0")["state"] == UpdateState.ROLLED_BACK
    assert read_status(spool, booted="0.2.0")["state"] == UpdateState.REBOOTING  # booted, health pending
    monkeypatch.setattr(update_spool, "_boot_id", lambda: "old")
    assert read_status(spool, booted="0.1.0")["state"] == UpdateState.REBOOTING  # not rebooted yet


def test_installer_refuses_an_unverifiable_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(tmp_path)
    spool.incoming.mkdir()
    (spool.incoming / "x.sbcupdate").write_bytes(b"not a bundle")
    write_json(spool.request, {"bundle": "x.sbcupdate", "requested_by": "admin"})
    monkeypatch.setattr(update, "load_trusted_keys", lambda: [])
    monkeypatch.setattr(update, "_sysupdate", lambda version: pytest.fail("sysupdate must not run"))
    assert install_requested(spool, reboot=lambda: pytest.fail("no reboot after a refusal")) == 1
    status = read_status(spool)
    assert status["state"] == UpdateState.FAILED and "no trusted update keys" in status["error"]
    assert not spool.request.exists() and not (spool.incoming / "x.sbcupdate").exists()


def test_installer_refuses_a_path_in_the_request(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.incoming.mkdir()
    write_json(spool.request, {"bundle": "../../etc/shadow"})
    assert install_requested(spool, reboot=lambda: pytest.fail("no reboot after a refusal")) == 1
    assert "names no bundle" in read_status(spool)["error"]


@pytest.mark.parametrize(("allowed", "installs"), [(True, True), (None, False), (False, False), ("true", False),
                                                   (1, False)])  # fmt: skip
def test_installer_downgrades_only_when_the_request_says_true(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, allowed: object, installs: bool
) -> None:
    key = Ed25519PrivateKey.generate()
    root, uki = payload_names("0.0.9")
    for name in (root, uki):
        (tmp_path / name).write_bytes(b"x")
    spool = Spool(tmp_path / "spool")
    spool.incoming.mkdir(parents=True)
    write_bundle(spool.incoming / "old.sbcupdate", "0.0.9", "x86-64", [tmp_path / root, tmp_path / uki], key)
    write_json(spool.request, {"bundle": "old.sbcupdate", "reboot": False,
                               **({} if allowed is None else {"allow_downgrade": allowed})})  # fmt: skip
    installed: list[str] = []
    monkeypatch.setattr(update, "load_trusted_keys", lambda: [key.public_key()])
    monkeypatch.setattr(update, "machine_arch", lambda: "x86-64")
    monkeypatch.setattr(update, "booted_version", lambda: "0.1.0")
    monkeypatch.setattr(update, "_sysupdate", installed.append)
    monkeypatch.setattr(update, "FirstBoot", lambda **_: SimpleNamespace(apply_every_boot=lambda: None))
    assert install_requested(spool, reboot=lambda: pytest.fail("reboot: false was asked")) == (0 if installs else 1)
    status = read_status(spool, booted="0.1.0")
    if installs:
        assert installed == ["0.0.9"] and status["state"] == UpdateState.INSTALLED
    else:
        assert installed == [] and status["state"] == UpdateState.FAILED and "older" in status["error"]
