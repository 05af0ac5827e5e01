"""The provisioning rules and the unprivileged fetcher's pieces, without a network."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hw.appliance import fetch, provisioning
from hw.appliance.provisioning import (
    ProvisioningError,
    decode_signature,
    dhcp_url_refusal,
    load_public_keys,
    state_dir_problems,
    verify_signature,
)


@pytest.mark.parametrize(
    ("url", "ca", "pin", "key", "refused"),
    [("http://198.18.2.66/c.yaml", True, True, True, "plain http"),
     ("HTTP://198.18.2.66/c.yaml", False, False, False, "plain http"),
     ("https://198.18.2.66/c.yaml", False, False, False, "needs something to check"),
     ("https://198.18.2.66/c.yaml", True, False, False, None),
     ("https://198.18.2.66/c.yaml", False, True, False, None),
     ("https://198.18.2.66/c.yaml", False, False, True, None)],
)  # fmt: skip
def test_what_a_dhcp_url_needs(url: str, ca: bool, pin: bool, key: bool, refused: str | None) -> None:
    reason = dhcp_url_refusal(url, has_ca=ca, has_pin=pin, has_key=key)
    assert (reason is None) == (refused is None)
    if refused:
        assert reason is not None and refused in reason


def test_signatures_raw_base64_and_wrong() -> None:
    key = Ed25519PrivateKey.generate()
    body = b"sbc: {}\n"
    raw = key.sign(body)
    assert decode_signature(raw) == raw == decode_signature(base64.b64encode(raw) + b"\n")
    with pytest.raises(ProvisioningError, match="neither 64 raw bytes"):
        decode_signature(b"not a signature")
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    keys = load_public_keys([pem])
    verify_signature(body, provisioning.sign_config(body, key), keys)
    with pytest.raises(ProvisioningError, match="does not verify"):
        verify_signature(body + b" ", raw, keys)


def test_a_provisioning_key_that_is_not_ed25519_is_an_error() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = other.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(ProvisioningError, match="not an Ed25519"):
        load_public_keys([pem])
    with pytest.raises(ProvisioningError, match="not a PEM"):
        load_public_keys([b"garbage"])


def test_state_dirs_inside_the_roots_only(tmp_path: Path) -> None:
    roots = (tmp_path / "sbc", tmp_path / "sbc-mgmt")
    (tmp_path / "sbc").mkdir()
    (tmp_path / "sbc" / "link").symlink_to("/etc")
    assert state_dir_problems({"a": tmp_path / "sbc", "b": tmp_path / "sbc-mgmt" / "sub"}, roots) == []
    problems = state_dir_problems({"a": Path("/etc"), "b": tmp_path / "sbc" / ".." / "x",
                                   "c": tmp_path / "sbc" / "link", "d": tmp_path / "sbc-mgmtx"}, roots)  # fmt: skip
    assert [p.split(":")[0] for p in problems] == ["a", "b", "c", "d"]


def test_the_sign_command_writes_the_signature(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    config = tmp_path / "branch.yaml"
    config.write_text("sbc: {}\n")
    assert provisioning.main(["sign", "--key", str(key_file), str(config)]) == 0
    key.public_key().verify(decode_signature((tmp_path / "branch.yaml.sig").read_bytes()), config.read_bytes())


def test_the_fetcher_drops_to_the_user_through_setpriv() -> None:
    argv = fetch.unprivileged_argv("nobody")
    assert argv[0] == "setpriv" and "--reuid=65534" in argv and "--no-new-privs" in argv
    assert "--clear-groups" in argv and "--bounding-set=-all" in argv and argv[-2:] == ["-m", "hw.appliance.fetch"]
    assert fetch.unprivileged_argv(None)[1:] == ["-m", "hw.appliance.fetch"]


def test_the_fetcher_fetches_http_and_https_only() -> None:
    with pytest.raises(ValueError, match="only http"):
        fetch.fetch("file:///etc/shadow", None, 1, 0.0)
    with pytest.raises(OSError, match="only http"):
        fetch.fetch_as(None, "file:///etc/shadow", None, attempts=1)
