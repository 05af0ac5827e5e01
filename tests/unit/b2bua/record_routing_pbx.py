"""A cloud PBX for conversation tests: a registrar and record-routing proxy on the WAN side.

It behaves like a stock Kamailio (`record_route`, `loose_route`, location lookup): REGISTERs are
answered 200 and remembered by user; a new INVITE is sent to the registered contact of its
Request-URI's user with `Record-Route: <sip:PBX;lr>` added; an in-dialog request is forwarded only
when its top Route names the PBX (loose routing, RFC 3261 §16.4): without one, an ACK is dropped
and anything else is answered 404, so an SBC that sends in-dialog requests around the PBX fails.
Responses go back along the Via. Everything the SBC sends to the PBX's address is handled here;
what the SBC sends elsewhere (the phones) is handed back to the test.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sbc.sip.message import Request, Response, make_response
from sbc.sip.uri import NameAddr, Uri
from tests.unit.b2bua.sip_peers import TRUNK, Net, Sent

PBX_PORT = 5060
RECORD_ROUTE = f"<sip:{TRUNK};lr>"
MAX_HOPS = 60  # a conversation that needs more than this is itself a loop


@dataclass
class RecordRoutingPbx:
    net: Net
    location: dict[str, str] = field(default_factory=dict)  # user -> registered contact URI
    forwarded: list[Request] = field(default_factory=list)  # requests the PBX sent on to the SBC
    refused: list[tuple[Request, int]] = field(default_factory=list)  # requests it answered with an error
    dropped: list[Request] = field(default_factory=list)
    relayed: list[Response] = field(default_factory=list)  # responses of the SBC it passed back
    _branch: int = 0

    def pump(self, sent: list[Sent]) -> list[Sent]:
        """Let the PBX handle everything in `sent` addressed to it, feed what it forwards back to the
        SBC, until nothing is left for it; return what the SBC sent to anyone else, in order."""
        elsewhere: list[Sent] = []
        queue = list(sent)
        for _ in range(MAX_HOPS):
            if not queue:
                return elsewhere
            item = queue.pop(0)
            if item.destination.host != TRUNK:
                elsewhere.append(item)
                continue
            message = item.message
            reply = self._request(message) if isinstance(message, Request) else self._response(message)
            if reply is not None:
                queue.extend(self._deliver(reply))
        raise AssertionError(f"more than {MAX_HOPS} hops between the SBC and the PBX")

    def _deliver(self, message: Request | Response) -> list[Sent]:
        return self.net.deliver("wan", message.serialize(), (TRUNK, PBX_PORT))

    def _request(self, request: Request) -> Request | Response | None:
        if request.method == "REGISTER":
            contact = request.contacts[0]
            self.location[request.to.uri.user or ""] = str(contact.uri)
            ok = make_response(request, 200, "OK", to_tag="pbx-reg")
            ok.add("Contact", f"{contact};expires=3600")
            return ok
        if request.to.tag is None and request.method == "INVITE":
            target = self.location.get(request.request_uri.user or "")
            if target is None:
                return self._refuse(request, 404)
            forwarded = self._forwarded(request, target)
            forwarded.add("Record-Route", RECORD_ROUTE, first=True)
            return forwarded
        routes = request.values("route")
        if not routes or NameAddr.parse(routes[0]).uri.host != TRUNK:
            if request.method == "ACK":
                self.dropped.append(request)
                return None
            return self._refuse(request, 404)
        forwarded = self._forwarded(request, request.uri)
        forwarded.set_values("Route", routes[1:])
        return forwarded

    def _forwarded(self, request: Request, target: str) -> Request:
        out = request.copy()
        out.set_uri(target)
        self._branch += 1
        out.add("Via", f"SIP/2.0/UDP {TRUNK}:{PBX_PORT};branch=z9hG4bKpbx{self._branch}", first=True)
        hops = out.get("max-forwards")
        out.set("Max-Forwards", str(int(hops) - 1 if hops is not None else 70))
        assert Uri.parse(target).host != TRUNK, "the PBX forwards only to the SBC in these tests"
        self.forwarded.append(out)
        return out

    def _refuse(self, request: Request, status: int) -> Response:
        self.refused.append((request, status))
        return make_response(request, status, "Not Found", to_tag="pbx-err")

    def _response(self, response: Response) -> Response | None:
        if response.status == 100:
            return None  # hop by hop (RFC 3261 §16.7 step 3)
        vias = response.values("via")
        if not vias or f"{TRUNK}:{PBX_PORT}" not in vias[0]:
            return None  # an answer to the PBX's own 404: nothing to pass on
        out = response.copy()
        out.set_values("Via", vias[1:])
        self.relayed.append(out)
        return out
