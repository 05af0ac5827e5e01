"""The relay under test in `make bench`'s relay benchmark: one anchored call on the real relay.

Run inside the middle namespace of `tests.dataplane.xdp_netns` (phone 198.18.1.2 -- LAN 198.18.1.1 |
WAN 198.18.2.1 -- far end 198.18.2.2): `python -m tests.bench.relay_node --mode xdp|userspace`.
It allocates a LAN and a WAN anchor, programs both legs with the SDP endpoints the traffic generator
uses, connects them, and (XDP) waits until both directions are offloaded. Then it prints one JSON line
`{"lan_port": ..., "wan_port": ...}` and serves stdin: each line "counters" is answered with the relay's
`Dataplane.counters()` as one JSON line; end of input stops it (XDP: entries removed, program detached).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import socket
import sys
import time

from dataplane.api import Dataplane, Endpoint, LegProgram

LAN = ipaddress.ip_address("198.18.1.1")
WAN = ipaddress.ip_address("198.18.2.1")
PHONE = Endpoint(ipaddress.ip_address("198.18.1.2"), 5000)
FAR = Endpoint(ipaddress.ip_address("198.18.2.2"), 5004)


def _prime_neighbours() -> None:
    """The XDP relay takes next-hop MACs from the neighbour table; signalling fills it in real life."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for ep in (PHONE, FAR):
            s.sendto(b"arp", (str(ep.address), 9))


async def serve(mode: str, pin_dir: str | None) -> int:
    loop = asyncio.get_running_loop()
    relay: Dataplane
    if mode == "xdp":
        from dataplane.xdp.relay import XdpRelay

        _prime_neighbours()
        from dataplane.settings import XdpAttach

        # native, as on a box with real NICs: the driver gives GRO (so NAPI) to the veth peers
        relay = XdpRelay.start(
            loop, [LAN, WAN], pin_dir=pin_dir, xdp_mode=XdpAttach.NATIVE, mode_origin="the bench's veth peers have NAPI"
        )
    else:
        from dataplane.userspace import UserspaceRelay

        relay = UserspaceRelay(loop)
    lan = relay.allocate("lan", LAN, 40000, 40099)
    wan = relay.allocate("wan", WAN, 41000, 41099)
    relay.program(lan, LegProgram(remote_rtp=PHONE, dscp=46))
    relay.program(wan, LegProgram(remote_rtp=FAR, dscp=46))
    relay.connect(lan, wan)
    if mode == "xdp":
        deadline = time.monotonic() + 15
        while not (relay.stats(lan).in_kernel and relay.stats(wan).in_kernel) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)  # the relay's tick offloads once the neighbours are resolved
        if not relay.stats(lan).in_kernel:
            print(json.dumps({"error": "not offloaded: neighbours unresolved"}), flush=True)
            return 1
    print(json.dumps({"lan_port": lan.rtp_port, "wan_port": wan.rtp_port}), flush=True)

    done = asyncio.Event()

    def on_input() -> None:
        line = sys.stdin.readline()
        if not line:
            done.set()
            return
        if line.strip() == "counters":
            print(json.dumps(relay.counters().as_dict()), flush=True)

    loop.add_reader(sys.stdin.fileno(), on_input)
    try:
        await asyncio.wait_for(done.wait(), timeout=600)  # bounded even if the driver vanished
    except TimeoutError:
        pass
    finally:
        loop.remove_reader(sys.stdin.fileno())
        if mode == "xdp":
            from dataplane.xdp.relay import XdpRelay

            assert isinstance(relay, XdpRelay)
            relay.shutdown(detach=True)
        else:
            relay.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="relay_node")
    parser.add_argument("--mode", choices=("xdp", "userspace"), required=True)
    parser.add_argument("--pin-dir", help="bpffs directory for the XDP relay's pins")
    args = parser.parse_args()
    return asyncio.run(serve(args.mode, args.pin_dir))


if __name__ == "__main__":
    sys.exit(main())
