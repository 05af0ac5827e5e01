"""Relay benchmark: packets per second and CPU per packet, XDP vs the userspace relay, in one run.

Topology (`tests.dataplane.xdp_netns`, addresses from 198.18.0.0/15): a generator in namespace A
sends RTP-sized packets (12 + 160 bytes, in-order sequence numbers) as fast as it can to the SBC's LAN
anchor in namespace M, where the relay under test (`tests.bench.relay_node`: one anchored call on the
real `XdpRelay` or `UserspaceRelay`) sends them on from the WAN anchor toward namespace B. There a
small XDP program (`sink.c`) counts and drops them on arrival, the same in both runs, so no receiving
stack or process competes for the two cores. Each run is bounded by a packet count and a time limit.

The generator offers the stream twice, each time to both relays:
* from a UDP socket. The packets reach M's veth as socket buffers, and a veth must copy each one
  into a fresh page before XDP can see it: a toll that no NIC charges, and the larger part of the
  XDP figure on this topology (the "veth toll" line measures it);
* as XDP frames (`gen.c` run by BPF_PROG_TEST_RUN in live-frames mode on A's veth): they reach M's
  veth in pages, as a NIC driver hands packets to XDP. This is the figure that speaks for a box with
  real NICs. For the userspace relay the same frames go up M's stack to its socket.

CPU is charged honestly, and against XDP where in doubt:
* XDP: all softirq time of all cores during the run (/proc/stat): the veth hop into M (with the
  socket source, the copy of each skb into an XDP buffer), the XDP program, the redirect, the veth hop
  into B and the sink. Anything else the machine did in softirq meanwhile counts too; the background
  rate measured just before the run is shown, and the figure with it subtracted.
* userspace: the relay process's own CPU time (user + system, /proc/PID/stat), which includes the
  kernel work of its receive and send calls and of the hop into B; the delivery into its socket runs
  in the generator's softirq and is not charged to it. A lower bound.
So the ratio (XDP packets per CPU-second / userspace packets per CPU-second) leans against XDP.
The packets counted are the relay's own (`Dataplane.counters()`); the sink's count is shown beside.

Also measured: the program's own time per packet under this traffic (BPF_ENABLE_STATS run time, in
a second XDP run of the stream, because the statistics cost two clock reads per packet), and
its cost in BPF_PROG_TEST_RUN on a fixed-point entry (every run takes the full relay path); over a
stream, 2 packets in SBC_RTP_JITTER_SAMPLE read the precise clock, so the stream figure weights the
clock-reading packet 2/8 and an ordinary one 6/8.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from dataplane.xdp import abi, attach, bpfsys, loader
from dataplane.xdp.attach import XdpMode
from dataplane.xdp.tables import RelayTables
from dataplane.xdp.testrun import fixed_point_session, ipv4_udp_frame, measure, rtp_payload
from dataplane.xdp.tool import missing_tools, run
from tests.bench.relay_traffic import probe_live_frames
from tests.dataplane.relay_object import built_relay_object
from tests.dataplane.xdp_netns import Topology
from tests.dataplane.xdp_netns import build as build_topology

SOCKET_PACKETS = 1_500_000  # about 2 s for XDP: enough 4 ms ticks for the CPU figures
FRAME_PACKETS = 6_000_000  # XDP frames come much faster than a socket sends
MAX_S = 6.0
BACKGROUND_S = 1.5
TICK_S = 1 / os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Source:
    """How the generator in A offers the stream: from a UDP socket (each packet reaches M's veth as a
    socket buffer, which the veth copies into an XDP buffer before XDP can run), or as XDP frames
    (gen.c in BPF_PROG_TEST_RUN's live-frames mode: they reach M's veth as a NIC driver hands packets
    to XDP, with no copy)."""

    name: str
    packets: int
    prog_pin: Path | None = None  # gen.c, for "frames"
    src_mac: str = ""
    dst_mac: str = ""

    def argv(self, port: int) -> list[str]:
        common = ["--source", "198.18.1.2:5000", "--to", f"198.18.1.1:{port}",
                  "--count", str(self.packets), "--max-s", str(MAX_S)]  # fmt: skip
        if self.prog_pin is None:
            return ["send", *common]
        return [
            "frames",
            "--prog",
            str(self.prog_pin),
            "--dev",
            "a0",
            "--src-mac",
            self.src_mac,
            "--dst-mac",
            self.dst_mac,
            *common,
        ]


@dataclass
class ModeResult:
    mode: str
    offered: int
    relayed: int
    received: int  # counted by the sink in B
    elapsed_s: float
    relay_cpu_s: float
    softirq_s: float
    background_softirq_s: float  # what softirq the machine did without this traffic, for as long
    sender_cpu_s: float
    prog_ns: float | None = None  # XDP: in-program time per run (BPF run statistics)

    @property
    def pps(self) -> float:
        return self.relayed / self.elapsed_s if self.elapsed_s else 0.0

    def cpu_s(self, *, corrected: bool = False) -> float:
        """What the relay cost: softirq for XDP, the relay process for userspace (see module doc)."""
        if self.mode != "xdp":
            return self.relay_cpu_s
        return max(self.softirq_s - self.background_softirq_s, 0.0) if corrected else self.softirq_s

    def ns_per_packet(self, *, corrected: bool = False) -> float:
        return 1e9 * self.cpu_s(corrected=corrected) / self.relayed if self.relayed else float("inf")

    def packets_per_cpu_s(self, *, corrected: bool = False) -> float:
        cpu = self.cpu_s(corrected=corrected)
        return self.relayed / cpu if cpu else float("inf")


def _softirq_s() -> float:
    with open("/proc/stat") as fh:
        fields = fh.readline().split()  # the "cpu" line: all cores
    return int(fields[7]) * TICK_S


def _process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S


def _python(netns: str, module: str, *args: str, stdin: int | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{netns}", "--", sys.executable, "-m", module, *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def _line(stream: IO[str] | None, timeout_s: float) -> dict[str, Any]:
    """One JSON line from a child, bounded in time."""
    import selectors

    assert stream is not None
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        if not sel.select(timeout_s):
            raise TimeoutError("no answer from a benchmark process")
    line = stream.readline()
    if not line:
        raise RuntimeError("a benchmark process ended early")
    result: dict[str, Any] = json.loads(line)
    return result


def load_bench_program(name: str, pin_dir: Path, workdir: Path) -> Path:
    """Build tests/bench/NAME.c with clang, load it with bpftool; the program is pinned at the
    returned path and its maps beside it."""
    source = Path(__file__).with_name(f"{name}.c")
    obj = workdir / f"{name}.o"
    multiarch = f"/usr/include/{os.uname().machine}-linux-gnu"
    run(["clang", "-target", "bpf", "-g", "-O2", "-Wall", "-I", multiarch, "-c", str(source), "-o", str(obj)])
    pin_dir.mkdir(parents=True, exist_ok=True)
    run(["bpftool", "prog", "load", str(obj), str(pin_dir / "prog"), "type", "xdp", "pinmaps", str(pin_dir)])
    return pin_dir / "prog"


class Sink:
    """sink.c, built with clang, loaded with bpftool, attached to B's veth."""

    def __init__(self, topo: Topology, pin_dir: Path, workdir: Path) -> None:
        self.prog = bpfsys.obj_get(load_bench_program("sink", pin_dir, workdir))
        self.count_map = bpfsys.obj_get(pin_dir / "sink_count")
        self.cpus = bpfsys.possible_cpus()
        self.topo = topo
        attach.attach("b0", self.prog, XdpMode.NATIVE, netns=topo.b)

    def floor(self, source: Source) -> tuple[int, float]:
        """The veth toll: the generator's stream to port 5004 of M, dropped by this program on M's
        veth, so no relay runs. Returns (packets dropped, softirq seconds)."""
        attach.attach("m_a", self.prog, XdpMode.NATIVE, netns=self.topo.m)
        try:
            counted0, softirq0 = self.count(), _softirq_s()
            sender = _python(self.topo.a, "tests.bench.relay_traffic", *source.argv(5004))
            try:
                _line(sender.stdout, MAX_S + 30)
            finally:
                sender.wait(timeout=20)
            time.sleep(0.3)
            return self.count() - counted0, _softirq_s() - softirq0
        finally:
            attach.detach("m_a", XdpMode.NATIVE, netns=self.topo.m)

    def count(self) -> int:
        raw = bpfsys.map_lookup(self.count_map, struct.pack("=I", 0), 8 * self.cpus)
        return sum(struct.unpack(f"={self.cpus}Q", raw)) if raw else 0

    def close(self) -> None:
        attach.detach("b0", XdpMode.NATIVE, netns=self.topo.b)
        self.prog.close()
        self.count_map.close()


def run_mode(
    topo: Topology, mode: str, source: Source, pin_dir: Path, sink: Sink, *, program_stats: bool = False
) -> ModeResult:
    """One bounded stream through one relay. With `program_stats` (XDP) the kernel also times every
    run of the program, which costs two clock reads per packet: its CPU figures are then not used."""
    node = _python(topo.m, "tests.bench.relay_node", "--mode", mode, "--pin-dir", str(pin_dir), stdin=subprocess.PIPE)
    procs: list[subprocess.Popen[str]] = [node]
    stats_fd = None
    prog = None
    try:
        ready = _line(node.stdout, 30)
        if "error" in ready:
            raise RuntimeError(ready["error"])
        idle0 = _softirq_s()
        time.sleep(BACKGROUND_S)
        background_rate = (_softirq_s() - idle0) / BACKGROUND_S
        if program_stats:
            prog = bpfsys.obj_get(pin_dir / abi.PROG_PIN_NAME)
            stats_fd = bpfsys.enable_run_stats()
        assert node.stdin is not None
        node.stdin.write("counters\n")
        node.stdin.flush()
        before = _line(node.stdout, 10)
        prog_before = bpfsys.prog_info(prog) if prog is not None else None
        sunk0, softirq0, relay0 = sink.count(), _softirq_s(), _process_cpu_s(node.pid)
        sender = _python(topo.a, "tests.bench.relay_traffic", *source.argv(int(ready["lan_port"])))
        procs.append(sender)
        sent = _line(sender.stdout, MAX_S + 30)
        time.sleep(0.3)  # what is still queued gets relayed
        sunk1, softirq1, relay1 = sink.count(), _softirq_s(), _process_cpu_s(node.pid)
        prog_after = bpfsys.prog_info(prog) if prog is not None else None
        node.stdin.write("counters\n")
        node.stdin.flush()
        after = _line(node.stdout, 10)
        prog_ns = None
        if prog_before is not None and prog_after is not None and prog_after.run_cnt > prog_before.run_cnt:
            runs = prog_after.run_cnt - prog_before.run_cnt
            prog_ns = (prog_after.run_time_ns - prog_before.run_time_ns) / runs
        elapsed = float(sent["elapsed_s"])
        return ModeResult(
            mode=mode,
            offered=int(sent["sent"]),
            relayed=int(after["relayed_packets"]) - int(before["relayed_packets"]),
            received=sunk1 - sunk0,
            elapsed_s=elapsed,
            relay_cpu_s=relay1 - relay0,
            softirq_s=softirq1 - softirq0,
            background_softirq_s=background_rate * (elapsed + 0.3),
            sender_cpu_s=float(sent["cpu_s"]),
            prog_ns=prog_ns,
        )
    finally:
        if stats_fd is not None:
            stats_fd.close()
        if prog is not None:
            prog.close()
        if node.stdin is not None and not node.stdin.closed:
            node.stdin.close()  # the node cleans up: entries removed, program detached
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)


def prog_test_run_cost() -> dict[str, float]:
    """ns per packet in BPF_PROG_TEST_RUN on the fixed-point entry, per phase of the jitter sampling."""
    pin_dir = Path(f"/sys/fs/bpf/sbc-bench-testrun-{os.getpid()}")
    objects = loader.load(built_relay_object(), pin_dir, replace=True)
    try:
        tables = RelayTables(objects)
        key, entry = fixed_point_session("198.18.0.1", 40000)
        tables.sessions.put(key, entry)
        cost: dict[str, float] = {}
        for name, seq in (("clock", 0), ("plain", 2)):
            frame = ipv4_udp_frame("198.18.0.1", 40000, "198.18.0.1", 40000, rtp_payload(seq))
            result = measure(objects.prog, frame, repeat=200_000, rounds=5)
            cost[f"{name}_best"], cost[f"{name}_median"] = result.best_ns, result.median_ns
        n = abi.RTP_JITTER_SAMPLE
        for stat in ("best", "median"):
            cost[f"stream_{stat}"] = (2 * cost[f"clock_{stat}"] + (n - 2) * cost[f"plain_{stat}"]) / n
        return cost
    finally:
        objects.close()
        loader.unpin(pin_dir)


def main() -> int:
    if os.geteuid() != 0:
        print("relay bench: needs root (network namespaces, BPF)")
        return 1
    missing = missing_tools("clang", "bpftool", "ip", "ethtool", "nsenter")
    if missing:
        print(f"relay bench: {missing}")
        return 1
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    cost = prog_test_run_cost()
    print(
        "BPF_PROG_TEST_RUN, full relay path (lookup, source check, rewrite, RFC 1624 checksums, RTP stats):\n"
        f"  packet that reads the clock: {cost['clock_best']:.0f} ns best, {cost['clock_median']:.0f} ns median\n"
        f"  ordinary packet:             {cost['plain_best']:.0f} ns best, {cost['plain_median']:.0f} ns median\n"
        f"  per packet of an RTP stream: {cost['stream_best']:.0f} ns best, {cost['stream_median']:.0f} ns median"
        f" (goal: under 100 ns)"
    )
    pin_dir = Path(f"/sys/fs/bpf/sbc-bench-{os.getpid()}")
    sink_pins = Path(f"/sys/fs/bpf/sbc-bench-sink-{os.getpid()}")
    gen_pins = Path(f"/sys/fs/bpf/sbc-bench-gen-{os.getpid()}")
    topo = build_topology(f"bench{os.getpid()}")
    runs: list[tuple[Source, list[ModeResult], tuple[int, float]]] = []
    frames_refused: str | None = None
    harness_ns = 0
    try:
        for ns, dev in ((topo.a, "a0"), (topo.b, "b0")):
            run(["ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off", "gro", "on"])
        with tempfile.TemporaryDirectory(prefix="sbc-bench-relay-") as tmp:
            sink = Sink(topo, sink_pins, Path(tmp))
            try:
                # the same frame through a program that only parses it and passes it: the test run's own share
                frame = ipv4_udp_frame("198.18.0.1", 40000, "198.18.0.1", 40000, rtp_payload(2))
                harness_ns = measure(sink.prog, frame, repeat=200_000, rounds=5).best_ns
                sources = [Source("socket", SOCKET_PACKETS)]
                frames_refused = probe_live_frames(sink.prog)
                if frames_refused:
                    print(f"the XDP-frames source is left out: {frames_refused}")
                else:
                    gen = load_bench_program("gen", gen_pins, Path(tmp))
                    sources.append(Source("frames", FRAME_PACKETS, gen, topo.a0.mac, topo.ma.mac))
                for source in sources:
                    if source.name == "frames":
                        # XDP frames sent into a veth need its peer's NAPI, which GRO turns on when
                        # no XDP program is attached (the userspace run)
                        run(["ip", "netns", "exec", topo.m, "ethtool", "-K", "m_a", "gro", "on"])
                    xdp = run_mode(topo, "xdp", source, pin_dir, sink)
                    xdp.prog_ns = run_mode(topo, "xdp", source, pin_dir, sink, program_stats=True).prog_ns
                    results = [xdp, run_mode(topo, "userspace", source, pin_dir, sink)]
                    runs.append((source, results, sink.floor(source)))
            finally:
                sink.close()
    finally:
        topo.destroy()
        loader.unpin(pin_dir)
        loader.unpin(sink_pins)
        loader.unpin(gen_pins)
    print(
        f"  (a program that only parses the frame and passes it costs {harness_ns} ns in the same test run: the"
        f" relay's own work per stream packet is about {cost['stream_best'] - harness_ns:.0f} ns)"
    )
    ratios = [(source.name, *_report(source, results, floor)) for source, results, floor in runs]
    summary = "; ".join(f"{name} source {lit:.1f}x literal, {like:.1f}x like for like" for name, lit, like in ratios)
    if frames_refused:
        summary += f" (no XDP-frames source: {frames_refused})"
    print(f"\nsummary, XDP / userspace packets per CPU-second (goal: at least 20x): {summary}")
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


def _report(source: Source, results: list[ModeResult], floor: tuple[int, float]) -> tuple[float, float]:
    """Print one source's runs; returns its ratios (literal, like for like)."""
    how = {
        "socket": "from a UDP socket (M's veth copies each socket buffer into an XDP buffer)",
        "frames": "as XDP frames (BPF_PROG_TEST_RUN live frames: M's veth gets them as from a NIC driver)",
    }[source.name]
    xdp, user = results
    print(f"\nrelay on veths in network namespaces, stream sent {how};")
    print(f"{source.packets} packets offered at most, {MAX_S:.0f} s at most:")
    print(f"{'mode':<10} {'offered':>8} {'relayed':>8} {'at sink':>8} {'s':>5} {'pps':>8} "
          f"{'cpu s':>6} {'ns/pkt':>7} {'pkts/cpu-s':>11}  cpu charged")  # fmt: skip
    for r in results:
        what = "softirq, all cores" if r.mode == "xdp" else "relay process (user + system)"
        print(
            f"{r.mode:<10} {r.offered:>8} {r.relayed:>8} {r.received:>8} {r.elapsed_s:>5.1f} {r.pps:>8.0f} "
            f"{r.cpu_s():>6.2f} {r.ns_per_packet():>7.0f} {r.packets_per_cpu_s():>11.0f}  {what}"
        )
    print(
        f"background softirq (measured idle just before): {xdp.background_softirq_s:.2f} s over the XDP run; "
        f"subtracted: {xdp.cpu_s(corrected=True):.2f} s, {xdp.ns_per_packet(corrected=True):.0f} ns/packet"
    )
    floor_packets, floor_softirq = floor
    floor_ns = 1e9 * floor_softirq / floor_packets if floor_packets else 0.0
    if floor_packets:
        print(
            f"veth toll: the same stream dropped by a do-nothing XDP program on M's veth costs {floor_ns:.0f} ns"
            f"/packet of softirq ({floor_packets} packets); the relay's share of its {xdp.ns_per_packet():.0f} ns is "
            f"{xdp.ns_per_packet() - floor_ns:.0f} ns (program, redirect, hop into B)"
        )
    if xdp.prog_ns is not None:
        print(
            f"XDP program's own time per packet under this traffic (BPF run statistics, in a second run of"
            f" the stream, as they cost two clock reads per packet): {xdp.prog_ns:.0f} ns"
        )
    print(f"generator CPU: {xdp.sender_cpu_s:.2f} s (xdp run), {user.sender_cpu_s:.2f} s (userspace run)")
    base = user.packets_per_cpu_s()
    ratio = xdp.packets_per_cpu_s() / base if base else float("inf")
    corrected = xdp.packets_per_cpu_s(corrected=True) / base if base else float("inf")
    print(
        f"ratio, packets per CPU-second, XDP / userspace: {ratio:.1f}x "
        f"({corrected:.1f}x without the background softirq; goal: at least 20x)"
    )
    if source.name == "frames" and xdp.relayed:
        # the generator shares the core: its work (making the frames, a NIC's job) is not the relay's,
        # but here is the ratio with it charged to XDP all the same
        strict_ns = 1e9 * (xdp.cpu_s() + xdp.sender_cpu_s) / xdp.relayed
        print(
            f"with the generator's own CPU charged to XDP as well: {strict_ns:.0f} ns/packet, "
            f"ratio {user.ns_per_packet() / strict_ns:.1f}x"
        )
    like = float("nan")
    if floor_packets and user.relayed:
        # like for like: the userspace figure does not include the hop into M either (it runs in the
        # generator's softirq), so take the veth toll out of the XDP figure too
        like = user.ns_per_packet() / max(xdp.ns_per_packet() - floor_ns, 1.0)
        print(f"ratio like for like (the hop into M charged to neither): {like:.1f}x")
    return ratio, like


if __name__ == "__main__":
    sys.exit(main())
