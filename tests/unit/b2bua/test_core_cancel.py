"""CANCEL (RFC 3261 §9) and its races with the callee's answers, on the sans-IO core."""

from __future__ import annotations

import pytest

from sbc.sip.message import Request, Response
from tests.unit.b2bua.sip_peers import (
    TRUNK,
    Dialog,
    Net,
    Sent,
    answer,
    phone_ack_2xx,
    phone_ack_failure,
    phone_cancel,
    phone_invite,
    phone_request,
    requests,
    responses,
)


def _lines(sent: list[Sent]) -> list[tuple[str, str, str]]:
    """(realm, start line, CSeq) of each message sent, in order."""
    return [(s.realm, s.message.serialize().split(b"\r\n")[0].decode(), s.message.get("cseq") or "") for s in sent]


def _ringing(net: Net) -> tuple[Request, Response]:
    """The phone calls bob and the trunk rings: its INVITE, and the 180 the phone got."""
    invite = requests(phone_invite(net, "bob"), "INVITE", "wan")[0]
    ringing = responses(answer(net, "wan", invite, 180, to_tag="bob-ttag"), 180, "lan")[0]
    return invite, ringing


@pytest.mark.parametrize("trunk_final", [487, 486], ids=["487-answers-the-cancel", "486-crossed-it"])
def test_cancel_while_ringing(trunk_final: int) -> None:
    """The phone hears 200 (CANCEL) and 487 (INVITE) from the SBC at once; the trunk gets a CANCEL for
    its INVITE; its final answer, whichever it is, is ACKed by the SBC and not relayed."""
    net = Net()
    invite, ringing = _ringing(net)
    out = phone_cancel(net, "bob")
    assert _lines(out) == [
        ("lan", "SIP/2.0 200 OK", "1 CANCEL"),
        ("lan", "SIP/2.0 487 Request Terminated", "1 INVITE"),
        ("wan", f"CANCEL {invite.uri} SIP/2.0", "1 CANCEL"),
    ]
    terminated = out[1].message
    assert terminated.to.tag == ringing.to.tag  # the dialog the 180 started
    cancel = requests(out, "CANCEL", "wan")[0]
    assert cancel.get("via") == invite.get("via") and cancel.call_id == invite.call_id  # §9.1
    assert answer(net, "wan", cancel, 200) == []
    final = answer(net, "wan", invite, trunk_final, to_tag="bob-ttag")
    assert _lines(final) == [("wan", f"ACK {invite.uri} SIP/2.0", "1 ACK")]
    assert [s.data for s in answer(net, "wan", invite, trunk_final, to_tag="bob-ttag")] == [final[0].data]
    assert isinstance(terminated, Response)
    assert phone_ack_failure(net, "bob", terminated) == []
    assert net.run(40) == []
    counters = net.core.counters
    assert (counters.calls_cancelled, counters.calls_failed, counters.calls_answered) == (1, 0, 0)
    assert [(r["status"], r["reason"]) for r in net.records] == [(487, "cancelled by caller")]
    assert not net.core.calls


def test_cancel_before_the_trunk_sent_anything_waits_for_its_first_provisional() -> None:
    """§9.1: a CANCEL may not be sent before a provisional came back. The phone is answered at once."""
    net = Net()
    invite = requests(phone_invite(net, "bob"), "INVITE", "wan")[0]
    out = phone_cancel(net, "bob")
    assert [line for realm, line, _ in _lines(out)] == ["SIP/2.0 200 OK", "SIP/2.0 487 Request Terminated"]
    assert not requests(net.run(0.3), "CANCEL")
    assert _lines(answer(net, "wan", invite, 100)) == [("wan", f"CANCEL {invite.uri} SIP/2.0", "1 CANCEL")]


def test_cancel_to_a_trunk_that_never_answers_ends_quietly_at_timer_b() -> None:
    net = Net()
    phone_invite(net, "bob")
    terminated = responses(phone_cancel(net, "bob"), 487, "lan")[0]
    phone_ack_failure(net, "bob", terminated)
    later = net.run(40)
    assert {s.realm for s in later} == {"wan"}  # the INVITE's retransmissions only
    assert not requests(later, "CANCEL") and not responses(later, 408)
    assert net.core.counters.by_status == {487: 1}


def test_200_crossing_the_cancel_is_acked_and_hung_up_on_the_trunk() -> None:
    """The trunk answered before our CANCEL reached it: the phone already has its 487, so the call
    it answered is ACKed and ended with a BYE; the phone sees nothing of it."""
    net = Net()
    invite, _ = _ringing(net)
    phone_cancel(net, "bob")
    out = answer(net, "wan", invite, 200, f"Contact: <sip:bob@{TRUNK}:5090>", to_tag="bob-ttag")
    assert _lines(out) == [
        ("wan", f"ACK sip:bob@{TRUNK}:5090 SIP/2.0", "1 ACK"),
        ("wan", f"BYE sip:bob@{TRUNK}:5090 SIP/2.0", "2 BYE"),
    ]
    bye = requests(out, "BYE", "wan")[0]
    assert bye.call_id == invite.call_id and bye.to.tag == "bob-ttag"
    assert answer(net, "wan", bye, 200) == []
    assert not requests(net.run(40), "BYE")
    assert net.core.counters.calls_answered == 0 and not net.core.calls


@pytest.mark.parametrize("acked", [False, True], ids=["before-the-ack", "after-the-ack"])
def test_cancel_after_the_200_changes_nothing(acked: bool) -> None:
    """A CANCEL that arrives after the 200 (it crossed it, or came late) is answered 200 and ignored:
    the call stays up and ends with BYE as usual."""
    net = Net()
    invite = requests(phone_invite(net, "bob"), "INVITE", "wan")[0]
    ok = responses(answer(net, "wan", invite, 200, f"Contact: <sip:bob@{TRUNK}:5060>", to_tag="bob-ttag"), 200)[0]
    if acked:
        phone_ack_2xx(net, "bob", ok)
    assert _lines(phone_cancel(net, "bob")) == [("lan", "SIP/2.0 200 OK", "1 CANCEL")]
    if not acked:
        assert [realm for realm, _, _ in _lines(phone_ack_2xx(net, "bob", ok))] == ["wan"]
    assert len(net.core.calls) == 1 and net.core.counters.calls_cancelled == 0
    phone_side = Dialog(
        lan_call_id=ok.call_id, phone_tag="bob-ptag", lan_sbc_tag=ok.to.tag or "", lan_contact=str(ok.contacts[0].uri),
        wan_call_id=invite.call_id, wan_sbc_tag="", trunk_tag="bob-ttag", wan_contact="", trunk_contact="",
    )  # fmt: skip
    bye = requests(phone_request(net, phone_side, "BYE", 2), "BYE", "wan")
    assert [b.call_id for b in bye] == [invite.call_id]


def test_487_from_the_trunk_crossing_the_cancel_reaches_the_phone_once() -> None:
    """The trunk gave up on its own (487) while the phone's CANCEL was on its way: the phone gets the
    trunk's 487 as a failed call; its CANCEL then finds the INVITE answered and goes no further."""
    net = Net()
    invite, _ = _ringing(net)
    out = answer(net, "wan", invite, 487, to_tag="bob-ttag")
    assert _lines(out) == [
        ("wan", f"ACK {invite.uri} SIP/2.0", "1 ACK"),
        ("lan", "SIP/2.0 487 Whatever", "1 INVITE"),
    ]
    assert _lines(phone_cancel(net, "bob")) == [("lan", "SIP/2.0 200 OK", "1 CANCEL")]
    counters = net.core.counters
    assert (counters.calls_failed, counters.calls_cancelled) == (1, 0)


def test_retransmitted_cancel_gets_the_same_200_and_no_second_cancel() -> None:
    net = Net()
    _ringing(net)
    first = phone_cancel(net, "bob")
    again = phone_cancel(net, "bob")
    assert [(s.realm, s.data) for s in again] == [("lan", first[0].data)]
