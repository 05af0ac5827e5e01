"""A call is two legs; a leg is one dialog (RFC 3261 §12) the SBC holds with one side."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from sbc.b2bua.media import CallMedia
from sbc.b2bua.transfer import ReferIds
from sbc.policy.topology import AddressScrubber
from sbc.sip.dialog_route import DialogTarget, dialog_target, hop_address
from sbc.sip.message import Request
from sbc.sip.transaction import PeerAddress


class CallState(StrEnum):
    TRYING = "trying"  # INVITE sent on the callee leg, nothing back yet
    EARLY = "early"  # a provisional with a tag came back
    CONFIRMED = "confirmed"  # 2xx relayed
    ENDING = "ending"  # BYE or CANCEL under way
    ENDED = "ended"


@dataclass(slots=True)
class Leg:
    """Our dialog with one side. `index` 0 is the caller side (we are its UAS), 1 the callee side."""

    index: int
    realm: str
    transport: str
    call_id: str
    local_tag: str
    local_party: str  # From (callee leg) or To (caller leg) as we send it, without tag
    remote_party: str  # the other party's header value, without tag
    destination: PeerAddress  # where this leg's requests go (caller leg: the flow it came from)
    remote_tag: str | None = None
    remote_target: str = ""  # Request-URI for in-dialog requests: the remote Contact
    # RFC 3261 §12.1: as the UAS (caller leg), the request's Record-Route in order; as the UAC (callee
    # leg), the Record-Route of the 18x/2xx that set up the dialog, reversed.
    route_set: list[str] = field(default_factory=list)
    local_cseq: int = 0
    remote_cseq: int = -1
    invite_cseq: int = 0  # CSeq of the last INVITE we sent on this leg (PRACK's RAck names it)
    contact: str = ""  # our Contact on this leg (its user part names this leg: see Core._contact)
    large_over_tcp: bool = False  # requests above 1300 bytes go over TCP (a configured peer that takes it)
    scrubber: AddressScrubber | None = None  # addresses of this side, hidden from the other (built once)

    def target(self) -> DialogTarget:
        """Request-URI, Route headers and next hop of a request inside this leg's dialog (§12.2.1.1)."""
        return dialog_target(self.remote_target, self.route_set)

    def next_hop(self) -> PeerAddress:
        """Where this leg's in-dialog requests go: the first route of its route set, or without one the
        flow or peer the leg was set up with."""
        hop = self.target().next_hop
        return hop_address(hop, self.transport) if hop is not None else self.destination

    @property
    def contact_user(self) -> str:
        """The user part of our Contact on this leg: it names the leg (`sbc-<our tag>`)."""
        return f"sbc-{self.local_tag}"

    def local_header(self) -> str:
        return f"{self.local_party};tag={self.local_tag}"

    def remote_header(self) -> str:
        return f"{self.remote_party};tag={self.remote_tag}" if self.remote_tag else self.remote_party


@dataclass(slots=True)
class PendingAck:
    """A 2xx to an INVITE relayed to one leg: when that leg ACKs, we ACK the other leg's 2xx."""

    cseq: int  # CSeq of the INVITE on the leg that must be ACKed
    ack: bytes | None = None  # the ACK once sent, for re-sending on 2xx retransmissions
    destination: PeerAddress | None = None  # where it was sent


@dataclass(slots=True)
class Call:
    call_ref: str  # our own identifier, in logs and `sbc calls`
    legs: tuple[Leg, Leg]
    route: str
    media: CallMedia
    created_at: float
    state: CallState = CallState.TRYING
    answered_at: float | None = None
    ended_at: float | None = None
    end_reason: str = ""
    initial_request: Request | None = None  # the caller's INVITE, to answer it
    caller_invite_txn: str | None = None
    callee_invite_txn: str | None = None
    cancel_pending: bool = False
    final_status: int | None = None
    pending_acks: dict[int, PendingAck] = field(default_factory=dict)  # leg index to ACK -> pending
    reinvite_in_progress: bool = False
    session_expires_s: int | None = None
    session_refreshed_at: float = 0.0
    store: dict[str, str] = field(default_factory=dict)  # header-rule store of this call
    refer_ids: ReferIds = field(default_factory=dict)  # REFERs relayed, for their NOTIFYs' ids
    redirect_targets: list[str] = field(default_factory=list)  # Request-URIs tried on the callee leg

    @property
    def caller(self) -> Leg:
        return self.legs[0]

    @property
    def callee(self) -> Leg:
        return self.legs[1]

    def other(self, leg: Leg) -> Leg:
        return self.legs[1 - leg.index]

    def log_ids(self) -> dict[str, str]:
        return {"call": self.call_ref, "a_call_id": self.legs[0].call_id, "b_call_id": self.legs[1].call_id}
