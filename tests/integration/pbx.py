"""A small cloud-PBX stand-in for the hairpin test: a UDP B2BUA that passes SDP through unchanged.

A call that reaches it from the SBC's WAN side (leg "in") is sent back to the SBC's WAN side as a new
call (leg "out") to `forward_user`, with the very same SDP body; answers go the other way with their
SDP unchanged too. That is what a hosted PBX does when phone A calls phone B of the same branch: the
SBC sees its own WAN anchor come back in the second call's offer.

Only what the test needs: INVITE/180/200/ACK and BYE in both directions, over UDP on loopback (no
retransmissions of its own: the SBC's are answered from the state kept here). It writes a log of
every message it received, for the test's asserts.
"""

from __future__ import annotations

import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field

Addr = tuple[str, int]


@dataclass
class _Message:
    first: str
    headers: list[tuple[str, str]]
    body: str

    @classmethod
    def parse(cls, data: bytes) -> _Message:
        text = data.decode("utf-8", "replace")
        head, _, body = text.partition("\r\n\r\n")
        lines = head.split("\r\n")
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
        return cls(lines[0], headers, body)

    def get(self, name: str) -> str:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return ""

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    @property
    def is_request(self) -> bool:
        return not self.first.startswith("SIP/2.0")

    @property
    def method(self) -> str:
        return self.first.split(" ", 1)[0] if self.is_request else self.get("CSeq").split()[-1]

    @property
    def status(self) -> int:
        return 0 if self.is_request else int(self.first.split()[1])


def _tag(value: str) -> str:
    found = re.search(r";tag=([^;>\s]+)", value)
    return found.group(1) if found else ""


def _uri(value: str) -> str:
    found = re.search(r"<([^>]+)>", value)
    return found.group(1) if found else value.split(";")[0]


@dataclass
class _Bridge:
    """The two dialogs of one PBX call: "in" (the SBC called us) and "out" (we called the SBC)."""

    in_invite: _Message
    in_source: Addr
    in_tag: str
    out_call_id: str
    out_tag: str
    out_to: str = ""  # To of the out leg with the SBC's tag, once answered
    out_target: str = ""  # the SBC's Contact on the out leg
    in_target: str = ""  # the SBC's Contact on the in leg (where our BYE goes)
    out_cseq: int = 1
    answered: bool = False
    ended: bool = False


@dataclass
class PassThroughPbx:
    address: str
    port: int
    sbc: Addr  # where the SBC's WAN side listens
    forward_user: str  # the user every incoming call is sent back to
    received: list[str] = field(default_factory=list)
    bridges: list[_Bridge] = field(default_factory=list)
    _sock: socket.socket | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> PassThroughPbx:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((self.address, self.port))
        sock.settimeout(0.2)
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="pbx", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()

    def _run(self, max_s: float = 120.0) -> None:
        assert self._sock is not None
        deadline = time.monotonic() + max_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                data, source = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            msg = _Message.parse(data)
            self.received.append(data.decode("utf-8", "replace"))
            if msg.is_request:
                self._on_request(msg, source)
            else:
                self._on_response(msg)

    # ---- sending -------------------------------------------------------------------------------
    def _send(self, text: str, to: Addr) -> None:
        assert self._sock is not None
        self._sock.sendto(text.encode(), to)

    def _via(self) -> str:
        return f"SIP/2.0/UDP {self.address}:{self.port};branch=z9hG4bKpbx{secrets.token_hex(6)};rport"

    def _contact(self) -> str:
        return f"<sip:pbx@{self.address}:{self.port}>"

    def _respond(self, req: _Message, to: Addr, status: int, reason: str, *, tag: str = "", body: str = "") -> None:
        lines = [f"SIP/2.0 {status} {reason}"]
        lines += [f"Via: {v}" for v in req.all("Via")]
        lines.append(f"From: {req.get('From')}")
        to_value = req.get("To")
        lines.append(f"To: {to_value}" + (f";tag={tag}" if tag and not _tag(to_value) else ""))
        lines.append(f"Call-ID: {req.get('Call-ID')}")
        lines.append(f"CSeq: {req.get('CSeq')}")
        if status < 300 and req.method == "INVITE":
            lines.append(f"Contact: {self._contact()}")
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        self._send("\r\n".join(lines) + "\r\n\r\n" + body, to)

    def _request(self, bridge: _Bridge, method: str, *, body: str = "", cseq: int | None = None) -> None:
        """A request on the out leg (toward the SBC)."""
        if cseq is None:
            bridge.out_cseq += 1
            cseq = bridge.out_cseq
        uri = bridge.out_target or f"sip:{self.forward_user}@{self.sbc[0]}:{self.sbc[1]}"
        to = bridge.out_to or f"<sip:{self.forward_user}@{self.sbc[0]}:{self.sbc[1]}>"
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: {self._via()}",
            "Max-Forwards: 70",
            f"From: <sip:pbx@{self.address}:{self.port}>;tag={bridge.out_tag}",
            f"To: {to}",
            f"Call-ID: {bridge.out_call_id}",
            f"CSeq: {cseq} {method}",
        ]
        if method == "INVITE":
            lines.append(f"Contact: {self._contact()}")
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        self._send("\r\n".join(lines) + "\r\n\r\n" + body, self.sbc)

    def _bye_in(self, bridge: _Bridge) -> None:
        """BYE on the in leg (the SBC called us, so we are its UAS: From is its To, with our tag)."""
        inv = bridge.in_invite
        lines = [
            f"BYE {bridge.in_target} SIP/2.0",
            f"Via: {self._via()}",
            "Max-Forwards: 70",
            f"From: {inv.get('To')};tag={bridge.in_tag}",
            f"To: {inv.get('From')}",
            f"Call-ID: {inv.get('Call-ID')}",
            "CSeq: 1 BYE",
            "Content-Length: 0",
        ]
        self._send("\r\n".join(lines) + "\r\n\r\n", bridge.in_source)

    # ---- receiving -----------------------------------------------------------------------------
    def _bridge_for(self, msg: _Message) -> tuple[_Bridge, str] | None:
        call_id = msg.get("Call-ID")
        for bridge in self.bridges:
            if bridge.in_invite.get("Call-ID") == call_id:
                return bridge, "in"
            if bridge.out_call_id == call_id:
                return bridge, "out"
        return None

    def _on_request(self, msg: _Message, source: Addr) -> None:
        found = self._bridge_for(msg)
        if msg.method == "INVITE" and found is None:
            bridge = _Bridge(msg, source, secrets.token_hex(4), f"pbx-{secrets.token_hex(8)}", secrets.token_hex(4))
            bridge.in_target = _uri(msg.get("Contact"))
            self.bridges.append(bridge)
            self._respond(msg, source, 100, "Trying")
            self._request(bridge, "INVITE", body=msg.body, cseq=1)
            return
        if found is None:
            if msg.method != "ACK":
                self._respond(msg, source, 481, "Call/Transaction Does Not Exist")
            return
        bridge, side = found
        if msg.method == "INVITE":  # a retransmission of the in leg's INVITE
            self._respond(msg, source, 100, "Trying")
        elif msg.method == "BYE":
            self._respond(msg, source, 200, "OK")
            if not bridge.ended:
                bridge.ended = True
                if side == "in":
                    self._request(bridge, "BYE")
                else:
                    self._bye_in(bridge)

    def _on_response(self, msg: _Message) -> None:
        found = self._bridge_for(msg)
        if found is None or found[1] != "out" or msg.method != "INVITE":
            return  # answers to our BYEs need nothing
        bridge = found[0]
        inv = bridge.in_invite
        if 100 < msg.status < 200:
            self._respond(inv, bridge.in_source, msg.status, "Ringing", tag=bridge.in_tag)
        elif msg.status >= 200:
            bridge.out_to = msg.get("To")
            bridge.out_target = _uri(msg.get("Contact")) or bridge.out_target
            self._request(bridge, "ACK", cseq=1)
            if msg.status < 300 and not bridge.answered:
                bridge.answered = True
                self._respond(inv, bridge.in_source, 200, "OK", tag=bridge.in_tag, body=msg.body)
            elif msg.status >= 300:
                self._respond(inv, bridge.in_source, msg.status, "Failed", tag=bridge.in_tag)
