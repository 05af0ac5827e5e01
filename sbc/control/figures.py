"""The parts of `sbc status` that the management plane's monitoring reads (SNMP, alarms, dashboard).

Relay totals (packets relayed and dropped since the SBC started, whichever relay moved them), the
call limit, the monitored trunks and whether XDP was expected: `status_figures` returns them as a
mapping the control handler merges into its answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataplane.api import Dataplane, DataplaneMode

if TYPE_CHECKING:
    from sbc.b2bua.core import Core

# Reasons for the userspace relay that are a choice or a property of the machine, not a failure.
_NOT_A_FALLBACK = ("not root", "=userspace", "on loopback", "no bpf() syscall number")


def relay_totals(dataplane: Dataplane) -> dict[str, object]:
    """Packets relayed and dropped (by reason) by whichever relay moved them: `Dataplane.counters()`,
    with the kernel's and the userspace slow path's shares when XDP runs."""
    return dataplane.counters().as_dict()


def dataplane_expected(mode: DataplaneMode, fallback_reason: str) -> str:
    """`xdp` when the box runs (or tried to run) the XDP relay: userspace is then a fallback to alarm on."""
    if mode is DataplaneMode.XDP:
        return "xdp"
    if not fallback_reason or any(marker in fallback_reason for marker in _NOT_A_FALLBACK):
        return "userspace"
    return "xdp"


def sip_summary(core: Core) -> dict[str, int]:
    """What RFC 4780 SIP-COMMON-MIB counts: messages in and out, transactions, what was refused or dropped."""
    c = core.counters
    layers = list(core.layers.values())
    return {
        "in_requests": c.in_requests,
        "in_responses": c.in_responses,
        "out_requests": c.out_requests,
        "out_responses": c.out_responses,
        "transactions_total": sum(layer.counters.client_created + layer.counters.server_created for layer in layers),
        "transactions_active": sum(layer.active_count() for layer in layers),
        "unsupported_uris": c.by_status.get(416, 0),
        "unsupported_methods": c.by_status.get(405, 0),
        "otherwise_discarded": c.malformed_dropped + sum(layer.counters.malformed for layer in layers),
    }


def status_figures(core: Core, dataplane: Dataplane, fallback_reason: str, now: float) -> dict[str, object]:
    return {
        "sip": sip_summary(core),
        "max_calls": core.config.max_calls,
        "dataplane_expected": dataplane_expected(dataplane.mode, fallback_reason),
        "trunks": core.trunks.report(now),
        "relay": relay_totals(dataplane),
    }
