"""A conversation harness for the sans-IO core: literal SIP in, the messages the core sends out.

`Net` holds a `Core` on a two-realm config (LAN 192.0.2.0/24 with the SBC at .1, WAN with the SBC at
198.51.100.1 and the trunk at 203.0.113.10), a `FakeDataplane` and a clock the test moves. Messages
are written with "\\n" line ends and sent with `Net.send`; what the core transmits comes back parsed,
with the realm and destination, in order.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from dataplane.fake import FakeDataplane
from sbc.b2bua.core import Core
from sbc.b2bua.outputs import LogEvent, SendSip
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


@dataclass
class Sent:
    realm: str
    destination: PeerAddress
    message: Request | Response


@dataclass
class Net:
    rules: str = "[]"  # the config's header_rules, YAML
    core: Core = field(init=False)
    now: float = 0.0
    logs: list[LogEvent] = field(default_factory=list)

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
        outputs = self.core.datagram_received(realm, data, PeerAddress("udp", *source), self.now)
        return self._collect(outputs)

    def tick(self, seconds: float) -> list[Sent]:
        self.now += seconds
        return self._collect(self.core.tick(self.now))

    def _collect(self, outputs: list[object]) -> list[Sent]:
        sent: list[Sent] = []
        for out in outputs:
            if isinstance(out, SendSip):
                sent.append(Sent(out.realm, out.destination, parse_datagram(out.data)))
            elif isinstance(out, LogEvent):
                self.logs.append(out)
        return sent


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
    net.send(
        "lan",
        f"""ACK {ok.contacts[0].uri} SIP/2.0
Via: SIP/2.0/UDP {PHONE}:{PHONE_PORT};branch=z9hG4bK{name}2
Max-Forwards: 70
From: <sip:alice@{PHONE}>;tag={phone_tag}
To: <sip:{name}@{LAN_SBC}>;tag={lan_sbc_tag}
Call-ID: {call_id}
CSeq: 1 ACK
Content-Length: 0""",
        (PHONE, PHONE_PORT),
    )
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
    net: Net, realm: str, request: Request, status: int, headers: str = "", source: tuple[str, int] = (TRUNK, 5060)
) -> list[Sent]:
    """Answer a request the core sent, from its recipient."""
    vias = "\n".join(f"Via: {v}" for v in request.get_all("via"))
    extra = f"\n{headers}" if headers else ""
    return net.send(
        realm,
        f"""SIP/2.0 {status} Whatever
{vias}
From: {request.get("from")}
To: {request.get("to")}
Call-ID: {request.call_id}
CSeq: {request.get("cseq")}{extra}
Content-Length: 0""",
        source,
    )
