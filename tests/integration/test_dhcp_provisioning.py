"""The first boot's DHCPINFORM against a real DHCP server (dnsmasq) across a veth pair, each end in
a namespace of its own: the URL comes back from option 224 or 160, and no server means no URL."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dhcp import dnsmasq_dhcp, wan_pair

pytestmark = [
    pytest.mark.integration,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("dnsmasq") is None, reason="needs root and dnsmasq"),
]
NET = os.environ.get("SBC_TEST_NET", "0")
SERVER, BOX = "198.18.9.2", "198.18.9.10"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def wan() -> Iterator[tuple[str, str]]:
    """(server namespace, box namespace) joined by a veth whose box end is called wan0."""
    with wan_pair(f"sbcdhcp{NET}{os.getpid()}", "dhcpsrv", SERVER, BOX) as pair:
        yield pair


def ask_in(box: str) -> str:
    code = "from hw.appliance.dhcpinform import ask; print(ask('wan0'))"
    done = subprocess.run(["ip", "netns", "exec", box, sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30, cwd=ROOT, check=True)  # fmt: skip
    return done.stdout.strip()


@pytest.mark.parametrize("option", [224, 160])
def test_the_dhcp_server_gives_the_url(wan: tuple[str, str], tmp_path: Path, option: int) -> None:
    server, box = wan
    url = f"http://{SERVER}:8080/branch-7.yaml"
    with dnsmasq_dhcp(server, "dhcpsrv", "198.18.9.0/24", {option: url}, tmp_path) as log:
        found = ask_in(box)
        assert found == f"Found(url='{url}', option={option}, server='{SERVER}')", log.read_text()
        assert found == f"Found(url='{url}', option={option}, server='{SERVER}')"
        text = log.read_text()
    assert f"DHCPINFORM(dhcpsrv) {BOX}" in text and "vendor class: edge-sbc" in text


def test_a_server_without_the_url_and_no_server_give_nothing(wan: tuple[str, str], tmp_path: Path) -> None:
    server, box = wan
    with dnsmasq_dhcp(server, "dhcpsrv", "198.18.9.0/24", {67: "pxelinux.0"}, tmp_path):
        assert ask_in(box) == "None"
    assert ask_in(box) == "None"  # nobody answers: three tries, then none
