"""SIP/SIPS/tel URIs, name-addr values and Via values."""

from __future__ import annotations

import ipaddress

import pytest

from sbc.sip.errors import RemoteProtocolError
from sbc.sip.uri import (
    NameAddr,
    Uri,
    Via,
    format_host,
    param_value,
    parse_params,
    split_quoted,
    unbracket,
    with_param,
    without_param,
)


def test_sip_uri_parts_and_round_trip() -> None:
    text = "sip:alice:secret@atlanta.example.com:5061;transport=tcp;lr?subject=project%20x&priority=urgent"
    uri = Uri.parse(text)
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == (
        "sip", "alice", "secret", "atlanta.example.com", 5061,
    )  # fmt: skip
    assert uri.params == (("transport", "tcp"), ("lr", None))
    assert uri.param("TRANSPORT") == "tcp" and uri.param("lr") == "" and uri.param("maddr") is None
    assert uri.headers == "subject=project%20x&priority=urgent"
    assert str(uri) == text


def test_ipv6_reference_with_port_and_params() -> None:
    uri = Uri.parse("sip:alice@[2001:db8::1]:5060;transport=tcp")
    assert uri.host == "[2001:db8::1]" and uri.port == 5060
    assert uri.address == ipaddress.IPv6Address("2001:db8::1")
    assert uri.param("transport") == "tcp"
    assert str(uri) == "sip:alice@[2001:db8::1]:5060;transport=tcp"
    moved = uri.with_host("2001:db8::2", None)
    assert str(moved) == "sip:alice@[2001:db8::2];transport=tcp"
    assert Uri.parse("sips:[::1]").host == "[::1]"
    assert format_host("::1") == "[::1]" and format_host("[::1]") == "[::1]" and unbracket("[::1]") == "::1"


def test_scheme_is_case_insensitive() -> None:
    uri = Uri.parse("SIP:ALICE@AtLanTa.CoM;Transport=udp")
    assert uri.scheme == "sip" and uri.host == "AtLanTa.CoM"


def test_user_part_may_hold_semicolon_question_mark_and_slash() -> None:
    uri = Uri.parse("sip:user;par=u%40example.net@example.com")
    assert uri.user == "user;par=u%40example.net" and uri.host == "example.com" and uri.params == ()
    odd = Uri.parse("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird@example.com;x")
    assert odd.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert odd.password == "&it+has=1,weird"
    assert odd.host == "example.com" and odd.params == (("x", None),) and odd.headers is None


def test_tel_uri() -> None:
    uri = Uri.parse("tel:+1-201-555-0123;phone-context=example.com")
    assert (uri.scheme, uri.user, uri.host, uri.port) == ("tel", "+1-201-555-0123", "", None)
    assert uri.param("phone-context") == "example.com"
    assert str(uri) == "tel:+1-201-555-0123;phone-context=example.com"
    assert Uri.parse("tel:7042;phone-context=example.com").user == "7042"
    assert uri.address is None


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("http://example.com", 416),
        ("nobodyKnowsThisScheme:totallyopaquecontent", 416),
        ("soap.beep://192.0.2.103:3002", 416),
        ("<sip:user@example.com>", 400),
        ("sip user@example.com", 400),
        ("example.com", 400),
        ("sip:", 400),
        ("sip:@example.com", 400),
        ("sip:user@", 400),
        ("sip:user@exa mple.com", 400),
        ("sip:user@example.com:", 400),
        ("sip:user@example.com:99999", 400),
        ("sip:user@example.com:\u0665\u0660", 400),
        ("sip:user@2001:db8::1", 400),
        ("sip:user@[2001:db8::zz]", 400),
        ("sip:user@[2001:db8::1", 400),
        ("sip:user@[fe80::1%eth0]", 400),
        ("sip:user@[::1]x", 400),
        ("sip:user@300.1.1.1", 400),
        ("sip:user@example.com;;lr", 400),
        ("sip:user@example.com;a b=c", 400),
        ('sip:user@example.com;x="y"', 400),
        ("tel:", 400),
        ("tel:+1 555", 400),
        ("tel:+1<555>", 400),
    ],
)
def test_bad_uris(text: str, status: int) -> None:
    with pytest.raises(RemoteProtocolError) as exc:
        Uri.parse(text)
    assert exc.value.status_hint == status


def test_name_addr_forms() -> None:
    na = NameAddr.parse('"Alice, <the> \\"boss\\"; esq." <sip:alice@[2001:db8::1]:5060;transport=tcp>;tag=88;x')
    assert na.display == '"Alice, <the> \\"boss\\"; esq."'
    assert na.uri.host == "[2001:db8::1]" and na.uri.param("transport") == "tcp"
    assert na.params == (("tag", "88"), ("x", None)) and na.tag == "88" and na.angle
    bare = NameAddr.parse("sip:bob@example.com;tag=5")
    assert bare.display is None and not bare.angle
    assert bare.uri.params == () and bare.tag == "5"  # addr-spec: the params are header params
    assert NameAddr.parse("Bob Smith <sip:bob@example.com>").display == "Bob Smith"
    assert NameAddr.parse("caller<sip:caller@example.com>").display == "caller"
    assert NameAddr.parse("J\u00fcrgen <sip:j@example.com>").display == "J\u00fcrgen"  # seen in the wild
    assert NameAddr.parse("<tel:+15551234>").uri.scheme == "tel"
    assert NameAddr.parse('sip:bob@example.com;x="a;b";tag=7').params == (("x", '"a;b"'), ("tag", "7"))


def test_name_addr_rendering_and_tags() -> None:
    na = NameAddr.parse('"Bob" <sip:bob@example.com>;tag=1;foo=bar')
    assert str(na) == '"Bob" <sip:bob@example.com>;tag=1;foo=bar'
    assert str(na.with_tag("2")) == '"Bob" <sip:bob@example.com>;tag=2;foo=bar'
    assert str(na.with_tag(None)) == '"Bob" <sip:bob@example.com>;foo=bar'
    bare = NameAddr.parse("sip:bob@example.com")
    assert str(bare.with_tag("9")) == "sip:bob@example.com;tag=9"
    # A URI with parameters must be bracketed once it is rendered as a name-addr value.
    moved = bare.with_uri(Uri.parse("sip:bob@192.0.2.1;transport=tcp"))
    assert str(moved) == "<sip:bob@192.0.2.1;transport=tcp>"
    assert NameAddr.parse(str(moved)).uri == moved.uri


@pytest.mark.parametrize(
    "text",
    [
        "",
        '"Mr. J. User <sip:j.user@example.com>',
        "Bell, Alexander <sip:a.g.bell@example.com>",
        "Bell; Alexander <sip:a.g.bell@example.com>",
        '"Bob" x <sip:bob@example.com>',
        '"Bob <sip:bob@example.com>',
        "<sip:bob@example.com",
        "<sip:bob@example.com> junk",
        '"Joe" <sip:joe@example.org>;;;;',
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
        "isbn:2983792873",
        "<name:John_Smith>",
    ],
)
def test_bad_name_addrs(text: str) -> None:
    with pytest.raises(RemoteProtocolError):
        NameAddr.parse(text)


def test_via_forms() -> None:
    via = Via.parse("SIP/2.0/UDP 198.18.0.1:5060;branch=z9hG4bK776asdhds;rport;received=192.0.2.9")
    assert (via.transport, via.host, via.port, via.branch) == ("UDP", "198.18.0.1", 5060, "z9hG4bK776asdhds")
    assert via.param("rport") == "" and via.param("received") == "192.0.2.9"
    assert str(via) == "SIP/2.0/UDP 198.18.0.1:5060;branch=z9hG4bK776asdhds;rport;received=192.0.2.9"
    spaced = Via.parse("SIP  / 2.0  / tcp     spindle.example.com   ; branch  =   z9hG4bK9ikj8")
    assert (spaced.transport, spaced.host, spaced.branch) == ("TCP", "spindle.example.com", "z9hG4bK9ikj8")
    v6 = Via.parse("sip/2.0/TLS [2001:db8::9]:5061;branch=z9hG4bKv6")
    assert v6.host == "[2001:db8::9]" and v6.port == 5061 and v6.transport == "TLS"
    assert Via.parse("SIP/2.0/UNKNOWN t4.example.com").branch is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP ",
        "SIP/3.0/UDP host",
        "SIP/2.0 host",
        "SIPX/2.0/UDP host",
        "\u017fIP/2.0/UDP host",
        "SIP/2.0/UDP host;;branch=x",
        "SIP/2.0/UDP 192.0.2.15;;",
        ";",
        "SIP/2.0/UDP host:port",
        "SIP/2.0/U<D>P host",
    ],
)
def test_bad_vias(text: str) -> None:
    with pytest.raises(RemoteProtocolError):
        Via.parse(text)


def test_params_helpers() -> None:
    params = parse_params(' a=1 ; B ;c="x;y" ')
    assert params == (("a", "1"), ("B", None), ("c", '"x;y"'))
    assert param_value(params, "b") == "" and param_value(params, "z") is None
    assert with_param(params, "A", "2") == (("a", "2"), ("B", None), ("c", '"x;y"'))
    assert with_param(params, "d", None)[-1] == ("d", None)
    assert without_param(params, "b") == (("a", "1"), ("c", '"x;y"'))
    assert parse_params("a;;b") == (("a", None), ("b", None))
    with pytest.raises(RemoteProtocolError):
        parse_params("a;;b", strict=True)


def test_split_quoted() -> None:
    assert split_quoted('"a,b" <sip:x@y;p=1,2>, c', ",") == ['"a,b" <sip:x@y;p=1,2>', " c"]
    assert split_quoted('"a\\",b",c', ",") == ['"a\\",b"', "c"]
    assert split_quoted("", ",") == [""]
