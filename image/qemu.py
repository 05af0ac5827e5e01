"""Boot the firmware image in QEMU with software emulation (TCG), for `make vm` and tests/image.

    vm = Vm(VmSpec(disk=Path("build/image.raw"), workdir=tmp, netns="lab", taps=("tapwan", "taplan")))
    vm.start()
    hello = vm.wait_agent(timeout=900)      # the test agent in the guest answers: booted
    vm.run(["systemctl", "is-system-running", "--wait"])
    vm.stop()

* The disk is a qcow2 overlay over the built image (which stays untouched), larger than it, so the
  first boot's systemd-repart has room for the state partition. UEFI variables live in a copy of the
  firmware's VARS file: boot counting and the factory reset request survive reboots of the guest.
* The serial console is a unix socket QEMU serves; a reader thread appends everything to
  `serial.log` and `send_console()` types into it (the console commands).
* The control channel is a virtio-serial port `org.sbc.test.0` served by sbc-test-agent.service in
  the guest (image/testagent.py): JSON lines, one command per request. Only the tests' variant of the
  image has the agent (tests/image/agent-tree); `make vm` boots the production image, console only.
* NICs: virtio-net on tap devices at PCI 00:03.0 (WAN) and 00:04.0 (LAN), the hardware profile the
  image's .link files name; QEMU runs inside `netns` when given, so the taps live there.
* `-accel tcg`: /dev/kvm exists on these machines but guests hang under it.

A guest reboot keeps the same QEMU process (and serial log); `wait_agent(after=boot_id)` waits for
the next boot.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIRMWARE = {
    "x86-64": (Path("/usr/share/OVMF/OVMF_CODE_4M.fd"), Path("/usr/share/OVMF/OVMF_VARS_4M.fd")),
    "arm64": (Path("/usr/share/AAVMF/AAVMF_CODE.fd"), Path("/usr/share/AAVMF/AAVMF_VARS.fd")),
}
AGENT_PORT = "org.sbc.test.0"


class VmError(RuntimeError):
    """The VM did not do what was asked; the message ends with the serial console's last lines."""


@dataclass(frozen=True, slots=True)
class CommandResult:
    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str

    def check(self) -> CommandResult:
        if self.rc != 0:
            raise VmError(f"{' '.join(self.argv)} exited {self.rc}:\n{self.stdout}\n{self.stderr}")
        return self


@dataclass(frozen=True, slots=True)
class VmSpec:
    disk: Path  # the built image (raw), used read-only as the overlay's backing file
    workdir: Path
    arch: str = "x86-64"
    memory_mib: int = 1536
    cpus: int = 2
    disk_size: str = "5G"
    netns: str | None = None
    taps: tuple[str, str] | None = None  # (WAN, LAN) tap devices in netns
    smbios: tuple[str, ...] = ()  # SMBIOS type 11 strings: io.systemd.credential:NAME=VALUE, ...
    macs: tuple[str, str] = ("52:54:00:5b:00:02", "52:54:00:5b:00:01")
    # Without taps: QEMU's user-mode networks on the image's subnets, the LAN's ports forwarded from
    # the host's loopback ("tcp", host port, guest port) - for `make vm`.
    forwards: tuple[tuple[str, int, int], ...] = (("tcp", 8443, 443), ("udp", 16161, 161), ("udp", 15060, 5060))


@dataclass
class Vm:
    spec: VmSpec
    started_at: float = 0.0
    _proc: subprocess.Popen[bytes] | None = None
    _serial: socket.socket | None = None
    _serial_thread: threading.Thread | None = None
    _control: socket.socket | None = None
    _control_buf: bytes = b""
    _next_id: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ---- paths -------------------------------------------------------------------------------------
    @property
    def serial_log(self) -> Path:
        return self.spec.workdir / "serial.log"

    @property
    def overlay(self) -> Path:
        return self.spec.workdir / "disk.qcow2"

    def _sock(self, name: str) -> Path:
        return self.spec.workdir / f"{name}.sock"

    # ---- life cycle --------------------------------------------------------------------------------
    def qemu_argv(self, *, interactive: bool = False) -> list[str]:
        spec = self.spec
        code, _ = FIRMWARE[spec.arch]
        vars_copy = spec.workdir / "efivars.fd"

        def pci(slot: int) -> str:
            # Fixed slots on x86 (q35): the NICs must sit at 00:03.0 and 00:04.0.
            return f",addr={slot:#x}" if spec.arch == "x86-64" else ""

        if spec.arch == "x86-64":
            # No PS/2 controller: key events from QMP go to the virtio keyboard (the reset button).
            argv = ["qemu-system-x86_64", "-machine", "q35,smm=off,i8042=off", "-cpu", "max"]
            watchdog = ["-device", "i6300esb"]
        else:
            argv = ["qemu-system-aarch64", "-machine", "virt", "-cpu", "max"]
            watchdog = []
        argv += [
            "-accel", "tcg,thread=multi", "-smp", str(spec.cpus), "-m", str(spec.memory_mib),
            "-display", "none", "-monitor", "none", "-nodefaults", "-no-user-config",
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
            "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}",
            "-drive", f"if=none,id=disk0,format=qcow2,file={self.overlay},cache=unsafe,discard=unmap",
            "-device", f"virtio-blk-pci,drive=disk0,bootindex=1{pci(5)}",
            *(["-serial", "mon:stdio"] if interactive else
              ["-chardev", f"socket,id=ser0,path={self._sock('serial')},server=on,wait=off",
               "-serial", "chardev:ser0"]),
            "-device", f"virtio-serial-pci,id=vser0{pci(6)}",
            "-chardev", f"socket,id=ctl0,path={self._sock('control')},server=on,wait=off",
            "-device", f"virtserialport,bus=vser0.0,chardev=ctl0,name={AGENT_PORT}",
            "-qmp", f"unix:{self._sock('qmp')},server=on,wait=off",
            "-device", f"virtio-rng-pci{pci(7)}",
            # The QEMU hardware profile's reset button (hw/profiles/qemu.yaml): Help held on it.
            "-device", f"virtio-keyboard-pci{pci(8)}",
            *watchdog,
        ]  # fmt: skip
        if spec.taps is not None:
            # WAN at 00:03.0, LAN at 00:04.0 (x86 q35); the image's .link files match these paths.
            for index, (tap, mac) in enumerate(zip(spec.taps, spec.macs, strict=True)):
                argv += ["-netdev", f"tap,id=net{index},ifname={tap},script=no,downscript=no",
                         "-device", f"virtio-net-pci,netdev=net{index},mac={mac}{pci(3 + index)}"]  # fmt: skip
        else:
            # The image's subnets (image/labnet.py): WAN 198.18.2.0/24, LAN 198.18.1.0/24 with forwards.
            fwd = "".join(f",hostfwd={proto}:127.0.0.1:{host}-198.18.1.1:{guest}"
                          for proto, host, guest in spec.forwards)  # fmt: skip
            subnets = (("198.18.2.0/24", "198.18.2.2"), ("198.18.1.0/24", "198.18.1.10"))
            for index, (net, host) in enumerate(subnets):
                netdev = f"user,id=net{index},net={net},host={host},restrict=on{fwd if index else ''}"
                argv += ["-netdev", netdev,
                         "-device", f"virtio-net-pci,netdev=net{index},mac={spec.macs[index]}{pci(3 + index)}"]
        for value in spec.smbios:
            argv += ["-smbios", f"type=11,value={value}"]
        if spec.netns:
            argv = ["ip", "netns", "exec", spec.netns, *argv]
        return argv

    def prepare_disk(self) -> None:
        spec = self.spec
        spec.workdir.mkdir(parents=True, exist_ok=True)
        _, vars_template = FIRMWARE[spec.arch]
        shutil.copyfile(vars_template, spec.workdir / "efivars.fd")
        self.overlay.unlink(missing_ok=True)
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(spec.disk.resolve()), "-F", "raw",
             str(self.overlay), spec.disk_size],
            check=True,
        )  # fmt: skip

    def start(self, *, fresh_disk: bool = True) -> None:
        if fresh_disk:
            self.prepare_disk()
        for name in ("serial", "control", "qmp"):
            self._sock(name).unlink(missing_ok=True)
        self.serial_log.write_bytes(b"")
        log = (self.spec.workdir / "qemu.log").open("wb")
        self.started_at = time.monotonic()
        self._proc = subprocess.Popen(self.qemu_argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                      start_new_session=True)  # fmt: skip
        self._serial = self._connect("serial")
        self._serial_thread = threading.Thread(target=self._read_serial, name="vm-serial", daemon=True)
        self._serial_thread.start()
        self._control = self._connect("control")

    def _connect(self, name: str, timeout: float = 30.0) -> socket.socket:
        path = self._sock(name)
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(path))
                return sock
            except OSError:
                sock.close()
                if time.monotonic() > deadline:
                    raise VmError(f"QEMU did not open {path}" + self._tail()) from None
                time.sleep(0.2)

    def _read_serial(self) -> None:
        assert self._serial is not None
        with self.serial_log.open("ab", buffering=0) as out:
            while True:
                try:
                    data = self._serial.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                out.write(data)

    def _check_alive(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            qemu_log = (self.spec.workdir / "qemu.log").read_text(errors="replace")[-2000:]
            raise VmError(f"QEMU exited with {self._proc.returncode}: {qemu_log}" + self._tail())

    def stop(self, timeout: float = 30.0) -> None:
        """Power off (QMP quit), then kill whatever is left of the process group we started."""
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(OSError, VmError):
            self.qmp("quit")
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        for sock in (self._control, self._serial):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        if self._serial_thread is not None:
            self._serial_thread.join(timeout=5)
        self._proc = self._control = self._serial = None

    def __enter__(self) -> Vm:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- QMP ---------------------------------------------------------------------------------------
    def qmp(self, command: str, **arguments: Any) -> Any:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(self._sock("qmp")))
            reader = sock.makefile("rb")
            json.loads(reader.readline())  # greeting
            sock.sendall(json.dumps({"execute": "qmp_capabilities"}).encode() + b"\n")
            reader.readline()
            sock.sendall(json.dumps({"execute": command, "arguments": arguments}).encode() + b"\n")
            while True:
                line = reader.readline()
                if not line:
                    return None
                reply = json.loads(line)
                if "return" in reply or "error" in reply:
                    return reply

    def hold_key(self, qcode: str, seconds: float) -> None:
        """Press a key of the virtio keyboard, hold it `seconds`, let go (QMP input-send-event)."""
        for down in (True, False):
            event = {"type": "key", "data": {"down": down, "key": {"type": "qcode", "data": qcode}}}
            reply = self.qmp("input-send-event", events=[event])
            if reply is None or "error" in reply:
                raise VmError(f"QEMU did not take the key event: {reply}")
            if down:
                time.sleep(seconds)

    # ---- serial console ----------------------------------------------------------------------------
    def console_text(self) -> str:
        try:
            return self.serial_log.read_bytes().decode(errors="replace")
        except OSError:
            return ""

    def send_console(self, text: str) -> None:
        assert self._serial is not None
        self._serial.sendall(text.encode())

    def wait_console(self, needle: str, timeout: float, *, start: int = 0) -> int:
        """Wait until `needle` appears in the serial log after offset `start`; returns the offset after it."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.console_text()
            found = text.find(needle, start)
            if found >= 0:
                return found + len(needle)
            self._check_alive()
            if time.monotonic() > deadline:
                raise VmError(f"{needle!r} did not appear on the console within {timeout:.0f} s" + self._tail())
            time.sleep(1)

    def _tail(self, lines: int = 60) -> str:
        text = self.console_text().splitlines()[-lines:]
        return f"\n--- serial console ({self.serial_log}), last {len(text)} lines ---\n" + "\n".join(text)

    # ---- control channel ---------------------------------------------------------------------------
    # While the guest is between boots nobody reads the port, QEMU stops reading the socket and what
    # is sent piles up in it; a new boot's agent reads the pile and answers every request in it. So a
    # send never blocks (a full socket means "nobody reads yet"), and waiting for the agent accepts
    # the answer to any hello it sent.
    def _send(self, request: dict[str, Any]) -> int | None:
        """Queue one request; its id, or None when the socket is full (the guest reads nothing)."""
        assert self._control is not None
        ident = self._next_id
        self._next_id += 1
        data = json.dumps({**request, "id": ident}).encode() + b"\n"
        _, writable, _ = select.select([], [self._control], [], 0)
        if not writable:
            return None
        self._control.settimeout(0)
        try:
            sent = self._control.send(data)
        except BlockingIOError:
            return None
        if sent < len(data):  # a line is never left half-written: the agent would read it as garbage
            self._control.settimeout(60)
            try:
                self._control.sendall(data[sent:])
            except TimeoutError:
                raise VmError("the control channel stopped in the middle of a request" + self._tail()) from None
        return ident

    def _await(self, idents: set[int], timeout: float) -> dict[str, Any] | None:
        """The first reply to one of `idents` within `timeout` seconds, or None."""
        assert self._control is not None
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._control_buf:
                line, self._control_buf = self._control_buf.split(b"\n", 1)
                with contextlib.suppress(ValueError):
                    reply = json.loads(line)
                    if isinstance(reply, dict) and reply.get("id") in idents:
                        return reply
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._check_alive()
            self._control.settimeout(min(left, 2.0))
            try:
                data = self._control.recv(65536)
            except TimeoutError:
                continue
            if not data:
                raise VmError("QEMU closed the control channel" + self._tail())
            self._control_buf += data

    def _request(self, request: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        with self._lock:
            deadline = time.monotonic() + timeout
            while (ident := self._send(request)) is None:
                if time.monotonic() > deadline:
                    raise VmError(f"the guest reads nothing on the control channel ({timeout:.0f} s)" + self._tail())
                self._check_alive()
                time.sleep(1)
            return self._await({ident}, max(0.0, deadline - time.monotonic()))

    def wait_agent(self, timeout: float, *, after: str | None = None) -> dict[str, Any]:
        """Wait for the guest's agent (a boot other than `after`); returns its hello (boot_id, version)."""
        deadline = time.monotonic() + timeout
        hellos: set[int] = set()
        with self._lock:
            while True:
                ident = self._send({"hello": True})
                if ident is not None:
                    hellos.add(ident)
                reply = self._await(hellos, 5) if hellos else None
                if reply is not None and reply.get("boot_id") and reply["boot_id"] != after:
                    reply["seconds_since_start"] = round(time.monotonic() - self.started_at, 1)
                    return reply
                if reply is not None:  # the boot we wait to end answered: ask again after a while
                    hellos.discard(int(reply["id"]))
                if time.monotonic() > deadline:
                    raise VmError(f"the guest's test agent did not answer within {timeout:.0f} s" + self._tail())
                time.sleep(2)

    def run(self, argv: list[str], *, timeout: float = 120, input: str | None = None,
            check: bool = True) -> CommandResult:  # fmt: skip
        reply = self._request({"argv": argv, "timeout": timeout, "input": input}, timeout=timeout + 30)
        if reply is None:
            raise VmError(f"no answer to {' '.join(argv)} within {timeout + 30:.0f} s" + self._tail())
        result = CommandResult(tuple(argv), int(reply.get("rc", -1)), str(reply.get("stdout", "")),
                               str(reply.get("stderr", "")))  # fmt: skip
        return result.check() if check else result

    def sh(self, script: str, *, timeout: float = 120, check: bool = True) -> CommandResult:
        """A shell line in the guest, for tests that read better that way."""
        return self.run(["/bin/sh", "-c", script], timeout=timeout, check=check)


def main(argv: list[str] | None = None) -> int:
    """`make vm`: boot the built image with its serial console on this terminal (Ctrl-A X quits)."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m image.qemu", description=main.__doc__)
    parser.add_argument("--disk", type=Path, default=Path("build/image.raw"))
    parser.add_argument("--arch", default=os.environ.get("ARCH", "x86-64"))
    parser.add_argument("--workdir", type=Path, help="keeps the VM's disk and UEFI variables (default: temporary)")
    args = parser.parse_args(argv)
    arch = {"amd64": "x86-64", "x86_64": "x86-64", "aarch64": "arm64"}.get(args.arch, args.arch)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sbc-vm-"))
    vm = Vm(VmSpec(disk=args.disk, workdir=workdir, arch=arch))
    if not (workdir / "disk.qcow2").exists():
        vm.prepare_disk()
    print(f"VM state in {workdir}; web UI https://127.0.0.1:8443/, SNMP udp 127.0.0.1:16161, SIP udp 127.0.0.1:15060")
    print("serial console follows (root is locked; the first boot shows the admin credential). Ctrl-A X quits.")
    return subprocess.call(vm.qemu_argv(interactive=True))


if __name__ == "__main__":
    raise SystemExit(main())
