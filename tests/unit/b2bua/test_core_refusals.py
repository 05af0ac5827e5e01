"""Requests the core refuses itself (483, 482) and the callee's refusals as the caller hears them,
as conversations on the sans-IO core. (422 for a short session interval: test_core_dialogs.)"""

from __future__ import annotations

import pytest

from sbc.sip.message import Request
from tests.unit.b2bua.sip_peers import (
    LAN_SBC,
    PHONE,
    PHONE_PORT,
    TRUNK,
    WAN_SBC,
    Net,
    Sent,
    answer,
    phone_ack_failure,
    phone_invite,
    requests,
)


def _start_lines(sent: list[Sent]) -> list[tuple[str, str]]:
    return [(s.realm, s.message.serialize().split(b"\r\n")[0].decode()) for s in sent]


def _invite(net: Net, name: str, max_forwards: int) -> list[Sent]:
    return net.send(
        "lan",
        f"""INVITE sip:{name}@{LAN_SBC} SIP/2.0
Via: SIP/2.0/UDP {PHONE}:{PHONE_PORT};branch=z9hG4bK{name}
Max-Forwards: {max_forwards}
From: <sip:alice@{PHONE}>;tag={name}-ptag
To: <sip:{name}@{LAN_SBC}>
Call-ID: {name}-call@{PHONE}
CSeq: 1 INVITE
Content-Length: 0""",
        (PHONE, PHONE_PORT),
    )


# ---- 483 Too Many Hops (RFC 3261 §16.3 item 2) -----------------------------------------------------
def test_invite_with_max_forwards_0_gets_483_and_is_not_relayed() -> None:
    net = Net()
    out = _invite(net, "bob", 0)
    assert _start_lines(out) == [("lan", "SIP/2.0 483 Too Many Hops")]
    assert (out[0].destination.host, out[0].destination.port) == (PHONE, PHONE_PORT)
    assert out[0].message.cseq == (1, "INVITE")
    assert net.core.counters.calls_total == 0 and not net.core.calls
    assert net.core.counters.by_status == {483: 1}


def test_invite_with_max_forwards_1_leaves_with_0() -> None:
    net = Net()
    assert [i.get("max-forwards") for i in requests(_invite(net, "bob", 1), "INVITE", "wan")] == ["0"]


# ---- 482 Loop Detected (RFC 3261 §16.3 item 4) -----------------------------------------------------
def test_invite_that_comes_back_to_the_sbc_unchanged_gets_482_and_the_caller_hears_it() -> None:
    """The WAN peer is the SBC's own LAN side: our INVITE arrives on the LAN listener with our Via and
    the Request-URI we sent. The 482 goes back to our WAN side, which relays it to the phone."""
    net = Net()
    (sent,) = phone_invite(net, "bob")
    invite = sent.message
    assert isinstance(invite, Request)
    looped = net.deliver("lan", sent.data, (WAN_SBC, 5060))
    assert _start_lines(looped) == [("lan", "SIP/2.0 482 Loop Detected")]
    assert (looped[0].destination.host, looped[0].destination.port) == (WAN_SBC, 5060)
    assert net.core.counters.loops_detected == 1 and net.core.counters.calls_total == 1
    back = net.deliver("wan", looped[0].data, (LAN_SBC, 5060))
    assert sorted(_start_lines(back)) == [
        ("lan", "SIP/2.0 482 Loop Detected"),
        ("wan", f"ACK {invite.uri} SIP/2.0"),
    ]
    assert not net.core.calls


def test_invite_that_comes_back_for_another_request_uri_is_a_spiral_not_a_loop() -> None:
    """A hairpin through a PBX comes back with our Via but a new Request-URI: a new call."""
    net = Net()
    (sent,) = phone_invite(net, "bob")
    spiral = sent.data.replace(f"INVITE sip:bob@{TRUNK} ".encode(), f"INVITE sip:carol@{LAN_SBC} ".encode(), 1)
    assert spiral != sent.data
    out = net.deliver("lan", spiral, (WAN_SBC, 5060))
    assert [str(i.uri) for i in requests(out, "INVITE", "wan")] == [f"sip:carol@{TRUNK}"]
    assert net.core.counters.loops_detected == 0 and net.core.counters.calls_total == 2


# ---- the callee's refusal, as the caller hears it ------------------------------------------------
@pytest.mark.parametrize(
    ("trunk", "caller"),
    [
        (486, "486 Whatever"),
        (603, "603 Whatever"),
        (404, "404 Whatever"),
        (480, "480 Whatever"),
        (503, "500 Server Internal Error"),
        (302, "480 Temporarily Unavailable"),
    ],
)
def test_trunk_refusal_reaches_the_caller_as_it_is_or_mapped(trunk: int, caller: str) -> None:
    """Relayed with the trunk's reason when it describes the call; mapped (with a Warning saying so and
    without the trunk's Retry-After or contacts) when it would mislead the phone about the SBC."""
    net = Net()
    invite = requests(phone_invite(net, "bob"), "INVITE", "wan")[0]
    # A 302 to a host that is not the trunk's is not followed (sbc.b2bua.redirect): the caller hears 480.
    extra = "Retry-After: 30" + ("\nContact: <sip:elsewhere@198.18.7.7:5099>" if trunk == 302 else "")
    out = answer(net, "wan", invite, trunk, extra, to_tag="bob-ttag")
    assert _start_lines(out) == [("wan", f"ACK {invite.uri} SIP/2.0"), ("lan", f"SIP/2.0 {caller}")]
    final = out[1].message
    mapped = not caller.startswith(str(trunk))
    assert (final.get("retry-after") is None) is mapped
    assert (final.get("warning") == f'399 {LAN_SBC} "far end answered {trunk}"') is mapped
    text = out[1].data.decode()
    assert final.get("contact") is None and TRUNK not in text and "198.18.7.7" not in text
    assert phone_ack_failure(net, "bob", final) == []  # type: ignore[arg-type]
    assert [s.realm for s in net.run(40)] == []
    status = int(caller.split()[0])
    assert net.core.counters.calls_failed == 1
    assert [(r["status"], r["reason"]) for r in net.records] == [(status, f"callee answered {trunk}")]
