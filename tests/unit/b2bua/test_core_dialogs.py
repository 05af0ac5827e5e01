"""The core's in-dialog behaviour, as conversations: these messages in, these out (no sockets)."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from sbc.b2bua.core import caller_status
from tests.unit.b2bua.sip_peers import (
    LAN_SBC,
    PHONE,
    PHONE_PORT,
    TRUNK,
    WAN_SBC,
    Net,
    answer,
    phone_invite,
    phone_request,
    place_call,
    requests,
    responses,
    trunk_request,
)


def test_refer_with_replaces_names_the_dialog_of_the_other_leg() -> None:
    """Attended transfer from the phone: its Replaces names its dialog with the SBC for call 2; the
    trunk must get call 2's trunk-side identifiers, and the URI of the party that holds it."""
    net = Net()
    first, _, _ = place_call(net, "bob")
    second, _, _ = place_call(net, "carol", trunk_port=5070)
    replaces = quote(f"{second.lan_call_id};to-tag={second.lan_sbc_tag};from-tag={second.phone_tag}", safe="")
    out = phone_request(net, first, "REFER", 2, f"Refer-To: <{second.lan_contact}?Replaces={replaces}>")
    refer = requests(out, "REFER", "wan")[0]
    mapped = quote(f"{second.wan_call_id};to-tag={second.trunk_tag};from-tag={second.wan_sbc_tag}", safe="")
    assert refer.get("refer-to") == f"<{second.trunk_contact}?Replaces={mapped}>"
    assert refer.call_id == first.wan_call_id


def test_refer_replaces_of_a_dialog_the_sbc_does_not_hold_is_dropped() -> None:
    net = Net()
    call, _, _ = place_call(net, "bob")
    replaces = quote("secret-call@192.0.2.55;to-tag=a;from-tag=b", safe="")
    out = phone_request(
        net, call, "REFER", 2, f"Refer-To: <sip:dave@192.0.2.55:5090;transport=udp?Replaces={replaces}>"
    )
    refer_to = requests(out, "REFER", "wan")[0].get("refer-to") or ""
    assert refer_to == f"<sip:dave@{WAN_SBC}:5060>"


def test_refer_from_the_trunk_points_the_phone_at_the_sbc() -> None:
    net = Net()
    call, _, _ = place_call(net, "bob")
    out = trunk_request(
        net, call, "REFER", 2, f"Refer-To: <sip:dave@{TRUNK}:5099;transport=udp>\nReferred-By: <sip:bob@{TRUNK}:5060>"
    )
    refer = requests(out, "REFER", "lan")[0]
    assert refer.get("refer-to") == f"<sip:dave@{LAN_SBC}:5060>"
    assert refer.get("referred-by") == f"<sip:bob@{LAN_SBC}:5060>"
    assert TRUNK not in refer.serialize().decode()


def test_replaces_in_a_new_invite_is_mapped_or_dropped() -> None:
    net = Net()
    held, _, _ = place_call(net, "bob")
    known = f"Replaces: {held.lan_call_id};to-tag={held.lan_sbc_tag};from-tag={held.phone_tag}"
    _, out, _ = place_call(net, "bob2", invite_headers=known)
    invite = requests(out, "INVITE", "wan")[0]
    assert invite.get("replaces") == f"{held.wan_call_id};to-tag={held.trunk_tag};from-tag={held.wan_sbc_tag}"
    _, out, _ = place_call(net, "bob3", invite_headers="Replaces: other@192.0.2.9;to-tag=x;from-tag=y")
    assert requests(out, "INVITE", "wan")[0].get("replaces") is None


def test_in_dialog_request_decrements_max_forwards() -> None:
    net = Net()
    call, _, _ = place_call(net, "bob")
    out = phone_request(net, call, "INFO", 2)  # the phone sends Max-Forwards: 70
    assert requests(out, "INFO", "wan")[0].get("max-forwards") == "69"


def test_prack_rack_names_the_cseq_of_the_invite_on_its_own_leg() -> None:
    net = Net()
    out = phone_invite(net, "bob", "Supported: 100rel", cseq=314)
    invite = requests(out, "INVITE", "wan")[0]
    ringing = answer(net, "wan", invite, 180, f"Require: 100rel\nRSeq: 42\nContact: <sip:bob@{TRUNK}>")
    relayed = responses(ringing, 180, "lan")[0]
    assert relayed.get("rseq") == "42" and "100rel" in (relayed.get("require") or "")
    sbc_tag = relayed.to.tag
    out = net.send(
        "lan",
        f"""PRACK {relayed.contacts[0].uri} SIP/2.0
Via: SIP/2.0/UDP {PHONE}:{PHONE_PORT};branch=z9hG4bKp2
Max-Forwards: 70
From: <sip:alice@{PHONE}>;tag=bob-ptag
To: <sip:bob@{LAN_SBC}>;tag={sbc_tag}
Call-ID: bob-call@{PHONE}
CSeq: 315 PRACK
RAck: 42 314 INVITE
Content-Length: 0""",
        (PHONE, PHONE_PORT),
    )
    assert requests(out, "PRACK", "wan")[0].get("rack") == "42 1 INVITE"


def test_prack_of_a_reliable_provisional_to_a_reinvite() -> None:
    net = Net()
    call, _, _ = place_call(net, "bob")
    phone_request(net, call, "INFO", 20)  # each leg counts its own CSeq: the trunk leg's is now 2
    out = phone_request(net, call, "INVITE", 21, "Supported: 100rel")
    reinvite = requests(out, "INVITE", "wan")[0]
    assert reinvite.cseq == (3, "INVITE")
    progress = responses(answer(net, "wan", reinvite, 183, "Require: 100rel\nRSeq: 7"), 183, "lan")[0]
    assert progress.get("rseq") == "7"
    out = phone_request(net, call, "PRACK", 22, "RAck: 7 21 INVITE")
    assert requests(out, "PRACK", "wan")[0].get("rack") == "7 3 INVITE"


# ---- session timers (RFC 4028) -------------------------------------------------------------------
def test_interval_below_min_se_from_a_caller_that_supports_timers_gets_422() -> None:
    net = Net()
    out = phone_invite(net, "bob", "Supported: timer\nSession-Expires: 60")
    assert [(s.realm, s.message.serialize().split(b"\r\n")[0]) for s in out] == [
        ("lan", b"SIP/2.0 422 Session Interval Too Small")
    ]
    assert out[0].message.get("min-se") == "90"
    assert net.core.counters.calls_total == 0


@pytest.mark.parametrize("method", ["INVITE", "UPDATE"])
def test_refresh_below_min_se_gets_422_and_the_call_goes_on(method: str) -> None:
    net = Net()
    call, _, _ = place_call(net, "bob", invite_headers="Supported: timer\nSession-Expires: 300;refresher=uac")
    out = phone_request(net, call, method, 2, "Supported: timer\nSession-Expires: 60;refresher=uac")
    assert [(s.realm, s.message.serialize().split(b"\r\n")[0]) for s in out] == [
        ("lan", b"SIP/2.0 422 Session Interval Too Small")
    ]
    assert out[0].message.get("min-se") == "90"
    assert len(net.core.calls) == 1
    assert requests(phone_request(net, call, "INFO", 3), "INFO", "wan")


def test_interval_below_min_se_from_a_caller_without_timers_is_raised() -> None:
    net = Net()
    _, out, _ = place_call(net, "bob", invite_headers="Session-Expires: 60")
    invite = requests(out, "INVITE", "wan")[0]
    assert invite.get("session-expires") == "90" and invite.get("min-se") == "90"


def test_caller_without_session_timer_gets_the_default_asked_toward_the_callee() -> None:
    net = Net()
    _, out, _ = place_call(net, "bob")
    invite = requests(out, "INVITE", "wan")[0]
    assert invite.get("session-expires") == "1800" and invite.get("min-se") == "90"
    assert "timer" not in (invite.get("supported") or "")  # the callee must be the refresher


def test_callee_without_session_timer_leaves_the_caller_refreshing() -> None:
    net = Net()
    _, _, answered = place_call(net, "bob", invite_headers="Supported: timer\nSession-Expires: 300;refresher=uac")
    ok = responses(answered, 200, "lan")[0]
    assert ok.get("session-expires") == "300;refresher=uac"
    assert "timer" in (ok.get("require") or "")


def test_session_without_refresh_ends_with_bye_to_both_before_it_expires() -> None:
    net = Net()
    headers = "Supported: timer\nSession-Expires: 90;refresher=uac"
    call, _, _ = place_call(
        net, "bob", invite_headers=headers, answer_headers="Session-Expires: 90;refresher=uac\nRequire: timer"
    )
    assert not requests(net.tick(57), "BYE")
    out = net.tick(4)  # 61 s: past 90 - min(32, 90 / 3) = 60 s
    byes = requests(out, "BYE")
    assert sorted(s.realm for s in out if s.message in byes) == ["lan", "wan"]
    assert all(b.get("reason") == 'SIP;cause=408;text="session timer expired"' for b in byes)
    assert not net.core.calls
    del call


def test_refresh_restarts_the_session_timer() -> None:
    net = Net()
    headers = "Supported: timer\nSession-Expires: 90;refresher=uac"
    call, _, _ = place_call(net, "bob", invite_headers=headers, answer_headers="Session-Expires: 90;refresher=uac")
    net.tick(50)
    out = phone_request(net, call, "UPDATE", 2, "Session-Expires: 90;refresher=uac")
    update = requests(out, "UPDATE", "wan")[0]
    answer(net, "wan", update, 200, "Session-Expires: 90;refresher=uac")
    assert not requests(net.tick(50), "BYE")  # 100 s after the answer, 50 s after the refresh
    assert len(requests(net.tick(12), "BYE")) == 2


# ---- credentials ---------------------------------------------------------------------------------
def _register(net: Net, authorization: str) -> list[object]:
    return net.send(  # type: ignore[return-value]
        "lan",
        f"""REGISTER sip:branch.example SIP/2.0
Via: SIP/2.0/UDP {PHONE}:{PHONE_PORT};branch=z9hG4bKr1
Max-Forwards: 70
From: <sip:alice@branch.example>;tag=r1
To: <sip:alice@branch.example>
Call-ID: reg@{PHONE}
CSeq: 2 REGISTER
Contact: <sip:alice@{PHONE}:{PHONE_PORT}>
Authorization: {authorization}
Content-Length: 0""",
        (PHONE, PHONE_PORT),
    )


@pytest.mark.parametrize(
    ("uri", "passed"),
    [("sip:branch.example", True), (f"sip:{LAN_SBC}:5060", True), (f"sip:{PHONE}:5062", False)],
    ids=["domain", "sbc-address", "phone-address"],
)
def test_credentials_pass_unchanged_unless_they_name_an_inside_endpoint(uri: str, passed: bool) -> None:
    net = Net()
    credentials = f'Digest username="alice", realm="branch.example", nonce="n1", uri="{uri}", response="0123"'
    out = _register(net, credentials)
    upstream = requests(out, "REGISTER", "wan")[0]  # type: ignore[arg-type]
    assert (upstream.get("authorization") == credentials) is passed
    assert (upstream.get("authorization") is None) is not passed


@pytest.mark.parametrize(
    ("status", "relayed"),
    [(486, 486), (603, 603), (404, 404), (480, 480), (500, 500), (503, 500), (302, 480), (380, 480), (488, 488)],
)
def test_caller_status(status: int, relayed: int) -> None:
    assert caller_status(status) == relayed


def test_sipfrag_bodies_are_scrubbed_like_headers() -> None:
    """The NOTIFY of a transfer carries a fragment of the far side's SIP message (RFC 3420)."""
    net = Net()
    call, _, _ = place_call(net, "bob")
    out = net.send(
        "wan",
        f"""NOTIFY {call.wan_contact} SIP/2.0
Via: SIP/2.0/UDP {TRUNK}:5060;branch=z9hG4bKfrag
Max-Forwards: 70
From: <{call.trunk_contact}>;tag={call.trunk_tag}
To: <sip:alice@{WAN_SBC}>;tag={call.wan_sbc_tag}
Call-ID: {call.wan_call_id}
CSeq: 2 NOTIFY
Event: refer
Subscription-State: terminated
Content-Type: message/sipfrag;version=2.0

SIP/2.0 200 OK
Contact: <sip:dave@{TRUNK}:5099>""",
        (TRUNK, 5060),
    )
    notify = requests(out, "NOTIFY", "lan")[0]
    assert notify.body.decode() == f"SIP/2.0 200 OK\r\nContact: <sip:dave@{LAN_SBC}>\r\n"
