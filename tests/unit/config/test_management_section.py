"""The `management:` section: defaults, every key, and each wrong value reported with its line."""

from __future__ import annotations

import ipaddress
import textwrap
from pathlib import Path

import pytest

from sbc.config.loader import ConfigError, load_config_text
from sbc.config.model import ManagementSettings, SnmpAuth, SnmpPriv, SnmpVersion

REALMS = textwrap.dedent(
    """\
    realms:
      - name: lan
        address: 10.0.0.1
        listen: [{transport: udp, port: 5060}]
        media: {address: 10.0.0.1, ports: 30000-30999}
    routes: [{name: loop, from: lan, to: lan}]
    """
)


def load(management: str, base_dir: Path | None = None) -> ManagementSettings:
    return load_config_text(REALMS + textwrap.dedent(management), "test.yaml", base_dir=base_dir).management


def problems(management: str) -> list[tuple[int, str, str]]:
    with pytest.raises(ConfigError) as info:
        load(management)
    return [(p.line, p.path, p.message) for p in info.value.problems]


def test_defaults_without_the_section() -> None:
    m = load_config_text(REALMS, "test.yaml").management
    assert m.http.port == 8443 and m.http.tls_certificate is None and m.http.tls_key is None
    assert m.confirm_timeout_s == 300
    assert m.users_path(Path("/var/lib/sbc")) == Path("/var/lib/sbc/users.json")
    assert m.snmp.enabled and m.snmp.port == 16161 and str(m.snmp.address) == "127.0.0.1"
    assert m.snmp.v3_users == () and m.snmp.v2c_community is None and m.snmp.trap_targets == ()


def test_every_key(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("x")
    (tmp_path / "key.pem").write_text("x")
    m = load(
        """\
        management:
          http: {address: 0.0.0.0, port: 9443, tls_certificate: cert.pem, tls_key: key.pem}
          users_file: /etc/sbc/users.json
          confirm_timeout_s: 120
          snmp:
            enabled: false
            address: "::"
            port: 1161
            v3_users:
              - {name: noc, auth: sha512, auth_key: authpass123, priv: aes256, priv_key: privpass123}
            v2c_community: public-ro
            trap_targets:
              - {host: 127.0.0.5, port: 1162, version: v3, user: noc}
              - {host: nms.example.net, version: v2c, community: traps}
        """,
        base_dir=tmp_path,
    )
    assert m.http.address == ipaddress.ip_address("0.0.0.0") and m.http.port == 9443
    assert m.http.tls_certificate == tmp_path / "cert.pem" and m.http.tls_key == tmp_path / "key.pem"
    assert m.users_path(Path("/x")) == Path("/etc/sbc/users.json") and m.confirm_timeout_s == 120
    s = m.snmp
    assert not s.enabled and s.port == 1161 and s.v2c_community == "public-ro"
    (user,) = s.v3_users
    assert (user.name, user.auth, user.priv) == ("noc", SnmpAuth.SHA512, SnmpPriv.AES256)
    assert [(t.host, t.port, t.version) for t in s.trap_targets] == [
        ("127.0.0.5", 1162, SnmpVersion.V3),
        ("nms.example.net", 162, SnmpVersion.V2C),
    ]


def test_wrong_values_are_reported_with_lines() -> None:
    found = problems(
        """\
        management:
          http: {port: 70000, tls_certificate: /nonexistent/cert.pem}
          confirm_timeout_s: 1
          snmp:
            v3_users:
              - {name: noc, auth: md5, auth_key: short, priv_key: privpass123}
            trap_targets:
              - {host: 127.0.0.5, user: nobody}
              - {host: 127.0.0.6, version: v2c}
          colour: blue
        """
    )
    by_path = {path: (line, message) for line, path, message in found}
    assert by_path["management.http.port"][0] == 8
    assert "not within" in by_path["management.http.port"][1]
    assert "does not exist" in by_path["management.http.tls_certificate"][1]
    assert by_path["management.confirm_timeout_s"] == (9, "must be at least 10, got 1")
    assert "'md5' is not one of" in by_path["management.snmp.v3_users[0].auth"][1]
    assert by_path["management.snmp.v3_users[0].auth_key"][1] == "must be at least 8 characters long"
    assert "v2c trap target" in by_path["management.snmp.trap_targets[1]"][1]
    assert by_path["management.colour"][0] == 16
    # No secret is echoed back in a message.
    assert not any("short" in message for _, _, message in found)


def test_trap_target_must_name_a_known_user() -> None:
    found = problems(
        """\
        management:
          snmp:
            v3_users: [{name: noc, auth_key: authpass123, priv_key: privpass123}]
            trap_targets: [{host: 127.0.0.5, user: nobody}]
        """
    )
    assert found == [(10, "management.snmp.trap_targets[0].user", "unknown SNMPv3 user 'nobody'; v3_users are: noc")]


def test_certificate_without_key_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("x")
    with pytest.raises(ConfigError) as info:
        load("management:\n  http: {tls_certificate: cert.pem}\n", base_dir=tmp_path)
    assert [p.path for p in info.value.problems] == ["management.http.tls_key"]


def test_duplicate_v3_user() -> None:
    found = problems(
        """\
        management:
          snmp:
            v3_users:
              - {name: noc, auth_key: authpass123, priv_key: privpass123}
              - {name: noc, auth_key: authpass123, priv_key: privpass123}
        """
    )
    assert [(line, path) for line, path, _ in found] == [(11, "management.snmp.v3_users[1].name")]
