"""The ctypes mirrors in dataplane/xdp/abi.py against the compiled object's BTF and the header."""

from __future__ import annotations

import ctypes
import re
import subprocess
from pathlib import Path

import pytest

from dataplane.xdp import abi
from dataplane.xdp.btf import BtfTypes, read_btf

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def btf(relay_object: Path) -> BtfTypes:
    return read_btf(relay_object)


@pytest.mark.parametrize("c_name", sorted(abi.STRUCTS))
def test_struct_size_and_every_member_offset_match_btf(btf: BtfTypes, c_name: str) -> None:
    mirror = abi.STRUCTS[c_name]
    layout = btf.structs[c_name]
    assert ctypes.sizeof(mirror) == layout.size
    py_fields = [f[0] for f in mirror._fields_]
    assert py_fields == [m.name for m in layout.members], "member names or order differ"
    for member in layout.members:
        descriptor = getattr(mirror, member.name)
        assert (descriptor.offset, descriptor.size) == (member.offset, member.size), member.name


def test_every_abi_struct_in_the_header_has_a_mirror(btf: BtfTypes) -> None:
    header_structs = set(re.findall(r"^struct (sbc_\w+) \{", abi.HEADER.read_text(), re.MULTILINE))
    assert header_structs == set(abi.STRUCTS)
    assert header_structs <= set(btf.structs), "a header struct is not used by the program"


@pytest.mark.parametrize("c_name", sorted(abi.ENUMS))
def test_enum_values_match_btf(btf: BtfTypes, c_name: str) -> None:
    py_enum, prefix = abi.ENUMS[c_name]
    expected = {f"{prefix}{member.name}": int(member) for member in py_enum}
    assert btf.enums[c_name] == expected


def test_defines_match_the_header(relay_object: Path) -> None:
    """`clang -dM -E` lists what the preprocessor really sees, strings included
    (relay_object: skips like the rest when clang is missing)."""
    out = subprocess.run(
        ["clang", "-dM", "-E", "-x", "c", str(abi.HEADER)], capture_output=True, text=True, check=True
    ).stdout
    defines = dict(re.findall(r"^#define (SBC_\w+) (.+)$", out, re.MULTILINE))
    defines.pop("SBC_DATAPLANE_H", None)
    parsed = {k: (v.strip('"') if v.startswith('"') else int(v, 0)) for k, v in defines.items()}
    assert parsed == abi.DEFINES
