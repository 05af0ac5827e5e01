"""The production image's inputs name no test hook: the VM test agent, its unit and its udev rule
come only from the tests' extra tree (tests/image/agent-tree); the image tests check the built image
itself (tests/image/test_production_image.py)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
AGENT_NAMES = ("testagent", "test-agent", "org.sbc.test")
# What mkosi makes the production image from (mkosi.conf: ExtraTrees, PostInstallationScripts, ...).
PRODUCTION_INPUTS = ("mkosi.conf", "mkosi.conf.d", "rootfs", "image/mkosi", "image/repart", "image/initrd")


def production_files() -> list[Path]:
    files: list[Path] = []
    for name in PRODUCTION_INPUTS:
        path = ROOT / name
        files += [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return files


def test_the_production_inputs_do_not_install_or_enable_the_agent() -> None:
    files = production_files()
    assert any(f.name == "sbc.service" for f in files)  # the walk reaches the units
    offenders = [
        f"{f.relative_to(ROOT)}: {word}"
        for f in files
        for word in AGENT_NAMES
        if word in f.name or word in f.read_text(errors="replace")
    ]
    assert offenders == []


def test_the_agent_is_in_the_tests_tree() -> None:
    tree = ROOT / "tests/image/agent-tree"
    unit = tree / "usr/lib/systemd/system/sbc-test-agent.service"
    assert "/usr/lib/sbc/testagent.py" in unit.read_text()
    assert "sbc-test-agent.service" in (tree / "usr/lib/udev/rules.d/60-sbc-test-agent.rules").read_text()
    assert (ROOT / "image/testagent.py").is_file()  # staged into the tree by tests/image/conftest.py
