"""Issue 16 item 1, on this host's kernel: a process with CAP_BPF and nothing else, as `sbc run` runs
under sbc.service, can load a program; once it installed the SBC's filter
(`dataplane.xdp.syscall_filter`) it can still update the maps the prepare step pinned for its group,
but loading a program or creating a map fails with EPERM. The probe runs in a child process
(`bpf_probe.py`): a filter cannot be removed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataplane.xdp import abi, loader
from dataplane.xdp.prepare import PIN_DIR_MODE, PIN_MODE, hand_over
from dataplane.xdp.tool import missing_tools

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="bpf(), bpffs and setpriv need root")]

PROBE = Path(__file__).with_name("bpf_probe.py")
NOBODY = 65534  # nobody / nogroup
# CAP_BPF and nothing else, kept across the change of user: what sbc.service gives `sbc` (less
# CAP_NET_BIND_SERVICE, which has nothing to do with bpf())
ONLY_CAP_BPF = ["--inh-caps=-all,+bpf", "--ambient-caps=-all,+bpf", "--bounding-set=-all,+bpf"]


@pytest.fixture
def pins(relay_object: Path) -> Iterator[Path]:
    if missing_tools("setpriv"):
        pytest.skip("setpriv (util-linux) is not installed")
    pin_dir = Path(f"/sys/fs/bpf/sbc-filter-test-{os.getpid()}")
    loader.unpin(pin_dir)
    loader.load(relay_object, pin_dir).close()
    hand_over(pin_dir, NOBODY)
    yield pin_dir
    loader.unpin(pin_dir)


def probe(pin_dir: Path, *drop: str) -> dict[str, object]:
    argv = [*drop, sys.executable, str(PROBE), str(pin_dir / abi.MAP_SESSIONS)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def as_user(uid: int, gid: int, *caps: str) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *caps, "--"]


def test_with_only_cap_bpf_the_filter_leaves_map_updates_and_refuses_programs(pins: Path) -> None:
    result = probe(pins, *as_user(NOBODY, NOBODY, *ONLY_CAP_BPF))
    assert result == {
        "prog_load_before": "ok",  # CAP_BPF alone loads a socket filter: why the filter is needed
        "seccomp": [2, 1],  # filter mode, one filter
        "map_update": "ok",
        "prog_load": "EPERM",
        "map_create": "EPERM",
    }


def test_even_root_loads_nothing_once_the_filter_is_installed(pins: Path) -> None:
    result = probe(pins)
    assert (result["prog_load_before"], result["map_update"], result["prog_load"]) == ("ok", "ok", "EPERM")


def test_the_pins_belong_to_the_group_and_others_cannot_open_them(pins: Path) -> None:
    assert pins.stat().st_mode & 0o777 == PIN_DIR_MODE and pins.stat().st_gid == NOBODY
    for name in (abi.PROG_PIN_NAME, *loader.MAP_NAMES):
        st = (pins / name).stat()
        assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (PIN_MODE, 0, NOBODY), name
    code = f"from dataplane.xdp import bpfsys; bpfsys.obj_get({str(pins / abi.MAP_SESSIONS)!r})"
    other_group = as_user(NOBODY, 4242, *ONLY_CAP_BPF)
    done = subprocess.run([*other_group, sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "Permission denied" in done.stderr, done.stderr
