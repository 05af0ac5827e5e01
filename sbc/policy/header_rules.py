"""Header manipulation rules: operator-written edits of SIP messages at a realm's edge.

Like AudioCodes Message Manipulation or Oracle HMR. Rules are compiled once at config load (every
regex, template and header name checked there); applying them never raises on a bad rule, only
skips an action whose input is missing. Rules run in config order; each rule's conditions look
at the message as it is when that rule starts (after earlier rules, before its own actions). The
B2BUA runs inbound rules on a copy of each message arriving from their realm, before it builds the
other leg's message from that copy, and outbound rules on each message built for their realm, after
topology hiding (see `Core._inbound_rules`, `Core._outbound_rules`).

YAML form (the `header_rules:` list of the config)::

    header_rules:
      - name: add-trunk-id           # optional, shown in logs (default: header_rules[N])
        realm: wan                   # bound to a realm, or `route: NAME`, or both (both must hold)
        direction: outbound          # inbound = arriving from the realm, outbound = sent toward it
        match:                       # every condition must hold; no `match:` = every message
          message: request           # request | response | any (default any)
          method: INVITE             # or [INVITE, UPDATE]; requests only, except that next
                                     # to `status:` it names the method a response answers (CSeq)
          status: 180-183            # 183, "180-183", "4xx" or a list of them; responses only
          request_uri: "^sip:\\+49"  # regex searched in the Request-URI; requests only
          header: {name: P-Asserted-Identity, exists: false}   # presence (true) or absence (false)
          headers:                   # several header conditions: a list (a YAML key can't repeat)
            - {name: User-Agent, regex: "^Yealink"}            # regex searched in any line's value
            - {name: Privacy, exists: true}
        actions:                     # applied in order
          - {add: X-Trunk-Id, value: branch-42}                # a new line, after existing ones
          - {remove: X-Internal-Debug}                         # every line of it
          - {set: Subject, value: "call from ${stored.caller}"}  # replace (or add) the header
          - {replace: From, regex: "sip:(\\d+)@[^>;]+", with: "sip:+49\\1@trunk.example"}
          - {store: caller, from: From, regex: "sip:([^@]+)@"}   # group 1, else the whole match
          - {set_request_uri: "sip:${stored.caller}@pbx.example"}  # requests only

Values (`value:`, `with:`, `set_request_uri:`) may name `${stored.NAME}` (kept by a `store` action
earlier in the same call, in any message) and `${header.NAME}` (the first line of that header in this
message, as it is when the action runs); `$$` is a literal `$`. If a named value is missing when
the action runs, the action is skipped (and logged as skipped) rather than writing half a value. In
`with:`, `\\1` or `\\g<name>` is a capture group of `regex:` (Python `re.sub` syntax; `\\g<0>` is the
whole match) and `\\\\` a backslash.

Refused at compile time: unknown keys; a rule bound to an unknown realm or route; a regex that does
not compile or a `with:` naming a group the regex does not have; a value holding CR or LF; a
`${stored.NAME}` that no earlier action stores; conditions that can never hold together (e.g.
`status:` with `message: request`); and any edit of the headers the SBC itself owns: Via, Call-ID,
CSeq, Content-Length and Max-Forwards (see `PROTECTED_HEADERS`). From and To may be `set` or
`replace`d (number normalisation) but not added or removed, and their tag always survives the edit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from sbc.sip.errors import SipProtocolError
from sbc.sip.message import HeaderField, Message, Request, Response, header_key, parse_cseq
from sbc.sip.uri import NameAddr, Uri
from sbc.yamlsource import did_you_mean, unknown_key


class MessageDirection(StrEnum):
    """Which way a message passes a realm's edge; a rule is bound to one."""

    INBOUND = "inbound"  # a message arriving from the realm
    OUTBOUND = "outbound"  # a message leaving toward the realm


# Headers the SBC builds or checks itself for each leg; a rule editing them would break calls.
PROTECTED_HEADERS: dict[str, str] = {
    "via": "Via is written per hop by the SBC and routes the responses back (RFC 3261 §8.1.1.7, §18.2.2)",
    "call-id": "Call-ID identifies the dialog and is mapped between the legs by the SBC (RFC 3261 §8.1.1.4)",
    "cseq": "CSeq orders the transactions and is numbered per leg by the SBC (RFC 3261 §8.1.1.5)",
    "content-length": "Content-Length is computed from the body when the message is sent (RFC 3261 §20.14)",
    "max-forwards": "Max-Forwards is decremented by the SBC to stop loops (RFC 3261 §16.6 step 3)",
}
# Exactly one of each in every message (RFC 3261 §8.1.1): may be rewritten, never added or removed.
_SINGLE_IDENTITY = frozenset({"from", "to"})

_TOKEN_RE = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")  # RFC 3261 §25.1 token: header names, methods
_STORE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_STATUS_CLASS_RE = re.compile(r"^([1-6])xx$", re.IGNORECASE)
_STATUS_RANGE_RE = re.compile(r"^(\d{3})\s*-\s*(\d{3})$")

_RULE_KEYS = ("name", "realm", "route", "direction", "match", "actions")
_MATCH_KEYS = ("message", "method", "status", "request_uri", "header", "headers")
_HEADER_COND_KEYS = ("name", "exists", "regex")
# Each action: its verb and the other keys it takes (required, optional).
_ACTION_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "add": (("value",), ()),
    "remove": ((), ()),
    "set": (("value",), ()),
    "replace": (("regex", "with"), ()),
    "store": (("from",), ("regex",)),
    "set_request_uri": ((), ()),
}


# ---- errors --------------------------------------------------------------------------------------
class RuleError(Exception):
    """One thing wrong with one rule: `path` is like `header_rules[2].actions[1]`."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class RuleErrors(Exception):
    """Every `RuleError` found while compiling the rules (compilation does not stop at the first)."""

    def __init__(self, errors: Sequence[RuleError]) -> None:
        self.errors = tuple(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


class _Bad(Exception):
    """Raised inside the compiler; becomes a RuleError at the path being compiled."""

    def __init__(self, reason: str, path: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = path


# ---- values with ${...} references ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Ref:
    """`${stored.NAME}` or `${header.NAME}` inside a value."""

    kind: str  # "stored" | "header"
    name: str

    def __str__(self) -> str:
        return f"${{{self.kind}.{self.name}}}"


@dataclass(frozen=True, slots=True)
class Group:
    """A capture group reference in a `with:` value: its number or name."""

    ref: int | str


@dataclass(frozen=True, slots=True)
class Template:
    text: str  # as written, for logs
    parts: tuple[str | Ref | Group, ...]

    @property
    def literal(self) -> str | None:
        if not self.parts:
            return ""
        if len(self.parts) == 1 and isinstance(self.parts[0], str):
            return self.parts[0]
        return None

    def stored_names(self) -> list[str]:
        return [p.name for p in self.parts if isinstance(p, Ref) and p.kind == "stored"]

    def render(self, msg: Message, store: Mapping[str, str], match: re.Match[str] | None = None) -> str | Ref:
        """The value, or the first reference that has no value now (the action is then skipped)."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, Group):
                out.append((match.group(part.ref) if match is not None else None) or "")
            else:
                value = store.get(part.name) if part.kind == "stored" else msg.get(part.name)
                if value is None:
                    return part
                out.append(value)
        return "".join(out)


def parse_template(text: str, pattern: re.Pattern[str] | None = None) -> Template:
    """Split a value into literals, `${...}` references and (with `pattern`) capture group references."""
    parts: list[str | Ref | Group] = []
    buf: list[str] = []

    def flush() -> None:
        if buf:
            parts.append("".join(buf))
            buf.clear()

    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "\r\n":
            raise _Bad("a value may not contain CR or LF (it would inject header lines)")
        if c == "$" and text.startswith("$$", i):
            buf.append("$")
            i += 2
        elif c == "$" and text.startswith("${", i):
            end = text.find("}", i)
            if end < 0:
                raise _Bad(f"unterminated ${{ in {text!r}")
            inner = text[i + 2 : end]
            kind, dot, name = inner.partition(".")
            if kind not in ("stored", "header") or not dot:
                raise _Bad(f"unknown reference ${{{inner}}}: use ${{stored.NAME}} or ${{header.NAME}}")
            name_re = _STORE_NAME_RE if kind == "stored" else _TOKEN_RE
            if not name_re.match(name):
                raise _Bad(f"bad name in ${{{inner}}}")
            flush()
            parts.append(Ref(kind, name))
            i = end + 1
        elif c == "\\" and pattern is not None:
            flush()
            ref, i = _group_ref(text, i, pattern)
            if isinstance(ref, str):
                buf.append(ref)
            else:
                parts.append(ref)
        else:
            buf.append(c)
            i += 1
    flush()
    return Template(text, tuple(parts))


def _group_ref(text: str, i: int, pattern: re.Pattern[str]) -> tuple[Group | str, int]:
    """Parse the backslash escape at text[i] of a `with:` value (re.sub template syntax)."""
    nxt = text[i + 1 : i + 2]
    if nxt == "\\":
        return "\\", i + 2
    if nxt.isdigit():
        j = i + 1
        while j < len(text) and j < i + 3 and text[j].isdigit():  # \1 .. \99, as re.sub reads them
            j += 1
        number = int(text[i + 1 : j])
        if number > pattern.groups:
            raise _Bad(f"\\{number} refers to a group the regex does not have (it has {pattern.groups})")
        return Group(number), j
    if nxt == "g" and text[i + 2 : i + 3] == "<":
        end = text.find(">", i)
        if end < 0:
            raise _Bad("unterminated \\g<...>")
        name = text[i + 3 : end]
        if name.isdigit():
            if int(name) > pattern.groups:
                raise _Bad(f"\\g<{name}> refers to a group the regex does not have (it has {pattern.groups})")
            return Group(int(name)), end + 1
        if name not in pattern.groupindex:
            raise _Bad(f"\\g<{name}> refers to a group the regex does not have")
        return Group(name), end + 1
    raise _Bad(f"unknown escape \\{nxt} (use \\\\ for a backslash, \\1 or \\g<name> for a group)")


# ---- conditions ----------------------------------------------------------------------------------
class Condition(Protocol):
    def matches(self, msg: Message) -> bool: ...


@dataclass(frozen=True, slots=True)
class MessageKind:
    requests: bool  # True: requests only, False: responses only

    def matches(self, msg: Message) -> bool:
        return isinstance(msg, Request) is self.requests


@dataclass(frozen=True, slots=True)
class MethodIs:
    methods: frozenset[str]
    responses: bool  # True (next to `status:`): a response matches by the method its CSeq names

    def matches(self, msg: Message) -> bool:
        if isinstance(msg, Request):
            return msg.method in self.methods
        if not self.responses:
            return False
        cseq = msg.get("cseq")
        if cseq is None:
            return False
        try:
            return parse_cseq(cseq)[1] in self.methods
        except SipProtocolError:
            return False


@dataclass(frozen=True, slots=True)
class StatusIn:
    ranges: tuple[tuple[int, int], ...]

    def matches(self, msg: Message) -> bool:
        return isinstance(msg, Response) and any(lo <= msg.status <= hi for lo, hi in self.ranges)


@dataclass(frozen=True, slots=True)
class HeaderPresent:
    name: str
    present: bool

    def matches(self, msg: Message) -> bool:
        return msg.has(self.name) is self.present


@dataclass(frozen=True, slots=True)
class HeaderMatches:
    name: str
    regex: re.Pattern[str]

    def matches(self, msg: Message) -> bool:
        return any(self.regex.search(v) for v in msg.get_all(self.name))


@dataclass(frozen=True, slots=True)
class RequestUriMatches:
    regex: re.Pattern[str]

    def matches(self, msg: Message) -> bool:
        return isinstance(msg, Request) and self.regex.search(msg.uri) is not None


# ---- actions -------------------------------------------------------------------------------------
class Action(Protocol):
    def apply(self, msg: Message, store: dict[str, str]) -> str:
        """Edit `msg` (or `store`); return a short description for the log."""
        ...


def _skipped(what: str, missing: Ref) -> str:
    return f"{what} skipped: {missing} has no value"


def _keep_tag(key: str, old: str | None, new: str) -> str | None:
    """For From/To: the new value with the old tag (the SBC's dialog matching depends on it), or None."""
    if key not in _SINGLE_IDENTITY or old is None:
        return new
    try:
        old_tag = NameAddr.parse(old).tag
        parsed = NameAddr.parse(new)
    except SipProtocolError:
        return None
    return new if parsed.tag == old_tag else str(parsed.with_tag(old_tag))


@dataclass(frozen=True, slots=True)
class AddHeader:
    name: str
    value: Template

    def apply(self, msg: Message, store: dict[str, str]) -> str:
        value = self.value.render(msg, store)
        if isinstance(value, Ref):
            return _skipped(f"add {self.name}", value)
        msg.add(self.name, value)
        return f"add {self.name}: {value}"


@dataclass(frozen=True, slots=True)
class RemoveHeader:
    name: str

    def apply(self, msg: Message, store: dict[str, str]) -> str:
        return f"remove {self.name} ({msg.remove(self.name)} lines)"


@dataclass(frozen=True, slots=True)
class SetHeader:
    name: str
    key: str
    value: Template

    def apply(self, msg: Message, store: dict[str, str]) -> str:
        value = self.value.render(msg, store)
        if isinstance(value, Ref):
            return _skipped(f"set {self.name}", value)
        kept = _keep_tag(self.key, msg.get(self.key), value)
        if kept is None:
            return f"set {self.name} skipped: {value!r} is not a valid name-addr"
        msg.set(self.name, kept)
        return f"set {self.name}: {kept}"


@dataclass(frozen=True, slots=True)
class ReplaceInHeader:
    name: str
    key: str
    regex: re.Pattern[str]
    with_: Template

    def apply(self, msg: Message, store: dict[str, str]) -> str:
        # Compute every line first: a skipped action must leave the message untouched.
        edits: list[tuple[int, str]] = []
        missing: list[Ref] = []

        def substitute(m: re.Match[str]) -> str:
            out = self.with_.render(msg, store, m)
            if isinstance(out, Ref):
                missing.append(out)
                return m.group(0)
            return out

        for i, line in enumerate(msg.headers):
            if line.key != self.key:
                continue
            new = self.regex.sub(substitute, line.value)
            if missing:
                return _skipped(f"replace in {self.name}", missing[0])
            if new != line.value:
                kept = _keep_tag(self.key, line.value, new)
                if kept is None:
                    return f"replace in {self.name} skipped: {new!r} is not a valid name-addr"
                edits.append((i, kept))
        for i, value in edits:
            msg.headers[i] = HeaderField(msg.headers[i].name, value)
        return f"replace in {self.name} ({len(edits)} lines changed)"


@dataclass(frozen=True, slots=True)
class StoreFromHeader:
    store_as: str
    header: str
    regex: re.Pattern[str] | None

    def apply(self, msg: Message, store: dict[str, str]) -> str:
        value = msg.get(self.header)
        if value is None:
            return f"store {self.store_as} skipped: no {self.header}"
        if self.regex is not None:
            m = self.regex.search(value)
            if m is None:
                return f"store {self.store_as} skipped: {self.header} does not match"
            value = (m.group(1) if self.regex.groups else m.group(0)) or ""
        store[self.store_as] = value
        return f"store {self.store_as} = {value}"


@dataclass(frozen=True, slots=True)
class SetRequestUri:
    value: Template

    def apply(self, msg: Message, store: dict[str, str]) -> str:
        if not isinstance(msg, Request):
            return "set_request_uri skipped: not a request"
        value = self.value.render(msg, store)
        if isinstance(value, Ref):
            return _skipped("set_request_uri", value)
        try:
            Uri.parse(value)
        except SipProtocolError:
            return f"set_request_uri skipped: {value!r} is not a valid URI"
        msg.set_uri(value)
        return f"set_request_uri {value}"


# ---- rules ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class HeaderRule:
    index: int  # position in the config's header_rules list
    name: str
    direction: MessageDirection
    conditions: tuple[Condition, ...]
    actions: tuple[Action, ...]
    realm: str | None = None
    route: str | None = None

    def binds(self, realm: str, route: str | None, direction: MessageDirection) -> bool:
        return (
            self.direction == direction
            and (self.realm is None or self.realm == realm)
            and (self.route is None or self.route == route)
        )

    def matches(self, msg: Message) -> bool:
        return all(c.matches(msg) for c in self.conditions)


class HeaderRules(tuple[HeaderRule, ...]):
    """The compiled rules in config order, with the rules bound to each (realm, route, direction) cached."""

    _bound: dict[tuple[str, str | None, MessageDirection], tuple[HeaderRule, ...]]

    def __new__(cls, rules: Iterable[HeaderRule] = ()) -> HeaderRules:
        self = super().__new__(cls, rules)
        self._bound = {}
        return self

    def bound_to(self, realm: str, route: str | None, direction: MessageDirection) -> tuple[HeaderRule, ...]:
        key = (realm, route, direction)
        found = self._bound.get(key)
        if found is None:
            # Bounded by realms x (routes + 1) x 2 entries; computed once per combination.
            found = tuple(r for r in self if r.binds(realm, route, direction))
            self._bound[key] = found
        return found


def apply_rules(
    rules: Sequence[HeaderRule],
    msg: Message,
    *,
    realm: str,
    route: str | None,
    direction: MessageDirection,
    store: dict[str, str],
) -> list[str]:
    """Apply the rules bound to this realm/route/direction to `msg` in place; one log line per action.

    `store` is the call's own dictionary of `store`d values; it persists across the call's messages.
    """
    if isinstance(rules, HeaderRules):
        bound: Sequence[HeaderRule] = rules.bound_to(realm, route, direction)
    else:
        bound = [r for r in rules if r.binds(realm, route, direction)]
    done: list[str] = []
    for rule in bound:
        if rule.matches(msg):
            done.extend(f"{rule.name}: {action.apply(msg, store)}" for action in rule.actions)
    return done


# ---- compilation ---------------------------------------------------------------------------------
def compile_rules(
    raw: Sequence[Any], realms: Iterable[str], routes: Iterable[str], *, path: str = "header_rules"
) -> HeaderRules:
    """Check and compile the `header_rules:` list; raise `RuleErrors` listing every problem found."""
    compiler = _Compiler(set(realms), set(routes))
    rules: list[HeaderRule] = []
    for i, item in enumerate(raw):
        rule = compiler.rule(item, i, f"{path}[{i}]")
        if rule is not None:
            rules.append(rule)
    if compiler.errors:
        raise RuleErrors(compiler.errors)
    return HeaderRules(rules)


def _regex(value: object, path: str) -> re.Pattern[str]:
    if not isinstance(value, str):
        raise _Bad("a regex must be a string", path)
    try:
        return re.compile(value)
    except re.error as exc:
        raise _Bad(f"regex {value!r} does not compile: {exc}", path) from None


def _header_name(value: object, path: str) -> str:
    if not isinstance(value, str) or not _TOKEN_RE.match(value):
        raise _Bad(f"{value!r} is not a header name", path)
    return value


def _text(value: object, path: str) -> str:
    if isinstance(value, bool):
        # YAML 1.1 reads yes/no/on/off/true/false unquoted as booleans.
        raise _Bad(f"expected a string, got the boolean {str(value).lower()}: quote the value", path)
    if not isinstance(value, str | int):
        raise _Bad(f"expected a string, got {type(value).__name__}", path)
    return str(value)


def _mapping(value: object, path: str, allowed: Sequence[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Bad("expected a mapping", path)
    for key in value:
        if key not in allowed:
            raise _Bad(unknown_key(key, allowed), f"{path}.{key}")
    return value


class _Compiler:
    def __init__(self, realms: set[str], routes: set[str]) -> None:
        self.realms = realms
        self.routes = routes
        self.stored: set[str] = set()  # names stored by the actions compiled so far (config order)
        self.errors: list[RuleError] = []

    def error(self, path: str, reason: str) -> None:
        self.errors.append(RuleError(path, reason))

    def rule(self, raw: object, index: int, path: str) -> HeaderRule | None:
        before = len(self.errors)
        if not isinstance(raw, dict):
            self.error(path, "a rule must be a mapping")
            return None
        for key in raw:
            if key not in _RULE_KEYS:
                self.error(f"{path}.{key}", unknown_key(key, _RULE_KEYS))
        name = raw.get("name", path)
        if not isinstance(name, str) or not name:
            self.error(f"{path}.name", "expected a non-empty string")
        realm = self._binding(raw, "realm", self.realms, path)
        route = self._binding(raw, "route", self.routes, path)
        if "realm" not in raw and "route" not in raw:
            self.error(path, "a rule needs `realm:` or `route:` (what it is bound to)")
        direction: MessageDirection | None = None
        if "direction" not in raw:
            self.error(f"{path}.direction", "required: inbound or outbound")
        else:
            try:
                direction = MessageDirection(raw["direction"])
            except ValueError:
                self.error(f"{path}.direction", f"{raw['direction']!r} is not inbound or outbound")
        conditions: tuple[Condition, ...] = ()
        try:
            conditions = self._conditions(raw.get("match") or {}, f"{path}.match")
        except _Bad as exc:
            self.error(exc.path or f"{path}.match", exc.reason)
        actions = self._actions(raw.get("actions"), f"{path}.actions", conditions)
        if len(self.errors) > before or direction is None or not isinstance(name, str):
            return None
        return HeaderRule(index, name, direction, conditions, actions, realm, route)

    def _binding(self, raw: dict[str, Any], key: str, known: set[str], path: str) -> str | None:
        if key not in raw:
            return None
        value = raw[key]
        if not isinstance(value, str) or value not in known:
            hint = did_you_mean(str(value), sorted(known), "")
            self.error(f"{path}.{key}", f"unknown {key} {value!r}{hint}")
            return None
        return value

    def _conditions(self, raw: object, path: str) -> tuple[Condition, ...]:
        match = _mapping(raw, path, _MATCH_KEYS)
        out: list[Condition] = []
        kind = match.get("message", "any")
        if kind not in ("request", "response", "any"):
            raise _Bad(f"{kind!r} is not request, response or any", f"{path}.message")
        has_status = "status" in match
        requests_only = kind == "request" or "request_uri" in match or ("method" in match and not has_status)
        if requests_only and (has_status or kind == "response"):
            raise _Bad("these conditions never hold together: some match only requests, others only responses", path)
        if kind != "any":
            out.append(MessageKind(kind == "request"))
        if "method" in match:
            out.append(MethodIs(self._methods(match["method"], f"{path}.method"), has_status))
        if has_status:
            out.append(StatusIn(self._statuses(match["status"], f"{path}.status")))
        if "request_uri" in match:
            out.append(RequestUriMatches(_regex(match["request_uri"], f"{path}.request_uri")))
        if "header" in match:
            out.append(self._header_condition(match["header"], f"{path}.header"))
        if "headers" in match:
            items = match["headers"]
            if not isinstance(items, list):
                raise _Bad("expected a list of {name, exists|regex} conditions", f"{path}.headers")
            out.extend(self._header_condition(h, f"{path}.headers[{i}]") for i, h in enumerate(items))
        # Cheapest checks first: message kind and method before any regex.
        return tuple(out)

    @staticmethod
    def _methods(raw: object, path: str) -> frozenset[str]:
        items = raw if isinstance(raw, list) else [raw]
        if not items or not all(isinstance(m, str) and _TOKEN_RE.match(m) for m in items):
            raise _Bad("expected a method name or a list of them", path)
        return frozenset(str(m).upper() for m in items)

    @staticmethod
    def _statuses(raw: object, path: str) -> tuple[tuple[int, int], ...]:
        items = raw if isinstance(raw, list) else [raw]
        out: list[tuple[int, int]] = []
        for item in items:
            if isinstance(item, int) and not isinstance(item, bool):
                lo = hi = item
            elif isinstance(item, str) and (m := _STATUS_RANGE_RE.match(item.strip())):
                lo, hi = int(m[1]), int(m[2])
            elif isinstance(item, str) and (m := _STATUS_CLASS_RE.match(item.strip())):
                lo, hi = int(m[1]) * 100, int(m[1]) * 100 + 99
            else:
                raise _Bad(f"{item!r} is not a status code, a range like 180-183 or a class like 4xx", path)
            if not 100 <= lo <= hi <= 699:
                raise _Bad(f"status {lo}-{hi} is not a non-empty range within 100-699", path)
            out.append((lo, hi))
        if not out:
            raise _Bad("expected at least one status code", path)
        return tuple(out)

    @staticmethod
    def _header_condition(raw: object, path: str) -> Condition:
        cond = _mapping(raw, path, _HEADER_COND_KEYS)
        if "name" not in cond:
            raise _Bad("a header condition needs `name:`", path)
        name = _header_name(cond["name"], f"{path}.name")
        if ("exists" in cond) == ("regex" in cond):
            raise _Bad("a header condition needs exactly one of `exists:` and `regex:`", path)
        if "regex" in cond:
            return HeaderMatches(name, _regex(cond["regex"], f"{path}.regex"))
        if not isinstance(cond["exists"], bool):
            raise _Bad("expected true or false", f"{path}.exists")
        return HeaderPresent(name, cond["exists"])

    def _actions(self, raw: object, path: str, conditions: tuple[Condition, ...]) -> tuple[Action, ...]:
        if not isinstance(raw, list) or not raw:
            self.error(path, "a rule needs a non-empty `actions:` list")
            return ()
        responses_only = any(
            isinstance(c, StatusIn) or (isinstance(c, MessageKind) and not c.requests) for c in conditions
        )
        out: list[Action] = []
        for i, item in enumerate(raw):
            try:
                action = self._action(item, f"{path}[{i}]")
                if isinstance(action, SetRequestUri) and responses_only:
                    raise _Bad("set_request_uri in a rule that matches only responses")
                out.append(action)
            except _Bad as exc:
                self.error(exc.path or f"{path}[{i}]", exc.reason)
        return tuple(out)

    def _action(self, raw: object, path: str) -> Action:
        if not isinstance(raw, dict):
            raise _Bad("an action must be a mapping like {add: NAME, value: VALUE}")
        verbs = [k for k in raw if k in _ACTION_KEYS]
        if len(verbs) != 1:
            found = f" (found {', '.join(verbs)})" if verbs else ""
            raise _Bad(f"an action needs exactly one of {', '.join(_ACTION_KEYS)}{found}")
        verb = verbs[0]
        required, optional = _ACTION_KEYS[verb]
        allowed = (verb, *required, *optional)
        for key in raw:
            if key not in allowed:
                raise _Bad(unknown_key(key, allowed), f"{path}.{key}")
        for key in required:
            if key not in raw:
                raise _Bad(f"`{verb}:` needs `{key}:`")
        if verb == "set_request_uri":
            return SetRequestUri(self._value(raw[verb], f"{path}.{verb}", uri=True))
        if verb == "store":
            return self._store(raw, path)
        name = _header_name(raw[verb], f"{path}.{verb}")
        key = header_key(name)
        if key in PROTECTED_HEADERS:
            raise _Bad(f"may not {verb} {name}: {PROTECTED_HEADERS[key]}", f"{path}.{verb}")
        if key in _SINGLE_IDENTITY and verb in ("add", "remove"):
            raise _Bad(
                f"may not {verb} {name}: every message has exactly one (RFC 3261 §8.1.1); use set or replace",
                f"{path}.{verb}",
            )
        if verb == "add":
            return AddHeader(name, self._value(raw["value"], f"{path}.value"))
        if verb == "remove":
            return RemoveHeader(name)
        if verb == "set":
            return SetHeader(name, key, self._value(raw["value"], f"{path}.value"))
        regex = _regex(raw["regex"], f"{path}.regex")
        return ReplaceInHeader(name, key, regex, self._value(raw["with"], f"{path}.with", pattern=regex))

    def _store(self, raw: dict[str, Any], path: str) -> StoreFromHeader:
        name = raw["store"]
        if not isinstance(name, str) or not _STORE_NAME_RE.match(name):
            raise _Bad(f"{name!r} is not a name (letters, digits, _ and -)", f"{path}.store")
        header = _header_name(raw["from"], f"{path}.from")
        regex = _regex(raw["regex"], f"{path}.regex") if "regex" in raw else None
        self.stored.add(name)
        return StoreFromHeader(name, header, regex)

    def _value(self, raw: object, path: str, *, pattern: re.Pattern[str] | None = None, uri: bool = False) -> Template:
        try:
            template = parse_template(_text(raw, path), pattern)
        except _Bad as exc:
            raise _Bad(exc.reason, exc.path or path) from None
        for name in template.stored_names():
            if name not in self.stored:
                raise _Bad(f"${{stored.{name}}} is used before any rule stores it", path)
        if uri and template.literal is not None:
            try:
                Uri.parse(template.literal)
            except SipProtocolError as exc:
                raise _Bad(f"{template.literal!r} is not a SIP URI: {exc.reason}", path) from None
        return template
