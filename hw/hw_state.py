"""What `sbc-hw` knows, published for the management plane: one JSON file (`/run/sbc-hw/state.json`),
replaced atomically on every change and at least every `HEARTBEAT_S`.

```json
{"updated_at": 1700000000.0, "profile": "qemu", "missing": [],
 "interfaces": [{"name": "wan0", "role": "wan", "kernel_name": "wan0", "mac": "52:54:00:12:34:56",
                 "driver": "virtio_net", "path": "pci-0000:00:03.0", "carrier": true, "operstate": "up",
                 "speed_mbps": null, "mtu": 1500, "reason": "ports[0] path=pci-0000:00:03.0"}],
 "alarms": [{"name": "link-down:lan0", "severity": "major", "text": "..."}]}
```

The management process reads it (interfaces, alarms); it is world-readable: nothing in it is secret.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from hw.links import AlarmChange
from hw.nics import Nic
from hw.roles import RoleMap

STATE_PATH = Path("/run/sbc-hw/state.json")
HEARTBEAT_S = 30.0
STALE_AFTER_S = 3 * HEARTBEAT_S


def _nic_json(nic: Nic) -> dict[str, Any]:
    return {"kernel_name": nic.name, "mac": nic.mac, "driver": nic.driver, "path": nic.path, "carrier": nic.carrier,
            "operstate": nic.operstate, "speed_mbps": nic.speed_mbps, "mtu": nic.mtu}  # fmt: skip


def interfaces_json(role_map: RoleMap) -> list[dict[str, Any]]:
    """Role interfaces first (in path order), then the ignored physical ones with role null."""
    out = [{"name": a.name, "role": a.role.value, **_nic_json(a.nic), "reason": a.reason} for a in role_map.assignments]
    out += [{"name": n.name, "role": None, **_nic_json(n), "reason": "ignored by the profile"}
            for n in role_map.ignored]  # fmt: skip
    return out


def state_json(role_map: RoleMap, alarms: list[AlarmChange], now: float) -> dict[str, Any]:
    return {
        "updated_at": round(now, 3),
        "profile": role_map.profile,
        "missing": [r.value for r in role_map.missing],
        "interfaces": interfaces_json(role_map),
        "alarms": [{"name": a.name, "severity": a.severity, "text": a.text} for a in alarms],
    }


def write_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def read_state(path: Path = STATE_PATH, now: float | None = None) -> tuple[dict[str, Any] | None, str]:
    """(state, "") when fresh; (None, why) when absent, unreadable or stale (sbc-hw not running)."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"{path} does not exist (sbc-hw is not running)"
    except (OSError, ValueError) as exc:
        return None, f"{path} is unreadable: {exc}"
    if not isinstance(state, dict):
        return None, f"{path} is not a JSON object"
    age = (time.time() if now is None else now) - float(state.get("updated_at", 0))
    if age > STALE_AFTER_S:
        return None, f"{path} is {age:.0f} s old (sbc-hw stopped updating it)"
    return state, ""
