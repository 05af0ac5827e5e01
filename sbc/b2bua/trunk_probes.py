"""Trunk keepalives on the wire: the OPTIONS probes `TrunkMonitor` (sbc.b2bua.keepalive) asks for,
their answers and failures, and the log line when a trunk's state changes."""

from __future__ import annotations

from sbc.b2bua.contexts import KeepaliveContext
from sbc.b2bua.keepalive import TrunkChanged, options_probe
from sbc.b2bua.loops import seal
from sbc.b2bua.state import CoreState
from sbc.sip.transaction import PeerAddress

__all__ = ["TrunkProbes"]


class TrunkProbes:
    def __init__(self, state: CoreState) -> None:
        self.state = state

    def send_due(self, now: float) -> None:
        state = self.state
        for change in state.trunks.expire(now):
            self.changed(change)
        for trunk in state.trunks.due(now):
            realm = state.realms[trunk.name]
            transport = trunk.peer.transport.value
            probe = options_probe(
                trunk,
                via=state.via(realm, transport),
                local_host=state.realm_host(realm.name),
                call_id=state.token(10),
                tag=state.token(5),
                user_agent=state.user_agent(realm.name),
            )
            seal(probe)
            destination = PeerAddress(transport, trunk.peer.host, trunk.peer.port)
            txn_id, commands = state.layers[realm.name].send_request(probe, destination, now)
            state.transmit(realm.name, commands)
            state.client_ctx[(realm.name, txn_id)] = KeepaliveContext()
            state.trunks.probe_sent(trunk, txn_id, now)

    def answered(self, realm: str, txn_id: str, status: int, now: float) -> None:
        if status >= 200:
            self.changed(self.state.trunks.answered(realm, txn_id, status, now))

    def failed(self, realm: str, txn_id: str, why: str, now: float) -> None:
        self.changed(self.state.trunks.failed(realm, txn_id, now, why))

    def changed(self, change: TrunkChanged | None) -> None:
        if change is not None:
            level = "warning" if change.state.value == "down" else "info"
            peer = self.state.trunks.trunks[change.trunk].address
            self.state.log(level, f"trunk.{change.state.value}", trunk=change.trunk, peer=peer, reason=change.reason)
