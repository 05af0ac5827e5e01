"""`sbc run`: the asyncio shell around the sans-IO core. Sockets in, `Core` calls, outputs dispatched.

The shell owns every task it starts, and dispatches each output type exhaustively: an output it does
not know is a bug and raises.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import math
import os
import signal
import time
import traceback
from pathlib import Path
from typing import Any, TextIO, assert_never

from dataplane.api import Dataplane, Fallback
from sbc import __version__
from sbc.b2bua.core import Core
from sbc.b2bua.media_ledger import MediaLedger
from sbc.b2bua.outputs import CallEnded, LogEvent, Output, SendSip
from sbc.call_records import CDR_FILE, CallRecordFile
from sbc.config.changes import live_part, restart_required
from sbc.config.loader import EMBEDDED_SOURCE, load_config
from sbc.config.model import SbcConfig
from sbc.control.contract import Answer, ContractError, ReloadReport, TransportReport, decode, encode
from sbc.control.figures import Running, call_list, call_record, registration_list, status_report
from sbc.control.server import ControlServer
from sbc.dialog_state import STATE_FILE, DialogPersistence
from sbc.sd_notify import Health
from sbc.sip.errors import RemoteProtocolError
from sbc.sip.framing import InvalidFramedMessage
from sbc.sip.message import Request, Response
from sbc.sip.transaction import PeerAddress
from sbc.supervision import Supervision
from sbc.transport.limits import StreamGuard
from sbc.transport.sockets import RealmSockets
from sbc.transport.tls_peers import TlsPeerVerdicts, client_context, peers_of
from sbc.yamlsource import ConfigError

log = logging.getLogger("sbc")
# The core's timers this late mean its dispatch is stuck although the loop runs: stop petting systemd.
CORE_OVERDUE_S = 5.0
# SBC_DEBUG_HOOKS=1 adds control commands that hang the loop or stall the core (watchdog tests only).
DEBUG_HOOKS_ENV = "SBC_DEBUG_HOOKS"


# The core's timers fire on a grid of TIMER_GRANULARITY_S. A busy core has a deadline every
# millisecond or so (retransmission and transaction timers of every call); rounded up to the grid,
# one tick handles every deadline within it, at most 100 ticks a second. SIP's timers are counted in
# half seconds (T1) and more, so 10 ms late changes nothing on the wire.
TIMER_GRANULARITY_S = 0.01


def timer_due(deadline: float) -> float:
    """When the tick for a core deadline runs: the deadline rounded up to the timer grid."""
    due = math.ceil(deadline / TIMER_GRANULARITY_S) * TIMER_GRANULARITY_S
    return due if due >= deadline else due + TIMER_GRANULARITY_S  # float rounding must not make it early


def make_dataplane(config: SbcConfig, loop: asyncio.AbstractEventLoop) -> tuple[Dataplane, Fallback | None]:
    """The relay the config's `dataplane:` section asks for (the environment overrides it): XDP when
    this machine can run it, else the userspace relay and why."""
    from dataplane.select import try_xdp
    from dataplane.settings import with_environment
    from dataplane.userspace import UserspaceRelay
    from dataplane.xdp.relay import XdpStartError

    try:
        chosen = with_environment(config.dataplane, os.environ)
    except ValueError as exc:
        raise XdpStartError(str(exc)) from None
    relay = try_xdp(chosen, [r.media.address for r in config.realms], loop)
    if isinstance(relay, Fallback):
        return UserspaceRelay(loop), relay
    emit("info", "dataplane.xdp_attached", attached=relay.describe())
    return relay, None


def confine_bpf(config: SbcConfig) -> None:
    """With `dataplane.loader: external` (sbc.service in the image) a privileged step loaded the
    program and pinned the maps: from here on this process may call bpf() for map access only
    (`dataplane.xdp.syscall_filter`). Called before the event loop and any thread start, before the
    first socket. Raises OSError when the kernel refuses the filter."""
    from dataplane.settings import BpfLoader, with_environment
    from dataplane.xdp.syscall_filter import restrict_bpf_to_map_access

    try:
        chosen = with_environment(config.dataplane, os.environ)
    except ValueError:
        return  # make_dataplane reports it
    if chosen.settings.loader is BpfLoader.EXTERNAL:
        restrict_bpf_to_map_access()
        emit("info", "sbc.bpf_confined", loader=chosen.origin("loader"))


class SbcApp:
    def __init__(self, config: SbcConfig, dataplane: Dataplane | None = None, fallback: Fallback | None = None) -> None:
        self.config = config
        self._dataplane = dataplane
        self.fallback = fallback
        self.started_at = time.time()
        self.sockets: dict[str, RealmSockets] = {}
        self.stream_guard = StreamGuard(config.limits.stream)  # TCP/TLS limits over every realm
        self.tls_verdicts = TlsPeerVerdicts()
        self.core: Core | None = None
        self.persistence: DialogPersistence | None = None
        self.control: ControlServer | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = asyncio.Event()
        self._cdr = CallRecordFile(config.state_dir / CDR_FILE, lambda: self.config.cdr)
        self.internal_errors = 0
        self.supervision = Supervision(self.health, self._status_line, emit)
        self._debug_hooks = os.environ.get(DEBUG_HOOKS_ENV) == "1"
        self._core_stalled = False
        self._started_at_loop = 0.0

    @property
    def dataplane_note(self) -> str:
        """Why the userspace relay runs, or where and how XDP is attached."""
        if self.fallback is not None:
            return self.fallback.detail
        describe = getattr(self._dataplane, "describe", None)
        return str(describe()) if callable(describe) else ""

    @property
    def dataplane(self) -> Dataplane:
        assert self._dataplane is not None
        return self._dataplane

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._started_at_loop = self._loop.time()
        self.config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self._dataplane is None:
            self._dataplane, self.fallback = make_dataplane(self.config, self._loop)
        ledger = MediaLedger(self._dataplane)
        self.core = Core(self.config, ledger)
        self.persistence = DialogPersistence(self.core, ledger, self.config.state_dir / STATE_FILE, self._loop, emit)
        try:
            restored = self.persistence.restore()  # before any SIP socket opens: re-takes the anchors
            for realm in self.config.realms:
                rs = RealmSockets(
                    realm, self._on_datagram, self._on_message, self._on_stream_error, self._on_send_failed,
                    guard=self.stream_guard, tls_peers=peers_of(realm, self.config.routes),
                    tls_verdicts=self.tls_verdicts,
                )  # fmt: skip
                await rs.start()
                self.sockets[realm.name] = rs
            self.control = ControlServer(self.config.control_path, self._control)
            await self.control.start()
        except BaseException:
            await self.stop()
            raise
        self._reschedule()
        emit(
            "info",
            "sbc.started",
            version=__version__,
            config=self.config.source,
            dataplane=self._dataplane.mode.value,
            dataplane_note=self.dataplane_note,
            restored_calls=restored,
            realms=[
                {
                    "name": r.name,
                    "address": str(r.address),
                    "listen": [f"{ls.transport}:{ls.port}" for ls in r.listeners],
                }
                for r in self.config.realms
            ],
            control=str(self.config.control_path),
        )
        self.supervision.started(self._loop)

    async def stop(self) -> None:
        self.supervision.stopping()
        if self._timer is not None:
            self._timer.cancel()
        if self.persistence is not None:
            self.persistence.flush()
        if self.control is not None:
            await self.control.close()
        for rs in self.sockets.values():
            await rs.close()
        if self._dataplane is not None:
            self._dataplane.close()
        self._cdr.close()

    async def run_forever(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stopping.set)
        if self.config.source != EMBEDDED_SOURCE:
            loop.add_signal_handler(signal.SIGHUP, self._reload_from_signal)
        await self.start()
        try:
            await self._stopping.wait()
        finally:
            emit("info", "sbc.stopping")
            await self.stop()

    # ---- inputs ----------------------------------------------------------------------------------
    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _on_datagram(self, realm: str, data: bytes, source: PeerAddress) -> None:
        assert self.core is not None
        try:
            outputs = self.core.datagram_received(realm, data, source, self._now())
        except Exception:
            outputs = self._internal_error("datagram", realm)
        self._dispatch(outputs)

    def _on_message(self, realm: str, msg: Request | Response, source: PeerAddress) -> None:
        assert self.core is not None
        try:
            outputs = self.core.message_received(realm, msg, source, self._now())
        except Exception:
            outputs = self._internal_error("message", realm)
        self._dispatch(outputs)

    def _on_send_failed(self, realm: str, txn_id: str) -> None:
        assert self.core is not None
        try:
            outputs = self.core.transport_failed(realm, txn_id, self._now())
        except Exception:
            outputs = self._internal_error("send", realm)
        self._dispatch(outputs)

    def _internal_error(self, where: str, realm: str = "") -> list[Output]:
        """A bug in the core must not take a TCP connection (asyncio closes it when its protocol
        raises) or the timer down with it: count it, log it with its traceback, carry on."""
        self.internal_errors += 1
        emit("error", "sbc.internal_error", where=where, realm=realm, traceback=traceback.format_exc(limit=12))
        return []

    def _on_stream_error(self, realm: str, exc: RemoteProtocolError, source: PeerAddress) -> None:
        assert self.core is not None
        data = exc.data if isinstance(exc, InvalidFramedMessage) else None
        try:
            outputs = self.core.stream_error_received(realm, exc, data, source, self._now())
        except Exception:
            outputs = self._internal_error("stream", realm)
        self._dispatch(outputs)

    def _on_timer(self) -> None:
        assert self.core is not None
        self._timer = None
        try:
            outputs = self.core.tick(self._now())
        except Exception:
            outputs = self._internal_error("tick")
        self._dispatch(outputs)

    def _reschedule(self) -> None:
        assert self.core is not None and self._loop is not None
        if self._core_stalled:
            return
        deadline = self.core.next_deadline()
        if deadline is None:
            return
        due = timer_due(deadline)
        if self._timer is not None:
            if self._timer.when() <= due:
                return  # a tick as early or earlier is armed: it handles this deadline too
            self._timer.cancel()
        self._timer = self._loop.call_at(due, self._on_timer)

    # ---- outputs ---------------------------------------------------------------------------------
    def _dispatch(self, outputs: list[Output]) -> None:
        for out in outputs:
            if isinstance(out, SendSip):
                self.sockets[out.realm].send(out.data, out.destination, out.txn_id)
            elif isinstance(out, LogEvent):
                emit(out.level, out.event, **out.fields)
            elif isinstance(out, CallEnded):
                self._write_cdr(out.record)
            else:
                assert_never(out)
        if self.persistence is not None:
            self.persistence.after_input()
        self._reschedule()

    def _write_cdr(self, ended: dict[str, object]) -> None:
        try:
            record = call_record(ended, time.time(), self._now())
        except ContractError:  # a core that reports less than a record holds is a bug: counted, logged
            self._internal_error("cdr")
            return
        encoded = _JSON.encode(encode(record))  # once for both the log line and the file: a record is large
        emit_encoded("info", "call.record", encoded)
        try:
            self._cdr.append_encoded(encoded)  # rotated by size and age (sbc.cdr): see sbc.call_records
        except OSError as exc:
            emit("warning", "cdr.write_failed", error=str(exc))  # opened again for the next record

    # ---- reload ----------------------------------------------------------------------------------
    def reload(self, path: Path) -> ReloadReport:
        """Re-read the config at `path`: a bad one changes nothing; the live parts of a good one apply
        at once (live calls stay up); what needs a restart is named and waits for it."""
        assert self.core is not None
        try:
            new = load_config(path)
        except ConfigError as exc:
            problems = [str(p) for p in exc.problems]
            emit("warning", "config.reload_refused", config=str(path), problems=problems)
            return ReloadReport(applied=False, restart_required=(), problems=tuple(problems))
        pending = restart_required(self.config, new)
        live = live_part(self.config, new)
        if live is None:
            emit("warning", "config.reload_needs_restart", config=str(path), restart_required=pending)
            return ReloadReport(applied=False, restart_required=tuple(pending), problems=())
        self.config = live
        self.core.reconfigure(live)
        self.stream_guard.configure(live.limits.stream)
        client_context.cache_clear()  # a CA file replaced under the same name is read again
        for realm in live.realms:
            if realm.name in self.sockets:
                self.sockets[realm.name].tls_peers = peers_of(realm, live.routes)
        logging.getLogger("sbc").setLevel(_LEVELS.get(live.log_level, logging.INFO))
        emit("info", "config.reloaded", config=live.source, restart_required=pending)
        return ReloadReport(applied=True, restart_required=tuple(pending), problems=())

    def _reload_from_signal(self) -> None:
        self.reload(Path(self.config.source))

    # ---- health (systemd watchdog) ---------------------------------------------------------------
    def health(self) -> Health:
        """Called from the event loop by the watchdog pet: the loop runs; are the core and control API alive?"""
        if self.core is None or self._loop is None:
            return Health(False, "not started")
        deadline = self.core.next_deadline()
        if deadline is not None:
            late = self._now() - max(deadline, self._started_at_loop)  # the core's first tick is due "at 0"
            if late > CORE_OVERDUE_S:
                return Health(False, f"core timers {late:.1f} s overdue")
        if self.control is None or not self.control.serving:
            return Health(False, "control socket closed")
        return Health(True)

    def _status_line(self) -> str:
        calls = len(self.core.calls) if self.core is not None else 0
        mode = self._dataplane.mode.value if self._dataplane is not None else "?"
        return f"{calls} active calls, media relay {mode}, realms {', '.join(r.name for r in self.config.realms)}"

    def _debug(self, command: str, args: dict[str, Any]) -> dict[str, Any]:
        if command == "debug.block-loop":  # a hung control plane: nothing else runs meanwhile
            seconds = min(float(args.get("seconds", 1.0)), 120.0)
            time.sleep(seconds)
            return {"blocked_s": seconds}
        if command == "debug.stall-core":  # the loop runs, the core's timers never fire again
            self._core_stalled = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return {"stalled": True}
        raise KeyError(command)

    # ---- control API -----------------------------------------------------------------------------
    def _control(self, command: str, args: dict[str, Any]) -> Answer | dict[str, Any]:
        assert self.core is not None
        if command == "reload":
            path = args.get("path") or (self.config.source if self.config.source != EMBEDDED_SOURCE else None)
            if not isinstance(path, str):
                raise ValueError("reload needs a `path` (the SBC runs on the embedded config)")
            return self.reload(Path(path))
        if command.startswith("debug.") and self._debug_hooks:
            return self._debug(command, args)
        now = self._now()
        if command == "status":
            # TCP/TLS: connections, limits reached by name, TLS peers' verification (sbc.transport)
            transport = decode(
                TransportReport, {**self.stream_guard.report(), "tls_peers": self.tls_verdicts.report()}
            )
            running = Running(
                __version__, self.started_at, self.internal_errors, self.fallback, self.dataplane_note, transport
            )
            return status_report(self.core, self.dataplane, running, time.time(), now)
        if command == "calls":
            return call_list(self.core, now)
        if command == "registrations":
            return registration_list(self.core, now)
        raise KeyError(command)




_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


# One encoder for every line: `json.dumps(..., default=str)` builds a new one per call.
_JSON = json.JSONEncoder(default=str)


def emit(level: str, event: str, **fields: object) -> None:
    """One structured JSON log line (call lines carry both legs' Call-IDs, see Call.log_ids)."""
    lvl = _LEVELS.get(level, logging.INFO)
    if not log.isEnabledFor(lvl):
        return
    _write_line(lvl, _JSON.encode({"ts": round(time.time(), 3), "level": level, "event": event, **fields}))


def emit_encoded(level: str, event: str, fields_json: str) -> None:
    """`emit` with the fields already encoded as one JSON object (`_JSON.encode`): the line is the same."""
    lvl = _LEVELS.get(level, logging.INFO)
    if not log.isEnabledFor(lvl):
        return
    head = _JSON.encode({"ts": round(time.time(), 3), "level": level, "event": event})
    _write_line(lvl, head[:-1] + (", " + fields_json[1:] if fields_json != "{}" else "}"))


def _write_line(lvl: int, line: str) -> None:
    if _direct is not None:
        # `sbc run` logs several lines per call: written straight to the handler's stream, they skip
        # the record, caller lookup and formatting of the logging module (the level check stays).
        _direct.write(line + "\n")
        _direct.flush()
    else:
        log.log(lvl, line)


_direct: TextIO | None = None  # the stream of the handler `setup_logging` installed


def setup_logging(level: str) -> None:
    global _direct
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("sbc")
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level, logging.INFO))
    root.propagate = False
    _direct = handler.stream


# The cyclic garbage collector scans its young generation whenever 700 more container objects exist
# than at its last pass (Python's default). A busy SBC keeps thousands of new ones alive for seconds
# (each call's transactions live 32 s after it), so it scanned young objects hundreds of times a
# second and promoted them into an old generation whose full scans grew with the live calls. Every
# 20,000 objects, and the older generations less often, measured on the SIP bench's replay (its
# scripted peers included): the collector's CPU time went from about 0.3 ms to 0.1 ms per call.
# Cyclic garbage is rare here (a few hundred objects over thousands of calls), so collecting the old
# generation seldom costs no memory worth counting.
GC_THRESHOLDS = (20_000, 50, 100)


def tune_garbage_collector() -> None:
    """For `sbc run`, once everything is imported and the config is loaded: what exists now lives as
    long as the process, so the collector stops scanning it (`gc.freeze`), and collects less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def state_path(config: SbcConfig) -> Path:
    return config.state_dir
