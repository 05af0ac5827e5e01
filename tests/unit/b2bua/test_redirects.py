"""A 3xx from the callee side (issue 11 item 5): followed toward the trunk's own hosts as a new attempt
on the callee leg while the caller sees one call (`redirects: follow`, the default), relayed with
contacts the caller can reach through the SBC (`relay`), or refused as before (`refuse`: 480).
RFC 3261 §8.1.3.4: each target is tried once, so two servers that redirect to each other end."""

from __future__ import annotations

import pytest

from sbc.config.loader import load_config_text
from sbc.sip.message import Request
from sbc.yamlsource import ConfigError
from tests.unit.b2bua.config_variants import WAN_MEDIA, config_text, net_with
from tests.unit.b2bua.sip_peers import LAN_SBC, TRUNK, Net, Sent, phone_invite, requests, responses


def _answer(
    net: Net, invite: Request, status: int, headers: str, source: tuple[str, int] = (TRUNK, 5060)
) -> list[Sent]:
    vias = "\n".join(f"Via: {v}" for v in invite.get_all("via"))
    return net.send(
        "wan",
        f"""SIP/2.0 {status} Whatever
{vias}
From: {invite.get("from")}
To: {invite.get("to")};tag=t{status}{source[1]}
Call-ID: {invite.call_id}
CSeq: {invite.get("cseq")}
{headers}
Content-Length: 0""",
        source,
    )


def _redirects(mode: str | None) -> Net:
    return net_with({} if mode is None else {WAN_MEDIA: f"{WAN_MEDIA}\n    redirects: {mode}"})


@pytest.mark.parametrize("mode", [None, "follow"])
def test_a_redirect_to_the_trunk_is_followed_and_the_caller_sees_one_call(mode: str | None) -> None:
    net = _redirects(mode)
    first = requests(phone_invite(net, "bob"), "INVITE", "wan")[0]
    out = _answer(net, first, 302, f"Contact: <sip:carol@{TRUNK}:5080>")
    assert not [s for s in out if s.realm == "lan" and not (isinstance(s.message, Request))
                and s.message.status >= 200]  # fmt: skip
    retry = requests(out, "INVITE", "wan")[0]
    assert retry.uri == f"sip:carol@{TRUNK}:5080"
    assert next(s.destination for s in out if s.message is retry).port == 5080
    assert retry.call_id == first.call_id and retry.from_.tag == first.from_.tag  # the same callee leg
    assert retry.cseq[0] > first.cseq[0] and retry.top_via.branch != first.top_via.branch
    assert retry.to.tag is None
    ok = responses(_answer(net, retry, 200, f"Contact: <sip:carol@{TRUNK}:5080>", (TRUNK, 5080)), 200, "lan")
    assert len(ok) == 1 and len(net.core.calls) == 1
    assert not responses(out, 480, "lan")


@pytest.mark.parametrize(
    "contact",
    ["sip:carol@192.0.2.99", "sip:carol@evil.example", "sip:carol@198.18.5.5:5060", "tel:+15551234"],
)
def test_a_redirect_anywhere_else_is_refused(contact: str) -> None:
    net = _redirects("follow")
    first = requests(phone_invite(net, "bob"), "INVITE", "wan")[0]
    out = _answer(net, first, 302, f"Contact: <{contact}>")
    assert not requests(out, "INVITE", "wan")
    assert responses(out, 480, "lan")


def _follow_redirects(net: Net, targets: list[str]) -> tuple[int, list[Sent]]:
    """Answer every INVITE toward the trunk with a 302 to the next target; how many were followed."""
    invite = requests(phone_invite(net, "bob"), "INVITE", "wan")[0]
    for followed, target in enumerate(targets):
        out = _answer(net, invite, 302, f"Contact: <{target}>")
        retries = requests(out, "INVITE", "wan")
        if not retries:
            return followed, out
        invite = retries[0]
    raise AssertionError("the SBC kept following redirects")


def test_a_target_is_tried_once_so_two_servers_redirecting_to_each_other_end() -> None:
    net = _redirects("follow")
    followed, out = _follow_redirects(net, [f"sip:carol@{TRUNK}:5080", f"sip:bob@{TRUNK}", f"sip:carol@{TRUNK}:5080"])
    assert followed == 1 and responses(out, 480, "lan")


def test_redirects_are_followed_a_bounded_number_of_times() -> None:
    net = _redirects("follow")
    followed, out = _follow_redirects(net, [f"sip:u{n}@{TRUNK}" for n in range(20)])
    assert followed == 5 and responses(out, 480, "lan")


def test_relay_hands_the_caller_contacts_that_lead_back_through_the_sbc() -> None:
    net = _redirects("relay")
    first = requests(phone_invite(net, "bob"), "INVITE", "wan")[0]
    out = _answer(net, first, 302, f"Contact: <sip:carol@{TRUNK}:5080;transport=udp>;q=0.5")
    relayed = responses(out, 302, "lan")[0]
    assert [str(c.uri) for c in relayed.contacts] == [f"sip:carol@{LAN_SBC}"]
    assert TRUNK not in relayed.serialize().decode()
    assert not requests(out, "INVITE", "wan")


def test_refuse_answers_480_as_before() -> None:
    net = _redirects("refuse")
    first = requests(phone_invite(net, "bob"), "INVITE", "wan")[0]
    out = _answer(net, first, 302, f"Contact: <sip:carol@{TRUNK}:5080>")
    assert responses(out, 480, "lan") and not requests(out, "INVITE", "wan")


def test_a_bad_redirects_setting_is_refused_with_its_line() -> None:
    text = config_text({WAN_MEDIA: f"{WAN_MEDIA}\n    redirects: forward"})
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, "unit-test")
    problems = [str(p) for p in caught.value.problems]
    line = text.splitlines().index("    redirects: forward") + 1
    assert any(f":{line}:" in p and "redirects" in p and "follow" in p for p in problems), problems
