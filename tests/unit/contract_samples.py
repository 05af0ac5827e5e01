"""Sample answers of the control contract for tests of its readers (the CLI, mgmt's SNMP and alarms)."""

from __future__ import annotations

from dataclasses import replace

from sbc.control.contract import (
    CallSnapshot,
    DataplaneMode,
    FallbackReason,
    LegFigures,
    MediaFlow,
    MediaMode,
    RealmView,
    RelayTotals,
    SipSummary,
    StatusCounters,
    StatusReport,
    StreamFigures,
    TrunkState,
    TrunkView,
)


def status_report(**changes: object) -> StatusReport:
    report = StatusReport(
        version="9.9",
        uptime_s=12.5,
        config="/etc/sbc/sbc.yaml",
        dataplane=DataplaneMode.USERSPACE,
        dataplane_note="not root",
        dataplane_fallback=FallbackReason.NOT_PRIVILEGED,
        dataplane_expected=DataplaneMode.USERSPACE,
        realms=(
            RealmView("lan", "198.18.0.1", ("udp:5060",), "198.18.0.1:1-2", calls_in=3, calls_out=1),
            RealmView("wan", "198.18.1.1", ("udp:5060", "tcp:5060"), "198.18.1.1:1-2", calls_in=1, calls_out=3),
        ),
        active_calls=1,
        registrations=2,
        counters=StatusCounters(
            calls_total=7,
            calls_answered=5,
            calls_failed=1,
            calls_cancelled=1,
            malformed_answered=0,
            malformed_dropped=0,
            loops_detected=0,
            internal_errors=0,
            options_answered=0,
            registrations_relayed=0,
            messages_received=40,
            hairpins=0,
            anchors_allocated=4,
        ),
        sip=SipSummary(
            in_requests=11,
            in_responses=0,
            out_requests=0,
            out_responses=12,
            transactions_total=9,
            transactions_active=2,
            unsupported_uris=0,
            unsupported_methods=0,
            otherwise_discarded=0,
        ),
        max_calls=10,
        trunks=(
            TrunkView(
                name="wan",
                realm="wan",
                address="udp:198.18.1.10:5060",
                state=TrunkState.UP,
                since_s=3.0,
                keepalive_s=30,
                last_status=200,
                last_rtt_ms=1.5,
                probes_sent=2,
                probes_failed=0,
            ),
        ),
        relay=RelayTotals(
            mode=DataplaneMode.USERSPACE,
            relayed_packets=1234,
            relayed_bytes=200_000,
            dropped_packets=1,
            dropped={"spoofed": 1},
            slow_path={},
            kernel={},
        ),
    )
    return replace(report, **changes)  # type: ignore[arg-type]


def leg(*, mos: float | None = 4.4, in_kernel: bool = False, packets_in: int = 100) -> LegFigures:
    return LegFigures(
        anchor="198.18.0.1:30000",
        source="198.18.0.10:4000",
        direction="sendrecv",
        packets_in=packets_in,
        rtp_in=packets_in,
        packets_out=packets_in,
        bytes_in=packets_in * 172,
        bytes_out=packets_in * 172,
        expected=packets_in,
        lost=0,
        loss_pct=0.0,
        jitter_ms=1.0,
        mos=mos,
        payload_type=0,
        dropped_spoofed=0,
        dropped_other=0,
        not_sent_hold=0,
        timed_out=False,
        in_kernel=in_kernel,
    )


def call(
    *,
    a_realm: str = "lan",
    b_realm: str = "wan",
    media_mode: MediaMode = MediaMode.ANCHOR,
    legs: tuple[LegFigures | None, LegFigures | None] | None = None,
) -> CallSnapshot:
    a, b = legs if legs is not None else (leg(), leg())
    stream = StreamFigures(
        hairpin=False, hairpin_events=0, flow=MediaFlow.BOTH, one_way=False, one_way_events=0, rtcp_mux=False,
        a=a, b=b,
    )  # fmt: skip
    return CallSnapshot(
        call="c1",
        a_call_id="a@x",
        b_call_id="b@y",
        state="confirmed",
        route="out",
        a_realm=a_realm,
        b_realm=b_realm,
        age_s=3.0,
        media_mode=media_mode,
        hairpin=False,
        streams=(stream,) if media_mode is MediaMode.ANCHOR else (),
    )
