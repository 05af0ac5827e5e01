"""Figures derived from a snapshot of the SBC's control API: what the MIB and the alarm rules read.

Pure functions over the JSON the control API returns. The SBC reports more over time (per-realm
counters, trunk states, media totals); each figure here reads the key it will have and falls back to
what can be derived today, and a missing key reads as 0. The keys read:

- status: `active_calls`, `registrations`, `dataplane`, `dataplane_note`, `max_calls`, `uptime_s`,
  `version`, `counters.{calls_total, calls_answered, calls_failed, calls_cancelled,
  messages_received, malformed_answered, malformed_dropped, hairpins, relayed_packets,
  dropped_packets}`, `mean_mos`, `realms[].{name, address, listen, media, calls_in, calls_out}`,
  `trunks[].{name, address, state (up/down), realm}`.
- calls: `a_realm`, `b_realm`, `media_mode`, `streams[].{a,b}.{packets_in, lost, jitter_ms,
  in_kernel, mos}`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from dataplane.quality import estimate_mos
from mgmt.snmp.source import SbcSnapshot, number


class TrunkState(StrEnum):
    UP = "up"
    DOWN = "down"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class RealmRow:
    name: str
    address: str
    listen: str
    media_ports: str
    active_calls: int
    calls_in: int
    calls_out: int


@dataclass(frozen=True, slots=True)
class TrunkRow:
    name: str
    address: str
    state: TrunkState
    realm: str


@dataclass(frozen=True, slots=True)
class MediaSessions:
    xdp: int = 0
    userspace: int = 0
    direct: int = 0


def active_calls(snapshot: SbcSnapshot) -> int:
    # `status` and `calls` are two requests: the status figure is the one `sbc status` shows
    return int(number(snapshot.status, "active_calls"))


def counter(snapshot: SbcSnapshot, name: str) -> int:
    return int(number(snapshot.status, "counters", name))


def max_calls(snapshot: SbcSnapshot) -> int:
    return int(number(snapshot.status, "max_calls"))


def dataplane_mode(snapshot: SbcSnapshot) -> str:
    mode = snapshot.status.get("dataplane")
    return mode if isinstance(mode, str) and mode in ("xdp", "userspace") else "unknown"


def text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


def media_sessions(calls: Iterable[Mapping[str, Any]]) -> MediaSessions:
    """Calls by where their media flows: direct between the endpoints, or relayed in the kernel (XDP)
    or in userspace. An anchored call counts as XDP when any of its legs is offloaded to the kernel."""
    xdp = userspace = direct = 0
    for call in calls:
        mode = str(call.get("media_mode", ""))
        if mode == "direct":
            direct += 1
        elif mode == "xdp" or (mode != "userspace" and any(leg.get("in_kernel") for leg in _legs(call))):
            xdp += 1
        else:
            userspace += 1
    return MediaSessions(xdp, userspace, direct)


def leg_mos(leg: Mapping[str, Any]) -> float | None:
    """The leg's MOS as the SBC reports it, else estimated (ITU-T G.107 E-model) from its loss and
    jitter; None for a leg that has received no media."""
    reported = number(leg, "mos")
    if reported > 0:
        return float(reported)
    received = number(leg, "packets_in")
    if received <= 0:
        return None
    lost = max(number(leg, "lost"), 0)
    return estimate_mos(lost / (received + lost), float(number(leg, "jitter_ms")))


def mean_mos(snapshot: SbcSnapshot) -> float | None:
    """The mean MOS over the legs of the active calls that carry media; None when none does."""
    reported = number(snapshot.status, "mean_mos")
    if reported > 0:
        return float(reported)
    values = [m for call in snapshot.calls for leg in _legs(call) if (m := leg_mos(leg)) is not None]
    return sum(values) / len(values) if values else None


def realm_rows(snapshot: SbcSnapshot) -> list[RealmRow]:
    realms = snapshot.status.get("realms")
    if not isinstance(realms, list):
        return []
    per_realm: dict[str, int] = {}
    for call in snapshot.calls:
        for name in {call.get("a_realm"), call.get("b_realm")}:  # a hairpinned call counts once
            if isinstance(name, str):
                per_realm[name] = per_realm.get(name, 0) + 1
    rows = []
    for realm in realms:
        if not isinstance(realm, Mapping):
            continue
        name = text(realm, "name")
        rows.append(
            RealmRow(
                name=name,
                address=text(realm, "address"),
                listen=text(realm, "listen"),
                media_ports=text(realm, "media"),
                active_calls=per_realm.get(name, 0),
                calls_in=int(number(realm, "calls_in")),
                calls_out=int(number(realm, "calls_out")),
            )
        )
    return rows


def trunk_rows(snapshot: SbcSnapshot) -> list[TrunkRow]:
    """The SBC's trunks from `status.trunks`; until the SBC reports them, the realms with a `peer`."""
    trunks = snapshot.status.get("trunks")
    if isinstance(trunks, list):
        return [
            TrunkRow(text(t, "name"), _address(t.get("address")), _trunk_state(t), text(t, "realm"))
            for t in trunks
            if isinstance(t, Mapping)
        ]
    realms = snapshot.status.get("realms")
    if not isinstance(realms, list):
        return []
    return [
        TrunkRow(text(r, "name"), _address(r.get("peer")), _trunk_state(r, "peer_state"), text(r, "name"))
        for r in realms
        if isinstance(r, Mapping) and r.get("peer")
    ]


def _trunk_state(data: Mapping[str, Any], key: str = "state") -> TrunkState:
    value = data.get(key, data.get("up"))
    if value is True or value == "up":
        return TrunkState.UP
    if value is False or value == "down":
        return TrunkState.DOWN
    return TrunkState.UNKNOWN


def _address(value: object) -> str:
    if isinstance(value, Mapping):
        host, port, transport = value.get("host", ""), value.get("port"), value.get("transport")
        address = f"{host}:{port}" if port else str(host)
        return f"{transport}:{address}" if transport else address
    return "" if value is None else str(value)


def _legs(call: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    streams = call.get("streams")
    if not isinstance(streams, list):
        return []
    return [
        leg for stream in streams if isinstance(stream, Mapping) for leg in stream.values() if isinstance(leg, Mapping)
    ]
