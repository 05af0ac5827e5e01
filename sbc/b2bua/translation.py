"""Leg translation: one leg's message built from the other leg's, and nothing of one side on the other.

Every message a leg sees is built from that leg's own dialog state (Call-ID, tags, CSeq, Via, Route,
Contact); from the other leg's message only what may cross is copied (`sbc.policy.topology`): listed
headers, digest credentials, transfer headers said again for the receiving side, and the body (SDP
through the media policy). Every address of the sending side is then scrubbed, and the header rules
of the realms run: inbound on a copy of what arrived, outbound last on what is sent.
"""

from __future__ import annotations

from typing import TypeVar

from sbc.b2bua.call import Call, Leg
from sbc.b2bua.media import MediaError
from sbc.b2bua.reasons import reason as reason_phrase
from sbc.b2bua.state import CoreState
from sbc.b2bua.transfer import DialogIds, MappedDialog, TargetRewriter
from sbc.config.model import MessageDirection, Realm
from sbc.policy.header_rules import HeaderRule, HeaderRules, apply_rules
from sbc.policy.topology import AddressScrubber
from sbc.sip.errors import RemoteProtocolError
from sbc.sip.message import HeaderField, Message, Request, Response, make_response
from sbc.sip.uri import NameAddr, Uri, format_host, host_address

__all__ = [
    "CREDENTIAL_HEADERS",
    "OFFERING_METHODS",
    "SDP_TYPE",
    "TARGET_REFRESH",
    "LegTranslator",
    "display_safe",
    "learn_remote",
    "rehost",
]

SDP_TYPE = "application/sdp"
SIPFRAG_TYPE = "message/sipfrag"
# Requests that refresh the remote target of a dialog (RFC 3261 §12.2, RFC 3311 §5.1).
TARGET_REFRESH = frozenset({"INVITE", "UPDATE", "NOTIFY", "SUBSCRIBE", "REFER"})
# Requests whose SDP is an offer (RFC 3264, RFC 3311); a failure of the request withdraws it.
OFFERING_METHODS = frozenset({"INVITE", "UPDATE"})
_TRANSFER_HEADERS = frozenset({"refer-to", "referred-by", "replaces"})
# Digest credentials (RFC 3261 §22): they cross unchanged, see LegTranslator.pass_credentials.
CREDENTIAL_HEADERS = ("authorization", "proxy-authorization")
M = TypeVar("M", Request, Response)


class LegTranslator:
    def __init__(self, state: CoreState) -> None:
        self.state = state

    # ---- what each side hides --------------------------------------------------------------------
    def scrubber(self, leg: Leg) -> AddressScrubber:
        """Addresses of a leg's side that must not appear on the other side."""
        if leg.scrubber is None:
            leg.scrubber = self._new_scrubber(leg)
        return leg.scrubber

    def _new_scrubber(self, leg: Leg) -> AddressScrubber:
        realm = self.state.realms[leg.realm]
        hidden = {realm.address, realm.public_address, realm.media.address}
        for host in (leg.destination.host, _uri_host(leg.remote_target)):
            addr = host_address(host) if host else None
            if addr is not None:
                hidden.add(addr)
        return AddressScrubber(realm.networks, frozenset(hidden))

    # ---- requests and responses ------------------------------------------------------------------
    def build_request(
        self,
        call: Call,
        leg: Leg,
        method: str,
        source: Request | None,
        now: float,
        *,
        cseq: int | None = None,
    ) -> Request | None:
        """A request on `leg` from its dialog state, carrying what may cross from `source` (other leg).
        None when the call was ended instead (its SDP was refused)."""
        state = self.state
        realm = state.realms[leg.realm]
        if cseq is None:
            leg.local_cseq += 1
            cseq = leg.local_cseq
        target = leg.target()  # through the dialog's route set (RFC 3261 §12.2.1.1)
        headers = [
            HeaderField("Via", state.via(realm, leg.transport)),
            HeaderField("Max-Forwards", "70"),
            HeaderField("From", leg.local_header()),
            HeaderField("To", leg.remote_header()),
            HeaderField("Call-ID", leg.call_id),
            HeaderField("CSeq", f"{cseq} {method}"),
        ]
        headers.extend(HeaderField("Route", r) for r in target.routes)
        if method in ("INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"):
            headers.append(HeaderField("Contact", leg.contact))
        request = Request(method, target.request_uri, headers)
        other = call.other(leg)
        if source is not None:
            state.header_policy[leg.realm].copy_headers(source, request)
            self._translate_transfer_headers(other, leg, request)
            if not self._carry_body(call, other, source, request):
                return None
            self.pass_credentials(source, request, state.realms[other.realm], self.scrubber(other))
        request.add("User-Agent", state.user_agent(leg.realm))
        if not request.has("content-length"):
            request.add("Content-Length", str(len(request.body)))
        self.scrubber(other).scrub_message(request, realm.public_address, skip=CREDENTIAL_HEADERS)
        self._outbound_rules(call, leg, request)
        return request

    def relay_response(
        self,
        call: Call,
        from_leg: Leg,
        to_leg: Leg,
        to_request: Request,
        resp: Response,
        now: float,
        *,
        status: int | None = None,
    ) -> Response | None:
        """The response for `to_leg`'s request, built from its own request plus what may cross."""
        state = self.state
        resp = self.inbound_rules(call, from_leg, resp)
        code = status if status is not None else resp.status
        reason = resp.reason if status is None or status == resp.status else reason_phrase(code)
        out = make_response(to_request, code, reason, to_tag=to_leg.local_tag if to_leg.index == 0 else None)
        if 100 < code < 300 and to_request is call.initial_request:
            # RFC 3261 §12.1.1: as the UAS of the request that sets up the dialog, copy its Record-Route
            # into the 18x/2xx, values and order unchanged: the caller side learns the same route set.
            for value in to_request.get_all("record-route"):
                out.add("Record-Route", value)
        if code < 300 and code != 100 and to_request.method in TARGET_REFRESH:
            out.add("Contact", to_leg.contact)
        if 180 <= code < 200 and resp.get("rseq") is not None:
            out.add("RSeq", resp.get("rseq") or "")
        for name in ("www-authenticate", "proxy-authenticate") if code in (401, 407) else ():
            for value in resp.get_all(name):
                out.add(name, value)
        state.header_policy[to_leg.realm].copy_headers(resp, out)
        if not self._carry_body(call, from_leg, resp, out):
            return None
        out.add("Server", state.user_agent(to_leg.realm))
        self.scrubber(from_leg).scrub_message(
            out,
            state.realms[to_leg.realm].public_address,
            skip=("via", "from", "to", "call-id", "cseq", "record-route"),  # all the receiver's own
        )
        self._outbound_rules(call, to_leg, out)
        return out

    def pass_credentials(self, source: Request, target: Request, from_realm: Realm, hidden: AddressScrubber) -> None:
        """Copy digest credentials answering the far side's challenge (401/407), unchanged: one changed
        byte and they fail. The one inside address they may carry is the SBC's own in the sender's
        realm (the digest-uri of a phone that addresses the SBC by IP); credentials that name any
        other inside address are dropped, the far side challenges again and the phone sees it."""
        own = {from_realm.address, from_realm.public_address}
        for name in CREDENTIAL_HEADERS:
            for value in source.get_all(name):
                leaked = hidden.hidden_in(value) - own
                if leaked:
                    addresses = sorted(map(str, leaked))
                    self.state.log("warning", "sip.credentials_dropped", realm=from_realm.name, header=name,
                                   reason="they name an inside address", addresses=addresses)  # fmt: skip
                    continue
                target.add(name, value)

    def _translate_transfer_headers(self, from_leg: Leg, to_leg: Leg, request: Request) -> None:
        """Refer-To, Referred-By and Replaces name the sender's side: say the same for the receiver's."""
        if not any(h.key in _TRANSFER_HEADERS for h in request.headers):
            return
        realm = self.state.realms[to_leg.realm]
        rewriter = TargetRewriter(
            self.scrubber(from_leg),
            str(realm.public_address),
            self.state.port(realm, to_leg.transport),
            lambda ids: self._other_leg_of(from_leg.realm, ids, to_leg.realm),
        )
        for h in list(request.headers):
            if h.key == "refer-to":
                h.value, h.raw = rewriter.refer_to(h.value), None
            elif h.key == "referred-by":
                h.value, h.raw = rewriter.referred_by(h.value), None
            elif h.key == "replaces":
                mapped = rewriter.replaces(h.value)
                if mapped is None:
                    request.headers.remove(h)
                else:
                    h.value, h.raw = mapped, None

    def _other_leg_of(self, realm: str, ids: DialogIds, target_realm: str) -> MappedDialog | None:
        """The dialog `ids` (as seen from `realm`) as its other leg knows it (RFC 3891 matching)."""
        found = self.state.dialogs.get((realm, ids.call_id, ids.to_tag))
        if found is None or found[1].remote_tag != ids.from_tag:
            return None
        call, leg = found
        other = call.other(leg)
        if other.remote_tag is None:
            return None
        mapped = DialogIds(other.call_id, other.remote_tag, other.local_tag, ids.early_only)
        return MappedDialog(mapped, other.remote_target if other.realm == target_realm else None)

    def _carry_body(self, call: Call, source_leg: Leg, source: Message, target: Message) -> bool:
        """Copy the body across, rewriting SDP through the media policy. False if the call was ended."""
        if not source.body:
            return True
        state = self.state
        ctype = (source.get("content-type") or "").split(";")[0].strip().lower()
        if ctype == SDP_TYPE:
            try:
                if isinstance(target, Request) and target.method in OFFERING_METHODS:
                    # An offer: once the call has media, it waits for its answer (RFC 3264 §8).
                    target.body = state.media.offer(call.media, source_leg.index, source.body)
                else:
                    target.body = state.media.process(call.media, source_leg.index, source.body)
            except MediaError as exc:
                state.log("warning", "media.rejected", call, reason=str(exc), status=exc.status)
                state.fail_call(call, exc.status, str(exc))
                return False
        elif ctype == SIPFRAG_TYPE:
            # A fragment of a SIP message (RFC 3420; the progress report in a NOTIFY for a REFER):
            # its headers name the sender's side like any header does.
            text = source.body.decode("utf-8", "surrogateescape")
            replacement = state.realms[call.other(source_leg).realm].public_address
            target.body = self.scrubber(source_leg).scrub_text(text, replacement).encode("utf-8", "surrogateescape")
        else:
            target.body = source.body
        if not target.has("content-type"):
            target.add("Content-Type", source.get("content-type") or "application/octet-stream")
        return True

    # ---- header rules ----------------------------------------------------------------------------
    def inbound_rules(self, call: Call, from_leg: Leg, msg: M) -> M:
        """`msg` as the inbound rules of its realm leave it. They edit a copy: the original still
        answers its sender; the other leg's message is built from the copy (topology hiding after)."""
        return self.inbound_copy(from_leg.realm, call.route, call.store, msg, call)

    def inbound_copy(self, realm: str, route: str, store: dict[str, str], msg: M, call: Call | None = None) -> M:
        rules = self.state.config.header_rules
        if not rules or not _rules_bound(rules, realm, route, MessageDirection.INBOUND):
            return msg
        edited = msg.copy()
        self._run_rules(call, realm, route, store, MessageDirection.INBOUND, edited)
        return edited

    def _outbound_rules(self, call: Call, to_leg: Leg, msg: Message) -> None:
        """The last edit of a message built for `to_leg`, after topology hiding, before it is sent."""
        if self.state.config.header_rules:
            self._run_rules(call, to_leg.realm, call.route, call.store, MessageDirection.OUTBOUND, msg)

    def _run_rules(
        self,
        call: Call | None,
        realm: str,
        route: str,
        store: dict[str, str],
        direction: MessageDirection,
        msg: Message,
    ) -> None:
        applied = apply_rules(
            self.state.config.header_rules, msg, realm=realm, route=route, direction=direction, store=store
        )
        if applied:
            self.state.log(
                "debug", "header_rules.applied", call, realm=realm, direction=direction.value, actions=applied
            )


def learn_remote(leg: Leg, resp: Response) -> None:
    """What a response on `leg` tells of its far side: remote tag, target and route set (§12.1.2)."""
    tag = resp.to.tag
    if tag and tag != leg.remote_tag:
        leg.remote_tag = tag
    contacts = resp.contacts
    if contacts:
        target = str(contacts[0].uri)
        if target != leg.remote_target:
            leg.remote_target = target
            leg.scrubber = None  # the hidden set includes the remote target's host
    rr = resp.values("record-route")
    if rr:
        leg.route_set = list(reversed(rr))


def _rules_bound(rules: tuple[HeaderRule, ...], realm: str, route: str, direction: MessageDirection) -> bool:
    if isinstance(rules, HeaderRules):
        return bool(rules.bound_to(realm, route, direction))
    return any(r.binds(realm, route, direction) for r in rules)


def rehost(uri: Uri, scrubber: AddressScrubber, host: str, port: int | None) -> Uri:
    """Keep a URI's user and domain, but never an address of the realm it came from."""
    addr = uri.address
    if uri.scheme == "tel" or (addr is not None and not scrubber.is_hidden(addr)):
        return Uri(uri.scheme, uri.user, None, uri.host, uri.port, ())
    if addr is None:
        return Uri(uri.scheme, uri.user, None, uri.host, None, ())
    return Uri(uri.scheme, uri.user, None, format_host(host), port, ())


def display_safe(na: NameAddr) -> str:
    """A From/To value without its parameters (the tag is the leg's own)."""
    return str(NameAddr(na.display, na.uri, (), True))


def _uri_host(uri: str) -> str | None:
    try:
        return Uri.parse(uri).host
    except RemoteProtocolError:
        return None
