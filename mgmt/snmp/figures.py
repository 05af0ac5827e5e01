"""Figures the SBC does not report as such, derived from a snapshot of its control API: calls per realm
and by where their media flows, the mean MOS. What the MIB and the alarm rules read beside the fields
of `StatusReport`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from mgmt.snmp.source import SbcSnapshot
from sbc.control.contract import CallSnapshot, LegFigures, MediaMode, StatusReport, TrunkView


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
class MediaSessions:
    xdp: int = 0
    userspace: int = 0
    direct: int = 0


def media_sessions(calls: Iterable[CallSnapshot]) -> MediaSessions:
    """Calls by where their media flows: direct between the endpoints, or relayed in the kernel (XDP)
    or in userspace. An anchored call counts as XDP when any of its legs is offloaded to the kernel."""
    xdp = userspace = direct = 0
    for call in calls:
        if call.media_mode is MediaMode.DIRECT:
            direct += 1
        elif any(leg.in_kernel for leg in legs(call)):
            xdp += 1
        else:
            userspace += 1
    return MediaSessions(xdp, userspace, direct)


def mean_mos(calls: Iterable[CallSnapshot]) -> float | None:
    """The mean MOS over the legs of the active calls that carry media; None when none does."""
    values = [leg.mos for call in calls for leg in legs(call) if leg.mos is not None]
    return sum(values) / len(values) if values else None


def realm_rows(status: StatusReport, calls: Iterable[CallSnapshot]) -> list[RealmRow]:
    per_realm: dict[str, int] = {}
    for call in calls:
        for name in {call.a_realm, call.b_realm}:  # a hairpinned call counts once
            per_realm[name] = per_realm.get(name, 0) + 1
    return [
        RealmRow(
            name=realm.name,
            address=realm.address,
            listen=" ".join(realm.listen),
            media_ports=realm.media,
            active_calls=per_realm.get(realm.name, 0),
            calls_in=realm.calls_in,
            calls_out=realm.calls_out,
        )
        for realm in status.realms
    ]


def trunks(snapshot: SbcSnapshot) -> tuple[TrunkView, ...]:
    return snapshot.status.trunks if snapshot.status is not None else ()


def legs(call: CallSnapshot) -> Iterator[LegFigures]:
    for stream in call.streams:
        for leg in (stream.a, stream.b):
            if leg is not None:
                yield leg
