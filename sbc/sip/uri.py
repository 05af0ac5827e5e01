"""SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966) and name-addr values (§20.10).

Values are parsed from `str` (header text decoded with surrogateescape, so no byte is lost) and
rendered back with `str()`. Parameters keep their original order and spelling.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TypeVar

from sbc.sip.errors import RemoteProtocolError

Params = tuple[tuple[str, str | None], ...]

_URI_SCHEMES = ("sip", "sips", "tel")
# LWS only: str.strip() would also eat NEL, NBSP and the like, which no SIP peer treats as blank.
LWS = " \t"
# RFC 3986 §3.1: a scheme that is well formed but unknown earns 416, anything else 400.
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_\-.]*)")
_DOTTED_RE = re.compile(r"[0-9.]+")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4_RE = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
# A parameter name (pname / generic-param token): no LWS, quotes, brackets or separators.
_PNAME_RE = re.compile(r"[^ \t\"<>,;=@\r\n]+")
# RFC 3966 telephone-subscriber digits: global "+" digits, or local hex digits, "*", "#", separators.
_TEL_NUMBER_RE = re.compile(r"\+?[0-9A-Fa-f*#\-.()]+")
# RFC 3261 §25.1 token, used for unquoted display names (plus non-ASCII, which real phones send).
_DISPLAY_CHARS = r"[A-Za-z0-9\-.!%*_+`'~\x80-\U0010ffff]+"
_DISPLAY_TOKENS_RE = re.compile(rf"{_DISPLAY_CHARS}(?:[ \t]+{_DISPLAY_CHARS})*")


_T = TypeVar("_T")
# Values are parsed far more often than they differ: every message's From, To, Via and Contact are
# read by the parser's checks, the transaction layer and the B2BUA, and retransmissions repeat them.
# The parsed types are frozen, so equal text can share one parsed value. Only short texts are kept
# (no peer can fill the cache with huge values), and errors are never cached (raised every time).
_CACHE_SIZE = 4096
_CACHEABLE_LENGTH = 512


def memoized(parse: Callable[[str], _T]) -> Callable[[str], _T]:
    cached = lru_cache(maxsize=_CACHE_SIZE)(parse)

    def lookup(text: str) -> _T:
        return cached(text) if len(text) <= _CACHEABLE_LENGTH else parse(text)

    return lookup


def parse_params(text: str, sep: str = ";", *, strict: bool = False) -> Params:
    """Parse `a=b;c;d="x;y"` (without the leading separator) into ordered pairs.

    `strict` rejects what the grammar forbids: empty parameters (`a;;b`, RFC 4475 §3.1.2.1) and
    names with LWS, quotes or brackets in them.
    """
    out: list[tuple[str, str | None]] = []
    if not text:
        return ()
    for part in split_quoted(text, sep):
        part = part.strip(LWS)
        if not part:
            if strict:
                raise RemoteProtocolError(f"empty parameter in {text[:60]!r}", 400)
            continue
        name, eq, value = part.partition("=")
        name = name.strip(LWS)
        if strict and not _PNAME_RE.fullmatch(name):
            raise RemoteProtocolError(f"bad parameter name {name[:40]!r}", 400)
        out.append((name, value.strip(LWS) if eq else None))
    return tuple(out)


def render_params(params: Params, sep: str = ";") -> str:
    return "".join(f"{sep}{k}" if v is None else f"{sep}{k}={v}" for k, v in params)


def param_value(params: Params, name: str) -> str | None:
    lname = name.lower()
    for k, v in params:
        if k.lower() == lname:
            return v if v is not None else ""
    return None


def with_param(params: Params, name: str, value: str | None) -> Params:
    """Set (or add) a parameter, keeping the position of an existing one."""
    lname = name.lower()
    out = []
    found = False
    for k, v in params:
        if k.lower() == lname:
            if not found:
                out.append((k, value))
                found = True
        else:
            out.append((k, v))
    if not found:
        out.append((name, value))
    return tuple(out)


def without_param(params: Params, name: str) -> Params:
    lname = name.lower()
    return tuple((k, v) for k, v in params if k.lower() != lname)


def split_quoted(text: str, sep: str) -> list[str]:
    """Split on `sep` outside double quotes and angle brackets (RFC 3261 §7.3.1 comma rule)."""
    if sep not in text:
        return [text]
    if '"' not in text and "<" not in text:
        return text.split(sep)  # no quotes or brackets to skip: no character walk
    parts: list[str] = []
    start = 0
    in_quote = False
    depth = 0
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if in_quote:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def format_host(host: str) -> str:
    """Bracket an IPv6 literal for use in a URI or Via (RFC 3261 §25.1 IPv6reference)."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def unbracket(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def host_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address a host part names, or None for a domain name."""
    try:
        return ipaddress.ip_address(unbracket(host))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Uri:
    """A sip:, sips: or tel: URI. `host` keeps IPv6 brackets; `port` is None when absent."""

    scheme: str
    user: str | None
    password: str | None
    host: str
    port: int | None
    params: Params = ()
    headers: str | None = None

    @classmethod
    def parse(cls, text: str) -> Uri:
        """Parse a URI; 416 for a well-formed but unsupported scheme, 400 for anything malformed."""
        return _parse_uri(text)

    @classmethod
    def _parse(cls, text: str) -> Uri:
        text = text.strip(LWS)
        scheme, colon, rest = text.partition(":")
        lscheme = scheme.lower()
        if not colon or not _SCHEME_RE.fullmatch(scheme):
            raise RemoteProtocolError(f"malformed URI {text[:60]!r}", 400)
        if lscheme not in _URI_SCHEMES:
            raise RemoteProtocolError(f"unsupported URI scheme in {text[:60]!r}", 416)
        if any(c in rest for c in ' \t\r\n"<>'):
            raise RemoteProtocolError(f"malformed URI {text[:60]!r}", 400)
        if lscheme == "tel":
            number, _, ptext = rest.partition(";")
            if not _TEL_NUMBER_RE.fullmatch(number):
                raise RemoteProtocolError(f"bad tel URI {text[:60]!r}", 400)
            return cls("tel", number, None, "", None, parse_params(ptext, strict=True))
        user: str | None = None
        password: str | None = None
        if "@" in rest:
            # RFC 3261 §25.1: user and password never hold a raw "@" but may hold ";", "?" and "/"
            # (RFC 4475 §3.1.1.2), so the userinfo ends at the first "@", before "?" and ";" split.
            userinfo, _, rest = rest.partition("@")
            user, pc, pw = userinfo.partition(":")
            password = pw if pc else None
            if not user:
                raise RemoteProtocolError(f"empty user part in {text[:60]!r}", 400)
        hdrs: str | None = None
        if "?" in rest:
            rest, _, hdrs = rest.partition("?")
        hostport, _, ptext = rest.partition(";")
        host, port = split_hostport(hostport)
        return cls(lscheme, user, password, host, port, parse_params(ptext, strict=True), hdrs)

    def __str__(self) -> str:
        if self.scheme == "tel":
            return f"tel:{self.user}{render_params(self.params)}"
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out.append(":" + self.password)
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        out.append(render_params(self.params))
        if self.headers is not None:
            out.append("?" + self.headers)
        return "".join(out)

    def param(self, name: str) -> str | None:
        return param_value(self.params, name)

    def with_host(self, host: str, port: int | None) -> Uri:
        return replace(self, host=format_host(host), port=port)

    @property
    def address(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        return host_address(self.host)


def split_hostport(hostport: str) -> tuple[str, int | None]:
    hostport = hostport.strip(LWS)
    if not hostport:
        raise RemoteProtocolError("missing host", 400)
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise RemoteProtocolError(f"unterminated IPv6 reference {hostport[:60]!r}", 400)
        host = hostport[: end + 1]
        rest = hostport[end + 1 :]
        if "%" in host:
            # ipaddress accepts "fe80::1%eth0"; a zone index has no meaning on the wire.
            raise RemoteProtocolError(f"bad IPv6 reference {host[:60]!r}", 400)
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError as exc:
            raise RemoteProtocolError(f"bad IPv6 reference {host[:60]!r}", 400) from exc
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise RemoteProtocolError(f"bad host:port {hostport!r}", 400)
        return host, _port(rest[1:])
    if hostport.count(":") > 1:
        raise RemoteProtocolError(f"IPv6 address without brackets {hostport[:60]!r}", 400)
    host, colon, port = hostport.partition(":")
    if not _HOSTNAME_RE.fullmatch(host):
        raise RemoteProtocolError(f"bad host {hostport[:60]!r}", 400)
    if _DOTTED_RE.fullmatch(host) and host.count(".") == 3 and not _IPV4_RE.fullmatch(host):
        raise RemoteProtocolError(f"bad IPv4 address {host[:60]!r}", 400)
    return host, (_port(port) if colon else None)


def is_digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts "²" and "٥", which int() rejects or misreads."""
    return text.isascii() and text.isdigit()


def _port(text: str) -> int:
    if not is_digits(text) or len(text) > 5 or int(text) > 65535:
        raise RemoteProtocolError(f"bad port {text[:20]!r}", 400)
    return int(text)


@dataclass(frozen=True, slots=True)
class NameAddr:
    """`"Display" <uri>;params` or a bare `uri;params` (From, To, Contact, Route, Refer-To...)."""

    display: str | None
    uri: Uri
    params: Params = ()
    angle: bool = True

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        return _parse_name_addr(text)

    @classmethod
    def _parse(cls, text: str) -> NameAddr:
        text = text.strip(LWS)
        if not text:
            raise RemoteProtocolError("empty name-addr", 400)
        lt = _find_unquoted(text, "<")
        if lt >= 0:
            gt = text.find(">", lt)
            if gt < 0:
                raise RemoteProtocolError(f"unterminated <uri> in {text[:60]!r}", 400)
            display = text[:lt].strip(LWS) or None
            if display is not None and not _valid_display_name(display):
                # RFC 4475 §3.1.2.15: an unquoted display name must be tokens; a B2BUA that copies
                # it to the other leg would otherwise propagate the error.
                raise RemoteProtocolError(f"bad display name {display[:60]!r}", 400)
            uri = Uri.parse(text[lt + 1 : gt])
            rest = text[gt + 1 :].strip(LWS)
            if rest and not rest.startswith(";"):
                raise RemoteProtocolError(f"junk after <uri> in {text[:60]!r}", 400)
            return cls(display, uri, parse_params(rest[1:], strict=True), True)
        # addr-spec form: parameters after the URI belong to the header, not the URI (§20.10).
        uri_text, _, ptext = text.partition(";")
        if '"' in uri_text:
            # Typically the only "<" sits inside a quoted string that never ends (RFC 4475 §3.1.2.6).
            raise RemoteProtocolError(f"unbalanced quotes in {text[:60]!r}", 400)
        if "?" in uri_text or "," in uri_text:
            # §20.10: a URI with headers or a comma must be in <> (RFC 4475 §3.1.2.13).
            raise RemoteProtocolError(f"URI with headers must be enclosed in <> in {text[:60]!r}", 400)
        return cls(None, Uri.parse(uri_text), parse_params(ptext, strict=True), False)

    def __str__(self) -> str:
        if not self.angle and not self.uri.params and self.uri.headers is None:
            return f"{self.uri}{render_params(self.params)}"
        disp = f"{self.display} " if self.display else ""
        return f"{disp}<{self.uri}>{render_params(self.params)}"

    def param(self, name: str) -> str | None:
        return param_value(self.params, name)

    @property
    def tag(self) -> str | None:
        return self.param("tag")

    def with_tag(self, tag: str | None) -> NameAddr:
        params = without_param(self.params, "tag") if tag is None else with_param(self.params, "tag", tag)
        return replace(self, params=params)

    def with_uri(self, uri: Uri) -> NameAddr:
        return replace(self, uri=uri, angle=self.angle or bool(uri.params) or uri.headers is not None)


def _valid_display_name(display: str) -> bool:
    """`quoted-string` or `*(token LWS)` (RFC 3261 §25.1); non-ASCII is let through unquoted."""
    if not display.startswith('"'):
        return _DISPLAY_TOKENS_RE.fullmatch(display) is not None
    i = 1
    n = len(display)
    while i < n:
        c = display[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            return i == n - 1
        i += 1
    return False


def _find_unquoted(text: str, ch: str) -> int:
    in_quote = False
    i = 0
    while i < len(text):
        c = text[i]
        if in_quote:
            if c == "\\":
                i += 1
            elif c == '"':
                in_quote = False
        elif c == '"':
            in_quote = True
        elif c == ch:
            return i
        i += 1
    return -1


# No re.IGNORECASE: with it "ſ" (U+017F) would match "s".
_VIA_RE = re.compile(r"[Ss][Ii][Pp][ \t]*/[ \t]*2\.0[ \t]*/[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t]+(.*)", re.S)


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value: `SIP/2.0/UDP host:port;branch=...;rport` (RFC 3261 §20.42, RFC 3581)."""

    transport: str
    host: str
    port: int | None
    params: Params = field(default=())

    @classmethod
    def parse(cls, text: str) -> Via:
        """`SIP/2.0/UDP host:port;params`, with LWS around the slashes (RFC 4475 §3.1.1.1)."""
        return _parse_via(text)

    @classmethod
    def _parse(cls, text: str) -> Via:
        m = _VIA_RE.fullmatch(text.strip(LWS))
        if m is None:
            raise RemoteProtocolError(f"bad Via {text[:60]!r}", 400)
        hostport, _, ptext = m.group(2).partition(";")
        host, port = split_hostport(hostport)
        return cls(m.group(1).upper(), host, port, parse_params(ptext, strict=True))

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"SIP/2.0/{self.transport} {self.host}{port}{render_params(self.params)}"

    def param(self, name: str) -> str | None:
        return param_value(self.params, name)

    @property
    def branch(self) -> str | None:
        return self.param("branch")


_parse_uri = memoized(Uri._parse)
_parse_name_addr = memoized(NameAddr._parse)
_parse_via = memoized(Via._parse)
