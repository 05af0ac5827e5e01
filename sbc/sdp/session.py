"""The lossless session description: SDP lines edited in place, never regenerated (RFC 8866).

`SessionDescription.parse(body)` splits the body into lines once, reads the few fields the SBC needs
(o=, c=, m=, a=rtcp, a=rtcp-mux, direction, ICE) and keeps every line as written; `bytes(sd)` joins
them back, so an untouched description gives back the exact input. Everything is immutable: each
`with_*`/`without_*` method returns a new description that shares the unchanged lines; a rewritten
line keeps its own line ending and an inserted one takes the body's (CRLF normally, bare LF tolerated).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sbc.sdp.errors import SdpError
from sbc.sdp.fields import (
    DIRECTIONS,
    ICE_ATTRIBUTES,
    Address,
    Direction,
    MediaLine,
    Origin,
    RtcpAttribute,
    parse_connection,
    render_connection,
    render_media_port,
)
from sbc.sdp.lines import ENCODING, ERRORS, content, insert_line, join_lines, replace_content, split_lines

__all__ = ["MediaSection", "SessionDescription"]


# RFC 8866 §5: every line is <type>=<value> with a one-letter type. Blank lines (a stray CRLF at the
# end is common) are not SDP but harmless, so they pass through like any line we do not read.
# One search over the whole body is much cheaper than a check per line.
_BAD_LINE = re.compile(r"^(?![A-Za-z]=|\r?$).*", re.MULTILINE)

# The attributes the parser reads; any other a= line is only carried.
_READ_ATTRIBUTES = frozenset({"rtcp", "rtcp-mux", *ICE_ATTRIBUTES, *DIRECTIONS})


def _attribute(line: str) -> tuple[str, str]:
    """(name, value) of an `a=name:value` or `a=name` line; the value keeps the line ending."""
    name, colon, value = line[2:].partition(":")
    return (name, value) if colon else (name.rstrip("\r\n"), "")


def _is_ice(line: str) -> bool:
    return line.startswith("a=") and _attribute(line)[0] in ICE_ATTRIBUTES


def _replace_first(lines: tuple[str, ...], match: Callable[[str], bool], new: str) -> tuple[str, ...]:
    for i, line in enumerate(lines):
        if match(line):
            return (*lines[:i], replace_content(line, new), *lines[i + 1 :])
    raise LookupError(new)  # pragma: no cover - callers only replace lines the parser found


def _is_connection(line: str) -> bool:
    return line.startswith("c=")


def _is_rtcp(line: str) -> bool:
    return line.startswith("a=rtcp:")


def _check_port(port: int) -> None:
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range: {port}")


@dataclass(frozen=True, slots=True)
class MediaSection:
    """One m= line and the lines up to the next one. `lines[0]` is the m= line; lines keep their endings.

    `connection`, `direction` are this section's own c= and direction attribute (None when absent);
    `SessionDescription.connection_address()` / `.media_direction()` give the effective values.
    """

    lines: tuple[str, ...]
    media: str
    port: int
    port_count: int | None
    proto: str
    formats: tuple[str, ...]
    connection: Address | None
    rtcp: RtcpAttribute | None
    rtcp_mux: bool
    direction: Direction | None
    has_ice: bool
    eol: str

    @classmethod
    def _from_lines(cls, lines: tuple[str, ...], eol: str) -> MediaSection:
        """Read a section whose lines `SessionDescription.parse` has already checked for form."""
        m_line = MediaLine.parse(content(lines[0])[2:])
        connection: Address | None = None
        rtcp: RtcpAttribute | None = None
        rtcp_mux = False
        direction: Direction | None = None
        has_ice = False
        for line in lines[1:]:
            kind = line[:2]
            if kind == "a=":
                name, value = _attribute(line)
                if name not in _READ_ATTRIBUTES:
                    continue
                if name == "rtcp":
                    if rtcp is not None:
                        raise SdpError(f"more than one a=rtcp in m={m_line.media}")
                    rtcp = RtcpAttribute.parse(value)
                elif name == "rtcp-mux":  # RFC 5761 §5.1.1
                    rtcp_mux = True
                elif name in ICE_ATTRIBUTES:
                    has_ice = True
                elif direction is None and name in DIRECTIONS:
                    direction = DIRECTIONS[name]
            elif kind == "c=":
                if connection is not None:
                    raise SdpError(f"more than one c= line in m={m_line.media} (multicast layering is not supported)")
                connection = parse_connection(line[2:])
        return cls(
            lines,
            m_line.media,
            m_line.port,
            m_line.port_count,
            m_line.proto,
            m_line.formats,
            connection,
            rtcp,
            rtcp_mux,
            direction,
            has_ice,
            eol,
        )

    @property
    def rejected(self) -> bool:
        """RFC 3264 §6: port 0 in an answer (or offer) means the stream is rejected / disabled."""
        return self.port == 0

    @property
    def crypto(self) -> tuple[str, ...]:
        """The `a=crypto:` lines (RFC 4568 SDES), verbatim without their line endings; never edited."""
        return tuple(content(line) for line in self.lines if line.startswith("a=crypto:"))

    def with_port(self, port: int) -> MediaSection:
        """The m= port replaced; media, port count, proto and formats stay as written."""
        _check_port(port)
        if port == self.port:
            return self
        first = replace_content(self.lines[0], render_media_port(content(self.lines[0])[2:], port))
        return dataclasses.replace(self, lines=(first, *self.lines[1:]), port=port)

    def with_connection(self, address: Address) -> MediaSection:
        """Rewrite this section's c= line, or insert one after m= and i= (RFC 8866 §5 order)."""
        if address == self.connection:
            return self
        new = render_connection(address)
        if self.connection is not None:
            lines = _replace_first(self.lines, _is_connection, new)
        else:
            index = 1
            while index < len(self.lines) and self.lines[index].startswith("i="):
                index += 1
            lines = insert_line(self.lines, index, new, self.eol)
        return dataclasses.replace(self, lines=lines, connection=address)

    def with_rtcp(self, rtcp: RtcpAttribute) -> MediaSection:
        """Rewrite the a=rtcp line (RFC 3605), or add one after the section's last non-blank line."""
        if rtcp == self.rtcp:
            return self
        new = rtcp.render()
        if self.rtcp is not None:
            lines = _replace_first(self.lines, _is_rtcp, new)
        else:
            index = len(self.lines)
            while index > 1 and not content(self.lines[index - 1]):
                index -= 1
            lines = insert_line(self.lines, index, new, self.eol)
        return dataclasses.replace(self, lines=lines, rtcp=rtcp)

    def without_ice(self) -> MediaSection:
        if not self.has_ice:
            return self
        lines = tuple(line for line in self.lines if not _is_ice(line))
        return dataclasses.replace(self, lines=lines, has_ice=False)


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A parsed SDP body: the session-level lines and the media sections, in order.

    `connection` and `direction` are the session-level c= and direction attribute (None when absent);
    `session_has_ice` is about session-level ICE attributes only, `has_ice` about any level.
    """

    session_lines: tuple[str, ...]
    media: tuple[MediaSection, ...]
    origin: Origin
    connection: Address | None
    direction: Direction | None
    session_has_ice: bool
    eol: str

    @classmethod
    def parse(cls, body: bytes) -> SessionDescription:
        """Read an SDP body; raises `SdpError` (with a reason) on anything that is not usable SDP."""
        text = body.decode(ENCODING, ERRORS)
        lines = split_lines(text)
        if not lines or content(lines[0]).rstrip() != "v=0":
            raise SdpError("the body does not start with a v=0 line")
        bad = _BAD_LINE.search(text)
        if bad is not None:
            raise SdpError(f"not an SDP line: {bad.group()[:40]!r}")
        eol = "\n" if lines[0].endswith("\n") and not lines[0].endswith("\r\n") else "\r\n"
        starts = [i for i, line in enumerate(lines) if line.startswith("m=")]
        if not starts:  # a session without streams is legal (RFC 8866 §5)
            return cls._assemble(tuple(lines), (), eol)
        ends = [*starts[1:], len(lines)]
        media = tuple(MediaSection._from_lines(tuple(lines[a:b]), eol) for a, b in zip(starts, ends, strict=True))
        return cls._assemble(tuple(lines[: starts[0]]), media, eol)

    @classmethod
    def _assemble(cls, session_lines: tuple[str, ...], media: tuple[MediaSection, ...], eol: str) -> SessionDescription:
        origin: Origin | None = None
        connection: Address | None = None
        direction: Direction | None = None
        has_ice = False
        for line in session_lines[1:]:
            kind = line[:2]
            if kind == "a=":
                name = _attribute(line)[0]
                if name in ICE_ATTRIBUTES:
                    has_ice = True
                elif direction is None and name in DIRECTIONS:
                    direction = DIRECTIONS[name]
            elif kind == "c=":
                if connection is not None:
                    raise SdpError("more than one session-level c= line")
                connection = parse_connection(line[2:])
            elif kind == "o=":
                if origin is not None:
                    raise SdpError("more than one o= line")
                origin = Origin.parse(line[2:])
        if origin is None:
            raise SdpError("no o= line")
        if connection is None:
            for section in media:
                # RFC 8866 §5.7: every stream needs a c=; a rejected one is tolerated without.
                if section.connection is None and not section.rejected:
                    raise SdpError(f"m={section.media} has no c= line and there is no session-level c= line")
        return cls(session_lines, media, origin, connection, direction, has_ice, eol)

    def __bytes__(self) -> bytes:
        return join_lines([*self.session_lines, *(line for section in self.media for line in section.lines)])

    # ---- effective values ------------------------------------------------------------------------
    def connection_address(self, index: int) -> Address | None:
        """The media c= else the session c=; None only for a rejected stream without either."""
        own = self.media[index].connection
        return own if own is not None else self.connection

    def media_direction(self, index: int) -> Direction:
        """Media-level attribute, else session-level, else sendrecv (RFC 3264 §5.1)."""
        return self.media[index].direction or self.direction or Direction.SENDRECV

    @property
    def has_ice(self) -> bool:
        return self.session_has_ice or any(section.has_ice for section in self.media)

    def lines_without_origin(self) -> tuple[str, ...]:
        """Every line but o=: what must be identical for the sess-version to stay (RFC 3264 §8)."""
        return (
            *(line for line in self.session_lines if not line.startswith("o=")),
            *(line for section in self.media for line in section.lines),
        )

    # ---- edits (each returns a new description) --------------------------------------------------
    def with_media(self, media: Sequence[MediaSection]) -> SessionDescription:
        """The same session with its media sections replaced one for one (same count, same order)."""
        if len(media) != len(self.media):
            raise ValueError(f"{len(media)} sections given for {len(self.media)} media sections")
        return dataclasses.replace(self, media=tuple(media))

    def with_port(self, index: int, port: int) -> SessionDescription:
        return self._with_section(index, self.media[index].with_port(port))

    def with_rtcp(self, index: int, rtcp: RtcpAttribute) -> SessionDescription:
        return self._with_section(index, self.media[index].with_rtcp(rtcp))

    def with_connection(self, index: int, address: Address) -> SessionDescription:
        """Media-level only: rewrite that section's c= or give it one; the session c= is not touched."""
        return self._with_section(index, self.media[index].with_connection(address))

    def with_connections(self, targets: Sequence[Address | None]) -> SessionDescription:
        """Point each media section at its target address (None: leave that stream where it is).

        The session c=, when there is one, takes the first target, so the original address is not left
        behind (topology hiding); when every stream shares it, that one line is all that changes. A
        stream whose target differs gets its own c=; a stream left alone that relied on the session c=
        is pinned to the old address with its own c= (unless rejected: its address means nothing).
        """
        if len(targets) != len(self.media):
            raise ValueError(f"{len(targets)} addresses given for {len(self.media)} media sections")
        first = next((t for t in targets if t is not None), None)
        if first is None:
            return self
        old = self.connection
        session_lines = self.session_lines
        if old is not None and old != first:
            session_lines = _replace_first(session_lines, _is_connection, render_connection(first))
        shared = first if old is not None else None
        media: list[MediaSection] = []
        for section, target in zip(self.media, targets, strict=True):
            if target is not None:
                if section.connection is not None or target != shared:
                    section = section.with_connection(target)
            elif section.connection is None and old is not None and old != shared and not section.rejected:
                section = section.with_connection(old)
            media.append(section)
        return dataclasses.replace(self, session_lines=session_lines, media=tuple(media), connection=shared)

    def without_ice(self) -> SessionDescription:
        """Drop the ICE attributes (RFC 8839) at session and media level; all other lines stay."""
        if not self.has_ice:
            return self
        session_lines = self.session_lines
        if self.session_has_ice:
            session_lines = tuple(line for line in session_lines if not _is_ice(line))
        media = tuple(section.without_ice() for section in self.media)
        return dataclasses.replace(self, session_lines=session_lines, media=media, session_has_ice=False)

    def with_origin(self, origin: Origin) -> SessionDescription:
        if origin == self.origin:
            return self
        session_lines = _replace_first(self.session_lines, lambda line: line.startswith("o="), origin.render())
        return dataclasses.replace(self, session_lines=session_lines, origin=origin)

    def _with_section(self, index: int, section: MediaSection) -> SessionDescription:
        if section is self.media[index]:
            return self
        return dataclasses.replace(self, media=(*self.media[:index], section, *self.media[index + 1 :]))
