"""StreamFramer: Content-Length framing of SIP over TCP/TLS, keep-alives, and poisoned streams."""

from __future__ import annotations

import gc
import time

import pytest

from sbc.sip.errors import RemoteProtocolError
from sbc.sip.framing import (
    MAX_HEAD_SIZE,
    FramePhase,
    FramingLimit,
    FramingLimitExceeded,
    InvalidFramedMessage,
    StreamFramer,
)
from sbc.sip.message import HeaderField, Request, Response


def message(n: int, body: bytes = b"", *, method: str = "OPTIONS", extra: str = "") -> bytes:
    return (
        f"{method} sip:bob@198.18.0.2 SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 198.18.0.1:5060;branch=z9hG4bK{n}\r\n"
        "Max-Forwards: 70\r\n"
        "To: <sip:bob@198.18.0.2>\r\n"
        f"From: <sip:alice@198.18.0.1>;tag={n}\r\n"
        f"Call-ID: call-{n}@198.18.0.1\r\n"
        f"CSeq: {n} {method}\r\n"
        f"{extra}"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    ).encode() + body


def drain(framer: StreamFramer) -> list[Request | Response]:
    out = []
    while (msg := framer.next_message()) is not None:
        out.append(msg)
    return out


def test_several_messages_in_one_chunk() -> None:
    msgs = [message(1), message(2, b"hello"), message(3, b"v=0\r\n\r\nx")]
    framer = StreamFramer()
    framer.feed(b"".join(msgs))
    out = drain(framer)
    assert [m.serialize() for m in out] == msgs
    assert [m.call_id for m in out] == ["call-1@198.18.0.1", "call-2@198.18.0.1", "call-3@198.18.0.1"]
    assert out[2].body == b"v=0\r\n\r\nx"


def test_one_message_byte_by_byte() -> None:
    data = message(7, b"body with\r\n\r\nblank lines")
    framer = StreamFramer()
    for i in range(len(data) - 1):
        framer.feed(data[i : i + 1])
        assert framer.next_message() is None
    framer.feed(data[-1:])
    msg = framer.next_message()
    assert msg is not None and msg.serialize() == data
    assert framer.next_message() is None


def test_crlf_keepalives_between_messages_are_counted() -> None:
    framer = StreamFramer()
    framer.feed(b"\r\n\r\n" + message(1) + b"\r\n\r\n\r\n\r\n" + message(2) + b"\r\n\r\n")
    out = drain(framer)
    assert [m.cseq[0] for m in out] == [1, 2]
    assert framer.keepalive_pings == 4


def test_keepalive_split_across_reads_counts_once() -> None:
    framer = StreamFramer()
    for piece in (b"\r", b"\n", b"\r", b"\n", b"\r\n", b"\r\n"):
        framer.feed(piece)
        assert framer.next_message() is None
    assert framer.keepalive_pings == 2
    framer.feed(message(1))
    assert framer.next_message() is not None
    assert framer.keepalive_pings == 2


def test_single_crlf_before_a_message_is_ignored_but_not_a_ping() -> None:
    framer = StreamFramer()
    framer.feed(b"\r\n" + message(1))
    assert framer.next_message() is not None
    assert framer.keepalive_pings == 0


def test_missing_content_length_breaks_the_stream() -> None:
    data = message(1).replace(b"Content-Length: 0\r\n", b"")
    framer = StreamFramer()
    framer.feed(data + message(2))
    with pytest.raises(RemoteProtocolError) as exc:
        framer.next_message()
    assert exc.value.status_hint == 400
    assert framer.broken
    assert framer.next_message() is None
    framer.feed(message(3))
    assert framer.next_message() is None


@pytest.mark.parametrize("value", [b"-5", b"five", b"\xc2\xb2", b"5, 6"])
def test_bad_content_length_breaks_the_stream(value: bytes) -> None:
    framer = StreamFramer()
    framer.feed(message(1).replace(b"Content-Length: 0", b"Content-Length: " + value) + message(2))
    with pytest.raises(RemoteProtocolError):
        framer.next_message()
    assert framer.broken and framer.next_message() is None


def test_malformed_header_block_breaks_the_stream() -> None:
    framer = StreamFramer()
    framer.feed(message(1).replace(b"Max-Forwards: 70", b"Max Forwards 70") + message(2))
    with pytest.raises(RemoteProtocolError):
        framer.next_message()
    assert framer.broken


def test_oversize_body_is_513_and_breaks_the_stream() -> None:
    framer = StreamFramer(max_body_size=1000)
    framer.feed(message(1).replace(b"Content-Length: 0", b"Content-Length: 1001"))
    with pytest.raises(FramingLimitExceeded) as exc:
        framer.next_message()
    assert exc.value.status_hint == 513 and exc.value.limit is FramingLimit.BODY_SIZE and framer.broken


def test_body_of_exactly_the_limit_frames() -> None:
    framer = StreamFramer(max_body_size=10)
    framer.feed(message(1, b"0123456789"))
    msg = framer.next_message()
    assert msg is not None and msg.body == b"0123456789"


def test_endless_header_block_is_513() -> None:
    framer = StreamFramer()
    framer.feed(b"OPTIONS sip:bob@198.18.0.2 SIP/2.0\r\n")
    framer.feed(b"X-Junk: " + b"a" * MAX_HEAD_SIZE + b"\r\n")
    with pytest.raises(FramingLimitExceeded) as exc:
        framer.next_message()
    assert exc.value.status_hint == 513 and exc.value.limit is FramingLimit.HEADER_SIZE and framer.broken


def test_header_block_limit_is_configurable() -> None:
    data = message(1)
    fits = StreamFramer(max_head_size=len(data) - 4)  # the header block without its blank line
    fits.feed(data)
    assert fits.next_message() is not None
    small = StreamFramer(max_head_size=64)
    small.feed(data)
    with pytest.raises(FramingLimitExceeded):
        small.next_message()


def test_header_block_limit_holds_when_it_trickles_in() -> None:
    framer = StreamFramer(max_head_size=64)
    data = b"OPTIONS sip:bob@198.18.0.2 SIP/2.0\r\n" + b"X-Junk: " + b"a" * 100
    with pytest.raises(FramingLimitExceeded):
        for i in range(len(data)):
            framer.feed(data[i : i + 1])
            framer.next_message()
    assert framer.broken and framer.buffered == 0


def test_bad_but_framed_message_is_consumed_and_the_next_one_parsed() -> None:
    bad = [
        message(1, b"abc").replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE"),  # method mismatch
        message(2).replace(b"SIP/2.0\r\n", b"SIP/7.0\r\n", 1),  # 505
        message(3).replace(b"sip:bob@198.18.0.2 SIP", b"http://x SIP"),  # 416
        message(4).replace(b"Call-ID: call-4@198.18.0.1\r\n", b""),  # missing Call-ID
    ]
    good = message(5, b"ok")
    framer = StreamFramer()
    framer.feed(b"".join(bad) + good)
    statuses = []
    for data in bad:
        with pytest.raises(InvalidFramedMessage) as exc:
            framer.next_message()
        statuses.append(exc.value.status_hint)
        assert exc.value.data == data  # the bytes, for the receiver to answer it
    assert statuses == [400, 505, 416, 400]
    msg = framer.next_message()
    assert msg is not None and msg.serialize() == good
    assert not framer.broken


def test_partial_body_waits() -> None:
    data = message(1, b"0123456789")
    framer = StreamFramer()
    framer.feed(data[:-4])
    assert framer.next_message() is None
    framer.feed(data[-4:])
    msg = framer.next_message()
    assert msg is not None and msg.body == b"0123456789"


def test_lf_only_messages_on_a_stream() -> None:
    data = message(1, b"x\r\n\r\ny").replace(b"\r\n", b"\n")
    data = data[: -len(b"x\n\ny")] + b"x\r\n\r\ny"
    framer = StreamFramer()
    framer.feed(data + message(2))
    first = framer.next_message()
    assert first is not None and first.serialize() == data and first.body == b"x\r\n\r\ny"
    second = framer.next_message()
    assert second is not None and second.cseq[0] == 2


def test_responses_are_framed_too() -> None:
    data = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 198.18.0.1;branch=z9hG4bK1\r\nTo: <sip:b@h>;tag=2\r\n"
        b"From: <sip:a@h>;tag=1\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 2\r\n\r\nok"
    )
    framer = StreamFramer()
    framer.feed(data * 2)
    out = drain(framer)
    assert len(out) == 2 and all(isinstance(m, Response) and m.serialize() == data for m in out)


def test_blank_line_split_across_segments_is_found() -> None:
    data = message(1, b"xyz")
    cut = data.index(b"\r\n\r\n")
    for offset in range(4):
        framer = StreamFramer()
        framer.feed(data[: cut + offset])
        assert framer.next_message() is None
        framer.feed(data[cut + offset :])
        msg = framer.next_message()
        assert msg is not None and msg.serialize() == data


def test_lf_blank_line_split_across_segments_is_found() -> None:
    data = message(1, b"xyz").replace(b"\r\n", b"\n")
    cut = data.index(b"\n\n")
    framer = StreamFramer()
    framer.feed(data[: cut + 1])
    assert framer.next_message() is None
    framer.feed(data[cut + 1 :])
    msg = framer.next_message()
    assert msg is not None and msg.body == b"xyz"


def test_phase_follows_the_message() -> None:
    data = message(1, b"0123456789")
    framer = StreamFramer()
    assert framer.phase is FramePhase.IDLE
    framer.feed(b"\r\n\r\n")
    assert framer.next_message() is None and framer.phase is FramePhase.IDLE  # a ping is no message
    framer.feed(data[:20])
    assert framer.next_message() is None and framer.phase is FramePhase.HEAD
    framer.feed(data[20:-5])
    assert framer.next_message() is None and framer.phase is FramePhase.BODY
    assert framer.buffered == len(data) - 5
    framer.feed(data[-5:])
    assert framer.next_message() is not None and framer.phase is FramePhase.IDLE
    assert framer.messages_framed == 1 and framer.bytes_received == len(data) + 4


def test_partial_ping_then_a_message_is_not_an_empty_header_block() -> None:
    framer = StreamFramer()
    framer.feed(b"\r\n\r")
    assert framer.next_message() is None
    framer.feed(b"\n" + message(1))
    assert framer.next_message() is not None
    assert framer.keepalive_pings == 1


def test_header_block_is_parsed_once_however_it_trickles(monkeypatch: pytest.MonkeyPatch) -> None:
    """The work per segment must not grow with what came before: the header block is parsed once
    per message, not once per segment."""
    import sbc.sip.framing as framing

    parsed: list[int] = []
    real = framing.parse_head

    def counting(head: bytes, nl: str) -> tuple[str, list[HeaderField]]:
        parsed.append(len(head))
        return real(head, nl)

    monkeypatch.setattr(framing, "parse_head", counting)
    data = message(1, b"b" * 3000, extra="X-Pad: " + "p" * 3000 + "\r\n") * 2
    framer = StreamFramer()
    out = []
    for i in range(len(data)):
        framer.feed(data[i : i + 1])
        if (msg := framer.next_message()) is not None:
            out.append(msg)
    assert len(out) == 2 and len(parsed) == 2


def _trickle_seconds(body_size: int, segment: int) -> float:
    """Best of five: one message with a `body_size` body and a header block of the same order fed
    in `segment`-byte pieces, with a framing attempt after each piece (as the transport does)."""
    data = message(1, b"b" * body_size, extra="X-Pad: " + "p" * (body_size // 4) + "\r\n")
    best = float("inf")
    for _ in range(5):
        framer = StreamFramer(max_head_size=1 << 20, max_body_size=1 << 20)
        gc.disable()  # a collection inside one run is noise, not framing work
        try:
            started = time.process_time()  # CPU time: waiting for a busy CPU is not framing work
            for i in range(0, len(data), segment):
                framer.feed(data[i : i + segment])
                msg = framer.next_message()
            best = min(best, time.process_time() - started)
        finally:
            gc.enable()
        assert msg is not None and len(msg.body) == body_size
    return best


@pytest.mark.parametrize("segment", [1, 7])
def test_trickled_message_costs_linear_time(segment: int) -> None:
    """Twice the bytes may cost twice the time, not four times (re-parsing what already arrived on
    every segment is quadratic: a 49 KB body trickled in used to cost seconds)."""
    size = 16_000 * segment  # each run takes tens of milliseconds: above the machine's noise
    small = _trickle_seconds(size, segment)
    large = _trickle_seconds(2 * size, segment)
    assert large < 3 * small, (small, large)
