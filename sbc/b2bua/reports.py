"""What the core reports about calls: the call record (CDR) of an ended call, the snapshot of a live
one for `sbc calls`, and the counters behind `sbc status` and SNMP."""

from __future__ import annotations

from dataclasses import dataclass, field

from sbc.b2bua.call import Call

__all__ = ["Counters", "call_record", "call_snapshot"]


@dataclass(slots=True)
class Counters:
    received: int = 0
    malformed_answered: int = 0
    malformed_dropped: int = 0
    calls_total: int = 0
    calls_answered: int = 0
    calls_failed: int = 0
    calls_cancelled: int = 0
    registrations_relayed: int = 0
    options_answered: int = 0
    loops_detected: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    # RFC 4780 sipCommonSummaryStats: messages through the transaction layers, retransmissions included
    in_requests: int = 0
    in_responses: int = 0
    out_requests: int = 0
    out_responses: int = 0

    def count_status(self, status: int) -> None:
        self.by_status[status] = self.by_status.get(status, 0) + 1


def call_record(call: Call, now: float, reason: str, streams: list[dict[str, object]]) -> dict[str, object]:
    """The CDR of `call`, ended at `now` for `reason`; `streams` is the media report of each stream."""
    return {
        **call.log_ids(),
        "route": call.route,
        "a_realm": call.caller.realm,
        "b_realm": call.callee.realm,
        "start": call.created_at,
        "answer": call.answered_at,
        "end": now,
        "duration_s": round(now - call.answered_at, 3) if call.answered_at is not None else 0.0,
        "status": call.final_status,
        "reason": reason,
        "media_mode": call.media.mode.value,
        "streams": streams,
    }


def call_snapshot(call: Call, now: float, streams: list[dict[str, object]]) -> dict[str, object]:
    """A live call as `sbc calls` shows it."""
    return {
        **call.log_ids(),
        "state": call.state.value,
        "route": call.route,
        "a_realm": call.caller.realm,
        "b_realm": call.callee.realm,
        "age_s": round(now - call.created_at, 1),
        "media_mode": call.media.mode.value,
        "hairpin": any(s.hairpinned for s in call.media.streams),
        "streams": streams,
    }
