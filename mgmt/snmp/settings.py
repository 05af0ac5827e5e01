"""What the agent derives from the config's `management.snmp` section (`sbc.config.model.SnmpSettings`,
validated by the loader): the engine ID and the system name."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

from mgmt.snmp.oids import ENTERPRISE_NUMBER
from sbc.config.model import SnmpSettings


def engine_id(settings: SnmpSettings) -> bytes:
    """The configured engine ID, else one derived from the machine ID (stable across restarts)."""
    if settings.engine_id is not None:
        return bytes.fromhex(settings.engine_id)
    return default_engine_id()


def system_name(settings: SnmpSettings) -> str:
    return settings.sys_name or socket.gethostname()


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
