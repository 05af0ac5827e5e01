"""`MediaLedger`: the `Dataplane` the SIP core talks to, remembering what it told the relay.

The dialog state file (`sbc.dialog_state`) must be able to re-program the relay after a restart
exactly as it was: every anchor's last `LegProgram` and the anchor it is connected to. Neither the
core's media state nor the relays keep that in a form meant for saving, so the ledger sits between
them: every call goes through to the real relay unchanged, and the ledger keeps, per live anchor, its
program and partner. `changed` collects the anchors touched since the persistence layer last looked
(a hairpin connects anchors of another call, which must be saved again too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataplane.api import AnchorPort, Dataplane, DataplaneCounters, DataplaneMode, IPAddress, LegProgram, LegStats

__all__ = ["MediaLedger"]


class MediaLedger:
    def __init__(self, inner: Dataplane) -> None:
        self.inner = inner
        self.anchors: dict[int, AnchorPort] = {}
        self.programs: dict[int, LegProgram] = {}
        self.partners: dict[int, AnchorPort] = {}
        self.changed: set[int] = set()

    @property
    def mode(self) -> DataplaneMode:
        return self.inner.mode

    def allocate(self, realm: str, address: IPAddress, port_min: int, port_max: int) -> AnchorPort:
        return self._taken(self.inner.allocate(realm, address, port_min, port_max))

    def allocate_at(self, realm: str, address: IPAddress, rtp_port: int) -> AnchorPort:
        return self._taken(self.inner.allocate_at(realm, address, rtp_port))

    def program(self, anchor: AnchorPort, leg: LegProgram) -> None:
        self.inner.program(anchor, leg)
        self.programs[anchor.anchor_id] = leg
        self.changed.add(anchor.anchor_id)

    def connect(self, a: AnchorPort, b: AnchorPort) -> None:
        self.inner.connect(a, b)
        self._unlink(a.anchor_id)
        self._unlink(b.anchor_id)
        self.partners[a.anchor_id] = b
        self.partners[b.anchor_id] = a
        self.changed.update((a.anchor_id, b.anchor_id))

    def disconnect(self, anchor: AnchorPort) -> None:
        self.inner.disconnect(anchor)
        self._unlink(anchor.anchor_id)

    def release(self, anchor: AnchorPort) -> None:
        self.inner.release(anchor)
        self._unlink(anchor.anchor_id)
        self.anchors.pop(anchor.anchor_id, None)
        self.programs.pop(anchor.anchor_id, None)
        self.changed.add(anchor.anchor_id)

    def stats(self, anchor: AnchorPort) -> LegStats:
        return self.inner.stats(anchor)

    def counters(self) -> DataplaneCounters:
        return self.inner.counters()

    def close(self) -> None:
        self.inner.close()

    def partner_of(self, anchor: AnchorPort) -> AnchorPort | None:
        return self.partners.get(anchor.anchor_id)

    def program_of(self, anchor: AnchorPort) -> LegProgram | None:
        return self.programs.get(anchor.anchor_id)

    def take_changed(self) -> set[int]:
        changed, self.changed = self.changed, set()
        return changed

    def _taken(self, anchor: AnchorPort) -> AnchorPort:
        self.anchors[anchor.anchor_id] = anchor
        self.changed.add(anchor.anchor_id)
        return anchor

    def _unlink(self, anchor_id: int) -> None:
        partner = self.partners.pop(anchor_id, None)
        if partner is not None:
            self.changed.update((anchor_id, partner.anchor_id))
            if (mine := self.partners.get(partner.anchor_id)) is not None and mine.anchor_id == anchor_id:
                del self.partners[partner.anchor_id]


if TYPE_CHECKING:

    def _conforms(ledger: MediaLedger) -> Dataplane:
        return ledger
