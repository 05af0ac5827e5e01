"""RTCP compound packets built by hand (RFC 3550 §6.4, §6.5), and an independent reader of them for the
tests: it checks every length field and the SDES padding rules, so a wrong rewrite cannot pass."""

from __future__ import annotations

import struct

SR, RR, SDES, BYE = 200, 201, 202, 203
CNAME, NAME, TOOL = 1, 2, 6


def sender_report(ssrc: int, packets: int = 20, octets: int = 3440) -> bytes:
    """An SR without report blocks: header, SSRC, NTP time, RTP time, sender's counts (7 words)."""
    return struct.pack("!BBHIIIIII", 0x80, SR, 6, ssrc, 0xE1000000, 0x80000000, 160 * packets, packets, octets)


def receiver_report(ssrc: int) -> bytes:
    return struct.pack("!BBHI", 0x80, RR, 1, ssrc)


def bye(ssrc: int) -> bytes:
    return struct.pack("!BBHI", 0x81, BYE, 1, ssrc)


def sdes(*chunks: tuple[int, list[tuple[int, bytes]]]) -> bytes:
    """An SDES packet: per chunk an SSRC and its items, ended by a null octet and padded (§6.5)."""
    body = b""
    for ssrc, items in chunks:
        chunk = struct.pack("!I", ssrc) + b"".join(bytes((kind, len(text))) + text for kind, text in items) + b"\0"
        body += chunk + bytes(-len(chunk) % 4)
    return struct.pack("!BBH", 0x80 | len(chunks), SDES, len(body) // 4) + body


def read_compound(data: bytes) -> list[tuple[int, bytes | list[tuple[int, list[tuple[int, bytes]]]]]]:
    """(packet type, body) per packet; SDES bodies as [(ssrc, [(item type, text)])]. Asserts the
    lengths add up exactly and every SDES chunk ends with a null octet on a 32-bit boundary."""
    out: list[tuple[int, bytes | list[tuple[int, list[tuple[int, bytes]]]]]] = []
    pos = 0
    while pos < len(data):
        first, kind, words = struct.unpack_from("!BBH", data, pos)
        assert first >> 6 == 2, "version 2"
        end = pos + 4 * (words + 1)
        assert end <= len(data), "length field beyond the datagram"
        if kind != SDES:
            out.append((kind, data[pos + 4 : end]))
            pos = end
            continue
        assert not first & 0x20, "no padding after a rewrite"
        chunks = []
        at = pos + 4
        for _ in range(first & 0x1F):
            ssrc = struct.unpack_from("!I", data, at)[0]
            at += 4
            items = []
            while data[at] != 0:
                length = data[at + 1]
                items.append((data[at], data[at + 2 : at + 2 + length]))
                at += 2 + length
            at += 1
            assert all(b == 0 for b in data[at : (at + 3) & ~3]), "null padding"
            at = (at + 3) & ~3
            chunks.append((ssrc, items))
        assert at == end, "the SDES length field covers exactly its chunks"
        out.append((kind, chunks))
        pos = end
    assert pos == len(data)
    return out
