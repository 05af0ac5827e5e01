"""The lossless SIP message model and its datagram parser (RFC 3261 §7, §18.3, §20).

Header text is decoded once as UTF-8 with `surrogateescape`, so any byte sequence survives a round
trip. Each header line keeps its original text until it is changed; `serialize(parse(x)) == x` for
every message the parser accepts and nobody touched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sbc.sip.errors import LocalProtocolError, RemoteProtocolError
from sbc.sip.uri import LWS, NameAddr, Uri, Via, is_digits, memoized, split_quoted

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

_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
# RFC 3261 §25.1 Call-ID = word [ "@" word ]
_CALL_ID_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+(?:@[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+)?")
_VERSION_RE = re.compile(r"[Ss][Ii][Pp]/[0-9]+\.[0-9]+")
# Headers a transaction or dialog reads as one value; a second line is ambiguous (RFC 4475 §3.3.8).
_SINGLE_VALUED = frozenset({"call-id", "cseq", "from", "to", "max-forwards"})
MAX_MESSAGE_SIZE = 65535
MAX_HEADERS = 256


def header_key(name: str) -> str:
    """The lowercase long form of a header name, used for every lookup."""
    key = _KEYS.get(name)
    if key is None:
        low = name.strip(LWS).lower()
        key = COMPACT_FORMS.get(low, low)
        if len(_KEYS) < _MAX_KEYS:  # header names are few; a peer inventing new ones stops the growth
            _KEYS[name] = key
    return key


_KEYS: dict[str, str] = {}
_VALID_NAMES: set[str] = set()  # header names that passed the token check
_MAX_KEYS = 2048


def canonical_name(name: str) -> str:
    key = header_key(name)
    return _CANONICAL.get(key) or "-".join(p.capitalize() for p in key.split("-"))


class HeaderField:
    """One header line. `raw` is the exact original text (folding included) until the value changes."""

    __slots__ = ("key", "name", "raw", "value")

    def __init__(self, name: str, value: str, raw: str | None = None) -> None:
        self.name = name
        self.key = _KEYS.get(name) or header_key(name)  # the cache inline: every parsed line comes here
        self.value = value
        self.raw = raw

    def render(self) -> str:
        return self.raw if self.raw is not None else f"{self.name}: {self.value}"

    def __repr__(self) -> str:
        return f"HeaderField({self.name!r}, {self.value!r})"


def _check_field(name: str, value: str) -> None:
    """Refuse a header the caller builds that would not survive the wire (header injection)."""
    if not _TOKEN_RE.fullmatch(name.strip(LWS)):
        raise LocalProtocolError(f"bad header name {name[:40]!r}")
    if "\r" in value or "\n" in value:
        raise LocalProtocolError(f"line break in the value of {name[:40]}")


class Message:
    """Common part of requests and responses: ordered header fields and a body."""

    __slots__ = ("_parsed_body", "_start_key", "_start_raw", "_terminator", "body", "headers", "line_ending")

    def __init__(self, headers: list[HeaderField], body: bytes = b"", line_ending: str = "\r\n") -> None:
        self.headers = headers
        self.body = body
        self.line_ending = line_ending
        self._start_raw: str | None = None
        # What the start line said when parsed; the raw text is reused only while it still matches.
        self._start_key: tuple[object, ...] | None = None
        # The body as received: a Content-Length the peer left out is only added once it changes.
        self._parsed_body: bytes | None = None
        # The exact end of a header block that arrived without its blank line (UDP only).
        self._terminator: str | None = None

    # ---- header access -------------------------------------------------------------------------
    def get(self, name: str) -> str | None:
        """Value of the first line of this header, or None."""
        key = _KEYS.get(name) or header_key(name)  # the most frequent lookup: no call for a known name
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
        _check_field(name, value)
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
        """Append a header line, or with `first` put it before the first line of the same header."""
        _check_field(name, value)
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
        for v in vals:
            _check_field(name, v)
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

    def _start_fields(self) -> tuple[object, ...]:
        raise NotImplementedError

    def _start_text(self) -> str:
        if self._start_raw is not None and self._start_key == self._start_fields():
            return self._start_raw
        return self.start_line()

    def _sync_content_length(self) -> None:
        """Content-Length is rewritten only when it is wrong for the body or the body changed."""
        body = self.body
        declared = [h.value for h in self.headers if h.key == "content-length"]
        if not declared:
            untouched = self._parsed_body is not None and body == self._parsed_body
            if body and not untouched:
                self.set("content-length", str(len(body)))
            return
        first = declared[0]
        if is_digits(first) and len(first) < 12 and int(first) == len(body) and len(set(declared)) == 1:
            return
        self.set("content-length", str(len(body)))

    def serialize(self) -> bytes:
        self._sync_content_length()
        nl = self.line_ending
        head = nl.join([self._start_text(), *(h.render() for h in self.headers)])
        end = self._terminator if self._terminator is not None and not self.body else nl + nl
        return (head + end).encode("utf-8", "surrogateescape") + self.body

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

    def _start_fields(self) -> tuple[object, ...]:
        return (self.method, self.uri)

    def set_uri(self, uri: str) -> None:
        self.uri = uri
        self._start_raw = None

    @property
    def request_uri(self) -> Uri:
        return Uri.parse(self.uri)

    def copy(self) -> Request:
        req = Request(self.method, self.uri, [_clone(h) for h in self.headers], self.body, self.line_ending)
        _copy_state(self, req)
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

    def _start_fields(self) -> tuple[object, ...]:
        return (self.status, self.reason)

    def copy(self) -> Response:
        resp = Response(self.status, self.reason, [_clone(h) for h in self.headers], self.body, self.line_ending)
        _copy_state(self, resp)
        return resp

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


def _clone(h: HeaderField) -> HeaderField:
    return HeaderField(h.name, h.value, h.raw)


def _copy_state(src: Message, dst: Message) -> None:
    dst._start_raw = src._start_raw
    dst._start_key = src._start_key
    dst._parsed_body = src._parsed_body
    dst._terminator = src._terminator


def _parse_cseq(value: str) -> tuple[int, str]:
    parts = re.split(r"[ \t]+", value.strip(LWS))
    if len(parts) != 2 or not is_digits(parts[0]) or len(parts[0]) > 10 or not _TOKEN_RE.fullmatch(parts[1]):
        raise RemoteProtocolError(f"bad CSeq {value[:40]!r}", 400)
    num = int(parts[0])
    if num >= 2**31:
        raise RemoteProtocolError(f"CSeq number out of range {value[:40]!r}", 400)
    return num, parts[1]


parse_cseq = memoized(_parse_cseq)


# ---- parsing -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class HeadSplit:
    head: bytes
    body_start: int
    line_ending: str


def split_head(data: bytes) -> HeadSplit | None:
    """Find the blank line ending the header block; None when it has not arrived yet.

    The earliest of CRLFCRLF and LFLF wins, so an LF-only message whose body holds a CRLFCRLF (or
    the reverse) is still cut where its own header block ends.
    """
    crlf = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return HeadSplit(data[:crlf], crlf + 4, "\r\n")
    if lf >= 0:
        return HeadSplit(data[:lf], lf + 2, "\n")
    return None


def _iter_lines(head: str, nl: str) -> Iterator[str]:
    """Physical lines joined into logical header lines (line folding, RFC 3261 §7.3.1)."""
    current: str | None = None
    for line in head.split(nl):
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
        return raw_value.strip(LWS)
    return " ".join(part.strip(LWS) for part in raw_value.replace("\r\n", "\n").split("\n")).strip(LWS)


def parse_head(head_bytes: bytes, nl: str) -> tuple[str, list[HeaderField]]:
    """Start line and header fields of a header block whose lines end with `nl`.

    A CR or LF that is not part of the block's own line ending is refused: peers disagree on whether
    a bare LF (or CR) ends a line, and that disagreement is how headers get smuggled past an SBC.
    """
    text = head_bytes.decode("utf-8", "surrogateescape")
    if nl == "\r\n":
        pairs = text.count("\r\n")
        if text.count("\r") != pairs or text.count("\n") != pairs:
            raise RemoteProtocolError("bare CR or LF in the header block", 400)
    elif "\r" in text:
        raise RemoteProtocolError("bare CR in the header block", 400)
    folded = (nl + " ") in text or (nl + "\t") in text
    if folded:
        lines = list(_iter_lines(text, nl))
        if nl in lines[0]:
            raise RemoteProtocolError("folded start line", 400)
    else:
        lines = text.split(nl)  # the common case: one physical line per header
    start = lines[0]
    headers: list[HeaderField] = []
    for raw in lines[1:]:
        if not raw:
            continue  # only a caller's own slicing leaves one (a head split by split_head has none)
        name, colon, value = raw.partition(":")
        sname = name.strip(LWS)
        if not colon:
            raise RemoteProtocolError(f"malformed header line {raw[:60]!r}", 400)
        if sname not in _VALID_NAMES:
            if not _TOKEN_RE.fullmatch(sname):
                raise RemoteProtocolError(f"malformed header line {raw[:60]!r}", 400)
            if len(_VALID_NAMES) < _MAX_KEYS:
                _VALID_NAMES.add(sname)
        headers.append(HeaderField(sname, _unfold(value) if folded else value.strip(LWS), raw))
        if len(headers) > MAX_HEADERS:
            raise RemoteProtocolError("too many header lines", 513)
    return start, headers


def parse_start_line(start: str, headers: list[HeaderField], body: bytes, nl: str) -> Request | Response:
    if start[:4].upper() == "SIP/":
        parts = start.split(" ", 2)
        if len(parts) < 2 or parts[0].upper() != SIP_VERSION:
            raise RemoteProtocolError(f"bad status line {start[:60]!r}", 400)
        code = parts[1]
        if len(code) != 3 or not is_digits(code) or not "100" <= code <= "699":
            raise RemoteProtocolError(f"bad status code {code[:20]!r}", 400)
        resp = Response(int(code), parts[2] if len(parts) > 2 else "", headers, body, nl)
        resp._start_raw = start
        resp._start_key = resp._start_fields()
        return resp
    parts = start.split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise RemoteProtocolError(f"bad request line {start[:60]!r}", 400)
    method, uri, version = parts
    if not _TOKEN_RE.fullmatch(method):
        raise RemoteProtocolError(f"bad method {method[:20]!r}", 400)
    if version.upper() != SIP_VERSION:
        if _VERSION_RE.fullmatch(version):
            raise RemoteProtocolError(f"unsupported version {version[:20]!r}", 505)
        raise RemoteProtocolError(f"bad request line {start[:60]!r}", 400)
    req = Request(method, uri, headers, body, nl)
    req._start_raw = start
    req._start_key = req._start_fields()
    return req


def _content_length(headers: list[HeaderField]) -> int | None:
    values = [h.value for h in headers if h.key == "content-length"]
    if not values:
        return None
    lengths = set()
    for value in values:
        digits = value.lstrip("0") or "0"
        if not is_digits(value) or len(digits) > 9:
            raise RemoteProtocolError(f"bad Content-Length {value[:20]!r}", 400)
        lengths.add(int(digits))
    if len(lengths) > 1:
        # RFC 4475 §3.3.9: no way to know which one frames the body.
        raise RemoteProtocolError("conflicting Content-Length headers", 400)
    return lengths.pop()


def parse_message(start: str, headers: list[HeaderField], body: bytes, nl: str) -> Request | Response:
    """A validated message from a parsed header block and its framed body (datagram or stream)."""
    msg = parse_start_line(start, headers, body, nl)
    msg._parsed_body = body
    validate(msg)
    return msg


def parse_datagram(data: bytes) -> Request | Response:
    """Parse one UDP datagram (RFC 3261 §18.3): Content-Length may shorten the body, never lengthen it."""
    if len(data) > MAX_MESSAGE_SIZE:
        raise RemoteProtocolError("message too large", 513)
    split = split_head(data)
    terminator: str | None = None
    if split is None:
        # A header block with no blank line and no body is still a complete datagram; remember how it
        # ended so that it serializes back to the same bytes.
        nl = "\r\n" if b"\r\n" in data else "\n"
        stripped = data.rstrip(b"\r\n")
        tail = data[len(stripped) :]
        if tail not in (b"", nl.encode()):
            raise RemoteProtocolError("malformed end of the header block", 400)
        terminator = tail.decode()
        split = HeadSplit(stripped, len(data), nl)
    start, headers = parse_head(split.head, split.line_ending)
    body = data[split.body_start :]
    declared = _content_length(headers)
    if declared is not None:
        if declared > len(body):
            raise RemoteProtocolError("Content-Length larger than the datagram's body", 400)
        body = body[:declared]
    msg = parse_message(start, headers, body, split.line_ending)
    msg._terminator = terminator
    return msg


def _name_addr(msg: Message, name: str) -> NameAddr:
    """Parse a From/To/Contact value; any defect there is a 400 (416 belongs to the Request-URI)."""
    value = msg.get(name)
    if value is None:
        raise RemoteProtocolError(f"missing {canonical_name(name)}", 400)
    return _checked_name_addr(value, name)


def _checked_name_addr(value: str, name: str) -> NameAddr:
    try:
        return NameAddr.parse(value)
    except RemoteProtocolError as exc:
        raise RemoteProtocolError(f"{canonical_name(name)}: {exc.reason}", 400) from exc


def validate(msg: Request | Response) -> None:
    """The checks every message must pass before a transaction layer sees it (RFC 3261 §8.2, §16.3).

    Only what the SBC reads is checked: Via, From, To, Call-ID, CSeq, Max-Forwards, Content-Length,
    the Request-URI, and Contact in requests and in responses to INVITE. Other headers pass untouched.
    """
    seen: dict[str, int] = {}
    for h in msg.headers:
        if h.key in _SINGLE_VALUED:
            seen[h.key] = seen.get(h.key, 0) + 1
    for name in ("call-id", "from", "to", "cseq"):
        count = seen.get(name, 0)
        if count != 1:
            problem = "missing" if count == 0 else "more than one"
            raise RemoteProtocolError(f"{problem} {canonical_name(name)}", 400)
    if seen.get("max-forwards", 0) > 1:
        raise RemoteProtocolError("more than one Max-Forwards", 400)
    if not _CALL_ID_RE.fullmatch(msg.call_id):
        raise RemoteProtocolError(f"bad Call-ID {msg.call_id[:40]!r}", 400)
    _, method = msg.cseq
    vias = 0
    for h in msg.headers:
        if h.key == "via":
            for part in split_quoted(h.value, ","):
                Via.parse(part)  # an empty element (RFC 4475 §3.1.2.1) fails here too
                vias += 1
    if not vias:
        raise RemoteProtocolError("missing Via", 400)
    _name_addr(msg, "from")
    _name_addr(msg, "to")
    if isinstance(msg, Request):
        if method != msg.method:
            raise RemoteProtocolError("CSeq method does not match the request method", 400)
        mf = msg.get("max-forwards")
        if mf is not None:
            digits = mf.lstrip("0") or "0"
            if not is_digits(mf) or len(digits) > 3 or int(digits) > 255:
                raise RemoteProtocolError(f"bad Max-Forwards {mf[:20]!r}", 400)
        if msg.request_uri.headers is not None:
            # RFC 3261 §19.1.5: headers are not allowed in a Request-URI (RFC 4475 §3.1.2.11).
            raise RemoteProtocolError("headers in the Request-URI", 400)
    if isinstance(msg, Request) or method == "INVITE":
        for value in msg.values("contact"):
            if value == "*":
                if method != "REGISTER":
                    raise RemoteProtocolError("Contact: * outside REGISTER", 400)
                continue
            _checked_name_addr(value, "contact")


def make_response(request: Request, status: int, reason: str, to_tag: str | None = None) -> Response:
    """A response to `request` per RFC 3261 §8.2.6.2.

    Copies every Via line (same order), From, To (with `to_tag` added when it has none, never on a
    100), Call-ID, CSeq and Timestamp (§8.2.6.1); Content-Length 0. Record-Route, Contact and the rest
    are the caller's business.
    """
    if not 100 <= status <= 699:
        raise LocalProtocolError(f"bad status {status}")
    if "\r" in reason or "\n" in reason:
        raise LocalProtocolError("line break in the reason phrase")
    headers: list[HeaderField] = []
    for h in request.headers:
        if h.key in ("via", "from", "call-id", "cseq", "timestamp"):
            headers.append(HeaderField(canonical_name(h.key), h.value))
        elif h.key == "to":
            value = h.value
            if to_tag is not None and status != 100 and _to_tag(value) is None:
                # A trailing ";" ("<sip:b@h>;") must not turn into an empty parameter.
                value = value.rstrip(LWS + ";") + f";tag={to_tag}"
            headers.append(HeaderField("To", value))
    headers.append(HeaderField("Content-Length", "0"))
    return Response(status, reason, headers, b"", request.line_ending)


def _to_tag(value: str) -> str | None:
    try:
        return NameAddr.parse(value).tag
    except RemoteProtocolError:
        return None
