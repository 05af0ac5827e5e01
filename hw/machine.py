"""Which box this is (DMI on x86, the device tree model on ARM) and so which hardware profile applies.

The operator's profile (`/etc/sbc/hw-profile.yaml`) wins; else the first built-in profile whose
`machine` globs all match; else the built-in `generic` one.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

from hw.profile import HardwareProfile, MachineMatch, builtin_profiles, load_profile

OPERATOR_PROFILE = Path("/etc/sbc/hw-profile.yaml")
FALLBACK_PROFILE = "generic"


@dataclass(frozen=True, slots=True)
class MachineInfo:
    dmi_sys_vendor: str | None = None
    dmi_product_name: str | None = None
    dmi_board_name: str | None = None
    dt_model: str | None = None

    def matches(self, want: MachineMatch) -> bool:
        if want.empty:
            return False
        pairs = ((want.dmi_sys_vendor, self.dmi_sys_vendor), (want.dmi_product_name, self.dmi_product_name),
                 (want.dmi_board_name, self.dmi_board_name), (want.dt_model, self.dt_model))  # fmt: skip
        return all(p is None or (v is not None and fnmatch.fnmatchcase(v, p)) for p, v in pairs)


def _read(path: Path) -> str | None:
    try:
        text = path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return None
    return text.strip("\x00\n ") or None


def read_machine(sys_root: Path = Path("/sys")) -> MachineInfo:
    dmi = sys_root / "class" / "dmi" / "id"
    return MachineInfo(
        dmi_sys_vendor=_read(dmi / "sys_vendor"),
        dmi_product_name=_read(dmi / "product_name"),
        dmi_board_name=_read(dmi / "board_name"),
        dt_model=_read(sys_root / "firmware" / "devicetree" / "base" / "model"),
    )


def select_profile(machine: MachineInfo, operator_profile: Path | None = OPERATOR_PROFILE) -> HardwareProfile:
    """The profile for this box. A broken operator profile raises ConfigError (with its lines): the
    caller refuses to guess rather than mapping the WAN onto the wrong port."""
    if operator_profile is not None and operator_profile.exists():
        return load_profile(operator_profile)
    profiles = builtin_profiles()
    for profile in profiles:
        if machine.matches(profile.machine):
            return profile
    return next(p for p in profiles if p.name == FALLBACK_PROFILE)
