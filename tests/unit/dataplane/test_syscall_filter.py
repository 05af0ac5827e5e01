"""The seccomp filter that confines `sbc run`'s bpf() calls to map access
(`dataplane.xdp.syscall_filter`), run here on a small classic-BPF interpreter over hand-made
`struct seccomp_data`, for both architectures the image is built for. The kernel's own verdicts are
checked as root in tests/dataplane/test_syscall_filter.py."""

from __future__ import annotations

import errno
import struct

import pytest

from dataplane.xdp import syscall_filter
from dataplane.xdp.bpfsys import Cmd
from dataplane.xdp.syscall_filter import SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO, Abi, abi_of, filter_program

EPERM = SECCOMP_RET_ERRNO | errno.EPERM
X86_64 = abi_of("x86_64")
AARCH64 = abi_of("aarch64")
AUDIT_ARCH_I386 = 0x40000003
AUDIT_ARCH_ARM = 0x40000028
# what the relay never needs once the prepare step pinned everything
REFUSED = {
    "MAP_CREATE": 0,
    "PROG_LOAD": 5,
    "OBJ_PIN": 6,
    "PROG_TEST_RUN": 10,
    "PROG_GET_FD_BY_ID": 13,
    "BTF_LOAD": 18,
    "MAP_UPDATE_BATCH": 26,
    "LINK_CREATE": 28,
    "ENABLE_STATS": 32,
    "TOKEN_CREATE": 36,
}


def seccomp_data(nr: int, arch: int, arg0: int = 0, byteorder: str = "little") -> bytes:
    order = "<" if byteorder == "little" else ">"
    return struct.pack(f"{order}iIQ6Q", nr, arch, 0, arg0, 0, 0, 0, 0, 0)


def run(program: list[bytes], data: bytes, byteorder: str = "little") -> int:
    """Interpret the instructions the filter uses (ld w abs, jeq k, jset k, ret k); anything else
    fails the test. Bounded: classic BPF jumps only forward."""
    order = "<" if byteorder == "little" else ">"
    acc = 0
    pc = 0
    for _ in range(len(program)):
        code, jt, jf, k = struct.unpack("=HBBI", program[pc])
        if code == 0x20:  # BPF_LD | BPF_W | BPF_ABS
            (acc,) = struct.unpack_from(f"{order}I", data, k)
            pc += 1
        elif code == 0x15:  # BPF_JMP | BPF_JEQ | BPF_K
            pc += 1 + (jt if acc == k else jf)
        elif code == 0x45:  # BPF_JMP | BPF_JSET | BPF_K
            pc += 1 + (jt if acc & k else jf)
        elif code == 0x06:  # BPF_RET | BPF_K
            return int(k)
        else:
            pytest.fail(f"instruction {code:#x} at {pc}")
    pytest.fail("ran off the end of the filter")


@pytest.mark.parametrize("abi", [X86_64, AARCH64], ids=["x86_64", "aarch64"])
def test_map_commands_pass_and_every_other_bpf_command_gets_eperm(abi: Abi) -> None:
    program = filter_program(abi)
    for command in syscall_filter.ALLOWED:
        assert run(program, seccomp_data(abi.bpf_nr, abi.audit_arch, command)) == SECCOMP_RET_ALLOW, command.name
    for name, command in REFUSED.items():
        assert run(program, seccomp_data(abi.bpf_nr, abi.audit_arch, command)) == EPERM, name
    assert {Cmd.MAP_UPDATE_ELEM, Cmd.OBJ_GET, Cmd.MAP_LOOKUP_BATCH} <= set(syscall_filter.ALLOWED)
    assert not set(REFUSED.values()) & {int(c) for c in syscall_filter.ALLOWED}


@pytest.mark.parametrize("abi", [X86_64, AARCH64], ids=["x86_64", "aarch64"])
def test_other_syscalls_pass_and_the_command_is_the_int_the_kernel_reads(abi: Abi) -> None:
    program = filter_program(abi)
    for nr in (0, 1, 41, 63, 64, 198, 200, abi.bpf_nr - 1, abi.bpf_nr + 1):
        assert run(program, seccomp_data(nr, abi.audit_arch, Cmd.PROG_TEST_RUN)) == SECCOMP_RET_ALLOW, nr
    # bpf()'s cmd is an int: garbage in the upper half of the register changes nothing either way
    assert run(program, seccomp_data(abi.bpf_nr, abi.audit_arch, 5 | 1 << 32)) == EPERM
    assert run(program, seccomp_data(abi.bpf_nr, abi.audit_arch, 2 | 0xFFFF << 48)) == SECCOMP_RET_ALLOW


def test_another_abi_gets_eperm_for_everything() -> None:
    x86 = filter_program(X86_64)
    arm = filter_program(AARCH64)
    assert run(x86, seccomp_data(357, AUDIT_ARCH_I386, Cmd.MAP_LOOKUP_ELEM)) == EPERM  # i386 bpf
    assert run(x86, seccomp_data(3, AUDIT_ARCH_I386)) == EPERM  # even read()
    assert run(x86, seccomp_data(0x40000000 | 321, X86_64.audit_arch, 5)) == EPERM  # x32 bpf
    assert run(x86, seccomp_data(0x40000000, X86_64.audit_arch)) == EPERM  # x32 read()
    assert run(arm, seccomp_data(386, AUDIT_ARCH_ARM, 5)) == EPERM  # arm32 compat
    assert run(arm, seccomp_data(280, X86_64.audit_arch, 5)) == EPERM  # not this machine's arch
    assert run(arm, seccomp_data(0x40000000 | 63, AARCH64.audit_arch)) == SECCOMP_RET_ALLOW  # no x32 on arm64


def test_big_endian_reads_the_low_half_of_the_argument() -> None:
    program = filter_program(AARCH64, byteorder="big")
    data = seccomp_data(AARCH64.bpf_nr, AARCH64.audit_arch, 5, byteorder="big")
    assert run(program, data, byteorder="big") == EPERM
    data = seccomp_data(AARCH64.bpf_nr, AARCH64.audit_arch, 1, byteorder="big")
    assert run(program, data, byteorder="big") == SECCOMP_RET_ALLOW


def test_an_unknown_machine_is_refused_by_name() -> None:
    with pytest.raises(OSError, match=r"no seccomp filter for bpf\(\) on riscv64") as info:
        abi_of("riscv64")
    assert info.value.errno == errno.ENOSYS
