"""The message model: header access and editing, serialization, make_response."""

from __future__ import annotations

import pytest

from sbc.sip.errors import LocalProtocolError, RemoteProtocolError
from sbc.sip.message import (
    HeaderField,
    Request,
    Response,
    canonical_name,
    header_key,
    make_response,
    parse_cseq,
    parse_datagram,
)

INVITE = (
    b"INVITE sip:bob@198.18.0.2 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.18.0.1:5060;branch=z9hG4bK776asdhds, SIP/2.0/TCP 198.18.0.9;branch=z9hG4bKx\r\n"
    b"v: SIP/2.0/UDP [2001:db8::9]:5062;branch=z9hG4bKv6;received=2001:db8::10\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@198.18.0.2>\r\n"
    b'f: "Alice, <the> \\"boss\\"; esq." <sip:alice@[2001:db8::1]:5060;transport=tcp>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66710@198.18.0.1\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Timestamp: 54.2\r\n"
    b'Contact: "Desk, 2nd floor" <sip:alice@[2001:db8::1]:5060;transport=tcp>;expires=60, <tel:+1-201-555-0123>\r\n'
    b"Record-Route: <sip:p1.example.com;lr>\r\n"
    b"Allow: INVITE, ACK,BYE\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)


def invite() -> Request:
    msg = parse_datagram(INVITE)
    assert isinstance(msg, Request)
    return msg


# ---- reading -----------------------------------------------------------------------------------------
def test_get_is_case_insensitive_and_understands_compact_forms() -> None:
    msg = invite()
    assert msg.get("CALL-ID") == msg.get("i") == msg.get("call-id") == "a84b4c76e66710@198.18.0.1"
    assert msg.get("From") == msg.get("f")
    assert msg.get("X-Missing") is None
    assert msg.has("l") and msg.has("content-length") and not msg.has("subject")


def test_get_all_keeps_lines_and_values_split_multi_valued_headers() -> None:
    msg = invite()
    assert len(msg.get_all("via")) == 2
    assert msg.get_all("v") == msg.get_all("Via")
    assert len(msg.values("via")) == 3
    assert msg.values("allow") == ["INVITE", "ACK", "BYE"]


def test_values_respect_quotes_and_angle_brackets() -> None:
    msg = invite()
    assert msg.values("contact") == [
        '"Desk, 2nd floor" <sip:alice@[2001:db8::1]:5060;transport=tcp>;expires=60',
        "<tel:+1-201-555-0123>",
    ]
    # From is single-valued: its commas are never split.
    assert msg.values("from") == [msg.get("from")]


def test_typed_views() -> None:
    msg = invite()
    assert msg.cseq == (314159, "INVITE")
    assert msg.call_id == "a84b4c76e66710@198.18.0.1"
    assert msg.from_.display == '"Alice, <the> \\"boss\\"; esq."'
    assert msg.from_.tag == "1928301774"
    assert msg.from_.uri.host == "[2001:db8::1]" and msg.from_.uri.port == 5060
    assert msg.from_.uri.param("transport") == "tcp"
    assert msg.to.display == "Bob" and msg.to.tag is None
    assert [v.host for v in msg.vias] == ["198.18.0.1", "198.18.0.9", "[2001:db8::9]"]
    assert msg.vias[2].port == 5062 and msg.vias[2].param("received") == "2001:db8::10"
    assert msg.top_via.branch == "z9hG4bK776asdhds"
    contacts = msg.contacts
    assert contacts[0].display == '"Desk, 2nd floor"' and contacts[0].param("expires") == "60"
    assert contacts[1].uri.scheme == "tel" and contacts[1].uri.user == "+1-201-555-0123"
    assert msg.request_uri.host == "198.18.0.2"


def test_missing_headers_raise_remote_protocol_errors() -> None:
    req = Request("OPTIONS", "sip:a@b", [])
    for view in ("call_id", "cseq", "from_", "to", "top_via"):
        with pytest.raises(RemoteProtocolError):
            getattr(req, view)
    assert req.vias == [] and req.contacts == []


# ---- editing -----------------------------------------------------------------------------------------
def test_set_keeps_position_and_drops_other_lines() -> None:
    msg = invite()
    names = [h.key for h in msg.headers]
    msg.set("v", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKnew")
    assert msg.get_all("via") == ["SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKnew"]
    assert [h.key for h in msg.headers] == [k for i, k in enumerate(names) if not (k == "via" and i == 1)]
    assert msg.headers[0].name == "Via"


def test_set_of_a_compact_line_writes_the_long_name() -> None:
    msg = invite()
    msg.set("from", "<sip:carol@example.com>;tag=9")
    assert msg.headers[4].render() == "From: <sip:carol@example.com>;tag=9"


def test_set_appends_an_absent_header_with_canonical_spelling() -> None:
    msg = invite()
    msg.set("www-authenticate", 'Digest realm="x"')
    assert msg.headers[-1].render() == 'WWW-Authenticate: Digest realm="x"'


def test_add_first_goes_before_the_first_line_of_that_header() -> None:
    msg = invite()
    msg.add("via", "SIP/2.0/UDP sbc.example.com;branch=z9hG4bKsbc", first=True)
    assert msg.headers[0].render() == "Via: SIP/2.0/UDP sbc.example.com;branch=z9hG4bKsbc"
    assert msg.top_via.host == "sbc.example.com"
    msg.add("Record-Route", "<sip:sbc.example.com;lr>", first=True)
    assert msg.values("record-route") == ["<sip:sbc.example.com;lr>", "<sip:p1.example.com;lr>"]
    msg.add("X-Last", "1")
    assert msg.headers[-1].render() == "X-Last: 1"
    msg.add("x-new", "2", first=True)
    assert msg.headers[0].render() == "X-New: 2"


def test_remove_counts_lines_of_both_spellings() -> None:
    msg = invite()
    assert msg.remove("VIA") == 2
    assert not msg.has("v")
    assert msg.remove("via") == 0


def test_set_values_writes_one_line_per_value_at_the_first_position() -> None:
    msg = invite()
    vias = msg.values("via")
    msg.set_values("via", vias[1:])
    assert msg.headers[0].key == "via" and msg.headers[1].key == "via"
    assert msg.values("via") == vias[1:]
    msg.set_values("route", ["<sip:a;lr>", "<sip:b;lr>"])
    assert msg.get_all("route") == ["<sip:a;lr>", "<sip:b;lr>"]
    msg.set_values("route", [])
    assert not msg.has("route")


@pytest.mark.parametrize(
    ("name", "value"),
    [("X-Evil", "a\r\nBye: now"), ("X-Evil", "a\nb"), ("X-Evil", "a\rb"), ("Bad Name", "x"), ("", "x")],
)
def test_editing_refuses_header_injection(name: str, value: str) -> None:
    msg = invite()
    for edit in (lambda: msg.set(name, value), lambda: msg.add(name, value), lambda: msg.set_values(name, [value])):
        with pytest.raises(LocalProtocolError):
            edit()
    assert msg.serialize() == INVITE


def test_header_names() -> None:
    assert header_key(" V ") == "via"
    assert header_key("Call-Id") == "call-id"
    assert canonical_name("i") == "Call-ID"
    assert canonical_name("cseq") == "CSeq"
    assert canonical_name("x-foo-bar") == "X-Foo-Bar"


def test_copy_is_independent() -> None:
    msg = invite()
    dup = msg.copy()
    dup.set("max-forwards", "69")
    dup.headers[0].value = "changed"
    dup.body = b""
    dup.set_uri("sip:carol@example.com")
    assert msg.serialize() == INVITE
    assert dup.get("max-forwards") == "69"
    resp = make_response(msg, 200, "OK")
    rdup = resp.copy()
    rdup.status = 486
    assert resp.serialize().startswith(b"SIP/2.0 200 OK\r\n")
    assert rdup.serialize().startswith(b"SIP/2.0 486 OK\r\n")


# ---- serialization -----------------------------------------------------------------------------------
def test_untouched_message_round_trips() -> None:
    assert invite().serialize() == INVITE
    assert bytes(invite()) == INVITE


def test_body_change_rewrites_content_length_in_place() -> None:
    msg = invite()
    msg.body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n"
    out = msg.serialize()
    assert b"\r\nContent-Length: 31\r\n\r\nv=0\r\n" in out
    assert [h.key for h in msg.headers][-1] == "content-length"
    again = parse_datagram(out)
    assert again.body == msg.body and again.serialize() == out


def test_compact_content_length_with_leading_zeros_is_left_alone() -> None:
    data = INVITE.replace(b"Content-Length: 4", b"l: 0004")
    assert parse_datagram(data).serialize() == data


def test_constructed_message_gets_content_length_only_with_a_body() -> None:
    hdrs = [HeaderField("Via", "SIP/2.0/UDP a;branch=z9hG4bK1"), HeaderField("Call-ID", "x")]
    req = Request("OPTIONS", "sip:a@b", hdrs)
    assert req.serialize() == b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nCall-ID: x\r\n\r\n"
    req.body = b"hi"
    assert req.serialize().endswith(b"Call-ID: x\r\nContent-Length: 2\r\n\r\nhi")


def test_changed_start_line_fields_are_rendered_even_without_set_uri() -> None:
    data = INVITE.replace(b"INVITE sip:bob@198.18.0.2 SIP/2.0", b"INVITE sip:bob@198.18.0.2 sip/2.0")
    msg = parse_datagram(data)
    assert isinstance(msg, Request)
    assert msg.serialize() == data  # raw start line kept while unchanged
    msg.uri = "sip:carol@192.0.2.7"
    assert msg.serialize().startswith(b"INVITE sip:carol@192.0.2.7 SIP/2.0\r\n")
    msg.set_uri("sip:dave@192.0.2.8")
    assert msg.serialize().startswith(b"INVITE sip:dave@192.0.2.8 SIP/2.0\r\n")


def test_response_status_change_is_rendered() -> None:
    data = b"SIP/2.0 180 Ringing\r\n" + INVITE.split(b"\r\n", 1)[1]
    resp = parse_datagram(data)
    assert isinstance(resp, Response)
    assert resp.serialize() == data
    resp.status, resp.reason = 183, "Session Progress"
    assert resp.serialize().startswith(b"SIP/2.0 183 Session Progress\r\n")


def test_lf_only_message_round_trips() -> None:
    data = INVITE.replace(b"\r\n", b"\n")
    msg = parse_datagram(data)
    assert msg.line_ending == "\n"
    assert msg.serialize() == data
    msg.add("X-Added", "1")
    out = msg.serialize()
    assert b"\nX-Added: 1\n\nv=0\n" in out and b"\r" not in out


def test_folded_lines_keep_their_raw_text_until_changed() -> None:
    data = INVITE.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards:\r\n   70\r\nSubject: a\r\n\tb\r\n")
    msg = parse_datagram(data)
    assert msg.get("subject") == "a b" and msg.get("max-forwards") == "70"
    assert msg.serialize() == data
    msg.set("subject", "c")
    assert b"\r\nSubject: c\r\n" in msg.serialize()


def test_datagram_without_blank_line_round_trips() -> None:
    head = INVITE.split(b"\r\n\r\n")[0].replace(b"Content-Length: 4", b"Content-Length: 0")
    for data in (head, head + b"\r\n"):
        msg = parse_datagram(data)
        assert msg.body == b"" and msg.serialize() == data
    msg = parse_datagram(head)
    msg.body = b"x"
    assert msg.serialize().endswith(b"Content-Length: 1\r\n\r\nx")


def test_non_utf8_bytes_survive() -> None:
    data = INVITE.replace(b"To: Bob", b"To: B\xff\xfeb").replace(b"Allow:", b"X-Bin: \x80\x00\x01\r\nAllow:")
    msg = parse_datagram(data)
    assert msg.to.display == "B\udcff\udcfeb"
    assert msg.serialize() == data


# ---- parsing details ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("old", "new", "status"),
    [
        (b"Content-Length: 4", b"Content-Length: \xc2\xb2", 400),  # "²".isdigit() is True
        (b"Content-Length: 4", b"Content-Length: \xd9\xa4", 400),  # Arabic-Indic four
        (b"CSeq: 314159 INVITE", b"CSeq: \xd9\xa1 INVITE", 400),
        (b"Max-Forwards: 70", b"Max-Forwards: \xd9\xa7\xd9\xa0", 400),
        (b"Max-Forwards: 70", b"Max-Forwards: 256", 400),
        (b"Max-Forwards: 70", b"Max-Forwards: ", 400),  # empty is not zero
        (b"Content-Length: 4", b"Content-Length: ", 400),
        (b"Content-Length: 4", b"Content-Length: 1" + b"0" * 5000, 400),  # int() would refuse >4300 digits
        (b"CSeq: 314159 INVITE", b"CSeq: 314159\xc2\x85INVITE", 400),  # NEL is not LWS
        (b"CSeq: 314159 INVITE", b"CSeq: 2147483648 INVITE", 400),
        (b"Call-ID: a84b4c76e66710@198.18.0.1", b"Call-ID: a b", 400),
        (b"Call-ID: a84b4c76e66710@198.18.0.1", b"Call-ID: ", 400),
        (b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\nX-Smuggled: 1\r\n", 400),  # bare LF
        (b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\rX-Smuggled: 1\r\n", 400),  # bare CR
        (b"INVITE sip:bob@198.18.0.2 SIP/2.0\r\n", b"INVITE sip:bob@198.18.0.2 SIP/2.0\r\n folded\r\n", 400),
        (b"Max-Forwards: 70", b"Max Forwards: 70", 400),
        (b"Max-Forwards: 70", b"Max-Forwards 70", 400),
        (b"sip:bob@198.18.0.2 SIP", b"sip:bob@998.18.0.2 SIP", 400),
        (b"sip:bob@198.18.0.2 SIP", b"sip:bob@exa_mple!.com SIP", 400),
        (b"sip:bob@198.18.0.2 SIP", b"sip:bob@[2001:db8::1%25eth0] SIP", 400),
        (b"sip:bob@198.18.0.2 SIP", b"sip:bob@2001:db8::1 SIP", 400),
        (b"sip:bob@198.18.0.2 SIP", b"sip:bob@198.18.0.2:65536 SIP", 400),
        (b"sip:bob@198.18.0.2 SIP", b"sip:@198.18.0.2 SIP", 400),
        (b"sip:bob@198.18.0.2 SIP", b"http://x SIP", 416),
        (b"SIP/2.0/UDP 198.18.0.1:5060", b"SIP/3.0/UDP 198.18.0.1:5060", 400),
        (b"SIP/2.0/UDP 198.18.0.1:5060", b"\xc5\xbfIP/2.0/UDP 198.18.0.1:5060", 400),  # long s
        (b"To: Bob <sip:bob@198.18.0.2>", b"To: Bob <sip:bob@198.18.0.2> junk", 400),
        (b"To: Bob <sip:bob@198.18.0.2>", b'To: "Bob" x <sip:bob@198.18.0.2>', 400),
        (b"Contact: ", b"Contact: *, ", 400),
        (b"INVITE sip:bob@198.18.0.2 SIP/2.0", b"INVITE sip:bob@198.18.0.2 SIP/2.x", 400),
        (b"INVITE sip:bob@198.18.0.2 SIP/2.0", b"INV\xc3\x89TE sip:bob@198.18.0.2 SIP/2.0", 400),
    ],
)
def test_malformed_inputs_are_rejected(old: bytes, new: bytes, status: int) -> None:
    assert old in INVITE
    with pytest.raises(RemoteProtocolError) as exc:
        parse_datagram(INVITE.replace(old, new, 1))
    assert exc.value.status_hint == status, exc.value.reason


def test_contact_in_responses_is_checked_only_for_invite() -> None:
    base = b"SIP/2.0 200 OK\r\n" + INVITE.split(b"\r\n", 1)[1]
    bad = base.replace(b"Contact: ", b"Contact: <bad uri>, ", 1)
    with pytest.raises(RemoteProtocolError):
        parse_datagram(bad)
    other = bad.replace(b"CSeq: 314159 INVITE", b"CSeq: 314159 MESSAGE")
    assert parse_datagram(other).serialize() == other


def test_contact_star_is_allowed_in_register() -> None:
    data = (
        b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"
        b"To: <sip:a@example.com>\r\nFrom: <sip:a@example.com>;tag=1\r\nCall-ID: r1\r\n"
        b"CSeq: 2 REGISTER\r\nContact: *\r\nExpires: 0\r\nContent-Length: 0\r\n\r\n"
    )
    msg = parse_datagram(data)
    assert msg.contacts == [] and msg.serialize() == data


def test_header_lines_with_spaces_before_the_colon_and_case_in_version() -> None:
    data = INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards \t:\t70").replace(b" SIP/2.0\r\n", b" sip/2.0\r\n", 1)
    msg = parse_datagram(data)
    assert msg.get("max-forwards") == "70"
    assert msg.serialize() == data


def test_lf_message_whose_body_holds_a_crlf_blank_line() -> None:
    data = (
        INVITE.replace(b"\r\n", b"\n")
        .replace(b"Content-Length: 4", b"Content-Length: 6")
        .replace(b"\n\nv=0\n", b"\n\nv\r\n\r\n0")
    )
    msg = parse_datagram(data)
    assert msg.body == b"v\r\n\r\n0" and msg.serialize() == data


def test_oversize_datagram_is_513() -> None:
    data = INVITE.replace(b"Content-Length: 4", b"Content-Length: 70000") + b"x" * 70000
    with pytest.raises(RemoteProtocolError) as exc:
        parse_datagram(data)
    assert exc.value.status_hint == 513


def test_too_many_headers_is_513() -> None:
    data = INVITE.replace(b"Allow:", b"X-A: 1\r\n" * 300 + b"Allow:")
    with pytest.raises(RemoteProtocolError) as exc:
        parse_datagram(data)
    assert exc.value.status_hint == 513


def test_parse_cseq() -> None:
    assert parse_cseq(" 0009 \t INVITE ") == (9, "INVITE")
    for bad in ("1", "x INVITE", "1 INVITE x", "-1 INVITE", "99999999999 INVITE", "1 IN<VITE"):
        with pytest.raises(RemoteProtocolError):
            parse_cseq(bad)


# ---- make_response (RFC 3261 §8.2.6.2) --------------------------------------------------------------
def test_make_response_copies_the_required_headers_in_order() -> None:
    req = invite()
    resp = make_response(req, 486, "Busy Here", to_tag="b5")
    assert isinstance(resp, Response)
    assert (resp.status, resp.reason) == (486, "Busy Here")
    names = ["Via", "Via", "To", "From", "Call-ID", "CSeq", "Timestamp", "Content-Length"]
    assert [h.name for h in resp.headers] == names
    assert resp.get_all("via") == req.get_all("via")
    assert resp.values("via") == req.values("via")
    assert resp.get("from") == req.get("from")
    assert resp.to.tag == "b5" and resp.to.uri == req.to.uri
    assert resp.get("to") == "Bob <sip:bob@198.18.0.2>;tag=b5"
    assert resp.call_id == req.call_id and resp.cseq == req.cseq
    assert resp.get("timestamp") == "54.2"
    assert resp.get("content-length") == "0"
    for absent in ("record-route", "contact", "max-forwards", "allow", "content-type"):
        assert not resp.has(absent)
    out = resp.serialize()
    assert out.startswith(b"SIP/2.0 486 Busy Here\r\n") and out.endswith(b"Content-Length: 0\r\n\r\n")
    again = parse_datagram(out)
    assert isinstance(again, Response) and again.serialize() == out


def test_make_response_never_tags_a_100_and_keeps_an_existing_tag() -> None:
    req = invite()
    assert make_response(req, 100, "Trying", to_tag="x").to.tag is None
    assert make_response(req, 200, "OK").to.tag is None
    req.set("to", "<sip:bob@198.18.0.2>;tag=orig")
    assert make_response(req, 200, "OK", to_tag="new").to.tag == "orig"


def test_make_response_tag_after_a_trailing_semicolon() -> None:
    req = invite()
    req.set("to", "<sip:bob@198.18.0.2>;")
    resp = make_response(req, 180, "Ringing", to_tag="x")
    assert resp.get("to") == "<sip:bob@198.18.0.2>;tag=x"
    assert parse_datagram(resp.serialize()).to.tag == "x"


def test_make_response_follows_the_request_line_ending() -> None:
    req = parse_datagram(INVITE.replace(b"\r\n", b"\n"))
    assert isinstance(req, Request)
    out = make_response(req, 404, "Not Found", to_tag="t").serialize()
    assert b"\r" not in out and out.endswith(b"Content-Length: 0\n\n")


def test_make_response_refuses_bad_status_or_reason() -> None:
    req = invite()
    for status, reason in ((99, "x"), (700, "x"), (200, "O\r\nK")):
        with pytest.raises(LocalProtocolError):
            make_response(req, status, reason)
