"""Load the relay object with bpftool, pin it, and open the pinned program and maps.

Pins under SBC_PIN_DIR are what lets media keep flowing across sbc.service restarts:
a restart opens the pins again instead of loading a new program. A reload (upgrade)
reuses the pinned maps, so live sessions survive the new program too.
"""

from __future__ import annotations

import ctypes
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from dataplane.xdp import abi, bpfsys
from dataplane.xdp.tool import run

BPF_DIR: Final = Path(__file__).resolve().parents[1] / "bpf"
OBJECT: Final = BPF_DIR / "relay.o"
BPFFS_ROOT: Final = Path("/sys/fs/bpf")

MAP_NAMES: Final = (abi.MAP_SESSIONS, abi.MAP_BLOCKLIST, abi.MAP_COUNTERS, abi.MAP_EGRESS, abi.MAP_CONFIG)

# What each pinned map must look like; a pin left by another ABI version fails loudly.
_EXPECTED_MAPS: Final[dict[str, tuple[bpfsys.MapType, int, int]]] = {
    abi.MAP_SESSIONS: (bpfsys.MapType.HASH, ctypes.sizeof(abi.SessionKey), ctypes.sizeof(abi.Session)),
    abi.MAP_BLOCKLIST: (bpfsys.MapType.HASH, ctypes.sizeof(abi.BlockKey), ctypes.sizeof(abi.Block)),
    abi.MAP_COUNTERS: (bpfsys.MapType.PERCPU_ARRAY, 4, ctypes.sizeof(abi.CounterSet)),
    abi.MAP_EGRESS: (bpfsys.MapType.DEVMAP_HASH, 4, 4),
    abi.MAP_CONFIG: (bpfsys.MapType.ARRAY, 4, ctypes.sizeof(abi.Config)),
}

# bpffs refuses names with dots (reserved by the kernel), so no ".staging".
_STAGING: Final = "staging"


class AbiMismatch(RuntimeError):
    """A pinned map does not have the layout this code was built for."""


@dataclass
class RelayObjects:
    """Open descriptors of the pinned program and its maps."""

    pin_dir: Path
    prog: bpfsys.BpfFd
    sessions: bpfsys.BpfFd
    blocklist: bpfsys.BpfFd
    counters: bpfsys.BpfFd
    egress: bpfsys.BpfFd
    config: bpfsys.BpfFd

    def close(self) -> None:
        for obj in (self.prog, self.sessions, self.blocklist, self.counters, self.egress, self.config):
            obj.close()

    def __enter__(self) -> RelayObjects:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def bpffs_mounted(path: Path = BPFFS_ROOT) -> bool:
    with Path("/proc/self/mounts").open() as mounts:
        return any(line.split()[1:3] == [str(path), "bpf"] for line in mounts)


def ensure_bpffs(path: Path = BPFFS_ROOT) -> None:
    """Pins need a bpf filesystem; systemd mounts one, a bare container may not."""
    if not bpffs_mounted(path):
        path.mkdir(parents=True, exist_ok=True)
        run(["mount", "-t", "bpf", "bpf", str(path)], hint="pinning needs root and a kernel with BPF")


class ObjectMissing(FileNotFoundError):
    """The relay object was not built: it is made at build time (`make bpf`, the image build), never
    compiled at run time (the box has no compiler)."""


def require_object(obj: Path = OBJECT) -> Path:
    """`obj` if it exists, else `ObjectMissing` saying how to build it."""
    if not obj.is_file():
        raise ObjectMissing(f"{obj} is not built: run `make bpf` (clang builds it from {obj.with_suffix('.c').name})")
    return obj


def _remove_pins(directory: Path) -> None:
    # bpffs has no recursive removal of its own; unlinking a pin only drops a reference.
    if directory.exists():
        shutil.rmtree(directory)


def load(
    obj: Path = OBJECT,
    pin_dir: Path = Path(abi.PIN_DIR),
    *,
    replace: bool = False,
    bpftool: str = "bpftool",
) -> RelayObjects:
    """Make sure the relay is loaded and pinned in pin_dir, and open it.

    Already pinned and not `replace`: just open (the restart case). Otherwise load
    the object with bpftool, reusing whichever maps are already pinned, and swap the
    program pin; whoever attached the old program must attach the new one.
    """
    ensure_bpffs()
    pin_dir.mkdir(parents=True, exist_ok=True)
    prog_pin = pin_dir / abi.PROG_PIN_NAME
    if prog_pin.exists() and not replace:
        return open_pinned(pin_dir)
    require_object(obj)

    staging = pin_dir / _STAGING
    _remove_pins(staging)
    staging.mkdir()
    try:
        argv = [bpftool, "prog", "load", str(obj), str(staging / abi.PROG_PIN_NAME), "type", "xdp"]
        for name in MAP_NAMES:
            if (pin_dir / name).exists():
                argv += ["map", "name", name, "pinned", str(pin_dir / name)]
        argv += ["pinmaps", str(staging)]
        run(argv, hint="the verifier log above says why; `bpftool -d prog load ...` shows more")
        for name in MAP_NAMES:
            if not (pin_dir / name).exists():
                (staging / name).rename(pin_dir / name)
        (staging / abi.PROG_PIN_NAME).replace(prog_pin)
    finally:
        _remove_pins(staging)
    return open_pinned(pin_dir)


def _check_map(fd: bpfsys.BpfFd, name: str) -> None:
    info = bpfsys.map_info(fd)
    map_type, key_size, value_size = _EXPECTED_MAPS[name]
    got = (info.type, info.key_size, info.value_size)
    want = (int(map_type), key_size, value_size)
    if got != want:
        raise AbiMismatch(
            f"pinned map {name} has (type, key, value size) = {got}, this code expects {want}: "
            "a pin from another version; unpin it and load again"
        )


def open_pinned(pin_dir: Path = Path(abi.PIN_DIR)) -> RelayObjects:
    """Open the pinned program and maps (BPF_OBJ_GET) and check the map layouts."""
    fds = {name: bpfsys.obj_get(pin_dir / name) for name in MAP_NAMES}
    for name, fd in fds.items():
        _check_map(fd, name)
    return RelayObjects(
        pin_dir=pin_dir,
        prog=bpfsys.obj_get(pin_dir / abi.PROG_PIN_NAME),
        sessions=fds[abi.MAP_SESSIONS],
        blocklist=fds[abi.MAP_BLOCKLIST],
        counters=fds[abi.MAP_COUNTERS],
        egress=fds[abi.MAP_EGRESS],
        config=fds[abi.MAP_CONFIG],
    )


def unpin(pin_dir: Path = Path(abi.PIN_DIR)) -> None:
    """Remove the pins. The program stays alive while an interface still has it attached."""
    _remove_pins(pin_dir)
