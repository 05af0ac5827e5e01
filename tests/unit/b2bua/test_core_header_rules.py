"""Where header rules run in a call: inbound rules on the message as it arrived from their realm (a
copy the other leg is built from), outbound rules on the message as built for their realm, last."""

from __future__ import annotations

from tests.unit.b2bua.sip_peers import Net, place_call, requests, responses

RULES = """
  - name: remember-phone
    realm: lan
    direction: inbound
    match: {method: INVITE, header: {name: User-Agent, regex: "^Yealink"}}
    actions:
      - {store: model, from: User-Agent, regex: "^Yealink (\\\\S+)"}
      - {remove: X-Debug}
  - name: tag-for-trunk
    realm: wan
    direction: outbound
    match: {message: request, method: INVITE}
    actions:
      - {add: X-Phone-Model, value: "${stored.model}"}
      - {add: X-Seen-UA, value: "${header.User-Agent}"}
  - name: trunk-answer
    realm: wan
    direction: inbound
    match: {status: 200, method: INVITE}
    actions:
      - {store: trunk_server, from: Server}
  - name: tell-phone
    realm: lan
    direction: outbound
    match: {status: 200}
    actions:
      - {add: X-Trunk, value: "${stored.trunk_server}"}
"""


def test_inbound_rules_see_what_arrived_and_outbound_rules_what_leaves() -> None:
    net = Net(rules=RULES)
    _, out, answered = place_call(
        net,
        "bob",
        invite_headers="User-Agent: Yealink SIP-T46U 66.86\nX-Debug: inside",
        answer_headers="Server: CarrierSwitch 9",
    )
    invite = requests(out, "INVITE", "wan")[0]
    # Stored from the phone's own User-Agent, which topology hiding then replaced.
    assert invite.get("x-phone-model") == "SIP-T46U"
    assert invite.get("x-seen-ua") == "TestSBC" and invite.get("user-agent") == "TestSBC"
    assert invite.get("x-debug") is None
    ok = responses(answered, 200, "lan")[0]
    assert ok.get("x-trunk") == "CarrierSwitch 9" and ok.get("server") == "TestSBC"


def test_inbound_rules_edit_a_copy_the_sender_is_answered_from_the_original() -> None:
    rules = """
  - realm: lan
    direction: inbound
    actions:
      - {replace: From, regex: "sip:alice@", with: "sip:+4930555@"}
"""
    net = Net(rules=rules)
    _, out, answered = place_call(net, "bob")
    assert "sip:+4930555@" in (requests(out, "INVITE", "wan")[0].get("from") or "")
    ok = responses(answered, 200, "lan")[0]
    assert "sip:alice@" in (ok.get("from") or "")  # the phone's own From, untouched
