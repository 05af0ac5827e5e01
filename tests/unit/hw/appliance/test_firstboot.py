"""First boot on a fresh state partition, with the network, console and ownership replaced."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hw.appliance.firstboot import FirstBoot, Provisioning
from hw.appliance.provisioning import ProvisioningError, sign_config
from mgmt.auth import UserStore
from sbc.config.loader import load_config

TEMPLATE = Path(__file__).resolve().parents[4] / "rootfs/usr/lib/sbc/sbc.yaml"


def first_boot(
    tmp_path: Path, provisioning: Provisioning, fetch: object = None
) -> tuple[FirstBoot, list[str], list[str]]:
    shown: list[str] = []
    names: list[str] = []
    tmp_path.mkdir(parents=True, exist_ok=True)
    template = tmp_path / "template.yaml"
    # The image's default, with its state directory moved into tmp_path.
    template.write_text(TEMPLATE.read_text().replace("/var/lib/sbc", str(tmp_path / "state")))

    def no_fetch(url: str, ca: bytes | None) -> bytes:
        raise OSError("network unreachable")

    fb = FirstBoot(system_dir=tmp_path / "system", config_dir=tmp_path / "config", template=template,
                   provisioning=provisioning, fetch=fetch or no_fetch, show=shown.append, owner=None,  # type: ignore[arg-type]
                   set_hostname=names.append, etc_hostname=tmp_path / "etc-hostname",
                   discover=lambda: None, state_roots=(tmp_path / "state", tmp_path / "state-mgmt"))  # fmt: skip
    return fb, shown, names


def test_default_config_with_generated_keys_and_admin(tmp_path: Path) -> None:
    fb, shown, names = first_boot(tmp_path, Provisioning())
    assert fb.run() is True
    config = load_config(fb.config_path)
    user = config.management.snmp.v3_users[0]
    assert "@" not in user.auth_key and len(user.auth_key) >= 24
    assert names and names[0].startswith("sbc-")
    banner = shown[0]
    assert "password:" in banner and user.auth_key in banner and "TLS SHA-256 fingerprint" in banner
    password = banner.split("password:")[1].split()[0]
    users = UserStore(config.management.users_path(config.state_dir))
    assert [u.name for u in users.users()] == ["admin"] and users.users()[0].must_change_password
    assert password not in users.path.read_text()
    assert json.loads(fb.marker.read_text())["config"] == "default"
    # Management's own files are in its own directory, not the SBC's.
    assert users.path.parent == tmp_path / "state-mgmt" != config.state_dir
    assert (tmp_path / "state-mgmt" / "tls").is_dir() and not (config.state_dir / "tls").exists()


def test_later_boots_carry_the_hostname_between_slots(tmp_path: Path) -> None:
    fb, shown, names = first_boot(tmp_path, Provisioning(hostname="branch-42"))
    fb.run()
    text = fb.config_path.read_text()
    # A new slot (no /etc/hostname yet): the stored name is applied.
    assert fb.run() is False
    assert names == ["branch-42", "branch-42"] and len(shown) == 1 and fb.config_path.read_text() == text
    # The operator renamed the box on this slot: that name is kept for the next slot, not overwritten.
    fb.etc_hostname.write_text("renamed-by-api\n")
    fb.run()
    assert names == ["branch-42", "branch-42"]
    assert (fb.system_dir / "hostname").read_text().strip() == "renamed-by-api"


def test_provisioned_config_and_password(tmp_path: Path) -> None:
    provided = TEMPLATE.read_text().replace("/var/lib/sbc", str(tmp_path / "state")).replace(
        "@SNMP_AUTH_KEY@", "provided-auth-key").replace("@SNMP_PRIV_KEY@", "provided-priv-key")  # fmt: skip
    url = "http://198.18.2.2:8080/sbc.yaml"
    fb, shown, _ = first_boot(tmp_path, Provisioning(url=url, admin_password="a provisioned passphrase"),
                              fetch=lambda u, ca: provided.encode())  # fmt: skip
    fb.run()
    assert fb.config_path.read_text() == provided
    assert "password:" not in shown[0] and url in shown[0]
    config = load_config(fb.config_path)
    users = UserStore(config.management.users_path(config.state_dir))
    assert not users.users()[0].must_change_password


def test_a_bad_provisioned_config_falls_back_to_the_default_and_says_why(tmp_path: Path) -> None:
    fb, shown, _ = first_boot(tmp_path, Provisioning(url="http://198.18.2.2/x"), fetch=lambda u, ca: b"realms: 7\n")
    fb.run()
    assert "PROVISIONING FAILED" in shown[0] and "realms" in shown[0]
    assert json.loads(fb.marker.read_text())["config"] == "default"


def test_a_pinned_hash_mismatch_is_refused(tmp_path: Path) -> None:
    fb, shown, _ = first_boot(tmp_path, Provisioning(url="http://198.18.2.2/x", sha256="0" * 64),
                              fetch=lambda u, ca: TEMPLATE.read_bytes())  # fmt: skip
    fb.run()
    assert "SHA-256 differs" in shown[0]


@pytest.mark.parametrize(
    ("cmdline", "hostname", "url"),
    [("quiet sbc.hostname=box1 sbc.provision=http://198.18.2.2/c.yaml", "box1", "http://198.18.2.2/c.yaml"),
     ("quiet", None, None)],
)  # fmt: skip
def test_provisioning_from_the_command_line(cmdline: str, hostname: str | None, url: str | None,
                                            tmp_path: Path) -> None:  # fmt: skip
    p = Provisioning.gather(cmdline=cmdline, credentials=tmp_path)
    assert (p.hostname, p.url, p.admin_password) == (hostname, url, None)
    (tmp_path / "sbc.admin_password").write_text("from a credential\n")
    assert Provisioning.gather(cmdline=cmdline, credentials=tmp_path).admin_password == "from a credential"


def test_a_url_from_dhcp_provisions_when_none_was_given(tmp_path: Path) -> None:
    from hw.appliance.dhcpinform import Found

    provided = TEMPLATE.read_text().replace("/var/lib/sbc", str(tmp_path / "state")).replace(
        "@SNMP_AUTH_KEY@", "provided-auth-key").replace("@SNMP_PRIV_KEY@", "provided-priv-key")  # fmt: skip
    fetched: list[str] = []

    def fetch(url: str, ca: bytes | None) -> bytes:
        fetched.append(url)
        return provided.encode()

    # Opted in, https, and pinned: the only way a DHCP answer is taken.
    pin = hashlib.sha256(provided.encode()).hexdigest()
    fb, shown, _ = first_boot(tmp_path, Provisioning(dhcp=True, sha256=pin), fetch=fetch)
    fb.discover = lambda: Found("https://198.18.2.2:8443/from-dhcp.yaml", 224, "198.18.2.2")
    fb.run()
    assert fetched == ["https://198.18.2.2:8443/from-dhcp.yaml"] and fb.config_path.read_text() == provided
    assert "DHCP option 224 from 198.18.2.2" in shown[0]


def test_dhcp_is_not_asked_when_a_url_was_given_or_it_is_turned_off(tmp_path: Path) -> None:
    asked: list[bool] = []

    def discover() -> None:
        asked.append(True)

    fb, _, _ = first_boot(tmp_path / "given", Provisioning(url="http://198.18.2.2/x"))
    fb.discover = discover
    fb.run()
    fb, _shown, _ = first_boot(tmp_path / "off", Provisioning.gather(cmdline="sbc.provision_dhcp=no",
                                                                    credentials=tmp_path))  # fmt: skip
    fb.discover = discover
    fb.run()
    assert asked == [] and json.loads(fb.marker.read_text())["config"] == "default"


def test_no_dhcp_answer_means_the_default(tmp_path: Path) -> None:
    fb, shown, _ = first_boot(tmp_path, Provisioning(dhcp=True))
    fb.discover = lambda: None
    fb.run()
    assert json.loads(fb.marker.read_text())["config"] == "default" and "PROVISIONING FAILED" not in shown[0]


# ---- provisioning that cannot be hijacked (issue 16, item 3) -------------------------------------
def provided_config(tmp_path: Path, state_dir: str | None = None) -> bytes:
    text = TEMPLATE.read_text().replace("/var/lib/sbc", str(tmp_path / "state")).replace(
        "@SNMP_AUTH_KEY@", "provided-auth-key").replace("@SNMP_PRIV_KEY@", "provided-priv-key")  # fmt: skip
    if state_dir is not None:
        text = text.replace(f"state_dir: {tmp_path / 'state'}\n", f"state_dir: {state_dir}\n")
    return text.encode()


def recording_fetch(answers: dict[str, bytes]) -> tuple[list[str], object]:
    fetched: list[str] = []

    def fetch(url: str, ca: bytes | None) -> bytes:
        fetched.append(url)
        if url not in answers:
            raise OSError("404")
        return answers[url]

    return fetched, fetch


def test_dhcp_provisioning_is_off_unless_the_operator_opts_in(tmp_path: Path) -> None:
    assert Provisioning.gather(cmdline="quiet", credentials=tmp_path, keys_dir=tmp_path).dhcp is False
    assert Provisioning.gather(cmdline="sbc.provision_dhcp=yes", credentials=tmp_path, keys_dir=tmp_path).dhcp
    (tmp_path / "sbc.provision_dhcp").write_text("yes\n")
    assert Provisioning.gather(cmdline="quiet", credentials=tmp_path, keys_dir=tmp_path).dhcp
    # Off by default: the DHCP server is not even asked.
    asked: list[bool] = []
    fb, _, _ = first_boot(tmp_path / "box", Provisioning())
    fb.discover = lambda: asked.append(True)  # type: ignore[func-returns-value,assignment,return-value]
    fb.run()
    assert asked == [] and json.loads(fb.marker.read_text())["config"] == "default"


def test_a_plain_http_url_from_dhcp_is_refused_with_a_reason(tmp_path: Path) -> None:
    from hw.appliance.dhcpinform import Found

    url = "http://198.18.2.66/rogue.yaml"
    fetched, fetch = recording_fetch({url: provided_config(tmp_path)})
    # Even opted in and pinned: DHCP over http is never fetched.
    fb, shown, _ = first_boot(tmp_path, Provisioning(dhcp=True, sha256="0" * 64), fetch=fetch)
    fb.discover = lambda: Found(url, 224, "198.18.2.66")
    fb.run()
    assert fetched == [] and json.loads(fb.marker.read_text())["config"] == "default"
    assert "PROVISIONING REFUSED" in shown[0] and "plain http:// URL from DHCP is refused" in shown[0]


def test_an_https_url_from_dhcp_needs_a_ca_a_pin_or_a_key(tmp_path: Path) -> None:
    from hw.appliance.dhcpinform import Found

    url = "https://198.18.2.66/rogue.yaml"
    fetched, fetch = recording_fetch({url: provided_config(tmp_path)})
    fb, shown, _ = first_boot(tmp_path / "bare", Provisioning(dhcp=True), fetch=fetch)
    fb.discover = lambda: Found(url, 160, "198.18.2.66")
    fb.run()
    assert fetched == [] and "sbc.provision_ca, sbc.provision_sha256 or a provisioning key" in shown[0]
    # With a CA: fetched, and the CA goes to the fetcher, which checks the server's certificate with it.
    cas: list[bytes | None] = []

    def fetch_with_ca(u: str, ca: bytes | None) -> bytes:
        cas.append(ca)
        return provided_config(tmp_path / "ca")

    fb, shown, _ = first_boot(tmp_path / "ca", Provisioning(dhcp=True, ca_pem=b"-----CA-----"), fetch=fetch_with_ca)
    fb.discover = lambda: Found(url, 160, "198.18.2.66")
    fb.run()
    assert cas == [b"-----CA-----"] and "PROVISIONING" not in shown[0]
    assert json.loads(fb.marker.read_text())["config"].startswith(url)


def test_the_operators_own_http_url_still_works_with_its_pin(tmp_path: Path) -> None:
    url = "http://198.18.2.2/branch.yaml"
    body = provided_config(tmp_path)
    fetched, fetch = recording_fetch({url: body})
    fb, shown, _ = first_boot(tmp_path, Provisioning(url=url, sha256=hashlib.sha256(body).hexdigest()), fetch=fetch)
    fb.run()
    assert fetched == [url] and fb.config_path.read_bytes() == body and "PROVISIONING" not in shown[0]


def _keypair() -> tuple[Ed25519PrivateKey, bytes]:
    key = Ed25519PrivateKey.generate()
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, pem


@pytest.mark.parametrize("encoding", ["base64", "raw"])
def test_with_a_provisioning_key_a_validly_signed_config_is_taken(tmp_path: Path, encoding: str) -> None:
    key, pem = _keypair()
    url = "http://198.18.2.2/branch.yaml"
    body = provided_config(tmp_path)
    signature = sign_config(body, key) if encoding == "base64" else key.sign(body)
    fetched, fetch = recording_fetch({url: body, url + ".sig": signature})
    fb, _, _ = first_boot(tmp_path, Provisioning(url=url, key_pems=(pem,)), fetch=fetch)
    fb.run()
    assert fetched == [url, url + ".sig"] and fb.config_path.read_bytes() == body


@pytest.mark.parametrize("case", ["unsigned", "other key", "altered", "garbage"])
def test_with_a_provisioning_key_an_unsigned_or_badly_signed_config_is_refused(tmp_path: Path, case: str) -> None:
    key, pem = _keypair()
    other, _ = _keypair()
    url = "http://198.18.2.2/branch.yaml"
    body = provided_config(tmp_path)
    answers = {url: body}
    if case == "other key":
        answers[url + ".sig"] = sign_config(body, other)
    elif case == "altered":
        answers[url + ".sig"] = sign_config(body + b"# changed\n", key)
    elif case == "garbage":
        answers[url + ".sig"] = base64.b64encode(b"x" * 10)
    _, fetch = recording_fetch(answers)
    fb, shown, _ = first_boot(tmp_path, Provisioning(url=url, key_pems=(pem,)), fetch=fetch)
    fb.run()
    assert "PROVISIONING FAILED" in shown[0] and json.loads(fb.marker.read_text())["config"] == "default"
    reason = {"unsigned": "cannot fetch it", "other key": "does not verify", "altered": "does not verify",
              "garbage": "neither 64 raw bytes"}[case]  # fmt: skip
    assert reason in shown[0]


def test_provisioning_keys_come_from_the_image_and_a_credential(tmp_path: Path) -> None:
    _, image_pem = _keypair()
    _, credential_pem = _keypair()
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir()
    (keys_dir / "site.pem").write_bytes(image_pem)
    (tmp_path / "sbc.provision_key").write_bytes(credential_pem)
    (tmp_path / "sbc.provision_ca").write_text("-----BEGIN CERTIFICATE-----\n")
    p = Provisioning.gather(cmdline="", credentials=tmp_path, keys_dir=keys_dir)
    assert p.key_pems == (credential_pem.strip(), image_pem.strip()) and p.ca_pem == b"-----BEGIN CERTIFICATE-----"


@pytest.mark.parametrize("state_dir", ["/etc", "/var/lib/../../etc", "STATE/../escape"])
def test_a_config_naming_a_state_dir_outside_the_images_is_refused_and_nothing_is_chowned(
    tmp_path: Path, state_dir: str
) -> None:
    state_dir = state_dir.replace("STATE", str(tmp_path / "state"))
    url = "http://198.18.2.2/branch.yaml"
    _, fetch = recording_fetch({url: provided_config(tmp_path, state_dir)})
    fb, shown, _ = first_boot(tmp_path, Provisioning(url=url), fetch=fetch)
    chowned: list[Path] = []
    fb.owner = "root"  # ownership is handed out for real (recorded): only ever inside the allowed dirs
    fb.mgmt_owner = "root"
    fb.chown = lambda path, uid, gid: chowned.append(path)
    fb.run()
    assert "PROVISIONING FAILED" in shown[0] and f"sbc.state_dir: {state_dir}" in shown[0]
    assert "not inside the image's state directories" in shown[0]
    assert chowned and all(fb.state_roots[0] in p.parents or p in fb.state_roots or fb.config_dir in [p, *p.parents]
                           or fb.state_roots[1] in [p, *p.parents] for p in chowned)  # fmt: skip
    assert not any(Path("/etc") in [p, *p.parents] for p in chowned)


def test_a_management_state_dir_or_users_file_outside_is_refused(tmp_path: Path) -> None:
    url = "http://198.18.2.2/branch.yaml"
    for key in ("management.state_dir", "management.users_file"):
        box = tmp_path / key
        text = provided_config(box).decode()
        if key == "management.state_dir":
            bad = text.replace(f"state_dir: {box / 'state-mgmt'}", "state_dir: /root")
        else:
            bad = text.replace("management:\n", "management:\n  users_file: /etc/sbc-users.json\n")
        assert bad != text
        _, fetch = recording_fetch({url: bad.encode()})
        fb, shown, _ = first_boot(box, Provisioning(url=url), fetch=fetch)
        fb.run()
        assert "PROVISIONING FAILED" in shown[0] and key in shown[0], shown[0]


def test_chown_refuses_a_tree_outside_the_allowed_dirs(tmp_path: Path) -> None:
    fb, _, _ = first_boot(tmp_path, Provisioning())
    fb.owner = "root"
    chowned: list[Path] = []
    fb.chown = lambda path, uid, gid: chowned.append(path)
    with pytest.raises(ProvisioningError, match="refusing to hand /etc"):
        fb._chown(Path("/etc"), "root")
    assert chowned == []
