"""The lossless SIP message model and its datagram parser (RFC 3261 §7, §18.3, §20).

Header text is decoded once as UTF-8 with `surrogateescape`, so any byte sequence survives a round
trip. Each header line keeps its original text until it is changed; `serialize(parse(x)) == x` for
every message the parser accepts and nobody touched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sbc.sip.errors import RemoteProtocolError
from sbc.sip.uri import NameAddr, Uri, Via, split_quoted

SIP_VERSION = "SIP/2.0"

# RFC 3261 §7.3.3 compact forms, plus the common extension ones.
COMPACT_FORMS: dict[str, str] = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
    "o": "event",
    "r": "refer-to",
    "b": "referred-by",
    "x": "session-expires",
    "u": "allow-events",
    "a": "accept-contact",
    "j": "reject-contact",
    "d": "request-disposition",
    "y": "identity",
    "n": "identity-info",
}

# Headers whose values may be comma-joined on one line (RFC 3261 §7.3.1). Others are never split.
MULTI_VALUED = frozenset(
    {
        "via",
        "route",
        "record-route",
        "contact",
        "allow",
        "supported",
        "require",
        "proxy-require",
        "unsupported",
        "accept",
        "accept-encoding",
        "accept-language",
        "allow-events",
        "path",
        "service-route",
        "p-asserted-identity",
    }
)

# Canonical spelling for headers the SBC writes itself.
_CANONICAL: dict[str, str] = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "rack": "RAck",
    "rseq": "RSeq",
    "mime-version": "MIME-Version",
    "p-asserted-identity": "P-Asserted-Identity",
}

_TOKEN_RE = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
MAX_MESSAGE_SIZE = 65535
MAX_HEADERS = 256


def header_key(name: str) -> str:
    """The lowercase long form of a header name, used for every lookup."""
    low = name.strip().lower()
    return COMPACT_FORMS.get(low, low)


def canonical_name(name: str) -> str:
    key = header_key(name)
    return _CANONICAL.get(key) or "-".join(p.capitalize() for p in key.split("-"))


class HeaderField:
    """One header line. `raw` is the exact original text (folding included) until the value changes."""

    __slots__ = ("key", "name", "raw", "value")

    def __init__(self, name: str, value: str, raw: str | None = None) -> None:
        self.name = name
        self.key = header_key(name)
        self.value = value
        self.raw = raw

    def render(self) -> str:
        return self.raw if self.raw is not None else f"{self.name}: {self.value}"

    def __repr__(self) -> str:
        return f"HeaderField({self.name!r}, {self.value!r})"


class Message:
    """Common part of requests and responses: ordered header fields and a body."""

    __slots__ = ("_start_raw", "body", "headers", "line_ending")

    def __init__(self, headers: list[HeaderField], body: bytes = b"", line_ending: str = "\r\n") -> None:
        self.headers = headers
        self.body = body
        self.line_ending = line_ending
        self._start_raw: str | None = None

    # ---- header access -------------------------------------------------------------------------
    def get(self, name: str) -> str | None:
        """Value of the first line of this header, or None."""
        key = header_key(name)
        for h in self.headers:
            if h.key == key:
                return h.value
        return None

    def get_all(self, name: str) -> list[str]:
        """The value of every line of this header, in order, not split on commas."""
        key = header_key(name)
        return [h.value for h in self.headers if h.key == key]

    def values(self, name: str) -> list[str]:
        """Every value of a header, comma-joined lines split (only for multi-valued headers)."""
        key = header_key(name)
        out: list[str] = []
        for h in self.headers:
            if h.key == key:
                if key in MULTI_VALUED:
                    out.extend(v.strip() for v in split_quoted(h.value, ",") if v.strip())
                else:
                    out.append(h.value)
        return out

    def has(self, name: str) -> bool:
        key = header_key(name)
        return any(h.key == key for h in self.headers)

    def set(self, name: str, value: str) -> None:
        """Replace the first line of the header (keeping its position) and drop the others."""
        key = header_key(name)
        out: list[HeaderField] = []
        done = False
        for h in self.headers:
            if h.key != key:
                out.append(h)
            elif not done:
                out.append(HeaderField(h.name if len(h.name) > 1 else canonical_name(key), value))
                done = True
        if not done:
            out.append(HeaderField(canonical_name(key), value))
        self.headers = out

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        field = HeaderField(canonical_name(name) if name.islower() else name, value)
        if first:
            key = field.key
            idx = next((i for i, h in enumerate(self.headers) if h.key == key), 0)
            self.headers.insert(idx, field)
        else:
            self.headers.append(field)

    def remove(self, name: str) -> int:
        key = header_key(name)
        before = len(self.headers)
        self.headers = [h for h in self.headers if h.key != key]
        return before - len(self.headers)

    def set_values(self, name: str, values: Iterable[str]) -> None:
        """Replace a multi-valued header by one line per value, at the position of the first line."""
        key = header_key(name)
        vals = list(values)
        idx = next((i for i, h in enumerate(self.headers) if h.key == key), None)
        rest = [h for h in self.headers if h.key != key]
        new = [HeaderField(canonical_name(key), v) for v in vals]
        if idx is None:
            rest.extend(new)
            self.headers = rest
            return
        # Position among remaining headers equals the count of non-matching headers before idx.
        pos = sum(1 for h in self.headers[:idx] if h.key != key)
        self.headers = rest[:pos] + new + rest[pos:]

    # ---- typed views of the headers every transaction needs --------------------------------
    @property
    def call_id(self) -> str:
        value = self.get("call-id")
        if value is None:
            raise RemoteProtocolError("missing Call-ID", 400)
        return value

    @property
    def cseq(self) -> tuple[int, str]:
        value = self.get("cseq")
        if value is None:
            raise RemoteProtocolError("missing CSeq", 400)
        return parse_cseq(value)

    @property
    def from_(self) -> NameAddr:
        value = self.get("from")
        if value is None:
            raise RemoteProtocolError("missing From", 400)
        return NameAddr.parse(value)

    @property
    def to(self) -> NameAddr:
        value = self.get("to")
        if value is None:
            raise RemoteProtocolError("missing To", 400)
        return NameAddr.parse(value)

    @property
    def vias(self) -> list[Via]:
        return [Via.parse(v) for v in self.values("via")]

    @property
    def top_via(self) -> Via:
        values = self.values("via")
        if not values:
            raise RemoteProtocolError("missing Via", 400)
        return Via.parse(values[0])

    @property
    def contacts(self) -> list[NameAddr]:
        return [NameAddr.parse(v) for v in self.values("contact") if v.strip() != "*"]

    # ---- serialization ---------------------------------------------------------------------------
    def start_line(self) -> str:
        raise NotImplementedError

    def serialize(self) -> bytes:
        body = self.body
        declared = self.get("content-length")
        if body or declared is not None:
            if declared is None or declared.strip() != str(len(body)):
                self.set("content-length", str(len(body)))
        nl = self.line_ending
        start = self._start_raw if self._start_raw is not None else self.start_line()
        head = nl.join([start, *(h.render() for h in self.headers)])
        return (head + nl + nl).encode("utf-8", "surrogateescape") + body

    def __bytes__(self) -> bytes:
        return self.serialize()


class Request(Message):
    __slots__ = ("method", "uri")

    def __init__(
        self, method: str, uri: str, headers: list[HeaderField], body: bytes = b"", line_ending: str = "\r\n"
    ) -> None:
        super().__init__(headers, body, line_ending)
        self.method = method
        self.uri = uri

    def start_line(self) -> str:
        return f"{self.method} {self.uri} {SIP_VERSION}"

    def set_uri(self, uri: str) -> None:
        self.uri = uri
        self._start_raw = None

    @property
    def request_uri(self) -> Uri:
        return Uri.parse(self.uri)

    def copy(self) -> Request:
        req = Request(self.method, self.uri, [_clone(h) for h in self.headers], self.body, self.line_ending)
        req._start_raw = self._start_raw
        return req

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class Response(Message):
    __slots__ = ("reason", "status")

    def __init__(
        self, status: int, reason: str, headers: list[HeaderField], body: bytes = b"", line_ending: str = "\r\n"
    ) -> None:
        super().__init__(headers, body, line_ending)
        self.status = status
        self.reason = reason

    def start_line(self) -> str:
        return f"{SIP_VERSION} {self.status} {self.reason}"

    def copy(self) -> Response:
        resp = Response(self.status, self.reason, [_clone(h) for h in self.headers], self.body, self.line_ending)
        resp._start_raw = self._start_raw
        return resp

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


def _clone(h: HeaderField) -> HeaderField:
    return HeaderField(h.name, h.value, h.raw)


def parse_cseq(value: str) -> tuple[int, str]:
    parts = value.split()
    if len(parts) != 2 or not parts[0].isdigit() or len(parts[0]) > 10:
        raise RemoteProtocolError(f"bad CSeq {value[:40]!r}", 400)
    num = int(parts[0])
    if num >= 2**31:
        raise RemoteProtocolError(f"CSeq number out of range {value[:40]!r}", 400)
    return num, parts[1]


# ---- parsing -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class HeadSplit:
    head: bytes
    body_start: int
    line_ending: str


def split_head(data: bytes) -> HeadSplit | None:
    """Find the blank line ending the header block; None when it has not arrived yet."""
    idx = data.find(b"\r\n\r\n")
    if idx >= 0:
        return HeadSplit(data[:idx], idx + 4, "\r\n")
    idx = data.find(b"\n\n")
    if idx >= 0:
        return HeadSplit(data[:idx], idx + 2, "\n")
    return None


def _iter_lines(head: str, nl: str) -> Iterator[str]:
    """Physical lines joined into logical header lines (line folding, RFC 3261 §7.3.1)."""
    current: str | None = None
    for line in head.split(nl):
        if nl == "\r\n" and "\n" in line:
            # A bare LF inside a CRLF message: treat it as a line break too.
            for sub in line.split("\n"):
                if current is not None and sub[:1] in (" ", "\t"):
                    current += "\n" + sub
                else:
                    if current is not None:
                        yield current
                    current = sub
            continue
        if current is not None and line[:1] in (" ", "\t"):
            current += nl + line
            continue
        if current is not None:
            yield current
        current = line
    if current is not None:
        yield current


def _unfold(raw_value: str) -> str:
    if "\n" not in raw_value:
        return raw_value.strip()
    return " ".join(part.strip() for part in raw_value.replace("\r\n", "\n").split("\n")).strip()


def parse_head(head_bytes: bytes, nl: str) -> tuple[str, list[HeaderField]]:
    text = head_bytes.decode("utf-8", "surrogateescape")
    lines = _iter_lines(text, nl)
    start = next(lines, "")
    headers: list[HeaderField] = []
    for raw in lines:
        if not raw:
            continue
        name, colon, value = raw.partition(":")
        sname = name.strip()
        if not colon or not sname or not _TOKEN_RE.match(sname):
            raise RemoteProtocolError(f"malformed header line {raw[:60]!r}", 400)
        headers.append(HeaderField(sname, _unfold(value), raw))
        if len(headers) > MAX_HEADERS:
            raise RemoteProtocolError("too many header lines", 513)
    return start, headers


def parse_start_line(start: str, headers: list[HeaderField], body: bytes, nl: str) -> Request | Response:
    if start.startswith("SIP/"):
        parts = start.split(" ", 2)
        if len(parts) < 2 or parts[0] != SIP_VERSION:
            raise RemoteProtocolError(f"bad status line {start[:60]!r}", 400)
        code = parts[1]
        if len(code) != 3 or not code.isdigit() or not "100" <= code <= "699":
            raise RemoteProtocolError(f"bad status code {code!r}", 400)
        resp = Response(int(code), parts[2] if len(parts) > 2 else "", headers, body, nl)
        resp._start_raw = start
        return resp
    parts = start.split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise RemoteProtocolError(f"bad request line {start[:60]!r}", 400)
    method, uri, version = parts
    if not _TOKEN_RE.match(method):
        raise RemoteProtocolError(f"bad method {method[:20]!r}", 400)
    if version != SIP_VERSION:
        if version.upper().startswith("SIP/"):
            raise RemoteProtocolError(f"unsupported version {version[:20]!r}", 505)
        raise RemoteProtocolError(f"bad request line {start[:60]!r}", 400)
    req = Request(method, uri, headers, body, nl)
    req._start_raw = start
    return req


def _content_length(headers: list[HeaderField]) -> int | None:
    values = [h.value for h in headers if h.key == "content-length"]
    if not values:
        return None
    if len(set(values)) > 1:
        raise RemoteProtocolError("conflicting Content-Length headers", 400)
    value = values[0]
    if not value.isdigit() or len(value) > 9:
        raise RemoteProtocolError(f"bad Content-Length {value[:20]!r}", 400)
    return int(value)


def parse_datagram(data: bytes) -> Request | Response:
    """Parse one UDP datagram (RFC 3261 §18.3): Content-Length may shorten the body, never lengthen it."""
    if len(data) > MAX_MESSAGE_SIZE:
        raise RemoteProtocolError("message too large", 513)
    split = split_head(data)
    if split is None:
        # A header block with no blank line and no body is still a complete datagram.
        stripped = data.rstrip(b"\r\n")
        nl = "\r\n" if b"\r\n" in data else "\n"
        split = HeadSplit(stripped, len(data), nl)
    start, headers = parse_head(split.head, split.line_ending)
    body = data[split.body_start :]
    declared = _content_length(headers)
    if declared is not None:
        if declared > len(body):
            raise RemoteProtocolError("Content-Length larger than the datagram's body", 400)
        body = body[:declared]
    msg = parse_start_line(start, headers, body, split.line_ending)
    validate(msg)
    return msg


def validate(msg: Request | Response) -> None:
    """The checks every message must pass before a transaction layer sees it (RFC 3261 §8.2, §16.3)."""
    for name in ("call-id", "from", "to", "via", "cseq"):
        if not msg.has(name):
            raise RemoteProtocolError(f"missing {canonical_name(name)}", 400)
    num, method = msg.cseq
    msg.top_via  # noqa: B018 - parsing it is the check
    msg.from_  # noqa: B018
    msg.to  # noqa: B018
    if isinstance(msg, Request):
        if method != msg.method:
            raise RemoteProtocolError("CSeq method does not match the request method", 400)
        mf = msg.get("max-forwards")
        if mf is not None and (not mf.isdigit() or len(mf) > 3 or int(mf) > 255):
            raise RemoteProtocolError(f"bad Max-Forwards {mf[:20]!r}", 400)
        msg.request_uri  # noqa: B018
    del num
