"""The control API's answers (`sbc.control.contract`) built from the running core, its dataplane and its
config: what `sbc status`, `sbc calls` and `sbc registrations` show and the management plane reads.

The core reports calls, trunks and call records as JSON-shaped mappings; they are read into the
contract's types here, so a field the core stops reporting fails at once, in the tests, not in a
manager's fallback.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dataplane.api import Dataplane, DataplaneCounters, DataplaneMode, Fallback
from sbc.config.model import SbcConfig
from sbc.control.contract import (
    CallList,
    CallRecord,
    CallSnapshot,
    RealmView,
    RegistrationList,
    RegistrationView,
    RelayTotals,
    SipSummary,
    StatusCounters,
    StatusReport,
    TransportReport,
    TrunkView,
    decode,
)

if TYPE_CHECKING:
    from sbc.b2bua.core import Core


@dataclass(frozen=True, slots=True)
class Running:
    """What the shell knows about itself beside the core: for `status`."""

    version: str
    started_at: float  # Unix time
    internal_errors: int
    fallback: Fallback | None  # why the userspace relay runs; None with XDP
    attached: str = ""  # with XDP: where the program runs, in which mode, and why that mode
    transport: TransportReport | None = None  # the shell's TCP/TLS connections and limits


def relay_totals(counters: DataplaneCounters) -> RelayTotals:
    """Packets relayed and dropped (by reason) by whichever relay moved them, with the kernel's and the
    userspace slow path's shares when XDP runs."""
    return RelayTotals(
        mode=counters.mode,
        relayed_packets=counters.relayed_packets,
        relayed_bytes=counters.relayed_bytes,
        dropped_packets=counters.dropped_packets,
        dropped=dict(counters.dropped),
        slow_path=dict(counters.slow_path),
        kernel=dict(counters.kernel),
    )


def dataplane_expected(mode: DataplaneMode, fallback: Fallback | None) -> DataplaneMode:
    """XDP when the box runs (or tried to run) the XDP relay: userspace is then a fallback to alarm on."""
    if mode is DataplaneMode.XDP or (fallback is not None and fallback.reason.is_failure):
        return DataplaneMode.XDP
    return DataplaneMode.USERSPACE


def sip_summary(core: Core) -> SipSummary:
    c = core.counters
    layers = list(core.layers.values())
    return SipSummary(
        in_requests=c.in_requests,
        in_responses=c.in_responses,
        out_requests=c.out_requests,
        out_responses=c.out_responses,
        transactions_total=sum(layer.counters.client_created + layer.counters.server_created for layer in layers),
        transactions_active=sum(layer.active_count() for layer in layers),
        unsupported_uris=c.by_status.get(416, 0),
        unsupported_methods=c.by_status.get(405, 0),
        otherwise_discarded=c.malformed_dropped + sum(layer.counters.malformed for layer in layers),
    )


def realm_views(config: SbcConfig, core: Core) -> tuple[RealmView, ...]:
    c = core.counters
    return tuple(
        RealmView(
            name=r.name,
            address=str(r.address),
            listen=tuple(f"{ls.transport}:{ls.port}" for ls in r.listeners),
            media=f"{r.media.address}:{r.media.port_min}-{r.media.port_max}",
            calls_in=c.calls_in.get(r.name, 0),
            calls_out=c.calls_out.get(r.name, 0),
        )
        for r in config.realms
    )


def status_counters(core: Core, internal_errors: int) -> StatusCounters:
    c = core.counters
    return StatusCounters(
        calls_total=c.calls_total,
        calls_answered=c.calls_answered,
        calls_failed=c.calls_failed,
        calls_cancelled=c.calls_cancelled,
        malformed_answered=c.malformed_answered,
        malformed_dropped=c.malformed_dropped,
        loops_detected=c.loops_detected,
        internal_errors=internal_errors,
        options_answered=c.options_answered,
        registrations_relayed=c.registrations_relayed,
        messages_received=c.received,
        hairpins=core.media.hairpins,
        anchors_allocated=core.media.anchors_allocated,
    )


def status_report(core: Core, dataplane: Dataplane, running: Running, wall_now: float, now: float) -> StatusReport:
    """`status`; `wall_now` is Unix time (for the uptime), `now` the core's clock."""
    mode = dataplane.mode
    fallback = running.fallback if mode is DataplaneMode.USERSPACE else None
    return StatusReport(
        version=running.version,
        uptime_s=round(wall_now - running.started_at, 1),
        config=core.config.source,
        dataplane=mode,
        dataplane_note=fallback.detail if fallback is not None else running.attached,
        dataplane_fallback=fallback.reason if fallback is not None else None,
        dataplane_expected=dataplane_expected(mode, fallback),
        realms=realm_views(core.config, core),
        active_calls=len(core.calls),
        registrations=len(core.registrations.active(now)),
        counters=status_counters(core, running.internal_errors),
        sip=sip_summary(core),
        max_calls=core.config.max_calls,
        trunks=tuple(decode(TrunkView, row) for row in core.trunks.report(now)),
        relay=relay_totals(dataplane.counters()),
        transport=running.transport,
    )


def call_list(core: Core, now: float) -> CallList:
    return CallList(tuple(decode(CallSnapshot, call) for call in core.snapshot_calls(now)))


def registration_list(core: Core, now: float) -> RegistrationList:
    return RegistrationList(
        tuple(
            RegistrationView(aor=b.aor, contact=b.contact_uri, flow=str(b.flow), expires_in_s=round(b.expires_at - now))
            for b in core.registrations.active(now)
        )
    )


CDR_TIMES = ("start", "answer", "end")


def call_record(ended: Mapping[str, object], recorded_at: float, now: float) -> CallRecord:
    """The core's report of an ended call (`CallEnded.record`, stamped with the core's monotonic clock
    `now` is on) as a call record with wall-clock times that a billing or NOC system can read: ISO 8601
    in UTC, to the millisecond (None stays None). `recorded_at` is the Unix time now."""
    offset_s = recorded_at - now
    converted: dict[str, object] = {"recorded_at": round(recorded_at, 3), **ended}
    for key in CDR_TIMES:
        value = ended.get(key)
        if isinstance(value, int | float):
            wall = datetime.datetime.fromtimestamp(value + offset_s, tz=datetime.UTC)
            converted[key] = wall.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return decode(CallRecord, converted)
