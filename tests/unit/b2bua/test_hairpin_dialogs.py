"""The branch's own call through a record-routing cloud PBX (issue 11 item 1): phone A -> SBC -> PBX ->
SBC -> phone B, both calls' dialogs routed through the PBX (RFC 3261 §12.1.1, §12.2), and in-dialog
requests from either side reaching the other phone (no 482 from the SBC's loop check, no 404 or
dropped ACK at the PBX)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from sbc.sip.message import Request, Response
from tests.unit.b2bua.record_routing_pbx import RECORD_ROUTE, RecordRoutingPbx
from tests.unit.b2bua.sip_peers import LAN_SBC, PHONE, PHONE_PORT, WAN_SBC, Net, Sent

PHONE_B = "192.0.2.20"
PHONE_B_PORT = 5064


@dataclass
class Phone:
    """One phone's side of its single dialog with the SBC (it never record-routes)."""

    net: Net
    pbx: RecordRoutingPbx
    user: str
    host: str
    port: int
    call_id: str = ""
    local_tag: str = ""
    remote_tag: str = ""
    local_party: str = ""
    remote_party: str = ""
    remote_target: str = ""
    cseq: int = 0
    branch: int = 0

    def send(self, text: str) -> list[Sent]:
        """Send to the SBC; return what reached the phones after the PBX did its part."""
        return self.pbx.pump(self.net.send("lan", text, (self.host, self.port)))

    def _via(self) -> str:
        self.branch += 1
        return f"SIP/2.0/UDP {self.host}:{self.port};branch=z9hG4bK{self.user}{self.branch}"

    def register(self) -> list[Sent]:
        return self.send(f"""REGISTER sip:branch.example SIP/2.0
Via: {self._via()}
Max-Forwards: 70
From: <sip:{self.user}@branch.example>;tag={self.user}-reg
To: <sip:{self.user}@branch.example>
Call-ID: {self.user}-reg@{self.host}
CSeq: 1 REGISTER
Contact: <sip:{self.user}@{self.host}:{self.port}>
Expires: 3600
Content-Length: 0""")

    def invite(self, callee: str) -> list[Sent]:
        self.call_id, self.local_tag, self.cseq = f"{self.user}-call@{self.host}", f"{self.user}-tag", 1
        self.local_party, self.remote_party = f"<sip:{self.user}@{self.host}>", f"<sip:{callee}@{LAN_SBC}>"
        return self.send(f"""INVITE sip:{callee}@{LAN_SBC} SIP/2.0
Via: {self._via()}
Max-Forwards: 70
From: {self.local_party};tag={self.local_tag}
To: {self.remote_party}
Call-ID: {self.call_id}
CSeq: 1 INVITE
Contact: <sip:{self.user}@{self.host}:{self.port}>
Content-Length: 0""")

    def answered(self, ok: Response) -> None:
        self.remote_tag = ok.to.tag or ""
        self.remote_target = str(ok.contacts[0].uri)

    def ringing_with(self, invite: Request) -> None:
        """Take the dialog an INVITE from the SBC offers."""
        self.call_id, self.local_tag = invite.call_id, f"{self.user}-tag"
        self.remote_tag = invite.from_.tag or ""
        self.local_party, self.remote_party = str(invite.to), str(invite.from_.with_tag(None))
        self.remote_target = str(invite.contacts[0].uri)
        self.cseq = 0

    def in_dialog(self, method: str, cseq: int | None = None) -> list[Sent]:
        if cseq is None:
            self.cseq += 1
        contact = f"\nContact: <sip:{self.user}@{self.host}:{self.port}>" if method == "INVITE" else ""
        return self.send(f"""{method} {self.remote_target} SIP/2.0
Via: {self._via()}
Max-Forwards: 70
From: {self.local_party};tag={self.local_tag}
To: {self.remote_party};tag={self.remote_tag}
Call-ID: {self.call_id}
CSeq: {cseq if cseq is not None else self.cseq} {method}{contact}
Content-Length: 0""")

    def respond(self, request: Request, status: int) -> list[Sent]:
        vias = "\n".join(f"Via: {v}" for v in request.get_all("via"))
        to = request.get("to") or ""
        if request.to.tag is None:
            to += f";tag={self.local_tag}"
        contact = f"\nContact: <sip:{self.user}@{self.host}:{self.port}>" if request.method == "INVITE" else ""
        return self.send(f"""SIP/2.0 {status} OK
{vias}
From: {request.get("from")}
To: {to}
Call-ID: {request.call_id}
CSeq: {request.get("cseq")}{contact}
Content-Length: 0""")


def _for(sent: list[Sent], phone: Phone, kind: type[Request] | type[Response], what: str | int) -> list[Sent]:
    return [
        s
        for s in sent
        if s.realm == "lan"
        and (s.destination.host, s.destination.port) == (phone.host, phone.port)
        and isinstance(s.message, kind)
        and (s.message.method == what if isinstance(s.message, Request) else s.message.status == what)
    ]


def _request_to(sent: list[Sent], phone: Phone, method: str) -> Request:
    found = _for(sent, phone, Request, method)
    assert len(found) == 1, f"{phone.user} got {len(found)} {method}: {[s.message.start_line() for s in sent]}"
    message = found[0].message
    assert isinstance(message, Request)
    return message


def _response_to(sent: list[Sent], phone: Phone, status: int) -> Response:
    found = _for(sent, phone, Response, status)
    assert len(found) == 1, f"{phone.user} got {len(found)} {status}: {[s.message.start_line() for s in sent]}"
    message = found[0].message
    assert isinstance(message, Response)
    return message


def _hairpin() -> tuple[Net, RecordRoutingPbx, Phone, Phone]:
    """Bob registers through the SBC; Alice calls bob; the PBX sends the call back to the SBC."""
    net = Net()
    pbx = RecordRoutingPbx(net)
    alice = Phone(net, pbx, "alice", PHONE, PHONE_PORT)
    bob = Phone(net, pbx, "bob", PHONE_B, PHONE_B_PORT)
    _response_to(bob.register(), bob, 200)
    assert "bob" in pbx.location
    invite = _request_to(alice.invite("bob"), bob, "INVITE")
    bob.ringing_with(invite)
    ok = _response_to(bob.respond(invite, 200), alice, 200)
    alice.answered(ok)
    _request_to(alice.in_dialog("ACK", cseq=1), bob, "ACK")
    return net, pbx, alice, bob


def _no_errors(net: Net, pbx: RecordRoutingPbx) -> None:
    assert not pbx.refused, [(r.start_line(), s) for r, s in pbx.refused]
    assert not pbx.dropped, [r.start_line() for r in pbx.dropped]
    assert net.core.counters.loops_detected == 0


def test_the_answer_to_an_invite_carries_its_record_route_and_each_leg_its_own_contact() -> None:
    net, pbx, _, _ = _hairpin()
    outgoing_invite = next(r for r in pbx.forwarded if r.method == "INVITE")  # the SBC's call 1, via the PBX
    answer_of_call_2 = next(r for r in pbx.relayed if r.status == 200 and r.cseq[1] == "INVITE")
    assert answer_of_call_2.values("record-route") == [RECORD_ROUTE]  # RFC 3261 §12.1.1
    own_contacts = {str(outgoing_invite.contacts[0].uri), str(answer_of_call_2.contacts[0].uri)}
    assert len(own_contacts) == 2 and all(WAN_SBC in c for c in own_contacts)
    _no_errors(net, pbx)


def test_in_dialog_requests_of_the_outgoing_leg_follow_the_learned_route_set() -> None:
    net, pbx, alice, bob = _hairpin()
    forwarded_ack = [r for r in pbx.forwarded if r.method == "ACK"]
    assert len(forwarded_ack) == 1  # the SBC's ACK for call 1 went to the PBX, with its Route
    hold = _request_to(alice.in_dialog("INVITE"), bob, "INVITE")
    reinvite_via_pbx = [r for r in pbx.forwarded if r.method == "INVITE"][-1]
    assert reinvite_via_pbx.uri.startswith("sip:") and WAN_SBC in reinvite_via_pbx.uri  # R-URI: the remote target
    assert not reinvite_via_pbx.values("route")  # the PBX consumed its own Route
    _response_to(bob.respond(hold, 200), alice, 200)
    _request_to(alice.in_dialog("ACK", cseq=alice.cseq), bob, "ACK")
    _no_errors(net, pbx)


def test_reinvite_from_the_called_phone_reaches_the_caller() -> None:
    net, pbx, alice, bob = _hairpin()
    hold = _request_to(bob.in_dialog("INVITE"), alice, "INVITE")
    _response_to(alice.respond(hold, 200), bob, 200)
    _request_to(bob.in_dialog("ACK", cseq=bob.cseq), alice, "ACK")
    _no_errors(net, pbx)


@pytest.mark.parametrize("who", ["caller", "callee"])
def test_bye_from_either_phone_reaches_the_other(who: str) -> None:
    net, pbx, alice, bob = _hairpin()
    sender, receiver = (alice, bob) if who == "caller" else (bob, alice)
    out = sender.in_dialog("BYE")
    _response_to(out, sender, 200)
    bye = _request_to(out, receiver, "BYE")
    assert not receiver.respond(bye, 200)  # the SBC's own BYE: its answer goes no further
    _no_errors(net, pbx)
    assert not net.core.calls
