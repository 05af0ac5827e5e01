"""Signed firmware update bundles: one tar that carries what systemd-sysupdate installs.

    manifest.json           {"format": 1, "image": "sbc", "version": "0.1.1", "arch": "x86-64",
                             "files": [{"name": "sbc_0.1.1.root.raw.gz", "sha256": "…", "size": N}, …]}
    manifest.json.sig       the Ed25519 signature of manifest.json's exact bytes
    sbc_0.1.1.root.raw.gz   the root slot's file system (gzip: systemd-sysupdate 254 decompresses
                            xz, gzip and bzip2 while it writes a partition, not zstd)
    sbc_0.1.1.efi           the unified kernel image that boots that slot

The manifest and its signature come first, so a reader checks the signature before it trusts a
single name or hash, then checks each payload file's size and SHA-256 as it streams past. Nothing is
kept unless all of it holds: a bad bundle is refused with the reason and the running slot stays.
`image/build.py` writes bundles with the build's private key; the image trusts the public keys under
/usr/lib/sbc/update-keys/.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hw.firmware.versions import is_safe_version

FORMAT = 1
IMAGE_ID = "sbc"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"
MAX_MANIFEST_BYTES = 64 * 1024
TRUSTED_KEYS_DIR = Path("/usr/lib/sbc/update-keys")
ARCHITECTURES = ("x86-64", "arm64")
_CHUNK = 1 << 20
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~-]{0,127}$")


class BundleError(ValueError):
    """The bundle is refused; the message says why in words an operator can act on."""


@dataclass(frozen=True, slots=True)
class BundleFile:
    name: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class Manifest:
    version: str
    arch: str
    files: tuple[BundleFile, ...]
    image: str = IMAGE_ID
    signed_by: str = ""  # fingerprint of the key that verified it

    def to_json(self) -> bytes:
        doc = {
            "format": FORMAT,
            "image": self.image,
            "version": self.version,
            "arch": self.arch,
            "files": [{"name": f.name, "sha256": f.sha256, "size": f.size} for f in self.files],
        }
        return json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"


def payload_names(version: str) -> tuple[str, str]:
    """The root file system and the UKI of one version, as the sysupdate transfers match them."""
    return f"{IMAGE_ID}_{version}.root.raw.gz", f"{IMAGE_ID}_{version}.efi"


# ---- keys ----------------------------------------------------------------------------------------
def fingerprint(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_private_key(path: Path, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """The PEM private key at `path`; `passphrase` decrypts an encrypted PEM."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=passphrase)
    except TypeError as exc:  # encrypted without a passphrase, or a passphrase for a plain key
        raise BundleError(f"{path}: {exc} (the passphrase comes from SBC_SIGNING_KEY_PASSPHRASE)") from None
    except ValueError as exc:
        raise BundleError(f"{path}: cannot read the key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"{path} is not an Ed25519 private key")
    return key


def ensure_signing_key(path: Path, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """The build's signing key, made (mode 0600; encrypted when a passphrase is given) the first time."""
    if path.exists():
        return load_private_key(path, passphrase)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return key


def public_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_trusted_keys(directory: Path = TRUSTED_KEYS_DIR) -> list[Ed25519PublicKey]:
    keys: list[Ed25519PublicKey] = []
    if not directory.is_dir():
        return keys
    for path in sorted(directory.glob("*.pem")):
        key = serialization.load_pem_public_key(path.read_bytes())
        if isinstance(key, Ed25519PublicKey):
            keys.append(key)
    return keys


# ---- writing (build host) ------------------------------------------------------------------------
def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_bundle(out: Path, version: str, arch: str, files: Sequence[Path], key: Ed25519PrivateKey) -> Manifest:
    """Sign a manifest of `files` and write manifest, signature and files (in that order) to `out`."""
    manifest = Manifest(
        version=version,
        arch=arch,
        files=tuple(BundleFile(p.name, _sha256_file(p), p.stat().st_size) for p in files),
        signed_by=fingerprint(key.public_key()),
    )
    _check_manifest(manifest)
    body = manifest.to_json()
    tmp = out.with_name(out.name + ".part")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in ((MANIFEST, body), (SIGNATURE, key.sign(body))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
        for path in files:
            info = tarfile.TarInfo(path.name)
            info.size = path.stat().st_size
            info.mode = 0o644
            with path.open("rb") as fh:
                tar.addfile(info, fh)
    tmp.replace(out)
    return manifest


# ---- reading (on the box) ------------------------------------------------------------------------
def _parse_manifest(body: bytes) -> Manifest:
    try:
        doc: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{MANIFEST} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BundleError(f"{MANIFEST}: unknown bundle format {doc.get('format') if isinstance(doc, dict) else doc!r}")
    try:
        files = tuple(BundleFile(str(f["name"]), str(f["sha256"]), int(f["size"])) for f in doc["files"])
        manifest = Manifest(version=str(doc["version"]), arch=str(doc["arch"]), files=files, image=str(doc["image"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{MANIFEST}: missing or malformed field {exc}") from None
    _check_manifest(manifest)
    return manifest


def _check_manifest(manifest: Manifest) -> None:
    if manifest.image != IMAGE_ID:
        raise BundleError(f"the bundle is for image {manifest.image!r}, this box runs {IMAGE_ID!r}")
    if not is_safe_version(manifest.version):
        raise BundleError(f"version {manifest.version!r} is not a plain version (digits, letters, . ~ ^ _ -)")
    if manifest.arch not in ARCHITECTURES:
        raise BundleError(f"unknown architecture {manifest.arch!r}")
    expected = set(payload_names(manifest.version))
    names = [f.name for f in manifest.files]
    if len(set(names)) != len(names) or set(names) != expected:
        raise BundleError(f"the bundle must carry exactly {', '.join(sorted(expected))}; it lists {', '.join(names)}")
    for f in manifest.files:
        if not _NAME.match(f.name) or not re.fullmatch(r"[0-9a-f]{64}", f.sha256) or f.size <= 0:
            raise BundleError(f"{MANIFEST}: bad entry for {f.name!r}")


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo | None, name: str, limit: int) -> bytes:
    if member is None or member.name != name or not member.isfile():
        raise BundleError(f"not a firmware bundle: it must start with {MANIFEST} and {SIGNATURE}")
    if member.size > limit:
        raise BundleError(f"{name} is larger than {limit} bytes")
    fh = tar.extractfile(member)
    assert fh is not None  # a regular file
    return fh.read()


def verify_bundle(
    source: Path | IO[bytes],
    keys: Iterable[Ed25519PublicKey],
    *,
    arch: str | None = None,
    extract_to: Path | None = None,
) -> Manifest:
    """Check the signature, then every payload file's size and SHA-256, in one pass over the stream.

    With `extract_to`, the payload files are written there (as `.part` until their hash holds); on any
    error nothing is left behind. Raises BundleError with the reason.
    """
    keys = list(keys)
    if not keys:
        raise BundleError("no trusted update keys are installed: this image cannot verify any bundle")
    written: list[Path] = []
    try:
        with contextlib.ExitStack() as stack:
            if isinstance(source, Path):
                fileobj: IO[bytes] = stack.enter_context(source.open("rb"))
            else:
                fileobj = source
            tar = stack.enter_context(tarfile.open(fileobj=fileobj, mode="r|"))
            manifest = _verify_header(tar, keys)
            if arch is not None and manifest.arch != arch:
                raise BundleError(f"the bundle is for {manifest.arch}, this box is {arch}")
            seen = _verify_payload(tar, manifest, extract_to, written)
            missing = sorted({f.name for f in manifest.files} - seen)
            if missing:
                raise BundleError(f"the bundle ends before {', '.join(missing)}: incomplete upload?")
    except tarfile.TarError as exc:
        _remove(written)
        raise BundleError(f"not a readable firmware bundle (tar): {exc}") from None
    except BaseException:
        _remove(written)
        raise
    return manifest


def _verify_header(tar: tarfile.TarFile, keys: list[Ed25519PublicKey]) -> Manifest:
    body = _read_member(tar, tar.next(), MANIFEST, MAX_MANIFEST_BYTES)
    signature = _read_member(tar, tar.next(), SIGNATURE, 1024)
    for key in keys:
        try:
            key.verify(signature, body)
        except InvalidSignature:
            continue
        manifest = _parse_manifest(body)
        return Manifest(manifest.version, manifest.arch, manifest.files, manifest.image, fingerprint(key))
    raise BundleError("the signature does not verify with any trusted update key: not an official build")


def _verify_payload(
    tar: tarfile.TarFile, manifest: Manifest, extract_to: Path | None, written: list[Path]
) -> set[str]:
    wanted = {f.name: f for f in manifest.files}
    seen: set[str] = set()
    while (member := tar.next()) is not None:
        entry = wanted.get(member.name)
        if entry is None or member.name in seen or not member.isfile():
            raise BundleError(f"unexpected member {member.name!r} in the bundle")
        if member.size != entry.size:
            raise BundleError(f"{member.name}: {member.size} bytes, the manifest says {entry.size}")
        fh = tar.extractfile(member)
        assert fh is not None
        digest = hashlib.sha256()
        out: IO[bytes] | None = None
        part = None
        if extract_to is not None:
            part = extract_to / f"{member.name}.part"
            written.append(part)
            out = part.open("wb")
        try:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
                if out is not None:
                    out.write(chunk)
        finally:
            if out is not None:
                out.close()
        if digest.hexdigest() != entry.sha256:
            raise BundleError(f"{member.name}: SHA-256 does not match the signed manifest (corrupted or altered)")
        if part is not None:
            final = part.with_name(member.name)
            part.replace(final)
            written[written.index(part)] = final
        seen.add(member.name)
    return seen


def _remove(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()
