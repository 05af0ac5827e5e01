"""What the sans-IO core asks the I/O shell to do. The shell dispatches on these exhaustively."""

from __future__ import annotations

from dataclasses import dataclass, field

from sbc.sip.transaction import PeerAddress


@dataclass(frozen=True, slots=True)
class SendSip:
    """Send these bytes from the realm's socket of the destination's transport. When they cannot be
    sent (no connection to the destination), the shell reports `txn_id` to `Core.transport_failed`."""

    realm: str
    data: bytes
    destination: PeerAddress
    txn_id: str | None = None


@dataclass(frozen=True, slots=True)
class LogEvent:
    level: str
    event: str
    fields: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallEnded:
    """A call record (CDR) with both legs' identifiers and the media quality of each stream."""

    record: dict[str, object]


Output = SendSip | LogEvent | CallEnded
