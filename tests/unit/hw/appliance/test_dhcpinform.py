"""DHCPINFORM for the provisioning URL: the packet, the reply parser and which option wins."""

from __future__ import annotations

import contextlib
import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hw.appliance.dhcpinform import (
    DHCPINFORM,
    OPT_BOOTFILE,
    OPT_PROVISIONING_URL,
    OPT_SBC_CONFIG_URL,
    DhcpError,
    build_inform,
    parse_reply,
    provisioning_url,
)

MAC = bytes.fromhex("5254005b0002")
ADDRESS = ipaddress.IPv4Address("198.18.2.10")


def reply(xid: int, options: list[tuple[int, bytes]], *, message_type: int = 5, op: int = 2) -> bytes:
    header = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", op, 1, 6, 0, xid, 0, 0, ADDRESS.packed, b"\0" * 4,
                         bytes((198, 18, 2, 2)), b"\0" * 4, MAC.ljust(16, b"\0"), b"", b"")  # fmt: skip
    body = bytearray(b"\x63\x82\x53\x63" + bytes((53, 1, message_type)))
    for code, value in options:
        body += bytes((code, len(value))) + value
    return header + bytes(body) + b"\xff"


def test_the_inform_carries_the_address_mac_and_asks_for_the_url_options() -> None:
    packet = build_inform(0x12345678, MAC, ADDRESS)
    assert len(packet) >= 300 and packet[0] == 1 and packet[4:8] == bytes.fromhex("12345678")
    assert packet[12:16] == ADDRESS.packed and packet[28:34] == MAC
    options = packet[240:]
    assert options.startswith(bytes((53, 1, DHCPINFORM)))
    asked = options[options.index(bytes((55, 3))) + 2 :][:3]
    assert list(asked) == [OPT_SBC_CONFIG_URL, OPT_PROVISIONING_URL, OPT_BOOTFILE]


def test_a_reply_yields_its_options_and_split_options_are_joined() -> None:
    data = reply(7, [(224, b"http://198.18.2.2:8080/"), (224, b"sbc.yaml")])
    options = parse_reply(data, 7)
    assert options is not None and options[224] == b"http://198.18.2.2:8080/sbc.yaml"
    assert provisioning_url(options) == ("http://198.18.2.2:8080/sbc.yaml", 224)


def test_other_traffic_on_the_port_is_ignored() -> None:
    assert parse_reply(reply(7, []), 8) is None  # someone else's transaction
    assert parse_reply(reply(7, [], op=1), 7) is None  # a request, not a reply
    assert parse_reply(reply(7, [], message_type=6), 7) is None  # a NAK
    assert parse_reply(b"\x02short", 7) is None


def test_a_truncated_option_is_an_error() -> None:
    data = reply(7, [(224, b"http://x/")])[:-4]
    with pytest.raises(DhcpError):
        parse_reply(data, 7)


@pytest.mark.parametrize(
    ("options", "expected"),
    [({224: b"https://a/c.yaml", 160: b"https://b/", 67: b"http://c/"}, ("https://a/c.yaml", 224)),
     ({160: b"https://b/p\0", 67: b"http://c/"}, ("https://b/p", 160)),
     ({67: b"pxelinux.0", 160: b"ftp://b/"}, None),  # a PXE boot file and a scheme we do not fetch
     ({67: b"http://c/sbc.yaml"}, ("http://c/sbc.yaml", 67)),
     ({224: b"http://a/with space"}, None)],
)  # fmt: skip
def test_which_option_gives_the_url(options: dict[int, bytes], expected: tuple[str, int] | None) -> None:
    assert provisioning_url(options) == expected


@given(st.binary(max_size=600), st.integers(0, 600))
def test_no_reply_crashes_the_parser(noise: bytes, cut: int) -> None:
    for data in (noise, reply(9, [(224, noise[:255])])[:cut] + noise):
        with contextlib.suppress(DhcpError):
            parse_reply(data, 9)
