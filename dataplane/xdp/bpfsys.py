"""A small ctypes wrapper over the bpf(2) syscall: map access, pinning, test runs.

Only the commands the relay needs. Each command has its own slice of ``union bpf_attr``
(include/uapi/linux/bpf.h) as a ctypes.Structure; the kernel accepts a shorter attr
than its own union as long as what it does not know is zero. Failures raise OSError
with the errno, so callers can test ``exc.errno == errno.ENOENT``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Final

# bpf(2) syscall numbers (arch/*/entry/syscalls, include/uapi/asm-generic/unistd.h).
_SYSCALL_NR: Final = {"x86_64": 321, "aarch64": 280, "arm64": 280}


class Cmd(IntEnum):
    """enum bpf_cmd (include/uapi/linux/bpf.h)."""

    MAP_LOOKUP_ELEM = 1
    MAP_UPDATE_ELEM = 2
    MAP_DELETE_ELEM = 3
    MAP_GET_NEXT_KEY = 4
    OBJ_PIN = 6
    OBJ_GET = 7
    PROG_TEST_RUN = 10
    OBJ_GET_INFO_BY_FD = 15
    MAP_LOOKUP_BATCH = 24
    ENABLE_STATS = 32


class UpdateFlag(IntEnum):
    """Flags of BPF_MAP_UPDATE_ELEM."""

    ANY = 0  # create or replace
    NOEXIST = 1  # create only
    EXIST = 2  # replace only


class MapType(IntEnum):
    """The enum bpf_map_type values this project uses."""

    HASH = 1
    ARRAY = 2
    PERCPU_HASH = 5
    PERCPU_ARRAY = 6
    DEVMAP = 14
    DEVMAP_HASH = 25


class _ElemAttr(ctypes.Structure):
    _fields_ = (
        ("map_fd", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
        ("key", ctypes.c_uint64),
        ("value", ctypes.c_uint64),  # also next_key for GET_NEXT_KEY
        ("flags", ctypes.c_uint64),
    )


class _BatchAttr(ctypes.Structure):
    _fields_ = (
        ("in_batch", ctypes.c_uint64),
        ("out_batch", ctypes.c_uint64),
        ("keys", ctypes.c_uint64),
        ("values", ctypes.c_uint64),
        ("count", ctypes.c_uint32),
        ("map_fd", ctypes.c_uint32),
        ("elem_flags", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
    )


class _ObjAttr(ctypes.Structure):
    _fields_ = (
        ("pathname", ctypes.c_uint64),
        ("bpf_fd", ctypes.c_uint32),
        ("file_flags", ctypes.c_uint32),
    )


class _TestRunAttr(ctypes.Structure):
    _fields_ = (
        ("prog_fd", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("data_in", ctypes.c_uint64),
        ("data_out", ctypes.c_uint64),
        ("repeat", ctypes.c_uint32),
        ("duration", ctypes.c_uint32),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_uint64),
        ("ctx_out", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
    )


class _InfoAttr(ctypes.Structure):
    _fields_ = (
        ("bpf_fd", ctypes.c_uint32),
        ("info_len", ctypes.c_uint32),
        ("info", ctypes.c_uint64),
    )


class _MapInfo(ctypes.Structure):
    """The head of struct bpf_map_info; the kernel fills up to info_len bytes."""

    _fields_ = (
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("name", ctypes.c_char * 16),
    )


class _ProgInfo(ctypes.Structure):
    """The head of struct bpf_prog_info, up to the run statistics (run_time_ns at 192, run_cnt at 200)."""

    _fields_ = (
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("tag", ctypes.c_ubyte * 8),
        ("jited_prog_len", ctypes.c_uint32),
        ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64),
        ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64),
        ("created_by_uid", ctypes.c_uint32),
        ("nr_map_ids", ctypes.c_uint32),
        ("map_ids", ctypes.c_uint64),
        ("name", ctypes.c_char * 16),
        ("_between", ctypes.c_ubyte * (192 - 80)),  # ifindex .. prog_tags: not needed here
        ("run_time_ns", ctypes.c_uint64),
        ("run_cnt", ctypes.c_uint64),
    )


@dataclass(frozen=True, slots=True)
class MapInfo:
    type: int
    id: int
    key_size: int
    value_size: int
    max_entries: int
    name: str


@dataclass(frozen=True, slots=True)
class ProgInfo:
    type: int
    id: int
    name: str
    run_time_ns: int = 0  # time spent in the program, counted while statistics are enabled
    run_cnt: int = 0  # runs counted while statistics are enabled


@dataclass(frozen=True, slots=True)
class TestRun:
    """Result of BPF_PROG_TEST_RUN: the verdict, the packet as it left, mean ns per run."""

    retval: int
    data: bytes
    duration_ns: int


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _syscall_nr() -> int:
    machine = platform.machine()
    try:
        return _SYSCALL_NR[machine]
    except KeyError:
        raise OSError(errno.ENOSYS, f"bpf(): unknown syscall number on {machine}") from None


def bpf(cmd: Cmd, attr: ctypes.Structure) -> int:
    """Issue one bpf() command; returns the non-negative result or raises OSError."""
    ret = int(
        _libc.syscall(
            ctypes.c_long(_syscall_nr()),
            ctypes.c_int(cmd),
            ctypes.byref(attr),
            ctypes.c_uint(ctypes.sizeof(attr)),
        )
    )
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf({cmd.name}): {os.strerror(err)}")
    return ret


def _addr(buf: ctypes.Array[ctypes.c_char] | None) -> int:
    return 0 if buf is None else ctypes.addressof(buf)


def _buffer(data: bytes, size: int, what: str) -> ctypes.Array[ctypes.c_char]:
    if len(data) != size:
        raise ValueError(f"{what} is {len(data)} bytes, the map expects {size}")
    return ctypes.create_string_buffer(data, size)


class BpfFd:
    """An owned file descriptor of a BPF object (map or program)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @property
    def fd(self) -> int:
        if self._fd < 0:
            raise ValueError("BPF file descriptor already closed")
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> BpfFd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def obj_get(path: str | Path) -> BpfFd:
    """BPF_OBJ_GET: open a pinned map or program by its bpffs path."""
    name = ctypes.create_string_buffer(os.fsencode(path))
    attr = _ObjAttr(pathname=ctypes.addressof(name))
    try:
        return BpfFd(bpf(Cmd.OBJ_GET, attr))
    except OSError as exc:
        raise OSError(exc.errno, f"{exc.strerror} (pinned object {path})") from None


def map_info(obj: BpfFd) -> MapInfo:
    info = _MapInfo()
    bpf(Cmd.OBJ_GET_INFO_BY_FD, _InfoAttr(obj.fd, ctypes.sizeof(info), ctypes.addressof(info)))
    return MapInfo(
        type=int(info.type),
        id=int(info.id),
        key_size=int(info.key_size),
        value_size=int(info.value_size),
        max_entries=int(info.max_entries),
        name=bytes(info.name).decode(),
    )


def prog_info(obj: BpfFd) -> ProgInfo:
    info = _ProgInfo()
    bpf(Cmd.OBJ_GET_INFO_BY_FD, _InfoAttr(obj.fd, ctypes.sizeof(info), ctypes.addressof(info)))
    return ProgInfo(
        type=int(info.type),
        id=int(info.id),
        name=bytes(info.name).decode(),
        run_time_ns=int(info.run_time_ns),
        run_cnt=int(info.run_cnt),
    )


class _EnableStatsAttr(ctypes.Structure):
    _fields_ = (("type", ctypes.c_uint32),)


BPF_STATS_RUN_TIME: Final = 0


def enable_run_stats() -> BpfFd:
    """BPF_ENABLE_STATS: every program's run_time_ns/run_cnt are counted while the returned fd is
    open (a small cost on every run, so only for measurements; closing it turns counting off)."""
    return BpfFd(bpf(Cmd.ENABLE_STATS, _EnableStatsAttr(BPF_STATS_RUN_TIME)))


def map_lookup(m: BpfFd, key: bytes, value_size: int) -> bytes | None:
    """BPF_MAP_LOOKUP_ELEM; None when the key is absent."""
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value_size)
    try:
        bpf(Cmd.MAP_LOOKUP_ELEM, _ElemAttr(map_fd=m.fd, key=_addr(k), value=_addr(v)))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    return v.raw


def map_update(m: BpfFd, key: bytes, value: bytes, flags: UpdateFlag = UpdateFlag.ANY) -> None:
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value, len(value))
    bpf(Cmd.MAP_UPDATE_ELEM, _ElemAttr(map_fd=m.fd, key=_addr(k), value=_addr(v), flags=flags))


def map_delete(m: BpfFd, key: bytes) -> bool:
    """BPF_MAP_DELETE_ELEM; False when the key was absent."""
    k = ctypes.create_string_buffer(key, len(key))
    try:
        bpf(Cmd.MAP_DELETE_ELEM, _ElemAttr(map_fd=m.fd, key=_addr(k)))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise
    return True


def map_next_key(m: BpfFd, key: bytes | None, key_size: int) -> bytes | None:
    """BPF_MAP_GET_NEXT_KEY: the first key for None, then the one after `key`; None at the end."""
    k = None if key is None else _buffer(key, key_size, "key")
    nxt = ctypes.create_string_buffer(key_size)
    try:
        bpf(Cmd.MAP_GET_NEXT_KEY, _ElemAttr(map_fd=m.fd, key=_addr(k), value=_addr(nxt)))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    return nxt.raw


def map_lookup_batch(m: BpfFd, key_size: int, value_size: int, chunk: int = 256) -> list[tuple[bytes, bytes]]:
    """Read a whole map with BPF_MAP_LOOKUP_BATCH (one syscall per `chunk` entries).

    The batch token is opaque (a bucket index for hash maps); the kernel says ENOENT
    once the last chunk is returned, possibly together with entries.
    """
    keys = ctypes.create_string_buffer(key_size * chunk)
    values = ctypes.create_string_buffer(value_size * chunk)
    token_in = ctypes.create_string_buffer(max(key_size, 8))
    token_out = ctypes.create_string_buffer(max(key_size, 8))
    out: list[tuple[bytes, bytes]] = []
    first = True
    # Each round returns at least one entry or ends; bound it anyway by the map's size.
    for _ in range(map_info(m).max_entries // chunk + 2):
        attr = _BatchAttr(
            in_batch=0 if first else ctypes.addressof(token_in),
            out_batch=ctypes.addressof(token_out),
            keys=ctypes.addressof(keys),
            values=ctypes.addressof(values),
            count=chunk,
            map_fd=m.fd,
        )
        done = False
        try:
            bpf(Cmd.MAP_LOOKUP_BATCH, attr)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
            done = True
        n = int(attr.count)
        raw_k, raw_v = keys.raw, values.raw
        out.extend(
            (raw_k[i * key_size : (i + 1) * key_size], raw_v[i * value_size : (i + 1) * value_size]) for i in range(n)
        )
        if done:
            return out
        ctypes.memmove(token_in, token_out, ctypes.sizeof(token_out))
        first = False
    raise OSError(errno.EOVERFLOW, "bpf(MAP_LOOKUP_BATCH): map kept growing while it was read")


def prog_test_run(prog: BpfFd, data: bytes, *, repeat: int = 1, out_size: int | None = None) -> TestRun:
    """BPF_PROG_TEST_RUN on one packet. With repeat > 1 the program runs again on the
    packet it already rewrote, so only repeat=1 gives a meaningful output packet."""
    size = out_size if out_size is not None else len(data) + 256
    din = ctypes.create_string_buffer(data, len(data))
    dout = ctypes.create_string_buffer(size)
    attr = _TestRunAttr(
        prog_fd=prog.fd,
        data_size_in=len(data),
        data_size_out=size,
        data_in=ctypes.addressof(din),
        data_out=ctypes.addressof(dout),
        repeat=repeat,
    )
    bpf(Cmd.PROG_TEST_RUN, attr)
    return TestRun(retval=int(attr.retval), data=dout.raw[: int(attr.data_size_out)], duration_ns=int(attr.duration))


XDP_MD_FIELDS = 6  # struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex
BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1


def prog_test_run_live(prog: BpfFd, frame: bytes, *, repeat: int, ingress_ifindex: int, batch_size: int = 64) -> None:
    """BPF_PROG_TEST_RUN in live-frames mode: the XDP program runs `repeat` times on fresh copies of
    `frame` as if it had arrived on `ingress_ifindex` (queue 0), and what it sends (XDP_TX,
    XDP_REDIRECT) really leaves as XDP frames. A traffic source without sockets (kernel 5.18+)."""
    din = ctypes.create_string_buffer(frame, len(frame))
    ctx = (ctypes.c_uint32 * XDP_MD_FIELDS)(0, len(frame), 0, ingress_ifindex, 0, 0)
    attr = _TestRunAttr(
        prog_fd=prog.fd,
        data_size_in=len(frame),
        data_in=ctypes.addressof(din),
        repeat=repeat,
        ctx_size_in=ctypes.sizeof(ctx),
        ctx_in=ctypes.addressof(ctx),
        flags=BPF_F_TEST_XDP_LIVE_FRAMES,
        batch_size=batch_size,
    )
    bpf(Cmd.PROG_TEST_RUN, attr)


def possible_cpus() -> int:
    """How many slots a per-CPU map value has (kernel: num_possible_cpus())."""
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    highest = 0
    for part in text.split(","):
        highest = max(highest, int(part.split("-")[-1]))
    return highest + 1
