"""The core's behaviour over time, on a fake clock: retransmissions, Timer B, the 2xx/ACK exchange,
session-timer expiry and registration expiry. T1 is 0.5 s, T2 4 s (sip_peers' config)."""

from __future__ import annotations

import pytest

from sbc.sip.message import Request, Response
from tests.unit.b2bua.sip_peers import (
    LAN_SBC,
    PHONE,
    PHONE_PORT,
    TRUNK,
    WAN_SBC,
    Net,
    Sent,
    answer,
    phone_ack_2xx,
    phone_ack_failure,
    phone_invite,
    place_call,
    requests,
    responses,
    trunk_request,
)

SESSION_EXPIRED = 'SIP;cause=408;text="session timer expired"'


def _to(sent: list[Sent], realm: str) -> list[Sent]:
    return [s for s in sent if s.realm == realm]


# ---- INVITE toward a trunk that does not answer: Timer A, then Timer B -------------------------------
def test_unanswered_invite_is_retransmitted_then_the_caller_gets_408_at_timer_b() -> None:
    net = Net()
    (sent_invite,) = phone_invite(net, "bob")
    later = net.run(40)
    retransmitted = _to(later, "wan")
    # Timer A: T1, doubling without a cap, until Timer B (64 x T1 = 32 s) gives up (RFC 3261 §17.1.1.2).
    assert [s.at for s in retransmitted] == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert all(s.data == sent_invite.data for s in retransmitted)
    to_phone = _to(later, "lan")
    assert [(s.at, s.message.status) for s in to_phone][:2] == [(0.2, 100), (32.0, 408)]  # type: ignore[union-attr]
    final = to_phone[1].message
    assert final.serialize().startswith(b"SIP/2.0 408 Request Timeout\r\n")
    assert final.to.tag and final.cseq == (1, "INVITE")
    assert to_phone[1].destination.host == PHONE and to_phone[1].destination.port == PHONE_PORT
    # Until the phone ACKs it, the 408 is retransmitted (Timer G); after the ACK, silence.
    assert all(s.data == to_phone[1].data for s in to_phone[2:]) and len(to_phone) > 2
    assert phone_ack_failure(net, "bob", final) == []  # type: ignore[arg-type]
    assert net.run(40) == []
    assert not net.core.calls
    assert (net.core.counters.calls_total, net.core.counters.calls_failed) == (1, 1)
    assert net.core.counters.by_status == {408: 1}
    assert [(r["status"], r["reason"]) for r in net.records] == [(408, "callee: no answer (transaction timeout)")]


def test_invite_retransmissions_stop_at_the_first_provisional_and_timer_b_with_them() -> None:
    net = Net()
    invite = requests(phone_invite(net, "bob"), "INVITE", "wan")[0]
    assert len(requests(net.run(1), "INVITE", "wan")) == 1  # at 0.5 s
    assert answer(net, "wan", invite, 100) == []  # the trunk's own 100 is not relayed
    later = net.run(60)
    assert not requests(later, "INVITE") and not responses(later, 408)
    assert len(net.core.calls) == 1  # still trying: a proceeding INVITE has no Timer B (§17.1.1.2)


def test_retransmitted_invite_from_the_phone_is_absorbed_and_answered_with_the_last_response() -> None:
    net = Net()
    invite = requests(phone_invite(net, "bob"), "INVITE", "wan")[0]
    again = phone_invite(net, "bob")  # the same branch: the phone did not hear our 100 yet
    assert [(s.realm, s.message.serialize().split(b"\r\n")[0]) for s in again] == [("lan", b"SIP/2.0 100 Trying")]
    ringing = responses(answer(net, "wan", invite, 180, to_tag="bob-ttag"), 180, "lan")
    assert len(ringing) == 1
    again = phone_invite(net, "bob")
    assert [s.message for s in again if s.realm == "wan"] == []
    assert [s.data for s in again] == [ringing[0].serialize()]
    assert net.core.counters.calls_total == 1


# ---- the 2xx and its ACK (RFC 3261 §13.3.1.4) ------------------------------------------------------
def _trunk_answers_200(net: Net, invite: Request) -> list[Sent]:
    return answer(net, "wan", invite, 200, f"Contact: <sip:bob@{TRUNK}:5060>", to_tag="bob-ttag")


def _answered(net: Net) -> tuple[Request, Sent, list[Sent]]:
    """The phone calls bob, the trunk answers 200: the trunk's INVITE, the 200 the phone got, and
    all that was sent then."""
    invite = requests(phone_invite(net, "bob"), "INVITE", "wan")[0]
    answered = _trunk_answers_200(net, invite)
    (ok,) = [s for s in answered if s.realm == "lan"]
    return invite, ok, answered


def test_200_is_retransmitted_to_the_phone_until_it_acks_and_only_then_the_trunk_gets_its_ack() -> None:
    net = Net()
    _, ok, answered = _answered(net)
    assert ok.message.serialize().startswith(b"SIP/2.0 200 ")
    resent = net.run(8)
    # T1, doubling to T2 (4 s).
    assert [(s.realm, s.at) for s in resent] == [("lan", 0.5), ("lan", 1.5), ("lan", 3.5), ("lan", 7.5)]
    assert all(s.data == ok.data for s in resent)
    assert not requests(answered + resent, "ACK")
    assert isinstance(ok.message, Response)
    (ack,) = requests(phone_ack_2xx(net, "bob", ok.message), "ACK", "wan")
    assert str(ack.uri) == f"sip:bob@{TRUNK}:5060" and ack.cseq == (1, "ACK") and ack.to.tag == "bob-ttag"
    assert _to(net.run(30), "lan") == []
    assert phone_ack_2xx(net, "bob", ok.message) == []  # a retransmitted ACK is not relayed again


@pytest.mark.parametrize("after", [1.0, 40.0], ids=["during-timer-m", "after-the-transaction-ended"])
def test_trunk_that_retransmits_its_200_gets_the_same_ack_again(after: float) -> None:
    """Our ACK was lost: the trunk sends its 200 again, while our INVITE client transaction is still
    in Accepted (Timer M, 64 x T1), or after it ended (the 200 is then stray)."""
    net = Net()
    invite, ok, _ = _answered(net)
    assert isinstance(ok.message, Response)
    (ack,) = _to(phone_ack_2xx(net, "bob", ok.message), "wan")
    net.run(after)
    assert [(s.realm, s.data) for s in _trunk_answers_200(net, invite)] == [("wan", ack.data)]


def test_200_never_acked_ends_the_call_with_bye_on_both_legs() -> None:
    net = Net()
    _answered(net)
    later = net.run(33)
    byes = requests(later, "BYE")
    # one BYE on each leg (sent again until answered: the same bytes)
    assert sorted(realm for realm, _ in {(s.realm, s.data) for s in later if s.message in byes}) == ["lan", "wan"]
    assert net.logged("call.no_ack") and not net.core.calls


# ---- session timers (RFC 4028) ---------------------------------------------------------------------
def test_refresh_by_the_trunk_reaches_the_phone_and_without_the_next_one_both_get_bye() -> None:
    """90 s with the trunk as refresher: it refreshes once, at 16 s; the call ends 60 s (90 - 90/3)
    after that refresh, not 60 s after the answer."""
    net = Net()
    call, out, answered = place_call(
        net,
        "bob",
        invite_headers="Supported: timer\nSession-Expires: 90;refresher=uas\nMin-SE: 90",
        answer_headers="Require: timer\nSupported: timer\nSession-Expires: 90;refresher=uas",
    )
    invite = requests(out, "INVITE", "wan")[0]
    assert (invite.get("session-expires"), invite.get("min-se")) == ("90;refresher=uas", "90")
    assert responses(answered, 200, "lan")[0].get("session-expires") == "90;refresher=uas"
    assert not requests(net.run(16), "BYE")
    refresh = trunk_request(net, call, "UPDATE", 2, "Supported: timer\nSession-Expires: 90;refresher=uas")
    update = requests(refresh, "UPDATE", "lan")[0]
    assert update.get("session-expires") == "90;refresher=uas" and update.uri == f"sip:alice@{PHONE}:{PHONE_PORT}"
    refreshed = answer(
        net, "lan", update, 200, "Require: timer\nSession-Expires: 90;refresher=uas", source=(PHONE, PHONE_PORT)
    )
    assert responses(refreshed, 200, "wan")[0].get("session-expires") == "90;refresher=uas"
    assert not requests(net.run(59.9), "BYE")  # the answer was 76 s ago: without the refresh, BYE by now
    ended = net.run(2.1)  # the core looks at its calls every 2 s
    byes = [s for s in ended if isinstance(s.message, Request) and s.message.method == "BYE"]
    byes = [s for s in byes if s.at == byes[0].at]  # the first ones, not their retransmissions
    assert sorted((s.realm, s.message.uri) for s in byes) == [  # type: ignore[union-attr]
        ("lan", f"sip:alice@{PHONE}:{PHONE_PORT}"),
        ("wan", f"sip:bob@{TRUNK}:5060"),
    ]
    assert all(b.message.get("reason") == SESSION_EXPIRED for b in byes)
    assert all(75.9 <= b.at <= 78.0 for b in byes)
    assert not net.core.calls
    assert [(r["status"], r["reason"]) for r in net.records] == [(200, "session timer expired")]
    # Both BYEs answered: no retransmission follows.
    answer(net, "lan", byes[0].message, 200, source=(PHONE, PHONE_PORT))  # type: ignore[arg-type]
    answer(net, "wan", byes[1].message, 200)  # type: ignore[arg-type]
    assert not requests(net.run(40), "BYE")
    assert not net.core.dialogs


# ---- registrations ---------------------------------------------------------------------------------
def _register(net: Net) -> list[Sent]:
    return net.send(
        "lan",
        f"""REGISTER sip:branch.example SIP/2.0
Via: SIP/2.0/UDP {PHONE}:{PHONE_PORT};branch=z9hG4bKreg1
Max-Forwards: 70
From: <sip:alice@branch.example>;tag=reg1
To: <sip:alice@branch.example>
Call-ID: reg@{PHONE}
CSeq: 1 REGISTER
Contact: <sip:alice@{PHONE}:5073>;expires=300
Content-Length: 0""",
        (PHONE, PHONE_PORT),
    )


def _invite_from_the_trunk(net: Net, uri: str, name: str) -> list[Sent]:
    return net.send(
        "wan",
        f"""INVITE {uri} SIP/2.0
Via: SIP/2.0/UDP {TRUNK}:5060;branch=z9hG4bK{name}
Max-Forwards: 70
From: <sip:+4930123456@{TRUNK}>;tag={name}-tag
To: <sip:alice@branch.example>
Call-ID: {name}@{TRUNK}
CSeq: 1 INVITE
Contact: <sip:pbx@{TRUNK}:5060>
Content-Length: 0""",
        (TRUNK, 5060),
    )


def test_registration_lasts_as_long_as_the_registrar_granted() -> None:
    """The phone asks 300 s, the registrar grants 2 s: the phone is told 2 s, the registrar's calls
    for the contact it was given reach the phone's own Contact until then, and get 404 after."""
    net = Net()
    up = requests(_register(net), "REGISTER", "wan")[0]
    contact = up.contacts[0]
    assert contact.param("expires") == "300" and contact.uri.host == WAN_SBC
    granted = answer(net, "wan", up, 200, f"Contact: <{contact.uri}>;expires=2", to_tag="reg")
    assert responses(granted, 200, "lan")[0].get("contact") == f"<sip:alice@{PHONE}:5073>;expires=2"
    reached = requests(_invite_from_the_trunk(net, str(contact.uri), "in1"), "INVITE", "lan")
    assert [str(r.uri) for r in reached] == [f"sip:alice@{PHONE}:5073"]
    net.run(1.9)
    assert not net.logged("registration.expired")
    net.run(0.2)
    assert [log.fields["aor"] for log in net.logged("registration.expired")] == ["alice@branch.example"]
    refused = _invite_from_the_trunk(net, str(contact.uri), "in2")
    assert [s.message.serialize().split(b"\r\n")[0] for s in refused] == [b"SIP/2.0 404 Not Found"]
    assert refused[0].realm == "wan" and LAN_SBC not in refused[0].data.decode()
