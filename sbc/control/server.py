"""The local control API: JSON lines over a unix socket, read by `sbc status`/`sbc calls` and by mgmt.

One request per line: `{"cmd": "status", "args": {...}}`; one answer per line:
`{"ok": true, "result": {...}}` or `{"ok": false, "error": "..."}`. The results are the types of
`sbc.control.contract`, encoded there. The socket is created with mode
0660 (a new directory for it 0750): the SBC's user and its group, which the management service's
user runs in (the appliance's sbc-mgmt), and root. Nobody else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sbc.control.contract import Answer, encode

# A command and its arguments in, the answer out (a plain mapping only for the debug hooks).
Handler = Callable[[str, dict[str, Any]], Answer | dict[str, Any]]
MAX_REQUEST = 65536


class ControlServer:
    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old = os.umask(0o117)
        try:
            self._server = await asyncio.start_unix_server(self._client, path=str(self.path), limit=MAX_REQUEST)
        finally:
            os.umask(old)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(json.dumps(self._answer(line), default=str).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()

    def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            cmd = str(request["cmd"])
            args = request.get("args") or {}
            if not isinstance(args, dict):
                raise TypeError("args must be an object")
        except (ValueError, KeyError, TypeError) as exc:
            return {"ok": False, "error": f"bad request: {exc}"}
        try:
            return {"ok": True, "result": encode(self.handler(cmd, args))}
        except KeyError:
            return {"ok": False, "error": f"unknown command {cmd!r}"}
        except Exception as exc:  # the control API must never take the SBC down
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    @property
    def serving(self) -> bool:
        return self._server is not None and self._server.is_serving()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
