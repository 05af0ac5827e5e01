"""Blocking client of the control socket, for the CLI and for tests."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any


class ControlError(Exception):
    pass


def control_request(path: Path, cmd: str, args: dict[str, Any] | None = None, timeout: float = 5.0) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError as exc:
            raise ControlError(
                f"cannot reach the SBC at {path}: {exc.strerror or exc} (is `sbc run` running?)"
            ) from exc
        sock.sendall(json.dumps({"cmd": cmd, "args": args or {}}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
    answer = json.loads(buf)
    if not answer.get("ok"):
        raise ControlError(str(answer.get("error")))
    result = answer["result"]
    assert isinstance(result, dict)
    return result
