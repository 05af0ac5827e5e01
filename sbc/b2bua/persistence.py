"""Dialogs that outlive `sbc run`: the dialog state file, and the re-adoption of live calls at start.

ARCHITECTURE: "media of live calls keeps flowing while it restarts; dialogs are reloaded from its
state file". The relay survives by itself (XDP: program attached, session maps pinned); this module
makes the signalling survive, so that a BYE, re-INVITE or UPDATE after a restart is relayed with each
leg's own dialog state, and the relay is re-programmed exactly as it was.

Saved, per confirmed call (a call still being set up cannot be resumed: its transactions die with the
process): both legs' dialog state (RFC 3261 §12.1: Call-ID, local and remote tag, local and remote
CSeq, route set, remote target, our Contact, where requests go and over which transport), route,
timestamps, session timer, header-rule store, and its media: each stream's anchors (realm, address,
RTP port), the leg program last given to each anchor, the anchor it is connected to, the SDP endpoints
last seen (hold, rtcp-mux, clock rates), hairpin links, and the o= state of each leg (sess-id kept;
sess-version moved on by one, so whatever SDP is sent next is newer than the last one the peer saw:
RFC 3264 §8).

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
are connected (hairpins included), and the calls and their dialogs are put back into the core. A call
whose realm left the config, or whose ports are taken, is dropped and logged; the others are kept.

Noticing changes: the core hands every transaction-layer event to `observe` before handling it (its
one hook for this); the calls those events belong to, the calls owning anchors the `MediaLedger` saw
change, and (after timer ticks) the saved calls that are gone, are looked at again after the input.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataplane.api import AnchorPort, Endpoint, Latch, LegProgram
from sbc.b2bua.call import Call, CallState, Leg
from sbc.b2bua.media import CallMedia, StreamAnchors
from sbc.b2bua.media_ledger import MediaLedger
from sbc.config.model import MediaMode
from sbc.sdp.endpoints import MediaEndpoint
from sbc.sdp.fields import Direction
from sbc.sdp.origin import OriginRewriter
from sbc.sip import transaction as tx
from sbc.sip.transaction import PeerAddress

if TYPE_CHECKING:
    from sbc.b2bua.core import Core

__all__ = ["STATE_FILE", "DialogPersistence", "DialogStateFile", "call_record"]

FORMAT = 1
STATE_FILE = "dialogs.json"
WRITE_INTERVAL_S = 0.1
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")

Emit = Callable[..., None]  # sbc.app.emit(level, event, **fields)
AnchorKey = tuple[str, int]  # (address, RTP port): what names an anchor across processes


class StateFormatError(ValueError):
    """A record in the state file cannot be turned back into a call."""


def boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


# ---- records -----------------------------------------------------------------------------------


def _endpoint(ep: Endpoint | None) -> list[object] | None:
    return None if ep is None else [str(ep.address), ep.port]


def _endpoint_of(value: object) -> Endpoint | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2 or not isinstance(value[1], int):
        raise StateFormatError(f"bad endpoint {value!r}")
    return Endpoint(ipaddress.ip_address(str(value[0])), value[1])


_ENDPOINT_FIELDS = ("remote_rtp", "remote_rtcp")


def program_record(leg: LegProgram) -> dict[str, object]:
    out: dict[str, object] = {}
    for f in dataclasses.fields(leg):
        value = getattr(leg, f.name)
        if f.name in _ENDPOINT_FIELDS:
            out[f.name] = _endpoint(value)
        elif isinstance(value, Latch):
            out[f.name] = value.value
        else:
            out[f.name] = value
    return out


def program_of(record: dict[str, Any]) -> LegProgram:
    known = {f.name for f in dataclasses.fields(LegProgram)}
    kwargs: dict[str, Any] = {}
    for name, value in record.items():
        if name not in known:
            continue  # written by a newer version: its default is the best we can do
        if name in _ENDPOINT_FIELDS:
            kwargs[name] = _endpoint_of(value)
        elif name == "latch":
            kwargs[name] = Latch(value)
        else:
            kwargs[name] = value
    return LegProgram(**kwargs)


def leg_record(leg: Leg) -> dict[str, object]:
    out: dict[str, object] = {}
    for f in dataclasses.fields(leg):
        if f.name == "scrubber":
            continue  # derived, rebuilt on first use
        value = getattr(leg, f.name)
        if isinstance(value, PeerAddress):
            out[f.name] = {"transport": value.transport, "host": value.host, "port": value.port}
        elif isinstance(value, list):
            out[f.name] = list(value)
        else:
            out[f.name] = value
    return out


def leg_of(record: dict[str, Any]) -> Leg:
    known = {f.name for f in dataclasses.fields(Leg)} - {"scrubber"}
    kwargs = {name: value for name, value in record.items() if name in known}
    dest = kwargs.get("destination")
    if not isinstance(dest, dict):
        raise StateFormatError("leg without destination")
    kwargs["destination"] = PeerAddress(str(dest["transport"]), str(dest["host"]), int(dest["port"]))
    kwargs["route_set"] = list(kwargs.get("route_set") or [])
    return Leg(**kwargs)


def _anchor_key(anchor: AnchorPort) -> AnchorKey:
    return (str(anchor.address), anchor.rtp_port)


def _media_endpoint(ep: MediaEndpoint) -> dict[str, object]:
    return {
        "address": str(ep.address),
        "rtp_port": ep.rtp_port,
        "rtcp_address": str(ep.rtcp_address),
        "rtcp_port": ep.rtcp_port,
        "rtcp_mux": ep.rtcp_mux,
        "direction": ep.direction.value,
        "rejected": ep.rejected,
    }


def _media_endpoint_of(d: dict[str, Any]) -> MediaEndpoint:
    return MediaEndpoint(
        address=ipaddress.ip_address(str(d["address"])),
        rtp_port=int(d["rtp_port"]),
        rtcp_address=ipaddress.ip_address(str(d["rtcp_address"])),
        rtcp_port=int(d["rtcp_port"]),
        rtcp_mux=bool(d["rtcp_mux"]),
        direction=Direction(d["direction"]),
        rejected=bool(d["rejected"]),
    )


def _legs(d: dict[str, Any] | None) -> dict[int, Any]:
    return {int(k): v for k, v in (d or {}).items()}


def media_record(
    media: CallMedia, ledger: MediaLedger, owner_of: Callable[[CallMedia], str | None] = lambda m: None
) -> dict[str, object]:
    """`owner_of` names the call of another call's media (a hairpin partner)."""
    streams = []
    for stream in media.streams:
        anchors: dict[str, object] = {}
        for leg, anchor in sorted(stream.anchors.items()):
            program = ledger.program_of(anchor)
            partner = ledger.partner_of(anchor)
            anchors[str(leg)] = {
                "realm": anchor.realm,
                "address": str(anchor.address),
                "rtp_port": anchor.rtp_port,
                "program": program_record(program) if program is not None else None,
                "partner": list(_anchor_key(partner)) if partner is not None else None,
            }
        peer = None
        if stream.hairpin_peer is not None:
            peer_ref = owner_of(stream.hairpin_peer[0])
            peer = [peer_ref, stream.hairpin_peer[1]] if peer_ref is not None else None
        streams.append(
            {
                "anchors": anchors,
                "endpoints": {str(k): _media_endpoint(ep) for k, ep in sorted(stream.endpoints.items())},
                "muxed": {str(k): v for k, v in sorted(stream.muxed.items())},
                "clock_rates": {str(k): v for k, v in sorted(stream.clock_rates.items())},
                "hairpinned": stream.hairpinned,
                "hairpin_leg": stream.hairpin_leg,
                "hairpin_peer": peer,
                "hairpin_events": stream.hairpin_events,
                "one_way_events": stream.one_way_events,
            }
        )
    return {
        "mode": media.mode.value,
        "realms": list(media.realms),
        "origins": {str(leg): {"sess_id": o.sess_id, "version": o.sess_version} for leg, o in media.origins.items()},
        "streams": streams,
    }


def call_record(
    call: Call, ledger: MediaLedger, owner_of: Callable[[CallMedia], str | None] = lambda m: None
) -> dict[str, object]:
    return {
        "call_ref": call.call_ref,
        "route": call.route,
        "created_at": call.created_at,
        "answered_at": call.answered_at,
        "final_status": call.final_status,
        "session_expires_s": call.session_expires_s,
        "session_refreshed_at": call.session_refreshed_at,
        "store": dict(call.store),
        "legs": [leg_record(leg) for leg in call.legs],
        "media": media_record(call.media, ledger, owner_of),
    }


def _anchors_of(call: Call) -> Iterable[AnchorPort]:
    for stream in call.media.streams:
        yield from stream.anchors.values()


# ---- the file ----------------------------------------------------------------------------------


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


# ---- the coordinator ---------------------------------------------------------------------------


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
        core.observer = self.observe

    # -- noticing changes --------------------------------------------------------------------------

    def observe(self, realm: str, event: tx.Event) -> None:
        """Called by the core with each event, before it is handled."""
        call = self._call_of(realm, event)
        if call is not None:
            self._touched.add(call.call_ref)

    def _call_of(self, realm: str, event: tx.Event) -> Call | None:
        core = self.core
        if isinstance(event, tx.RequestReceived | tx.AckReceived):
            tag = event.request.to.tag
            found = core.dialogs.get((realm, event.request.call_id, tag)) if tag else None
            return found[0] if found is not None else None
        if isinstance(event, tx.ResponseReceived | tx.TransactionTimedOut | tx.TransportError):
            ctx = core.client_ctx.get((realm, event.txn_id))
            return ctx.call if ctx is not None else None
        if isinstance(event, tx.CancelReceived | tx.AckTimedOut):
            sctx = core.server_ctx.get((realm, event.txn_id))
            return sctx.call if sctx is not None else None
        return None

    def check_ended(self) -> None:
        """After a timer tick: calls ended by timers (session timer, media timeout) without an event."""
        self._touched.update(ref for ref in self._saved if ref not in self.core.calls)

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
        call = self.core.calls.get(ref)
        if call is None or call.state is not CallState.CONFIRMED:
            if self._saved.pop(ref, None) is not None:
                self._encoded.pop(ref, None)
                self._dirty = True
                for anchor_id in self._anchor_ids.pop(ref, ()):
                    if self._owner.get(anchor_id) == ref:
                        del self._owner[anchor_id]
            return
        record = call_record(call, self.ledger, self._owner_of)
        if self._saved.get(ref) != record:
            self._saved[ref] = record
            self._encoded[ref] = encode_record(record)
            self._dirty = True
            for anchor in _anchors_of(call):
                self._owner[anchor.anchor_id] = ref
                self._anchor_ids.setdefault(ref, set()).add(anchor.anchor_id)

    def _owner_of(self, media: CallMedia) -> str | None:
        for ref, call in self.core.calls.items():  # hairpins only: rare
            if call.media is media:
                return ref
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
                plans.append(self._take(record, taken))
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
                for anchor in _anchors_of(plan.call):
                    taken.pop(_anchor_key(anchor), None)
                    self.ledger.release(anchor)
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
        for plan in kept:
            call = plan.call
            self.core.calls[call.call_ref] = call
            for leg in call.legs:
                self.core.dialogs[(leg.realm, leg.call_id, leg.local_tag)] = (call, leg)
            self.core.media.adopt(call.media)
            self._emit("info", "call.restored", **call.log_ids(), route=call.route,
                       anchors=[str(Endpoint(a.address, a.rtp_port)) for a in _anchors_of(call)])  # fmt: skip
        self.ledger.take_changed()
        for plan in kept:
            self._refresh(plan.call.call_ref)
        if records:
            self._dirty = True  # the file now says exactly what came back
            self.flush()
        return len(kept)

    def _take(self, record: dict[str, Any], taken: dict[AnchorKey, AnchorPort]) -> _Plan:
        """Parse one saved call and re-take its anchors (released again if any of them fails)."""
        realms = self.core.realms
        legs = record["legs"]
        if not isinstance(legs, list) or len(legs) != 2:
            raise StateFormatError("a call has two legs")
        caller, callee = leg_of(legs[0]), leg_of(legs[1])
        if (caller.index, callee.index) != (0, 1):
            raise StateFormatError("leg indexes")
        m = record["media"]
        media = CallMedia(MediaMode(m["mode"]), (str(m["realms"][0]), str(m["realms"][1])))
        for name in (caller.realm, callee.realm, *media.realms):
            if name not in realms:
                raise StateFormatError(f"realm {name!r} is not in the config any more")
        for leg_text, origin in (m.get("origins") or {}).items():
            leg_index = int(leg_text)
            address = realms[media.realms[leg_index]].media.address
            media.origins[leg_index] = OriginRewriter(
                self.core.media.origin_user, address, int(origin["sess_id"]), int(origin["version"]) + 1
            )
        call = Call(
            call_ref=str(record["call_ref"]),
            legs=(caller, callee),
            route=str(record["route"]),
            media=media,
            created_at=float(record["created_at"]),
            state=CallState.CONFIRMED,
            answered_at=None if record.get("answered_at") is None else float(record["answered_at"]),
            final_status=record.get("final_status"),
            session_expires_s=record.get("session_expires_s"),
            session_refreshed_at=float(record.get("session_refreshed_at") or 0.0),
            store={str(k): str(v) for k, v in (record.get("store") or {}).items()},
        )
        if call.call_ref in self.core.calls:
            raise StateFormatError("the same call twice")
        plan = _Plan(call)
        try:
            for s in m["streams"]:
                stream = StreamAnchors(
                    endpoints={k: _media_endpoint_of(v) for k, v in _legs(s.get("endpoints")).items()},
                    muxed={k: bool(v) for k, v in _legs(s.get("muxed")).items()},
                    clock_rates={k: int(v) for k, v in _legs(s.get("clock_rates")).items()},
                    hairpinned=bool(s.get("hairpinned")),
                    hairpin_leg=s.get("hairpin_leg"),
                    hairpin_events=int(s.get("hairpin_events") or 0),
                    one_way_events=int(s.get("one_way_events") or 0),
                )
                if s.get("hairpin_peer"):
                    plan.hairpin_peers.append((stream, str(s["hairpin_peer"][0]), int(s["hairpin_peer"][1])))
                media.streams.append(stream)
                for leg_text, a in s["anchors"].items():
                    address = ipaddress.ip_address(str(a["address"]))
                    anchor = self.ledger.allocate_at(str(a["realm"]), address, int(a["rtp_port"]))
                    stream.anchors[int(leg_text)] = anchor
                    taken[_anchor_key(anchor)] = anchor
                    if a.get("program") is not None:
                        plan.programs.append((anchor, program_of(a["program"])))
                    if a.get("partner") is not None:
                        plan.partners.append((anchor, (str(a["partner"][0]), int(a["partner"][1]))))
        except BaseException:
            for anchor in _anchors_of(call):
                taken.pop(_anchor_key(anchor), None)
                self.ledger.release(anchor)
            raise
        return plan
