"""Imports go one way: a lower layer never imports a higher one.

The layers, from the bottom up (each may import the ones below it, never the ones above):

1. `sbc.yamlsource`: reading YAML sources and reporting their problems by line. Imports nothing of
   the project, so the config, the header rules and the hardware profiles all read through it.
2. `sbc.sip`, `sbc.sdp`: the sans-IO protocol stack. No asyncio, sockets, clocks or logging: bytes
   in, events out, time passed in.
3. `sbc.policy`: realms' topology hiding, header rules (compiled from plain data, never from the
   config's model: the direction a rule binds to is policy's own `Direction`).
4. `sbc.config`: the validated config; it compiles policy's header rules when it loads, so it sits
   above policy and policy imports none of it.
5. `sbc.b2bua`: the sans-IO call core: events in, commands out. No asyncio or sockets, and none of
   the shell above it; it reaches the relay only through the dataplane's interface (`dataplane.api`)
   and its pure quality figures (`dataplane.quality`).
6. the `sbc` shell (`sbc.app`, `sbc.transport`, `sbc.control`, `sbc.cli`, `sbc.supervision`,
   `sbc.sd_notify`, ...): asyncio, sockets, files, the state file, sd_notify and the watchdog pets.
   It uses `dataplane`; `dataplane` never imports `sbc` at run time (type annotations may name it).
7. `hw`: the box (NICs and roles, systemd over D-Bus, reset button, `hw.firmware`'s update bundles and
   spool). Above the SBC, which it configures around; below management, which drives it.
8. `mgmt`: the management plane. It drives the SBC through the control socket and the box through
   `hw` (system API, firmware uploads into `hw.firmware`'s spool), and holds the installed `sbc`
   command (mgmt/cli.py), which adds `sbc mgmt` to the SBC's own commands.
9. `hw.appliance`: the box's life cycle (first boot, health check, update install, console). First
   boot provisions the SBC's config, management's TLS certificate and first account (`mgmt.tls`,
   `mgmt.auth`) and the box, so it is the top; nothing in the product imports it.

`image` (build and VM test tooling) may import the product; the product never imports `image`.
Within `sbc`, the subpackages and top-level modules form no import cycle.

Rules are written by package prefix, so a new module falls under its package's rule. Known offenders
that another change is fixing are listed per rule, each with why; remove them once fixed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("sbc", "dataplane", "mgmt", "hw", "image")
PROJECT = (*SCANNED, "tests")
# What a sans-IO layer may not use: the event loop, sockets, other threads and processes, clocks, logging.
IO_MODULES = ("asyncio", "socket", "selectors", "ssl", "subprocess", "threading", "time", "logging")


@dataclass(frozen=True, slots=True)
class Import:
    importer: str  # the module that imports
    target: str  # the module imported (for `from a.b import c`: `a.b.c` when that is a module, else `a.b`)
    line: int
    type_only: bool  # inside `if TYPE_CHECKING:`


@dataclass(frozen=True, slots=True)
class Layer:
    """Modules under `package` (and not under a more specific layer's package) may import, of the project,
    only what `may_import` names (prefixes; `exact` names a module itself, not its submodules), and never
    what `never` names (a higher package inside an allowed one)."""

    package: str
    may_import: tuple[str, ...]
    exact: tuple[str, ...] = ()
    never: tuple[str, ...] = ()
    no_io: bool = False
    type_only_free: tuple[str, ...] = ()  # prefixes that TYPE_CHECKING imports may name anyway
    # (importer, target) pairs that another change is removing; each with its reason.
    known_offenders: dict[tuple[str, str], str] = field(default_factory=dict)

    def allows(self, imp: Import) -> bool:
        target = imp.target
        if target.split(".")[0] not in PROJECT:
            return not (self.no_io and _under(target, IO_MODULES))
        if _under(target, self.never):
            return False
        if imp.type_only and _under(target, self.type_only_free):
            return True
        return target in self.exact or _under(target, self.may_import)


SIP_STACK = ("sbc.sip", "sbc.sdp", "sbc.yamlsource")
POLICY = (*SIP_STACK, "sbc.policy")
# dataplane.settings: the `dataplane:` section's plain data (no sbc, no I/O), read by the config loader
CONFIG = (*POLICY, "sbc.config", "dataplane.settings")
CORE = (*CONFIG, "sbc.b2bua", "dataplane.api", "dataplane.quality")
SHELL = ("sbc", "dataplane")
BOX = (*SHELL, "hw")  # with `never=TOP`: hw.appliance is above mgmt
TOP = ("hw.appliance",)
MGMT = (*BOX, "mgmt")

LAYERS = (
    Layer("sbc.yamlsource", may_import=()),
    Layer("sbc.sip", may_import=("sbc.sip",), no_io=True),
    Layer("sbc.sdp", may_import=("sbc.sdp", "sbc.sip"), no_io=True),
    Layer("sbc.policy", may_import=POLICY),
    Layer("sbc.config", may_import=CONFIG),
    Layer(
        "sbc.b2bua",
        may_import=CORE,
        exact=("sbc",),  # the package itself: its version string
        no_io=True,
    ),
    Layer("sbc", may_import=SHELL),
    Layer("dataplane", may_import=("dataplane",), type_only_free=("sbc",)),
    Layer("hw", may_import=BOX, never=TOP),
    Layer("mgmt", may_import=MGMT, never=TOP),
    Layer("hw.appliance", may_import=MGMT),
    Layer("image", may_import=(*MGMT, *TOP, "image")),
)


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def layer_of(module: str) -> Layer:
    """The most specific layer whose package holds `module`."""
    matching = [layer for layer in LAYERS if _under(module, (layer.package,))]
    assert matching, f"{module} belongs to no layer: add its package to LAYERS"
    return max(matching, key=lambda layer: len(layer.package))


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(source: str, module: str, is_package: bool, known: set[str]) -> Iterator[Import]:
    """Every import statement of a module, at any depth (lazy imports inside functions count)."""
    tree = ast.parse(source)
    type_only_lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for inner in node.body:
                for sub in ast.walk(inner):
                    if isinstance(sub, ast.Import | ast.ImportFrom):
                        type_only_lines.add(sub.lineno)
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        type_only = getattr(node, "lineno", 0) in type_only_lines
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno, type_only)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}
            for target in sorted(targets):  # `from m import A, B` is one import of m
                yield Import(module, target, node.lineno, type_only)


def scan(root: Path) -> list[Import]:
    files = {module_name(p, root): p for top in SCANNED for p in sorted((root / top).rglob("*.py"))}
    known = set(files)
    found: list[Import] = []
    for module, path in files.items():
        found.extend(imports_of(path.read_text(encoding="utf-8"), module, path.name == "__init__.py", known))
    return found


def layer_violations(imports: list[Import]) -> tuple[list[str], set[tuple[str, str]]]:
    """(what breaks a rule, the known offenders that were seen)."""
    broken: list[str] = []
    offenders_seen: set[tuple[str, str]] = set()
    for imp in imports:
        layer = layer_of(imp.importer)
        if layer.allows(imp):
            continue
        pair = (imp.importer, imp.target)
        if pair in layer.known_offenders:
            offenders_seen.add(pair)
            continue
        how = " (in TYPE_CHECKING)" if imp.type_only else ""
        broken.append(f"{imp.importer}:{imp.line} imports {imp.target}{how}: not allowed in layer {layer.package}")
    return broken, offenders_seen


def sbc_unit(module: str) -> str | None:
    """The unit of the no-cycle rule: `sbc.b2bua.core` -> `sbc.b2bua`, `sbc.app` -> `sbc.app`."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "sbc" and len(parts) > 1 else None


def sbc_cycles(imports: list[Import]) -> list[list[str]]:
    """Strongly connected groups of more than one unit in the graph of sbc's subpackages and modules
    (type-only imports count too: a cycle hidden behind TYPE_CHECKING is still a cycle of the design)."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        a, b = sbc_unit(imp.importer), sbc_unit(imp.target)
        if a and b and a != b:
            graph.setdefault(a, set()).add(b)
            graph.setdefault(b, set())
    # Tarjan's algorithm, iterative (the graph is small, but recursion depth should not depend on it).
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            advanced = False
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return scan(ROOT)


def test_no_layer_imports_a_layer_above_it(imports: list[Import]) -> None:
    broken, _ = layer_violations(imports)
    assert not broken, "\n".join(broken)


def test_known_offenders_are_still_offending(imports: list[Import]) -> None:
    """An allow-list entry that no longer matches anything is stale: remove it, so it cannot hide a
    later regression."""
    _, seen = layer_violations(imports)
    listed = {pair for layer in LAYERS for pair in layer.known_offenders}
    assert listed <= seen, f"stale known offenders: {sorted(listed - seen)}"


def test_no_import_cycle_among_sbc_packages(imports: list[Import]) -> None:
    assert sbc_cycles(imports) == []


# ---- the checker itself: a wrong import is caught ------------------------------------------------
def _violations_of(module: str, source: str, is_package: bool = False) -> list[str]:
    known = {"sbc.b2bua.core", "sbc.app", "mgmt.app", "hw.appliance.firstboot", "sbc.sip.timers"}
    broken, _ = layer_violations(list(imports_of(source, module, is_package, known)))
    return broken


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("sbc.sip.transaction", "import asyncio"),
        ("sbc.sip.message", "import time"),
        ("sbc.sdp.session", "import logging"),
        ("sbc.sip.transaction", "from sbc.b2bua import core"),
        ("sbc.sdp.rewrite", "from ..b2bua.core import Core"),
        ("sbc.b2bua.invite", "import socket"),
        ("sbc.b2bua.invite", "from sbc.app import SbcApp"),
        ("sbc.b2bua.invite", "def f():\n    import asyncio"),
        ("sbc.policy.topology", "from sbc.config.model import Realm"),
        ("sbc.yamlsource", "from sbc.config import model"),
        ("sbc.app", "from hw.watchdog import Health"),
        ("sbc.cli", "from mgmt.app import run"),
        ("dataplane.xdp.relay", "from sbc.b2bua.call import Call"),
        ("hw.profile", "from mgmt.tls import ensure_self_signed"),
        ("mgmt.firmware", "from hw.appliance.update import install_requested"),
        ("hw.nics", "from image.qemu import Vm"),
    ],
)
def test_a_wrong_import_is_caught(module: str, source: str) -> None:
    assert _violations_of(module, source)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("sbc.sip.transaction", "from sbc.sip import timers\nimport re"),
        ("sbc.config.loader", "from sbc.policy.header_rules import compile_rules"),
        ("dataplane.select", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from sbc.config.model import X"),
        ("sbc.app", "import asyncio\nfrom dataplane.api import Dataplane"),
        ("hw.appliance.firstboot", "from mgmt.auth import UserStore"),
        ("mgmt.system_api", "from hw.system import UnitControl"),
    ],
)
def test_a_right_import_passes(module: str, source: str) -> None:
    assert _violations_of(module, source) == []


def test_a_cycle_is_found() -> None:
    imports = [Import("sbc.config.model", "sbc.policy.header_rules", 1, True),
               Import("sbc.policy.header_rules", "sbc.config.model", 1, False)]  # fmt: skip
    assert sbc_cycles(imports) == [["sbc.config", "sbc.policy"]]
