"""The `firewall:` section: openings read into the model, every mistake reported with its line."""

from __future__ import annotations

import ipaddress
import textwrap

import pytest

from sbc.config.loader import ConfigError, ConfigProblem, load_config_text
from sbc.config.model import FirewallOpening, FirewallProtocol

REALMS = textwrap.dedent(
    """\
    realms:
      - name: lan
        trusted: true
        address: 198.18.1.1
        listen: [{transport: udp, port: 5060}]
        media: {address: 198.18.1.1, ports: 30000-30999}
      - name: wan
        address: 198.18.2.10
        listen: [{transport: udp, port: 5060}]
        media: {address: 198.18.2.10, ports: 31000-31999}
    routes: [{name: out, from: lan, to: wan}]
    """
)


def load(firewall: str) -> list[FirewallOpening] | list[ConfigProblem]:
    text = REALMS + textwrap.dedent(firewall)
    try:
        return list(load_config_text(text, "sbc.yaml").firewall.allow)
    except ConfigError as exc:
        return list(exc.problems)


def test_absent_section_enables_the_firewall_with_no_openings() -> None:
    config = load_config_text(REALMS, "sbc.yaml")
    assert config.firewall.enabled is True
    assert config.firewall.allow == ()


def test_openings_map_yaml_keys_to_fields() -> None:
    text = REALMS + textwrap.dedent(
        """\
        firewall:
          enabled: false
          allow:
            - {from: 198.18.2.0/24, port: 22, protocol: tcp, to: wan}
            - {port: 8000-8010, protocol: udp, to: 198.18.1.1}
            - {port: 5353}
        """
    )
    config = load_config_text(text, "sbc.yaml")
    assert config.firewall.enabled is False
    assert config.firewall.allow == (
        FirewallOpening(22, 22, FirewallProtocol.TCP, ipaddress.ip_network("198.18.2.0/24"), to_realm="wan"),
        FirewallOpening(8000, 8010, FirewallProtocol.UDP, to_address=ipaddress.ip_address("198.18.1.1")),
        FirewallOpening(5353, 5353, FirewallProtocol.TCP),
    )


@pytest.mark.parametrize(
    ("item", "path", "message"),
    [
        ("{port: 22, protocol: sctp}", "firewall.allow[0].protocol", "is not one of: tcp, udp"),
        ("{port: 70000}", "firewall.allow[0].port", "not within 1-65535"),
        ("{port: 9000-8000}", "firewall.allow[0].port", "range 9000-8000 is empty"),
        ("{port: ssh}", "firewall.allow[0].port", "expected a port or a range"),
        ("{port: 22, to: wann}", "firewall.allow[0].to", "did you mean 'wan'"),
        ("{port: 22, to: 0.0.0.0}", "firewall.allow[0].to", "leave `to:` out"),
        ("{port: 22, from: 198.18.2.1/24}", "firewall.allow[0].from", "has host bits set"),
        ("{port: 22, form: 198.18.2.0/24}", "firewall.allow[0].form", "did you mean 'from'"),
        ("{protocol: tcp}", "firewall.allow[0].port", "required key is missing"),
        ('{port: 22, from: "2001:db8::/32", to: wan}', "firewall.allow[0].from", "IPv6 but `to` is the IPv4"),
    ],
)
def test_a_wrong_opening_is_reported_at_its_line(item: str, path: str, message: str) -> None:
    found = load(f"firewall:\n  allow:\n    - {item}\n")
    assert len(found) == 1 and isinstance(found[0], ConfigProblem), found
    assert found[0].path == path
    assert message in found[0].message
    assert found[0].line == REALMS.count("\n") + 3


def test_every_wrong_opening_is_reported() -> None:
    found = load("firewall:\n  enabled: yes please\n  allow:\n    - {port: 0}\n    - {port: 22, to: nowhere}\n")
    assert [p.path for p in found if isinstance(p, ConfigProblem)] == [
        "firewall.enabled",
        "firewall.allow[0].port",
        "firewall.allow[1].to",
    ]
