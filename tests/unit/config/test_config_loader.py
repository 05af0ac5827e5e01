"""The loader: the embedded default loads; each wrong value is reported with its line and path."""

from __future__ import annotations

import dataclasses
import ipaddress
import textwrap
from pathlib import Path

import pytest

from sbc.config.loader import TABLES, ConfigError, ConfigProblem, load_config, load_config_text
from sbc.config.model import LatchMode, MediaMode, Realm, SbcConfig, Transport
from sbc.yamlsource import YamlTree, parse_yaml

BASE = textwrap.dedent(
    """\
    sbc:
      user_agent: TestSBC
      max_calls: 10
    timers:
      t1_ms: 500
      t2_ms: 4000
    realms:
      - name: lan
        trusted: true
        address: 10.0.0.1
        listen:
          - {transport: udp, port: 5060}
        media:
          address: 10.0.0.1
          ports: 30000-30999
          latch: learn
          dscp: ef
      - name: wan
        address: "2001:db8::1"
        listen:
          - {transport: udp, port: 5060}
          - {transport: tcp, port: 5060}
        peer: {host: trunk.example.net, port: 5080}
        sip_dscp: 24
        media:
          address: "2001:db8::1"
          ports: 31000-31999
    routes:
      - name: out
        from: lan
        to: wan
        match_user: "^\\\\+?[0-9]+$"
      - name: in
        from: wan
        to: lan
        use_registrations: true
        media: direct
    header_rules:
      - name: trunk-id
        realm: wan
        direction: outbound
        actions:
          - {add: X-Trunk-Id, value: branch-42}
    """
)


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """1-based line of the nth line containing `needle`."""
    hits = [i + 1 for i, line in enumerate(text.splitlines()) if needle in line]
    return hits[nth - 1]


def problems(text: str, **kwargs: Path) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "sbc.yaml", **kwargs)
    return info.value.problems


def one_problem(text: str) -> ConfigProblem:
    found = problems(text)
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


def edit(old: str, new: str, text: str = BASE) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


# ---- what loads -------------------------------------------------------------------------------
def test_embedded_default_loads() -> None:
    config = load_config(None)
    assert config.source == "<embedded>"
    assert [r.name for r in config.realms] == ["lan", "wan"]
    lan = config.realm("lan")
    assert lan.trusted
    assert lan.listener(Transport.UDP) is not None
    assert lan.media.latch is LatchMode.LEARN
    assert (lan.media.port_min, lan.media.port_max) == (30000, 30999)
    assert lan.sip_dscp == 26 and lan.media.dscp == 46
    wan = config.realm("wan")
    assert wan.peer is not None and wan.peer.host == "127.0.2.10"
    assert [(r.from_realm, r.to_realm) for r in config.routes] == [("lan", "wan"), ("wan", "lan")]
    assert config.routes[1].use_registrations
    assert config.header_rules == ()


def test_base_maps_yaml_keys_to_model_fields() -> None:
    config = load_config_text(BASE, "sbc.yaml")
    assert config.source == "sbc.yaml"
    assert config.user_agent == "TestSBC" and config.max_calls == 10
    assert config.log_level == "info"  # not named: the model's default
    assert config.timers.t4_ms == 5000
    wan = config.realm("wan")
    assert wan.address == ipaddress.ip_address("2001:db8::1")
    assert [ls.transport for ls in wan.listeners] == [Transport.UDP, Transport.TCP]
    assert wan.peer is not None and (wan.peer.host, wan.peer.port, wan.peer.transport) == (
        "trunk.example.net",
        5080,
        Transport.UDP,
    )
    assert wan.sip_dscp == 24
    assert config.routes[0].match_user == "^\\+?[0-9]+$"
    assert config.routes[1].media is MediaMode.DIRECT
    assert [rule.name for rule in config.header_rules] == ["trunk-id"]


def test_load_config_reads_a_file_and_names_it(tmp_path: Path) -> None:
    path = tmp_path / "sbc.yaml"
    path.write_text(BASE)
    assert load_config(path).source == str(path)


def test_unreadable_file_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.yaml")
    assert "cannot read" in info.value.problems[0].message


def test_every_model_field_has_a_yaml_key() -> None:
    for cls, table in TABLES.items():
        covered = {key.attr for key in table.values()}
        if cls.__name__ == "MediaSettings":
            covered |= {"port_min", "port_max"}
        if cls.__name__ == "FirewallOpening":
            covered |= {"port_min", "port_max", "to_realm", "to_address"}
        fields = {f.name for f in dataclasses.fields(cls)}
        assert fields <= covered, f"{cls.__name__}: no YAML key for {fields - covered}"


def test_empty_value_takes_the_default_and_anchors_merge() -> None:
    text = edit("    trusted: true\n", "    trusted:\n")
    text = edit("    media:\n      address: 10.0.0.1\n", "    media: &m\n      address: 10.0.0.1\n", text)
    text = edit(
        '    media:\n      address: "2001:db8::1"\n      ports: 31000-31999\n',
        '    media: {<<: *m, address: "2001:db8::1", ports: 31000-31999}\n',
        text,
    )
    config = load_config_text(text, "x")
    assert not config.realm("lan").trusted
    assert config.realm("wan").media.latch is LatchMode.LEARN  # merged from the anchor
    assert config.realm("wan").media.port_min == 31000


def test_tls_listener_with_files_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("x")
    (tmp_path / "key.pem").write_text("x")
    text = edit(
        "      - {transport: tcp, port: 5060}\n",
        "      - {transport: tls, port: 5061}\n"
        "    tls: {certificate: cert.pem, private_key: key.pem, min_version: 1.2}\n",
    )
    path = tmp_path / "sbc.yaml"
    path.write_text(text)
    wan = load_config(path).realm("wan")
    assert wan.tls is not None
    assert wan.tls.certificate == tmp_path / "cert.pem" and wan.tls.min_version == "1.2"


# ---- each kind of error: the right line, path and message ----------------------------------------
@pytest.mark.parametrize(
    ("old", "new", "path", "message"),
    [
        ("  max_calls: 10", "  max_cals: 10", "sbc.max_cals", "did you mean 'max_calls'?"),
        ("    trusted: true", "    trusted: yes please", "realms[0].trusted", "expected true or false"),
        ("  max_calls: 10", "  max_calls: ten", "sbc.max_calls", "expected an integer"),
        ("  max_calls: 10", "  max_calls: 0", "sbc.max_calls", "at least 1"),
        ("    address: 10.0.0.1", "    address: 10.0.0.256", "realms[0].address", "not an IPv4 or IPv6 address"),
        ("    address: 10.0.0.1", "    address: 0.0.0.0", "realms[0].address", "cannot be used"),
        ('    address: "2001:db8::1"', '    address: "2001:db8::g"', "realms[1].address", "not an IPv4 or IPv6"),
        ("{transport: udp, port: 5060}", "{transport: udp, port: 0}", "realms[0].listen[0].port", "1-65535"),
        ("{transport: udp, port: 5060}", "{transport: sctp, port: 5060}", "realms[0].listen[0].transport", "udp, tcp"),
        ("{transport: udp, port: 5060}", "{transport: udp}", "realms[0].listen[0].port", "required key is missing"),
        ("      ports: 30000-30999", "      ports: 30999-30000", "realms[0].media.ports", "range 30999-30000 is empty"),
        ("      ports: 30000-30999", "      ports: 30001-30999", "realms[0].media.ports", "even port"),
        ("      ports: 30000-30999", "      ports: 30000-30998", "realms[0].media.ports", "odd port"),
        ("      ports: 30000-30999", "      ports: 30000-70001", "realms[0].media.ports", "70001"),
        ("      ports: 30000-30999", "      ports: 30000", "realms[0].media.ports", "port range like"),
        ("      dscp: ef", "      dscp: eff", "realms[0].media.dscp", "did you mean 'ef'?"),
        ("      dscp: ef", "      dscp: 64", "realms[0].media.dscp", "0-63"),
        ("      latch: learn", "      latch: always", "realms[0].media.latch", "sdp, learn"),
        (
            "    peer: {host: trunk.example.net, port: 5080}",
            "    peer: {host: 'a.b:5060'}",
            "realms[1].peer.host",
            "port",
        ),
        ("    to: wan", "    to: wna", "routes[0].to", "unknown realm 'wna' (did you mean 'wan'?)"),
        ("    from: wan", "    from: dmz", "routes[1].from", "unknown realm 'dmz'"),
        ("    media: direct", "    media: relay", "routes[1].media", "anchor, direct"),
        ('    match_user: "^\\\\+?[0-9]+$"', '    match_user: "(["', "routes[0].match_user", "does not compile"),
        ("  t1_ms: 500", "  t1_ms: 5000", "timers.t1_ms", "must not exceed t2_ms"),
        ("  t1_ms: 500", "  t1_ms: -1", "timers.t1_ms", "at least 1"),
        (
            "- {add: X-Trunk-Id, value: branch-42}",
            "- {remove: Call-ID}",
            "header_rules[0].actions[0].remove",
            "Call-ID",
        ),
        ("    realm: wan\n", "    realm: wna\n", "header_rules[0].realm", "did you mean 'wan'?"),
    ],
)
def test_error_names_line_path_and_reason(old: str, new: str, path: str, message: str) -> None:
    text = edit(old, new)
    problem = one_problem(text)
    assert problem.path == path
    assert message in problem.message
    assert problem.line == line_of(text, new.splitlines()[0])
    assert str(problem) == f"sbc.yaml:{problem.line}: {path}: {problem.message}"


def test_str_of_a_problem() -> None:
    problem = ConfigProblem("sbc.yaml", 42, "realms[1].media.ports", "range 31000-30000 is empty")
    assert str(problem) == "sbc.yaml:42: realms[1].media.ports: range 31000-30000 is empty"


def test_missing_required_key_points_at_its_parent() -> None:
    text = edit("    media:\n      address: 10.0.0.1\n", "    media:\n")
    # media now lacks address (ports/latch/dscp remain); the problem sits on the `media:` line.
    problem = one_problem(text)
    assert (problem.path, problem.message) == ("realms[0].media.address", "required key is missing")
    assert problem.line == line_of(text, "    media:")


def test_missing_realms_and_empty_document() -> None:
    # without realms or routes nothing can be routed: both are named, never a crash
    assert sorted(p.path for p in problems("sbc: {max_calls: 3}\n")) == ["realms", "routes"]
    problem = one_problem("")
    assert (problem.line, problem.path) == (1, "config")


def test_duplicate_realm_name_and_listener() -> None:
    text = edit("  - name: wan\n", "  - name: lan\n")
    text = edit('    address: "2001:db8::1"\n', "    address: 10.0.0.1\n", text)
    text = edit('      address: "2001:db8::1"\n', "      address: 10.0.1.1\n", text)
    found = {p.path: p for p in problems(text)}
    assert "already defined at realms[0]" in found["realms[1].name"].message
    dup = found["realms[1].listen[0]"]
    assert dup.message == "udp 10.0.0.1:5060 is already used by realms[0].listen[0] (udp)"
    assert dup.line == line_of(text, "{transport: udp, port: 5060}", 2)


def test_tcp_and_tls_cannot_share_a_port(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("x")
    text = edit(
        "      - {transport: tcp, port: 5060}\n",
        "      - {transport: tcp, port: 5060}\n      - {transport: tls, port: 5060}\n"
        "    tls: {certificate: c.pem, private_key: c.pem}\n",
    )
    problem = problems(text, base_dir=tmp_path)[0]
    assert problem.path == "realms[1].listen[2]" and "already used by realms[1].listen[1] (tcp)" in problem.message


def test_overlapping_media_ports_on_one_address() -> None:
    text = edit(
        '      address: "2001:db8::1"\n      ports: 31000-31999', "      address: 10.0.0.1\n      ports: 30500-31499"
    )
    problem = one_problem(text)
    assert problem.path == "realms[1].media.ports"
    assert "overlaps realms[0].media.ports (30000-30999)" in problem.message


def test_tls_listener_needs_tls_section_and_existing_files(tmp_path: Path) -> None:
    text = edit("      - {transport: tcp, port: 5060}\n", "      - {transport: tls, port: 5061}\n")
    problem = one_problem(text)
    assert (problem.path, problem.line) == ("realms[1].listen[1]", line_of(text, "transport: tls"))
    assert "tls:" in problem.message
    text = edit(
        "    sip_dscp: 24\n",
        "    sip_dscp: 24\n    tls:\n      certificate: c.pem\n      private_key: /no/k.pem\n",
        text,
    )
    found = problems(text, base_dir=tmp_path)
    assert [(p.path, p.line) for p in found] == [
        ("realms[1].tls.certificate", line_of(text, "certificate:")),
        ("realms[1].tls.private_key", line_of(text, "private_key:")),
    ]
    assert f"{tmp_path / 'c.pem'} does not exist" in found[0].message


def test_duplicate_route_name() -> None:
    text = edit("  - name: in\n", "  - name: out\n")
    problem = one_problem(text)
    assert (problem.path, problem.line) == ("routes[1].name", line_of(text, "- name: out", 2))


def test_duplicate_yaml_key_is_reported() -> None:
    text = edit("  max_calls: 10\n", "  max_calls: 10\n  max_calls: 20\n")
    problem = one_problem(text)
    assert (problem.path, problem.line) == ("sbc.max_calls", line_of(text, "max_calls: 20"))
    assert "duplicate key (first on line 3)" in problem.message


def test_header_rule_error_gets_the_rule_line() -> None:
    text = edit("    direction: outbound\n", "    direction: outbound\n    match: {status: 999}\n")
    problem = one_problem(text)
    assert (problem.path, problem.line) == ("header_rules[0].match.status", line_of(text, "status: 999"))


def test_every_problem_is_reported_at_once() -> None:
    text = BASE
    for old, new in [
        ("  user_agent: TestSBC", "  user_agnt: TestSBC"),
        ("    address: 10.0.0.1", "    address: 10.0.0.999"),
        ("      ports: 31000-31999", "      ports: 31999-31000"),
        ("    to: wan", "    to: nowhere"),
        ("      - {add: X-Trunk-Id, value: branch-42}", "      - {set: Via, value: x}"),
    ]:
        text = edit(old, new, text)
    found = problems(text)
    assert [p.path for p in found] == [
        "sbc.user_agnt",
        "realms[0].address",
        "realms[1].media.ports",
        "routes[0].to",
        "header_rules[0].actions[0].set",
    ]
    assert [p.line for p in found] == sorted(p.line for p in found)
    assert all(p.source == "sbc.yaml" for p in found)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("realms:\n  - name: lan\n    address: [10.0.0.1\n", 4),
        ("sbc:\n  user_agent: a\n user_agent: b\n", 3),
        ("realms:\n\t- name: lan\n", 2),
        ("a: 1\n---\nb: 2\n", 2),
    ],
)
def test_yaml_syntax_error_gives_its_line(text: str, line: int) -> None:
    problem = one_problem(text)
    assert (problem.path, problem.line) == ("syntax", line)


def test_yaml_tree_records_lines_of_keys_and_items() -> None:
    tree, found = parse_yaml("a:\n  b:\n    - x\n    - y: 1\n", "t")
    assert not found
    assert tree.data == {"a": {"b": ["x", {"y": 1}]}}
    assert tree.lines["a.b"] == 2 and tree.lines["a.b[1]"] == 4 and tree.lines["a.b[1].y"] == 4
    assert YamlTree(None, {"": 1, "a": 7}).line("a.missing[3].deeper") == 7


def test_model_types_survive() -> None:
    config = load_config_text(BASE, "x")
    assert isinstance(config, SbcConfig)
    assert all(isinstance(r, Realm) for r in config.realms)
