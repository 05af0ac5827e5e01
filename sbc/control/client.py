"""Clients of the control socket: blocking (the CLI, tests, the config store's reload) and asyncio (the
management plane's poll). Both send one request line and read one answer line (see
`sbc.control.server`); `result` turns the answer into the command's result or a `ControlError`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from pathlib import Path
from typing import Any

MAX_ANSWER = 16 * 1024 * 1024  # a `calls` answer with thousands of calls is a few MiB


class ControlError(Exception):
    pass


def request_line(cmd: str, args: dict[str, Any] | None) -> bytes:
    return json.dumps({"cmd": cmd, "args": args or {}}).encode() + b"\n"


def result(cmd: str, line: bytes) -> dict[str, Any]:
    """The `result` object of one answer line; ControlError when the SBC refused or answered nothing."""
    if not line:
        raise ControlError("the SBC closed the control connection without answering")
    try:
        answer = json.loads(line)
    except ValueError as exc:
        raise ControlError(f"the SBC's answer to {cmd!r} is not JSON: {exc}") from None
    if not isinstance(answer, dict) or not answer.get("ok"):
        error = answer.get("error") if isinstance(answer, dict) else answer
        raise ControlError(str(error))
    found = answer.get("result")
    if not isinstance(found, dict):
        raise ControlError(f"the SBC answered {cmd!r} without a result object")
    return found


def control_request(path: Path, cmd: str, args: dict[str, Any] | None = None, timeout: float = 5.0) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError as exc:
            raise ControlError(
                f"cannot reach the SBC at {path}: {exc.strerror or exc} (is `sbc run` running?)"
            ) from exc
        sock.sendall(request_line(cmd, args))
        buf = b""
        while not buf.endswith(b"\n") and len(buf) <= MAX_ANSWER:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
    return result(cmd, buf)


async def control_query(path: Path, cmd: str, timeout: float) -> dict[str, Any]:
    """One request without blocking the event loop; TimeoutError, OSError or ControlError when it fails."""

    async def exchange() -> bytes:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=MAX_ANSWER)
        try:
            writer.write(request_line(cmd, None))
            await writer.drain()
            return await reader.readline()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return result(cmd, await asyncio.wait_for(exchange(), timeout))
