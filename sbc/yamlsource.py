"""Reading YAML sources and reporting what is wrong with them, each problem at its line: the one home
of this for the SBC's config (sbc/config/loader.py), its header rules (sbc/policy/header_rules.py)
and the box's hardware profiles (hw/profile.py). It imports nothing else of the project, so every
layer may use it.

`yaml.safe_load` forgets where each value came from; `parse_yaml` walks the composed node graph instead
and records, for every path (`realms[1].media.ports`), the 1-based line of its key (mapping entries)
or of the item itself (sequence entries). Duplicate keys, which PyYAML silently resolves to the last
one, are problems here: an operator who writes a key twice meant something by the first one.
`YamlReader` is the base of the table-driven readers: it records every problem and stops at none.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    source: str  # the file name (or "<embedded>")
    line: int  # 1-based line of the offending YAML node
    path: str  # where in the document, e.g. `realms[1].media.ports`
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.path}: {self.message}"


class ConfigError(Exception):
    """The configuration was refused; `problems` lists everything found, sorted by line."""

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems: list[ConfigProblem] = sorted(problems, key=lambda p: p.line)
        super().__init__("\n".join(str(p) for p in self.problems))


MAX_NODES = 100_000


def child_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def item_path(path: str, index: int) -> str:
    return f"{path}[{index}]"


def parent_path(path: str) -> str:
    if path.endswith("]"):
        return path[: path.rindex("[")]
    dot = path.rfind(".")
    return path[:dot] if dot >= 0 else ""


@dataclass(slots=True)
class YamlTree:
    data: object
    lines: dict[str, int] = field(default_factory=dict)

    def line(self, path: str) -> int:
        """The line of `path`, or of its nearest ancestor when it is absent (a missing key)."""
        while True:
            found = self.lines.get(path)
            if found is not None:
                return found
            if not path:
                return 1
            path = parent_path(path)


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _describe(exc: yaml.MarkedYAMLError) -> tuple[int, str]:
    mark = exc.problem_mark or exc.context_mark
    line = int(mark.line) + 1 if mark is not None else 1
    text = ", ".join(part for part in (exc.context, exc.problem) if part) or str(exc)
    return line, text


class _TooBig(Exception):
    pass


class _Walker:
    def __init__(self, loader: yaml.SafeLoader, source: str) -> None:
        self.loader = loader
        self.source = source
        self.lines: dict[str, int] = {}
        self.problems: list[ConfigProblem] = []
        self._active: set[int] = set()  # nodes on the current path: a recursive alias would loop
        self._own_keys: dict[int, set[int]] = {}
        self._budget = MAX_NODES  # aliases of aliases can expand exponentially ("billion laughs")

    def problem(self, line: int, path: str, message: str) -> None:
        self.problems.append(ConfigProblem(self.source, line, path or "config", message))

    def walk(self, node: Node, path: str) -> object:
        self._budget -= 1
        if self._budget < 0:
            self.problem(_line(node), path, f"more than {MAX_NODES} values: aliases expanding too far?")
            raise _TooBig
        if id(node) in self._active:
            self.problem(_line(node), path, "recursive alias")
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, ScalarNode):
                return self._scalar(node, path)
            if isinstance(node, SequenceNode):
                items: list[object] = []
                for i, sub in enumerate(node.value):
                    sub_path = item_path(path, i)
                    self.lines[sub_path] = _line(sub)
                    items.append(self.walk(sub, sub_path))
                return items
            if isinstance(node, MappingNode):
                return self._mapping(node, path)
            self.problem(_line(node), path, f"unsupported YAML node {type(node).__name__}")
            return None
        finally:
            self._active.discard(id(node))

    def _scalar(self, node: ScalarNode, path: str) -> object:
        try:
            return self.loader.construct_object(node)
        except yaml.MarkedYAMLError as exc:
            line, text = _describe(exc)
            self.problem(line, path, text)
            return None

    def _mapping(self, node: MappingNode, path: str) -> dict[str, object]:
        # Keys written here, not merged from `<<` (remembered: an alias walks the flattened node again).
        own = self._own_keys.setdefault(id(node), {id(key_node) for key_node, _ in node.value})
        try:
            self.loader.flatten_mapping(node)  # resolves `<<: *anchor` merge keys in place
        except yaml.MarkedYAMLError as exc:
            line, text = _describe(exc)
            self.problem(line, path, text)
            return {}
        out: dict[str, object] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = self.walk(key_node, path) if isinstance(key_node, ScalarNode) else None
            if not isinstance(key, str):
                self.problem(_line(key_node), path, f"keys must be strings, got {key!r}")
                continue
            sub_path = child_path(path, key)
            if id(key_node) not in own:
                pass  # merged: a later (own) key overrides it, as YAML's merge key says
            elif key in first_line:
                hint = "; write `headers:` as a list for several header conditions" if key == "header" else ""
                self.problem(_line(key_node), sub_path, f"duplicate key (first on line {first_line[key]}){hint}")
            else:
                first_line[key] = _line(key_node)
            self.lines[sub_path] = _line(key_node)
            out[key] = self.walk(value_node, sub_path)
        return out


def parse_yaml(text: str, source: str) -> tuple[YamlTree, list[ConfigProblem]]:
    """Parse one YAML document. A syntax error ends the parse; other problems let it continue."""
    try:
        loader = yaml.SafeLoader(text)  # its reader refuses control characters right here
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        message = f"character #x{exc.character:04x} is not allowed in YAML"
        return YamlTree(None), [ConfigProblem(source, line, "syntax", message)]
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        line, message = _describe(exc)
        return YamlTree(None), [ConfigProblem(source, line, "syntax", message)]
    except yaml.YAMLError as exc:
        return YamlTree(None), [ConfigProblem(source, 1, "syntax", str(exc))]
    finally:
        loader.dispose()
    if root is None:
        return YamlTree(None, {"": 1}), []
    walker = _Walker(loader, source)
    walker.lines[""] = _line(root)
    try:
        data = walker.walk(root, "")
    except _TooBig:
        return YamlTree(None), walker.problems
    return YamlTree(data, walker.lines), walker.problems


def did_you_mean(value: str, choices: Sequence[str], otherwise: str) -> str:
    """` (did you mean 'x'?)` for the closest choice, or `otherwise` when none is close."""
    close = difflib.get_close_matches(value, choices, n=1)
    return f" (did you mean '{close[0]}'?)" if close else otherwise


def unknown_key(key: object, allowed: Sequence[str]) -> str:
    return f"unknown key '{key}'" + did_you_mean(str(key), allowed, f"; expected one of: {', '.join(allowed)}")


@dataclass(slots=True)
class YamlReader:
    """Collects the problems of one parsed source, each placed at the line of its path (or of the nearest
    ancestor that is there: a missing key is reported where it should have been)."""

    document: ClassVar[str] = "document"  # names the whole source in a problem at its root

    tree: YamlTree
    source: str
    problems: list[ConfigProblem] = field(default_factory=list)

    def problem(self, path: str, message: str) -> None:
        self.problems.append(ConfigProblem(self.source, self.tree.line(path), path or self.document, message))
