"""Message framing on stream transports (TCP, TLS): Content-Length delimits each message (RFC 3261 §18.3)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sbc.sip.errors import RemoteProtocolError
from sbc.sip.message import (
    MAX_MESSAGE_SIZE,
    Request,
    Response,
    _content_length,
    parse_head,
    parse_message,
    split_head,
)

MAX_HEAD_SIZE = 16384
_PING = b"\r\n\r\n"


class InvalidFramedMessage(RemoteProtocolError):
    """A message that framed but is invalid: it was consumed, the stream stays usable, and `data`
    (its bytes) lets the receiver answer it like a bad datagram."""

    def __init__(self, cause: RemoteProtocolError, data: bytes) -> None:
        super().__init__(cause.reason, cause.status_hint)
        self.data = data


@dataclass(slots=True)
class StreamFramer:
    """Bytes in (`feed`), whole messages out (`next_message`). A framing error poisons the stream.

    Leading CRLFs are keep-alives (RFC 5626 §3.5.1) and are skipped; `keepalive_pings` counts the
    double-CRLF pings so the transport can answer each with a single CRLF pong.
    """

    max_message_size: int = MAX_MESSAGE_SIZE
    _buffer: bytearray = field(default_factory=bytearray)
    keepalive_pings: int = 0
    broken: bool = False

    def feed(self, data: bytes) -> None:
        if self.broken:
            return
        self._buffer += data

    def next_message(self) -> Request | Response | None:
        """The next complete message, or None until more bytes arrive.

        Raises RemoteProtocolError for a message that cannot be framed (the stream must be closed), or
        InvalidFramedMessage for one that frames but is invalid (the stream stays usable).
        """
        if self.broken:
            return None
        buf = self._buffer
        self._skip_keepalives(buf)
        if not buf:
            return None
        split = split_head(bytes(buf[: MAX_HEAD_SIZE + 4]))
        if split is None:
            if len(buf) > MAX_HEAD_SIZE:
                self._break()
                raise RemoteProtocolError("header block too large", 513)
            return None
        try:
            start, headers = parse_head(split.head, split.line_ending)
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
        total = split.body_start + declared
        if total > self.max_message_size:
            self._break()
            raise RemoteProtocolError("message too large", 513)
        if len(buf) < total:
            return None
        data = bytes(buf[:total])
        del buf[:total]
        try:
            return parse_message(start, headers, data[split.body_start :], split.line_ending)
        except RemoteProtocolError as exc:
            raise InvalidFramedMessage(exc, data) from exc

    def _skip_keepalives(self, buf: bytearray) -> None:
        """Drop the CR/LF run before a message, counting its CRLFCRLF pings.

        A run that reaches the end of the buffer keeps the start of an unfinished ping, so a ping split
        across two reads still counts once.
        """
        run = 0
        while run < len(buf) and buf[run] in (0x0D, 0x0A):
            run += 1
        if not run:
            return
        skipped = bytes(buf[:run])
        pings = skipped.count(_PING)
        drop = run
        if run == len(buf):
            rest = skipped[skipped.rfind(_PING) + 4 :] if pings else skipped
            if rest and _PING.startswith(rest):
                drop = run - len(rest)
        self.keepalive_pings += pings
        del buf[:drop]

    def _break(self) -> None:
        self.broken = True
        self._buffer.clear()
