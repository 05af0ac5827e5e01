"""What a process may do with bpf(), before and after it installs the SBC's filter
(`dataplane.xdp.syscall_filter`): load a trivial socket-filter program, create a map, update a pinned
map. Prints one JSON object.

    python3 bpf_probe.py PINNED_HASH_MAP

Run by the tests as a separate process (the filter cannot be removed once installed), on this host
as an unprivileged user with CAP_BPF only (tests/dataplane/test_syscall_filter.py) and inside the
booted image as user `sbc` (tests/image/test_appliance.py, which sends this file's text to the
guest's Python: it imports nothing but the `dataplane` package installed there).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import sys
from collections.abc import Callable

from dataplane.xdp import bpfsys, syscall_filter

BPF_MAP_CREATE = 0
BPF_PROG_LOAD = 5
BPF_PROG_TYPE_SOCKET_FILTER = 1
BPF_MAP_TYPE_ARRAY = 2
# r0 = 0; exit: the smallest program the verifier accepts ("drop every packet" as a socket filter)
RETURN_ZERO = bytes([0xB7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0])


class _ProgLoadAttr(ctypes.Structure):
    _fields_ = (
        ("prog_type", ctypes.c_uint32),
        ("insn_cnt", ctypes.c_uint32),
        ("insns", ctypes.c_uint64),
        ("license", ctypes.c_uint64),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_uint64),
        ("kern_version", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
    )


class _MapCreateAttr(ctypes.Structure):
    _fields_ = (
        ("map_type", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
    )


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _bpf(cmd: int, attr: ctypes.Structure) -> int:
    """bpf(cmd, attr) for the commands `dataplane.xdp.bpfsys` leaves out (it wraps what the relay uses)."""
    nr = syscall_filter.abi_of().bpf_nr
    ret = int(
        _libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), ctypes.byref(attr), ctypes.c_uint(ctypes.sizeof(attr)))
    )
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def _outcome(call: Callable[[], object]) -> str:
    """'ok' or the errno's name."""
    try:
        fd = call()
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc.errno))
    if isinstance(fd, int) and fd >= 0:
        os.close(fd)
    return "ok"


def load_socket_filter() -> int:
    insns = ctypes.create_string_buffer(RETURN_ZERO, len(RETURN_ZERO))
    license_text = ctypes.create_string_buffer(b"GPL")
    attr = _ProgLoadAttr(
        prog_type=BPF_PROG_TYPE_SOCKET_FILTER,
        insn_cnt=len(RETURN_ZERO) // 8,
        insns=ctypes.addressof(insns),
        license=ctypes.addressof(license_text),
    )
    return _bpf(BPF_PROG_LOAD, attr)


def create_map() -> int:
    return _bpf(BPF_MAP_CREATE, _MapCreateAttr(map_type=BPF_MAP_TYPE_ARRAY, key_size=4, value_size=4, max_entries=1))


def update_pinned(path: str) -> None:
    """Insert an all-zero key (no packet has address family 0) and delete it again."""
    with bpfsys.obj_get(path) as fd:
        info = bpfsys.map_info(fd)
        key = bytes(info.key_size)
        bpfsys.map_update(fd, key, bytes(info.value_size))
        if not bpfsys.map_delete(fd, key):
            raise OSError(errno.ENOENT, "the entry just written is gone")


def main(pinned_map: str) -> dict[str, object]:
    result: dict[str, object] = {"prog_load_before": _outcome(load_socket_filter)}
    syscall_filter.restrict_bpf_to_map_access()
    result["seccomp"] = list(syscall_filter.seccomp_mode())
    result["map_update"] = _outcome(lambda: update_pinned(pinned_map))
    result["prog_load"] = _outcome(load_socket_filter)
    result["map_create"] = _outcome(create_map)
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
