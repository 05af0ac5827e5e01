"""RTCP SDES CNAME scrubbing (RFC 3550 §6.5): relayed RTCP must not carry one realm's addresses into
another. Phones put their inside address into the CNAME (`user@10.1.2.3`, RFC 3550 §6.5.1); the relay
replaces each CNAME text of a compound packet by an opaque token and fixes the length fields.

The token is a keyed hash of the original CNAME (the key is the relay's secret), as 16 hexadecimal
characters: the same participant keeps the same token in all its streams (RFC 3550 §6.5.1 binds a
participant's audio and video by CNAME, for lip sync), different participants keep different ones,
and nothing of the inside name can be read back from it.

`scrub_cnames` answers None when there is nothing to rewrite: no SDES with a CNAME, or a packet that
does not parse as an RTCP compound packet. The latter includes SRTCP (RFC 3711), whose SDES is
encrypted: it goes on unchanged, and unreadable.
"""

from __future__ import annotations

import hashlib
import struct

__all__ = ["CNAME_TOKEN_LENGTH", "CnameTokens", "scrub_cnames"]

PT_SDES = 202
SDES_END = 0
SDES_CNAME = 1
CNAME_TOKEN_LENGTH = 16
_HEADER = struct.Struct("!BBH")


class CnameTokens:
    """Opaque stand-ins for CNAMEs: a keyed BLAKE2s of the CNAME, 16 hex characters."""

    def __init__(self, secret: bytes) -> None:
        if not 16 <= len(secret) <= 32:
            raise ValueError("the CNAME token secret has 16 to 32 bytes")
        self._secret = secret
        self._cache: dict[bytes, bytes] = {}

    def token(self, cname: bytes) -> bytes:
        found = self._cache.get(cname)
        if found is None:
            digest = hashlib.blake2s(cname, key=self._secret, digest_size=CNAME_TOKEN_LENGTH // 2)
            found = digest.hexdigest().encode("ascii")
            if len(self._cache) >= 4096:  # bounded: one entry per participant seen, flushed when full
                self._cache.clear()
            self._cache[cname] = found
        return found


def scrub_cnames(packet: bytes | memoryview, tokens: CnameTokens) -> bytes | None:
    """`packet` (an RTCP compound packet) with every SDES CNAME replaced by its token, or None when
    nothing was replaced or the packet does not parse (it is then relayed as it is)."""
    data = bytes(packet)
    out: list[bytes] = []
    changed = False
    offset = 0
    for _ in range(64):  # bounded: a compound packet has a handful of packets
        if offset == len(data):
            return b"".join(out) if changed else None
        if len(data) - offset < 4:
            return None
        first, packet_type, length_words = _HEADER.unpack_from(data, offset)
        size = (length_words + 1) * 4
        if first >> 6 != 2 or offset + size > len(data):
            return None
        body = data[offset : offset + size]
        if packet_type == PT_SDES:
            rewritten = _scrub_sdes(body, tokens)
            if rewritten is None:
                return None
            if rewritten != body:
                changed = True
            body = rewritten
        out.append(body)
        offset += size
    return None


def _scrub_sdes(sdes: bytes, tokens: CnameTokens) -> bytes | None:
    """One SDES packet with its CNAME items replaced; None when it does not parse (§6.5)."""
    first = sdes[0]
    end = len(sdes)
    if first & 0x20:  # padding (only for encryption, RFC 3550 §6.4.1): the last octet counts it
        pad = sdes[-1]
        if pad == 0 or pad > end - 4:
            return None
        end -= pad
    chunks = first & 0x1F
    pos = 4
    body = bytearray()
    for _ in range(chunks):
        if pos + 4 > end:
            return None
        chunk = bytearray(sdes[pos : pos + 4])  # SSRC/CSRC
        pos += 4
        for _ in range(256):  # bounded: an item takes at least 2 octets of at most 1 KiB
            if pos >= end:
                return None
            item_type = sdes[pos]
            if item_type == SDES_END:
                pos += 1
                break
            if pos + 2 > end or pos + 2 + sdes[pos + 1] > end:
                return None
            length = sdes[pos + 1]
            text = sdes[pos + 2 : pos + 2 + length]
            if item_type == SDES_CNAME:
                text = tokens.token(text)
            chunk += bytes((item_type, len(text))) + text
            pos += 2 + length
        else:
            return None
        chunk.append(SDES_END)  # the terminating null octet, and more up to the 32-bit boundary
        chunk += bytes(-len(chunk) % 4)
        body += chunk
        pos = (pos + 3) & ~3  # the sender's own null padding of this chunk
    words = (4 + len(body)) // 4 - 1
    return _HEADER.pack(first & ~0x20, PT_SDES, words) + bytes(body)
