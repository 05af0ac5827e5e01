"""Traffic for the relay benchmark: `send` blasts RTP at an anchor from a socket, `frames` does so
as XDP frames (the way a NIC hands packets to XDP), `recv` counts what arrives.

Both are bounded in count and time and print one JSON line at the end, with their own CPU time (so
the driver can tell the generator's cost from the relay's).

    python -m tests.bench.relay_traffic send --source 198.18.1.2:5000 --to 198.18.1.1:40000 --count N --max-s T
    python -m tests.bench.relay_traffic frames --prog /sys/fs/bpf/PIN --dev a0 --src-mac MAC --dst-mac MAC \
        --source 198.18.1.2:5000 --to 198.18.1.1:40000 --count N --max-s T
    python -m tests.bench.relay_traffic recv --bind 198.18.2.2:5004 --idle-s 1 --max-s T
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import socket
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

from dataplane.xdp import bpfsys
from dataplane.xdp.testrun import ipv4_udp_frame, rtp_payload

PAYLOAD = 160  # 20 ms of G.711: the packet size of a real call


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def send(source: tuple[str, int], to: tuple[str, int], count: int, max_s: float) -> dict[str, float]:
    # a whole cycle of sequence numbers, so the relay sees an ordinary in-order stream
    packets = [rtp_payload(seq, timestamp=seq * 160, size=PAYLOAD) for seq in range(65536)]
    sent = errors = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        s.bind(source)
        s.connect(to)
        start = time.monotonic()
        deadline = start + max_s
        send_one = s.send
        while sent + errors < count:
            try:
                send_one(packets[sent & 0xFFFF])
                sent += 1
            except OSError:  # ENOBUFS under load, ECONNREFUSED from an ICMP error: count, go on
                errors += 1
            if (sent + errors) & 0xFFF == 0 and time.monotonic() > deadline:
                break
        elapsed = time.monotonic() - start
    return {"sent": sent, "errors": errors, "elapsed_s": elapsed, "cpu_s": time.process_time()}


GEN_HEAD_LEN = 14 + 20 + 8 + 12  # gen.c's template: Ethernet, IPv4, UDP and RTP headers
FRAMES_PER_CALL = 1 << 18  # each call pays a setup of ~25 ms (the page pool, an RCU grace period)


def frames(
    prog_pin: str,
    dev: str,
    src_mac: str,
    dst_mac: str,
    source: tuple[str, int],
    to: tuple[str, int],
    count: int,
    max_s: float,
) -> dict[str, float]:
    """`count` RTP frames at most, for `max_s` seconds at most, sent out of `dev` as XDP frames by
    gen.c (it numbers them) run in BPF_PROG_TEST_RUN's live-frames mode."""
    ifindex = socket.if_nametoindex(dev)
    template = ipv4_udp_frame(source[0], source[1], to[0], to[1], rtp_payload(0, size=PAYLOAD),
                              src_mac=src_mac, dst_mac=dst_mac)  # fmt: skip
    head_map = bpfsys.obj_get(Path(prog_pin).with_name("gen_template"))  # pinned beside the program
    try:
        bpfsys.map_update(head_map, struct.pack("=I", 0), template[:GEN_HEAD_LEN] + bytes(2))
    finally:
        head_map.close()
    prog = bpfsys.obj_get(prog_pin)
    sent = 0
    try:
        start = time.monotonic()
        deadline = start + max_s
        while sent < count and time.monotonic() < deadline:
            batch = min(FRAMES_PER_CALL, count - sent)
            bpfsys.prog_test_run_live(prog, template, repeat=batch, ingress_ifindex=ifindex)
            sent += batch
        elapsed = time.monotonic() - start
    finally:
        prog.close()
    return {"sent": sent, "errors": 0, "elapsed_s": elapsed, "cpu_s": time.process_time()}


CAP_SYS_RESOURCE = 24
# A frame of the IEEE 802 local experimental EtherType: every program here passes it, and no stack
# takes it, so the probe sends nothing anywhere.
PROBE_FRAME = bytes(12) + b"\x88\xb5" + bytes(46)


def live_frames_refusal(probe: Callable[[], object]) -> str | None:
    """Why the kernel refuses BPF_PROG_TEST_RUN's live-frames mode here, in its own words (None: it
    runs). `probe` makes one such call. Some machines refuse it with EPERM even to root (a sandbox's
    root without CAP_SYS_RESOURCE); kernels before 5.18 do not know the flag."""
    try:
        probe()
    except OSError as exc:
        said = exc.strerror or os.strerror(exc.errno or 0)
        if exc.errno in (errno.EPERM, errno.EACCES):
            lacking = "" if _effective_capability(CAP_SYS_RESOURCE) else " (this process lacks CAP_SYS_RESOURCE)"
            return f"the kernel refuses BPF_PROG_TEST_RUN in live-frames mode: {said}{lacking}"
        if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
            return f"this kernel has no BPF_PROG_TEST_RUN live-frames mode (Linux 5.18+): {said}"
        raise
    return None


def probe_live_frames(prog: bpfsys.BpfFd, ifindex: int = 1) -> str | None:
    """`live_frames_refusal` of one run of `prog` (any XDP program that passes an unknown EtherType)
    on `ifindex` (default: the loopback of the caller's namespace)."""
    return live_frames_refusal(
        lambda: bpfsys.prog_test_run_live(prog, PROBE_FRAME, repeat=1, ingress_ifindex=ifindex, batch_size=1)
    )


def _effective_capability(cap: int) -> bool:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> cap & 1)
    except (OSError, ValueError):
        pass
    return False


def recv(bind: tuple[str, int], idle_s: float, max_s: float) -> dict[str, float]:
    received = 0
    first = last = 0.0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        s.bind(bind)
        s.settimeout(idle_s)
        deadline = time.monotonic() + max_s
        buf = bytearray(2048)
        recv_into = s.recv_into
        print(json.dumps({"ready": True}), flush=True)
        while time.monotonic() < deadline:
            try:
                recv_into(buf)
            except TimeoutError:
                if received:
                    break  # the stream is over
                continue
            received += 1
            if received == 1:
                first = time.monotonic()
        last = time.monotonic()
    return {"received": received, "elapsed_s": max(0.0, last - first - idle_s), "cpu_s": time.process_time()}


def main() -> int:
    parser = argparse.ArgumentParser(prog="relay_traffic")
    sub = parser.add_subparsers(dest="what", required=True)
    p_send = sub.add_parser("send")
    p_send.add_argument("--source", required=True)
    p_send.add_argument("--to", required=True)
    p_send.add_argument("--count", type=int, required=True)
    p_send.add_argument("--max-s", type=float, required=True)
    p_frames = sub.add_parser("frames")
    p_frames.add_argument("--prog", required=True, help="pinned gen.c program")
    p_frames.add_argument("--dev", required=True)
    p_frames.add_argument("--src-mac", required=True, help="the device's own (sysfs shows another namespace's)")
    p_frames.add_argument("--dst-mac", required=True)
    p_frames.add_argument("--source", required=True)
    p_frames.add_argument("--to", required=True)
    p_frames.add_argument("--count", type=int, required=True)
    p_frames.add_argument("--max-s", type=float, required=True)
    p_recv = sub.add_parser("recv")
    p_recv.add_argument("--bind", required=True)
    p_recv.add_argument("--idle-s", type=float, default=1.0)
    p_recv.add_argument("--max-s", type=float, required=True)
    args = parser.parse_args()
    if args.what == "send":
        result = send(_addr(args.source), _addr(args.to), args.count, args.max_s)
    elif args.what == "frames":
        result = frames(
            args.prog, args.dev, args.src_mac, args.dst_mac, _addr(args.source), _addr(args.to), args.count, args.max_s
        )
    else:
        result = recv(_addr(args.bind), args.idle_s, args.max_s)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
