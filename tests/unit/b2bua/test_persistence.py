"""Dialog persistence: a confirmed call is written to the state file, a new core re-creates it from
there (anchors re-taken at the same ports, programs and connections as before), and an in-dialog BYE
afterwards is relayed with the other leg's own dialog state and releases the anchors."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dataplane.api import AnchorPort
from dataplane.fake import FakeDataplane
from sbc.b2bua.core import Core
from sbc.b2bua.media_ledger import MediaLedger
from sbc.b2bua.outputs import Output, SendSip
from sbc.config.loader import load_config_text
from sbc.config.model import SbcConfig
from sbc.dialog_state import STATE_FILE, DialogPersistence, DialogStateFile, boot_id
from sbc.sip.message import Request, Response, parse_datagram
from sbc.sip.transaction import PeerAddress

PHONE = PeerAddress("UDP", "192.0.2.10", 5070)
TRUNK = PeerAddress("UDP", "203.0.113.10", 5060)


def config(state_dir: Path, lan_media: str = "") -> SbcConfig:
    """`lan_media`: more keys of the lan realm's media section (", key: value")."""
    return load_config_text(
        f"""
sbc: {{state_dir: {state_dir}}}
realms:
  - name: lan
    trusted: true
    address: 192.0.2.1
    networks: [192.0.2.0/24]
    listen: [{{transport: udp, port: 5060}}]
    media: {{address: 192.0.2.1, ports: 30000-30099, latch: learn{lan_media}}}
  - name: wan
    address: 198.51.100.7
    listen: [{{transport: udp, port: 5060}}]
    peer: {{host: 203.0.113.10, port: 5060, transport: udp}}
    media: {{address: 198.51.100.7, ports: 31000-31099}}
routes:
  - {{name: out, from: lan, to: wan}}
""",
        "test.yaml",
    )


def sdp(address: str, port: int) -> str:
    return (
        f"v=0\r\no=x 1 1 IN IP4 {address}\r\ns=-\r\nc=IN IP4 {address}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )


def message(start: str, headers: list[tuple[str, str]], body: str = "") -> bytes:
    lines = [start, *(f"{n}: {v}" for n, v in headers)]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def sent(outputs: list[Output], realm: str) -> list[Request | Response]:
    return [parse_datagram(o.data) for o in outputs if isinstance(o, SendSip) and o.realm == realm]


class Node:
    """One SBC process: a core on a fake relay, with the persistence layer an `sbc run` has."""

    def __init__(self, cfg: SbcConfig, loop: asyncio.AbstractEventLoop) -> None:
        self.relay = FakeDataplane()
        self.ledger = MediaLedger(self.relay)
        self.core = Core(cfg, self.ledger)
        self.persistence = DialogPersistence(
            self.core, self.ledger, cfg.state_dir / STATE_FILE, loop, self.log, write_interval_s=0.0
        )
        self.logs: list[tuple[str, str, dict[str, object]]] = []
        self.now = 100.0

    def log(self, level: str, event: str, **fields: object) -> None:
        self.logs.append((level, event, fields))

    def feed(self, realm: str, data: bytes, source: PeerAddress) -> list[Output]:
        self.now += 0.01
        out = self.core.datagram_received(realm, data, source, self.now)
        self.persistence.after_input()
        return out


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def place_call(node: Node) -> tuple[Request, Response]:
    """A phone calls out; the trunk answers; the phone ACKs. Returns (INVITE the trunk got, our 200)."""
    invite = message(
        "INVITE sip:bob@192.0.2.1 SIP/2.0",
        [
            ("Via", "SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-a1"),
            ("From", "<sip:alice@192.0.2.10>;tag=phone1"),
            ("To", "<sip:bob@192.0.2.1>"),
            ("Call-ID", "phone-call-1"),
            ("CSeq", "1 INVITE"),
            ("Contact", "<sip:alice@192.0.2.10:5070>"),
            ("Max-Forwards", "70"),
        ],
        sdp("192.0.2.10", 6000),
    )
    out = node.feed("lan", invite, PHONE)
    b_invite = next(m for m in sent(out, "wan") if isinstance(m, Request) and m.method == "INVITE")
    ok = message(
        "SIP/2.0 200 OK",
        [
            *(("Via", v) for v in b_invite.get_all("via")),
            ("From", b_invite.get("from") or ""),
            ("To", f"{b_invite.get('to')};tag=trunk1"),
            ("Call-ID", b_invite.call_id),
            ("CSeq", "1 INVITE"),
            ("Contact", "<sip:pbx@203.0.113.10:5060>"),
            ("Record-Route", "<sip:proxy.example;lr>"),
        ],
        sdp("203.0.113.20", 7000),
    )
    out = node.feed("wan", ok, TRUNK)
    our_ok = next(m for m in sent(out, "lan") if isinstance(m, Response) and m.status == 200)
    ack = message(
        "ACK sip:sbc@192.0.2.1:5060 SIP/2.0",
        [
            ("Via", "SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-a2"),
            ("From", "<sip:alice@192.0.2.10>;tag=phone1"),
            ("To", our_ok.get("to") or ""),
            ("Call-ID", "phone-call-1"),
            ("CSeq", "1 ACK"),
            ("Max-Forwards", "70"),
        ],
    )
    node.feed("lan", ack, PHONE)
    return b_invite, our_ok


def phone_bye(our_ok: Response, cseq: int = 2) -> bytes:
    return message(
        "BYE sip:sbc@192.0.2.1:5060 SIP/2.0",
        [
            ("Via", f"SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-bye{cseq}"),
            ("From", "<sip:alice@192.0.2.10>;tag=phone1"),
            ("To", our_ok.get("to") or ""),
            ("Call-ID", "phone-call-1"),
            ("CSeq", f"{cseq} BYE"),
            ("Max-Forwards", "70"),
        ],
    )


def state(cfg: SbcConfig) -> dict[str, Any]:
    """What the state file holds, as a document of the whole-document format (format 1), which restore
    still reads: the tests that damage a saved call write it back that way."""
    calls, problem = DialogStateFile(cfg.state_dir / STATE_FILE).read()
    assert problem is None
    return {"format": 1, "boot_id": boot_id(), "written_at": 0.0, "calls": calls}


def anchors(relay: FakeDataplane) -> list[tuple[str, str, int]]:
    return sorted((a.realm, str(a.address), a.rtp_port) for a in relay.live.values())


def test_a_confirmed_call_is_saved_and_a_new_process_resumes_it(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    cfg = config(tmp_path)
    first = Node(cfg, loop)
    b_invite, our_ok = place_call(first)
    first.persistence.flush()
    doc = state(cfg)
    calls = doc["calls"]
    assert isinstance(calls, list) and len(calls) == 1
    saved = calls[0]
    assert [leg["call_id"] for leg in saved["legs"]] == ["phone-call-1", b_invite.call_id]
    assert saved["legs"][1]["remote_tag"] == "trunk1"
    assert saved["legs"][1]["route_set"] == ["<sip:proxy.example;lr>"]
    assert (cfg.state_dir / STATE_FILE).stat().st_mode & 0o777 == 0o600
    before_anchors = anchors(first.relay)
    before_programs = {(a.realm, a.rtp_port): leg for a, leg in first.relay.programs}

    # the process dies; a new one starts on the same state directory
    second = Node(cfg, loop)
    assert second.persistence.restore() == 1
    assert anchors(second.relay) == before_anchors
    assert [c[0] for c in second.relay.calls[:2]] == ["allocate", "allocate"]
    assert {(a.realm, a.rtp_port): leg for a, leg in second.relay.programs} == before_programs
    live = list(second.relay.live.values())
    assert second.relay.partner_of(live[0]) == live[1]
    restored = next(iter(second.core.calls.values()))
    assert restored.call_ref == saved["call_ref"]
    assert any(e == "call.restored" for _, e, _ in second.logs)

    out = second.feed("lan", phone_bye(our_ok), PHONE)
    to_phone = sent(out, "lan")
    assert [m.status for m in to_phone if isinstance(m, Response)] == [200]
    bye = next(m for m in sent(out, "wan") if isinstance(m, Request))
    assert bye.method == "BYE"
    assert bye.call_id == b_invite.call_id, "the callee leg's own Call-ID"
    assert bye.cseq == (2, "BYE"), "the callee leg's CSeq, continued"
    assert bye.uri == "sip:pbx@203.0.113.10:5060", "to the remote target learned from the 200"
    assert bye.get_all("route") == ["<sip:proxy.example;lr>"]
    assert "tag=trunk1" in (bye.get("to") or "")
    assert not second.core.calls
    assert sorted(a.rtp_port for a in second.relay.releases) == sorted(p for _, _, p in before_anchors)
    second.persistence.flush()
    assert state(cfg)["calls"] == [], "an ended call leaves the file"


def test_an_ended_call_is_removed_and_the_file_is_rewritten_atomically(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    cfg = config(tmp_path)
    node = Node(cfg, loop)
    _, our_ok = place_call(node)
    node.persistence.flush()
    assert len(state(cfg)["calls"]) == 1
    node.feed("lan", phone_bye(our_ok), PHONE)
    node.persistence.flush()
    assert state(cfg)["calls"] == []
    assert not (cfg.state_dir / (STATE_FILE + ".tmp")).exists()


def test_a_call_being_set_up_is_not_saved(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> None:
    cfg = config(tmp_path)
    node = Node(cfg, loop)
    invite = message(
        "INVITE sip:bob@192.0.2.1 SIP/2.0",
        [
            ("Via", "SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-x"),
            ("From", "<sip:alice@192.0.2.10>;tag=p"),
            ("To", "<sip:bob@192.0.2.1>"),
            ("Call-ID", "early"),
            ("CSeq", "1 INVITE"),
            ("Max-Forwards", "70"),
        ],
        sdp("192.0.2.10", 6000),
    )
    node.feed("lan", invite, PHONE)
    node.persistence.flush()
    assert node.persistence.saved_calls == []
    assert not (cfg.state_dir / STATE_FILE).exists()


def test_a_state_file_from_another_boot_is_set_aside(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> None:
    cfg = config(tmp_path)
    first = Node(cfg, loop)
    place_call(first)
    first.persistence.flush()
    path = cfg.state_dir / STATE_FILE
    head, _, journal = path.read_text().partition("\n")
    doc = json.loads(head)
    doc["boot_id"] = "00000000-0000-0000-0000-000000000000"
    path.write_text(json.dumps(doc) + "\n" + journal)
    second = Node(cfg, loop)
    assert second.persistence.restore() == 0
    assert not second.relay.live
    assert (cfg.state_dir / (STATE_FILE + ".stale")).exists()
    assert any(e == "dialogs.state_ignored" for _, e, _ in second.logs)


def test_a_call_whose_ports_are_taken_is_dropped_and_the_others_come_back(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    cfg = config(tmp_path)
    first = Node(cfg, loop)
    place_call(first)
    first.persistence.flush()
    doc = state(cfg)
    calls = doc["calls"]
    assert isinstance(calls, list)
    twin = json.loads(json.dumps(calls[0]))  # a second call on other ports
    twin["call_ref"] = "twin"
    for leg in twin["legs"]:
        leg["call_id"] += "-twin"
    for stream in twin["media"]["streams"]:
        for a in stream["anchors"].values():
            a["rtp_port"] += 10
            if a["partner"]:
                a["partner"][1] += 10
    doc["calls"] = [*calls, twin]
    (cfg.state_dir / STATE_FILE).write_text(json.dumps(doc))
    second = Node(cfg, loop)
    lan = next(a for a in first.relay.live.values() if a.realm == "lan")
    blocker: AnchorPort = second.relay.allocate_at("lan", ipaddress.ip_address("192.0.2.1"), lan.rtp_port)
    assert second.persistence.restore() == 1
    assert list(second.core.calls) == ["twin"]
    assert any(e == "call.restore_failed" for _, e, _ in second.logs)
    assert sorted(a.rtp_port for a in second.relay.live.values() if a != blocker) == sorted(
        a.rtp_port + 10 for a in first.relay.live.values()
    )
    assert [c["call_ref"] for c in state(cfg)["calls"]] == ["twin"]


def test_reinvite_changes_are_saved(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> None:
    """A re-INVITE moves the callee leg's CSeq and the programs: the file follows."""
    cfg = config(tmp_path)
    node = Node(cfg, loop)
    b_invite, our_ok = place_call(node)
    node.persistence.flush()
    writes = node.persistence.writes
    reinvite = message(
        "INVITE sip:sbc@192.0.2.1:5060 SIP/2.0",
        [
            ("Via", "SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-re"),
            ("From", "<sip:alice@192.0.2.10>;tag=phone1"),
            ("To", our_ok.get("to") or ""),
            ("Call-ID", "phone-call-1"),
            ("CSeq", "2 INVITE"),
            ("Contact", "<sip:alice@192.0.2.10:5070>"),
            ("Max-Forwards", "70"),
        ],
        sdp("192.0.2.10", 6100),
    )
    out = node.feed("lan", reinvite, PHONE)
    b_reinvite = next(m for m in sent(out, "wan") if isinstance(m, Request) and m.method == "INVITE")
    answer = message(  # the relay takes the new offer when its answer comes (RFC 3264 §8)
        "SIP/2.0 200 OK",
        [
            *(("Via", v) for v in b_reinvite.get_all("via")),
            ("From", b_reinvite.get("from") or ""),
            ("To", b_reinvite.get("to") or ""),
            ("Call-ID", b_reinvite.call_id),
            ("CSeq", b_reinvite.get("cseq") or ""),
            ("Contact", "<sip:pbx@203.0.113.10:5060>"),
        ],
        sdp("203.0.113.20", 7000),
    )
    node.feed("wan", answer, TRUNK)
    node.persistence.flush()
    assert node.persistence.writes > writes
    saved = state(cfg)["calls"][0]
    assert saved["legs"][0]["remote_cseq"] == 2
    assert saved["legs"][1]["local_cseq"] == 2
    lan_anchor = saved["media"]["streams"][0]["anchors"]["0"]
    assert lan_anchor["program"]["remote_rtp"] == ["192.0.2.10", 6100]
    del b_invite


@pytest.mark.parametrize(
    "garbage",
    [
        {"call_ref": "x"},
        {"call_ref": "x", "legs": "two", "media": {}},
        {"call_ref": "x", "legs": [{}, {}], "media": []},
        {"call_ref": "x", "legs": [], "media": {"mode": "anchor", "realms": ["lan", "wan"], "streams": ["s"]}},
    ],
)
def test_a_damaged_record_costs_that_call_only(
    tmp_path: Path, loop: asyncio.AbstractEventLoop, garbage: dict[str, object]
) -> None:
    cfg = config(tmp_path)
    first = Node(cfg, loop)
    place_call(first)
    first.persistence.flush()
    doc = state(cfg)
    calls = doc["calls"]
    assert isinstance(calls, list)
    doc["calls"] = [garbage, *calls]
    (cfg.state_dir / STATE_FILE).write_text(json.dumps(doc))
    second = Node(cfg, loop)
    assert second.persistence.restore() == 1
    assert [e for _, e, _ in second.logs].count("call.restore_failed") == 1


def journal_lines(cfg: SbcConfig) -> list[dict[str, Any]]:
    head, *lines = (cfg.state_dir / STATE_FILE).read_text().splitlines()
    assert json.loads(head)["format"] == 2
    return [json.loads(line) for line in lines]


def test_changes_are_appended_to_the_journal_and_an_ended_call_leaves_a_line(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    """The first write of a process rewrites the file; later ones append only what changed."""
    cfg = config(tmp_path)
    node = Node(cfg, loop)
    _, our_ok = place_call(node)
    node.persistence.flush()
    inode = (cfg.state_dir / STATE_FILE).stat().st_ino
    [saved] = journal_lines(cfg)
    ref = saved["call"]["call_ref"]
    node.persistence.flush()  # nothing changed: nothing written
    assert len(journal_lines(cfg)) == 1
    node.feed("lan", phone_bye(our_ok), PHONE)
    node.persistence.flush()
    assert (cfg.state_dir / STATE_FILE).stat().st_ino == inode, "appended, not rewritten"
    assert journal_lines(cfg)[1:] == [{"ended": ref}]
    assert state(cfg)["calls"] == []


def test_a_call_ended_by_a_timer_leaves_the_file(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> None:
    """No event names the call when the core's own timer ends it (here a media timeout: no packet
    ever reaches the fake relay): the next write still sees it gone."""
    cfg = config(tmp_path, ", timeout_s: 5, hangup_on_timeout: true")
    node = Node(cfg, loop)
    place_call(node)
    node.persistence.flush()
    assert len(state(cfg)["calls"]) == 1
    node.core.tick(node.now + 60)
    node.persistence.after_input()
    assert not node.core.calls, "the media timeout ended the call"
    node.persistence.flush()
    assert state(cfg)["calls"] == []
    assert node.persistence.saved_calls == []


def test_a_torn_last_line_is_skipped_and_the_next_process_rewrites_the_file(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    """A process killed in the middle of an append leaves part of a line: the calls before it come back."""
    cfg = config(tmp_path)
    first = Node(cfg, loop)
    place_call(first)
    first.persistence.flush()
    with (cfg.state_dir / STATE_FILE).open("a") as fh:
        fh.write('{"call":{"call_ref":"torn","legs":[{"realm"')
    second = Node(cfg, loop)
    assert second.persistence.restore() == 1
    assert not [e for _, e, _ in second.logs if e == "call.restore_failed"]
    assert "torn" not in (cfg.state_dir / STATE_FILE).read_text(), "restore rewrote the file"
    assert len(journal_lines(cfg)) == 1


def test_the_journal_is_compacted_when_it_outgrows_its_calls(
    tmp_path: Path, loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sbc.dialog_state.COMPACT_MIN_BYTES", 0)
    cfg = config(tmp_path)
    node = Node(cfg, loop)
    _, our_ok = place_call(node)
    node.persistence.flush()
    size = len((cfg.state_dir / STATE_FILE).read_bytes())
    inodes = set()
    for cseq in range(2, 8):  # re-INVITEs: each one changes the call's record
        reinvite = message(
            "INVITE sip:sbc@192.0.2.1:5060 SIP/2.0",
            [
                ("Via", f"SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-re{cseq}"),
                ("From", "<sip:alice@192.0.2.10>;tag=phone1"),
                ("To", our_ok.get("to") or ""),
                ("Call-ID", "phone-call-1"),
                ("CSeq", f"{cseq} INVITE"),
                ("Contact", "<sip:alice@192.0.2.10:5070>"),
                ("Max-Forwards", "70"),
            ],
            sdp("192.0.2.10", 6000 + 2 * cseq),
        )
        node.feed("lan", reinvite, PHONE)
        node.persistence.flush()
        inodes.add((cfg.state_dir / STATE_FILE).stat().st_ino)
        assert len((cfg.state_dir / STATE_FILE).read_bytes()) <= 4 * size
    assert len(inodes) > 1, "rewritten along the way"
    [saved] = state(cfg)["calls"]
    assert saved["legs"][0]["remote_cseq"] == 7
