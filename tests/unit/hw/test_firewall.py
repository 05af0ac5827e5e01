"""The host firewall's ruleset as rendered from configs: what each realm, management and the operator
open, where; the weak-host and reverse-path checks ahead of every service; nft accepts the text."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from hw.firewall import CounterName, openings, render_removal, render_replacement, render_ruleset
from hw.firewall_apply import firewall_script
from hw.firewall_counters import CounterReading, CountersUnreadable, FirewallCounters, parse_counters
from sbc.config.loader import load_config, load_config_text
from sbc.config.model import SbcConfig

ROOT = Path(__file__).resolve().parents[3]
APPLIANCE_DEFAULT = ROOT / "rootfs/usr/lib/sbc/sbc.yaml"
CAN_RUN_NFT = os.geteuid() == 0 and shutil.which("nft") is not None


def two_realms(tmp_path: Path, management: str = "", firewall: str = "") -> SbcConfig:
    """A LAN on IPv4 with TLS, a WAN on IPv6; management and firewall sections as given."""
    (tmp_path / "cert.pem").write_text("x")
    (tmp_path / "key.pem").write_text("x")
    text = textwrap.dedent(
        """\
        realms:
          - name: lan
            trusted: true
            address: 198.18.1.1
            listen: [{transport: udp, port: 5060}, {transport: tls, port: 5061}]
            tls: {certificate: cert.pem, private_key: key.pem}
            media: {address: 198.18.1.1, ports: 30000-30999}
          - name: wan
            address: "2001:db8::10"
            listen: [{transport: udp, port: 5070}, {transport: tcp, port: 5070}]
            media: {address: "2001:db8::10", ports: 31000-31999}
        routes: [{name: out, from: lan, to: wan}]
        """
    )
    return load_config_text(text + textwrap.dedent(management) + textwrap.dedent(firewall), "two.yaml",
                            base_dir=tmp_path)  # fmt: skip


def input_rules(ruleset: str) -> list[str]:
    chain = re.search(r"chain input \{\n(.*?)\n\t\}", ruleset, re.S)
    assert chain is not None
    return [line.strip() for line in chain[1].splitlines()]


def accepted_services(ruleset: str) -> list[str]:
    """The service rules, shortened to `<addr match> <port match> <counter>`."""
    found = []
    for rule in input_rules(ruleset):
        m = re.fullmatch(r'(.*?) counter name "(\w+)" accept comment ".*"', rule)
        if m:
            found.append(f"{m[1]} {m[2]}")
    return found


def nft_check(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nft", "-c", "-f", "-"], input=script, capture_output=True, text=True, timeout=30)


def test_appliance_default_opens_sip_and_media_per_realm_and_management_on_the_lan_only() -> None:
    ruleset = render_ruleset(load_config(APPLIANCE_DEFAULT))
    assert accepted_services(ruleset) == [
        "ip daddr 198.18.1.1 udp dport 5060 sip",
        "ip daddr 198.18.1.1 tcp dport 5060 sip",
        "ip daddr 198.18.2.10 udp dport 5060 sip",
        "ip daddr 198.18.2.10 tcp dport 5060 sip",
        "ip daddr 198.18.1.1 udp dport 30000-30999 media",
        "ip daddr 198.18.2.10 udp dport 31000-31999 media",
        "ip daddr 198.18.1.1 tcp dport 443 mgmt",
        "ip daddr 198.18.1.1 udp dport 161 snmp",
    ]
    assert "type filter hook input priority filter; policy drop;" in ruleset
    assert "type filter hook forward priority filter; policy drop;" in ruleset


def test_weak_host_and_state_checks_come_before_every_service() -> None:
    rules = input_rules(render_ruleset(load_config(APPLIANCE_DEFAULT)))
    weak_host = next(i for i, rule in enumerate(rules) if rule.startswith("fib daddr . iif type != local"))
    first_service = next(i for i, rule in enumerate(rules) if 'counter name "sip"' in rule)
    assert rules[:2] == ["type filter hook input priority filter; policy drop;", 'iif "lo" accept']
    assert rules.index("ct state { established, related } accept") < weak_host < first_service
    assert rules[-1].startswith('counter name "dropped"')  # counts what the policy then drops
    assert 'udp sport 67 udp dport 68 accept comment "DHCP client"' in rules[:weak_host]


def test_reverse_path_filter_is_strict_and_lets_dhcp_and_dad_through() -> None:
    ruleset = render_ruleset(load_config(APPLIANCE_DEFAULT))
    chain = re.search(r"chain prerouting \{\n(.*?)\n\t\}", ruleset, re.S)
    assert chain is not None
    rules = [line.strip() for line in chain[1].splitlines()]
    assert rules[-1] == 'fib saddr . iif oif missing counter name "spoofed" drop comment "strict reverse path"'
    assert "udp sport 67 udp dport 68" in " ".join(rules[:-1])
    assert "nd-neighbor-solicit" in " ".join(rules[:-1])


def test_every_counter_is_declared_and_every_reference_names_one() -> None:
    ruleset = render_ruleset(load_config(APPLIANCE_DEFAULT))
    declared = re.findall(r"^\tcounter (\w+) \{$", ruleset, re.M)
    assert declared == [name.value for name in CounterName]
    assert set(re.findall(r'counter name "(\w+)"', ruleset)) <= set(declared)


def test_embedded_default_keeps_management_on_loopback_closed_from_outside() -> None:
    config = load_config(None)
    assert config.management.http.address.is_loopback
    ruleset = render_ruleset(config)
    assert not [s for s in accepted_services(ruleset) if s.endswith(("mgmt", "snmp"))]


def test_two_realms_ipv6_wan_tls_listener_and_wildcard_management_narrowed_to_trusted(tmp_path: Path) -> None:
    config = two_realms(tmp_path, management='management:\n  http: {address: "::", port: 8443}\n'
                        "  snmp: {enabled: false}\n")  # fmt: skip
    assert accepted_services(render_ruleset(config)) == [
        "ip daddr 198.18.1.1 udp dport 5060 sip",
        "ip daddr 198.18.1.1 tcp dport 5061 sip",  # TLS is TCP
        "ip6 daddr 2001:db8::10 udp dport 5070 sip",
        "ip6 daddr 2001:db8::10 tcp dport 5070 sip",
        "ip daddr 198.18.1.1 udp dport 30000-30999 media",
        "ip6 daddr 2001:db8::10 udp dport 31000-31999 media",
        "ip daddr 198.18.1.1 tcp dport 8443 mgmt",  # `::` bound: only the trusted realm's address
    ]


def test_operator_openings_follow_realms_and_addresses(tmp_path: Path) -> None:
    config = two_realms(tmp_path, firewall=textwrap.dedent(
        """\
        firewall:
          allow:
            - {from: "2001:db8:1::/48", port: 22, protocol: tcp, to: wan}
            - {from: 198.18.1.0/24, port: 8000-8010, protocol: udp, to: 198.18.1.1}
            - {port: 5353, protocol: udp}
            - {port: 5060, protocol: udp, to: lan}
        """
    ))  # fmt: skip
    services = accepted_services(render_ruleset(config))
    assert services[-3:] == [
        "ip6 saddr 2001:db8:1::/48 ip6 daddr 2001:db8::10 tcp dport 22 allowed",
        "ip saddr 198.18.1.0/24 ip daddr 198.18.1.1 udp dport 8000-8010 allowed",
        "udp dport 5353 allowed",
    ]  # the last opening repeats the LAN's SIP listener: one rule, counted as SIP
    assert services.count("ip daddr 198.18.1.1 udp dport 5060 sip") == 1
    assert [o.comment for o in openings(config) if o.counter is CounterName.ALLOWED] == [
        "firewall.allow[0]", "firewall.allow[1]", "firewall.allow[2]"
    ]  # fmt: skip


def test_snmp_on_a_wildcard_ipv4_bind_opens_only_ipv4_trusted_addresses(tmp_path: Path) -> None:
    config = two_realms(tmp_path, management="management:\n  snmp: {address: 0.0.0.0, port: 16161}\n")
    services = accepted_services(render_ruleset(config))
    assert [s for s in services if s.endswith("snmp")] == ["ip daddr 198.18.1.1 udp dport 16161 snmp"]
    assert not [s for s in services if s.endswith("mgmt")]  # HTTPS stays on loopback by default


def test_disabled_firewall_renders_the_removal_only(tmp_path: Path) -> None:
    config = two_realms(tmp_path, firewall="firewall: {enabled: false}\n")
    assert firewall_script(config) == render_removal() == "table inet sbc_filter\ndelete table inet sbc_filter\n"
    assert firewall_script(load_config(APPLIANCE_DEFAULT)).startswith(render_removal() + "# Rendered from ")


@pytest.mark.skipif(not CAN_RUN_NFT, reason="nft -c needs root and nftables")
@pytest.mark.parametrize("which", ["appliance", "embedded", "two_realms", "two_realms_with_openings"])
def test_nft_accepts_the_rendered_ruleset(which: str, tmp_path: Path) -> None:
    configs = {
        "appliance": lambda: load_config(APPLIANCE_DEFAULT),
        "embedded": lambda: load_config(None),
        "two_realms": lambda: two_realms(tmp_path),
        "two_realms_with_openings": lambda: two_realms(
            tmp_path, management='management:\n  http: {address: "::"}\n  snmp: {address: "::"}\n',
            firewall="firewall:\n  allow:\n    - {from: 198.18.1.0/24, port: 22, to: lan}\n    - {port: 9}\n",
        ),
    }  # fmt: skip
    done = nft_check(render_replacement(configs[which]()))
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(not CAN_RUN_NFT, reason="nft -c needs root and nftables")
def test_nft_check_catches_a_broken_rule() -> None:
    broken = render_replacement(load_config(APPLIANCE_DEFAULT)).replace("udp dport 161", "udp dport 161-")
    done = nft_check(broken)
    assert done.returncode != 0
    assert "syntax error" in done.stderr


COUNTERS_JSON = (
    '{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}, '
    + ", ".join(
        f'{{"counter": {{"family": "inet", "name": "{name}", "table": "sbc_filter", "handle": {i + 4}, '
        f'"packets": {i * 10}, "bytes": {i * 1000}}}}}'
        for i, name in enumerate(CounterName)
    )
    + ', {"counter": {"family": "ip", "name": "sip", "table": "other", "handle": 1, "packets": 99, "bytes": 9}}]}'
)


def test_counters_parse_into_one_typed_reading_per_name() -> None:
    counters = parse_counters(COUNTERS_JSON)
    assert counters.sip == CounterReading(packets=0, bytes=0)  # not the other table's "sip"
    assert counters.media == CounterReading(packets=10, bytes=1000)
    assert counters.reading(CounterName.FORWARD_DROPPED) == CounterReading(packets=70, bytes=7000)
    assert list(counters.as_json()) == [name.value for name in CounterName]
    assert counters.as_json()["dropped"] == {"packets": 60, "bytes": 6000}


def test_counter_fields_are_the_counter_names() -> None:
    assert list(FirewallCounters.__dataclass_fields__) == [name.value for name in CounterName]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not JSON"),
        ('{"nftables": {}}', "no `nftables` list"),
        (COUNTERS_JSON.replace('"name": "snmp"', '"name": "snmp2"'), "has no counter snmp"),
        (COUNTERS_JSON.replace('"packets": 30', '"packets": "30"'), "'snmp' has no packet and byte counts"),
    ],
)
def test_unreadable_counters_say_why(text: str, message: str) -> None:
    with pytest.raises(CountersUnreadable, match=re.escape(message)):
        parse_counters(text)


def test_readme_firewall_example_loads_and_renders() -> None:
    readme = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S) if b.startswith("firewall:"))
    text = APPLIANCE_DEFAULT.read_text().replace("192.0.2", "198.18.1").replace("198.51.100", "198.18.2")
    block = block.replace("192.0.2", "198.18.1").replace("198.51.100", "198.18.2")
    config = load_config_text(text + block, "README")
    assert [o.comment for o in openings(config) if o.counter is CounterName.ALLOWED] == [
        "firewall.allow[0]", "firewall.allow[1]", "firewall.allow[2]"
    ]  # fmt: skip
