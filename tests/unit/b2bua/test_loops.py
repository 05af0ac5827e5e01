"""Loop detection by the fingerprint in the SBC's own branch (RFC 3261 §16.3 step 4, §16.6 step 8)."""

from __future__ import annotations

from sbc.b2bua.loops import has_looped, seal, unsealed_branch
from sbc.sip.message import HeaderField, Request


def _request(uri: str, routes: list[str] = []) -> Request:  # noqa: B006 - never mutated
    headers = [
        HeaderField("Via", "SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKsbcPLACEHOLDER"),
        HeaderField("From", "<sip:a@x>;tag=f1"),
        HeaderField("To", "<sip:b@y>;tag=t1"),
        HeaderField("Call-ID", "c1"),
        HeaderField("CSeq", "2 BYE"),
        *(HeaderField("Route", r) for r in routes),
    ]
    return Request("BYE", uri, headers)


def _sent(uri: str, routes: list[str] = []) -> Request:  # noqa: B006 - never mutated
    request = _request(uri, routes)
    request.set("Via", f"SIP/2.0/UDP 198.51.100.1:5060;branch={unsealed_branch('abc')};rport")
    seal(request)
    return request


def test_a_request_that_comes_back_unchanged_has_looped() -> None:
    sent = _sent("sip:x@198.51.100.1")
    back = sent.copy()
    back.add("Via", "SIP/2.0/UDP 203.0.113.10;branch=z9hG4bKp1", first=True)
    assert has_looped(back)


def test_a_request_changed_on_its_way_is_spiralling() -> None:
    via_pbx = _sent("sip:x@198.51.100.1", ["<sip:203.0.113.10;lr>"])
    back = via_pbx.copy()
    back.set_values("Route", [])  # the PBX consumed its Route: the same Request-URI comes back
    assert not has_looped(back)
    retargeted = _sent("sip:bob@203.0.113.10").copy()
    retargeted.set_uri("sip:r123@198.51.100.1")
    assert not has_looped(retargeted)


def test_the_seal_goes_into_the_branch_and_the_other_via_params_stay() -> None:
    via = _sent("sip:x@198.51.100.1").top_via
    assert via.branch is not None and via.branch.startswith("z9hG4bKsbcabc.") and len(via.branch) == 22
    assert str(via).endswith(";rport")


def test_only_the_sbc_s_own_branches_count() -> None:
    foreign = _request("sip:x@198.51.100.1")
    foreign.set("Via", "SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKother.00000000")
    assert not has_looped(foreign)
