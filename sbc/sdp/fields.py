"""The grammar of the SDP line values this layer reads: o=, c=, m=, a=rtcp and the direction attributes.

Each parser takes the text after `x=` and raises `SdpError` with a reason; each renderer gives the text
to put after `x=`. Lines not covered here are never parsed and pass through untouched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from ipaddress import IPv4Address, IPv6Address

from sbc.sdp.errors import SdpError

Address = IPv4Address | IPv6Address

# Attributes that only mean something to ICE (RFC 8839 §5); an anchoring SBC that does not run ICE
# must drop all of them, or the peer would try connectivity checks against addresses it never sees.
ICE_ATTRIBUTES = frozenset(
    {
        "ice-ufrag",
        "ice-pwd",
        "ice-options",
        "ice-pacing",
        "ice-lite",
        "ice-mismatch",
        "candidate",
        "end-of-candidates",
        "remote-candidates",
    }
)

# Long enough for 64-bit and NTP-based values, short enough to keep int() cheap on garbage.
_MAX_DIGITS = 32

# RFC 8866 §5.14: m=<media> <port>[/<number of ports>] <proto> <fmt> ...
_MEDIA_RE = re.compile(r"([^ ]+) +([0-9]{1,5})(?:/([0-9]{1,5}))? +([^ ]+)((?: +[^ ]+)*) *", re.ASCII)


class Direction(StrEnum):
    """RFC 3264 §5.1 / RFC 8866 §6.7, seen from the side that wrote the SDP."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"


DIRECTIONS: dict[str, Direction] = {d.value: d for d in Direction}


def parse_uint(text: str, what: str) -> int:
    # isdigit() alone accepts "²" and other Unicode digits; int() alone accepts "1_0" and " 1".
    if not text or not text.isascii() or not text.isdigit() or len(text) > _MAX_DIGITS:
        raise SdpError(f"{what} is not a number: {text!r}")
    return int(text)


def parse_port(text: str, what: str) -> int:
    port = parse_uint(text, what)
    if port > 65535:
        raise SdpError(f"{what} out of range: {port}")
    return port


def addrtype(address: Address) -> str:
    return "IP4" if address.version == 4 else "IP6"


@lru_cache(maxsize=1024)
def _address(kind: str, literal: str) -> Address | None:
    # ipaddress parsing costs microseconds and the same few peers come back call after call.
    try:
        return IPv4Address(literal) if kind == "IP4" else IPv6Address(literal)
    except ValueError:
        return None


def parse_address(nettype: str, kind: str, text: str, what: str) -> Address:
    """An `IN IP4|IP6 <address>` triple; multicast `/ttl/count` suffixes are dropped (RFC 8866 §5.7)."""
    if nettype != "IN":
        raise SdpError(f"{what}: unsupported network type {nettype!r}")
    if kind not in ("IP4", "IP6"):
        raise SdpError(f"{what}: unsupported address type {kind!r}")
    literal = text.split("/", 1)[0]
    # The length bound keeps garbage out of the cache; no address literal comes close to it.
    address = _address(kind, literal) if len(literal) <= 64 else None
    if address is None:
        raise SdpError(f"{what}: not an {kind} address literal: {text!r}")
    return address


def parse_connection(value: str) -> Address:
    """c=<nettype> <addrtype> <connection-address> (RFC 8866 §5.7). FQDNs are refused: the relay needs IPs."""
    fields = value.split()
    if len(fields) != 3:
        raise SdpError(f"bad c= line: {value!r}")
    return parse_address(fields[0], fields[1], fields[2], "c=")


def render_connection(address: Address) -> str:
    return f"c=IN {addrtype(address)} {address}"


@dataclass(frozen=True, slots=True)
class Origin:
    """o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address> (RFC 8866 §5.2).

    `address` stays text: an FQDN is legal here and nothing routes on it.
    """

    username: str
    sess_id: str
    sess_version: int
    nettype: str
    addrtype: str
    address: str

    @classmethod
    def parse(cls, value: str) -> Origin:
        fields = value.split()
        if len(fields) != 6:
            raise SdpError(f"bad o= line: {value!r}")
        username, sess_id, version, nettype, kind, address = fields
        return cls(username, sess_id, parse_uint(version, "o= sess-version"), nettype, kind, address)

    def render(self) -> str:
        return f"o={self.username} {self.sess_id} {self.sess_version} {self.nettype} {self.addrtype} {self.address}"


@dataclass(frozen=True, slots=True)
class MediaLine:
    """The fields of an m= line (RFC 8866 §5.14)."""

    media: str
    port: int
    port_count: int | None
    proto: str
    formats: tuple[str, ...]

    @classmethod
    def parse(cls, value: str) -> MediaLine:
        match = _MEDIA_RE.fullmatch(value)
        if match is None:
            raise SdpError(f"bad m= line: {value!r}")
        media, port, count, proto, formats = match.groups()
        return cls(
            media,
            parse_port(port, "m= port"),
            None if count is None else parse_port(count, "m= number of ports"),
            proto,
            tuple(formats.split()),
        )


def render_media_port(value: str, port: int) -> str:
    """The m= value with only its port replaced; every other byte stays as written."""
    match = _MEDIA_RE.fullmatch(value)
    if match is None:  # pragma: no cover - the section was parsed with the same expression
        raise SdpError(f"bad m= line: {value!r}")
    start, end = match.span(2)
    return f"m={value[:start]}{port}{value[end:]}"


@dataclass(frozen=True, slots=True)
class RtcpAttribute:
    """a=rtcp:<port> [<nettype> <addrtype> <connection-address>] (RFC 3605 §2.1)."""

    port: int
    address: Address | None

    @classmethod
    def parse(cls, value: str) -> RtcpAttribute:
        fields = value.split()
        if len(fields) == 1:
            return cls(parse_port(fields[0], "a=rtcp port"), None)
        if len(fields) == 4:
            return cls(parse_port(fields[0], "a=rtcp port"), parse_address(fields[1], fields[2], fields[3], "a=rtcp"))
        raise SdpError(f"bad a=rtcp attribute: {value!r}")

    def render(self) -> str:
        if self.address is None:
            return f"a=rtcp:{self.port}"
        return f"a=rtcp:{self.port} IN {addrtype(self.address)} {self.address}"
