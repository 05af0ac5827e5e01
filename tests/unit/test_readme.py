"""The README's examples are what the code accepts: its YAML loads, its command table is the CLI's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mgmt.cli import main
from sbc.config.loader import load_config_text

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
YAML_BLOCKS = re.findall(r"```yaml\n(.*?)```", README, re.S)


def _config_example(tmp_path: Path) -> str:
    config = YAML_BLOCKS[0]
    for name in ("sip.pem", "sip.key", "ca.pem"):
        (tmp_path / name).write_text("placeholder\n")
        config = config.replace(f"/etc/sbc/{name}", str(tmp_path / name))
    return config


def test_configuration_example_loads(tmp_path: Path) -> None:
    config = load_config_text(_config_example(tmp_path), "README")
    assert [r.name for r in config.realms] == ["lan", "wan"]
    assert config.timers.min_se_s == 90


def test_header_rule_example_loads(tmp_path: Path) -> None:
    rules = next(b for b in YAML_BLOCKS if b.startswith("header_rules:"))
    config = load_config_text(_config_example(tmp_path).replace("header_rules: []", rules), "README")
    assert [r.name for r in config.header_rules] == ["remember-phone", "tag-branch"]


def test_command_table_is_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    commands = set(re.search(r"\{([a-z,-]+)\}", capsys.readouterr().out).group(1).split(","))  # type: ignore[union-attr]
    section = README.split("## The `sbc` command", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `sbc ([a-z-]+)", section, re.M))
    assert documented == commands
