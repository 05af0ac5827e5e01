"""Hardware profiles and the role map: YAML with line-numbered problems, first match wins, naming."""

from __future__ import annotations

from pathlib import Path

import pytest

from hw.machine import MachineInfo, select_profile
from hw.networkd import link_files, write_link_files
from hw.nics import Nic, PortRole
from hw.profile import HardwareProfile, Unmatched, builtin_profiles, parse_profile
from hw.roles import assign_roles
from sbc.yamlsource import ConfigError

VIRTIO_WAN = Nic("eth0", 2, "52:54:00:00:00:01", "virtio_net", "pci-0000:00:03.0")
VIRTIO_LAN = Nic("eth1", 3, "52:54:00:00:00:02", "virtio_net", "pci-0000:00:04.0")
USB_NIC = Nic("enx001122334455", 7, "00:11:22:33:44:55", "r8152", "pci-0000:00:14.0-usb-0:1:1.0")
VETH = Nic("veth0", 9, "aa:bb:cc:dd:ee:ff", None, None, physical=False, mac_permanent=False)


def profile(text: str) -> HardwareProfile:
    return parse_profile(text, "test.yaml")


def test_builtin_profiles_load_and_generic_is_the_fallback() -> None:
    names = [p.name for p in builtin_profiles()]
    assert {"generic", "qemu", "pcengines-apu", "raspberry-pi"} <= set(names)
    assert select_profile(MachineInfo(), None).name == "generic"
    assert select_profile(MachineInfo(dmi_sys_vendor="QEMU"), None).name == "qemu"
    assert select_profile(MachineInfo(dmi_sys_vendor="PC Engines", dmi_product_name="apu2"), None).name == (
        "pcengines-apu"
    )
    assert select_profile(MachineInfo(dt_model="Raspberry Pi 4 Model B Rev 1.4"), None).name == "raspberry-pi"


def test_operator_profile_wins_and_a_broken_one_is_refused(tmp_path: Path) -> None:
    own = tmp_path / "hw-profile.yaml"
    own.write_text("name: mine\nports:\n  - {match: {mac: '52:54:00:00:00:02'}, role: wan}\n")
    chosen = select_profile(MachineInfo(dmi_sys_vendor="QEMU"), own)
    assert chosen.name == "mine"
    assert assign_roles(chosen, [VIRTIO_WAN, VIRTIO_LAN]).by_role(PortRole.WAN)[0].nic is VIRTIO_LAN
    own.write_text("name: mine\nports:\n  - {match: {mac: x}, role: uplink}\n")
    with pytest.raises(ConfigError) as err:
        select_profile(MachineInfo(), own)
    assert "hw-profile.yaml:3: ports[0].role: must be one of: wan, lan, ignore" in str(err.value)


def test_qemu_profile_maps_slot_3_to_wan0_and_slot_4_to_lan0() -> None:
    qemu = select_profile(MachineInfo(dmi_sys_vendor="QEMU"), None)
    roles = assign_roles(qemu, [VIRTIO_LAN, VIRTIO_WAN, VETH])
    assert [(a.nic.name, a.role, a.name) for a in roles.assignments] == [
        ("eth0", PortRole.WAN, "wan0"),
        ("eth1", PortRole.LAN, "lan0"),
    ]
    assert roles.missing == ()
    assert assign_roles(qemu, [VIRTIO_WAN]).missing == (PortRole.LAN,)


def test_first_matching_rule_wins_and_ignore_keeps_a_nic_out() -> None:
    p = profile(
        """\
name: t
ports:
  - {match: {driver: r8152}, role: ignore}
  - {match: {driver: virtio_net, path: "pci-0000:00:04.0"}, role: wan, name: uplink}
  - {match: {driver: "virtio*"}, role: lan}
unmatched: ignore
"""
    )
    roles = assign_roles(p, [VIRTIO_WAN, VIRTIO_LAN, USB_NIC])
    assert [(a.nic.name, a.role, a.name) for a in roles.assignments] == [
        ("eth0", PortRole.LAN, "lan0"),
        ("eth1", PortRole.WAN, "uplink"),
    ]
    assert roles.ignored == (USB_NIC,)
    assert roles.assignments[1].reason == "ports[1] driver=virtio_net path=pci-0000:00:04.0"


def test_in_order_gives_the_first_path_the_wan_and_virtual_nics_are_skipped() -> None:
    p = profile("name: t\nunmatched: in-order\n")
    roles = assign_roles(p, [USB_NIC, VETH, VIRTIO_LAN, VIRTIO_WAN])
    assert [(a.nic.name, a.name) for a in roles.assignments] == [("eth0", "wan0"), ("eth1", "lan0"),
                                                                 ("enx001122334455", "lan1")]  # fmt: skip
    assert p.unmatched is Unmatched.IN_ORDER
    virtual = profile("name: t\ninclude_virtual: true\nports: [{match: {name: 'veth*'}, role: lan}]\n")
    assert [a.name for a in assign_roles(virtual, [VETH]).assignments] == ["lan0"]


def test_renamed_interfaces_keep_their_role_and_names_are_stable() -> None:
    p = profile("name: t\nunmatched: ignore\n")
    renamed = [Nic("lan1", 3, "52:54:00:00:00:02", "virtio_net", "pci-0000:00:04.0"),
               Nic("wan0", 2, "52:54:00:00:00:01", "virtio_net", "pci-0000:00:03.0")]  # fmt: skip
    roles = assign_roles(p, renamed)
    assert [(a.nic.name, a.role, a.name, a.needs_rename) for a in roles.assignments] == [
        ("wan0", PortRole.WAN, "wan0", False),
        ("lan1", PortRole.LAN, "lan1", False),
    ]
    assert roles.for_interface("lan1") is roles.assignments[1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: t\nports: {a: 1}\n", "test.yaml:2: ports: must be a list of rules"),
        ("name: t\nports:\n  - {match: {speed: 1}, role: wan}\n", "test.yaml:3: ports[0].match.speed: unknown key"),
        ("name: t\nports:\n  - {match: {driver: x}}\n", "test.yaml:3: ports[0].role: is required"),
        ("name: t\nports:\n  - {match: {}, role: wan, name: 'way too long name'}\n", "ports[0].name: must be an"),
        ("name: t\nports:\n  - {role: wan, name: a}\n  - {role: lan, name: a}\n", "ports[1].name: is given by"),
        ("name: t\nunmatched: random\n", "test.yaml:2: unmatched: must be one of: ignore, in-order"),
        ("name: t\nrequired: [wan, dmz]\n", "required[1]: must be one of: wan, lan"),
        ("name: t\nreset_button: {device: x, key: KEY_FOO}\n", "reset_button.key: must be a key code"),
        ("name: t\nreset_button: {device: x, hold_s: 0.5}\n", "reset_button.hold_s: must be a number"),
        ("name: t\nname: u\n", "duplicate"),
        ("ports: []\n", "name: is required"),
        ("name: t\nports: [\n", "test.yaml:"),
    ],
)
def test_bad_profiles_are_refused_with_line_and_reason(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        profile(text)
    assert expected in str(err.value)


def test_reset_button_spec() -> None:
    p = profile("name: t\nreset_button: {device: gpio-keys, key: KEY_RESTART, hold_s: 12}\n")
    assert p.reset_button is not None
    assert (p.reset_button.device, p.reset_button.key, p.reset_button.hold_s) == ("gpio-keys", 0x198, 12.0)
    assert profile("name: t\nreset_button: {device: x, key: 257}\n").reset_button.key == 257  # type: ignore[union-attr]


def test_link_files_pin_the_hardware_and_name_the_role(tmp_path: Path) -> None:
    qemu = select_profile(MachineInfo(dmi_sys_vendor="QEMU"), None)
    roles = assign_roles(qemu, [VIRTIO_WAN, VIRTIO_LAN])
    files = {f.filename: f.text for f in link_files(roles)}
    assert set(files) == {"10-sbc-hw-wan0.link", "10-sbc-hw-lan0.link"}
    wan = files["10-sbc-hw-wan0.link"]
    assert "[Match]\nPath=pci-0000:00:03.0\nDriver=virtio_net\n\n[Link]\nName=wan0\n" in wan
    by_mac = assign_roles(profile("name: t\nports: [{match: {driver: r8152}, role: lan}]\n"), [USB_NIC])
    (only,) = link_files(by_mac)
    assert "PermanentMACAddress=00:11:22:33:44:55\nDriver=r8152\n" in only.text
    assert "Name=lan0" in only.text

    out = tmp_path / "run-network"
    changed = write_link_files(roles, out)
    assert sorted(p.name for p in changed) == ["10-sbc-hw-lan0.link", "10-sbc-hw-wan0.link"]
    assert write_link_files(roles, out) == []  # unchanged: nothing rewritten, udev not disturbed
    (out / "70-other.link").write_text("[Match]\n")
    only_wan = assign_roles(qemu, [VIRTIO_WAN])
    changed = write_link_files(only_wan, out)
    assert [p.name for p in changed] == ["10-sbc-hw-lan0.link"]
    assert sorted(p.name for p in out.iterdir()) == ["10-sbc-hw-wan0.link", "70-other.link"]
