"""What the B2BUA does to an SDP before forwarding it: anchor the media on the SBC, or only hide o=."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from sbc.sdp.endpoints import is_address_hold
from sbc.sdp.fields import Address, RtcpAttribute
from sbc.sdp.lines import content, replace_content
from sbc.sdp.origin import OriginRewriter
from sbc.sdp.session import MediaSection, SessionDescription

_UNSPECIFIED: dict[int, Address] = {4: IPv4Address("0.0.0.0"), 6: IPv6Address("::")}
# Lines of free text or attributes that may name the sender's addresses: `a=ssrc:<id> cname:user@host`
# (RFC 5576 §4.1, the RTCP CNAME of RFC 3550 §6.5.1), `a=tool:`, vendor attributes, i=, u=, e=, p=.
_SCRUBBED_LINES = ("a=", "i=", "u=", "e=", "p=")
# Attributes left alone: values that are encodings, not text (a DTLS fingerprint can look like an IPv6
# address, SRTP keys must reach the far end byte for byte), and a=rtcp, which anchoring rewrites.
_OPAQUE_ATTRIBUTES = frozenset({"crypto", "fingerprint", "key-mgmt", "ice-ufrag", "ice-pwd", "rtcp", "rtpmap", "fmtp"})

# Replaces the sender side's addresses in a line of text by the SBC's address toward the receiver.
Scrub = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class MediaAnchor:
    """The SBC's media address and ports for one stream, in the realm the SDP is sent to.

    `rtcp_port` None: RTCP on RTP port + 1, or on the RTP port itself when the stream uses rtcp-mux.
    """

    address: Address
    rtp_port: int
    rtcp_port: int | None = None

    def __post_init__(self) -> None:
        if not 0 < self.rtp_port <= 65535:
            raise ValueError(f"anchor RTP port out of range: {self.rtp_port}")
        if self.rtcp_port is not None and not 0 < self.rtcp_port <= 65535:
            raise ValueError(f"anchor RTCP port out of range: {self.rtcp_port}")


def _anchor_rtcp(section: MediaSection, anchor: MediaAnchor, address: Address) -> MediaSection:
    if section.rtcp_mux:
        # RFC 5761 §5.1.3: next to rtcp-mux, a=rtcp says where RTCP goes should mux be refused. Point it
        # at the anchor (its RTP port when it has no RTCP port, as RFC 8858 wants for mux-only), never add one.
        port = anchor.rtcp_port if anchor.rtcp_port is not None else anchor.rtp_port
        if section.rtcp is None:
            return section
    else:
        port = anchor.rtcp_port if anchor.rtcp_port is not None else anchor.rtp_port + 1
        if section.rtcp is None and port == anchor.rtp_port + 1:
            return section  # RFC 3605 §2: the default needs no attribute
    keep_address = section.rtcp is not None and section.rtcp.address is not None
    return section.with_rtcp(RtcpAttribute(port, address if keep_address else None))


def anchor_sdp(
    sd: SessionDescription,
    anchors: Sequence[MediaAnchor | None],
    origin: OriginRewriter,
    *,
    hide: Address | None = None,
    scrub: Scrub | None = None,
) -> bytes:
    """Point every anchored stream at the SBC: c= (IN IP4 or IN IP6), m= port, a=rtcp; drop ICE; hide o=.

    `anchors` has one entry per m= line in order; None leaves that stream's address and port alone, and
    a rejected stream (port 0) is never anchored whatever its entry says. A rejected stream stays in
    its place with port 0, but with `hide` (the SBC's address in the realm the SDP goes to) an address
    of its own (c=, a=rtcp) is replaced too, so not even a dead stream shows the other side's address.
    A stream on old-style hold (c=0.0.0.0, RFC 3264 §8.4) stays on hold: it gets the unspecified
    address of the anchor's family. With `scrub`, attributes and text lines that name addresses of
    the sender's side are edited in place (`scrub_attributes`). All other lines (a=crypto included) go
    out byte for byte and in order.
    """
    if len(anchors) != len(sd.media):
        raise ValueError(f"{len(anchors)} anchors given for {len(sd.media)} media sections")
    used: list[MediaAnchor | None] = []
    targets: list[Address | None] = []
    for index, (section, anchor) in enumerate(zip(sd.media, anchors, strict=True)):
        if section.rejected and hide is not None and section.connection is not None:
            used.append(None)
            targets.append(hide)
        elif anchor is None or section.rejected:
            used.append(None)
            targets.append(None)
        else:
            used.append(anchor)
            targets.append(_UNSPECIFIED[anchor.address.version] if is_address_hold(sd, index) else anchor.address)
    anchored = sd.with_connections(targets)
    media: list[MediaSection] = []
    for section, anchor, target in zip(anchored.media, used, targets, strict=True):
        if anchor is not None and target is not None:
            section = _anchor_rtcp(section.with_port(anchor.rtp_port), anchor, target)
        elif section.rejected and hide is not None and section.rtcp is not None and section.rtcp.address is not None:
            section = section.with_rtcp(RtcpAttribute(section.rtcp.port, hide))
        media.append(section)
    out = anchored.with_media(media).without_ice()
    if scrub is not None:
        out = scrub_attributes(out, scrub)
    return bytes(origin.rewrite(out))


def scrub_attributes(sd: SessionDescription, scrub: Scrub) -> SessionDescription:
    """Topology hiding inside SDP: every attribute and text line (`_SCRUBBED_LINES`) except the opaque
    ones goes through `scrub`, edited in place; c=, m= and o= are the anchoring's and origin's business."""
    session_lines = _scrubbed(sd.session_lines, scrub)
    media = [dataclasses.replace(m, lines=_scrubbed(m.lines, scrub)) for m in sd.media]
    return dataclasses.replace(sd, session_lines=session_lines, media=tuple(media))


def _scrubbed(lines: tuple[str, ...], scrub: Scrub) -> tuple[str, ...]:
    out: list[str] = []
    for line in lines:
        if line.startswith(_SCRUBBED_LINES) and not _opaque(line):
            text = content(line)
            new = scrub(text)
            if new != text:
                line = replace_content(line, new)
        out.append(line)
    return tuple(out)


def _opaque(line: str) -> bool:
    if not line.startswith("a="):
        return False
    name = content(line)[2:].split(":", 1)[0].strip().lower()
    return name in _OPAQUE_ATTRIBUTES


def hide_origin_only(sd: SessionDescription, origin: OriginRewriter) -> bytes:
    """Direct media: the SDP goes out unchanged apart from o=."""
    return bytes(origin.rewrite(sd))
