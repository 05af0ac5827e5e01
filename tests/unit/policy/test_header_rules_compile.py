"""Header rules at compile time: every kind of mistake is refused with its rule path and a reason."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from sbc.policy.header_rules import (
    AddHeader,
    HeaderMatches,
    MessageDirection,
    MethodIs,
    RuleError,
    RuleErrors,
    compile_rules,
)

REALMS = {"lan", "wan"}
ROUTES = {"out"}


def errors(text: str) -> list[RuleError]:
    raw: list[dict[str, Any]] = yaml.safe_load(text)
    with pytest.raises(RuleErrors) as info:
        compile_rules(raw, REALMS, ROUTES)
    return list(info.value.errors)


def one_error(text: str) -> RuleError:
    found = errors(text)
    assert len(found) == 1, [str(e) for e in found]
    return found[0]


def rule(actions: str = "[{add: X-A, value: '1'}]", match: str = "{}", extra: str = "") -> str:
    return f"- {{realm: wan, direction: outbound, match: {match}, actions: {actions}{extra}}}"


def test_a_valid_rule_compiles_to_typed_parts() -> None:
    raw = yaml.safe_load(rule(match="{method: INVITE, header: {name: User-Agent, regex: x}}", extra=", name: n"))
    (compiled,) = compile_rules(raw, REALMS, ROUTES)
    assert (compiled.name, compiled.realm, compiled.route, compiled.direction) == (
        "n",
        "wan",
        None,
        MessageDirection.OUTBOUND,
    )
    assert isinstance(compiled.conditions[0], MethodIs)
    assert isinstance(compiled.conditions[1], HeaderMatches)
    assert isinstance(compiled.actions[0], AddHeader)


@pytest.mark.parametrize(
    ("text", "path", "reason"),
    [
        # the rule itself
        ("- 42", "header_rules[0]", "a rule must be a mapping"),
        (rule(extra=", realms: wan"), "header_rules[0].realms", "did you mean 'realm'?"),
        ("- {direction: outbound, actions: [{remove: X-A}]}", "header_rules[0]", "needs `realm:` or `route:`"),
        ("- {realm: dmz, direction: outbound, actions: [{remove: X-A}]}", "header_rules[0].realm", "unknown realm"),
        ("- {route: ot, direction: outbound, actions: [{remove: X-A}]}", "header_rules[0].route", "did you mean 'out'"),
        ("- {realm: wan, actions: [{remove: X-A}]}", "header_rules[0].direction", "required"),
        (
            "- {realm: wan, direction: out, actions: [{remove: X-A}]}",
            "header_rules[0].direction",
            "inbound or outbound",
        ),
        ("- {realm: wan, direction: inbound}", "header_rules[0].actions", "non-empty `actions:`"),
        (rule(actions="[]"), "header_rules[0].actions", "non-empty `actions:`"),
        # conditions
        (rule(match="{methods: INVITE}"), "header_rules[0].match.methods", "did you mean 'method'?"),
        (rule(match="{method: 'IN VITE'}"), "header_rules[0].match.method", "method name"),
        (rule(match="{status: 99}"), "header_rules[0].match.status", "100-699"),
        (rule(match="{status: 183-180}"), "header_rules[0].match.status", "non-empty range"),
        (rule(match="{status: ringing}"), "header_rules[0].match.status", "not a status code"),
        (rule(match="{message: reply}"), "header_rules[0].match.message", "request, response or any"),
        (rule(match="{message: request, status: 200}"), "header_rules[0].match", "never hold together"),
        (rule(match="{request_uri: x, status: 200}"), "header_rules[0].match", "never hold together"),
        (rule(match="{method: BYE, message: response}"), "header_rules[0].match", "never hold together"),
        (rule(match="{request_uri: '(['}"), "header_rules[0].match.request_uri", "does not compile"),
        (rule(match="{header: {name: X-A}}"), "header_rules[0].match.header", "exactly one of `exists:` and `regex:`"),
        (rule(match="{header: {name: X-A, exists: 1}}"), "header_rules[0].match.header.exists", "true or false"),
        (rule(match="{header: {exists: true}}"), "header_rules[0].match.header", "needs `name:`"),
        (rule(match="{header: {name: 'X A', exists: true}}"), "header_rules[0].match.header.name", "header name"),
        (rule(match="{header: {name: X-A, regex: '*'}}"), "header_rules[0].match.header.regex", "does not compile"),
        (rule(match="{header: {name: X-A, regexp: a}}"), "header_rules[0].match.header.regexp", "mean 'regex'"),
        (rule(match="{headers: [{name: X-A, regex: '('}]}"), "header_rules[0].match.headers[0].regex", "compile"),
        # actions
        (rule(actions="[{add: X-A}]"), "header_rules[0].actions[0]", "`add:` needs `value:`"),
        (rule(actions="[{set: X-A}]"), "header_rules[0].actions[0]", "`set:` needs `value:`"),
        (rule(actions="[{replace: X-A, regex: a}]"), "header_rules[0].actions[0]", "`replace:` needs `with:`"),
        (rule(actions="[{store: s}]"), "header_rules[0].actions[0]", "`store:` needs `from:`"),
        (rule(actions="[{append: X-A, value: b}]"), "header_rules[0].actions[0]", "exactly one of add, remove"),
        (rule(actions="[{add: X-A, remove: X-B}]"), "header_rules[0].actions[0]", "found add, remove"),
        (rule(actions="[{add: X-A, valeu: b}]"), "header_rules[0].actions[0].valeu", "did you mean 'value'?"),
        (rule(actions="[{remove: 'X:A'}]"), "header_rules[0].actions[0].remove", "not a header name"),
        (rule(actions="[{add: X-A, value: [1]}]"), "header_rules[0].actions[0].value", "expected a string"),
        (rule(actions="[{add: X-A, value: yes}]"), "header_rules[0].actions[0].value", "quote the value"),
        (rule(actions='[{add: X-A, value: "a\\r\\nVia: x"}]'), "header_rules[0].actions[0].value", "CR or LF"),
        (rule(actions="[{add: X-A, value: '${call.id}'}]"), "header_rules[0].actions[0].value", "unknown reference"),
        (rule(actions="[{add: X-A, value: '${stored.a'}]"), "header_rules[0].actions[0].value", "unterminated"),
        (rule(actions="[{add: X-A, value: '${header.X A}'}]"), "header_rules[0].actions[0].value", "bad name"),
        (rule(actions="[{replace: X-A, regex: '(', with: b}]"), "header_rules[0].actions[0].regex", "compile"),
        (rule(actions="[{replace: X-A, regex: 'a(b)', with: '\\2'}]"), "header_rules[0].actions[0].with", "\\2"),
        (rule(actions="[{replace: X-A, regex: 'ab', with: '\\1'}]"), "header_rules[0].actions[0].with", "has 0"),
        (rule(actions="[{replace: X-A, regex: '(?P<n>a)', with: '\\g<m>'}]"), "header_rules[0].actions[0].with", "<m>"),
        (rule(actions="[{replace: X-A, regex: 'a', with: '\\q'}]"), "header_rules[0].actions[0].with", "escape \\q"),
        (rule(actions="[{store: '1x', from: From}]"), "header_rules[0].actions[0].store", "not a name"),
        (rule(actions="[{store: s, from: From, regex: '['}]"), "header_rules[0].actions[0].regex", "compile"),
        (rule(actions="[{set_request_uri: 'http://x'}]"), "header_rules[0].actions[0].set_request_uri", "SIP URI"),
        (rule("[{set_request_uri: 'sip:a@b'}]", "{status: 200}"), "header_rules[0].actions[0]", "only responses"),
        (rule(actions="[{add: X-A, value: '${stored.who}'}]"), "header_rules[0].actions[0].value", "before any rule"),
    ],
)
def test_compile_error_names_the_rule_and_the_reason(text: str, path: str, reason: str) -> None:
    error = one_error(text)
    assert error.path == path
    assert reason in error.reason
    assert str(error) == f"{path}: {error.reason}"


@pytest.mark.parametrize(
    ("action", "header"),
    [
        ("{remove: Via}", "Via"),
        ("{set: v, value: x}", "Via"),  # compact form of Via
        ("{add: Call-ID, value: x}", "Call-ID"),
        ("{replace: CSeq, regex: '1', with: '2'}", "CSeq"),
        ("{set: Content-Length, value: '0'}", "Content-Length"),
        ("{remove: l}", "Content-Length"),
        ("{set: Max-Forwards, value: '70'}", "Max-Forwards"),
    ],
)
def test_headers_the_sbc_owns_are_refused_with_a_reason(action: str, header: str) -> None:
    error = one_error(rule(actions=f"[{action}]"))
    assert error.path.startswith("header_rules[0].actions[0].")
    assert header in error.reason and "RFC 3261" in error.reason


@pytest.mark.parametrize("action", ["{remove: From}", "{add: To, value: '<sip:a@b>'}", "{remove: f}"])
def test_from_and_to_may_not_be_added_or_removed(action: str) -> None:
    assert "exactly one" in one_error(rule(actions=f"[{action}]")).reason


def test_stored_name_counts_only_after_the_rule_that_stores_it() -> None:
    text = "\n".join(
        [
            rule(actions="[{add: X-A, value: '${stored.caller}'}]"),
            rule(actions="[{store: caller, from: From}, {add: X-B, value: '${stored.caller}'}]"),
            rule(actions="[{set_request_uri: 'sip:${stored.caller}@x'}]"),
        ]
    )
    assert [e.path for e in errors(text)] == ["header_rules[0].actions[0].value"]


def test_every_error_of_every_rule_is_reported() -> None:
    text = "\n".join(
        [
            rule(actions="[{remove: Via}, {add: X-A, value: ok}, {set: X-B}]"),
            "- {realm: moon, direction: up, actions: [{add: X-C, value: '1'}]}",
            rule(match="{status: 700}"),
        ]
    )
    assert [e.path for e in errors(text)] == [
        "header_rules[0].actions[0].remove",
        "header_rules[0].actions[2]",
        "header_rules[1].realm",
        "header_rules[1].direction",
        "header_rules[2].match.status",
    ]
