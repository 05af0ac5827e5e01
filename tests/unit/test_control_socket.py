"""The control socket: who may reach it (the SBC's user and group), and one request answered."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path
from typing import Any

from sbc.control.server import ControlServer


def test_the_socket_is_for_the_user_and_its_group_only(tmp_path: Path) -> None:
    path = tmp_path / "run" / "control.sock"

    def handler(cmd: str, args: dict[str, Any]) -> dict[str, Any]:
        return {"cmd": cmd, "args": args}

    async def scenario() -> tuple[int, int, dict[str, Any]]:
        server = ControlServer(path, handler)
        await server.start()
        try:
            reader, writer = await asyncio.open_unix_connection(str(path))
            writer.write(json.dumps({"cmd": "status", "args": {"x": 1}}).encode() + b"\n")
            await writer.drain()
            answer = json.loads(await reader.readline())
            writer.close()
            await writer.wait_closed()
            return stat.S_IMODE(path.stat().st_mode), stat.S_IMODE(path.parent.stat().st_mode), answer
        finally:
            await server.close()

    socket_mode, dir_mode, answer = asyncio.run(scenario())
    assert socket_mode == 0o660 and dir_mode & 0o007 == 0, (oct(socket_mode), oct(dir_mode))
    assert answer["ok"] is True and answer["result"] == {"cmd": "status", "args": {"x": 1}}
