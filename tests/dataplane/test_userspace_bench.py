"""Rough throughput of UserspaceRelay on loopback, bounded in count (20,000 packets) and time (15 s).

Sender, relay and receiver share one thread here, so the printed rate is a lower bound for the relay
alone. The assertion is only that every packet is relayed, in order, with exact counters, while bursts
larger than the per-callback batch (64) keep arriving.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
import struct
import time

from dataplane.api import Endpoint, LegProgram
from dataplane.userspace import UserspaceRelay

TOTAL = 20_000
BURST = 100  # more than one readiness callback reads
WINDOW = 200  # packets in flight at most, so loopback socket buffers never overflow
TIME_LIMIT_S = 15.0


def test_relay_throughput_bounded() -> None:
    loop = asyncio.new_event_loop()
    relay = UserspaceRelay(loop)
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        phone.bind(("127.0.1.10", 0))
        peer.bind(("127.0.2.10", 0))
        peer.setblocking(False)
        base = random.randrange(20000, 60000, 2)
        lan = relay.allocate("lan", ipaddress.ip_address("127.0.1.1"), base, base + 199)
        wan = relay.allocate("wan", ipaddress.ip_address("127.0.2.1"), base, base + 199)
        relay.program(lan, LegProgram(Endpoint(ipaddress.ip_address("127.0.1.10"), phone.getsockname()[1])))
        relay.program(wan, LegProgram(Endpoint(ipaddress.ip_address("127.0.2.10"), peer.getsockname()[1])))
        relay.connect(lan, wan)
        dst = ("127.0.1.1", lan.rtp_port)
        packets = [struct.pack("!BBHII", 0x80, 0, i, i * 160, 7) + b"\xd5" * 160 for i in range(TOTAL)]
        sent = got = 0
        in_order = True

        async def run() -> None:
            nonlocal sent, got, in_order
            progress_at = time.perf_counter()
            while got < TOTAL and time.perf_counter() - start < TIME_LIMIT_S:
                if time.perf_counter() - progress_at > 2.0:
                    break  # a packet was lost: the window never reopens
                if sent - got <= WINDOW - BURST:
                    for _ in range(min(BURST, TOTAL - sent)):
                        phone.sendto(packets[sent], dst)
                        sent += 1
                await asyncio.sleep(0)
                for _ in range(WINDOW):
                    try:
                        data = peer.recv(2048)
                    except BlockingIOError:
                        break
                    in_order = in_order and data == packets[got]
                    got += 1
                    progress_at = time.perf_counter()

        start = time.perf_counter()
        loop.run_until_complete(run())
        elapsed = time.perf_counter() - start
        print(
            f"\nuserspace relay, loopback, one thread: {got} packets in {elapsed:.2f} s = {got / elapsed:.0f} pkt/s"
            f" (sent {sent}, accepted by the relay {relay.stats(lan).packets_in})"
        )
        assert got == sent == TOTAL and in_order
        stats = relay.stats(lan)
        assert (stats.packets_in, stats.rtp_expected, stats.rtp_lost) == (TOTAL, TOTAL, 0)
        assert relay.stats(wan).packets_out == TOTAL
        assert relay.totals().relayed_packets == TOTAL
    finally:
        relay.close()
        phone.close()
        peer.close()
        loop.close()
