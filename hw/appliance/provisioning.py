"""What the first boot accepts from a provisioning server: the rules, without the network.

A provisioning URL comes from the operator (the kernel command line or a credential: their own
choice, fetched as given) or from the WAN's DHCP server (whoever answers on that segment). So:

* a URL from DHCP is used only when the operator opted in (`sbc.provision_dhcp=yes`), only over
  https, and only with something to check the answer against: a CA the server's certificate must
  chain to (`sbc.provision_ca`), a SHA-256 pin of the config (`sbc.provision_sha256`) or a
  provisioning key;
* with a provisioning key (a public key under /usr/lib/sbc/provisioning-keys/ or the
  `sbc.provision_key` credential), every fetched config must carry a valid Ed25519 signature of its
  exact bytes at `<URL>.sig` (raw 64 bytes or base64), whoever gave the URL;
* the config cannot choose the directories root creates and hands to the services: its state
  directories must lie inside the image's fixed ones.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PROVISIONING_KEYS_DIR = Path("/usr/lib/sbc/provisioning-keys")
PROVISIONING_CA_FILE = Path("/usr/lib/sbc/provisioning-ca.pem")
# The directories the image's services keep their state in (sbc.service's and sbc-mgmt.service's
# StateDirectory and the default config's): a config may name them or directories inside them.
STATE_ROOTS = (Path("/var/lib/sbc"), Path("/var/lib/sbc-mgmt"))
SIGNATURE_SUFFIX = ".sig"
SIGNATURE_BYTES = 64


class ProvisioningError(Exception):
    """The fetched config is refused; the message says why, for the console."""


def dhcp_url_refusal(url: str, *, has_ca: bool, has_pin: bool, has_key: bool) -> str | None:
    """Why a URL that came from DHCP must not be fetched, or None when it may."""
    if not url.lower().startswith("https://"):
        return ("a plain http:// URL from DHCP is refused: anyone on the WAN segment can answer DHCP and "
                "serve a config, so DHCP provisioning is https only")  # fmt: skip
    if not (has_ca or has_pin or has_key):
        return ("an https URL from DHCP needs something to check the server or the config against: "
                "sbc.provision_ca, sbc.provision_sha256 or a provisioning key")  # fmt: skip
    return None


def load_public_keys(pems: Iterable[bytes]) -> list[Ed25519PublicKey]:
    """The Ed25519 public keys among `pems`; anything else is an error (a key that silently does not
    count would turn signing off)."""
    keys: list[Ed25519PublicKey] = []
    for pem in pems:
        try:
            key = serialization.load_pem_public_key(pem)
        except ValueError as exc:
            raise ProvisioningError(f"the provisioning key is not a PEM public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ProvisioningError("the provisioning key is not an Ed25519 public key")
        keys.append(key)
    return keys


def decode_signature(data: bytes) -> bytes:
    """A detached signature as served: the raw 64 bytes, or their base64 (whitespace allowed)."""
    if len(data) == SIGNATURE_BYTES:
        return data
    try:
        raw = base64.b64decode(b"".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != SIGNATURE_BYTES:
        raise ProvisioningError(f"its signature is neither {SIGNATURE_BYTES} raw bytes nor their base64")
    return raw


def verify_signature(body: bytes, signature: bytes, keys: Sequence[Ed25519PublicKey]) -> None:
    """Raises unless one of `keys` signed exactly `body`."""
    raw = decode_signature(signature)
    for key in keys:
        try:
            key.verify(raw, body)
            return
        except InvalidSignature:
            continue
    raise ProvisioningError("its signature does not verify with any provisioning key")


def sign_config(body: bytes, key: Ed25519PrivateKey) -> bytes:
    """The `<URL>.sig` file for `body` (base64 text), as the provisioning server serves it."""
    return base64.b64encode(key.sign(body)) + b"\n"


def is_inside(path: Path, roots: Sequence[Path]) -> bool:
    """`path` is one of `roots` or below one, judged on the resolved path (no `..` or symlink out)."""
    resolved = path.resolve()
    return any(resolved == root.resolve() or resolved.is_relative_to(root.resolve()) for root in roots)


def state_dir_problems(named: dict[str, Path], roots: Sequence[Path]) -> list[str]:
    """The config keys in `named` ({key: directory}) whose directory lies outside `roots`."""
    allowed = ", ".join(str(r) for r in roots)
    return [f"{key}: {path} is not inside the image's state directories ({allowed})"
            for key, path in named.items() if not is_inside(path, roots)]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """`python -m hw.appliance.provisioning sign --key KEY.pem CONFIG.yaml`: writes CONFIG.yaml.sig, the
    detached signature a box with the matching provisioning key requires next to the config."""
    import argparse
    import os
    import sys

    parser = argparse.ArgumentParser(prog="python -m hw.appliance.provisioning", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sign = sub.add_parser("sign")
    sign.add_argument("--key", type=Path, required=True, help="Ed25519 private key (PEM; encrypted: "
                      "passphrase in SBC_PROVISIONING_KEY_PASSPHRASE)")  # fmt: skip
    sign.add_argument("config", type=Path)
    args = parser.parse_args(argv)
    passphrase = os.environ.get("SBC_PROVISIONING_KEY_PASSPHRASE")
    try:
        key = serialization.load_pem_private_key(args.key.read_bytes(),
                                                 password=passphrase.encode() if passphrase else None)  # fmt: skip
    except (OSError, TypeError, ValueError) as exc:
        print(f"{args.key}: {exc}", file=sys.stderr)
        return 1
    if not isinstance(key, Ed25519PrivateKey):
        print(f"{args.key} is not an Ed25519 private key", file=sys.stderr)
        return 1
    out = args.config.with_name(args.config.name + SIGNATURE_SUFFIX)
    out.write_bytes(sign_config(args.config.read_bytes(), key))
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
