"""The `limits:` section (TCP/TLS connection limits) and a peer's `tls:` verification settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from sbc.config.changes import live_part, restart_required
from sbc.config.loader import ConfigError, load_config, load_config_text
from sbc.config.model import PeerTls, StreamLimits
from tests.unit.config.test_config_loader import BASE, line_of


def test_left_out_it_takes_the_defaults_the_embedded_config_spells_out() -> None:
    config = load_config_text(BASE, "sbc.yaml")
    assert config.limits.stream == StreamLimits()
    assert load_config(None).limits == config.limits


def test_every_key_is_read() -> None:
    text = BASE + (
        "limits:\n  stream:\n    connections: 100\n    connections_per_source: 4\n    idle_timeout_s: 90\n"
        "    header_timeout_s: 2.5\n    body_timeout_s: 5\n    max_header_bytes: 8192\n"
        "    max_body_bytes: 4096\n    max_buffered_bytes: 20000\n"
    )
    assert load_config_text(text, "sbc.yaml").limits.stream == StreamLimits(100, 4, 90.0, 2.5, 5.0, 8192, 4096, 20000)


@pytest.mark.parametrize(
    ("section", "path", "message"),
    [
        ("{connections: 0}", "limits.stream.connections", "must be at least 1"),
        ("{header_timeout_s: 0}", "limits.stream.header_timeout_s", "must be more than 0 seconds"),
        ("{idle_timeout_s: soon}", "limits.stream.idle_timeout_s", "expected a number of seconds"),
        ("{max_header_bytes: 100}", "limits.stream.max_header_bytes", "must be at least 256"),
        ("{connections: 10, connections_per_source: 11}", "limits.stream.connections_per_source", "exceeds"),
        ("{max_conections: 10}", "limits.stream.max_conections", "unknown key"),
    ],
)
def test_wrong_values_are_reported_with_their_line(section: str, path: str, message: str) -> None:
    text = BASE + "limits:\n  stream: " + section + "\n"
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "sbc.yaml")
    [problem] = info.value.problems
    assert problem.path == path and message in problem.message, str(problem)
    assert problem.line == line_of(text, "  stream: ")


def test_limits_apply_on_reload() -> None:
    old = load_config_text(BASE, "sbc.yaml")
    new = load_config_text(BASE + "limits: {stream: {connections: 10, connections_per_source: 2}}\n", "sbc.yaml")
    assert restart_required(old, new) == []
    live = live_part(old, new)
    assert live is not None and live.limits.stream.connections == 10


def test_peer_tls_names_a_ca_and_a_server_name(tmp_path: Path) -> None:
    (tmp_path / "trunk-ca.pem").write_text("placeholder\n")
    peer = "peer: {host: trunk.example.net, port: 5080}"
    text = BASE.replace(
        peer,
        "peer: {host: 192.0.2.50, port: 5061, transport: tls,"
        " tls: {ca_file: trunk-ca.pem, server_name: sip.example.net}}",
    )
    config = load_config_text(text, "sbc.yaml", base_dir=tmp_path)
    peer_config = config.realm("wan").peer
    assert peer_config is not None
    assert peer_config.tls == PeerTls(tmp_path / "trunk-ca.pem", "sip.example.net")
    assert load_config_text(BASE, "sbc.yaml").realm("wan").peer.tls == PeerTls()  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("peer", "path", "message"),
    [
        ("{host: 192.0.2.50, transport: tls, tls: {ca_file: nowhere.pem}}", "peer.tls.ca_file", "does not exist"),
        ("{host: 192.0.2.50, transport: tls, tls: {server_name: 'a b'}}", "peer.tls.server_name", "not a host name"),
        ("{host: 192.0.2.50, transport: udp, tls: {server_name: x.example}}", "peer.tls", "uses udp"),
    ],
)
def test_wrong_peer_tls_is_reported_with_its_line(peer: str, path: str, message: str, tmp_path: Path) -> None:
    text = BASE.replace("peer: {host: trunk.example.net, port: 5080}", f"peer: {peer}")
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "sbc.yaml", base_dir=tmp_path)
    [problem] = info.value.problems
    assert problem.path == f"realms[1].{path}" and message in problem.message, str(problem)
    assert problem.line == line_of(text, "    peer: ")


def test_readme_defaults_are_the_defaults() -> None:
    import re

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S) if b.startswith("limits:"))
    assert load_config_text(BASE + block, "README").limits.stream == StreamLimits()
