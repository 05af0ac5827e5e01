"""The image tests' control channel inside the VM (sbc-test-agent.service runs this file as
/usr/lib/sbc/testagent.py). Only the tests' variant of the image has it: tests/image/conftest.py stages
it with the unit and udev rule of tests/image/agent-tree and builds with `--extra-tree`; the
production image (`make image`) carries none of them. It is test tooling, not part of the product.

It serves one virtio-serial port, `org.sbc.test.0`, which only a hypervisor that adds it provides
(the QEMU runner in image/qemu.py does; a physical box has no such device and the unit never starts:
it is bound to the port's device unit). Whoever controls that port controls the VM anyway.

Protocol: JSON lines. A request `{"id": N, "argv": [...], "timeout": S, "input": "..."}` runs argv
(no shell) and answers `{"id": N, "rc": RC, "stdout": "...", "stderr": "..."}`; `{"id": N, "hello": true}`
answers with the boot id and the firmware version, so the host sees which boot it talks to.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from hw.firmware.osinfo import booted_version

PORT = Path("/dev/virtio-ports/org.sbc.test.0")
MAX_OUTPUT = 4 << 20


def _boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def answer(request: dict[str, Any]) -> dict[str, Any]:
    ident = request.get("id")
    if request.get("hello"):
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return {"id": ident, "boot_id": _boot_id(), "version": booted_version(), "uptime_s": uptime}
    argv = request.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        return {"id": ident, "rc": -1, "stdout": "", "stderr": "argv must be a non-empty list of strings"}
    timeout = float(request.get("timeout", 60))
    try:
        done = subprocess.run(argv, input=request.get("input"), capture_output=True, text=True, errors="replace",
                              timeout=timeout, check=False)  # fmt: skip
    except FileNotFoundError:
        return {"id": ident, "rc": 127, "stdout": "", "stderr": f"{argv[0]}: not found"}
    except subprocess.TimeoutExpired:
        return {"id": ident, "rc": -9, "stdout": "", "stderr": f"timed out after {timeout} s"}
    return {"id": ident, "rc": done.returncode, "stdout": done.stdout[:MAX_OUTPUT], "stderr": done.stderr[:MAX_OUTPUT]}


def serve(port: Path = PORT) -> None:
    fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
    buf = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:  # the host side is not connected: wait for it
            time.sleep(0.5)
            continue
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if not line.strip():
                continue
            try:
                request = json.loads(line)
                reply = answer(request) if isinstance(request, dict) else {"rc": -1, "stderr": "not an object"}
            except ValueError as exc:
                reply = {"rc": -1, "stdout": "", "stderr": f"bad request: {exc}"}
            data = json.dumps(reply).encode() + b"\n"
            view = memoryview(data)
            while view:
                sent = os.write(fd, view)
                view = view[sent:]


if __name__ == "__main__":
    serve()
