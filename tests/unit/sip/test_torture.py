"""RFC 4475 (SIP torture test messages) against the datagram parser and the stream framer.

The fixtures in rfc4475/ are the RFC's §3 messages with real CRLFs and real bytes (see generate.py;
only the binary S/MIME part of mpart01 is a stand-in). Each invalid case is either rejected here with
the status the RFC calls appropriate, or listed in ACCEPTED_INVALID with the layer that handles it.
"""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from sbc.sip.errors import RemoteProtocolError
from sbc.sip.framing import StreamFramer
from sbc.sip.message import Request, Response, parse_datagram

FIXTURES = Path(__file__).resolve().parent / "rfc4475"


def load(name: str) -> bytes:
    return (FIXTURES / f"{name}.dat").read_bytes()


def request(name: str) -> Request:
    msg = parse_datagram(load(name))
    assert isinstance(msg, Request)
    return msg


def response(name: str) -> Response:
    msg = parse_datagram(load(name))
    assert isinstance(msg, Response)
    return msg


# §3.1.1: well-formed, must parse. (dblreq is checked separately: its datagram carries noise.)
VALID = [
    "wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "semiuri", "transports",
    "mpart01", "unreason", "noreason",
]  # fmt: skip

# Cases the parser rejects, with the status RFC 4475 calls appropriate.
REJECTED: dict[str, int] = {
    "badinv01": 400,  # §3.1.2.1 empty Via/Contact parameters and Via elements
    "clerr": 400,  # §3.1.2.2 Content-Length larger than the datagram
    "ncl": 400,  # §3.1.2.3 negative Content-Length
    "scalar02": 400,  # §3.1.2.4 CSeq >= 2**31 (and Max-Forwards 300)
    "scalarlg": 400,  # §3.1.2.5 response: dropped (the status is not sent for responses)
    "quotbal": 400,  # §3.1.2.6 unterminated quoted display name in To
    "ltgtruri": 400,  # §3.1.2.7 Request-URI in <>
    "lwsruri": 400,  # §3.1.2.8 LWS inside the Request-URI
    "lwsstart": 400,  # §3.1.2.9 several SP in the request line ("acceptable to reject")
    "trws": 400,  # §3.1.2.10 SP after SIP/2.0 ("acceptable to reject")
    "escruri": 400,  # §3.1.2.11 headers in the Request-URI
    "regbadct": 400,  # §3.1.2.13 addr-spec Contact with headers
    "baddn": 400,  # §3.1.2.15 unquoted display name with a comma
    "badvers": 505,  # §3.1.2.16 SIP/7.0
    "mismatch01": 400,  # §3.1.2.17 CSeq method differs from the request method
    "mismatch02": 400,  # §3.1.2.18 unknown method, CSeq mismatch: RFC prefers 501, 400 is "also acceptable"
    "bigcode": 400,  # §3.1.2.19 response: status code 4294967301, dropped
    "insuf": 400,  # §3.3.1 no Call-ID, From, To, Max-Forwards
    "unkscm": 416,  # §3.3.2 unknown Request-URI scheme
    "novelsc": 416,  # §3.3.3 unknown (novel) Request-URI scheme
    "unksm2": 400,  # §3.3.4 isbn:/http:/name: in To/From/Contact: a registrar's 400 (see below)
    "multi01": 400,  # §3.3.8 two CSeq, Call-ID, To, From, Max-Forwards
    "mcl01": 400,  # §3.3.9 two different Content-Length values
}

# Invalid or semantically odd per the RFC, but accepted by this parser; the layer that deals with it.
ACCEPTED_INVALID: dict[str, str] = {
    "baddate": "§3.1.2.12 Date with EST: the SBC never reads Date; harmless, the B2BUA's header "
    "policy forwards or drops it (the RFC itself says not to reject unless Date matters).",
    "badaspec": "§3.1.2.14 To '< sip:... >' with spaces: the RFC allows ignoring them; the URI parses "
    "cleanly, the B2BUA builds its own To for the other leg and echoes this one unchanged.",
    "badbranch": "§3.2.1 branch=z9hG4bK with no id: parsers must not break; the transaction layer "
    "decides (fall back to RFC 2543 matching or 400).",
    "bext01": "§3.3.5 unknown Require/Proxy-Require: 420 is the B2BUA's job.",
    "invut": "§3.3.6 unknown Content-Type: 415 is the B2BUA's (UAS) job.",
    "regaut01": "§3.3.7 unknown Authorization scheme: the registrar/B2BUA answers 401.",
    "bcast": "§3.3.10 response with a broadcast Via: the transport layer must not send to it.",
    "zeromf": "§3.3.11 Max-Forwards 0: 483 (or answering OPTIONS locally) is the B2BUA's job.",
    "cparam01": "§3.3.12 addr-spec Contact with a header parameter: valid.",
    "cparam02": "§3.3.13 Contact URI parameter: valid.",
    "regescrt": "§3.3.14 escaped header in a <> Contact URI: valid; the registrar decides.",
    "sdp01": "§3.3.15 body type not in Accept: 406 is the UAS's job.",
    "inv2543": "§3.4.1 RFC 2543 INVITE (no branch, no Max-Forwards, no Content-Length): must be "
    "accepted; over UDP the body runs to the end of the datagram.",
}


def test_fixtures_match_their_generator() -> None:
    generated = runpy.run_path(str(FIXTURES / "generate.py"))["MESSAGES"]
    on_disk = {p.stem: p.read_bytes() for p in FIXTURES.glob("*.dat")}
    assert on_disk == generated
    assert all(b"\r\n" in data for data in on_disk.values())


def test_every_fixture_is_classified() -> None:
    names = {p.stem for p in FIXTURES.glob("*.dat")}
    classified = set(VALID) | {"dblreq"} | set(REJECTED) | set(ACCEPTED_INVALID)
    assert names == classified
    assert not set(REJECTED) & set(ACCEPTED_INVALID)


@pytest.mark.parametrize("name", VALID + sorted(ACCEPTED_INVALID))
def test_accepted_messages_round_trip(name: str) -> None:
    data = load(name)
    msg = parse_datagram(data)
    assert msg.serialize() == data
    assert msg.copy().serialize() == data
    assert parse_datagram(msg.serialize()).serialize() == data


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_invalid_messages_rejected_with_rfc_status(name: str) -> None:
    with pytest.raises(RemoteProtocolError) as exc:
        parse_datagram(load(name))
    assert exc.value.status_hint == REJECTED[name], exc.value.reason


@pytest.mark.parametrize("name", sorted(ACCEPTED_INVALID))
def test_accepted_invalid_messages_parse(name: str) -> None:
    """The parser accepts these; ACCEPTED_INVALID[name] says which layer handles the oddity."""
    msg = parse_datagram(load(name))
    msg.top_via  # noqa: B018
    assert msg.call_id


# ---- §3.1.1 valid messages, field by field ---------------------------------------------------------
def test_wsinv_folding_whitespace_compact_forms() -> None:
    req = request("wsinv")
    assert req.method == "INVITE"
    assert req.request_uri.host == "chair-dnrc.example.com"
    assert req.request_uri.param("unknownparam") == ""
    assert req.to.tag == "1918181833n"
    assert req.to.uri.user == "vivekg"
    assert req.from_.display == '"J Rosenberg \\\\\\""'
    assert req.from_.tag == "98asjd8"
    assert req.get("max-forwards") == "0068"
    assert req.cseq == (9, "INVITE")
    assert req.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert req.get("subject") == ""
    assert req.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert req.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert req.get_all("via") == [
        "SIP  /   2.0 /UDP 192.0.2.2;branch=390skdjuw",
        "SIP  / 2.0  / TCP     spindle.example.com   ; branch  =   z9hG4bK9ikj8  , "
        "SIP  /    2.0   / UDP  192.168.255.111   ; branch= z9hG4bK30239",
    ]
    vias = req.vias
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    (contact,) = req.contacts
    assert contact.display == '"Quoted string \\"\\""'
    assert contact.params == (("newparam", "newvalue"), ("secondparam", None), ("q", "0.33"))
    assert req.values("route") == ["<sip:services.example.com;lr;unknownwith=value;unknown-no-value>"]
    assert len(req.body) == 150 and req.body.startswith(b"v=0\r\n")


def test_intmeth_unusual_characters() -> None:
    req = request("intmeth")
    assert req.method == "!interesting-Method0123456789_*+`.%indeed'~"
    uri = req.request_uri
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert uri.host == "example.com"
    assert uri.params == () and uri.headers is None
    assert req.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    assert req.to.display == '"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f"'
    assert req.to.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert req.from_.display == "token1~` token2'+_ token3*%!.-"
    assert req.from_.tag == "_token~1'+`*%!-."
    assert req.from_.param("fromParam''~+*_!.-%") == '"работающий"'
    assert req.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert req.cseq == (139122385, req.method)
    assert req.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"


def test_esc01_escapes_are_kept_verbatim() -> None:
    req = request("esc01")
    assert req.request_uri.user == "sips%3Auser%40example.com"
    assert req.request_uri.host == "example.net"
    assert req.to.uri.user == "%75se%72"
    assert req.from_.uri.user == "I%20have%20spaces"
    assert req.call_id == "esc01.239409asdfakjkn23onasd0-3234"
    assert req.get("content-type") == "application/sdp"
    (contact,) = req.contacts
    assert contact.uri.params == (("%6C%72", None), ("n%61me", "v%61lue%25%34%31"))


def test_escnull_two_distinct_contacts() -> None:
    req = request("escnull")
    assert req.to.uri.user == "null-%00-null"
    assert [c.uri.user for c in req.contacts] == ["%00", "%00%00"]
    assert req.get("content-length") == "0"


def test_esc02_percent_is_not_an_escape_in_method_or_header_names() -> None:
    req = request("esc02")
    assert req.method == "RE%47IST%45R"
    assert req.cseq == (29344, "RE%47IST%45R")
    assert req.to.display == '"%Z%45"'
    assert [c.uri.user for c in req.contacts] == ["alias1", "alias3"]
    assert req.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_lwsdisp_token_display_name_without_space() -> None:
    req = request("lwsdisp")
    assert req.from_.display == "caller"
    assert req.from_.tag == "323"


def test_longreq_long_values_and_34_vias() -> None:
    req = request("longreq")
    assert req.to.display == '"I have a user name of ' + "extreme" * 10 + ' proportion"'
    assert req.to.uri.port == 6000
    assert len(req.to.uri.params) == 3
    assert req.from_.tag == "1" + "298" * 50 + "2424"
    vias = req.vias
    assert len(vias) == 34
    assert [v.host for v in vias[:33]] == [f"sip{n}.example.com" for n in range(33, 0, -1)]
    assert vias[-1].param("received") == "192.0.2.5"
    assert vias[-1].branch == "very" + "long" * 50 + "branchvalue"
    assert req.top_via.host == "sip33.example.com"
    assert len(req.get_all("via")) == 34
    assert req.get("unknown-" + "long" * 20 + "-name") is not None
    assert len(req.body) == 150


def test_dblreq_ignores_the_bytes_after_the_body() -> None:
    data = load("dblreq")
    req = request("dblreq")
    assert req.method == "REGISTER"
    assert req.body == b""
    end = data.index(b"\r\n\r\n") + 4
    assert req.serialize() == data[:end]
    assert b"INVITE" not in req.serialize()


def test_semiuri_user_part_with_semicolon() -> None:
    req = request("semiuri")
    assert req.request_uri.user == "user;par=u%40example.net"
    assert req.request_uri.host == "example.com"
    assert req.request_uri.params == ()
    assert req.values("accept") == [
        "application/sdp", "application/pkcs7-mime", "multipart/mixed", "multipart/signed",
        "message/sip", "message/sipfrag",
    ]  # fmt: skip


def test_transports_every_via_transport() -> None:
    req = request("transports")
    assert [v.transport for v in req.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert req.call_id == "transports.kijh4akdnaqjkwendsasfdj"


def test_mpart01_binary_body_with_nul_is_framed_by_content_length() -> None:
    req = request("mpart01")
    assert len(req.body) == 553
    assert b"\x00" in req.body
    assert req.body.endswith(b"--7a9cbec02ceef655--\r\n")
    assert req.top_via.port == 5070 and req.top_via.param("rport") == ""


def test_unreason_utf8_reason_phrase() -> None:
    resp = response("unreason")
    assert resp.status == 200
    assert resp.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    assert len(resp.body) == 154


def test_noreason_empty_reason_phrase() -> None:
    resp = response("noreason")
    assert (resp.status, resp.reason) == (100, "")
    assert resp.serialize().startswith(b"SIP/2.0 100 \r\n")


def test_inv2543_body_without_content_length_is_not_rewritten() -> None:
    data = load("inv2543")
    req = request("inv2543")
    assert req.get("content-length") is None
    assert req.body.startswith(b"v=0") and req.serialize() == data
    req.body = req.body + b"a=sendrecv\r\n"
    assert req.get("content-length") is None
    out = req.serialize()
    assert req.get("content-length") == str(len(req.body))
    assert parse_datagram(out).body == req.body


# ---- specific rejections -----------------------------------------------------------------------------
def test_rejection_reasons_name_the_defect() -> None:
    reasons = {}
    for name in ("badinv01", "quotbal", "baddn", "escruri", "multi01", "regbadct", "unksm2"):
        with pytest.raises(RemoteProtocolError) as exc:
            parse_datagram(load(name))
        reasons[name] = exc.value.reason
    assert "empty parameter" in reasons["badinv01"]
    assert reasons["quotbal"].startswith("To:")
    assert reasons["baddn"].startswith("From: bad display name")
    assert "Request-URI" in reasons["escruri"]
    assert "more than one" in reasons["multi01"]
    assert reasons["regbadct"].startswith("Contact:")
    assert "scheme" in reasons["unksm2"]


def test_badinv01_contact_alone_is_also_rejected() -> None:
    data = load("badinv01").replace(b"192.0.2.15;;,;,,", b"192.0.2.15;branch=z9hG4bKok")
    with pytest.raises(RemoteProtocolError) as exc:
        parse_datagram(data)
    assert exc.value.reason.startswith("Contact:")


def test_scalar02_max_forwards_alone_is_rejected() -> None:
    data = load("scalar02").replace(b"36893488147419103232", b"36")
    with pytest.raises(RemoteProtocolError, match="Max-Forwards"):
        parse_datagram(data)


# ---- the same messages over a stream -----------------------------------------------------------------
STREAMABLE = [n for n in VALID + sorted(ACCEPTED_INVALID) if n != "inv2543"]


def test_all_streamable_fixtures_in_one_tcp_stream() -> None:
    framer = StreamFramer()
    framer.feed(b"".join(load(n) for n in STREAMABLE))
    out = []
    while (msg := framer.next_message()) is not None:
        out.append(msg.serialize())
    assert out == [load(n) for n in STREAMABLE]
    assert not framer.broken


@pytest.mark.parametrize("name", ["clerr"])
def test_clerr_on_a_stream_waits_for_the_rest(name: str) -> None:
    """§3.1.2.2: over TCP a short body just means more data is due."""
    framer = StreamFramer()
    framer.feed(load(name))
    assert framer.next_message() is None
    assert not framer.broken


@pytest.mark.parametrize("name", ["ncl", "mcl01"])
def test_unframeable_content_length_breaks_the_stream(name: str) -> None:
    """§3.1.2.3, §3.3.9: over TCP a bad or doubled Content-Length is not recoverable."""
    framer = StreamFramer()
    framer.feed(load(name) + load("wsinv"))
    with pytest.raises(RemoteProtocolError):
        framer.next_message()
    assert framer.broken
    assert framer.next_message() is None


@pytest.mark.parametrize("name", ["mismatch01", "badvers", "unkscm", "escruri", "multi01"])
def test_framed_invalid_message_does_not_break_the_stream(name: str) -> None:
    framer = StreamFramer()
    framer.feed(load(name) + load("wsinv"))
    with pytest.raises(RemoteProtocolError) as exc:
        framer.next_message()
    assert exc.value.status_hint == REJECTED[name]
    msg = framer.next_message()
    assert msg is not None and msg.serialize() == load("wsinv")
