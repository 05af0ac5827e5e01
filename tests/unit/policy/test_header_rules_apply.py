"""Header rules at run time: each action, each condition, order, binding to realm/route/direction."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from sbc.policy.header_rules import HeaderRules, MessageDirection, apply_rules, compile_rules
from sbc.sip.message import Request, Response, parse_datagram

REALMS = {"lan", "wan"}
ROUTES = {"out", "in"}

INVITE = (
    b"INVITE sip:4930123@198.18.0.2 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.18.0.1:5060;branch=z9hG4bK776asdhds\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:4930123@198.18.0.2>\r\n"
    b'From: "Alice" <sip:0301234@198.18.0.1>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66710@198.18.0.1\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@198.18.0.1>\r\n"
    b"User-Agent: Yealink SIP-T46S\r\n"
    b"X-Internal-Debug: 1\r\n"
    b"X-Internal-Debug: 2\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

RINGING = (
    b"SIP/2.0 183 Session Progress\r\n"
    b"Via: SIP/2.0/UDP 198.18.0.1:5060;branch=z9hG4bK776asdhds\r\n"
    b"To: <sip:4930123@198.18.0.2>;tag=a6c85cf\r\n"
    b'From: "Alice" <sip:0301234@198.18.0.1>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66710@198.18.0.1\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def invite() -> Request:
    msg = parse_datagram(INVITE)
    assert isinstance(msg, Request)
    return msg


def ringing() -> Response:
    msg = parse_datagram(RINGING)
    assert isinstance(msg, Response)
    return msg


def rules(text: str) -> HeaderRules:
    raw: list[dict[str, Any]] = yaml.safe_load(text)
    return compile_rules(raw, REALMS, ROUTES)


def run(
    text: str,
    msg: Request | Response,
    *,
    realm: str = "wan",
    route: str | None = "out",
    direction: MessageDirection = MessageDirection.OUTBOUND,
    store: dict[str, str] | None = None,
) -> list[str]:
    return apply_rules(
        rules(text), msg, realm=realm, route=route, direction=direction, store={} if store is None else store
    )


def one_rule(actions: str, match: str = "{}") -> str:
    return f"- {{realm: wan, direction: outbound, match: {match}, actions: {actions}}}"


# ---- actions ---------------------------------------------------------------------------------------
def test_add_appends_a_line() -> None:
    msg = invite()
    done = run(one_rule("[{add: X-Trunk-Id, value: branch-42}]"), msg)
    assert msg.get_all("X-Trunk-Id") == ["branch-42"]
    assert msg.headers[-1].name == "X-Trunk-Id"
    assert done == ["header_rules[0]: add X-Trunk-Id: branch-42"]


def test_remove_drops_every_line_and_compact_forms_are_the_same_header() -> None:
    msg = invite()
    run(one_rule("[{remove: X-Internal-Debug}, {remove: m}]"), msg)  # m = Contact
    assert not msg.has("X-Internal-Debug") and not msg.has("Contact")


def test_set_replaces_in_place_or_adds() -> None:
    msg = invite()
    position = [h.key for h in msg.headers].index("user-agent")
    run(one_rule("[{set: User-Agent, value: EdgeSBC}, {set: Subject, value: hello}]"), msg)
    assert msg.headers[position].value == "EdgeSBC"
    assert msg.get("Subject") == "hello"


def test_replace_with_capture_groups() -> None:
    msg = invite()
    action = r'[{replace: From, regex: "sip:0(\\d+)@[^>;]+", with: "sip:+49\\1@trunk.example"}]'
    done = run(one_rule(action), msg)
    assert msg.get("From") == '"Alice" <sip:+49301234@trunk.example>;tag=1928301774'
    assert done == ["header_rules[0]: replace in From (1 lines changed)"]


def test_replace_with_named_group_and_whole_match() -> None:
    msg = invite()
    run(one_rule(r'[{replace: User-Agent, regex: "(?P<v>Yealink)", with: "[\\g<v>|\\g<0>]"}]'), msg)
    assert msg.get("User-Agent") == "[Yealink|Yealink] SIP-T46S"


def test_replace_keeps_the_from_tag() -> None:
    msg = invite()
    run(one_rule(r'[{replace: From, regex: "tag=\\w+", with: "tag=evil"}]'), msg)
    assert msg.from_.tag == "1928301774"


def test_set_from_keeps_the_tag_and_refuses_garbage() -> None:
    msg = invite()
    run(one_rule('[{set: From, value: "<sip:anonymous@anonymous.invalid>"}]'), msg)
    assert str(msg.from_) == "<sip:anonymous@anonymous.invalid>;tag=1928301774"
    done = run(one_rule('[{set: From, value: "not a uri"}]'), msg)
    assert "skipped" in done[0] and msg.from_.uri.user == "anonymous"


def test_store_then_use_later_in_the_same_call() -> None:
    text = "\n".join(
        [
            '- {realm: lan, direction: inbound, actions: [{store: caller, from: From, regex: "sip:([^@]+)@"}]}',
            '- {realm: wan, direction: outbound, actions: [{set: X-Caller, value: "call from ${stored.caller}"}]}',
        ]
    )
    store: dict[str, str] = {}
    first = invite()
    run(text, first, realm="lan", direction=MessageDirection.INBOUND, store=store)
    assert store == {"caller": "0301234"}
    assert not first.has("X-Caller")
    later = invite()  # another message of the same call, on the other side
    run(text, later, realm="wan", direction=MessageDirection.OUTBOUND, store=store)
    assert later.get("X-Caller") == "call from 0301234"


def test_store_whole_match_without_groups_and_whole_value_without_regex() -> None:
    store: dict[str, str] = {}
    run(
        one_rule('[{store: ua, from: User-Agent, regex: "T4\\\\d\\\\w"}, {store: cid, from: i}]'), invite(), store=store
    )
    assert store == {"ua": "T46S", "cid": "a84b4c76e66710@198.18.0.1"}


def test_use_of_a_value_never_stored_in_this_call_skips_the_action() -> None:
    text = (
        '- {realm: lan, direction: inbound, actions: [{store: caller, from: X-Absent, regex: "(.*)"}]}\n'
        '- {realm: wan, direction: outbound, actions: [{add: X-Caller, value: "${stored.caller}"}]}\n'
    )
    store: dict[str, str] = {}
    msg = invite()
    assert run(text, msg, realm="lan", direction=MessageDirection.INBOUND, store=store) == [
        "header_rules[0]: store caller skipped: no X-Absent"
    ]
    done = run(text, msg, store=store)
    assert done == ["header_rules[1]: add X-Caller skipped: ${stored.caller} has no value"]
    assert not msg.has("X-Caller")


def test_header_reference_reads_the_current_value() -> None:
    msg = invite()
    run(one_rule('[{set: User-Agent, value: "EdgeSBC"}, {add: X-Orig, value: "ua=${header.User-Agent} $$5"}]'), msg)
    assert msg.get("X-Orig") == "ua=EdgeSBC $5"


def test_set_request_uri_from_stored_value() -> None:
    msg = invite()
    text = '[{store: number, from: To, regex: "sip:(\\\\d+)@"}, {set_request_uri: "sip:${stored.number}@pbx.example"}]'
    run(one_rule(text), msg)
    assert msg.uri == "sip:4930123@pbx.example"
    assert msg.serialize().startswith(b"INVITE sip:4930123@pbx.example SIP/2.0\r\n")


def test_untouched_message_still_round_trips() -> None:
    msg = invite()
    run(one_rule("[{remove: X-Absent}]"), msg)
    assert msg.serialize() == INVITE


# ---- conditions -------------------------------------------------------------------------------------
ADD = "[{add: X-Hit, value: '1'}]"


@pytest.mark.parametrize(
    ("match", "request_hits", "response_hits"),
    [
        ("{}", True, True),
        ("{method: INVITE}", True, False),
        ("{method: [BYE, CANCEL]}", False, False),
        ("{method: invite}", True, False),
        ("{status: 183}", False, True),
        ("{status: 180-182}", False, False),
        ("{status: [180, '183-189']}", False, True),
        ("{status: 1xx}", False, True),
        ("{method: INVITE, status: 1xx}", False, True),
        ("{method: BYE, status: 1xx}", False, False),
        ("{message: request}", True, False),
        ("{message: response}", False, True),
        ("{message: any}", True, True),
        ("{header: {name: User-Agent, exists: true}}", True, False),
        ("{header: {name: User-Agent, exists: false}}", False, True),
        ("{header: {name: user-agent, regex: '^Yealink'}}", True, False),
        ("{header: {name: User-Agent, regex: '^Polycom'}}", False, False),
        ("{header: {name: X-Internal-Debug, regex: '^2$'}}", True, False),  # any line
        ("{header: {name: t, regex: 'tag=a6c'}}", False, True),  # compact form of To
        ("{headers: [{name: User-Agent, exists: true}, {name: X-Internal-Debug, exists: true}]}", True, False),
        ("{headers: [{name: User-Agent, exists: true}, {name: Subject, exists: true}]}", False, False),
        ("{request_uri: '^sip:49'}", True, False),
        ("{request_uri: '^sip:00'}", False, False),
    ],
)
def test_condition(match: str, request_hits: bool, response_hits: bool) -> None:
    for msg, expected in ((invite(), request_hits), (ringing(), response_hits)):
        run(one_rule(ADD, match), msg)
        assert msg.has("X-Hit") is expected, (match, msg)


# ---- order and binding ----------------------------------------------------------------------------
def test_rules_apply_in_order_and_match_the_message_as_it_was_before_their_own_actions() -> None:
    text = "\n".join(
        [
            one_rule("[{set: Subject, value: one}]"),
            # Matches: the Subject set by rule 0 is there before this rule starts.
            one_rule(
                "[{set: Subject, value: two}, {add: X-Seen, value: '${header.Subject}'}]",
                "{header: {name: Subject, exists: true}}",
            ),
            # Does not match: its own condition is checked before its actions remove X-Internal-Debug...
            one_rule(
                "[{remove: X-Internal-Debug}, {add: X-Third, value: 'yes'}]",
                "{header: {name: X-Internal-Debug, exists: true}}",
            ),
            # ...so it matched and ran; this one sees that and stays away.
            one_rule("[{add: X-Fourth, value: 'yes'}]", "{header: {name: X-Internal-Debug, exists: true}}"),
        ]
    )
    msg = invite()
    done = run(text, msg)
    assert msg.get("Subject") == "two" and msg.get("X-Seen") == "two"
    assert msg.get("X-Third") == "yes" and not msg.has("X-Fourth")
    assert [d.split(":")[0] for d in done] == ["header_rules[0]", "header_rules[1]", "header_rules[1]"] + [
        "header_rules[2]"
    ] * 2


def test_rule_bound_to_another_realm_or_direction_does_not_apply() -> None:
    text = (
        "- {realm: lan, direction: outbound, actions: [{add: X-Lan, value: '1'}]}\n"
        "- {realm: wan, direction: inbound, actions: [{add: X-Inbound, value: '1'}]}\n"
        "- {realm: wan, direction: outbound, actions: [{add: X-Hit, value: '1'}]}\n"
    )
    msg = invite()
    run(text, msg)
    assert msg.has("X-Hit") and not msg.has("X-Lan") and not msg.has("X-Inbound")


def test_rule_bound_to_a_route_applies_only_to_calls_on_it() -> None:
    text = (
        "- {route: in, direction: outbound, actions: [{add: X-In, value: '1'}]}\n"
        "- {route: out, direction: outbound, actions: [{add: X-Out, value: '1'}]}\n"
        "- {route: out, realm: lan, direction: outbound, actions: [{add: X-Lan, value: '1'}]}\n"
    )
    msg = invite()
    run(text, msg, route="out")
    assert msg.has("X-Out") and not msg.has("X-In") and not msg.has("X-Lan")
    msg = invite()
    run(text, msg, route=None)
    assert not msg.has("X-Out")


def test_bound_rules_are_looked_up_once_per_binding() -> None:
    compiled = rules(
        "- {realm: lan, direction: outbound, actions: [{add: X-A, value: '1'}]}\n"
        "- {realm: wan, direction: outbound, actions: [{add: X-B, value: '1'}]}\n"
    )
    first = compiled.bound_to("wan", "out", MessageDirection.OUTBOUND)
    assert [r.index for r in first] == [1]
    assert compiled.bound_to("wan", "out", MessageDirection.OUTBOUND) is first
    # A plain sequence of rules works too (slower path).
    msg = invite()
    apply_rules(tuple(compiled), msg, realm="wan", route=None, direction=MessageDirection.OUTBOUND, store={})
    assert msg.has("X-B") and not msg.has("X-A")


def test_set_request_uri_skips_responses() -> None:
    msg = ringing()
    assert run(one_rule("[{set_request_uri: 'sip:x@y'}]"), msg) == [
        "header_rules[0]: set_request_uri skipped: not a request"
    ]
