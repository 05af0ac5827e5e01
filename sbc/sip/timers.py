"""SIP transaction timer values (RFC 3261 §17, Table 4; RFC 6026 Timers L and M) and a deadline heap.

Nothing here reads a clock: deadlines are plain floats computed from the `now` the caller passes in.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from enum import StrEnum


class TimerName(StrEnum):
    """Every timer the transaction layer arms. The RFC letter is the value."""

    A = "A"  # ICT INVITE retransmit (unreliable only)
    B = "B"  # ICT timeout in Calling
    D = "D"  # ICT wait for response retransmissions in Completed
    M = "M"  # ICT absorb 2xx retransmissions in Accepted (RFC 6026)
    E = "E"  # NICT request retransmit (unreliable only)
    F = "F"  # NICT timeout
    K = "K"  # NICT wait for response retransmissions
    G = "G"  # IST non-2xx final retransmit (unreliable only)
    H = "H"  # IST wait for ACK
    I = "I"  # IST absorb ACK retransmissions in Confirmed  # noqa: E741
    L = "L"  # IST absorb INVITE retransmissions in Accepted (RFC 6026)
    J = "J"  # NIST absorb request retransmissions
    TRYING = "100"  # IST: send 100 Trying if the TU has not answered within 200 ms (§17.2.1)
    RETRANSMIT_2XX = "2xx"  # UAS core 2xx retransmission (§13.3.1.4), T1 doubling to T2
    ACK_WAIT = "ack"  # UAS core gives up waiting for the ACK of a 2xx after 64*T1


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """T1 (RTT estimate), T2 (max non-INVITE retransmit interval), T4 (max network lifetime), seconds."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    timer_d: float = 32.0  # Table 4: "> 32s for UDP"; not derived from T1

    def __post_init__(self) -> None:
        # A zero T1 would re-arm retransmission timers at `now` forever.
        if not (self.t1 > 0 and self.t2 >= self.t1 and self.t4 >= 0 and self.timer_d >= 0):
            raise ValueError(f"bad SIP timers T1={self.t1} T2={self.t2} T4={self.t4} D={self.timer_d}")

    @property
    def timeout(self) -> float:
        """64*T1: Timers B, F, H, J, L, M and the 2xx give-up."""
        return 64 * self.t1


# (deadline, sequence number, owner, timer): plain tuples compare in C, which keeps heap operations cheap.
_Entry = tuple[float, int, str, TimerName]


@dataclass(slots=True)
class DeadlineHeap:
    """Armed timers in a binary heap with lazy deletion.

    Each owner has at most one live entry per timer name; re-arming or disarming only updates the
    `armed` map, and stale heap entries are skipped when they surface. Everything is O(log n) or O(1).
    """

    _heap: list[_Entry] = field(default_factory=list)
    _armed: dict[tuple[str, TimerName], int] = field(default_factory=dict)
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    def arm(self, owner: str, name: TimerName, deadline: float) -> None:
        seq = next(self._seq)
        self._armed[(owner, name)] = seq
        heapq.heappush(self._heap, (deadline, seq, owner, name))

    def disarm(self, owner: str, name: TimerName) -> None:
        self._armed.pop((owner, name), None)

    def _drop_stale(self) -> None:
        heap = self._heap
        armed = self._armed
        while heap:
            _, seq, owner, name = heap[0]
            if armed.get((owner, name)) == seq:
                return
            heapq.heappop(heap)

    def next_deadline(self) -> float | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> tuple[str, TimerName] | None:
        """The earliest live timer whose deadline is <= now (disarmed as it is returned), or None."""
        self._drop_stale()
        heap = self._heap
        if not heap or heap[0][0] > now:
            return None
        _, _, owner, name = heapq.heappop(heap)
        del self._armed[(owner, name)]
        return owner, name

    def __len__(self) -> int:
        return len(self._armed)
