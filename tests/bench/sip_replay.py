"""The SIP bench's calls replayed in one process, on a simulated clock: the SBC's CPU time per call
without SIPp or sockets to peers in the figure, and without the retransmissions a neighbour's load
sets off (its share of the caches still shows: repeat and compare runs made back to back).

The shell (`SbcApp`: logging, call records, dialog persistence, timers) runs with the userspace
relay (real anchor sockets on loopback) and the bench's config; only the SIP sockets are replaced by
a recorder. A scripted caller and callee play `uac_bench.xml` and `uas_bench.xml` (INVITE with SDP,
180, 200 with SDP, ACK, 1 s hold, BYE, 200) at a given rate of simulated time; the SBC's inputs
(datagrams, timer ticks when `sbc run` would run them, the state file writes its timer would make)
are timed with the process CPU clock, the peers' work is not. Calls are placed for 15 simulated
seconds by default; the transaction layer keeps a call's transactions 32 s, so its tables still grow
then (`--seconds 40` sees them full).

    python -m tests.bench.sip_replay [--rate 400] [--seconds 15] [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import heapq
import io
import itertools
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from dataplane.userspace import UserspaceRelay
from sbc import app as shell
from sbc.app import SbcApp
from sbc.b2bua.core import Core
from sbc.b2bua.media_ledger import MediaLedger
from sbc.config.loader import load_config_text
from sbc.dialog_state import STATE_FILE, DialogPersistence
from sbc.sip.message import Request, Response, parse_datagram
from sbc.sip.transaction import PeerAddress
from tests.bench.sip import bench_config, print_profile
from tests.integration.harness import LAN_SBC, PHONE, SBC_PORT, TRUNK, TRUNK_PORT

PHONE_PORT = 5071
# The SBC's inputs in the replay: everything else in a profile of it is the peers' work.
SBC_ROOTS = (("sbc/app.py", "_on_datagram"), ("sbc/app.py", "_on_timer"), ("sbc/dialog_state.py", "flush"))
HOLD_S = 1.0
PERSISTENCE_TIMER_S = 0.1  # how often the state file's timer could fire (DialogPersistence's interval)

_SDP = (
    "v=0\r\no={user} 53655765 2353687637 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
)


def _message(start: str, headers: list[str], body: str = "") -> bytes:
    payload = body.encode()
    lines = [start, *headers, f"Content-Length: {len(payload)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


class _Recorder:
    """Stands in for a realm's `RealmSockets`: keeps what the SBC sends."""

    def __init__(self, realm: str, sent: list[tuple[str, bytes]]) -> None:
        self.realm = realm
        self.sent = sent

    def send(self, data: bytes, destination: PeerAddress, txn_id: str | None = None) -> None:
        self.sent.append((self.realm, data))

    async def close(self) -> None:
        return None


class _SimulatedShell(SbcApp):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.sim_now = 0.0

    def _now(self) -> float:
        return self.sim_now

    def _reschedule(self) -> None:
        return None  # the replay calls `_on_timer` itself at the core's deadlines


class Replay:
    def __init__(self, workdir: Path, loop: asyncio.AbstractEventLoop) -> None:
        config = load_config_text(bench_config(workdir / "state"), "bench")
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.sent: list[tuple[str, bytes]] = []
        self.app = _SimulatedShell(config, UserspaceRelay(loop), "replay")
        self.app._loop = loop
        ledger = MediaLedger(self.app.dataplane)
        self.app.core = Core(config, ledger)
        self.app.persistence = DialogPersistence(self.app.core, ledger, config.state_dir / STATE_FILE, loop, shell.emit)
        self.app.sockets = {r.name: _Recorder(r.name, self.sent) for r in config.realms}  # type: ignore[misc]
        self.cpu_s = 0.0
        self.completed = 0
        self._branches = itertools.count(1)
        self._next_write = PERSISTENCE_TIMER_S

    # -- the SBC's inputs, timed ---------------------------------------------------------------------
    def _timed(self, fn: Callable[[], None]) -> None:
        t0 = time.process_time()
        fn()
        self.cpu_s += time.process_time() - t0

    def advance(self, to: float) -> None:
        """Run the SBC's timers and state file writes due up to `to`."""
        core = self.app.core
        persistence = self.app.persistence
        assert core is not None and persistence is not None
        # The tick runs when `sbc run` would run it: at the core's deadline rounded up to its timer grid.
        timer_due: Callable[[float], float] = getattr(shell, "timer_due", lambda deadline: deadline)
        for _ in range(1_000_000):
            deadline = core.next_deadline()
            if deadline is not None:
                deadline = timer_due(deadline)
            due = min(deadline if deadline is not None else to, self._next_write)
            if due > to:
                break
            self.app.sim_now = max(self.app.sim_now, due)
            if due == self._next_write:
                self._next_write += PERSISTENCE_TIMER_S
                self._timed(persistence.flush)
            else:
                self._timed(self.app._on_timer)
            self._deliver()
        self.app.sim_now = to

    def _input(self, realm: str, data: bytes, source: PeerAddress) -> None:
        self._timed(lambda: self.app._on_datagram(realm, data, source))
        self._deliver()

    # -- the peers -----------------------------------------------------------------------------------
    def _deliver(self) -> None:
        """Hand what the SBC sent to the callee (the caller's answers are read where they are needed)."""
        while self.sent:
            batch, self.sent[:] = list(self.sent), []
            for realm, data in batch:
                if realm == "wan":
                    self._callee(parse_datagram(data))
                else:
                    self._to_caller.append(parse_datagram(data))

    def _callee(self, msg: Request | Response) -> None:
        if not isinstance(msg, Request) or msg.method == "ACK":
            return
        copied = [f"{h.name}: {h.value}" for h in msg.headers if h.key in ("via", "from", "call-id", "cseq")]
        to = msg.get("to") or ""
        source = PeerAddress("udp", TRUNK, TRUNK_PORT)
        contact = f"Contact: <sip:pbx@{TRUNK}:{TRUNK_PORT}>"
        if msg.method == "INVITE":
            to += f";tag=uas{msg.call_id[:8]}"
            self._input("wan", _message("SIP/2.0 180 Ringing", [*copied, f"To: {to}", contact]), source)
            sdp = _SDP.format(user="pbx", ip=TRUNK, port=6000)
            headers = [*copied, f"To: {to}", contact, "Server: OutsidePBX/2.0", "Content-Type: application/sdp"]
            self._input("wan", _message("SIP/2.0 200 OK", headers, sdp), source)
        else:
            self._input("wan", _message("SIP/2.0 200 OK", [*copied, f"To: {to}"]), source)

    _to_caller: list[Request | Response]

    def _caller_request(self, method: str, i: int, cseq: int, ruri: str, to_tag: str, body: str = "") -> None:
        headers = [
            f"Via: SIP/2.0/UDP {PHONE}:{PHONE_PORT};branch=z9hG4bK-replay-{next(self._branches)}",
            f'From: "Alice Inside" <sip:alice@{PHONE}:{PHONE_PORT}>;tag=uac{i}',
            f"To: <sip:bob@{LAN_SBC}:{SBC_PORT}>{to_tag}",
            f"Call-ID: {i}-replay@{PHONE}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:alice@{PHONE}:{PHONE_PORT}>",
            "Max-Forwards: 70",
            "User-Agent: InsidePhone/1.0",
        ]
        if body:
            headers.append("Content-Type: application/sdp")
        self._input("lan", _message(f"{method} {ruri} SIP/2.0", headers, body), PeerAddress("udp", PHONE, PHONE_PORT))

    def place(self, i: int) -> tuple[str, str] | None:
        """INVITE, and the ACK for its 200; returns (Request-URI, To tag) for the BYE."""
        self._to_caller = []
        sdp = _SDP.format(user="alice", ip=PHONE, port=20000 + 2 * (i % 10000))
        self._caller_request("INVITE", i, 1, f"sip:bob@{LAN_SBC}:{SBC_PORT}", "", sdp)
        ok = next((m for m in self._to_caller if isinstance(m, Response) and m.status == 200), None)
        if ok is None:
            return None
        contacts = ok.contacts
        ruri = str(contacts[0].uri) if contacts else f"sip:bob@{LAN_SBC}:{SBC_PORT}"
        to_tag = f";tag={ok.to.tag}"
        self._caller_request("ACK", i, 1, ruri, to_tag)
        return ruri, to_tag

    def hang_up(self, i: int, dialog: tuple[str, str]) -> None:
        self._to_caller = []
        self._caller_request("BYE", i, 2, *dialog)
        if any(isinstance(m, Response) and m.status == 200 for m in self._to_caller):
            self.completed += 1


def replay(rate: int, seconds: float, profile: Path | None = None) -> tuple[int, int, float]:
    """(calls placed, calls completed, SBC CPU seconds)."""
    shell._direct = io.StringIO()  # logging on at info, as `sbc run` has it; the lines go nowhere
    shell.log.setLevel("INFO")
    calls = int(rate * seconds)
    tune = getattr(shell, "tune_garbage_collector", None)  # as `sbc run` does (absent in older trees)
    if tune is not None:
        tune()
    loop = asyncio.new_event_loop()
    # The process CPU clock: slower to read than the default wall clock, but a neighbour's load does not
    # end up in the figures (the replay has no peer to time out, so the slowdown changes nothing else).
    profiler = cProfile.Profile(time.process_time) if profile is not None else None
    try:
        with tempfile.TemporaryDirectory(prefix="sbc-replay-") as tmp:
            r = Replay(Path(tmp), loop)
            events: list[tuple[float, int, int]] = [(i / rate, 0, i) for i in range(calls)]  # (time, kind, call)
            heapq.heapify(events)
            dialogs: dict[int, tuple[str, str]] = {}
            if profiler is not None:
                profiler.enable()
            while events:
                at, kind, i = heapq.heappop(events)
                r.advance(at)
                if kind == 0:
                    dialog = r.place(i)
                    if dialog is not None:
                        dialogs[i] = dialog
                        heapq.heappush(events, (at + HOLD_S, 1, i))
                else:
                    r.hang_up(i, dialogs.pop(i))
                if len(shell._direct.getvalue()) > 1 << 20:  # type: ignore[union-attr]
                    shell._direct = io.StringIO()
            r.advance(r.app.sim_now + 40)  # the last transactions end
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(str(profile))
            r.app.dataplane.close()
            return calls, r.completed, r.cpu_s
    finally:
        loop.close()
        shell._direct = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.sip_replay", description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=400, help="calls per second of simulated time")
    parser.add_argument("--seconds", type=float, default=15.0, help="simulated seconds of calls placed")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the run here and print where the time went")
    args = parser.parse_args(argv if argv is not None else [])
    calls, completed, cpu = replay(args.rate, args.seconds, args.profile)
    if args.profile is not None:
        print_profile(args.profile, completed, roots=SBC_ROOTS)
    per_call = 1000 * cpu / max(completed, 1)
    print(
        f"replayed {calls} calls at {args.rate}/s of simulated time, {completed} completed: SBC CPU {cpu:.2f} s, "
        f"{per_call:.3f} ms per call -> {1000 / per_call:.0f} calls per CPU-second"
    )
    return 0 if completed == calls else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
