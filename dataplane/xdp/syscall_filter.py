"""Confine this process's bpf() calls to map access: a seccomp filter it installs on itself.

Why: on the appliance's kernel (Debian bookworm's 6.1, unprivileged BPF disabled) every bpf()
command needs CAP_BPF, map updates included, and CAP_BPF alone also lets a process load programs
(a socket filter, for one). systemd's SystemCallFilter= allows or denies the whole syscall; this
filter looks at its first argument, the command, and lets only the map commands through. Once
`sbc run` opened the maps the prepare step pinned (`dataplane.xdp.prepare`), a bug in the code that
parses the networks' input can update the relay's maps but neither load a program nor create a map.

The filter is classic BPF over `struct seccomp_data` (include/uapi/linux/seccomp.h):
* a syscall from another ABI than this process's (`arch` is not this machine's AUDIT_ARCH_*; on
  x86-64 also the x32 ABI, whose numbers carry bit 30) is refused with EPERM: its numbers mean other
  syscalls, so no number could be trusted;
* bpf() with a command outside `ALLOWED` is refused with EPERM; every other syscall is allowed (the
  unit's SystemCallFilter= decides about those).

Installed with prctl(PR_SET_SECCOMP), which applies to the calling thread and the threads it starts
afterwards: `restrict_bpf_to_map_access` refuses to run once a second thread exists. Filters stack
and cannot be removed, so a process that loads programs itself (`dataplane.loader: self`) must not
install it. Without CAP_SYS_ADMIN the kernel requires no_new_privs first (set here; sbc.service sets
NoNewPrivileges= anyway).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from dataplane.xdp.bpfsys import Cmd

__all__ = ["ALLOWED", "Abi", "abi_of", "filter_program", "restrict_bpf_to_map_access", "seccomp_mode"]

# What the XDP relay needs once the prepare step pinned the maps (dataplane/xdp/tables.py, loader.py):
# open the pins, check their layout and the program's id, read, write, walk and batch-read the maps.
ALLOWED: Final = (
    Cmd.MAP_LOOKUP_ELEM,
    Cmd.MAP_UPDATE_ELEM,
    Cmd.MAP_DELETE_ELEM,
    Cmd.MAP_GET_NEXT_KEY,
    Cmd.OBJ_GET,
    Cmd.OBJ_GET_INFO_BY_FD,
    Cmd.MAP_LOOKUP_BATCH,
)


@dataclass(frozen=True, slots=True)
class Abi:
    """What the filter must know about the syscall ABI of this machine."""

    audit_arch: int  # AUDIT_ARCH_* (include/uapi/linux/audit.h)
    bpf_nr: int  # the bpf() syscall number
    x32_bit: int  # x86-64: numbers with this bit are the x32 ABI under the same audit arch; else 0


_ABIS: Final = {
    "x86_64": Abi(audit_arch=0xC000003E, bpf_nr=321, x32_bit=0x40000000),  # EM_X86_64 | 64BIT | LE
    "aarch64": Abi(audit_arch=0xC00000B7, bpf_nr=280, x32_bit=0),  # EM_AARCH64 | 64BIT | LE
    "arm64": Abi(audit_arch=0xC00000B7, bpf_nr=280, x32_bit=0),
}

# classic BPF (include/uapi/linux/filter.h, bpf_common.h) and seccomp return values
_LD_W_ABS: Final = 0x00 | 0x00 | 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K: Final = 0x05 | 0x10 | 0x00  # BPF_JMP | BPF_JEQ | BPF_K
_JSET_K: Final = 0x05 | 0x40 | 0x00  # BPF_JMP | BPF_JSET | BPF_K
_RET_K: Final = 0x06 | 0x00  # BPF_RET | BPF_K
SECCOMP_RET_ALLOW: Final = 0x7FFF0000
SECCOMP_RET_ERRNO: Final = 0x00050000
_OFFSET_NR: Final = 0  # struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]
_OFFSET_ARCH: Final = 4
_OFFSET_ARG0: Final = 16
PR_SET_NO_NEW_PRIVS: Final = 38
PR_SET_SECCOMP: Final = 22
SECCOMP_MODE_FILTER: Final = 2


def abi_of(machine: str | None = None) -> Abi:
    machine = machine or platform.machine()
    try:
        return _ABIS[machine]
    except KeyError:
        raise OSError(errno.ENOSYS, f"no seccomp filter for bpf() on {machine}") from None


def filter_program(abi: Abi, allowed: Iterable[int] = ALLOWED, byteorder: str = sys.byteorder) -> list[bytes]:
    """The filter's instructions, each a packed `struct sock_filter` (u16 code, u8 jt, u8 jf, u32 k)."""
    commands = list(dict.fromkeys(int(c) for c in allowed))
    # bpf()'s cmd is an int: the low half of the 64-bit args[0] (the high half is ignored by the kernel)
    arg0_low = _OFFSET_ARG0 if byteorder == "little" else _OFFSET_ARG0 + 4
    # Layout (jump offsets count the instructions skipped):
    #   0 ld arch; 1 jeq audit_arch ? next : DENY; 2 ld nr; [3 jset x32_bit ? DENY : next]
    #   jeq bpf_nr ? next : ALLOW; ld arg0; jeq cmd_i ? ALLOW : next (each); DENY: ret errno; ALLOW: ret allow
    head: list[tuple[int, int, int, int]] = []
    tail_len = 2 + len(commands) + 2  # jeq bpf, ld arg0, the commands, DENY, ALLOW
    x32 = 1 if abi.x32_bit else 0
    head.append((_LD_W_ABS, 0, 0, _OFFSET_ARCH))
    head.append((_JEQ_K, 0, 1 + x32 + tail_len - 2, abi.audit_arch))  # to DENY
    head.append((_LD_W_ABS, 0, 0, _OFFSET_NR))
    if abi.x32_bit:
        head.append((_JSET_K, tail_len - 2, 0, abi.x32_bit))  # to DENY
    body: list[tuple[int, int, int, int]] = [(_JEQ_K, 0, 1 + len(commands) + 1, abi.bpf_nr)]  # to ALLOW
    body.append((_LD_W_ABS, 0, 0, arg0_low))
    for i, command in enumerate(commands):
        body.append((_JEQ_K, len(commands) - i, 0, command))  # to ALLOW
    body.append((_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.EPERM))
    body.append((_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    return [struct.pack("=HBBI", *insn) for insn in head + body]


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def restrict_bpf_to_map_access() -> None:
    """Install the filter on this process (one thread only, see the module docstring). OSError with
    the errno when the kernel refuses it; RuntimeError when other threads already run."""
    if _threads() != 1:
        raise RuntimeError("the bpf() filter binds the installing thread only: install it before any thread starts")
    program = b"".join(filter_program(abi_of()))
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.addressof(buffer))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(err)}")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_SECCOMP): {os.strerror(err)}")


def seccomp_mode(pid: int | str = "self") -> tuple[int, int]:
    """(Seccomp, Seccomp_filters) of a process from /proc: (2, n) once filters are installed."""
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            fields[name] = value.strip()
    return int(fields.get("Seccomp", "0")), int(fields.get("Seccomp_filters", "0"))
