"""What the running firmware is: its version and architecture from os-release, and whether this boot
is on trial (systemd-boot's boot counting is active for the entry that booted)."""

from __future__ import annotations

import platform
from pathlib import Path

OS_RELEASE = Path("/usr/lib/os-release")
EFIVARS = Path("/sys/firmware/efi/efivars")
# The Boot Loader Interface's vendor GUID: systemd-boot sets LoaderBootCountPath when it boots an
# entry whose name carries a +LEFT-DONE counter (systemd-bless-boot-generator reads the same).
LOADER_GUID = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"
BOOT_COUNT_VAR = EFIVARS / f"LoaderBootCountPath-{LOADER_GUID}"


def os_release(path: Path = OS_RELEASE) -> dict[str, str]:
    fields: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            fields[key.strip()] = value.strip().strip("\"'")
    return fields


def booted_version(path: Path = OS_RELEASE) -> str:
    return os_release(path).get("IMAGE_VERSION", "unknown")


def machine_arch() -> str:
    """mkosi's architecture names, the ones bundles carry."""
    return {"x86_64": "x86-64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), platform.machine())


def _efi_string(path: Path) -> str | None:
    """An EFI variable holding a UTF-16 string (after the 4 attribute bytes), or None if unset."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    return raw[4:].decode("utf-16-le", errors="replace").rstrip("\0")


def boot_on_trial() -> str | None:
    """The boot counter path of the entry that booted (it is on trial), or None (blessed, or no counting)."""
    return _efi_string(BOOT_COUNT_VAR)
