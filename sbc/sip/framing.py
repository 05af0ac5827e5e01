"""Message framing on stream transports (TCP, TLS): Content-Length delimits each message (RFC 3261 §18.3).

Framing is incremental, so that a segment costs time in proportion to its own size however slowly a
message trickles in: the search for the end of the header block resumes where it stopped, the header
block is parsed once when it is complete, and the body is then only counted until it is whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from sbc.sip.errors import RemoteProtocolError
from sbc.sip.message import (
    MAX_MESSAGE_SIZE,
    HeaderField,
    Request,
    Response,
    _content_length,
    parse_head,
    parse_message,
)

MAX_HEAD_SIZE = 16384
_PING = b"\r\n\r\n"
_CRLF2 = b"\r\n\r\n"
_LF2 = b"\n\n"


class InvalidFramedMessage(RemoteProtocolError):
    """A message that framed but is invalid: it was consumed, the stream stays usable, and `data`
    (its bytes) lets the receiver answer it like a bad datagram."""

    def __init__(self, cause: RemoteProtocolError, data: bytes) -> None:
        super().__init__(cause.reason, cause.status_hint)
        self.data = data


class FramingLimit(StrEnum):
    """The size limits a stream can break (the transport counts each by this name)."""

    HEADER_SIZE = "header_too_large"
    BODY_SIZE = "body_too_large"


class FramingLimitExceeded(RemoteProtocolError):
    """A message larger than the framer allows: the stream is broken like any framing error, and
    `limit` says which limit it broke."""

    def __init__(self, reason: str, limit: FramingLimit) -> None:
        super().__init__(reason, 513)
        self.limit = limit


class FramePhase(StrEnum):
    """Where the framer is within the current message (the transport times each phase)."""

    IDLE = "idle"  # between messages (nothing, or only keep-alive CR/LF, buffered)
    HEAD = "head"  # the header block has begun and is not complete
    BODY = "body"  # the header block is parsed; the body is not complete


@dataclass(frozen=True, slots=True)
class _Head:
    """A parsed header block waiting for its body."""

    start: str
    headers: list[HeaderField]
    body_start: int
    line_ending: str
    total: int  # header block, blank line and body


@dataclass(slots=True)
class StreamFramer:
    """Bytes in (`feed`), whole messages out (`next_message`). A framing error poisons the stream.

    Leading CRLFs are keep-alives (RFC 5626 §3.5.1) and are skipped; `keepalive_pings` counts the
    double-CRLF pings so the transport can answer each with a single CRLF pong.
    """

    max_head_size: int = MAX_HEAD_SIZE
    max_body_size: int = MAX_MESSAGE_SIZE
    _buffer: bytearray = field(default_factory=bytearray)
    # How far the search for the blank line has looked without finding it (0: not begun).
    _searched: int = 0
    _head: _Head | None = None
    keepalive_pings: int = 0
    messages_framed: int = 0  # whole messages taken off the stream (valid or not)
    bytes_received: int = 0
    broken: bool = False

    def feed(self, data: bytes) -> None:
        if self.broken:
            return
        self.bytes_received += len(data)
        self._buffer += data

    @property
    def buffered(self) -> int:
        """Bytes held for the message not yet complete."""
        return len(self._buffer)

    @property
    def phase(self) -> FramePhase:
        if self._head is not None:
            return FramePhase.BODY
        return FramePhase.HEAD if self._searched else FramePhase.IDLE

    def next_message(self) -> Request | Response | None:
        """The next complete message, or None until more bytes arrive.

        Raises RemoteProtocolError for a message that cannot be framed (the stream must be closed), or
        InvalidFramedMessage for one that frames but is invalid (the stream stays usable).
        """
        if self.broken:
            return None
        buf = self._buffer
        head = self._head
        if head is None:
            if not self._searched and not self._skip_keepalives(buf):
                return None
            head = self._find_head(buf)
            if head is None:
                return None
            self._head = head
        if len(buf) < head.total:
            return None
        data = bytes(buf[: head.total])
        del buf[: head.total]
        self._head = None
        self._searched = 0
        self.messages_framed += 1
        try:
            return parse_message(head.start, head.headers, data[head.body_start :], head.line_ending)
        except RemoteProtocolError as exc:
            raise InvalidFramedMessage(exc, data) from exc

    def _find_head(self, buf: bytearray) -> _Head | None:
        """Look for the blank line ending the header block in what arrived since the last look; parse
        the block once found. The earliest of CRLFCRLF and LFLF wins (as `split_head` does)."""
        end = min(len(buf), self.max_head_size + len(_CRLF2))
        # Back up by a terminator's length less one: the blank line may straddle two segments.
        begin = max(0, self._searched - (len(_CRLF2) - 1))
        crlf = buf.find(_CRLF2, begin, end)
        lf = buf.find(_LF2, begin, end)
        if crlf < 0 and lf < 0:
            self._searched = max(end, 1)
            if len(buf) > self.max_head_size:
                self._break()
                raise FramingLimitExceeded("header block too large", FramingLimit.HEADER_SIZE)
            return None
        if crlf >= 0 and (lf < 0 or crlf < lf):
            head_end, body_start, line_ending = crlf, crlf + len(_CRLF2), "\r\n"
        else:
            head_end, body_start, line_ending = lf, lf + len(_LF2), "\n"
        try:
            start, headers = parse_head(bytes(buf[:head_end]), line_ending)
            declared = _content_length(headers)
        except RemoteProtocolError:
            # Without a trustworthy header block (or with a bad or doubled Content-Length, RFC 4475
            # §3.1.2.3 and §3.3.9) there is no telling where the next message starts.
            self._break()
            raise
        if declared is None:
            # RFC 3261 §18.3: Content-Length is mandatory on streams; without it we cannot frame.
            self._break()
            raise RemoteProtocolError("missing Content-Length on a stream transport", 400)
        if declared > self.max_body_size:
            self._break()
            raise FramingLimitExceeded("message too large", FramingLimit.BODY_SIZE)
        return _Head(start, headers, body_start, line_ending, body_start + declared)

    def _skip_keepalives(self, buf: bytearray) -> bool:
        """Drop the CR/LF run before a message, counting its CRLFCRLF pings; True when a message has
        begun in the buffer.

        A run that reaches the end of the buffer keeps the start of an unfinished ping, so a ping split
        across two reads still counts once.
        """
        run = 0
        while run < len(buf) and buf[run] in (0x0D, 0x0A):
            run += 1
        if not run:
            return bool(buf)
        skipped = bytes(buf[:run])
        pings = skipped.count(_PING)
        drop = run
        begun = run < len(buf)
        if not begun:
            rest = skipped[skipped.rfind(_PING) + 4 :] if pings else skipped
            if rest and _PING.startswith(rest):
                drop = run - len(rest)
        self.keepalive_pings += pings
        del buf[:drop]
        return begun

    def _break(self) -> None:
        self.broken = True
        self._buffer.clear()
        self._head = None
        self._searched = 0
