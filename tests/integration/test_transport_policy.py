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
    render_scenario,
    running_sbc,
    sbc_config,
    sipp,
    sipp_available,
)
from tests.integration.test_calls import PHONE_PORT, call_pair

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


def _tcp_trunk(config: str) -> str:
    udp = f"peer: {{host: {TRUNK}, port: {TRUNK_PORT}, transport: udp}}"
    assert udp in config
    return config.replace(udp, f"peer: {{host: {TRUNK}, port: {TRUNK_PORT}, transport: tcp}}")


def test_call_over_udp_on_the_lan_and_tcp_to_the_trunk(tmp_path: Path) -> None:
    with running_sbc(tmp_path, _tcp_trunk(sbc_config(tmp_path / "state"))) as sbc:
        _, uas = call_pair(sbc, tmp_path, "uac_basic.xml", "uas_basic.xml", uas_transport="t1")
    invite = next(m for m in received_messages(uas.messages()) if m.startswith("INVITE "))
    assert invite.startswith(f"INVITE sip:bob@{TRUNK}:{TRUNK_PORT};transport=tcp SIP/2.0")
    assert f"Via: SIP/2.0/TCP {WAN_SBC}:{SBC_PORT}" in invite and f"@{WAN_SBC}:{SBC_PORT};transport=tcp>" in invite
    assert any(m.startswith("BYE ") for m in received_messages(uas.messages()))


def test_unreachable_tcp_trunk_gives_503_without_waiting_for_timer_b(tmp_path: Path) -> None:
    """Nothing listens at the trunk's TCP port: the connection is refused, the INVITE's transaction
    ends on the transport error (RFC 3261 §8.1.3.1), the caller gets 503 from the SBC itself at
    once (SIPp's 30 s limit is shorter than Timer B's 32 s)."""
    with running_sbc(tmp_path, _tcp_trunk(sbc_config(tmp_path / "state"))) as sbc:
        scenario = render_scenario(tmp_path, "uac_refused.xml.in", expected=503, max_forwards=70, extra_headers="")
        uac = sipp(
            "uac", tmp_path, scenario, local_ip=PHONE, local_port=PHONE_PORT, remote=f"{LAN_SBC}:{SBC_PORT}",
            timeout_s=30,
        ).start()  # fmt: skip
        assert uac.wait(40) == 0, f"{uac.report()}\n{sbc.log()[-6000:]}"
        refused = next(m for m in received_messages(uac.messages()) if m.startswith("SIP/2.0 503 "))
        assert "unreachable (transport error)" in refused
        assert sbc.query("status")["active_calls"] == 0


class _TlsPhone:
    """A phone on TLS (this SIPp is built without TLS): one connection for everything, as RFC 3261
    §18 wants, and SIP framed by Content-Length."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        raw = socket.create_connection((LAN_SBC, TLS_PORT), timeout=10, source_address=(PHONE, 0))
        self.conn = ctx.wrap_socket(raw)
        self.port = self.conn.getsockname()[1]
        self.buffer = b""

    def send(self, text: str) -> None:
        head, _, body = text.partition("\n\n")
        data = body.replace("\n", "\r\n").encode()
        self.conn.sendall((head.replace("\n", "\r\n") + f"\r\nContent-Length: {len(data)}\r\n\r\n").encode() + data)

    def receive(self) -> str:
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.conn.recv(65536)
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        length = int(next(h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")))
        while len(rest) < length:
            rest += self.conn.recv(65536)
        self.buffer = rest[length:]
        return (head + b"\r\n\r\n" + rest[:length]).decode()

    def receive_until(self, start: str) -> str:
        for _ in range(10):
            msg = self.receive()
            if msg.startswith(start):
                return msg
        raise AssertionError(f"no {start!r}")


def test_call_from_a_tls_phone_the_callee_hangs_up(tmp_path: Path) -> None:
    """INVITE over TLS 1.3; the answer, and later the trunk's BYE, come back on the phone's own TLS
    connection (the SBC never connects back to its ephemeral port)."""
    ca, cert, key, _, _ = _make_ca_and_cert(tmp_path, "tls-call")
    config = _with_tls_listener(sbc_config(tmp_path / "state", extra_realm_lan=_tls_realm(cert, key, None)))
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = False
    with running_sbc(tmp_path, config) as sbc:
        uas = sipp("uas", tmp_path, "uas_hangs_up.xml", local_ip=TRUNK, local_port=TRUNK_PORT).start()
        time.sleep(0.3)
        phone = _TlsPhone(ctx)
        me = f"{PHONE}:{phone.port}"
        dialog = f"From: <sip:alice@{PHONE}>;tag=tls1\nCall-ID: tls-call@{PHONE}"
        sdp = f"v=0\no=a 1 1 IN IP4 {PHONE}\ns=-\nc=IN IP4 {PHONE}\nt=0 0\nm=audio 7000 RTP/AVP 0\n"
        phone.send(
            f"INVITE sip:bob@{LAN_SBC}:{TLS_PORT};transport=tls SIP/2.0\nVia: SIP/2.0/TLS {me};branch=z9hG4bKtls1\n"
            f"Max-Forwards: 70\n{dialog}\nTo: <sip:bob@{LAN_SBC}>\nCSeq: 1 INVITE\n"
            f"Contact: <sip:alice@{me};transport=tls>\nContent-Type: application/sdp\n\n{sdp}"
        )
        ok = phone.receive_until("SIP/2.0 200 ")
        to = next(line for line in ok.split("\r\n") if line.startswith("To:"))
        assert f"c=IN IP4 {LAN_SBC}" in ok and ";transport=tls>" in ok
        phone.send(
            f"ACK sip:sbc@{LAN_SBC}:{TLS_PORT};transport=tls SIP/2.0\nVia: SIP/2.0/TLS {me};branch=z9hG4bKtls2\n"
            f"Max-Forwards: 70\n{dialog}\n{to}\nCSeq: 1 ACK\n\n"
        )
        bye = phone.receive_until("BYE ")
        assert bye.startswith(f"BYE sip:alice@{me};transport=tls SIP/2.0") and "Via: SIP/2.0/TLS" in bye
        via = next(line for line in bye.split("\r\n") if line.startswith("Via:"))
        keep = ("From", "To", "Call-ID", "CSeq")
        fields = "\n".join(line for line in bye.split("\r\n") if line.split(":")[0] in keep)
        phone.send(f"SIP/2.0 200 OK\n{via}\n{fields}\n\n")
        assert uas.wait(20) == 0, uas.report() + sbc.log()[-3000:]
        phone.conn.close()
        deadline = time.monotonic() + 5
        while sbc.query("status")["active_calls"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sbc.query("status")["active_calls"] == 0
