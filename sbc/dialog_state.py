"""Dialogs that outlive `sbc run`: the dialog state file, and the re-adoption of live calls at start.

ARCHITECTURE: "media of live calls keeps flowing while it restarts; dialogs are reloaded from its
state file". The relay survives by itself (XDP: program attached, session maps pinned); this module
makes the signalling survive, so that a BYE, re-INVITE or UPDATE after a restart is relayed with each
leg's own dialog state, and the relay is re-programmed exactly as it was. What a call's record holds
is said by its codec, `sbc.b2bua.dialog_codec`.

The file, `<state_dir>/dialogs.json` (mode 0600), is rewritten atomically (a temporary file in the
same directory, renamed over the old one) whenever a confirmed call appears, changes or ends. Writes
are coalesced: at most one per WRITE_INTERVAL_S, which bounds what a crash can lose. There is no
fsync: a killed process cannot leave a torn file behind a rename, and after a power loss there is
nothing to resume (the relay's kernel state and the peers' NAT bindings are gone too). Timestamps are
CLOCK_MONOTONIC (the event loop's clock), valid across restarts within one boot; the file names its
boot (/proc/sys/kernel/random/boot_id) and a file from another boot is set aside, not loaded.

Restore (`DialogPersistence.restore`, at start, before any SIP socket opens): every anchor of every
saved call is re-taken with `Dataplane.allocate_at` (the XDP relay claims its pinned entries, the
userspace relay binds the same ports again), then programmed with its saved leg, then the saved pairs
are connected (hairpins included), and the core adopts the calls (`Core.adopt_calls`). A call whose
realm left the config, or whose ports are taken, is dropped and logged; the others are kept.

Noticing changes: the core names the call of every transaction-layer event before handling it
(`Core.call_observer`); those calls, the calls owning anchors the `MediaLedger` saw change, and
(after timer ticks) the saved calls that are gone, are looked at again after the input.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from collections.abc import Callable
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

FORMAT = 1
STATE_FILE = "dialogs.json"
WRITE_INTERVAL_S = 0.1
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")

Emit = Callable[..., None]  # sbc.app.emit(level, event, **fields)


def boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


def encode_record(record: dict[str, object]) -> str:
    return json.dumps(record, separators=(",", ":"))


class DialogStateFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._boot_id = boot_id()  # it does not change while we run

    def write(self, calls: list[dict[str, object]]) -> None:
        self.write_encoded([encode_record(c) for c in calls])

    def write_encoded(self, calls: list[str]) -> None:
        """Write records already encoded by `encode_record`: a busy SBC rewrites the file up to
        1 / WRITE_INTERVAL_S times a second, and encoding every live call each time cost most of its
        CPU; each record is encoded once per change instead."""
        meta = {"format": FORMAT, "boot_id": self._boot_id, "written_at": time.time()}
        head = json.dumps(meta, separators=(",", ":"))
        text = head[:-1] + ',"calls":[' + ",".join(calls) + "]}"
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, self.path)

    def read(self) -> tuple[list[dict[str, Any]], str | None]:
        """The saved calls, or ([], why the file is not used); no file: ([], None)."""
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return [], None
        except (OSError, ValueError) as exc:
            return [], f"unreadable: {exc}"
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("calls"), list):
            return [], f"not a dialog state file of format {FORMAT}"
        if doc.get("boot_id") != boot_id():
            return [], "written before the last reboot: no call can have survived it"
        return [c for c in doc["calls"] if isinstance(c, dict)], None

    def set_aside(self) -> Path | None:
        """Keep an unusable file for a post-mortem instead of overwriting it."""
        target = self.path.with_name(self.path.name + ".stale")
        try:
            os.replace(self.path, target)
        except OSError:
            return None
        return target


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
        self._saved: dict[str, dict[str, object]] = {}  # call_ref -> record as last written
        self._encoded: dict[str, str] = {}  # call_ref -> that record, encoded
        self._owner: dict[int, str] = {}  # anchor_id -> call_ref, for saved calls
        self._anchor_ids: dict[str, set[int]] = {}  # call_ref -> its anchors in _owner (no scan to forget them)
        self._touched: set[str] = set()
        self._dirty = False
        self._handle: asyncio.TimerHandle | None = None
        self._last_write = -math.inf
        self.writes = 0
        core.call_observer = self.observe

    # -- noticing changes --------------------------------------------------------------------------

    def observe(self, call: Call) -> None:
        """Called by the core with the call of each event, before the event is handled."""
        self._touched.add(call.call_ref)

    def check_ended(self) -> None:
        """After a timer tick: calls ended by timers (session timer, media timeout) without an event."""
        self._touched.update(ref for ref in self._saved if self.core.find_call(ref) is None)

    def after_input(self) -> None:
        """Called by the shell after every input the core handled."""
        touched, self._touched = self._touched, set()
        for anchor_id in self.ledger.take_changed():
            ref = self._owner.get(anchor_id)
            if ref is not None:
                touched.add(ref)
        for ref in touched:
            try:
                self._refresh(ref)
            except Exception as exc:  # saving must never stop the SBC from handling SIP
                self._emit("warning", "dialogs.save_failed", call=ref, error=f"{type(exc).__name__}: {exc}")
        if self._dirty:
            self._schedule()

    def _refresh(self, ref: str) -> None:
        call = self.core.find_call(ref)
        if call is None or call.state is not CallState.CONFIRMED:
            if self._saved.pop(ref, None) is not None:
                self._encoded.pop(ref, None)
                self._dirty = True
                for anchor_id in self._anchor_ids.pop(ref, ()):
                    if self._owner.get(anchor_id) == ref:
                        del self._owner[anchor_id]
            return
        record = encode_call(call, self.ledger, self._owner_of)
        if self._saved.get(ref) != record:
            self._saved[ref] = record
            self._encoded[ref] = encode_record(record)
            self._dirty = True
            for anchor in anchors_of(call):
                self._owner[anchor.anchor_id] = ref
                self._anchor_ids.setdefault(ref, set()).add(anchor.anchor_id)

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

    def _write(self) -> None:
        self._handle = None
        self._last_write = self._loop.time()
        try:
            self.file.write_encoded(list(self._encoded.values()))
        except OSError as exc:
            self._emit("warning", "dialogs.write_failed", path=str(self.file.path), error=str(exc))
            return
        self._dirty = False
        self.writes += 1

    def flush(self) -> None:
        """Write now what is pending (a clean stop)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._dirty:
            self._write()

    @property
    def saved_calls(self) -> list[str]:
        return list(self._saved)

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
        for plan in kept:
            self._refresh(plan.call.call_ref)
        if records:
            self._dirty = True  # the file now says exactly what came back
            self.flush()
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
