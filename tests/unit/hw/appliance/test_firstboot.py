"""First boot on a fresh state partition, with the network, console and ownership replaced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hw.appliance.firstboot import FirstBoot, Provisioning
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

    def no_fetch(url: str) -> bytes:
        raise OSError("network unreachable")

    fb = FirstBoot(system_dir=tmp_path / "system", config_dir=tmp_path / "config", template=template,
                   provisioning=provisioning, fetch=fetch or no_fetch, show=shown.append, owner=None,  # type: ignore[arg-type]
                   set_hostname=names.append, etc_hostname=tmp_path / "etc-hostname",
                   discover=lambda: None)  # fmt: skip
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
                              fetch=lambda u: provided.encode())  # fmt: skip
    fb.run()
    assert fb.config_path.read_text() == provided
    assert "password:" not in shown[0] and url in shown[0]
    config = load_config(fb.config_path)
    users = UserStore(config.management.users_path(config.state_dir))
    assert not users.users()[0].must_change_password


def test_a_bad_provisioned_config_falls_back_to_the_default_and_says_why(tmp_path: Path) -> None:
    fb, shown, _ = first_boot(tmp_path, Provisioning(url="http://198.18.2.2/x"), fetch=lambda u: b"realms: 7\n")
    fb.run()
    assert "PROVISIONING FAILED" in shown[0] and "realms" in shown[0]
    assert json.loads(fb.marker.read_text())["config"] == "default"


def test_a_pinned_hash_mismatch_is_refused(tmp_path: Path) -> None:
    fb, shown, _ = first_boot(tmp_path, Provisioning(url="http://198.18.2.2/x", sha256="0" * 64),
                              fetch=lambda u: TEMPLATE.read_bytes())  # fmt: skip
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

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return provided.encode()

    fb, shown, _ = first_boot(tmp_path, Provisioning(), fetch=fetch)
    fb.discover = lambda: Found("http://198.18.2.2:8080/from-dhcp.yaml", 224, "198.18.2.2")
    fb.run()
    assert fetched == ["http://198.18.2.2:8080/from-dhcp.yaml"] and fb.config_path.read_text() == provided
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
    fb, shown, _ = first_boot(tmp_path, Provisioning())
    fb.discover = lambda: None
    fb.run()
    assert json.loads(fb.marker.read_text())["config"] == "default" and "PROVISIONING FAILED" not in shown[0]
