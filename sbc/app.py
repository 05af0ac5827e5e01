"""`sbc run`: the asyncio shell around the sans-IO core. Sockets in, `Core` calls, outputs dispatched.

The shell owns every task it starts, and dispatches each output type exhaustively: an output it does
not know is a bug and raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import os
import signal
import time
import traceback
from pathlib import Path
from typing import Any, TextIO, assert_never

from dataplane.api import Dataplane, DataplaneMode
from sbc import __version__
from sbc.b2bua.core import Core
from sbc.b2bua.media_ledger import MediaLedger
from sbc.b2bua.outputs import CallEnded, LogEvent, Output, Transmit
from sbc.b2bua.persistence import STATE_FILE, DialogPersistence
from sbc.config.changes import live_part, restart_required
from sbc.config.loader import EMBEDDED_SOURCE, load_config
from sbc.config.model import SbcConfig
from sbc.control.figures import status_figures
from sbc.control.server import ControlServer
from sbc.sd_notify import Health
from sbc.sip.errors import RemoteProtocolError
from sbc.sip.framing import InvalidFramedMessage
from sbc.sip.message import Request, Response
from sbc.sip.transaction import PeerAddress
from sbc.supervision import Supervision
from sbc.transport.sockets import RealmSockets
from sbc.yamlsource import ConfigError

log = logging.getLogger("sbc")
# The core's timers this late mean its dispatch is stuck although the loop runs: stop petting systemd.
CORE_OVERDUE_S = 5.0
# SBC_DEBUG_HOOKS=1 adds control commands that hang the loop or stall the core (watchdog tests only).
DEBUG_HOOKS_ENV = "SBC_DEBUG_HOOKS"


def make_dataplane(config: SbcConfig, loop: asyncio.AbstractEventLoop) -> tuple[Dataplane, str]:
    """XDP when running as root on a kernel with BPF and the object is built; else the userspace relay."""
    from dataplane.select import try_xdp
    from dataplane.userspace import UserspaceRelay

    dp, why = try_xdp(config, loop)
    if dp is not None:
        return dp, why
    return UserspaceRelay(loop), why


class SbcApp:
    def __init__(self, config: SbcConfig, dataplane: Dataplane | None = None, fallback_reason: str = "") -> None:
        self.config = config
        self._dataplane = dataplane
        self.fallback_reason = fallback_reason
        self.started_at = time.time()
        self.sockets: dict[str, RealmSockets] = {}
        self.core: Core | None = None
        self.persistence: DialogPersistence | None = None
        self.control: ControlServer | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = asyncio.Event()
        self._cdr_path = config.state_dir / "cdr.jsonl"
        self._cdr_file: TextIO | None = None  # kept open: one record per call ends, many a second
        self.internal_errors = 0
        self.supervision = Supervision(self.health, self._status_line, emit)
        self._debug_hooks = os.environ.get(DEBUG_HOOKS_ENV) == "1"
        self._core_stalled = False
        self._started_at_loop = 0.0

    @property
    def dataplane(self) -> Dataplane:
        assert self._dataplane is not None
        return self._dataplane

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._started_at_loop = self._loop.time()
        self.config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self._dataplane is None:
            self._dataplane, self.fallback_reason = make_dataplane(self.config, self._loop)
        ledger = MediaLedger(self._dataplane)
        self.core = Core(self.config, ledger)
        self.persistence = DialogPersistence(self.core, ledger, self.config.state_dir / STATE_FILE, self._loop, emit)
        try:
            restored = self.persistence.restore()  # before any SIP socket opens: re-takes the anchors
            for realm in self.config.realms:
                rs = RealmSockets(
                    realm, self._on_datagram, self._on_message, self._on_stream_error, self._on_send_failed
                )
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
            dataplane_note=self.fallback_reason,
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
        if self._cdr_file is not None:
            self._cdr_file.close()
            self._cdr_file = None

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
        if self.persistence is not None:
            self.persistence.check_ended()
        self._dispatch(outputs)

    def _reschedule(self) -> None:
        assert self.core is not None and self._loop is not None
        if self._core_stalled:
            return
        deadline = self.core.next_deadline()
        if deadline is None:
            return
        if self._timer is not None:
            if self._timer.when() <= deadline:
                return
            self._timer.cancel()
        self._timer = self._loop.call_at(deadline, self._on_timer)

    # ---- outputs ---------------------------------------------------------------------------------
    def _dispatch(self, outputs: list[Output]) -> None:
        for out in outputs:
            if isinstance(out, Transmit):
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

    def _write_cdr(self, record: dict[str, object]) -> None:
        record = {"recorded_at": round(time.time(), 3), **_wall_clock_times(record, time.time() - self._now())}
        emit("info", "call.record", **record)
        try:
            if self._cdr_file is not None and not _same_file(self._cdr_file, self._cdr_path):
                self._cdr_file.close()  # rotated or removed meanwhile: write to the file at the path
                self._cdr_file = None
            if self._cdr_file is None:
                self._cdr_file = self._cdr_path.open("a", encoding="utf-8")
            self._cdr_file.write(json.dumps(record, default=str) + "\n")
            self._cdr_file.flush()  # a record is whole in the file once the call is reported ended
        except OSError as exc:
            emit("warning", "cdr.write_failed", error=str(exc))
            if self._cdr_file is not None:
                with contextlib.suppress(OSError):
                    self._cdr_file.close()
                self._cdr_file = None  # opened again for the next record (the disk may be back)

    # ---- reload ----------------------------------------------------------------------------------
    def reload(self, path: Path) -> dict[str, Any]:
        """Re-read the config at `path`: a bad one changes nothing; the live parts of a good one apply
        at once (live calls stay up); what needs a restart is named and waits for it."""
        assert self.core is not None
        try:
            new = load_config(path)
        except ConfigError as exc:
            problems = [str(p) for p in exc.problems]
            emit("warning", "config.reload_refused", config=str(path), problems=problems)
            return {"applied": False, "restart_required": [], "problems": problems}
        pending = restart_required(self.config, new)
        live = live_part(self.config, new)
        if live is None:
            emit("warning", "config.reload_needs_restart", config=str(path), restart_required=pending)
            return {"applied": False, "restart_required": pending, "problems": []}
        self.config = live
        self.core.reconfigure(live)
        logging.getLogger("sbc").setLevel(_LEVELS.get(live.log_level, logging.INFO))
        emit("info", "config.reloaded", config=live.source, restart_required=pending)
        return {"applied": True, "restart_required": pending, "problems": []}

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
    def _control(self, command: str, args: dict[str, Any]) -> dict[str, Any]:
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
            c = self.core.counters
            return {
                "version": __version__,
                "uptime_s": round(time.time() - self.started_at, 1),
                "config": self.config.source,
                "dataplane": self.dataplane.mode.value,
                "dataplane_note": self.fallback_reason if self.dataplane.mode is DataplaneMode.USERSPACE else "",
                "realms": [
                    {
                        "name": r.name,
                        "address": str(r.address),
                        "listen": [f"{ls.transport}:{ls.port}" for ls in r.listeners],
                        "media": f"{r.media.address}:{r.media.port_min}-{r.media.port_max}",
                    }
                    for r in self.config.realms
                ],
                "active_calls": len(self.core.calls),
                "registrations": len(self.core.registrations.active(now)),
                "counters": {
                    "calls_total": c.calls_total,
                    "calls_answered": c.calls_answered,
                    "calls_failed": c.calls_failed,
                    "calls_cancelled": c.calls_cancelled,
                    "malformed_answered": c.malformed_answered,
                    "malformed_dropped": c.malformed_dropped,
                    "loops_detected": c.loops_detected,
                    "internal_errors": self.internal_errors,
                    "options_answered": c.options_answered,
                    "registrations_relayed": c.registrations_relayed,
                    "messages_received": c.received,
                    "hairpins": self.core.media.hairpins,
                    "anchors_allocated": self.core.media.anchors_allocated,
                },
                **status_figures(self.core, self.dataplane, self.fallback_reason, now),
            }
        if command == "calls":
            return {"calls": self.core.snapshot_calls(now)}
        if command == "registrations":
            return {
                "registrations": [
                    {
                        "aor": b.aor,
                        "contact": b.contact_uri,
                        "flow": str(b.flow),
                        "expires_in_s": round(b.expires_at - now),
                    }
                    for b in self.core.registrations.active(now)
                ]
            }
        raise KeyError(command)


def _same_file(fh: TextIO, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fh.fileno()).st_ino
    except OSError:
        return False


CDR_TIMES = ("start", "answer", "end")


def _wall_clock_times(record: dict[str, object], offset_s: float) -> dict[str, object]:
    """The core stamps a call with its monotonic clock; a call record needs wall-clock times that a
    billing or NOC system can read: ISO 8601 in UTC, to the millisecond (None stays None)."""
    converted = dict(record)
    for key in CDR_TIMES:
        value = record.get(key)
        if isinstance(value, int | float):
            wall = datetime.datetime.fromtimestamp(value + offset_s, tz=datetime.UTC)
            converted[key] = wall.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return converted


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def emit(level: str, event: str, **fields: object) -> None:
    """One structured JSON log line (call lines carry both legs' Call-IDs, see Call.log_ids)."""
    lvl = _LEVELS.get(level, logging.INFO)
    if not log.isEnabledFor(lvl):
        return
    line = json.dumps({"ts": round(time.time(), 3), "level": level, "event": event, **fields}, default=str)
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


def state_path(config: SbcConfig) -> Path:
    return config.state_dir
