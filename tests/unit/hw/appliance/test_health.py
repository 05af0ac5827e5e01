"""The boot health check's verdicts, with the probes replaced (the real ones run in tests/image)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hw.appliance import health
from hw.appliance.health import Probe, check, run_health_check, wait_healthy


class FakeProbe(Probe):
    def __init__(self, states: dict[str, str], status: dict[str, object] | Exception, port_open: bool = True,
                 want_xdp: bool = True) -> None:  # fmt: skip
        super().__init__(config_path=Path("/nonexistent"), states=lambda: states, want_xdp=want_xdp)
        self._status = status
        self._port_open = port_open

    def sbc_status(self) -> dict[str, object]:
        if isinstance(self._status, Exception):
            raise self._status
        return self._status

    def management_port(self) -> tuple[str, int]:
        if not self._port_open:
            raise OSError("connection refused")
        return "127.0.0.1", 0  # replaced below


UP = {"sbc.service": "active", "sbc-mgmt.service": "active"}


@pytest.fixture(autouse=True)
def _no_real_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    class Conn:
        def __enter__(self) -> Conn:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    monkeypatch.setattr(health.socket, "create_connection", lambda *a, **k: Conn())


def test_all_up_with_xdp_is_healthy() -> None:
    assert check(FakeProbe(UP, {"dataplane": "xdp"})).healthy


def test_userspace_fallback_is_not_healthy_when_xdp_is_expected() -> None:
    verdict = check(FakeProbe(UP, {"dataplane": "userspace", "dataplane_note": "XDP start failed: EPERM"}))
    assert not verdict.healthy and "not XDP (XDP start failed: EPERM)" in verdict.problems[0]
    assert check(FakeProbe(UP, {"dataplane": "userspace"}, want_xdp=False)).healthy


def test_a_failed_unit_is_final() -> None:
    verdict = check(FakeProbe({"sbc.service": "failed", "sbc-mgmt.service": "active"}, {"dataplane": "xdp"}))
    assert not verdict.healthy and verdict.final and verdict.problems == ("sbc.service is failed",)


def test_activating_is_not_final_and_silence_is_reported() -> None:
    verdict = check(FakeProbe({"sbc.service": "activating", "sbc-mgmt.service": "active"}, {"dataplane": "xdp"}))
    assert not verdict.final
    verdict = check(FakeProbe(UP, OSError("no socket")))
    assert not verdict.healthy and "does not answer" in verdict.problems[0]


def test_management_port_closed() -> None:
    verdict = check(FakeProbe(UP, {"dataplane": "xdp"}, port_open=False))
    assert not verdict.healthy and "management HTTPS" in verdict.problems[0]


def test_wait_stops_at_the_deadline() -> None:
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    verdict = wait_healthy(FakeProbe({}, {}), timeout_s=10, interval_s=3, clock=lambda: now[0], sleep=sleep)
    assert not verdict.healthy and now[0] >= 10


def test_failure_on_trial_reboots_and_off_trial_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    reboots: list[int] = []
    failed = FakeProbe({"sbc.service": "failed", "sbc-mgmt.service": "active"}, {})
    monkeypatch.setattr(health, "boot_on_trial", lambda: "/EFI/Linux/sbc_0.2.0+1-1.efi")
    assert run_health_check(5, failed, reboot=lambda: reboots.append(1)) == 1
    assert reboots == [1]
    monkeypatch.setattr(health, "boot_on_trial", lambda: None)
    assert run_health_check(5, failed, reboot=lambda: reboots.append(1)) == 1
    assert reboots == [1]
