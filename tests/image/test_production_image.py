"""The image a customer flashes carries no test hook (issue 16, item 4).

The VM test agent runs any command as root for whoever holds its virtio-serial port; it belongs to
the tests' variant only (tests/image/agent-tree laid over the image). These tests read the built
root file systems (image.root.raw, ext4) with debugfs, without mounting or booting anything.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.image.conftest import Built, Firmware

# Where the agent, its unit, its udev rule or an enablement of it could be.
DIRECTORIES = ("/usr/lib/sbc", "/usr/lib/systemd/system", "/usr/lib/udev/rules.d", "/etc/udev/rules.d",
               "/etc/systemd/system", "/etc/systemd/system/multi-user.target.wants",
               "/usr/lib/systemd/system-preset")  # fmt: skip
AGENT_FILES = ("testagent.py", "sbc-test-agent.service", "60-sbc-test-agent.rules")


def names_in(root_fs: Path, directory: str) -> set[str]:
    """File names in `directory` of the ext4 image `root_fs` (empty when the directory is absent)."""
    debugfs = shutil.which("debugfs") or "/usr/sbin/debugfs"
    done = subprocess.run([debugfs, "-R", f"ls -p {directory}", str(root_fs)], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    # `ls -p`: /inode/mode/uid/gid/name/size/ per entry
    return {fields[5] for line in done.stdout.splitlines() if len(fields := line.split("/")) > 6} - {".", ".."}


def files_of(built: Built) -> dict[str, set[str]]:
    root_fs = built.output_dir / "image.root.raw"
    if not Path("/usr/sbin/debugfs").exists() and shutil.which("debugfs") is None:
        pytest.skip("debugfs (e2fsprogs) is needed to read the root file system")
    assert root_fs.exists(), f"{root_fs}: the build writes the root partition as a split artifact"
    return {directory: names_in(root_fs, directory) for directory in DIRECTORIES}


def test_the_production_image_has_no_test_agent(production: Built) -> None:
    listing = files_of(production)
    assert "sbc.service" in listing["/usr/lib/systemd/system"]  # the listing works: the product is there
    found = {d: sorted(n for n in names if n in AGENT_FILES or "test-agent" in n) for d, names in listing.items()}
    assert not any(found.values()), f"test hooks in the production image: {found}"
    presets = subprocess.run(["debugfs", "-R", "cat /usr/lib/systemd/system-preset/10-sbc.preset",
                              str(production.output_dir / "image.root.raw")], capture_output=True, text=True,
                             timeout=60, check=True).stdout  # fmt: skip
    assert "enable sbc.service" in presets and "test-agent" not in presets


def test_the_test_variant_has_the_agent(firmware: Firmware) -> None:
    listing = files_of(firmware.base)
    assert "testagent.py" in listing["/usr/lib/sbc"]
    assert "sbc-test-agent.service" in listing["/usr/lib/systemd/system"]
    assert "60-sbc-test-agent.rules" in listing["/usr/lib/udev/rules.d"]
