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


def relay_totals(dataplane: Dataplane) -> tuple[int, int]:
    """(packets relayed, packets dropped) since start: the userspace relay's totals, plus the XDP
    program's per-CPU counters when the kernel relays."""
    relayed = dropped = 0
    slow = getattr(dataplane, "_slow", dataplane)  # XdpRelay keeps a userspace slow path
    totals = getattr(slow, "totals", None)
    if callable(totals):
        t = totals()
        relayed += int(t.relayed_packets)
        dropped += int(t.dropped_spoofed) + int(t.dropped_other)
    counters = getattr(dataplane, "counters", None)
    if dataplane.mode is DataplaneMode.XDP and callable(counters):
        from dataplane.xdp.abi import Counter

        kernel = counters()
        relayed += int(kernel.get(Counter.RELAYED, 0))
        dropped += sum(
            int(kernel.get(c, 0)) for c in (Counter.DROPPED_SPOOFED, Counter.DROPPED_BLOCKED, Counter.DROPPED_SESSION)
        )
    return relayed, dropped


def dataplane_expected(mode: DataplaneMode, fallback_reason: str) -> str:
    """`xdp` when the box runs (or tried to run) the XDP relay: userspace is then a fallback to alarm on."""
    if mode is DataplaneMode.XDP:
        return "xdp"
    if not fallback_reason or any(marker in fallback_reason for marker in _NOT_A_FALLBACK):
        return "userspace"
    return "xdp"


def status_figures(core: Core, dataplane: Dataplane, fallback_reason: str, now: float) -> dict[str, object]:
    relayed, dropped = relay_totals(dataplane)
    return {
        "max_calls": core.config.max_calls,
        "dataplane_expected": dataplane_expected(dataplane.mode, fallback_reason),
        "trunks": core.trunks.report(now),
        "relay": {"relayed_packets": relayed, "dropped_packets": dropped},
    }
