"""Shared fixtures of the management-plane unit tests: a valid config text and a store on tmp_path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mgmt.store import ConfigStore, ReloadResult

BASE_CONFIG = textwrap.dedent(
    """\
    sbc:
      user_agent: TestSBC
    realms:
      - name: lan
        address: 10.0.0.1
        listen: [{transport: udp, port: 5060}]
        media: {address: 10.0.0.1, ports: 30000-30999}
      - name: wan
        address: 10.0.1.1
        listen: [{transport: udp, port: 5060}]
        media: {address: 10.0.1.1, ports: 31000-31999}
    routes:
      - {name: out, from: lan, to: wan}
    header_rules: []
    """
)


def with_rule(header: str = "X-Branch-Id", value: str = "b42") -> str:
    return BASE_CONFIG.replace(
        "header_rules: []",
        f"header_rules:\n  - {{realm: wan, direction: outbound, actions: [{{add: {header}, value: {value}}}]}}",
    )


class FakeSbc:
    """Records reload requests; answers what the test sets."""

    def __init__(self) -> None:
        self.reloads: list[str] = []
        self.answer = ReloadResult(applied=True)

    def __call__(self, path: Path) -> ReloadResult:
        self.reloads.append(path.read_text())
        return self.answer


@pytest.fixture
def sbc() -> FakeSbc:
    return FakeSbc()


@pytest.fixture
def store(tmp_path: Path, sbc: FakeSbc) -> ConfigStore:
    active = tmp_path / "sbc.yaml"
    active.write_text(BASE_CONFIG)
    s = ConfigStore(active, tmp_path / "state" / "config", sbc)
    s.open(now=1000.0)
    return s
