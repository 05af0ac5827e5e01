"""Message framing on stream transports (TCP, TLS): Content-Length delimits each message (RFC 3261 §18.3)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sbc.sip.errors import RemoteProtocolError
from sbc.sip.message import (
    MAX_MESSAGE_SIZE,
    HeaderField,
    Request,
    Response,
    _content_length,
    parse_head,
    parse_start_line,
    split_head,
    validate,
)

MAX_HEAD_SIZE = 16384


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

        Raises RemoteProtocolError for a message that cannot be framed (the stream must be closed) or
        that frames but is invalid (the stream stays usable: the bad message was consumed).
        """
        if self.broken:
            return None
        buf = self._buffer
        skipped = 0
        while skipped < len(buf) and buf[skipped] in (0x0D, 0x0A):
            skipped += 1
        if skipped:
            self.keepalive_pings += bytes(buf[:skipped]).count(b"\r\n\r\n")
            del buf[:skipped]
        if not buf:
            return None
        split = split_head(bytes(buf[: MAX_HEAD_SIZE + 4]))
        if split is None:
            if len(buf) > MAX_HEAD_SIZE:
                self.broken = True
                raise RemoteProtocolError("header block too large", 513)
            return None
        start, headers = self._parse_head_or_break(bytes(buf[: len(split.head)]), split.line_ending)
        declared = _content_length(headers)
        if declared is None:
            # RFC 3261 §18.3: Content-Length is mandatory on streams; without it we cannot frame.
            self.broken = True
            raise RemoteProtocolError("missing Content-Length on a stream transport", 400)
        total = split.body_start + declared
        if total > self.max_message_size:
            self.broken = True
            raise RemoteProtocolError("message too large", 513)
        if len(buf) < total:
            return None
        body = bytes(buf[split.body_start : total])
        del buf[:total]
        msg = parse_start_line(start, headers, body, split.line_ending)
        validate(msg)
        return msg

    def _parse_head_or_break(self, head: bytes, nl: str) -> tuple[str, list[HeaderField]]:
        try:
            return parse_head(head, nl)
        except RemoteProtocolError:
            self.broken = True
            raise

