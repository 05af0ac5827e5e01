"""Writes the RFC 4475 torture messages as `<name>.dat` files beside this script.

Run `python tests/unit/sip/rfc4475/generate.py` after editing; the .dat files are committed.

Transcribed from the message text of RFC 4475 §3 with its conventions undone: every line ends with
CRLF, `<allOneLine>` blocks are joined, `<repeat count=N>x</repeat>` is written as `"x" * N`, and
`<hex>..</hex>` runs are written as the real bytes (NUL, BEL, DEL, UTF-8). One exception: the binary
S/MIME part of mpart01 (§3.1.1.11) is given in the RFC only as a long hex dump that was not available
here, so that part is a stand-in of the same kind (DER-looking bytes containing NUL, CR and LF) padded
to keep the RFC's `Content-Length: 553` exact. Everything else is byte for byte the RFC's message.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
CRLF = "\r\n"


def sdp(o_ip: str, c_ip: str | None = None, t: str = "0 0", *, session: bool = True) -> list[str]:
    """The SDP body most RFC 4475 messages carry (each line ends with CRLF)."""
    lines = ["v=0", f"o=mhandley 29739 7272939 IN IP4 {o_ip}"]
    if session:
        lines.append("s=-")
    lines.append(f"c=IN IP4 {c_ip or o_ip}")
    if session:
        lines.append(f"t={t}")
    lines += ["m=audio 49217 RTP/AVP 0 12", "m=video 3227 RTP/AVP 31", "a=rtpmap:31 LPC"]
    return lines


def message(head: list[str], body: list[str] | None = None, extra: str = "") -> bytes:
    text = CRLF.join(head) + CRLF + CRLF
    if body is not None:
        text += CRLF.join(body) + CRLF
    return (text + extra).encode("utf-8")


MESSAGES: dict[str, bytes] = {}

# ---- 3.1.1 valid messages ------------------------------------------------------------------------
MESSAGES["wsinv"] = message(
    [
        "INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0",
        "TO :",
        " sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n",
        'from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>',
        "  ;",
        "  tag = 98asjd8",
        "MaX-fOrWaRdS: 0068",
        "Call-ID: wsinv.ndaksdj@192.0.2.1",
        "Content-Length   : 150",
        "cseq: 0009",
        "  INVITE",
        "Via  : SIP  /   2.0",
        " /UDP",
        "    192.0.2.2;branch=390skdjuw",
        "s :",
        "NewFangledHeader:   newfangled value",
        " continued newfangled value",
        "UnknownHeaderWithUnusualValue: ;;,,;;,;",
        "Content-Type: application/sdp",
        "Route:",
        " <sip:services.example.com;lr;unknownwith=value;unknown-no-value>",
        "v:  SIP  / 2.0  / TCP     spindle.example.com   ;",
        "  branch  =   z9hG4bK9ikj8  ,",
        " SIP  /    2.0   / UDP  192.168.255.111   ; branch=",
        " z9hG4bK30239",
        'm:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =',
        "      newvalue ;",
        "  secondparam ; q = 0.33",
    ],
    sdp("192.0.2.3", "192.0.2.4"),
)

_INTMETH = "!interesting-Method0123456789_*+`.%indeed'~"
_UNUSUAL_USER = "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
MESSAGES["intmeth"] = message(
    [
        f"{_INTMETH} sip:{_UNUSUAL_USER}:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0",
        "Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~",
        f'To: "BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" <sip:{_UNUSUAL_USER}@example.com>',
        "From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>"
        ";fromParam''~+*_!.-%=\"работающий\";tag=_token~1'+`*%!-.",
        "Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{",
        f"CSeq: 139122385 {_INTMETH}",
        "Max-Forwards: 255",
        "extensionHeader-!.%*+_`'~:\ufeff大停電",
        "Content-Length: 0",
    ]
)

MESSAGES["esc01"] = message(
    [
        "INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0",
        "To: sip:%75se%72@example.com",
        "From: <sip:I%20have%20spaces@example.net>;tag=938",
        "Max-Forwards: 87",
        "i: esc01.239409asdfakjkn23onasd0-3234",
        "CSeq: 234234 INVITE",
        "Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw",
        "C: application/sdp",
        "Contact:",
        "  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>",
        "Content-Length: 150",
    ],
    sdp("192.0.2.1"),
)

MESSAGES["escnull"] = message(
    [
        "REGISTER sip:example.com SIP/2.0",
        "To: sip:null-%00-null@example.com",
        "From: sip:null-%00-null@example.com;tag=839923423",
        "Max-Forwards: 70",
        "Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd",
        "CSeq: 14398234 REGISTER",
        "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw",
        "Contact: <sip:%00@host5.example.com>",
        "Contact: <sip:%00%00@host5.example.com>",
        "L:0",
    ]
)

MESSAGES["esc02"] = message(
    [
        "RE%47IST%45R sip:registrar.example.com SIP/2.0",
        'To: "%Z%45" <sip:resource@example.com>',
        'From: "%Z%45" <sip:resource@example.com>;tag=f232jadfj23',
        "Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf",
        "Via: SIP/2.0/TCP host.example.com;branch=z9hG4bK209%fzsnel234",
        "CSeq: 29344 RE%47IST%45R",
        "Max-Forwards: 70",
        "Contact: <sip:alias1@host1.example.com>",
        "C%6Fntact: <sip:alias2@host2.example.com>",
        "Contact: <sip:alias3@host3.example.com>",
        "l: 0",
    ]
)

MESSAGES["lwsdisp"] = message(
    [
        "OPTIONS sip:user@example.com SIP/2.0",
        "To: sip:user@example.com",
        "From: caller<sip:caller@example.com>;tag=323",
        "Max-Forwards: 70",
        "Call-ID: lwsdisp.1234abcd@funky.example.com",
        "CSeq: 60 OPTIONS",
        "Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw",
        "l: 0",
    ]
)

_LONG_VIAS = [
    "Via: SIP/2.0/TCP sip33.example.com",
    "v: SIP/2.0/TCP sip32.example.com",
    "V: SIP/2.0/TCP sip31.example.com",
    "Via: SIP/2.0/TCP sip30.example.com",
    "ViA: SIP/2.0/TCP sip29.example.com",
    "VIa: SIP/2.0/TCP sip28.example.com",
    "VIA: SIP/2.0/TCP sip27.example.com",
    "via: SIP/2.0/TCP sip26.example.com",
    "viA: SIP/2.0/TCP sip25.example.com",
    "vIa: SIP/2.0/TCP sip24.example.com",
    "vIA: SIP/2.0/TCP sip23.example.com",
    "V :  SIP/2.0/TCP sip22.example.com",
    "v :  SIP/2.0/TCP sip21.example.com",
    "V  : SIP/2.0/TCP sip20.example.com",
    "v  : SIP/2.0/TCP sip19.example.com",
    "Via : SIP/2.0/TCP sip18.example.com",
    "Via  : SIP/2.0/TCP sip17.example.com",
    *(f"Via: SIP/2.0/TCP sip{n}.example.com" for n in range(16, 0, -1)),
    "Via: SIP/2.0/TCP host.example.com;received=192.0.2.5;branch=very" + "long" * 50 + "branchvalue",
]
MESSAGES["longreq"] = message(
    [
        "INVITE sip:user@example.com SIP/2.0",
        'To: "I have a user name of ' + "extreme" * 10 + ' proportion"<sip:user@example.com:6000'
        ";unknownparam1=very" + "long" * 20 + "value"
        ";longparam" + "name" * 25 + "=shortvalue"
        ";very" + "long" * 25 + "ParameterNameWithNoValue>",
        "F: sip:" + "amazinglylongcallername" * 5 + "@example.net"
        ";tag=1" + "298" * 50 + "2424"
        ";unknownheaderparam"
        + "name" * 20
        + "=unknowheaderparam"
        + "value" * 15
        + ";unknownValueless"
        + "paramname" * 10,
        "Call-ID: longreq.one" + "really" * 20 + "longcallid",
        "CSeq: 3882340 INVITE",
        "Unknown-"
        + "Long" * 20
        + "-Name: unknown-"
        + "long" * 20
        + "-value; unknown-"
        + "long" * 20
        + "-parameter-name = unknown-"
        + "long" * 20
        + "-parameter-value",
        *_LONG_VIAS,
        "Max-Forwards: 70",
        "Contact: <sip:" + "amazinglylongcallername" * 5 + "@host5.example.net>",
        "Content-Type: application/sdp",
        "l: 150",
    ],
    sdp("192.0.2.1"),
)

_DBLREQ_INVITE = message(
    [
        "INVITE sip:joe@example.com SIP/2.0",
        "t: sip:joe@example.com",
        "From: sip:caller@example.net;tag=141334",
        "Max-Forwards: 8",
        "Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15",
        "CSeq: 8 INVITE",
        "Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234",
        "Content-Type: application/sdp",
        "Content-Length: 150",
    ],
    [*sdp("192.0.2.15")[:5], "m=audio 49217 RTP/AVP 0 12", "m =video 3227 RTP/AVP 31", "a=rtpmap:31 LPC", ""],
)
MESSAGES["dblreq"] = (
    message(
        [
            "REGISTER sip:example.com SIP/2.0",
            "To: sip:j.user@example.com",
            "From: sip:j.user@example.com;tag=43251j3j324",
            "Max-Forwards: 8",
            "I: dblreq.0ha0isndaksdj99sdfafnl3lk233412",
            "Contact: sip:j.user@host.example.com",
            "CSeq: 8 REGISTER",
            "Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492",
            "Content-Length: 0",
        ],
        extra=CRLF,
    )
    + _DBLREQ_INVITE
)

MESSAGES["semiuri"] = message(
    [
        "OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0",
        "To: sip:j_user@example.com",
        "From: sip:caller@example.org;tag=33242",
        "Max-Forwards: 3",
        "Call-ID: semiuri.0ha0isndaksdj",
        "CSeq: 8 OPTIONS",
        "Accept: application/sdp, application/pkcs7-mime,",
        "        multipart/mixed, multipart/signed,",
        "        message/sip, message/sipfrag",
        "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw",
        "l: 0",
    ]
)

MESSAGES["transports"] = message(
    [
        "OPTIONS sip:user@example.com SIP/2.0",
        "To: sip:user@example.com",
        "From: <sip:caller@example.com>;tag=323",
        "Max-Forwards: 70",
        "Call-ID:  transports.kijh4akdnaqjkwendsasfdj",
        "Accept: application/sdp",
        "CSeq: 60 OPTIONS",
        "Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw",
        "Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf",
        "Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj",
        "Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en",
        "Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee",
        "l: 0",
    ]
)


def _mpart01() -> bytes:
    head = message(
        [
            "MESSAGE sip:kumiko@example.org SIP/2.0",
            "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-;rport",
            "Max-Forwards: 70",
            "Route: <sip:127.0.0.1:5080>",
            "Identity: r5mwreLuyDRYBi/0TiPwEsY3rEVsk/G2WxhgTV1PF7hHuLIK0YWVKZhKv9Mj8UeXqkMVbnVq37CD+813gvYjcBU"
            "aZngQmXc9WNZSDNGCzA+fWl9MEUHWIZo1CeJebdY/XlgKeTa0Olvq0rt70Q5jiSfbqMJmQFteeivUhkMWYUA=",
            "Contact: <sip:fluffy@127.0.0.1:5070>",
            "To: <sip:kumiko@example.org>",
            "From: <sip:fluffy@example.com>;tag=2fb0dcc9",
            "Call-ID: 3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..",
            "CSeq: 1 MESSAGE",
            "Content-Transfer-Encoding: binary",
            "Content-Type: multipart/mixed;boundary=7a9cbec02ceef655",
            "Date: Sat, 15 Oct 2005 04:44:56 GMT",
            "User-Agent: SIPimp.org/0.2.5 (curses)",
            "Content-Length: 553",
        ]
    )
    first = (
        b"--7a9cbec02ceef655\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        b"Hello\r\n--7a9cbec02ceef655\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\n"
    )
    closing = b"\r\n--7a9cbec02ceef655--\r\n"
    # Stand-in for the RFC's DER-encoded PKCS#7 blob: its real first bytes, then a fixed byte pattern
    # that walks through every octet value (so NUL, CR, LF and 0x80-0xFF all occur).
    der = bytes.fromhex("3082015206092a864886f70d010702a08201433082013f020101310930070605")
    filler = bytes((i * 37 + 11) % 256 for i in range(553 - len(first) - len(closing) - len(der)))
    body = first + der + filler + closing
    assert len(body) == 553, len(body)
    return head + body


MESSAGES["mpart01"] = _mpart01()

MESSAGES["unreason"] = message(
    [
        "SIP/2.0 200 = 2**3 * 5**2 но сто девяносто девять - простое",
        "Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923",
        "Call-ID: unreason.1234ksdfak3j2erwedfsASdf",
        "CSeq: 35 INVITE",
        "From: sip:user@example.com;tag=11141343",
        "To: sip:user@example.edu;tag=2229",
        "Content-Length: 154",
        "Content-Type: application/sdp",
        "Contact: <sip:user@host198.example.com>",
    ],
    sdp("192.0.2.198"),
)

MESSAGES["noreason"] = message(
    [
        "SIP/2.0 100 ",
        "Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe",
        "Call-ID: noreason.asndj203insdf99223ndf",
        "CSeq: 35 INVITE",
        "From: <sip:user@example.com>;tag=39ansfi3",
        "To: <sip:user@example.edu>;tag=902jndnke3",
        "Content-Length: 0",
        "Contact: <sip:user@host105.example.com>",
    ]
)

# ---- 3.1.2 invalid messages ----------------------------------------------------------------------
MESSAGES["badinv01"] = message(
    [
        "INVITE sip:user@example.com SIP/2.0",
        "To: sip:j.user@example.com",
        "From: sip:caller@example.net;tag=134161461246",
        "Max-Forwards: 7",
        "Call-ID: badinv01.0ha0isndaksdjasdf3234nas",
        "CSeq: 8 INVITE",
        "Via: SIP/2.0/UDP 192.0.2.15;;,;,,",
        'Contact: "Joe" <sip:joe@example.org>;;;;',
        "Content-Length: 152",
        "Content-Type: application/sdp",
    ],
    sdp("192.0.2.15"),
)

MESSAGES["clerr"] = message(
    [
        "INVITE sip:user@example.com SIP/2.0",
        "Max-Forwards: 80",
        "To: sip:j.user@example.com",
        "From: sip:caller@example.net;tag=93942939o2",
        "Contact: <sip:caller@hungry.example.net>",
        "Call-ID: clerr.0ha0isndaksdjweiafasdk3",
        "CSeq: 8 INVITE",
        "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bK-39234-23523",
        "Content-Type: application/sdp",
        "Content-Length: 9999",
    ],
    sdp("192.0.2.155"),
)

MESSAGES["ncl"] = message(
    [
        "INVITE sip:user@example.com SIP/2.0",
        "Max-Forwards: 254",
        "To: sip:j.user@example.com",
        "From: sip:caller@example.net;tag=32394234",
        "Call-ID: ncl.0ha0isndaksdj2193423r542w35",
        "CSeq: 0 INVITE",
        "Via: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw",
        "Contact: <sip:caller@example53.example.net>",
        "Content-Type: application/sdp",
        "Content-Length: -999",
    ],
    sdp("192.0.2.53"),
)

MESSAGES["scalar02"] = message(
    [
        "REGISTER sip:example.com SIP/2.0",
        "Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3",
        "To: <sip:user@example.com>",
        "From: <sip:user@example.com>;tag=239232jh3",
        "CSeq: 36893488147419103232 REGISTER",
        "Call-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32",
        "Max-Forwards: 300",
        "Expires: 1" + "0" * 100,
        "Contact: <sip:user@host129.example.com>",
        "  ;expires=280297596632815",
        "Content-Length: 0",
    ]
)

MESSAGES["scalarlg"] = message(
    [
        "SIP/2.0 503 Service Unavailable",
        "Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bKzzxdiwo34sw;received=192.0.2.129",
        "To: <sip:user@example.com>",
        "From: <sip:other@example.net>;tag=2easdjfejw",
        "CSeq: 9292394834772304023312 OPTIONS",
        "Call-ID: scalarlg.noase0of0234hn2qofoaf0232aewf2394r",
        "Retry-After: 949302838503028349304023988",
        'Warning: 1812 overture "In Progress"',
        "Content-Length: 0",
    ]
)

MESSAGES["quotbal"] = message(
    [
        "INVITE sip:user@example.com SIP/2.0",
        'To: "Mr. J. User <sip:j.user@example.com>',
        "From: sip:caller@example.net;tag=93334",
        "Max-Forwards: 10",
        "Call-ID: quotbal.aksdj",
        "Contact: <sip:caller@host59.example.net>",
        "CSeq: 8 INVITE",
        "Via: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234",
        "Content-Type: application/sdp",
        "Content-Length: 152",
    ],
    sdp("192.0.2.15"),
)

MESSAGES["ltgtruri"] = message(
    [
        "INVITE <sip:user@example.com> SIP/2.0",
        "To: sip:user@example.com",
        "From: sip:caller@example.net;tag=39291",
        "Max-Forwards: 23",
        "Call-ID: ltgtruri.1@192.0.2.5",
        "CSeq: 1 INVITE",
        "Via: SIP/2.0/UDP 192.0.2.5",
        "Contact: <sip:caller@host5.example.net>",
        "Content-Type: application/sdp",
        "Content-Length: 159",
    ],
    sdp("192.0.2.5", t="3149328700 0"),
)

MESSAGES["lwsruri"] = message(
    [
        "INVITE sip:user@example.com; lr SIP/2.0",
        "To: sip:user@example.com;tag=3xfe-9921883-z9f",
        "From: sip:caller@example.net;tag=231413434",
        "Max-Forwards: 5",
        "Call-ID: lwsruri.asdfasdoeoi2323-asdfwrn23-asd834rk423",
        "CSeq: 2130706432 INVITE",
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKkdjuw2395",
        "Contact: <sip:caller@host1.example.net>",
        "Content-Type: application/sdp",
        "Content-Length: 159",
    ],
    sdp("192.0.2.1", t="3149328700 0"),
)

MESSAGES["lwsstart"] = message(
    [
        "INVITE  sip:user@example.com  SIP/2.0",
        "Max-Forwards: 8",
        "To: sip:user@example.com",
        "From: sip:caller@example.net;tag=8814",
        "Call-ID: lwsstart.dfknq234oi243099adsdfnawe3@example.com",
        "CSeq: 1893884 INVITE",
        "Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw3923",
        "Contact: <sip:caller@host1.example.net>",
        "Content-Type: application/sdp",
        "Content-Length: 150",
    ],
    sdp("192.0.2.1"),
)

MESSAGES["trws"] = message(
    [
        "OPTIONS sip:remote-target@example.com SIP/2.0  ",
        "Via: SIP/2.0/TCP host1.examle.com;branch=z9hG4bK299342093",
        "To: <sip:remote-target@example.com>",
        "From: <sip:local-resource@example.com>;tag=329429089",
        "Call-ID: trws.oicu34958239neffasdhr2345r",
        "Accept: application/sdp",
        "CSeq: 238923 OPTIONS",
        "Max-Forwards: 70",
        "Content-Length: 0",
    ]
)

MESSAGES["escruri"] = message(
    [
        "INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0",
        "To: sip:user@example.com",
        "From: sip:caller@example.net;tag=341518",
        "Max-Forwards: 7",
        "Contact: <sip:caller@host39923.example.net>",
        "Call-ID: escruri.23940-asdfhj-aje3br-234q098w-fawerh2q-h4n5",
        "CSeq: 149209342 INVITE",
        "Via: SIP/2.0/UDP host-of-the-hour.example.com;branch=z9hG4bKkdjuw",
        "Content-Type: application/sdp",
        "Content-Length: 150",
    ],
    sdp("192.0.2.1"),
)

MESSAGES["baddate"] = message(
    [
        "INVITE sip:user@example.com SIP/2.0",
        "To: sip:user@example.com",
        "From: sip:caller@example.net;tag=2234923",
        "Max-Forwards: 70",
        "Call-ID: baddate.239423mnsadf3j23lj42--sedfnm234",
        "CSeq: 1392934 INVITE",
        "Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw",
        "Date: Fri, 01 Jan 2010 16:00:00 EST",
        "Contact: <sip:caller@host5.example.net>",
        "Content-Type: application/sdp",
        "Content-Length: 150",
    ],
    sdp("192.0.2.5"),
)

MESSAGES["regbadct"] = message(
    [
        "REGISTER sip:example.com SIP/2.0",
        "To: sip:user@example.com",
        "From: sip:user@example.com;tag=998332",
        "Max-Forwards: 70",
        "Call-ID: regbadct.k345asrl3fdbv@10.0.0.1",
        "CSeq: 1 REGISTER",
        "Via: SIP/2.0/UDP 135.180.130.133:5060;branch=z9hG4bKkdjuw",
        "Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E",
        "l: 0",
    ]
)

MESSAGES["badaspec"] = message(
    [
        "OPTIONS sip:user@example.org SIP/2.0",
        "Via: SIP/2.0/UDP host4.example.com:5060;branch=z9hG4bKkdju43234",
        "Max-Forwards: 70",
        'From: "Bell, Alexander" <sip:a.g.bell@example.com>;tag=433423',
        'To: "Watson, Thomas" < sip:t.watson@example.org >',
        "Call-ID: badaspec.sdf0234n2nds0a099u23h3hnnw009cdkne3",
        "Accept: application/sdp",
        "CSeq: 3923239 OPTIONS",
        "l: 0",
    ]
)

MESSAGES["baddn"] = message(
    [
        "OPTIONS sip:t.watson@example.org SIP/2.0",
        "Via:     SIP/2.0/UDP c.example.com:5060;branch=z9hG4bKkdjuw",
        "Max-Forwards:      70",
        "From:    Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
        "To:      Watson, Thomas <sip:t.watson@example.org>",
        "Call-ID: baddn.31415@c.example.com",
        "Accept: application/sdp",
        "CSeq:    3923239 OPTIONS",
        "l: 0",
    ]
)

MESSAGES["badvers"] = message(
    [
        "OPTIONS sip:t.watson@example.org SIP/7.0",
        "Via:     SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw",
        "Max-Forwards:     70",
        "From:    A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe",
        "To:      T. Watson <sip:t.watson@example.org>",
        "Call-ID: badvers.31417@c.example.com",
        "CSeq:    1 OPTIONS",
        "l: 0",
    ]
)

MESSAGES["mismatch01"] = message(
    [
        "OPTIONS sip:user@example.com SIP/2.0",
        "To: sip:j.user@example.com",
        "From: sip:caller@example.net;tag=34525",
        "Max-Forwards: 6",
        "Call-ID: mismatch01.dj0234sxdfl3",
        "CSeq: 8 INVITE",
        "Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw",
        "l: 0",
    ]
)

MESSAGES["mismatch02"] = message(
    [
        "NEWMETHOD sip:user@example.com SIP/2.0",
        "To: sip:j.user@example.com",
        "From: sip:caller@example.net;tag=34525",
        "Max-Forwards: 6",
        "Call-ID: mismatch02.dj0234sxdfl3",
        "CSeq: 8 INVITE",
        "Contact: <sip:caller@host.example.net>",
        "Via: SIP/2.0/UDP host.example.net;branch=z9hG4bKkdjuw",
        "Content-Type: application/sdp",
        "l: 138",
    ],
    sdp("192.0.2.1", session=False),
)

MESSAGES["bigcode"] = message(
    [
        "SIP/2.0 4294967301 better not break the receiver",
        "Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe",
        "Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i",
        "CSeq: 353494 INVITE",
        "From: <sip:user@example.com>;tag=39ansfi3",
        "To: <sip:user@example.edu>;tag=902jndnke3",
        "Content-Length: 0",
        "Contact: <sip:user@host105.example.com>",
    ]
)

# ---- 3.2 transaction layer semantics -------------------------------------------------------------
MESSAGES["badbranch"] = message(
    [
        "OPTIONS sip:user@example.com SIP/2.0",
        "To: sip:user@example.com",
        "From: sip:caller@example.org;tag=33242",
        "Max-Forwards: 3",
        "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK",
        "Accept: application/sdp",
        "Call-ID: badbranch.sadonfo23i420jv0as0derf3j3n",
        "CSeq: 8 OPTIONS",
        "l: 0",
    ]
)

# ---- 3.3 application layer semantics -------------------------------------------------------------
MESSAGES["insuf"] = message(
    [
        "INVITE sip:user@example.com SIP/2.0",
        "CSeq: 193942 INVITE",
        "Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf",
        "Content-Type: application/sdp",
        "l: 152",
    ],
    sdp("192.0.2.95"),
)

MESSAGES["unkscm"] = message(
    [
        "OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0",
        "To: sip:user@example.com",
        "From: sip:caller@example.net;tag=384",
        "Max-Forwards: 3",
        "Call-ID: unkscm.nasdfasser0q239nwsdfasdkl34",
        "CSeq: 3923423 OPTIONS",
        "Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234",
        "Content-Length: 0",
    ]
)

MESSAGES["novelsc"] = message(
    [
        "OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0",
        "To: sip:user@example.com",
        "From: sip:caller@example.net;tag=384",
        "Max-Forwards: 3",
        "Call-ID: novelsc.asdfasser0q239nwsdfasdkl34",
        "CSeq: 3923423 OPTIONS",
        "Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234",
        "Content-Length: 0",
    ]
)

MESSAGES["unksm2"] = message(
    [
        "REGISTER sip:example.com SIP/2.0",
        "To: isbn:2983792873",
        "From: <http://www.example.com>;tag=3234233",
        "Call-ID: unksm2.daksdj@hyphenated-host.example.com",
        "CSeq: 234902 REGISTER",
        "Max-Forwards: 70",
        "Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKkdjuw",
        "Contact: <name:John_Smith>",
        "l: 0",
    ]
)

MESSAGES["bext01"] = message(
    [
        "OPTIONS sip:user@example.com SIP/2.0",
        "To: sip:j_user@example.com",
        "From: sip:caller@example.net;tag=242etr",
        "Max-Forwards: 6",
        "Call-ID: bext01.0ha0isndaksdj",
        "Require: nothingSupportsThis, nothingSupportsThisEither",
        "Proxy-Require: noProxiesSupportThis, norDoAnyProxiesSupportThis",
        "CSeq: 8 OPTIONS",
        "Via: SIP/2.0/TLS fold-and-staple.example.com;branch=z9hG4bKkdjuw",
        "Content-Length: 0",
    ]
)

MESSAGES["invut"] = message(
    [
        "INVITE sip:user@example.com SIP/2.0",
        "Contact: <sip:caller@host5.example.net>",
        "To: sip:j.user@example.com",
        "From: sip:caller@example.net;tag=8392034",
        "Max-Forwards: 70",
        "Call-ID: invut.0ha0isndaksdjadsfij34n23d",
        "CSeq: 235448 INVITE",
        "Via: SIP/2.0/UDP somehost.example.com;branch=z9hG4bKkdjuw",
        "Content-Type: application/unknownformat",
        "Content-Length: 40",
    ],
    ["<audio>", ' <pcmu port="443"/>', "</audio>"],
)

MESSAGES["regaut01"] = message(
    [
        "REGISTER sip:example.com SIP/2.0",
        "To: sip:j.user@example.com",
        "From: sip:j.user@example.com;tag=87321hj23128",
        "Max-Forwards: 8",
        "Call-ID: regaut01.0ha0isndaksdj",
        "CSeq: 9338 REGISTER",
        "Via: SIP/2.0/TCP 192.0.2.253;branch=z9hG4bKkdjuw",
        "Authorization: NoOneKnowsThisScheme opaque-data=here",
        "Content-Length:0",
    ]
)

MESSAGES["multi01"] = message(
    [
        "INVITE sip:user@company.com SIP/2.0",
        "Contact: <sip:caller@host25.example.net>",
        "Via: SIP/2.0/UDP 192.0.2.25;branch=z9hG4bKkdjuw",
        "Max-Forwards: 70",
        "CSeq: 5 INVITE",
        "Call-ID: multi01.98asdh@192.0.2.1",
        "CSeq: 59 INVITE",
        "Call-ID: multi01.98asdh@192.0.2.2",
        "From: sip:caller@example.com;tag=3413415",
        "To: sip:user@example.com",
        "To: sip:other@example.net",
        "From: sip:caller@example.net;tag=2923420123",
        "Content-Type: application/sdp",
        "l: 154",
        "Contact: <sip:caller@host36.example.net>",
        "Max-Forwards: 5",
    ],
    [*sdp("192.0.2.25"), ""],
)

MESSAGES["mcl01"] = message(
    [
        "OPTIONS sip:user@example.com SIP/2.0",
        "Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bK293423",
        "To: sip:user@example.com",
        "From: sip:other@example.net;tag=3923942",
        "Call-ID: mcl01.fhn2323orihawfdoa3o4r52o3irsdf",
        "CSeq: 15932 OPTIONS",
        "Content-Length: 13",
        "Max-Forwards: 60",
        "Content-Length: 5",
        "Content-Type: text/plain",
    ],
    ["There's no way to know how many octets are supposed to be here."],
)

MESSAGES["bcast"] = message(
    [
        "SIP/2.0 200 OK",
        "Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923",
        "Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23",
        "Call-ID: bcast.0384840201234ksdfak3j2erwedfsASdf",
        "CSeq: 35 INVITE",
        "From: sip:user@example.com;tag=11141343",
        "To: sip:user@example.edu;tag=2229",
        "Content-Length: 154",
        "Content-Type: application/sdp",
        "Contact: <sip:user@host28.example.com>",
    ],
    sdp("192.0.2.198"),
)

MESSAGES["zeromf"] = message(
    [
        "OPTIONS sip:user@example.com SIP/2.0",
        "To: sip:user@example.com",
        "From: sip:caller@example.net;tag=3ghsd41",
        "Call-ID: zeromf.jfasdlfnm2o2l43r5u0asdfas",
        "CSeq: 39234321 OPTIONS",
        "Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw2349i",
        "Max-Forwards: 0",
        "Content-Length: 0",
    ]
)

MESSAGES["cparam01"] = message(
    [
        "REGISTER sip:example.com SIP/2.0",
        "Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw",
        "Max-Forwards: 70",
        "From: sip:watson@example.com;tag=DkfVgjkrtMwaerKKpe",
        "To: sip:watson@example.com",
        "Call-ID: cparam01.70710@saturn.example.com",
        "CSeq: 2 REGISTER",
        "Contact: sip:+19725552222@gw1.example.net;unknownparam",
        "l: 0",
    ]
)

MESSAGES["cparam02"] = message(
    [
        "REGISTER sip:example.com SIP/2.0",
        "Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw",
        "Max-Forwards: 70",
        "From: sip:watson@example.com;tag=838293",
        "To: sip:watson@example.com",
        "Call-ID: cparam02.70710@saturn.example.com",
        "CSeq: 3 REGISTER",
        "Contact: <sip:+19725552222@gw1.example.net;unknownparam>",
        "l: 0",
    ]
)

MESSAGES["regescrt"] = message(
    [
        "REGISTER sip:example.com SIP/2.0",
        "To: sip:user@example.com",
        "From: sip:user@example.com;tag=8",
        "Max-Forwards: 70",
        "Call-ID: regescrt.k345asrl3fdbv@192.0.2.1",
        "CSeq: 14398234 REGISTER",
        "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw",
        "M: <sip:user@example.com?Route=%3Csip:sip.example.com%3E>",
        "L:0",
    ]
)

MESSAGES["sdp01"] = message(
    [
        "INVITE sip:user@example.com SIP/2.0",
        "To: sip:j_user@example.com",
        "Contact: <sip:caller@host15.example.net>",
        "From: sip:caller@example.net;tag=234",
        "Max-Forwards: 5",
        "Call-ID: sdp01.ndaksdj9342dasdd",
        "Accept: text/nobodyKnowsThis",
        "CSeq: 8 INVITE",
        "Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw",
        "Content-Length: 150",
        "Content-Type: application/sdp",
    ],
    sdp("192.0.2.5"),
)

# ---- 3.4 backward compatibility ------------------------------------------------------------------
MESSAGES["inv2543"] = message(
    [
        "INVITE sip:UserB@example.com SIP/2.0",
        "Via: SIP/2.0/UDP iftgw.example.com",
        "From: <sip:+13035551111@ift.client.example.net;user=phone>",
        "Record-Route: <sip:UserB@example.com;maddr=ss1.example.com>",
        "To: sip:+16505552222@ss1.example.net;user=phone",
        "Call-ID: inv2543.1717@ift.client.example.com",
        "CSeq: 56 INVITE",
        "Content-Type: application/sdp",
    ],
    [
        "v=0",
        "o=mhandley 29739 7272939 IN IP4 192.0.2.5",
        "s=-",
        "c=IN IP4 192.0.2.5",
        "t=0 0",
        "m=audio 49217 RTP/AVP 0",
    ],
)


def main() -> None:
    for name, data in MESSAGES.items():
        (HERE / f"{name}.dat").write_bytes(data)
    print(f"wrote {len(MESSAGES)} messages to {HERE}")


if __name__ == "__main__":
    main()
