"""A conversation harness for the sans-IO core: literal SIP in, the messages the core sends out.

`Net` holds a `Core` on a two-realm config (LAN 192.0.2.0/24 with the SBC at .1, WAN with the SBC at
198.51.100.1 and the trunk at 203.0.113.10), a `FakeDataplane` and a clock the test moves. Messages
are written with "\\n" line ends and sent with `Net.send`; what the core transmits comes back parsed,
with the realm, destination and clock time, in order. `Net.run` moves the clock through every
deadline the core names (retransmissions, Timer B, the session timer), as the shell's loop would.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from dataplane.fake import FakeDataplane
from sbc.b2bua.core import Core
from sbc.b2bua.outputs import CallEnded, LogEvent, SendSip
from sbc.config.loader import load_config_text
from sbc.sip.message import Request, Response, parse_datagram
from sbc.sip.transaction import PeerAddress

LAN_SBC = "192.0.2.1"
PHONE = "192.0.2.10"
PHONE_PORT = 5062
WAN_SBC = "198.51.100.1"
TRUNK = "203.0.113.10"

CONFIG = """
sbc: {{user_agent: TestSBC, state_dir: /nonexistent/sbc-unit}}
timers: {{t1_ms: 500, t2_ms: 4000, t4_ms: 5000, session_expires_s: 1800, min_se_s: 90}}
realms:
  - name: lan
    trusted: true
    address: {lan_sbc}
    networks: [192.0.2.0/24]
    listen: [{{transport: udp, port: 5060}}]
    media: {{address: {lan_sbc}, ports: 30000-30099}}
  - name: wan
    address: {wan_sbc}
    listen: [{{transport: udp, port: 5060}}]
    peer: {{host: {trunk}, port: 5060, transport: udp}}
    registrar: {{host: {trunk}, port: 5060, transport: udp}}
    media: {{address: {wan_sbc}, ports: 31000-31099}}
routes:
  - {{name: out, from: lan, to: wan}}
  - {{name: in, from: wan, to: lan, use_registrations: true}}
header_rules: {rules}
"""


# `Net.run` ticks at most this many times: a core that keeps asking to be woken at the same instant
# would otherwise loop forever.
MAX_TICKS_PER_RUN = 10_000


@dataclass
class Sent:
    realm: str
    destination: PeerAddress
    message: Request | Response
    at: float = 0.0  # the clock when the core sent it
    data: bytes = b""  # as sent, to compare retransmissions byte for byte


@dataclass
class Net:
    rules: str = "[]"  # the config's header_rules, YAML
    core: Core = field(init=False)
    now: float = 0.0
    logs: list[LogEvent] = field(default_factory=list)
    records: list[dict[str, object]] = field(default_factory=list)  # call records (CallEnded), in order

    def __post_init__(self) -> None:
        counter = itertools.count(1)
        config = CONFIG.format(lan_sbc=LAN_SBC, wan_sbc=WAN_SBC, trunk=TRUNK, rules=self.rules)
        self.core = Core(
            load_config_text(config, "unit-test"),
            FakeDataplane(),
            token=lambda n: format(next(counter), "x").rjust(2 * n, "0"),
        )

    def send(self, realm: str, text: str, source: tuple[str, int]) -> list[Sent]:
        """Send `text` (lines end with "\\n"; a blank line starts the body, Content-Length is added)."""
        head, blank, body = text.strip("\n").partition("\n\n")
        if blank:
            payload = (body.replace("\n", "\r\n") + "\r\n").encode()
            head += f"\nContent-Length: {len(payload)}"
        else:
            payload = b""
        data = (head.replace("\n", "\r\n") + "\r\n\r\n").encode() + payload
        return self.deliver(realm, data, source)

    def deliver(self, realm: str, data: bytes, source: tuple[str, int]) -> list[Sent]:
        """Hand the core a datagram as it came off the wire (e.g. one the core itself sent)."""
        return self._collect(self.core.datagram_received(realm, data, PeerAddress("udp", *source), self.now))

    def tick(self, seconds: float) -> list[Sent]:
        """One tick, `seconds` later: only what is due then (a retransmission timer fires once)."""
        self.now += seconds
        return self._collect(self.core.tick(self.now))

    def run(self, seconds: float) -> list[Sent]:
        """Move the clock `seconds` ahead, ticking at every deadline the core names on the way."""
        end = self.now + seconds
        sent: list[Sent] = []
        for _ in range(MAX_TICKS_PER_RUN):
            deadline = self.core.next_deadline()
            if deadline is None or deadline > end:
                break
            self.now = max(self.now, deadline)
            sent += self._collect(self.core.tick(self.now))
        else:
            raise AssertionError(f"the core still had deadlines due after {MAX_TICKS_PER_RUN} ticks")
        self.now = end
        return sent + self._collect(self.core.tick(end))

    def _collect(self, outputs: Sequence[object]) -> list[Sent]:
        sent: list[Sent] = []
        for out in outputs:
            if isinstance(out, SendSip):
                sent.append(Sent(out.realm, out.destination, parse_datagram(out.data), self.now, out.data))
            elif isinstance(out, LogEvent):
                self.logs.append(out)
            elif isinstance(out, CallEnded):
                self.records.append(out.record)
        return sent

    def logged(self, event: str) -> list[LogEvent]:
        return [log for log in self.logs if log.event == event]


def requests(sent: list[Sent], method: str, realm: str | None = None) -> list[Request]:
    return [
        s.message
        for s in sent
        if isinstance(s.message, Request) and s.message.method == method and (realm is None or s.realm == realm)
    ]


def responses(sent: list[Sent], status: int, realm: str | None = None) -> list[Response]:
    return [
        s.message
        for s in sent
        if isinstance(s.message, Response) and s.message.status == status and (realm is None or s.realm == realm)
    ]


@dataclass
class Dialog:
    """One established call as each side sees it."""

    lan_call_id: str
    phone_tag: str
    lan_sbc_tag: str  # the SBC's tag on the phone's leg
    wan_call_id: str
    wan_sbc_tag: str  # the SBC's From tag on the trunk's leg
    trunk_tag: str
    lan_contact: str  # the SBC's Contact on the phone's leg
    wan_contact: str  # the SBC's Contact on the trunk's leg
    trunk_contact: str


def phone_invite(net: Net, name: str, headers: str = "", cseq: int = 1) -> list[Sent]:
    """The phone's INVITE for `name` (Call-ID `<name>-call@PHONE`, From tag `<name>-ptag`), no SDP."""
    extra = f"\n{headers}" if headers else ""
    return net.send(
        "lan",
        f"""INVITE sip:{name}@{LAN_SBC} SIP/2.0
Via: SIP/2.0/UDP {PHONE}:{PHONE_PORT};branch=z9hG4bK{name}{cseq}
Max-Forwards: 70
From: <sip:alice@{PHONE}>;tag={name}-ptag
To: <sip:{name}@{LAN_SBC}>
Call-ID: {name}-call@{PHONE}
CSeq: {cseq} INVITE
Contact: <sip:alice@{PHONE}:{PHONE_PORT}>{extra}
Content-Length: 0""",
        (PHONE, PHONE_PORT),
    )


def place_call(
    net: Net, name: str, *, invite_headers: str = "", answer_headers: str = "", trunk_port: int = 5060
) -> tuple[Dialog, list[Sent], list[Sent]]:
    """Phone calls `name` through the SBC, the trunk answers, the phone ACKs. Returns the dialog, what
    the core sent for the INVITE, and what it sent for the 200."""
    call_id = f"{name}-call@{PHONE}"
    phone_tag = f"{name}-ptag"
    out = phone_invite(net, name, invite_headers)
    invite = requests(out, "INVITE", "wan")[0]
    trunk_contact = f"sip:{name}@{TRUNK}:{trunk_port}"
    answer_extra = f"\n{answer_headers}" if answer_headers else ""
    vias = "\n".join(f"Via: {v}" for v in invite.get_all("via"))
    answered = net.send(
        "wan",
        f"""SIP/2.0 200 OK
{vias}
From: {invite.get("from")}
To: {invite.get("to")};tag={name}-ttag
Call-ID: {invite.call_id}
CSeq: 1 INVITE
Contact: <{trunk_contact}>{answer_extra}
Content-Length: 0""",
        (TRUNK, trunk_port),
    )
    ok = responses(answered, 200, "lan")[0]
    lan_sbc_tag = ok.to.tag or ""
    phone_ack_2xx(net, name, ok)
    dialog = Dialog(
        lan_call_id=call_id,
        phone_tag=phone_tag,
        lan_sbc_tag=lan_sbc_tag,
        wan_call_id=invite.call_id,
        wan_sbc_tag=invite.from_.tag or "",
        trunk_tag=f"{name}-ttag",
        lan_contact=str(ok.contacts[0].uri),
        wan_contact=str(invite.contacts[0].uri),
        trunk_contact=trunk_contact,
    )
    return dialog, out, answered


def phone_ack_2xx(net: Net, name: str, ok: Response, cseq: int = 1) -> list[Sent]:
    """The phone's ACK for the SBC's 2xx to its INVITE `name`: a request of its own, to the Contact."""
    return net.send(
        "lan",
        f"""ACK {ok.contacts[0].uri} SIP/2.0
Via: SIP/2.0/UDP {PHONE}:{PHONE_PORT};branch=z9hG4bK{name}ack{cseq}
Max-Forwards: 70
From: <sip:alice@{PHONE}>;tag={name}-ptag
To: <sip:{name}@{LAN_SBC}>;tag={ok.to.tag}
Call-ID: {name}-call@{PHONE}
CSeq: {cseq} ACK
Content-Length: 0""",
        (PHONE, PHONE_PORT),
    )


def phone_ack_failure(net: Net, name: str, final: Response, cseq: int = 1) -> list[Sent]:
    """The phone's ACK for a non-2xx final answer to its INVITE `name`: part of the INVITE's own
    transaction, so it carries the INVITE's branch (RFC 3261 §17.1.1.3)."""
    return net.send(
        "lan",
        f"""ACK sip:{name}@{LAN_SBC} SIP/2.0
Via: SIP/2.0/UDP {PHONE}:{PHONE_PORT};branch=z9hG4bK{name}{cseq}
Max-Forwards: 70
From: <sip:alice@{PHONE}>;tag={name}-ptag
To: <sip:{name}@{LAN_SBC}>;tag={final.to.tag}
Call-ID: {name}-call@{PHONE}
CSeq: {cseq} ACK
Content-Length: 0""",
        (PHONE, PHONE_PORT),
    )


def phone_cancel(net: Net, name: str, cseq: int = 1) -> list[Sent]:
    """The phone CANCELs its INVITE `name` (same branch, Request-URI and CSeq number, §9.1)."""
    return net.send(
        "lan",
        f"""CANCEL sip:{name}@{LAN_SBC} SIP/2.0
Via: SIP/2.0/UDP {PHONE}:{PHONE_PORT};branch=z9hG4bK{name}{cseq}
Max-Forwards: 70
From: <sip:alice@{PHONE}>;tag={name}-ptag
To: <sip:{name}@{LAN_SBC}>
Call-ID: {name}-call@{PHONE}
CSeq: {cseq} CANCEL
Content-Length: 0""",
        (PHONE, PHONE_PORT),
    )


def phone_request(net: Net, d: Dialog, method: str, cseq: int, headers: str = "", body: str = "") -> list[Sent]:
    extra = f"\n{headers}" if headers else ""
    text = f"""{method} {d.lan_contact} SIP/2.0
Via: SIP/2.0/UDP {PHONE}:{PHONE_PORT};branch=z9hG4bK{d.phone_tag}{method}{cseq}
Max-Forwards: 70
From: <sip:alice@{PHONE}>;tag={d.phone_tag}
To: <sip:x@{LAN_SBC}>;tag={d.lan_sbc_tag}
Call-ID: {d.lan_call_id}
CSeq: {cseq} {method}
Contact: <sip:alice@{PHONE}:{PHONE_PORT}>{extra}"""
    text += f"\n\n{body}" if body else "\nContent-Length: 0"
    return net.send("lan", text, (PHONE, PHONE_PORT))


def trunk_request(net: Net, d: Dialog, method: str, cseq: int, headers: str = "") -> list[Sent]:
    extra = f"\n{headers}" if headers else ""
    return net.send(
        "wan",
        f"""{method} {d.wan_contact} SIP/2.0
Via: SIP/2.0/UDP {TRUNK}:5060;branch=z9hG4bK{d.trunk_tag}{method}{cseq}
Max-Forwards: 70
From: <{d.trunk_contact}>;tag={d.trunk_tag}
To: <sip:alice@{WAN_SBC}>;tag={d.wan_sbc_tag}
Call-ID: {d.wan_call_id}
CSeq: {cseq} {method}
Contact: <{d.trunk_contact}>{extra}
Content-Length: 0""",
        (TRUNK, 5060),
    )


def answer(
    net: Net,
    realm: str,
    request: Request,
    status: int,
    headers: str = "",
    source: tuple[str, int] = (TRUNK, 5060),
    *,
    to_tag: str | None = None,
) -> list[Sent]:
    """Answer a request the core sent, from its recipient (with `to_tag` added to its To)."""
    vias = "\n".join(f"Via: {v}" for v in request.get_all("via"))
    extra = f"\n{headers}" if headers else ""
    tag = f";tag={to_tag}" if to_tag else ""
    return net.send(
        realm,
        f"""SIP/2.0 {status} Whatever
{vias}
From: {request.get("from")}
To: {request.get("to")}{tag}
Call-ID: {request.call_id}
CSeq: {request.get("cseq")}{extra}
Content-Length: 0""",
        source,
    )
