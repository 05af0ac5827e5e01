"""Struct layouts and enum values read from a compiled object's BTF (via bpftool JSON).

This is what the ctypes mirrors in abi.py are checked against: the compiler's own
idea of the layout, not a second hand-written copy (Katran's twin-header lesson).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataplane.xdp.tool import run


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    offset: int  # bytes
    size: int  # bytes


@dataclass(frozen=True, slots=True)
class StructLayout:
    name: str
    size: int
    members: tuple[Member, ...]

    def member(self, name: str) -> Member:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(f"struct {self.name} has no member {name}")


@dataclass(frozen=True, slots=True)
class BtfTypes:
    structs: dict[str, StructLayout]
    enums: dict[str, dict[str, int]]


# Kinds whose size is that of the type they point at.
_ALIAS_KINDS = frozenset({"TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG"})


def _sizeof(types: dict[int, dict[str, Any]], type_id: int) -> int:
    for _ in range(32):  # alias chains are short; bounded against a malformed file
        t = types[type_id]
        kind = t["kind"]
        if kind in _ALIAS_KINDS:
            type_id = int(t["type_id"])
            continue
        if kind == "ARRAY":
            return int(t["nr_elems"]) * _sizeof(types, int(t["type_id"]))
        if kind == "PTR":
            return 8
        return int(t["size"])
    raise ValueError(f"BTF type {type_id}: alias chain too long")


def parse_btf_json(document: dict[str, Any]) -> BtfTypes:
    """Turn `bpftool -j btf dump` output into struct layouts and enum values."""
    types = {int(t["id"]): t for t in document["types"]}
    structs: dict[str, StructLayout] = {}
    enums: dict[str, dict[str, int]] = {}
    for t in types.values():
        name = t.get("name", "(anon)")
        if t["kind"] == "STRUCT" and name != "(anon)":
            members = []
            for m in t["members"]:
                bits = int(m["bits_offset"])
                if bits % 8 or m.get("bitfield_size"):
                    raise ValueError(f"struct {name}.{m['name']}: bitfields have no place in the ABI")
                members.append(Member(m["name"], bits // 8, _sizeof(types, int(m["type_id"]))))
            structs[name] = StructLayout(name, int(t["size"]), tuple(members))
        elif t["kind"] in ("ENUM", "ENUM64") and name != "(anon)":
            enums[name] = {v["name"]: int(v["val"]) for v in t["values"]}
    return BtfTypes(structs, enums)


def read_btf(obj: Path, bpftool: str = "bpftool") -> BtfTypes:
    """Layouts of every named struct and enum in the object file's .BTF section."""
    out = run([bpftool, "-j", "btf", "dump", "file", str(obj)], hint="was the object built with clang -g?")
    document: dict[str, Any] = json.loads(out)
    return parse_btf_json(document)
