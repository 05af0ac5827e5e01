"""SDES CNAME scrubbing (`dataplane.rtcp`): real compound packets in, the same packets out with each
CNAME replaced by an opaque token of fixed length and every length field right (RFC 3550 §6.5)."""

from __future__ import annotations

import struct

import pytest

from dataplane.rtcp import CNAME_TOKEN_LENGTH, CnameTokens, scrub_cnames
from tests.unit.dataplane.rtcp_packets import (
    BYE,
    CNAME,
    NAME,
    RR,
    SDES,
    SR,
    TOOL,
    bye,
    read_compound,
    receiver_report,
    sdes,
    sender_report,
)

TOKENS = CnameTokens(b"k" * 16)
PHONE = 0xA11CE001


def test_a_phones_sender_report_loses_its_inside_address_and_keeps_the_rest() -> None:
    packet = sender_report(PHONE) + sdes((PHONE, [(CNAME, b"alice@10.1.2.3"), (TOOL, b"Yealink T46U")]))

    out = scrub_cnames(packet, TOKENS)

    assert out is not None and b"10.1.2.3" not in out and b"alice" not in out
    (sr_type, sr_body), (sdes_type, chunks) = read_compound(out)
    assert (sr_type, sr_body) == (SR, sender_report(PHONE)[4:])
    assert sdes_type == SDES
    assert chunks == [(PHONE, [(CNAME, TOKENS.token(b"alice@10.1.2.3")), (TOOL, b"Yealink T46U")])]
    token = TOKENS.token(b"alice@10.1.2.3")
    assert len(token) == CNAME_TOKEN_LENGTH and all(chr(c) in "0123456789abcdef" for c in token)


@pytest.mark.parametrize("cname", [b"a@b", b"user@192.168.100.200", b"x" * 255])
def test_every_length_of_cname_comes_out_as_a_well_formed_packet(cname: bytes) -> None:
    out = scrub_cnames(receiver_report(PHONE) + sdes((PHONE, [(CNAME, cname)])) + bye(PHONE), TOKENS)
    assert out is not None
    kinds = [kind for kind, _ in read_compound(out)]
    assert kinds == [RR, SDES, BYE]
    assert len(out) == 8 + 4 + 4 + 2 + CNAME_TOKEN_LENGTH + 2 + 8  # SDES: header, SSRC, item, end + pad


def test_one_participant_one_token_another_participant_another() -> None:
    mixer = 0xB0B00002
    packet = receiver_report(PHONE) + sdes(
        (PHONE, [(CNAME, b"alice@10.1.2.3")]), (mixer, [(NAME, b"Bob"), (CNAME, b"bob@10.1.2.4")])
    )
    out = scrub_cnames(packet, TOKENS)
    assert out is not None
    (_, _), (_, chunks) = read_compound(out)
    assert chunks == [
        (PHONE, [(CNAME, TOKENS.token(b"alice@10.1.2.3"))]),
        (mixer, [(NAME, b"Bob"), (CNAME, TOKENS.token(b"bob@10.1.2.4"))]),
    ]
    assert TOKENS.token(b"alice@10.1.2.3") != TOKENS.token(b"bob@10.1.2.4")
    assert TOKENS.token(b"alice@10.1.2.3") == CnameTokens(b"k" * 16).token(b"alice@10.1.2.3")  # audio and video
    assert TOKENS.token(b"alice@10.1.2.3") != CnameTokens(b"j" * 16).token(b"alice@10.1.2.3")  # keyed


def test_padding_of_the_sender_is_dropped_with_the_rewrite() -> None:
    plain = sdes((PHONE, [(CNAME, b"alice@10.1.2.3")]))
    words = struct.unpack_from("!H", plain, 2)[0] + 1
    padded = bytes((plain[0] | 0x20,)) + plain[1:2] + struct.pack("!H", words) + plain[4:] + b"\0\0\0\x04"
    out = scrub_cnames(sender_report(PHONE) + padded, TOKENS)
    assert out is not None
    assert read_compound(out)[1] == (SDES, [(PHONE, [(CNAME, TOKENS.token(b"alice@10.1.2.3"))])])


def test_nothing_to_rewrite_is_none() -> None:
    assert scrub_cnames(sender_report(PHONE), TOKENS) is None
    assert scrub_cnames(receiver_report(PHONE) + sdes((PHONE, [(NAME, b"Alice")])), TOKENS) is None


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        b"\x80\xc8",
        sender_report(PHONE)[:-4],  # the length field says more than there is
        b"\x40" + sender_report(PHONE)[1:],  # version 1
        # SRTCP: the first header is clear, the rest encrypted, then the index and the tag
        sender_report(PHONE) + bytes.fromhex("9c3e77a1d2b45f0a81c2") + b"\x80\x00\x00\x01" + bytes(10),
        receiver_report(PHONE) + sdes((PHONE, [(CNAME, b"alice@10.1.2.3")]))[:-4],  # chunk cut short
        receiver_report(PHONE) + b"\x81\xca\x00\x02" + struct.pack("!I", PHONE) + b"\x01\x30abcd",  # item overruns
    ],
    ids=["empty", "short", "truncated", "version", "srtcp", "cut-chunk", "item-overrun"],
)
def test_what_does_not_parse_is_none_and_goes_on_as_it_is(packet: bytes) -> None:
    assert scrub_cnames(packet, TOKENS) is None


def test_a_secret_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(ValueError):
        CnameTokens(b"short")
