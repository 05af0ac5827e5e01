"""SNMP settings of the management plane.

The config store's `management.snmp` section (`sbc.config.model.SnmpSettings`) did not exist yet when
this was written: this is a compatible dataclass with the same field names and defaults, plus a few
optional ones (engine ID, system group texts). `SnmpSettings.from_object` accepts either that
dataclass or a plain mapping (the runner's YAML), so the config store can hand over its own type.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from mgmt.snmp.oids import ENTERPRISE_NUMBER

MIN_KEY_LENGTH = 8  # RFC 3414 section 11.2: USM passphrases are at least 8 characters


class AuthProtocol(StrEnum):
    SHA256 = "sha256"  # usmHMAC192SHA256AuthProtocol (RFC 7860)
    SHA512 = "sha512"  # usmHMAC384SHA512AuthProtocol (RFC 7860)


class PrivProtocol(StrEnum):
    AES128 = "aes128"  # usmAesCfb128Protocol (RFC 3826)
    AES256 = "aes256"  # AES-256 CFB with the key extension net-snmp calls AES256 (draft-blumenthal)


class NotifyVersion(StrEnum):
    V3 = "v3"
    V2C = "v2c"


class SnmpSettingsError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class SnmpV3User:
    name: str
    auth_key: str
    priv_key: str
    auth: AuthProtocol = AuthProtocol.SHA256
    priv: PrivProtocol = PrivProtocol.AES128


@dataclass(frozen=True, slots=True)
class TrapTarget:
    host: str
    port: int = 162
    version: NotifyVersion = NotifyVersion.V3
    user: str | None = None  # v3: the name of one of `v3_users`, whose keys sign and encrypt the trap
    community: str | None = None  # v2c


@dataclass(frozen=True, slots=True)
class SnmpSettings:
    enabled: bool = True
    address: str = "127.0.0.1"
    port: int = 16161
    v3_users: tuple[SnmpV3User, ...] = ()
    v2c_community: str | None = None  # read-only; None: SNMPv2c is off
    trap_targets: tuple[TrapTarget, ...] = ()
    engine_id: str | None = None  # hex; None: derived from the machine ID (stable across restarts)
    sys_contact: str = ""
    sys_location: str = ""
    sys_name: str = ""  # empty: the host name

    def validate(self) -> None:
        """Raise SnmpSettingsError naming the field at fault."""
        if not 0 < self.port < 65536:
            raise SnmpSettingsError(f"snmp.port: {self.port} is not a UDP port")
        names = set()
        for i, user in enumerate(self.v3_users):
            where = f"snmp.v3_users[{i}]"
            if not user.name:
                raise SnmpSettingsError(f"{where}.name: empty")
            if user.name in names:
                raise SnmpSettingsError(f"{where}.name: {user.name!r} appears twice")
            names.add(user.name)
            for key_field in ("auth_key", "priv_key"):
                if len(getattr(user, key_field)) < MIN_KEY_LENGTH:
                    raise SnmpSettingsError(f"{where}.{key_field}: shorter than {MIN_KEY_LENGTH} characters")
        if self.v2c_community is not None and not self.v2c_community:
            raise SnmpSettingsError("snmp.v2c_community: empty (leave it out to turn SNMPv2c off)")
        for i, target in enumerate(self.trap_targets):
            where = f"snmp.trap_targets[{i}]"
            if not 0 < target.port < 65536:
                raise SnmpSettingsError(f"{where}.port: {target.port} is not a UDP port")
            if target.version is NotifyVersion.V3 and target.user not in names:
                raise SnmpSettingsError(f"{where}.user: {target.user!r} is not one of snmp.v3_users")
            if target.version is NotifyVersion.V2C and not target.community:
                raise SnmpSettingsError(f"{where}.community: required for a v2c target")
        if self.engine_id is not None:
            try:
                raw = bytes.fromhex(self.engine_id)
            except ValueError:
                raise SnmpSettingsError("snmp.engine_id: not hexadecimal") from None
            if not 5 <= len(raw) <= 32:  # RFC 3411 SnmpEngineID: 5 to 32 octets
                raise SnmpSettingsError("snmp.engine_id: must be 5 to 32 octets")

    def user(self, name: str) -> SnmpV3User:
        for u in self.v3_users:
            if u.name == name:
                return u
        raise KeyError(name)

    def engine_id_bytes(self) -> bytes:
        if self.engine_id is not None:
            return bytes.fromhex(self.engine_id)
        return default_engine_id()

    def system_name(self) -> str:
        return self.sys_name or socket.gethostname()

    @classmethod
    def from_object(cls, obj: object) -> SnmpSettings:
        """Build from the config store's dataclass, from this class, or from a mapping (YAML)."""
        if isinstance(obj, SnmpSettings):
            return obj
        get = _getter(obj)
        defaults = cls()
        users = tuple(
            SnmpV3User(
                name=str(_getter(u)("name", "")),
                auth_key=str(_getter(u)("auth_key", "")),
                priv_key=str(_getter(u)("priv_key", "")),
                auth=AuthProtocol(str(_getter(u)("auth", "sha256"))),
                priv=PrivProtocol(str(_getter(u)("priv", "aes128"))),
            )
            for u in _sequence(get("v3_users", ()))
        )
        targets = tuple(
            TrapTarget(
                host=str(_getter(t)("host", "")),
                port=int(_getter(t)("port", 162)),
                version=NotifyVersion(str(_getter(t)("version", "v3"))),
                user=_optional_str(_getter(t)("user", None)),
                community=_optional_str(_getter(t)("community", None)),
            )
            for t in _sequence(get("trap_targets", ()))
        )
        return cls(
            enabled=bool(get("enabled", defaults.enabled)),
            address=str(get("address", defaults.address)),
            port=int(get("port", defaults.port)),
            v3_users=users,
            v2c_community=_optional_str(get("v2c_community", None)),
            trap_targets=targets,
            engine_id=_optional_str(get("engine_id", None)),
            sys_contact=str(get("sys_contact", "") or ""),
            sys_location=str(get("sys_location", "") or ""),
            sys_name=str(get("sys_name", "") or ""),
        )


def default_engine_id(machine_id_path: Path = Path("/etc/machine-id")) -> bytes:
    """RFC 3411 SnmpEngineID: our enterprise number with the top bit set, format 5 (octets), then 8
    octets hashed from the machine ID (or the host name), so it survives restarts and differs per box."""
    try:
        seed = machine_id_path.read_bytes().strip()
    except OSError:
        seed = b""
    if not seed:
        seed = socket.gethostname().encode()
    prefix = (0x80000000 | ENTERPRISE_NUMBER).to_bytes(4, "big") + b"\x05"
    return prefix + hashlib.sha256(b"edge-sbc-snmp:" + seed).digest()[:8]


def _getter(obj: object) -> Any:
    if isinstance(obj, Mapping):
        return lambda key, default: obj.get(key, default)
    return lambda key, default: getattr(obj, key, default)


def _sequence(value: object) -> Sequence[object]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return value
    raise SnmpSettingsError(f"expected a list, got {type(value).__name__}")


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)
