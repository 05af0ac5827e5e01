"""Signed update bundles: what verifies, and every way a bundle is refused with its reason."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hw.firmware.bundle import (
    BundleError,
    ensure_signing_key,
    fingerprint,
    load_trusted_keys,
    payload_names,
    public_pem,
    verify_bundle,
    write_bundle,
)


def payload(tmp_path: Path, version: str = "0.2.0") -> list[Path]:
    root, uki = payload_names(version)
    (tmp_path / root).write_bytes(b"root file system " * 10000)
    (tmp_path / uki).write_bytes(b"MZ unified kernel image")
    return [tmp_path / root, tmp_path / uki]


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def test_round_trip_extracts_the_files(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    files = payload(tmp_path)
    out = tmp_path / "b.sbcupdate"
    write_bundle(out, "0.2.0", "x86-64", files, key)
    dest = tmp_path / "ready"
    dest.mkdir()
    manifest = verify_bundle(out, [key.public_key()], arch="x86-64", extract_to=dest)
    assert manifest.version == "0.2.0" and manifest.signed_by == fingerprint(key.public_key())
    assert sorted(p.name for p in dest.iterdir()) == sorted(p.name for p in files)
    assert (dest / files[0].name).read_bytes() == files[0].read_bytes()


def test_signed_by_another_key_is_refused(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    out = tmp_path / "b.sbcupdate"
    write_bundle(out, "0.2.0", "x86-64", payload(tmp_path), key)
    with pytest.raises(BundleError, match="does not verify with any trusted"):
        verify_bundle(out, [Ed25519PrivateKey.generate().public_key()])


def test_no_trusted_keys_is_refused(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    out = tmp_path / "b.sbcupdate"
    write_bundle(out, "0.2.0", "x86-64", payload(tmp_path), key)
    with pytest.raises(BundleError, match="no trusted update keys"):
        verify_bundle(out, [])


def test_wrong_architecture_is_refused(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    out = tmp_path / "b.sbcupdate"
    write_bundle(out, "0.2.0", "arm64", payload(tmp_path), key)
    with pytest.raises(BundleError, match="for arm64, this box is x86-64"):
        verify_bundle(out, [key.public_key()], arch="x86-64")


def test_a_flipped_payload_byte_is_refused_and_nothing_is_left(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    out = tmp_path / "b.sbcupdate"
    write_bundle(out, "0.2.0", "x86-64", payload(tmp_path), key)
    data = bytearray(out.read_bytes())
    where = data.find(b"root file system")
    data[where + 5] ^= 0x20
    out.write_bytes(bytes(data))
    dest = tmp_path / "ready"
    dest.mkdir()
    with pytest.raises(BundleError, match="SHA-256 does not match"):
        verify_bundle(out, [key.public_key()], extract_to=dest)
    assert list(dest.iterdir()) == []


def test_a_truncated_bundle_is_refused(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    out = tmp_path / "b.sbcupdate"
    write_bundle(out, "0.2.0", "x86-64", payload(tmp_path), key)
    out.write_bytes(out.read_bytes()[:4096])
    with pytest.raises(BundleError):
        verify_bundle(out, [key.public_key()])


def _tar(members: list[tuple[str, bytes]]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def test_an_extra_member_is_refused_even_when_signed(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    root, uki = payload_names("0.2.0")
    files = {root: b"r", uki: b"u"}
    manifest = {"format": 1, "image": "sbc", "version": "0.2.0", "arch": "x86-64",
                "files": [{"name": n, "sha256": hashlib.sha256(d).hexdigest(), "size": len(d)}
                          for n, d in files.items()]}
    body = json.dumps(manifest).encode()
    members = [("manifest.json", body), ("manifest.json.sig", key.sign(body)), (root, b"r"), ("../../etc/passwd", b"x")]
    with pytest.raises(BundleError, match="unexpected member"):
        verify_bundle(_tar(members), [key.public_key()])


def test_a_manifest_naming_other_files_is_refused(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    manifest = {"format": 1, "image": "sbc", "version": "0.2.0", "arch": "x86-64",
                "files": [{"name": "evil.sh", "sha256": "0" * 64, "size": 1}]}
    body = json.dumps(manifest).encode()
    with pytest.raises(BundleError, match="must carry exactly"):
        verify_bundle(_tar([("manifest.json", body), ("manifest.json.sig", key.sign(body))]), [key.public_key()])


def test_not_a_bundle(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    with pytest.raises(BundleError, match=r"must start with manifest\.json"):
        verify_bundle(_tar([("hello.txt", b"hi")]), [key.public_key()])
    with pytest.raises(BundleError, match="not a readable firmware bundle"):
        verify_bundle(io.BytesIO(b"\x00garbage" * 100), [key.public_key()])


def test_signing_key_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "k.pem"
    first = ensure_signing_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert fingerprint(ensure_signing_key(path).public_key()) == fingerprint(first.public_key())
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    (trusted / "a.pem").write_bytes(public_pem(first))
    assert [fingerprint(k) for k in load_trusted_keys(trusted)] == [fingerprint(first.public_key())]


def test_an_encrypted_signing_key_needs_its_passphrase(tmp_path: Path) -> None:
    from hw.firmware.bundle import BundleError, load_private_key

    path = tmp_path / "keys" / "signing.pem"
    first = ensure_signing_key(path, b"correct horse")
    assert b"ENCRYPTED" in path.read_bytes()
    assert fingerprint(load_private_key(path, b"correct horse").public_key()) == fingerprint(first.public_key())
    with pytest.raises(BundleError, match="SBC_SIGNING_KEY_PASSPHRASE"):
        load_private_key(path)
    with pytest.raises(BundleError):
        load_private_key(path, b"wrong")
