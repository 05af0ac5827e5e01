"""TLS toward trunks: the trunk's certificate must chain to the configured CA (or the system's) and
name the host dialled (or the configured `server_name`); otherwise nothing is sent, the send fails,
and the reason is logged and shown in `sbc status`. A locally made CA, a server certificate from it
and a small TLS server on loopback stand in for the trunk."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sbc.config.model import MediaSettings, PeerTls, Realm
from sbc.sip.transaction import PeerAddress
from sbc.transport.sockets import RealmSockets
from tests.integration.harness import NET, TRUNK, TRUNK_PORT, WAN_SBC, running_sbc, sbc_config

pytestmark = [pytest.mark.integration]

TLS_TRUNK = f"127.{NET}.2.20"
UNNAMED = f"127.{NET}.2.21"  # an address the trunk's certificate does not name
TLS_TRUNK_PORT = 15071
TRUNK_NAME = "trunk.sbc-test.example"


@dataclass(frozen=True)
class Pki:
    ca: Path
    other_ca: Path  # a CA the trunk's certificate does not chain to
    cert: Path  # the trunk's: DNS TRUNK_NAME and IP TLS_TRUNK, from `ca`
    key: Path


def _make_pki(tmp: Path) -> Pki:
    now = datetime.datetime.now(datetime.UTC)
    pem = serialization.Encoding.PEM

    def ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Name, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return key, subject, cert

    ca_key, ca_name, ca_cert = ca("trunk test CA")
    _, _, other = ca("some other CA")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, TRUNK_NAME)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(TRUNK_NAME), x509.IPAddress(ipaddress.ip_address(TLS_TRUNK))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(tmp / "ca.pem", tmp / "other-ca.pem", tmp / "trunk.pem", tmp / "trunk.key")
    pki.ca.write_bytes(ca_cert.public_bytes(pem))
    pki.other_ca.write_bytes(other.public_bytes(pem))
    pki.cert.write_bytes(cert.public_bytes(pem))
    pki.key.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return pki


@contextlib.contextmanager
def tls_trunk(pki: Pki, address: str = TLS_TRUNK) -> Iterator[list[bytes]]:
    """A TLS server on `address` that records what each connection sent (bounded: stops at exit)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki.cert), str(pki.key))
    received: list[bytes] = []
    stop = threading.Event()
    listener = socket.create_server((address, TLS_TRUNK_PORT))
    listener.settimeout(0.2)

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            raw.settimeout(2)
            try:
                with ctx.wrap_socket(raw, server_side=True) as conn:
                    data = b""
                    with contextlib.suppress(TimeoutError, ssl.SSLError, OSError):
                        while b"\r\n\r\n" not in data:
                            chunk = conn.recv(65536)
                            if not chunk:
                                break
                            data += chunk
                    received.append(data)
            except (ssl.SSLError, OSError):
                received.append(b"")  # the client refused the handshake

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def _wan_realm() -> Realm:
    address = ipaddress.ip_address(WAN_SBC)
    return Realm("wan", address, (), MediaSettings(address, 41000, 41999))


async def _send_once(peer: PeerTls, host: str) -> tuple[list[str], RealmSockets]:
    """Send one message to the TLS trunk through the SBC's sockets; the transactions that failed."""
    failed: list[str] = []
    sockets = RealmSockets(
        _wan_realm(),
        lambda *_: None,
        lambda *_: None,
        lambda *_: None,
        lambda realm, txn: failed.append(txn),
        tls_peers={(host, TLS_TRUNK_PORT): peer},
    )
    sockets.send(
        b"OPTIONS sip:trunk SIP/2.0\r\nContent-Length: 0\r\n\r\n", PeerAddress("tls", host, TLS_TRUNK_PORT), "t1"
    )
    for _ in range(100):  # the connection is made in a task: wait for its outcome (bounded)
        await asyncio.sleep(0.05)
        if failed or sockets.connections:
            break
    await asyncio.sleep(0.1)
    await sockets.close()
    return failed, sockets


@pytest.mark.parametrize(
    ("peer", "host", "reason"),
    [
        (PeerTls(server_name=TRUNK_NAME), TLS_TRUNK, None),  # the configured name
        (PeerTls(), TLS_TRUNK, None),  # dialled by IP: the certificate's IP address
        (PeerTls(server_name="impostor.example"), TLS_TRUNK, "Hostname mismatch"),
        (PeerTls(), UNNAMED, "IP address mismatch"),  # the same certificate on an address it does not name
        ("other", TLS_TRUNK, "unable to get local issuer certificate"),  # a CA that did not sign it
        ("system", TLS_TRUNK, "unable to get local issuer certificate"),  # the system's CAs
    ],
)
def test_trunk_certificate_is_verified(tmp_path: Path, peer: PeerTls | str, host: str, reason: str | None) -> None:
    pki = _make_pki(tmp_path)
    if isinstance(peer, PeerTls):
        peer = PeerTls(pki.ca, peer.server_name)
    elif peer == "other":
        peer = PeerTls(pki.other_ca)
    else:
        peer = PeerTls()
    with tls_trunk(pki, host) as received:
        failed, sockets = asyncio.run(_send_once(peer, host))
        deadline = time.monotonic() + 3
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
    [verdict] = sockets.tls_verdicts.report()
    if reason is None:
        assert failed == [] and verdict["verified"] is True, verdict
        assert received and received[0].startswith(b"OPTIONS sip:trunk SIP/2.0")
    else:
        assert failed == ["t1"], verdict
        assert verdict["verified"] is False and reason in str(verdict["reason"]), verdict
        assert all(not data for data in received)  # not a byte of SIP reached the impostor


def test_refused_trunk_says_why_in_status_and_log(tmp_path: Path) -> None:
    """A monitored TLS trunk whose certificate names another host: the SBC's OPTIONS probes never
    reach it, `sbc status` names the peer and the verifier's reason, the log says it too."""
    pki = _make_pki(tmp_path)
    udp_trunk = f"peer: {{host: {TRUNK}, port: {TRUNK_PORT}, transport: udp}}"
    tls_trunk_peer = (
        f"peer: {{host: {TLS_TRUNK}, port: {TLS_TRUNK_PORT}, transport: tls, keepalive_s: 1,"
        f" tls: {{ca_file: {pki.ca}, server_name: impostor.example}}}}"
    )
    config = sbc_config(tmp_path / "state")
    assert udp_trunk in config
    with tls_trunk(pki) as received, running_sbc(tmp_path, config.replace(udp_trunk, tls_trunk_peer)) as sbc:
        deadline = time.monotonic() + 10
        peers: list[dict[str, object]] = []
        while time.monotonic() < deadline and not peers:
            time.sleep(0.2)
            peers = sbc.query("status")["transport"]["tls_peers"]
        assert peers, sbc.log()[-3000:]
        [peer] = peers
        assert peer["peer"] == f"tls:{TLS_TRUNK}:{TLS_TRUNK_PORT}" and peer["server_name"] == "impostor.example"
        assert peer["verified"] is False and "Hostname mismatch" in str(peer["reason"]), peer
        assert all(not data for data in received)
        log = sbc.log()
        assert '"event": "tls.peer_refused"' in log and "Hostname mismatch" in log
