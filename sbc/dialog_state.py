"""Dialogs that outlive `sbc run`: the dialog state file, and the re-adoption of live calls at start.

ARCHITECTURE: "media of live calls keeps flowing while it restarts; dialogs are reloaded from its
state file". The relay survives by itself (XDP: program attached, session maps pinned); this module
makes the signalling survive, so that a BYE, re-INVITE or UPDATE after a restart is relayed with each
leg's own dialog state, and the relay is re-programmed exactly as it was. What a call's record holds
is said by its codec, `sbc.b2bua.dialog_codec`.

The file, `<state_dir>/dialogs.json` (mode 0600), is a journal of JSON lines (format 2): a header
line (format, boot, time written), then one line per change, `{"call": record}` when a confirmed call
appears or changes (it replaces any earlier record of that call) and `{"ended": call_ref}` when it
goes; reading it replays the lines in order. Changes are gathered and appended at most once per
WRITE_INTERVAL_S, each call encoded once per write whatever the number of inputs that touched it. A
busy SBC used to rewrite every live call ten times a second; now a write costs the calls that
changed, and the file is rewritten whole (compacted: one line per live call, written to a temporary
file renamed over the old one) only when what was appended since outgrows what it holds
(COMPACT_RATIO, at least COMPACT_MIN_BYTES), and by the first write of each process: a process never
appends to a file it did not write itself. The older format (format 1, one JSON document with every
call) is still read.

Durability: a change reaches the file (the page cache) within WRITE_INTERVAL_S of the input that made
it, which bounds what a killed process can lose; what was written stays. There is no fsync: a
process killed in the middle of an append leaves at most a torn last line, which reading skips, and
the rename of a compaction is atomic; after a power loss there is nothing to resume (the relay's
kernel state and the peers' NAT bindings are gone too). Timestamps are CLOCK_MONOTONIC (the event
loop's clock), valid across restarts within one boot; the file names its boot
(/proc/sys/kernel/random/boot_id) and a file from another boot is set aside, not loaded.

Restore (`DialogPersistence.restore`, at start, before any SIP socket opens): every anchor of every
saved call is re-taken with `Dataplane.allocate_at` (the XDP relay claims its pinned entries, the
userspace relay binds the same ports again), then programmed with its saved leg, then the saved pairs
are connected (hairpins included), and the core adopts the calls (`Core.adopt_calls`). A call whose
realm left the config, or whose ports are taken, is dropped and logged; the others are kept.

Noticing changes: the core names the call of every transaction-layer event before handling it
(`Core.call_observer`); those calls, the calls owning anchors the `MediaLedger` saw change, and the
saved calls the core no longer has (ended by a timer: session timer, media timeout) are looked at
again when the next write is due, not after every input.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataplane.api import AnchorPort, Endpoint, LegProgram
from sbc.b2bua.call import Call, CallState
from sbc.b2bua.core import Core
from sbc.b2bua.dialog_codec import (
    AnchorKey,
    SavedCall,
    StateFormatError,
    anchor_key,
    anchors_of,
    decode_call,
    encode_call,
)
from sbc.b2bua.media import CallMedia, StreamAnchors
from sbc.b2bua.media_ledger import MediaLedger

__all__ = ["STATE_FILE", "DialogPersistence", "DialogStateFile"]

FORMAT = 2  # the journal: a header line, then a line per change
WHOLE_DOCUMENT_FORMAT = 1  # one JSON document holding every call: written before the journal, still read
STATE_FILE = "dialogs.json"
WRITE_INTERVAL_S = 0.1
# The journal is compacted when what was appended since the last rewrite is more than COMPACT_RATIO
# times what that rewrite wrote, and at least COMPACT_MIN_BYTES: at 400 calls/s (1 s calls) that is a
# rewrite every few seconds instead of ten a second, and restore reads at most about three times the
# live calls' records.
COMPACT_RATIO = 2
COMPACT_MIN_BYTES = 256 * 1024
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")

Emit = Callable[..., None]  # sbc.app.emit(level, event, **fields)


def boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


def encode_record(record: dict[str, object]) -> str:
    return json.dumps(record, separators=(",", ":"))


def saved_line(encoded: str) -> str:
    """The journal line of a call saved or changed, from its record encoded by `encode_record`."""
    return '{"call":' + encoded + "}\n"


def ended_line(call_ref: str) -> str:
    return '{"ended":' + json.dumps(call_ref) + "}\n"


class DialogStateFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._boot_id = boot_id()  # it does not change while we run
        self._rewritten: int | None = None  # bytes of this process's last rewrite; None: none yet
        self._appended = 0  # bytes appended since

    def write(self, calls: list[dict[str, object]]) -> None:
        """The file anew with these calls' records."""
        self.rewrite([encode_record(c) for c in calls])

    @property
    def wants_rewrite(self) -> bool:
        """True before this process rewrote the file, and when the journal outgrew its last rewrite."""
        if self._rewritten is None:
            return True
        return self._appended > max(COMPACT_MIN_BYTES, COMPACT_RATIO * self._rewritten)

    def rewrite(self, calls: Iterable[str]) -> None:
        """A header and one line per call (records encoded by `encode_record`), atomically."""
        meta = {"format": FORMAT, "boot_id": self._boot_id, "written_at": time.time()}
        data = (json.dumps(meta, separators=(",", ":")) + "\n" + "".join(map(saved_line, calls))).encode()
        tmp = self.path.with_name(self.path.name + ".tmp")
        self._rewritten = None  # until the rename is done, the next write rewrites again
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        self._rewritten = len(data)
        self._appended = 0

    def append(self, lines: list[str]) -> None:
        """Journal lines (`saved_line`, `ended_line`) after what this process wrote last."""
        if self._rewritten is None:
            raise RuntimeError("the journal is appended to only after this process rewrote it")
        data = "".join(lines).encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)  # no O_CREAT: a vanished file is rewritten
            try:
                _write_all(fd, data)
            finally:
                os.close(fd)
        except OSError:
            self._rewritten = None  # a failed append may have left part of a line: rewrite next time
            raise
        self._appended += len(data)

    def read(self) -> tuple[list[dict[str, Any]], str | None]:
        """The saved calls, or ([], why the file is not used); no file: ([], None)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return [], None
        except (OSError, ValueError) as exc:
            return [], f"unreadable: {exc}"
        first, _, rest = text.partition("\n")
        try:
            head = json.loads(first)
        except ValueError as exc:
            return [], f"unreadable: {exc}"
        if not isinstance(head, dict) or head.get("format") not in (FORMAT, WHOLE_DOCUMENT_FORMAT):
            return [], f"not a dialog state file of format {FORMAT} or {WHOLE_DOCUMENT_FORMAT}"
        if head.get("boot_id") != boot_id():
            return [], "written before the last reboot: no call can have survived it"
        if head["format"] == WHOLE_DOCUMENT_FORMAT:
            if not isinstance(head.get("calls"), list):
                return [], f"not a dialog state file of format {WHOLE_DOCUMENT_FORMAT}"
            return [c for c in head["calls"] if isinstance(c, dict)], None
        return _replay(rest.split("\n")), None

    def set_aside(self) -> Path | None:
        """Keep an unusable file for a post-mortem instead of overwriting it."""
        target = self.path.with_name(self.path.name + ".stale")
        try:
            os.replace(self.path, target)
        except OSError:
            return None
        return target


def _replay(lines: list[str]) -> list[dict[str, Any]]:
    """The calls a journal's lines leave saved, in the order they were first saved. A line that does not
    parse is skipped: only the last one can be torn (a process killed while appending), and a process
    never appends to a file it did not rewrite first. A record without a call reference is kept as it
    is (restoring it fails and costs that record only)."""
    calls: dict[object, dict[str, Any]] = {}
    for number, line in enumerate(lines):
        if not line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        record = entry.get("call")
        if isinstance(record, dict):
            ref = record.get("call_ref")
            calls[ref if isinstance(ref, str) else ("unnamed", number)] = record
        elif isinstance(entry.get("ended"), str):
            calls.pop(entry["ended"], None)
    return list(calls.values())


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:  # bounded: each pass writes at least one byte or raises
        written = os.write(fd, view)
        if written <= 0:
            raise OSError("no progress writing the dialog state file")
        view = view[written:]


@dataclass(slots=True)
class _Plan:
    """A saved call whose anchors are re-taken, on its way back into the core."""

    call: Call
    programs: list[tuple[AnchorPort, LegProgram]] = field(default_factory=list)
    hairpin_peers: list[tuple[StreamAnchors, str, int]] = field(default_factory=list)  # stream, call, index
    partners: list[tuple[AnchorPort, AnchorKey]] = field(default_factory=list)


class DialogPersistence:
    """Keeps `<state_dir>/dialogs.json` in step with the core's confirmed calls, and restores them."""

    def __init__(
        self,
        core: Core,
        ledger: MediaLedger,
        path: Path,
        loop: asyncio.AbstractEventLoop,
        emit: Emit,
        *,
        write_interval_s: float = WRITE_INTERVAL_S,
    ) -> None:
        self.core = core
        self.ledger = ledger
        self.file = DialogStateFile(path)
        self._loop = loop
        self._emit = emit
        self._interval = write_interval_s
        self._encoded: dict[str, str] = {}  # call_ref -> its record as last written, encoded
        self._owner: dict[int, str] = {}  # anchor_id -> call_ref, for saved calls
        self._anchor_ids: dict[str, set[int]] = {}  # call_ref -> its anchors in _owner (no scan to forget them)
        self._touched: set[str] = set()  # calls events touched since the last write
        self._handle: asyncio.TimerHandle | None = None
        self._last_write = -math.inf
        self._write_failed = False
        self.writes = 0
        core.call_observer = self.observe

    # -- noticing changes --------------------------------------------------------------------------

    def observe(self, call: Call) -> None:
        """Called by the core with the call of each event, before the event is handled."""
        self._touched.add(call.call_ref)

    def after_input(self) -> None:
        """Called by the shell after every input the core handled (timer ticks included): a write is
        due when an event touched a call or the relay was told something; what changed is worked out
        then, once per write."""
        if self._handle is None and (self._touched or self.ledger.changed):
            self._schedule()

    def _changes(self) -> list[str]:
        """Journal lines for what changed since the last write; `_encoded` follows."""
        touched, self._touched = self._touched, set()
        for anchor_id in self.ledger.take_changed():
            ref = self._owner.get(anchor_id)
            if ref is not None:
                touched.add(ref)
        touched.update(self._encoded.keys() - self.core.calls.keys())  # ended without an event
        lines: list[str] = []
        for ref in touched:
            try:
                line = self._refresh(ref)
            except Exception as exc:  # saving must never stop the SBC from handling SIP
                self._emit("warning", "dialogs.save_failed", call=ref, error=f"{type(exc).__name__}: {exc}")
                continue
            if line is not None:
                lines.append(line)
        return lines

    def _refresh(self, ref: str) -> str | None:
        """The journal line for the call `ref` if it changed since it was last written."""
        call = self.core.find_call(ref)
        if call is None or call.state is not CallState.CONFIRMED:
            if self._encoded.pop(ref, None) is None:
                return None
            for anchor_id in self._anchor_ids.pop(ref, ()):
                if self._owner.get(anchor_id) == ref:
                    del self._owner[anchor_id]
            return ended_line(ref)
        encoded = encode_record(encode_call(call, self.ledger, self._owner_of))
        if self._encoded.get(ref) == encoded:
            return None
        self._encoded[ref] = encoded
        ids = self._anchor_ids.setdefault(ref, set())
        for anchor in anchors_of(call):
            self._owner[anchor.anchor_id] = ref
            ids.add(anchor.anchor_id)
        return saved_line(encoded)

    def _owner_of(self, media: CallMedia) -> str | None:
        for call in self.core.live_calls():  # hairpins only: rare
            if call.media is media:
                return call.call_ref
        return None

    # -- writing -----------------------------------------------------------------------------------

    def _schedule(self) -> None:
        if self._handle is not None:
            return
        delay = max(0.0, self._last_write + self._interval - self._loop.time())
        self._handle = self._loop.call_later(delay, self._write)

    def _write(self, *, rewrite: bool = False) -> None:
        """Append what changed, or rewrite the whole file (`rewrite`, or when the journal wants it);
        nothing changed and no rewrite asked: no write (a call being set up leaves no file)."""
        self._handle = None
        self._last_write = self._loop.time()
        lines = self._changes()
        rewrite = rewrite or self._write_failed  # what failed is in `_encoded` only: all of it again
        if not lines and not rewrite:
            return
        try:
            if rewrite or self.file.wants_rewrite:
                self.file.rewrite(self._encoded.values())
            else:
                self.file.append(lines)
        except OSError as exc:
            self._emit("warning", "dialogs.write_failed", path=str(self.file.path), error=str(exc))
            self._write_failed = True
            self._schedule()
            return
        self._write_failed = False
        self.writes += 1

    def flush(self) -> None:
        """Write now what is pending (a clean stop)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._write()

    @property
    def saved_calls(self) -> list[str]:
        return list(self._encoded)

    # -- restoring ---------------------------------------------------------------------------------

    def restore(self) -> int:
        """Re-create the saved calls; returns how many came back."""
        records, problem = self.file.read()
        if problem is not None:
            aside = self.file.set_aside()
            self._emit("warning", "dialogs.state_ignored", path=str(self.file.path), reason=problem,
                       moved_to=str(aside) if aside else None)  # fmt: skip
            return 0
        taken: dict[AnchorKey, AnchorPort] = {}
        plans: list[_Plan] = []
        for record in records:
            try:
                plans.append(self._take(record, taken, {plan.call.call_ref for plan in plans}))
            except Exception as exc:  # a bad record costs that call, never the start of the SBC
                self._emit("warning", "call.restore_failed", call=record.get("call_ref"),
                           reason=f"{type(exc).__name__}: {exc}")  # fmt: skip
        kept: list[_Plan] = []
        for plan in plans:
            try:
                for anchor, program in plan.programs:
                    self.ledger.program(anchor, program)
            except Exception as exc:
                self._emit("warning", "call.restore_failed", **plan.call.log_ids(), reason=f"program: {exc}")
                self._release(plan.call, taken)
                continue
            kept.append(plan)
        connected: set[frozenset[int]] = set()
        for plan in kept:
            for anchor, partner_key in plan.partners:
                partner = taken.get(partner_key)
                pair = frozenset((anchor.anchor_id, partner.anchor_id)) if partner is not None else None
                if partner is None or pair is None or pair in connected:
                    continue
                self.ledger.connect(anchor, partner)
                connected.add(pair)
        by_ref = {plan.call.call_ref: plan.call for plan in kept}
        for plan in kept:
            for stream, peer_ref, peer_index in plan.hairpin_peers:
                peer = by_ref.get(peer_ref)
                if peer is not None and peer_index < len(peer.media.streams):
                    stream.hairpin_peer = (peer.media, peer_index)
        self.core.adopt_calls(plan.call for plan in kept)
        for plan in kept:
            call = plan.call
            self._emit("info", "call.restored", **call.log_ids(), route=call.route,
                       anchors=[str(Endpoint(a.address, a.rtp_port)) for a in anchors_of(call)])  # fmt: skip
        self.ledger.take_changed()
        self._touched.update(plan.call.call_ref for plan in kept)
        if records:
            self._write(rewrite=True)  # the file now says exactly what came back
        return len(kept)

    def _take(self, record: dict[str, Any], taken: dict[AnchorKey, AnchorPort], planned: set[str]) -> _Plan:
        """Read one saved call and re-take its anchors (released again if any of them fails)."""
        saved: SavedCall = decode_call(record, self.core.realms, self.core.media.origin_user)
        call = saved.call
        if call.call_ref in planned or self.core.find_call(call.call_ref) is not None:
            raise StateFormatError("the same call twice")
        plan = _Plan(call, hairpin_peers=saved.hairpin_peers)
        try:
            for a in saved.anchors:
                anchor = self.ledger.allocate_at(a.realm, a.address, a.rtp_port)
                a.stream.anchors[a.leg] = anchor
                taken[anchor_key(anchor)] = anchor
                if a.program is not None:
                    plan.programs.append((anchor, a.program))
                if a.partner is not None:
                    plan.partners.append((anchor, a.partner))
        except BaseException:
            self._release(call, taken)
            raise
        return plan

    def _release(self, call: Call, taken: dict[AnchorKey, AnchorPort]) -> None:
        for anchor in anchors_of(call):
            taken.pop(anchor_key(anchor), None)
            self.ledger.release(anchor)
