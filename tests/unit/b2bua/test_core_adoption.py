"""A core adopts calls another process saved (through their record, as the dialog state file holds
them) and relays in-dialog requests on them with each leg's own dialog state."""

from __future__ import annotations

import json

import pytest

from sbc.b2bua.dialog_codec import decode_call, encode_call
from sbc.b2bua.media_ledger import MediaLedger
from tests.unit.b2bua.sip_peers import TRUNK, Net, phone_request, place_call, requests, responses


def test_an_adopted_call_relays_bye_with_the_callee_legs_own_dialog() -> None:
    first = Net()
    dialog, _, _ = place_call(first, "adopt")
    (live,) = first.core.live_calls()
    record = json.loads(json.dumps(encode_call(live, MediaLedger(first.core.media.dataplane))))

    second = Net()
    saved = decode_call(record, second.core.realms, second.core.media.origin_user)
    assert not saved.anchors, "a call without SDP holds no anchors"
    second.core.adopt_calls([saved.call])
    assert [c.call_ref for c in second.core.live_calls()] == [live.call_ref]
    assert second.core.find_call(live.call_ref) is saved.call

    sent = phone_request(second, dialog, "BYE", 2)
    assert len(responses(sent, 200, "lan")) == 1
    (bye,) = requests(sent, "BYE", "wan")
    assert bye.call_id == dialog.wan_call_id
    assert bye.from_.tag == dialog.wan_sbc_tag
    assert bye.to.tag == dialog.trunk_tag
    assert bye.cseq == (2, "BYE"), "the callee leg's CSeq, continued"
    assert bye.uri == dialog.trunk_contact
    assert TRUNK in bye.uri
    assert second.core.live_calls() == []


def test_a_call_that_is_live_already_is_not_adopted_twice() -> None:
    net = Net()
    place_call(net, "twice")
    (live,) = net.core.live_calls()
    with pytest.raises(ValueError, match="live already"):
        net.core.adopt_calls([live])
