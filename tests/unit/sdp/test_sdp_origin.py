"""OriginRewriter: stable sess-id per leg, sess-version bumped exactly when what we send changes (RFC 3264 §8)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from sbc.sdp import MediaAnchor, OriginRewriter, SessionDescription, anchor_sdp, hide_origin_only
from tests.unit.sdp.sdp_samples import DESK_PHONE

SBC = IPv4Address("198.18.0.1")


def _o_line(body: bytes) -> bytes:
    return next(line for line in body.split(b"\r\n") if line.startswith(b"o="))


def test_offer_reoffer_unchanged_reoffer_changed() -> None:
    leg = OriginRewriter("sbc", SBC, sess_id=987654, first_version=5)
    offer = SessionDescription.parse(DESK_PHONE)
    assert _o_line(hide_origin_only(offer, leg)) == b"o=sbc 987654 5 IN IP4 198.18.0.1"

    same = SessionDescription.parse(DESK_PHONE)  # a session refresh: same version, same SDP
    assert _o_line(hide_origin_only(same, leg)) == b"o=sbc 987654 5 IN IP4 198.18.0.1"

    held = SessionDescription.parse(
        DESK_PHONE.replace(b"20017 20017", b"20017 20018").replace(b"a=sendrecv", b"a=sendonly")
    )
    assert _o_line(hide_origin_only(held, leg)) == b"o=sbc 987654 6 IN IP4 198.18.0.1"
    assert _o_line(hide_origin_only(held, leg)) == b"o=sbc 987654 6 IN IP4 198.18.0.1"
    assert leg.sess_version == 6


def test_peer_bumping_without_change_does_not_bump_ours() -> None:
    leg = OriginRewriter("sbc", SBC, sess_id=1)
    hide_origin_only(SessionDescription.parse(DESK_PHONE), leg)
    bumped = SessionDescription.parse(DESK_PHONE.replace(b"20017 20017", b"20017 20018"))
    assert _o_line(hide_origin_only(bumped, leg)) == b"o=sbc 1 1 IN IP4 198.18.0.1"


def test_change_without_peer_bump_still_bumps_ours() -> None:
    # A buggy peer (or a new anchor) changes the SDP under the same version: what we send differs.
    leg = OriginRewriter("sbc", SBC, sess_id=1)
    sd = SessionDescription.parse(DESK_PHONE)
    first = anchor_sdp(sd, [MediaAnchor(SBC, 40000)], leg)
    again = anchor_sdp(sd, [MediaAnchor(SBC, 40000)], leg)
    moved = anchor_sdp(sd, [MediaAnchor(SBC, 40010)], leg)
    assert first == again
    assert _o_line(first) == b"o=sbc 1 1 IN IP4 198.18.0.1"
    assert _o_line(moved) == b"o=sbc 1 2 IN IP4 198.18.0.1"


def test_two_legs_are_independent() -> None:
    a = OriginRewriter("sbc", SBC, sess_id=1)
    b = OriginRewriter("sbc", SBC, sess_id=2)
    sd = SessionDescription.parse(DESK_PHONE)
    hide_origin_only(sd, a)
    hide_origin_only(sd.with_port(0, 1000), a)
    assert _o_line(hide_origin_only(sd, b)) == b"o=sbc 2 1 IN IP4 198.18.0.1"
    assert a.sess_version == 2


def test_bad_username_is_refused() -> None:
    with pytest.raises(ValueError):
        OriginRewriter("my sbc", SBC, sess_id=1)
    with pytest.raises(ValueError):
        OriginRewriter("sbc", SBC, sess_id=-1)
