"""Version order as systemd-sysupdate and systemd-boot see it (the UAPI version format)."""

from __future__ import annotations

import pytest

from hw.firmware.versions import compare_versions, is_safe_version


@pytest.mark.parametrize(
    ("older", "newer"),
    [("0.1.0", "0.1.1"), ("0.1.9", "0.1.10"), ("0.9", "0.10"), ("1.0~rc1", "1.0"), ("1.0", "1.0.1"),
     ("1.0.beta", "1.0.1"), ("1.0~rc1", "1.0~rc2"), ("2", "10")],
)  # fmt: skip
def test_order(older: str, newer: str) -> None:
    assert compare_versions(older, newer) == -1
    assert compare_versions(newer, older) == 1


def test_equal() -> None:
    assert compare_versions("0.1.0", "0.1.0") == 0


@pytest.mark.parametrize("bad", ["", "../x", "1 2", "a1.0", "1/2", "1" * 40])
def test_unsafe_versions_are_refused(bad: str) -> None:
    assert not is_safe_version(bad)


def test_safe_versions() -> None:
    assert is_safe_version("0.1.0") and is_safe_version("1.2.3~rc1")
