"""Trunk monitoring: OPTIONS keepalives toward each realm's `peer`, and whether it answers (sans-IO).

A realm whose `peer` has `keepalive_s > 0` is a monitored trunk. Every `keepalive_s` the core sends
it an out-of-dialog OPTIONS (RFC 3261 §11) and tells the monitor what came of it. Any final answer
counts as alive (a 404 or 405 still proves the peer's SIP stack is there), except 503, which is the
peer saying it does not serve (RFC 3261 §21.5.4). A probe without an answer within
`PROBE_TIMEOUT_S` (at most the interval) is a failure; `DOWN_AFTER` failures in a row take the trunk
down, one answer brings it up again. The state starts `unknown` until the first probe settles it.

Time is passed in; nothing here sends anything: `due(now)` names the trunks to probe, the core
builds and sends the request and reports back with `probe_sent`, `answered` and `failed`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from sbc.config.model import Peer, Realm
from sbc.sip.message import HeaderField, Request

PROBE_TIMEOUT_S = 4.0
DOWN_AFTER = 2  # consecutive failed probes before a trunk counts as down
DOWN_STATUSES = frozenset({503})


class TrunkState(StrEnum):
    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class TrunkChanged:
    """A trunk went up or down: the core logs it (`trunk.up` / `trunk.down`)."""

    trunk: str
    state: TrunkState
    reason: str


@dataclass(slots=True)
class Trunk:
    name: str  # the realm's name: one peer per realm
    peer: Peer
    state: TrunkState = TrunkState.UNKNOWN
    since: float | None = None  # when the state last changed (the core's clock)
    next_probe: float = 0.0
    probe_txn: str | None = None  # the probe in flight
    probe_sent_at: float = 0.0
    failures: int = 0  # consecutive
    probes_sent: int = 0
    probes_failed: int = 0
    last_status: int | None = None
    last_rtt_ms: float | None = None

    @property
    def address(self) -> str:
        host = f"[{self.peer.host}]" if ":" in self.peer.host else self.peer.host
        return f"{self.peer.transport.value}:{host}:{self.peer.port}"

    @property
    def timeout_s(self) -> float:
        return min(PROBE_TIMEOUT_S, float(self.peer.keepalive_s))


class TrunkMonitor:
    def __init__(self) -> None:
        self.trunks: dict[str, Trunk] = {}

    def configure(self, realms: Iterable[Realm]) -> None:
        """Take the realms of a (new) config: a trunk whose peer did not change keeps its state."""
        wanted = {r.name: r.peer for r in realms if r.peer is not None and r.peer.keepalive_s > 0}
        kept: dict[str, Trunk] = {}
        for name, peer in wanted.items():
            assert peer is not None
            old = self.trunks.get(name)
            same = old is not None and (old.peer.host, old.peer.port, old.peer.transport) == (
                peer.host,
                peer.port,
                peer.transport,
            )
            if old is not None and same:
                old.peer = peer
                kept[name] = old
            else:
                kept[name] = Trunk(name, peer)
        self.trunks = kept

    def due(self, now: float) -> list[Trunk]:
        """Trunks to probe now (none has two probes in flight)."""
        return [t for t in self.trunks.values() if t.probe_txn is None and now >= t.next_probe]

    def probe_sent(self, trunk: Trunk, txn_id: str, now: float) -> None:
        trunk.probe_txn = txn_id
        trunk.probe_sent_at = now
        trunk.probes_sent += 1
        trunk.next_probe = now + trunk.peer.keepalive_s

    def _probe(self, realm: str, txn_id: str) -> Trunk | None:
        trunk = self.trunks.get(realm)
        return trunk if trunk is not None and trunk.probe_txn == txn_id else None

    def answered(self, realm: str, txn_id: str, status: int, now: float) -> TrunkChanged | None:
        """A final answer to a probe (provisional ones are not reported)."""
        trunk = self._probe(realm, txn_id)
        if trunk is None:
            return None
        trunk.probe_txn = None
        trunk.last_status = status
        trunk.last_rtt_ms = round((now - trunk.probe_sent_at) * 1000, 1)
        if status in DOWN_STATUSES:
            return self._failure(trunk, now, f"answered {status}")
        trunk.failures = 0
        return self._set(trunk, TrunkState.UP, now, f"answered {status}")

    def failed(self, realm: str, txn_id: str, now: float, reason: str) -> TrunkChanged | None:
        """The probe's transaction timed out or the transport failed."""
        trunk = self._probe(realm, txn_id)
        if trunk is None:
            return None
        trunk.probe_txn = None
        return self._failure(trunk, now, reason)

    def expire(self, now: float) -> list[TrunkChanged]:
        """Probes unanswered past their timeout fail (their transaction may still be retransmitting:
        a late answer then finds no probe and is ignored)."""
        changes = []
        for trunk in self.trunks.values():
            if trunk.probe_txn is not None and now - trunk.probe_sent_at >= trunk.timeout_s:
                trunk.probe_txn = None
                change = self._failure(trunk, now, f"no answer within {trunk.timeout_s:g} s")
                if change is not None:
                    changes.append(change)
        return changes

    def next_deadline(self) -> float | None:
        deadlines = [
            t.probe_sent_at + t.timeout_s if t.probe_txn is not None else t.next_probe for t in self.trunks.values()
        ]
        return min(deadlines) if deadlines else None

    def _failure(self, trunk: Trunk, now: float, reason: str) -> TrunkChanged | None:
        trunk.failures += 1
        trunk.probes_failed += 1
        if trunk.failures >= DOWN_AFTER:
            return self._set(trunk, TrunkState.DOWN, now, reason)
        return None

    @staticmethod
    def _set(trunk: Trunk, state: TrunkState, now: float, reason: str) -> TrunkChanged | None:
        if trunk.state is state:
            return None
        trunk.state = state
        trunk.since = now
        return TrunkChanged(trunk.name, state, reason)

    def report(self, now: float) -> list[dict[str, object]]:
        """For `sbc status`: one row per monitored trunk."""
        return [
            {
                "name": t.name,
                "realm": t.name,
                "address": t.address,
                "state": t.state.value,
                "since_s": None if t.since is None else round(now - t.since, 1),
                "keepalive_s": t.peer.keepalive_s,
                "last_status": t.last_status,
                "last_rtt_ms": t.last_rtt_ms,
                "probes_sent": t.probes_sent,
                "probes_failed": t.probes_failed,
            }
            for t in self.trunks.values()
        ]


def options_probe(trunk: Trunk, *, via: str, local_host: str, call_id: str, tag: str, user_agent: str) -> Request:
    """The out-of-dialog OPTIONS of one probe (RFC 3261 §11.1): Max-Forwards 70, no body."""
    host = f"[{trunk.peer.host}]" if ":" in trunk.peer.host else trunk.peer.host
    tparam = "" if trunk.peer.transport.value == "udp" else f";transport={trunk.peer.transport.value}"
    uri = f"sip:{host}:{trunk.peer.port}{tparam}"
    headers = [
        HeaderField("Via", via),
        HeaderField("Max-Forwards", "70"),
        HeaderField("From", f"<sip:keepalive@{local_host}>;tag={tag}"),
        HeaderField("To", f"<{uri}>"),
        HeaderField("Call-ID", call_id),
        HeaderField("CSeq", "1 OPTIONS"),
        HeaderField("Accept", "application/sdp"),
        HeaderField("User-Agent", user_agent),
        HeaderField("Content-Length", "0"),
    ]
    return Request("OPTIONS", uri, headers)
