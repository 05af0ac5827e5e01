"""A branch's calls through a cloud PBX: real Kamailio on the WAN, real baresip phones on the LAN.

Every flow checks what a user gets (the call rings and connects, each side hears the other's tone,
hold and hang-up work from either side), the RFC 3261 path of in-dialog requests through the
record-routing PBX, and that no inside address (127.N.1.x) crossed to the WAN side in any packet:
SIP headers, SDP, RTP or RTCP (see wire_capture.py).

Audio is checked in the phones' own recordings of what they decoded; after a re-INVITE baresip 1.0
records nothing more (also between two baresips with no SBC between them), so after hold/resume
the check is on the RTP the SBC sent each phone, decoded from the capture.

Issue 11's items 1-6 made these flows fail when this tier was written (hairpin and WAN phone
route sets, NOTIFY ids, refused hold, SDP/RTCP CNAMEs, 302, large INVITE); they pass since the fixes.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.integration.harness import LAN_SBC, NET, SBC_PORT, TRUNK, TRUNK_PORT, WAN_SBC, SbcProcess, sipp
from tests.interop.audio import carries_tone, samples_report, tone_report, ulaw_samples
from tests.interop.baresip import Phone
from tests.interop.kamailio import FORWARD_TARGET, FORWARDED_USER, Kamailio
from tests.interop.stage import (
    INSIDE_PREFIX,
    PBX,
    PHONES,
    SBC_LAN,
    WAN_PREFIX,
    PhoneFactory,
    needs_interop_peers,
)
from tests.interop.wire_capture import Capture, Packet, first_line, leaks, on_network, sip_messages

pytestmark = [pytest.mark.interop, *needs_interop_peers]

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
TALK_S = 1.5  # how long each call carries audio before the checks: enough for a clear tone
PACKETS_PER_S = 50  # G.711 at 20 ms per packet
RTCP_REPORT_S = 6.5  # baresip's first RTCP report comes about 5 s into a call


# ---- the flows' vocabulary ----------------------------------------------------------------------------
def connect(caller: Phone, callee: Phone, uri: str) -> None:
    """The caller dials, the callee's phone rings and is answered, both see the call established."""
    caller_mark, callee_mark = caller.mark(), callee.mark()
    caller.dial(uri)
    callee.wait_event("CALL_INCOMING", after=callee_mark)
    callee.answer()
    callee.wait_event("CALL_ESTABLISHED", timeout=5, after=callee_mark)
    caller.wait_event("CALL_ESTABLISHED", timeout=5, after=caller_mark)


def hang_up(side: Phone, other: Phone) -> None:
    mark = other.mark()
    side.hangup()
    other.wait_event("CALL_CLOSED", timeout=5, after=mark)


def hold_and_resume(holder: Phone, held: Phone) -> None:
    """Hold, then resume: each re-INVITE reaches the other phone and its answer comes back."""
    for action in (holder.hold, holder.resume):
        holder_mark, held_mark = holder.mark(), held.mark()
        action()
        held.wait_event("CALL_REMOTE_SDP", timeout=5, after=held_mark)
        holder.wait_event("CALL_REMOTE_SDP", timeout=5, after=holder_mark)
        assert not holder.saw("CALL_CLOSED", after=holder_mark), holder.report()
        time.sleep(0.5)


def tone_hz(p: Phone) -> int:
    return PHONES[p.name].tone_hz


def assert_hears(listener: Phone, talker: Phone) -> None:
    """The listener's recording of what it decoded carries the talker's tone."""
    recordings = listener.recordings()
    assert recordings, f"{listener.name} recorded nothing\n{listener.report()}"
    report = tone_report(recordings[-1], tone_hz(talker), tone_hz(listener))
    assert carries_tone(report), f"{listener.name} should hear {talker.name}'s tone: {report}"


def assert_sent_tone(packets: list[Packet], listener: Phone, talker: Phone, *, since: float) -> None:
    """The last second of G.711 RTP the SBC sent the listener since `since` carries the talker's tone."""
    sbc_address = LAN_SBC if listener.address.startswith(INSIDE_PREFIX) else WAN_SBC
    low, high = listener.rtp_ports
    payloads = [
        p.payload[12:]
        for p in packets
        if p.time >= since and p.transport == "udp" and p.src == sbc_address and low <= p.dport <= high
        and len(p.payload) > 12 and p.payload[0] >> 6 == 2 and p.payload[1] & 0x7F == 0
    ]  # fmt: skip
    report = samples_report(ulaw_samples(payloads[-PACKETS_PER_S:]), tone_hz(talker), tone_hz(listener))
    assert carries_tone(report), f"the SBC should send {listener.name} {talker.name}'s tone: {report}"


def assert_nothing_inside_on_wan(packets: list[Packet]) -> None:
    found = leaks(on_network(packets, WAN_PREFIX), INSIDE_PREFIX)
    assert not found, "inside addresses on the WAN side:\n" + "\n".join(found[:10])


def wan_sip(packets: list[Packet]) -> list[Packet]:
    return sip_messages(on_network(packets, WAN_PREFIX))


def requests(packets: list[Packet], method: str) -> list[Packet]:
    return [p for p in wan_sip(packets) if first_line(p).startswith(method + " ")]


def failures(packets: list[Packet]) -> list[str]:
    """SIP error answers seen on the WAN side (what Kamailio, the SBC or a phone refused)."""
    out = []
    for p in wan_sip(packets):
        line = first_line(p)
        if re.match(r"SIP/2\.0 [456]\d\d ", line):
            cseq = re.search(r"\r\nCSeq: *([^\r]+)", p.text)
            out.append(f"{p}: {line} ({cseq.group(1) if cseq else '?'})")
    return out


def assert_dialog_requests_through_pbx(packets: list[Packet], expected: tuple[str, ...]) -> None:
    """RFC 3261 §12.2.1.1: the PBX record-routed every dialog, so no in-dialog request (To with a tag)
    goes between the SBC and a phone or the SBC and itself without the PBX; `expected` methods occur."""
    seen = set()
    for p in wan_sip(packets):
        line = first_line(p)
        to = re.search(r"\r\nTo:[^\r]*", p.text)
        if line.startswith("SIP/2.0") or to is None or ";tag=" not in to.group(0):
            continue
        seen.add(line.split(" ", 1)[0])
        assert (TRUNK, TRUNK_PORT) in ((p.src, p.sport), (p.dst, p.dport)), f"{line} bypassed the PBX: {p}"
    assert set(expected) <= seen, f"in-dialog requests seen on the WAN side: {sorted(seen)}"


def assert_clean_wan(sbc: SbcProcess, packets: list[Packet], in_dialog: tuple[str, ...]) -> None:
    assert not failures(packets), "\n".join([*failures(packets), f"--- sbc log tail:\n{sbc.log()[-3000:]}"])
    assert_dialog_requests_through_pbx(packets, in_dialog)
    assert_nothing_inside_on_wan(packets)


# ---- registration --------------------------------------------------------------------------------------
def test_two_phones_register_through_the_sbc(
    pbx: Kamailio, sbc: SbcProcess, wire: Capture, phone: PhoneFactory
) -> None:
    a, b = phone("A"), phone("B")
    for p in (a, b):
        contacts = pbx.contacts(p.user)
        assert len(contacts) == 1, f"{p.user}: {contacts}\n{pbx.rpc('ul.dump')}"
        # The PBX reaches the phone through the SBC's WAN side, under a contact that names no phone.
        assert f"@{WAN_SBC}:{SBC_PORT}" in contacts[0] and p.address not in contacts[0], contacts
    packets = wire.stop()
    assert {p.src for p in requests(packets, "REGISTER")} == {WAN_SBC}
    assert len(requests(packets, "REGISTER")) >= 2
    assert_nothing_inside_on_wan(packets)


# ---- A -> PBX -> B at the same branch (the hairpin) ----------------------------------------------------
@pytest.mark.parametrize("hanging_up", ["caller", "callee"])
def test_hairpin_call_audio_both_ways_and_hang_up(
    sbc: SbcProcess, wire: Capture, phone: PhoneFactory, hanging_up: str
) -> None:
    a, b = phone("A"), phone("B")
    connect(a, b, f"sip:{b.user}@{SBC_LAN}")
    time.sleep(TALK_S)
    hang_up(*((a, b) if hanging_up == "caller" else (b, a)))
    assert_hears(a, b)
    assert_hears(b, a)
    assert_clean_wan(sbc, wire.stop(), ("ACK", "BYE"))


def test_hairpin_hold_and_resume(sbc: SbcProcess, wire: Capture, phone: PhoneFactory) -> None:
    a, b = phone("A"), phone("B")
    connect(a, b, f"sip:{b.user}@{SBC_LAN}")
    hold_and_resume(a, b)
    resumed = time.time()
    time.sleep(TALK_S)
    hang_up(a, b)
    packets = wire.stop()
    assert_sent_tone(packets, a, b, since=resumed)
    assert_sent_tone(packets, b, a, since=resumed)
    assert_clean_wan(sbc, packets, ("ACK", "INVITE", "BYE"))


def test_hairpin_blind_transfer_to_a_third_phone(sbc: SbcProcess, wire: Capture, phone: PhoneFactory) -> None:
    """A calls B, then sends B to C (REFER): B calls C, A is told (NOTIFY) and leaves the call."""
    a, b, c = phone("A"), phone("B"), phone("C")
    connect(a, b, f"sip:{b.user}@{SBC_LAN}")
    a_mark, b_mark, c_mark = a.mark(), b.mark(), c.mark()
    a.transfer(f"sip:{c.user}@{SBC_LAN}")
    c.wait_event("CALL_INCOMING", after=c_mark)
    c.answer()
    c.wait_event("CALL_ESTABLISHED", timeout=5, after=c_mark)
    b.wait_event("CALL_ESTABLISHED", timeout=5, after=b_mark)
    a.wait_event("CALL_CLOSED", timeout=5, after=a_mark)  # the transferor leaves once NOTIFY says it worked
    time.sleep(TALK_S)
    hang_up(c, b)
    assert_hears(c, b)
    assert_hears(b, c)
    packets = wire.stop()
    assert requests(packets, "NOTIFY")
    assert_clean_wan(sbc, packets, ("ACK", "REFER", "NOTIFY", "BYE"))


# ---- calls between the branch and a user elsewhere on the PBX ----------------------------------------
def lan_wan_call(phone: PhoneFactory, direction: str) -> tuple[Phone, Phone]:
    """A (LAN) and W (WAN, registered with the PBX directly) in a call; returns (A, W)."""
    lan, far = phone("A"), phone("W")
    if direction == "lan-calls-wan":
        connect(lan, far, f"sip:{far.user}@{SBC_LAN}")
    else:
        connect(far, lan, f"sip:{lan.user}@{PBX}")
    return lan, far


@pytest.mark.parametrize(
    ("direction", "hanging_up"),
    [
        pytest.param("lan-calls-wan", "lan", id="lan-calls-wan-lan-hangs-up"),
        pytest.param("lan-calls-wan", "wan", id="lan-calls-wan-wan-hangs-up"),
        pytest.param("wan-calls-lan", "lan", id="wan-calls-lan-lan-hangs-up"),
        pytest.param("wan-calls-lan", "wan", id="wan-calls-lan-wan-hangs-up"),
    ],
)
def test_lan_wan_call_audio_both_ways_and_hang_up(
    sbc: SbcProcess, wire: Capture, phone: PhoneFactory, direction: str, hanging_up: str
) -> None:
    lan, far = lan_wan_call(phone, direction)
    time.sleep(TALK_S)
    hang_up(*((lan, far) if hanging_up == "lan" else (far, lan)))
    assert_hears(lan, far)
    assert_hears(far, lan)
    assert_clean_wan(sbc, wire.stop(), ("ACK", "BYE"))


@pytest.mark.parametrize("holder", ["lan", "wan"])
def test_lan_calls_wan_hold_and_resume(sbc: SbcProcess, wire: Capture, phone: PhoneFactory, holder: str) -> None:
    lan, far = lan_wan_call(phone, "lan-calls-wan")
    hold_and_resume(*((lan, far) if holder == "lan" else (far, lan)))
    resumed = time.time()
    time.sleep(TALK_S)
    hang_up(lan, far)
    packets = wire.stop()
    assert_sent_tone(packets, lan, far, since=resumed)
    assert_sent_tone(packets, far, lan, since=resumed)
    assert_clean_wan(sbc, packets, ("ACK", "INVITE", "BYE"))


def test_refused_hold_leaves_the_media_as_it_was(
    pbx: Kamailio, sbc: SbcProcess, wire: Capture, phone: PhoneFactory
) -> None:
    """The PBX refuses A's hold (488): RFC 3264 §8 / RFC 6337, the offer/answer failed, so the session
    keeps its media and A goes on being sent W's tone. (The other way is baresip's: a phone that asked
    for hold stops sending, whatever the answer.)"""
    lan, far = lan_wan_call(phone, "lan-calls-wan")
    with pbx.refusing_reinvites():
        lan.hold()
        time.sleep(0.5)  # the 488 comes back within milliseconds on loopback
    refused = time.time()
    time.sleep(TALK_S)
    hang_up(lan, far)
    packets = wire.stop()
    assert any(first_line(p).startswith("SIP/2.0 488") and p.dst == WAN_SBC for p in wan_sip(packets))
    assert_sent_tone(packets, lan, far, since=refused)
    assert_nothing_inside_on_wan(packets)


def is_rtcp_report(p: Packet) -> bool:
    """An RTCP compound packet starting with a sender or receiver report (RFC 3550 §6.1)."""
    return p.transport == "udp" and len(p.payload) >= 8 and p.payload[0] >> 6 == 2 and p.payload[1] in (200, 201)


def test_lan_calls_wan_rtcp_reports_carry_no_inside_address(
    sbc: SbcProcess, wire: Capture, phone: PhoneFactory
) -> None:
    """baresip sends its first RTCP report (SR with an SDES CNAME naming its account) about 5 s into a
    call: the one relayed to the WAN phone must name nothing inside."""
    lan, far = lan_wan_call(phone, "lan-calls-wan")
    time.sleep(RTCP_REPORT_S)
    hang_up(lan, far)
    packets = wire.stop()
    assert any(is_rtcp_report(p) and p.src == WAN_SBC for p in packets), "no RTCP report reached the WAN phone"
    assert_nothing_inside_on_wan(packets)


# ---- call forwarding by the PBX (302) --------------------------------------------------------------------
def test_302_from_the_pbx_reaches_the_forwarding_target(sbc: SbcProcess, wire: Capture, phone: PhoneFactory) -> None:
    """Kamailio answers 302 for FORWARDED_USER, naming FORWARD_TARGET on the PBX (the WAN phone W).

    Either outcome the issue allows is accepted: the SBC follows the redirect (W rings and the call
    connects), or it relays the 302 to the phone (which then ends the attempt with that 302)."""
    a, w = phone("A"), phone("W")
    assert w.user == FORWARD_TARGET
    a_mark, w_mark = a.mark(), w.mark()
    a.dial(f"sip:{FORWARDED_USER}@{SBC_LAN}")
    deadline = time.monotonic() + 8
    while not (w.saw("CALL_INCOMING", after=w_mark) or a.saw("CALL_CLOSED", after=a_mark)):
        assert time.monotonic() < deadline, f"neither rang nor closed\n{a.report()}\n{w.report()}"
        time.sleep(0.1)
    closed = a.saw("CALL_CLOSED", after=a_mark)
    if closed:
        assert str(closed[0].get("param", "")).startswith("302"), f"the caller got {closed[0].get('param')}"
    else:
        w.answer()
        w.wait_event("CALL_ESTABLISHED", timeout=5, after=w_mark)
        a.wait_event("CALL_ESTABLISHED", timeout=5, after=a_mark)
        time.sleep(TALK_S)
        hang_up(a, w)
        assert_hears(a, w)
        assert_hears(w, a)
    packets = wire.stop()
    assert any(first_line(p).startswith("SIP/2.0 302") for p in wan_sip(packets))
    assert_nothing_inside_on_wan(packets)


# ---- a large INVITE ---------------------------------------------------------------------------------------
def test_large_invite_reaches_the_pbx_over_tcp(
    tmp_path: Path, sbc: SbcProcess, wire: Capture, phone: PhoneFactory
) -> None:
    """A desk phone (SIPp, over TCP) offers a large SDP to W: above 1300 bytes the SBC must use TCP
    toward the PBX, although the PBX is configured as a UDP peer (RFC 3261 §18.1.1)."""
    w = phone("W")
    w_mark = w.mark()
    desk = sipp(
        "desk", tmp_path, str(SCENARIOS / "uac_large_invite.xml"), local_ip=f"127.{NET}.1.30", local_port=5070,
        remote=f"{LAN_SBC}:{SBC_PORT}", service=w.user, transport="t1", timeout_s=20,
    ).start()  # fmt: skip
    try:
        w.wait_event("CALL_INCOMING", after=w_mark)
        w.answer()
        assert desk.wait(25) == 0, f"{desk.report()}\n--- sbc log tail:\n{sbc.log()[-3000:]}"
    finally:
        desk.kill()
    packets = wire.stop()
    invites = [p for p in requests(packets, "INVITE") if p.src == WAN_SBC]
    assert invites and len(invites[0].payload) > 1300, [len(p.payload) for p in invites]
    assert all(p.transport == "tcp" for p in invites), [f"{p}: {len(p.payload)} bytes" for p in invites]
    assert re.search(r"\r\nVia: SIP/2\.0/TCP ", invites[0].text), first_line(invites[0])
    assert_nothing_inside_on_wan(packets)
