"""The real `sbc run` in the middle namespace of `xdp_netns`, SIPp phone and trunk in the outer ones.

    ns A: SIPp phone 198.18.1.2 -- ns M: sbc run (LAN 198.18.1.1, WAN 198.18.2.1) -- ns B: SIPp trunk 198.18.2.2

Processes enter a namespace with `nsenter --net` (network namespace only): `ip netns exec` would also
give them a private mount namespace with a fresh /sys, and so a bpffs of their own, where the SBC's
pins would neither be seen by the test nor outlive the process. Namespaces and the pin directory
carry the test process's pid; every process is bounded in time and stopped at teardown.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dataplane.xdp.tool import run
from tests.dataplane import xdp_netns
from tests.dataplane.xdp_netns import Topology, inside
from tests.integration.harness import SBC_BIN, SbcProcess, Sipp, sipp
from tests.integration.rtp import RtpTap

PHONE = "198.18.1.2"
LAN_SBC = "198.18.1.1"
WAN_SBC = "198.18.2.1"
TRUNK = "198.18.2.2"
SIP_PORT = 15060  # above 1024: the same config serves the unprivileged run
MEDIA_PORT = 6000  # where each SIPp plays its pcap from (and receives)
LAN_MEDIA = range(40000, 41000)
WAN_MEDIA = range(41000, 42000)


def enter(netns: str) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{netns}", "--"]


def config_text(state_dir: Path) -> str:
    return f"""
sbc: {{user_agent: EdgeSBC-netns, state_dir: {state_dir}}}
timers: {{t1_ms: 500, t2_ms: 4000, t4_ms: 5000}}
realms:
  - name: lan
    trusted: true
    address: {LAN_SBC}
    networks: [198.18.1.0/24]
    listen: [{{transport: udp, port: {SIP_PORT}}}]
    media: {{address: {LAN_SBC}, ports: {LAN_MEDIA.start}-{LAN_MEDIA.stop - 1}, latch: learn, dscp: ef}}
  - name: wan
    address: {WAN_SBC}
    networks: [198.18.2.0/24]
    listen: [{{transport: udp, port: {SIP_PORT}}}]
    peer: {{host: {TRUNK}, port: {SIP_PORT}, transport: udp}}
    media: {{address: {WAN_SBC}, ports: {WAN_MEDIA.start}-{WAN_MEDIA.stop - 1}, dscp: af41}}
routes:
  - {{name: out, from: lan, to: wan}}
"""


def prepare(topo: Topology, *, napi_on_peers: bool = True) -> None:
    """Full checksums from the senders (the relay updates them incrementally; a veth with TX offload
    carries a partial one). With `napi_on_peers`, GRO on the outer ends of the SBC's veths as well:
    it gives them NAPI, which native XDP needs to deliver the frames it sends into a veth. Without
    it the outer ends are as a lab engineer creates them, and only generic XDP delivers."""
    for ns, dev in ((topo.a, "a0"), (topo.b, "b0")):
        run(["ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off", *(["gro", "on"] if napi_on_peers else [])])


@contextlib.contextmanager
def topology(*, napi_on_peers: bool = True) -> Iterator[Topology]:
    topo = xdp_netns.build(f"n{os.getpid()}")
    try:
        prepare(topo, napi_on_peers=napi_on_peers)
        yield topo
    finally:
        topo.destroy()


def netns_sbc(
    netns: str,
    workdir: Path,
    *,
    env: dict[str, str] | None = None,
    user: str | None = None,
    caps: tuple[str, ...] = (),
) -> SbcProcess:
    """`sbc run` in namespace `netns` on `workdir`/sbc.yaml and `workdir`/state, optionally as `user`
    (dropped with setpriv) keeping `caps` (e.g. "bpf", as sbc.service does); restartable on the same
    state."""
    workdir.mkdir(parents=True, exist_ok=True)
    state_dir = workdir / "state"
    config_path = workdir / "sbc.yaml"
    config_path.write_text(config_text(state_dir))
    drop: list[str] = []
    if user is not None:
        pw = pwd.getpwnam(user)
        state_dir.mkdir(mode=0o700, exist_ok=True)
        for path in (workdir, state_dir, config_path):
            os.chown(path, pw.pw_uid, pw.pw_gid)
        kept = ",".join(f"+{cap}" for cap in caps)
        keep = [f"--inh-caps=-all,{kept}", f"--ambient-caps=-all,{kept}", f"--bounding-set=-all,{kept}"] if caps else []
        drop = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", *keep, "--"]
    return SbcProcess(workdir, config_path, prefix=[*enter(netns), *drop], env=dict(env or {}))


def state_dir(sbc: SbcProcess) -> Path:
    return sbc.workdir / "state"


def sbc_cli(sbc: SbcProcess, command: str) -> str:
    """`sbc <command>` as an operator types it, against this SBC's control socket."""
    argv = [str(SBC_BIN), command, "--socket", str(sbc.control)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=20, check=True).stdout


def kill(sbc: SbcProcess, sig: signal.Signals) -> None:
    """Signal `sbc run` and wait until it is gone."""
    assert sbc.proc is not None
    sbc.proc.send_signal(sig)
    try:
        sbc.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        sbc.proc.kill()
        sbc.proc.wait(timeout=5)
        raise


def netns_sipp(netns: str, name: str, workdir: Path, scenario: str, *, address: str, pause_ms: int,
               remote: str | None = None, timeout_s: int = 60) -> Sipp:  # fmt: skip
    """A SIPp in `netns` whose media (the pcap it plays) comes from `address`:6000."""
    peer = sipp(
        name,
        workdir,
        scenario,
        local_ip=address,
        local_port=SIP_PORT,
        remote=remote,
        timeout_s=timeout_s,
        extra=["-mi", address, "-mp", str(MEDIA_PORT), "-d", str(pause_ms)],
    )
    peer.argv[:0] = enter(netns)
    return peer


def tap_in(netns: str, *networks: str) -> RtpTap:
    """A raw-socket tap created inside `netns`: it counts what reaches that host."""
    with inside(netns):
        return RtpTap(tuple(networks), frozenset({SIP_PORT})).start()


def wait_until(predicate: Any, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
