"""Ask the WAN's DHCP server where this box's config is (DHCPINFORM, RFC 2131 §3.4).

The appliance's WAN keeps the address it was given (the factory's, or a provisioned one), so it
does not lease one: a DHCPINFORM from that address asks only for options. The provisioning URL is
taken from, in this order:

* option 224 (site-specific, RFC 3942): the URL of this box's config, the SBC's own option;
* option 160: the provisioning URL as IP phones and other SBCs read it;
* option 67 (bootfile name) when it is an http:// or https:// URL.

The packet logic is sans-IO (`build_inform`, `parse_reply`, `provisioning_url`); `ask()` is the
socket around it. A DHCP answer is as trustworthy as the WAN segment it came from: the first boot
asks only when the operator opted in (`sbc.provision_dhcp=yes`) and takes only https URLs it can
check (provisioning.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import secrets
import select
import socket
import struct
import time
from dataclasses import dataclass

MAGIC_COOKIE = b"\x63\x82\x53\x63"
BOOTREQUEST, BOOTREPLY = 1, 2
DHCPACK, DHCPINFORM = 5, 8
OPT_PAD, OPT_END = 0, 255
OPT_MESSAGE_TYPE, OPT_PARAMETER_LIST, OPT_CLIENT_ID, OPT_VENDOR_CLASS = 53, 55, 61, 60
OPT_BOOTFILE, OPT_PROVISIONING_URL, OPT_SBC_CONFIG_URL = 67, 160, 224
URL_OPTIONS = (OPT_SBC_CONFIG_URL, OPT_PROVISIONING_URL, OPT_BOOTFILE)
VENDOR_CLASS = b"edge-sbc"
SERVER_PORT, CLIENT_PORT = 67, 68
_FIXED = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")  # the BOOTP header, RFC 2131 figure 1
SIOCGIFADDR = 0x8915


class DhcpError(ValueError):
    """A reply that is not a well-formed DHCP message."""


@dataclass(frozen=True, slots=True)
class Found:
    url: str
    option: int  # which option carried it
    server: str  # who answered


def build_inform(xid: int, mac: bytes, address: ipaddress.IPv4Address) -> bytes:
    """A DHCPINFORM from `address` (ciaddr) asking for the URL options."""
    if len(mac) != 6:
        raise ValueError("an Ethernet MAC is 6 bytes")
    header = _FIXED.pack(BOOTREQUEST, 1, 6, 0, xid, 0, 0, address.packed, b"\0" * 4, b"\0" * 4,
                         b"\0" * 4, mac.ljust(16, b"\0"), b"", b"")  # fmt: skip
    options = bytearray(MAGIC_COOKIE)
    options += bytes((OPT_MESSAGE_TYPE, 1, DHCPINFORM))
    options += bytes((OPT_CLIENT_ID, 7, 1)) + mac
    options += bytes((OPT_VENDOR_CLASS, len(VENDOR_CLASS))) + VENDOR_CLASS
    options += bytes((OPT_PARAMETER_LIST, len(URL_OPTIONS), *URL_OPTIONS))
    options.append(OPT_END)
    packet = header + bytes(options)
    return packet.ljust(300, b"\0")  # the BOOTP minimum some relays and servers insist on


def parse_reply(data: bytes, xid: int) -> dict[int, bytes] | None:
    """The options of a DHCPACK for `xid`; None for anything else on the port (other clients' traffic).
    Raises DhcpError for a message that claims to be ours but is malformed."""
    if len(data) < _FIXED.size + len(MAGIC_COOKIE):
        return None
    fields = _FIXED.unpack_from(data)
    if fields[0] != BOOTREPLY or fields[4] != xid:
        return None
    if data[_FIXED.size : _FIXED.size + 4] != MAGIC_COOKIE:
        raise DhcpError("no DHCP magic cookie")
    options: dict[int, bytes] = {}
    at = _FIXED.size + 4
    while at < len(data):
        code = data[at]
        if code == OPT_END:
            break
        if code == OPT_PAD:
            at += 1
            continue
        if at + 1 >= len(data) or at + 2 + data[at + 1] > len(data):
            raise DhcpError(f"option {code} runs past the end of the message")
        length = data[at + 1]
        # RFC 3396: an option split into several instances is their concatenation.
        options[code] = options.get(code, b"") + data[at + 2 : at + 2 + length]
        at += 2 + length
    if options.get(OPT_MESSAGE_TYPE) != bytes((DHCPACK,)):
        return None
    return options


def provisioning_url(options: dict[int, bytes]) -> tuple[str, int] | None:
    """(URL, option) from the first URL option that holds an http(s) URL."""
    for code in URL_OPTIONS:
        raw = options.get(code)
        if not raw:
            continue
        text = raw.rstrip(b"\0").decode("ascii", errors="replace").strip()
        if text.lower().startswith(("http://", "https://")) and text.isprintable() and " " not in text:
            return text, code
    return None


def interface_ipv4(interface: str) -> ipaddress.IPv4Address | None:
    """The interface's (primary) IPv4 address, or None when it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            reply = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, struct.pack("256s", interface.encode()[:15]))
        except OSError:
            return None
    return ipaddress.IPv4Address(reply[20:24])


def interface_mac(interface: str) -> bytes | None:
    try:
        with open(f"/sys/class/net/{interface}/address") as handle:
            return bytes.fromhex(handle.read().strip().replace(":", ""))
    except (OSError, ValueError):
        return None


def ask(interface: str, *, waits: tuple[float, ...] = (1.0, 2.0, 4.0)) -> Found | None:
    """Broadcast a DHCPINFORM on `interface` (retransmitted after each wait); the URL found, or None
    when no server answers with one. Needs CAP_NET_RAW/CAP_NET_BIND_SERVICE (port 68, the device)."""
    address = interface_ipv4(interface)
    mac = interface_mac(interface)
    if address is None or mac is None or len(mac) != 6:
        return None
    xid = secrets.randbits(32)
    packet = build_inform(xid, mac, address)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.bind(("0.0.0.0", CLIENT_PORT))
        for wait in waits:
            sock.sendto(packet, ("255.255.255.255", SERVER_PORT))
            deadline = time.monotonic() + wait
            while (left := deadline - time.monotonic()) > 0:
                readable, _, _ = select.select([sock], [], [], left)
                if not readable:
                    break
                data, (server, _) = sock.recvfrom(4096)
                options = None
                with contextlib.suppress(DhcpError):
                    options = parse_reply(data, xid)
                if options is None:
                    continue
                found = provisioning_url(options)
                # A server that answers without a URL has said all it will: no point asking again.
                return Found(found[0], found[1], server) if found else None
    return None
