"""The lab around a booted appliance: one network namespace with the WAN and LAN tap devices of the
VM, addressed from the benchmarking range 198.18.0.0/15 to match the image's factory defaults.

    ns <name>:  tapwan 198.18.2.2/24  (the trunk side: SIPp UAS, a provisioning/update web server)
                taplan 198.18.1.10/24 (the phones and the operator: SIPp UAC, snmpwalk, Chromium)
    VM:         wan0 198.18.2.10/24   lan0 198.18.1.1/24

QEMU runs inside the namespace (`ip netns exec`), so nothing here touches the host's own network,
and deleting the namespace removes the taps with it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

WAN_HOST = "198.18.2.2"
LAN_HOST = "198.18.1.10"
SBC_WAN = "198.18.2.10"
SBC_LAN = "198.18.1.1"


@dataclass(frozen=True, slots=True)
class LabNet:
    netns: str
    wan_tap: str = "tapwan"
    lan_tap: str = "taplan"

    def ip(self, *args: str) -> None:
        subprocess.run(["ip", "-n", self.netns, *args], check=True, capture_output=True, text=True)

    def exec_argv(self, argv: list[str]) -> list[str]:
        """argv to run inside the namespace."""
        return ["ip", "netns", "exec", self.netns, *argv]


def _ns_name(tag: str) -> str:
    return f"sbcimg{os.environ.get('SBC_TEST_NET', '0')}-{tag}-{os.getpid()}"


@contextlib.contextmanager
def lab_network(tag: str = "lab") -> Iterator[LabNet]:
    """Create the namespace and taps; always delete them again."""
    net = LabNet(_ns_name(tag))
    subprocess.run(["ip", "netns", "add", net.netns], check=True, capture_output=True, text=True)
    try:
        net.ip("link", "set", "lo", "up")
        for tap, address in ((net.wan_tap, f"{WAN_HOST}/24"), (net.lan_tap, f"{LAN_HOST}/24")):
            net.ip("tuntap", "add", "dev", tap, "mode", "tap")
            net.ip("addr", "add", address, "dev", tap)
            net.ip("link", "set", tap, "up")
        yield net
    finally:
        subprocess.run(["ip", "netns", "del", net.netns], check=False, capture_output=True)
