"""Transports (TCP, TLS 1.3, mutual TLS), DSCP on the wire, header rules and config refusal, end to end."""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.integration.harness import (
    LAN_SBC,
    NET,
    PHONE,
    SBC_BIN,
    SBC_PORT,
    TRUNK,
    TRUNK_PORT,
    WAN_SBC,
    received_messages,
    running_sbc,
    sbc_config,
    sipp,
    sipp_available,
)
from tests.integration.test_calls import call_pair

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sipp_available(), reason="SIPp (Debian package sip-tester) is not installed"),
]

TLS_PORT = 15061


def _options(host: str, port: int, transport: str, branch: str) -> bytes:
    return (
        f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {PHONE}:5999;branch=z9hG4bK{branch}\r\n"
        f"From: <sip:probe@{PHONE}>;tag={branch}\r\nTo: <sip:{host}>\r\nCall-ID: {branch}@test\r\n"
        "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def _make_ca_and_cert(tmp: Path, name: str) -> tuple[Path, Path, Path, Path, Path]:
    """A throwaway CA, a server certificate for the SBC and a client certificate signed by the CA."""
    now = datetime.datetime.now(datetime.UTC)

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def write_key(k: ec.EllipticCurvePrivateKey, path: Path) -> None:
        path.write_bytes(
            k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )

    ca_key = key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(cn: str, ip: str | None) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        k = key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_name)
            .public_key(k.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        if ip:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
            )
        return k, builder.sign(ca_key, hashes.SHA256())

    pem = serialization.Encoding.PEM
    ca_path = tmp / "ca.pem"
    ca_path.write_bytes(ca.public_bytes(pem))
    skey, scert = leaf("sbc", LAN_SBC)
    ckey, ccert = leaf("phone", None)
    server_cert, server_key = tmp / "server.pem", tmp / "server.key"
    client_cert, client_key = tmp / "client.pem", tmp / "client.key"
    server_cert.write_bytes(scert.public_bytes(pem))
    write_key(skey, server_key)
    client_cert.write_bytes(ccert.public_bytes(pem))
    write_key(ckey, client_key)
    return ca_path, server_cert, server_key, client_cert, client_key


def _tls_realm(cert: Path, key: Path, ca: Path | None) -> str:
    mutual = f"\n      ca_file: {ca}\n      verify_client: true" if ca else ""
    return f"""    tls:
      certificate: {cert}
      private_key: {key}{mutual}
"""


def _with_tls_listener(config: str) -> str:
    # Add a TLS listener to the LAN realm, next to its UDP and TCP ones.
    marker = f"      - {{transport: tcp, port: {SBC_PORT}}}\n"
    return config.replace(marker, marker + f"      - {{transport: tls, port: {TLS_PORT}}}\n", 1)


def _tls_options(ctx: ssl.SSLContext) -> tuple[bytes, str | None]:
    with socket.create_connection((LAN_SBC, TLS_PORT), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
        tls.sendall(_options(LAN_SBC, TLS_PORT, "TLS", "tls1"))
        data = b""
        deadline = time.monotonic() + 5
        while b"\r\n\r\n" not in data and time.monotonic() < deadline:
            chunk = tls.recv(4096)
            if not chunk:
                break
            data += chunk
        return data, tls.version()


def test_tls_13_with_server_certificate(tmp_path: Path) -> None:
    ca, cert, key, _, _ = _make_ca_and_cert(tmp_path, "server-only")
    config = _with_tls_listener(sbc_config(tmp_path / "state", extra_realm_lan=_tls_realm(cert, key, None)))
    with running_sbc(tmp_path, config):
        ctx = ssl.create_default_context(cafile=str(ca))
        ctx.check_hostname = False
        data, version = _tls_options(ctx)
        assert version == "TLSv1.3"
        assert data.startswith(b"SIP/2.0 200 OK")
        # TLS 1.2 is refused: the SBC's minimum is 1.3.
        old = ssl.create_default_context(cafile=str(ca))
        old.check_hostname = False
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(ssl.SSLError):
            _tls_options(old)


def test_mutual_tls_requires_a_client_certificate_from_the_ca(tmp_path: Path) -> None:
    ca, cert, key, ccert, ckey = _make_ca_and_cert(tmp_path, "mutual")
    config = _with_tls_listener(sbc_config(tmp_path / "state", extra_realm_lan=_tls_realm(cert, key, ca)))
    with running_sbc(tmp_path, config):
        good = ssl.create_default_context(cafile=str(ca))
        good.check_hostname = False
        good.load_cert_chain(str(ccert), str(ckey))
        data, _ = _tls_options(good)
        assert data.startswith(b"SIP/2.0 200 OK")
        anonymous = ssl.create_default_context(cafile=str(ca))
        anonymous.check_hostname = False
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            data, _ = _tls_options(anonymous)
            if not data:  # TLS 1.3 reports the missing certificate on the first read
                raise ConnectionError("closed")


def test_call_over_tcp_on_the_lan_and_udp_on_the_wan(tmp_path: Path) -> None:
    with running_sbc(tmp_path, sbc_config(tmp_path / "state")) as sbc:
        uas = sipp("uas", tmp_path, "uas_basic.xml", local_ip=TRUNK, local_port=TRUNK_PORT).start()
        time.sleep(0.3)
        uac = sipp(
            "uac", tmp_path, "uac_basic.xml", local_ip=PHONE, local_port=5071, remote=f"{LAN_SBC}:{SBC_PORT}",
            transport="t1",
        ).start()  # fmt: skip
        assert uac.wait(40) == 0, uac.report() + sbc.log()[-4000:]
        assert uas.wait(15) == 0, uas.report()


@pytest.mark.skipif(shutil.which("tshark") is None or os.geteuid() != 0, reason="needs tshark and root to capture")
def test_dscp_of_sip_packets_per_realm(tmp_path: Path) -> None:
    """LAN realm af31 (26), WAN realm cs3 (24) in the test config: check the DS field on the wire."""
    capture = tmp_path / "sip.pcap"
    with running_sbc(tmp_path, sbc_config(tmp_path / "state")) as sbc:
        capture_filter = f"udp port {SBC_PORT} and net 127.{NET}.0.0/16"  # only this run's addresses
        tshark = subprocess.Popen(
            ["tshark", "-i", "lo", "-a", "duration:12", "-w", str(capture), "-f", capture_filter],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(2.5)  # tshark needs a moment before it captures
            call_pair(sbc, tmp_path, "uac_basic.xml", "uas_basic.xml")
        finally:
            tshark.terminate()
            tshark.wait(15)
    out = subprocess.run(
        ["tshark", "-r", str(capture), "-T", "fields", "-e", "ip.src", "-e", "udp.srcport", "-e", "ip.dsfield.dscp"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    by_source: dict[str, set[int]] = {}
    for line in out.splitlines():
        src, sport, dscp = line.split("\t")
        if sport == str(SBC_PORT):
            by_source.setdefault(src, set()).add(int(dscp))
    assert by_source.get(LAN_SBC) == {26}, by_source
    assert by_source.get(WAN_SBC) == {24}, by_source


BROKEN_RULES = """
  - name: fine
    realm: wan
    direction: outbound
    actions:
      - {add: X-Branch-Id, value: branch-42}
  - name: broken
    realm: wan
    direction: outbound
    actions:
      - {replace: From, regex: "sip:(\\\\d+", with: "x"}
"""

GOOD_RULES = """
  - name: tag-branch
    realm: wan
    direction: outbound
    match: {method: INVITE}
    actions:
      - {add: X-Branch-Id, value: branch-42}
      - {store: caller, from: From, regex: "sip:([^@]+)@"}
      - {add: X-Original-Caller, value: "${stored.caller}"}
  - name: drop-subject
    realm: wan
    direction: outbound
    actions:
      - {remove: Subject}
"""


def test_broken_header_rule_refused_by_check_config_and_run(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(sbc_config(tmp_path / "state", rules=BROKEN_RULES))
    check = subprocess.run([str(SBC_BIN), "check-config", str(path)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 2
    assert "header_rules[1]" in check.stderr and "bad.yaml:" in check.stderr, check.stderr
    run = subprocess.run([str(SBC_BIN), "run", "--config", str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "header_rules[1]" in run.stderr
    # Nothing half-loaded: no control socket, no SIP socket left bound.
    assert not (tmp_path / "state" / "control.sock").exists()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LAN_SBC, SBC_PORT))


def test_header_rules_apply_on_a_real_call(tmp_path: Path) -> None:
    with running_sbc(tmp_path, sbc_config(tmp_path / "state", rules=GOOD_RULES)) as sbc:
        _, uas = call_pair(sbc, tmp_path, "uac_basic.xml", "uas_basic.xml")
    invite = next(m for m in received_messages(uas.messages()) if m.startswith("INVITE "))
    assert "X-Branch-Id: branch-42" in invite
    assert "X-Original-Caller: alice" in invite
    assert "Subject:" not in invite


INBOUND_RULES = """
  - name: remember-phone
    realm: lan
    direction: inbound
    match: {method: INVITE, header: {name: User-Agent, regex: "^InsidePhone/"}}
    actions:
      - {store: version, from: User-Agent, regex: "^InsidePhone/(\\\\S+)"}
      - {remove: Subject}
  - name: tag-for-trunk
    realm: wan
    direction: outbound
    match: {message: request, method: INVITE}
    actions:
      - {add: X-Phone-Version, value: "${stored.version}"}
"""


def test_inbound_rule_reads_the_message_as_it_arrived(tmp_path: Path) -> None:
    """The phone's User-Agent never crosses (topology hiding replaces it), but an inbound rule on the
    LAN sees it as it arrived and stores a part that an outbound rule puts in the trunk's INVITE."""
    with running_sbc(tmp_path, sbc_config(tmp_path / "state", rules=INBOUND_RULES)) as sbc:
        _, uas = call_pair(sbc, tmp_path, "uac_basic.xml", "uas_basic.xml")
    invite = next(m for m in received_messages(uas.messages()) if m.startswith("INVITE "))
    assert "X-Phone-Version: 1.0" in invite
    assert "Subject:" not in invite and "User-Agent: EdgeSBC-test" in invite
