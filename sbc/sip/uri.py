"""SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966) and name-addr values (§20.10).

Values are parsed from `str` (header text decoded with surrogateescape, so no byte is lost) and
rendered back with `str()`. Parameters keep their original order and spelling.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace

from sbc.sip.errors import RemoteProtocolError

Params = tuple[tuple[str, str | None], ...]

_URI_SCHEMES = ("sip", "sips", "tel")


def parse_params(text: str, sep: str = ";") -> Params:
    """Parse `a=b;c;d="x;y"` (without the leading separator) into ordered pairs."""
    out: list[tuple[str, str | None]] = []
    for part in split_quoted(text, sep):
        part = part.strip()
        if not part:
            continue
        name, eq, value = part.partition("=")
        out.append((name.strip(), value.strip() if eq else None))
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
        text = text.strip()
        scheme, colon, rest = text.partition(":")
        lscheme = scheme.lower()
        if not colon or lscheme not in _URI_SCHEMES:
            raise RemoteProtocolError(f"unsupported URI scheme in {text[:60]!r}", 416)
        if lscheme == "tel":
            number, _, ptext = rest.partition(";")
            if not number:
                raise RemoteProtocolError("empty tel URI", 400)
            return cls("tel", number, None, "", None, parse_params(ptext))
        hdrs: str | None = None
        if "?" in rest:
            rest, _, hdrs = rest.partition("?")
        user: str | None = None
        password: str | None = None
        if "@" in rest:
            userinfo, _, rest = rest.rpartition("@")
            user, pc, pw = userinfo.partition(":")
            password = pw if pc else None
        hostport, _, ptext = rest.partition(";")
        host, port = split_hostport(hostport)
        return cls(lscheme, user, password, host, port, parse_params(ptext), hdrs)

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
    hostport = hostport.strip()
    if not hostport:
        raise RemoteProtocolError("missing host", 400)
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise RemoteProtocolError(f"unterminated IPv6 reference {hostport!r}", 400)
        host = hostport[: end + 1]
        rest = hostport[end + 1 :]
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError as exc:
            raise RemoteProtocolError(f"bad IPv6 reference {host!r}", 400) from exc
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise RemoteProtocolError(f"bad host:port {hostport!r}", 400)
        return host, _port(rest[1:])
    if hostport.count(":") > 1:
        raise RemoteProtocolError(f"IPv6 address without brackets {hostport!r}", 400)
    host, colon, port = hostport.partition(":")
    if not host or any(c in host for c in ' \t<>"'):
        raise RemoteProtocolError(f"bad host {hostport!r}", 400)
    return host, (_port(port) if colon else None)


def _port(text: str) -> int:
    if not text.isdigit() or len(text) > 5 or int(text) > 65535:
        raise RemoteProtocolError(f"bad port {text!r}", 400)
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
        text = text.strip()
        if not text:
            raise RemoteProtocolError("empty name-addr", 400)
        lt = _find_unquoted(text, "<")
        if lt >= 0:
            gt = text.find(">", lt)
            if gt < 0:
                raise RemoteProtocolError(f"unterminated <uri> in {text[:60]!r}", 400)
            display = text[:lt].strip() or None
            uri = Uri.parse(text[lt + 1 : gt])
            rest = text[gt + 1 :].strip()
            if rest and not rest.startswith(";"):
                raise RemoteProtocolError(f"junk after <uri> in {text[:60]!r}", 400)
            return cls(display, uri, parse_params(rest[1:]), True)
        # addr-spec form: parameters after the URI belong to the header, not the URI (§20.10).
        uri_text, _, ptext = text.partition(";")
        return cls(None, Uri.parse(uri_text), parse_params(ptext), False)

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


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value: `SIP/2.0/UDP host:port;branch=...;rport` (RFC 3261 §20.42, RFC 3581)."""

    transport: str
    host: str
    port: int | None
    params: Params = field(default=())

    @classmethod
    def parse(cls, text: str) -> Via:
        text = text.strip()
        proto, _, rest = text.partition(" ")
        pieces = [p.strip() for p in proto.split("/")]
        if len(pieces) != 3 or pieces[0].upper() != "SIP" or not pieces[2]:
            # Tolerate "SIP / 2.0 / UDP" spacing (RFC 4475 §3.1.1.1).
            joined = text.replace(" ", "").replace("\t", "")
            m = joined.split("/", 2)
            if len(m) < 3 or m[0].upper() != "SIP":
                raise RemoteProtocolError(f"bad Via {text[:60]!r}", 400)
            tail = text.split("/", 2)[2].strip()
            transport, _, rest = tail.partition(" ")
            if not transport:
                raise RemoteProtocolError(f"bad Via {text[:60]!r}", 400)
        else:
            transport = pieces[2]
        hostport, _, ptext = rest.strip().partition(";")
        host, port = split_hostport(hostport)
        return cls(transport.upper(), host, port, parse_params(ptext))

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"SIP/2.0/{self.transport} {self.host}{port}{render_params(self.params)}"

    def param(self, name: str) -> str | None:
        return param_value(self.params, name)

    @property
    def branch(self) -> str | None:
        return self.param("branch")
