"""Hardware profiles: which NIC of a box is the WAN and which are the LAN, and where its reset button is.

A profile is one YAML file (the built-in ones are in `hw/profiles/`, an operator's override is
`/etc/sbc/hw-profile.yaml`):

```yaml
name: qemu
description: QEMU/KVM guest with virtio NICs
machine: {dmi_sys_vendor: QEMU}          # when a built-in profile applies (globs; all must hold)
ports:                                   # per interface, the first rule that matches wins
  - {match: {path: "pci-0000:00:03.0"}, role: wan}
  - {match: {driver: virtio_net}, role: lan}
  - {match: {mac: "02:*"}, role: ignore}
unmatched: ignore                        # or in-order: the first unmatched NIC (by path) is the WAN
required: [wan, lan]                     # a missing role is an alarm
include_virtual: false                   # veth/dummy/bridges are never ports unless this is true
reset_button: {device: "gpio-keys*", key: KEY_RESTART, hold_s: 10}
```

`match` fields are globs (fnmatch) and all given fields must hold: `driver` (the kernel driver),
`path` (udev's ID_PATH: `pci-0000:01:00.0`, USB `pci-0000:00:14.0-usb-0:1:1.0`), `mac`, `name` (the
name as the kernel or udev gave it). A rule may give the interface's `name`; otherwise a role's
interfaces are `wan0`, `wan1`..., `lan0`, `lan1`... in path order (the image's networkd files match
these names). Problems are reported with the file's line, like the SBC's config.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import ClassVar

from hw.nics import Nic, PortRole
from sbc.yamlsource import ConfigError, ConfigProblem, YamlReader, child_path, item_path, parse_yaml

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
MAX_PROFILE_BYTES = 256 * 1024
IFNAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$")  # IFNAMSIZ 16 with the NUL
# The input event codes a reset button plausibly sends (include/uapi/linux/input-event-codes.h).
KEY_CODES = {
    "KEY_RESTART": 0x198,
    "KEY_POWER": 116,
    "KEY_CONFIG": 171,
    "KEY_VENDOR": 0x168,
    "KEY_PROG1": 148,
    "KEY_SETUP": 141,
    "KEY_HELP": 138,  # the QEMU profile's: a key the appliance (no desktop, a serial console) never uses
    "BTN_0": 0x100,
    "BTN_1": 0x101,
}


class Unmatched(StrEnum):
    IGNORE = "ignore"  # an interface no rule names is not a port
    IN_ORDER = "in-order"  # unmatched interfaces, in path order: the WAN if none yet, then LANs


@dataclass(frozen=True, slots=True)
class NicMatch:
    driver: str | None = None
    path: str | None = None
    mac: str | None = None
    name: str | None = None

    def matches(self, nic: Nic) -> bool:
        checks = ((self.driver, nic.driver), (self.path, nic.path), (self.mac, nic.mac), (self.name, nic.name))
        return all(pattern is None or (value is not None and fnmatch.fnmatchcase(value, pattern))
                   for pattern, value in checks)  # fmt: skip

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in (("driver", self.driver), ("path", self.path), ("mac", self.mac),
                                         ("name", self.name)) if v is not None]  # fmt: skip
        return " ".join(parts) or "any"


@dataclass(frozen=True, slots=True)
class PortRule:
    match: NicMatch
    role: PortRole | None  # None: "ignore", the interface is not a port
    name: str | None = None  # the interface name to give; None: role + index


@dataclass(frozen=True, slots=True)
class MachineMatch:
    """Globs against the firmware's description of the box (DMI on x86, the device tree on ARM)."""

    dmi_sys_vendor: str | None = None
    dmi_product_name: str | None = None
    dmi_board_name: str | None = None
    dt_model: str | None = None

    @property
    def empty(self) -> bool:
        return all(v is None for v in (self.dmi_sys_vendor, self.dmi_product_name, self.dmi_board_name,
                                       self.dt_model))  # fmt: skip


@dataclass(frozen=True, slots=True)
class ResetButtonSpec:
    device: str  # a glob on the input device's name ("gpio-keys") or its path (/dev/input/event*)
    key: int  # the EV_KEY code
    hold_s: float = 10.0  # held this long: factory reset


@dataclass(frozen=True, slots=True)
class HardwareProfile:
    name: str
    description: str = ""
    source: str = "<built-in>"
    machine: MachineMatch = field(default_factory=MachineMatch)
    ports: tuple[PortRule, ...] = ()
    unmatched: Unmatched = Unmatched.IN_ORDER
    required: tuple[PortRole, ...] = (PortRole.WAN,)
    include_virtual: bool = False
    reset_button: ResetButtonSpec | None = None

    def explicit_names(self) -> dict[str, PortRole]:
        return {rule.name: rule.role for rule in self.ports if rule.name is not None and rule.role is not None}


# ---- loading -------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Reader(YamlReader):
    document: ClassVar[str] = "profile"

    def mapping(self, value: object, path: str, allowed: tuple[str, ...]) -> dict[str, object]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(path, "must be a mapping")
            return {}
        for key in value:
            if key not in allowed:
                self.problem(child_path(path, str(key)), f"unknown key; expected one of: {', '.join(allowed)}")
        return value

    def text(self, data: dict[str, object], key: str, path: str, *, required: bool = False) -> str | None:
        value = data.get(key)
        if value is None:
            if required:
                self.problem(child_path(path, key), "is required")
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.problem(child_path(path, key), "must be a string")
            return None
        return str(value)

    def role(self, value: object, path: str, *, allow_ignore: bool) -> PortRole | None:
        if allow_ignore and value == "ignore":
            return None
        try:
            return PortRole(str(value))
        except ValueError:
            choices = [r.value for r in PortRole] + (["ignore"] if allow_ignore else [])
            self.problem(path, f"must be one of: {', '.join(choices)}")
            return None


def parse_profile(text: str, source: str) -> HardwareProfile:
    """The profile in `text`, or ConfigError listing every problem with its line."""
    tree, problems = parse_yaml(text, source)
    if problems:
        raise ConfigError(problems)
    r = _Reader(tree, source)
    top = r.mapping(tree.data, "", ("name", "description", "machine", "ports", "unmatched", "required",
                                    "include_virtual", "reset_button"))  # fmt: skip
    name = r.text(top, "name", "", required=True) or "?"
    description = r.text(top, "description", "") or ""
    m = r.mapping(top.get("machine"), "machine", ("dmi_sys_vendor", "dmi_product_name", "dmi_board_name", "dt_model"))
    machine = MachineMatch(**{k: r.text(m, k, "machine") for k in ("dmi_sys_vendor", "dmi_product_name",
                                                                     "dmi_board_name", "dt_model")})  # fmt: skip
    ports = _ports(r, top.get("ports"))
    unmatched = Unmatched.IN_ORDER
    if "unmatched" in top:
        try:
            unmatched = Unmatched(str(top["unmatched"]))
        except ValueError:
            r.problem("unmatched", f"must be one of: {', '.join(u.value for u in Unmatched)}")
    required: list[PortRole] = [PortRole.WAN]
    if "required" in top:
        raw = top["required"]
        if not isinstance(raw, list):
            r.problem("required", "must be a list of roles")
        else:
            required = []
            for i, item in enumerate(raw):
                role = r.role(item, item_path("required", i), allow_ignore=False)
                if role is not None and role not in required:
                    required.append(role)
    include_virtual = top.get("include_virtual", False)
    if not isinstance(include_virtual, bool):
        r.problem("include_virtual", "must be true or false")
        include_virtual = False
    button = _reset_button(r, top.get("reset_button"))
    if r.problems:
        raise ConfigError(r.problems)
    return HardwareProfile(name=name, description=description, source=source, machine=machine, ports=ports,
                           unmatched=unmatched, required=tuple(required), include_virtual=include_virtual,
                           reset_button=button)  # fmt: skip


def _ports(r: _Reader, raw: object) -> tuple[PortRule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        r.problem("ports", "must be a list of rules")
        return ()
    rules: list[PortRule] = []
    names: dict[str, str] = {}
    for i, item in enumerate(raw):
        path = item_path("ports", i)
        rule = r.mapping(item, path, ("match", "role", "name"))
        m = r.mapping(rule.get("match"), child_path(path, "match"), ("driver", "path", "mac", "name"))
        mpath = child_path(path, "match")
        match = NicMatch(
            driver=r.text(m, "driver", mpath),
            path=r.text(m, "path", mpath),
            mac=(r.text(m, "mac", mpath) or "").lower() or None,
            name=r.text(m, "name", mpath),
        )
        if "role" not in rule:
            r.problem(child_path(path, "role"), "is required (wan, lan or ignore)")
            continue
        role = r.role(rule["role"], child_path(path, "role"), allow_ignore=True)
        ifname = r.text(rule, "name", path)
        if ifname is not None:
            if not IFNAME_RE.match(ifname):
                r.problem(child_path(path, "name"), "must be an interface name: 1-15 of A-Z a-z 0-9 _ . -")
            elif ifname in names:
                r.problem(child_path(path, "name"), f"is given by {names[ifname]} already")
            elif role is None:
                r.problem(child_path(path, "name"), "an ignored interface is not renamed")
            names[ifname] = path
        rules.append(PortRule(match=match, role=role, name=ifname))
    return tuple(rules)


def _reset_button(r: _Reader, raw: object) -> ResetButtonSpec | None:
    if raw is None:
        return None
    data = r.mapping(raw, "reset_button", ("device", "key", "hold_s"))
    device = r.text(data, "device", "reset_button", required=True) or ""
    key_raw = data.get("key", "KEY_RESTART")
    key = -1
    if isinstance(key_raw, int) and not isinstance(key_raw, bool) and 0 < key_raw < 0x300:
        key = key_raw
    elif isinstance(key_raw, str) and key_raw in KEY_CODES:
        key = KEY_CODES[key_raw]
    else:
        r.problem("reset_button.key", f"must be a key code (1-767) or one of: {', '.join(KEY_CODES)}")
    hold = data.get("hold_s", 10.0)
    if isinstance(hold, bool) or not isinstance(hold, int | float) or not 2 <= hold <= 120:
        r.problem("reset_button.hold_s", "must be a number of seconds within 2-120")
        hold = 10.0
    return ResetButtonSpec(device=device, key=key, hold_s=float(hold))


def load_profile(path: Path) -> HardwareProfile:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([ConfigProblem(str(path), 1, "profile", f"cannot read: {exc.strerror or exc}")]) from None
    if len(raw) > MAX_PROFILE_BYTES:
        raise ConfigError([ConfigProblem(str(path), 1, "profile", f"larger than {MAX_PROFILE_BYTES} bytes")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError([ConfigProblem(str(path), 1, "profile", "is not UTF-8 text")]) from None
    return parse_profile(text, str(path))


def builtin_profiles() -> list[HardwareProfile]:
    """The profiles shipped in `hw/profiles/`, sorted by file name (`generic` is the fallback)."""
    return [parse_profile(entry.read_text(encoding="utf-8"), f"hw/profiles/{entry.name}")
            for entry in sorted(PROFILES_DIR.glob("*.yaml"))]  # fmt: skip
