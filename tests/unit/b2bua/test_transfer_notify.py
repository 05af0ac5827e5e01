"""The progress of a transfer across the SBC (issue 11 item 2): a NOTIFY for a REFER names the REFER
by its CSeq on the leg the NOTIFY travels (RFC 3515 §2.4.6: `Event: refer;id=<CSeq of the REFER>`),
and each leg has its own CSeq space."""

from __future__ import annotations

import json

from sbc.b2bua.dialog_codec import decode_call, encode_call
from sbc.b2bua.media_ledger import MediaLedger
from sbc.sip.message import Request
from tests.unit.b2bua.sip_peers import (
    PHONE,
    PHONE_PORT,
    TRUNK,
    WAN_SBC,
    Dialog,
    Net,
    answer,
    phone_request,
    place_call,
    requests,
    trunk_request,
)


def _trunk_notify(net: Net, call: Dialog, cseq: int, event: str) -> list[Request]:
    out = net.send(
        "wan",
        f"""NOTIFY {call.wan_contact} SIP/2.0
Via: SIP/2.0/UDP {TRUNK}:5060;branch=z9hG4bKnotify{cseq}
Max-Forwards: 70
From: <{call.trunk_contact}>;tag={call.trunk_tag}
To: <sip:alice@{WAN_SBC}>;tag={call.wan_sbc_tag}
Call-ID: {call.wan_call_id}
CSeq: {cseq} NOTIFY
Event: {event}
Subscription-State: active;expires=60
Content-Type: message/sipfrag;version=2.0

SIP/2.0 100 Trying""",
        (TRUNK, 5060),
    )
    return requests(out, "NOTIFY", "lan")


def _phone_refer(net: Net, call: Dialog, cseq: int) -> Request:
    out = phone_request(net, call, "REFER", cseq, f"Refer-To: <sip:dave@{PHONE}:5090>")
    refer = requests(out, "REFER", "wan")[0]
    answer(net, "wan", refer, 202)
    return refer


def test_notify_from_the_transferee_names_the_refer_as_the_transferor_sent_it() -> None:
    net = Net()
    call, _, _ = place_call(net, "bob")
    phone_request(net, call, "INFO", 5)  # the phone's CSeq is ahead: the legs' REFER CSeqs differ
    refer = _phone_refer(net, call, 6)
    assert refer.cseq == (3, "REFER")
    notify = _trunk_notify(net, call, 2, "refer;id=3")[0]
    assert notify.get("event") == "refer;id=6"


def test_notify_ids_follow_each_refer_of_the_dialog() -> None:
    net = Net()
    call, _, _ = place_call(net, "bob")
    phone_request(net, call, "INFO", 10)
    first, second = _phone_refer(net, call, 11), _phone_refer(net, call, 12)
    assert (first.cseq[0], second.cseq[0]) == (3, 4)
    assert _trunk_notify(net, call, 2, "refer;id=4")[0].get("event") == "refer;id=12"
    assert _trunk_notify(net, call, 3, "refer;id=3")[0].get("event") == "refer;id=11"
    assert _trunk_notify(net, call, 4, "refer")[0].get("event") == "refer"  # no id: the first REFER


def test_notify_from_the_phone_names_the_refer_as_the_trunk_sent_it() -> None:
    net = Net()
    call, _, _ = place_call(net, "bob")
    out = trunk_request(net, call, "REFER", 9, f"Refer-To: <sip:dave@{TRUNK}:5099>")
    refer = requests(out, "REFER", "lan")[0]
    answer(net, "lan", refer, 202, source=(PHONE, PHONE_PORT))
    out = phone_request(
        net,
        call,
        "NOTIFY",
        2,
        f"Event: refer;id={refer.cseq[0]}\nSubscription-State: terminated;reason=noresource\n"
        "Content-Type: message/sipfrag;version=2.0",
        body="SIP/2.0 200 OK",
    )
    assert requests(out, "NOTIFY", "wan")[0].get("event") == "refer;id=9"


def test_the_refer_ids_of_a_call_survive_a_restart() -> None:
    first = Net()
    call, _, _ = place_call(first, "bob")
    phone_request(first, call, "INFO", 5)
    _phone_refer(first, call, 6)
    (live,) = first.core.live_calls()
    record = json.loads(json.dumps(encode_call(live, MediaLedger(first.core.media.dataplane))))
    second = Net()
    second.core.adopt_calls([decode_call(record, second.core.realms, second.core.media.origin_user).call])
    assert _trunk_notify(second, call, 2, "refer;id=3")[0].get("event") == "refer;id=6"
