"""The host firewall's named counters, read from nft's JSON (`nft -j list counters table inet sbc_filter`).

The counters start from zero whenever the ruleset is applied again (a config change replaces the
table in one transaction): a reader that exports them as SNMP Counter64 must treat a smaller value
as a restart of the counter.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from dataplane.xdp.tool import run
from hw.firewall import FAMILY, TABLE, CounterName


class CountersUnreadable(ValueError):
    """nft's answer is not the table's counters (no table, another table, a format this does not know)."""


@dataclass(frozen=True, slots=True)
class CounterReading:
    packets: int
    bytes: int


@dataclass(frozen=True, slots=True)
class FirewallCounters:
    """One reading of every named counter; the field names are `CounterName`'s values."""

    sip: CounterReading
    media: CounterReading
    mgmt: CounterReading
    snmp: CounterReading
    allowed: CounterReading
    spoofed: CounterReading
    dropped: CounterReading
    forward_dropped: CounterReading

    def reading(self, name: CounterName) -> CounterReading:
        reading: CounterReading = getattr(self, name.value)
        return reading

    def as_json(self) -> dict[str, dict[str, int]]:
        return {f.name: {"packets": self.reading(CounterName(f.name)).packets,
                         "bytes": self.reading(CounterName(f.name)).bytes} for f in fields(self)}  # fmt: skip


def parse_counters(text: str) -> FirewallCounters:
    """The readings in nft's JSON output; raises CountersUnreadable when one is missing or malformed."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise CountersUnreadable(f"nft's output is not JSON: {exc}") from None
    items = document.get("nftables") if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise CountersUnreadable("nft's output has no `nftables` list")
    readings: dict[str, CounterReading] = {}
    for item in items:
        counter = item.get("counter") if isinstance(item, dict) else None
        if not isinstance(counter, dict) or counter.get("table") != TABLE or counter.get("family") != FAMILY:
            continue
        readings[str(counter.get("name"))] = _reading(counter)
    missing = [name.value for name in CounterName if name.value not in readings]
    if missing:
        raise CountersUnreadable(f"table {FAMILY} {TABLE} has no counter {', '.join(missing)}")
    return FirewallCounters(**{name.value: readings[name.value] for name in CounterName})


def _reading(counter: dict[str, Any]) -> CounterReading:
    packets, size = counter.get("packets"), counter.get("bytes")
    if not isinstance(packets, int) or not isinstance(size, int) or isinstance(packets, bool):
        raise CountersUnreadable(f"counter {counter.get('name')!r} has no packet and byte counts")
    return CounterReading(packets=packets, bytes=size)


def read_counters(nft: Sequence[str] = ("nft",)) -> FirewallCounters:
    """Ask nft (needs CAP_NET_ADMIN); `nft` may be prefixed, e.g. `ip netns exec NS nft`."""
    text = run([*nft, "-j", "list", "counters", "table", FAMILY, TABLE],
               hint="is the firewall applied (sbc-hw firewall apply)?")  # fmt: skip
    return parse_counters(text)
