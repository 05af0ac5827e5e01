"""Where each call's media flows: anchor, direct, or hairpin short-circuit (ARCHITECTURE "Media decisions").

Every SDP body that crosses the SBC goes through `MediaSessions.process(call, source leg, body)`. The
SDP describes the endpoint of the leg it came from; the anchors of that leg are programmed with it,
and the body sent to the other leg names the other leg's anchors. Offer and answer are handled the
same way, which also covers late offer (answer in ACK), re-INVITE and UPDATE. Streams are matched by
m-line position (RFC 3264 §8), so a re-offer keeps its anchors and ports.

* rtcp-mux (RFC 5761) holds on a stream only when both endpoints' latest SDPs carry `a=rtcp-mux`: an
  offer with mux that is answered without it turns mux off on the offerer's anchor too.
* A stream rejected or disabled (port 0) releases its anchors; the m-line stays in place in the SDP.
* Hairpin: when an endpoint in an SDP is one of our own live anchors (a call that left the branch
  came back), the two local anchors behind them are connected to each other and the media stays in
  the branch. When that side later names a real endpoint again (a transfer away from the branch), or
  one of the two calls ends, each call's own anchors are connected again.

`check()` runs periodically for answered calls: one-way audio (media from one endpoint only, while
both are supposed to send) and media timeouts (an endpoint that should be sending has sent nothing
for the realm's `timeout_s`). A stream on hold is neither: an endpoint that said sendonly/inactive
is not expected to receive, one that said recvonly/inactive not expected to send. In a hairpin the
far side's media is what the other call's inner anchor receives, not the (idle) anchor toward the PBX.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from dataplane.api import AnchorPort, Dataplane, Endpoint, Latch, LegProgram, LegStats, PortsExhausted
from dataplane.quality import MediaFlow, OneWayAudioDetector, estimate_mos
from sbc.config.model import IPAddress, LatchMode, MediaMode, Realm
from sbc.policy.topology import AddressScrubber
from sbc.sdp.endpoints import MediaEndpoint, media_endpoints
from sbc.sdp.errors import SdpError
from sbc.sdp.fields import Direction
from sbc.sdp.origin import OriginRewriter
from sbc.sdp.rewrite import MediaAnchor, anchor_sdp, hide_origin_only
from sbc.sdp.session import MediaSection, SessionDescription

__all__ = ["CallMedia", "MediaError", "MediaFinding", "MediaSessions", "StagedOffer", "StreamAnchors"]

ONE_WAY_WINDOW_S = 5.0  # media from one side only for this long: one-way audio
_SENDS = frozenset({Direction.SENDRECV, Direction.SENDONLY})
_RECEIVES = frozenset({Direction.SENDRECV, Direction.RECVONLY})
_RTPMAP = re.compile(r"a=rtpmap: *([0-9]+) +[^/ ]+/([0-9]+)")


class MediaError(Exception):
    """The SDP could not be anchored: the call gets `status` (488 for bad SDP, 503 when out of ports)."""

    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(slots=True)
class LegWatch:
    """Media-timeout bookkeeping of one leg of one stream."""

    expected: bool | None = None  # this endpoint should be sending (None: not checked yet)
    since: float = 0.0  # when it last became expected to send (the idle clock starts there at the latest)
    timed_out: bool = False  # reported; cleared when packets arrive again


@dataclass(slots=True)
class StreamAnchors:
    """One m-line of a call: an anchor in each leg's realm, keyed by leg index (0 = caller side)."""

    anchors: dict[int, AnchorPort] = field(default_factory=dict)
    endpoints: dict[int, MediaEndpoint] = field(default_factory=dict)  # latest SDP of each leg's endpoint
    muxed: dict[int, bool] = field(default_factory=dict)  # rtcp-mux as programmed, per anchor
    clock_rates: dict[int, int] = field(default_factory=dict)
    hairpinned: bool = False
    hairpin_leg: int | None = None  # the leg whose SDP names the other call's anchor
    hairpin_peer: tuple[CallMedia, int] | None = None  # the other call's media and stream index
    hairpin_events: int = 0  # how often this stream was short-circuited (the CDR keeps it after the end)
    flow: OneWayAudioDetector = field(default_factory=lambda: OneWayAudioDetector(ONE_WAY_WINDOW_S))
    one_way_events: int = 0
    watches: dict[int, LegWatch] = field(default_factory=dict)

    def direction(self, leg: int) -> Direction | None:
        ep = self.endpoints.get(leg)
        return ep.direction if ep is not None else None

    def sends(self, leg: int) -> bool:
        """Whether the endpoint of `leg` is supposed to send: its SDP says it sends and the other one's
        says it receives (an answer that is missing yet counts as sendrecv)."""
        mine, theirs = self.direction(leg), self.direction(1 - leg)
        return mine in _SENDS and (theirs is None or theirs in _RECEIVES)


@dataclass(frozen=True, slots=True)
class StagedOffer:
    """A re-offer on its way to the other side, not yet programmed (`MediaSessions.offer`)."""

    source_leg: int
    description: SessionDescription
    endpoints: list[MediaEndpoint | None]
    new_streams: tuple[int, ...]  # streams whose anchors this offer allocated
    streams_before: int


@dataclass(slots=True)
class CallMedia:
    mode: MediaMode
    realms: tuple[str, str]  # realm of leg 0 (caller) and leg 1 (callee)
    streams: list[StreamAnchors] = field(default_factory=list)
    origins: dict[int, OriginRewriter] = field(default_factory=dict)  # per target leg
    checked: bool = False  # check() ran once: a stream that shows up later starts its idle clock then
    pending: StagedOffer | None = None  # a re-offer whose answer has not come yet

    @property
    def negotiated(self) -> bool:
        """An offer and its answer went through: there is media to keep while a re-offer is pending."""
        return any(len(s.endpoints) == 2 for s in self.streams)


@dataclass(frozen=True, slots=True)
class MediaFinding:
    """Something `check()` noticed on stream `stream`: one-way audio (`flow`, no `leg`), or a media
    timeout of the endpoint of `leg` that has been silent for `idle_s`."""

    stream: int
    leg: int | None = None
    idle_s: float = 0.0
    flow: MediaFlow | None = None


@dataclass(slots=True)
class AnchorOwner:
    media: CallMedia
    stream: int
    leg: int


class MediaSessions:
    """All calls' media state, shared so hairpins between two calls can be found."""

    def __init__(
        self,
        dataplane: Dataplane,
        realms: Iterable[Realm],
        origin_user: str = "sbc",
        *,
        token: Callable[[int], str] = secrets.token_hex,
    ) -> None:
        self.dataplane = dataplane
        self.token = token  # 2n hex digits for n: the core's token source
        self.realms = {r.name: r for r in realms}
        self.origin_user = origin_user
        self._by_endpoint: dict[tuple[str, int], AnchorOwner] = {}
        self.hairpins = 0
        self.anchors_allocated = 0  # since start: a direct call never adds to it

    def new_call(self, mode: MediaMode, caller_realm: str, callee_realm: str) -> CallMedia:
        return CallMedia(mode, (caller_realm, callee_realm))

    def process(self, media: CallMedia, source_leg: int, body: bytes) -> bytes:
        """Rewrite an SDP body that came from `source_leg` for the other leg; program the relay now.

        For an answer, a repeated answer, and anything that is not a re-offer. A staged offer
        (`offer`) is applied first: whatever comes after it is its answer or newer."""
        self.commit_offer(media)
        return self._rewrite(media, source_leg, body, stage=False)

    def offer(self, media: CallMedia, source_leg: int, body: bytes) -> bytes:
        """An offer in a re-INVITE or UPDATE. Once the call's media is negotiated, it is staged: the
        relay keeps the media as it is until the answer (`process`) applies both, and a failure of the
        request (`offer_failed`) leaves it untouched (RFC 3264 §8, RFC 6337 §3.3). The first offer of a
        call is applied at once: there is no media to keep, and early media must flow at its answer."""
        self.commit_offer(media)
        return self._rewrite(media, source_leg, body, stage=media.negotiated)

    def commit_offer(self, media: CallMedia) -> None:
        """Program the relay with a staged offer (its answer arrived)."""
        pending, media.pending = media.pending, None
        if pending is not None:
            self._apply(media, pending.source_leg, pending.description, pending.endpoints)

    def offer_failed(self, media: CallMedia) -> None:
        """The request of a staged offer failed: forget it and give back the anchors only it used."""
        pending, media.pending = media.pending, None
        if pending is None:
            return
        for index in sorted(pending.new_streams, reverse=True):
            if index < len(media.streams):
                self._release_stream(media.streams[index])
        while media.streams and not media.streams[-1].anchors and len(media.streams) > pending.streams_before:
            media.streams.pop()

    def _rewrite(self, media: CallMedia, source_leg: int, body: bytes, *, stage: bool) -> bytes:
        target_leg = 1 - source_leg
        target_realm = self.realms[media.realms[target_leg]]
        origin = media.origins.get(target_leg)
        if origin is None:
            # The o= sess-id only has to be unique (RFC 4566 §5.2): 62 random bits, as before.
            origin = OriginRewriter(self.origin_user, target_realm.media.address, int(self.token(8), 16) >> 2)
            media.origins[target_leg] = origin
        try:
            sd = SessionDescription.parse(body)
        except SdpError as exc:
            raise MediaError(f"unparsable SDP: {exc}", 488) from exc
        if media.mode is MediaMode.DIRECT:
            return hide_origin_only(sd, origin)
        endpoints = media_endpoints(sd)
        streams_before = len(media.streams)
        new_streams: list[int] = []
        out_anchors: list[MediaAnchor | None] = []
        for index, ep in enumerate(endpoints):
            while len(media.streams) <= index:
                media.streams.append(StreamAnchors())
            stream = media.streams[index]
            if ep is None or ep.rejected:
                out_anchors.append(None)
                continue
            if not stream.anchors:
                new_streams.append(index)
            self._anchor(media, stream, index, source_leg)
            target_anchor = self._anchor(media, stream, index, target_leg)
            out_anchors.append(
                MediaAnchor(
                    address=target_anchor.address,
                    rtp_port=target_anchor.rtp_port,
                    rtcp_port=None if ep.rtcp_mux else target_anchor.rtcp_port,
                )
            )
        if stage:
            media.pending = StagedOffer(source_leg, sd, endpoints, tuple(new_streams), streams_before)
        else:
            self._apply(media, source_leg, sd, endpoints)
        scrubber = self._sender_addresses(media, source_leg, endpoints)
        replacement = target_realm.media.address
        return anchor_sdp(
            sd,
            out_anchors,
            origin,
            hide=replacement,
            scrub=lambda text: scrubber.scrub_text(text, replacement),
        )

    def _apply(
        self, media: CallMedia, source_leg: int, sd: SessionDescription, endpoints: list[MediaEndpoint | None]
    ) -> None:
        """Program and connect the anchors from the SDP of `source_leg`'s endpoint; free rejected streams."""
        target_leg = 1 - source_leg
        for index, ep in enumerate(endpoints):
            stream = media.streams[index]
            if ep is None or ep.rejected:
                self._release_stream(stream)
                continue
            source_anchor = self._anchor(media, stream, index, source_leg)
            self._anchor(media, stream, index, target_leg)
            stream.endpoints[source_leg] = ep
            stream.clock_rates[source_leg] = _clock_rate(sd.media[index])
            self._program(media, stream, source_leg, source_anchor)
            other = stream.anchors[target_leg]
            if target_leg in stream.endpoints and stream.muxed.get(target_leg) != self._mux(stream):
                self._program(media, stream, target_leg, other)  # the answer turned rtcp-mux off (or on)
            remote = Endpoint(ep.address, ep.rtp_port) if ep.rtp_port and not ep.address.is_unspecified else None
            self._link(media, stream, index, source_leg, remote)

    def _sender_addresses(
        self, media: CallMedia, source_leg: int, endpoints: list[MediaEndpoint | None]
    ) -> AddressScrubber:
        """What the SDP of `source_leg` may name of its side: that realm's networks and SBC addresses,
        and the endpoint's own media addresses."""
        realm = self.realms[media.realms[source_leg]]
        hidden: set[IPAddress] = {realm.address, realm.public_address, realm.media.address}
        for ep in endpoints:
            if ep is not None:
                hidden.update(a for a in (ep.address, ep.rtcp_address) if not a.is_unspecified)
        return AddressScrubber(realm.networks, frozenset(hidden))

    @staticmethod
    def _mux(stream: StreamAnchors) -> bool:
        return all(ep.rtcp_mux for ep in stream.endpoints.values())

    def _program(self, media: CallMedia, stream: StreamAnchors, leg: int, anchor: AnchorPort) -> None:
        """Program `anchor` from the latest SDP of its leg's endpoint and that realm's media settings."""
        ep = stream.endpoints[leg]
        mux = self._mux(stream)
        remote_rtp = Endpoint(ep.address, ep.rtp_port) if ep.rtp_port and not ep.address.is_unspecified else None
        if remote_rtp is None or mux:
            remote_rtcp = None
        elif ep.rtcp_mux:  # it offered mux, the answer refused it: RTCP on RTP + 1 (RFC 5761 §5.1.1)
            remote_rtcp = Endpoint(ep.address, min(ep.rtp_port + 1, 65535))
        else:
            remote_rtcp = Endpoint(ep.rtcp_address, ep.rtcp_port)
        settings = self.realms[media.realms[leg]].media
        self.dataplane.program(
            anchor,
            LegProgram(
                remote_rtp=remote_rtp,
                remote_rtcp=remote_rtcp,
                rtcp_mux=mux,
                latch=Latch.LEARN if settings.latch is LatchMode.LEARN else Latch.SDP,
                latch_window_s=settings.latch_window_ms / 1000,
                relatch=settings.relatch,
                dscp=settings.dscp,
                send_enabled=not ep.on_hold,
                clock_rate=stream.clock_rates.get(leg, 8000),
            ),
        )
        stream.muxed[leg] = mux

    def _anchor(self, media: CallMedia, stream: StreamAnchors, index: int, leg: int) -> AnchorPort:
        anchor = stream.anchors.get(leg)
        if anchor is not None:
            return anchor
        realm = self.realms[media.realms[leg]]
        try:
            anchor = self.dataplane.allocate(
                realm.name, realm.media.address, realm.media.port_min, realm.media.port_max
            )
        except PortsExhausted as exc:
            raise MediaError(f"no free media port in realm {realm.name}", 503) from exc
        stream.anchors[leg] = anchor
        self.anchors_allocated += 1
        self._by_endpoint[(str(anchor.address), anchor.rtp_port)] = AnchorOwner(media, index, leg)
        return anchor

    def _link(
        self, media: CallMedia, stream: StreamAnchors, index: int, source_leg: int, remote: Endpoint | None
    ) -> None:
        """Connect this stream's two anchors, or short-circuit a hairpin onto the other call's anchors."""
        own = self._by_endpoint.get((str(remote.address), remote.port)) if remote is not None else None
        if own is not None and own.media is not media:
            # The endpoint behind our source-leg anchor is another call's anchor: that call left the
            # branch and came back. Join the two inner anchors (ours on the target leg, theirs on the
            # other leg) so media stays local while signalling still goes through the far end.
            other_stream = own.media.streams[own.stream]
            ours_inner = stream.anchors[1 - source_leg]
            theirs_inner = other_stream.anchors.get(1 - own.leg)
            if theirs_inner is not None:
                self.dataplane.connect(ours_inner, theirs_inner)
                if not stream.hairpinned:
                    self.hairpins += 1
                    stream.hairpin_events += 1
                if not other_stream.hairpinned:
                    other_stream.hairpin_events += 1
                stream.hairpinned, stream.hairpin_leg, stream.hairpin_peer = True, source_leg, (own.media, own.stream)
                other_stream.hairpinned, other_stream.hairpin_leg = True, own.leg
                other_stream.hairpin_peer = (media, index)
            return
        if stream.hairpinned:
            if source_leg != stream.hairpin_leg or remote is None:
                return  # the inner side re-offered, or the outer side holds: the hairpin stands
            self._unhairpin(stream)
            return
        self.dataplane.connect(stream.anchors[0], stream.anchors[1])

    def adopt(self, media: CallMedia) -> None:
        """Know the anchors of a call re-created after a restart (`sbc.dialog_state`), for hairpins."""
        for index, stream in enumerate(media.streams):
            for leg, anchor in stream.anchors.items():
                self._by_endpoint[(str(anchor.address), anchor.rtp_port)] = AnchorOwner(media, index, leg)

    def _unhairpin(self, stream: StreamAnchors) -> None:
        """Give this stream and its hairpin partner their own anchor pairs back."""
        affected = [stream]
        if stream.hairpin_peer is not None:
            peer_media, peer_index = stream.hairpin_peer
            if peer_index < len(peer_media.streams):
                affected.append(peer_media.streams[peer_index])
        for s in affected:
            if not s.hairpinned:
                continue
            s.hairpinned, s.hairpin_leg, s.hairpin_peer = False, None, None
            if len(s.anchors) == 2:
                self.dataplane.connect(s.anchors[0], s.anchors[1])

    def _release_stream(self, stream: StreamAnchors) -> None:
        if stream.hairpinned:
            self._unhairpin(stream)
        for anchor in stream.anchors.values():
            self._by_endpoint.pop((str(anchor.address), anchor.rtp_port), None)
            self.dataplane.release(anchor)
        stream.anchors.clear()
        stream.endpoints.clear()
        stream.muxed.clear()
        stream.watches.clear()

    def release(self, media: CallMedia) -> None:
        for stream in media.streams:
            self._release_stream(stream)
        media.streams.clear()

    def stats(self, media: CallMedia) -> list[dict[int, LegStats]]:
        return [{leg: self.dataplane.stats(a) for leg, a in s.anchors.items()} for s in media.streams]

    def check(self, media: CallMedia, now: float, answered_at: float, timeouts: dict[int, float]) -> list[MediaFinding]:
        """One-way audio and media timeouts that start now. `timeouts` is the media timeout per leg
        (its realm's `timeout_s`); a timeout is reported once and again only after media came back."""
        findings: list[MediaFinding] = []
        start = now if media.checked else answered_at
        media.checked = True
        for index, stream in enumerate(media.streams):
            if len(stream.anchors) < 2:
                continue
            stats = self._media_stats(stream)
            if stream.sends(0) and stream.sends(1):
                was = stream.flow.one_way
                flow = stream.flow.observe_stats(now, stats[0], stats[1])
                if flow.one_way and not was:
                    stream.one_way_events += 1
                    findings.append(MediaFinding(index, flow=flow))
            else:  # on hold: media one way (or none) is what was asked for; start the window afresh
                stream.flow = OneWayAudioDetector(ONE_WAY_WINDOW_S)
            for leg in (0, 1):
                watch = stream.watches.setdefault(leg, LegWatch(since=start))
                expected = stream.sends(leg)
                if expected and watch.expected is False:
                    watch.since = now  # resumed from hold: it gets the whole timeout from here
                watch.expected = expected
                last = stats[leg].last_in_s
                idle = now - max(last if last is not None else answered_at, watch.since)
                if not expected or idle <= timeouts[leg]:
                    watch.timed_out = False
                    continue
                if not watch.timed_out:
                    watch.timed_out = True
                    findings.append(MediaFinding(index, leg=leg, idle_s=round(idle, 1)))
        return findings

    def _media_stats(self, stream: StreamAnchors) -> dict[int, LegStats]:
        """What each leg's endpoint sent, by leg. A hairpinned stream's outer anchor (toward the PBX)
        carries nothing by design: what that side sends arrives at the other call's inner anchor."""
        stats = {leg: self.dataplane.stats(anchor) for leg, anchor in stream.anchors.items()}
        if stream.hairpinned and stream.hairpin_leg is not None and stream.hairpin_peer is not None:
            peer_media, peer_index = stream.hairpin_peer
            peer = peer_media.streams[peer_index] if peer_index < len(peer_media.streams) else None
            if peer is not None and peer.hairpin_leg is not None and 1 - peer.hairpin_leg in peer.anchors:
                stats[stream.hairpin_leg] = self.dataplane.stats(peer.anchors[1 - peer.hairpin_leg])
        return stats

    def report(self, media: CallMedia) -> list[dict[str, object]]:
        """Per stream and leg: anchor, where media comes from, counters and quality (RFC 3550, G.107)."""
        out: list[dict[str, object]] = []
        for stream in media.streams:
            entry: dict[str, object] = {
                "hairpin": stream.hairpinned,
                "hairpin_events": stream.hairpin_events,
                "flow": stream.flow.flow.value,
                "one_way": stream.flow.one_way,
                "one_way_events": stream.one_way_events,
                "rtcp_mux": bool(stream.muxed) and all(stream.muxed.values()),
            }
            for leg, anchor in sorted(stream.anchors.items()):
                st = self.dataplane.stats(anchor)
                direction = stream.direction(leg)
                watch = stream.watches.get(leg)
                entry["a" if leg == 0 else "b"] = {
                    "anchor": str(Endpoint(anchor.address, anchor.rtp_port)),
                    "source": str(st.latched_source) if st.latched_source else None,
                    "direction": direction.value if direction is not None else None,
                    "packets_in": st.packets_in,
                    "rtp_in": st.extra.get("rtp_packets", st.packets_in),
                    "packets_out": st.packets_out,
                    "bytes_in": st.bytes_in,
                    "bytes_out": st.bytes_out,
                    "expected": st.rtp_expected,
                    "lost": st.rtp_lost,
                    "loss_pct": round(100 * st.loss_fraction, 2),
                    "jitter_ms": round(st.jitter_ms, 2),
                    "mos": round(estimate_mos(st.loss_fraction, st.jitter_ms), 2) if st.rtp_expected else None,
                    "payload_type": st.payload_type,
                    "dropped_spoofed": st.dropped_spoofed,
                    "dropped_other": st.dropped_other,
                    "not_sent_hold": st.extra.get("not_sent_hold", 0),
                    "timed_out": watch.timed_out if watch is not None else False,
                    "in_kernel": st.in_kernel,
                }
            out.append(entry)
        return out


def _clock_rate(section: MediaSection) -> int:
    """The RTP clock of the stream's first payload type: its a=rtpmap, else 8000 (RFC 3551 static types
    that differ are handled by the relay from the payload type itself)."""
    if not section.formats:
        return 8000
    first = section.formats[0]
    for line in section.lines:
        match = _RTPMAP.match(line)
        if match is not None and match.group(1) == first:
            rate = int(match.group(2))
            return rate if 0 < rate <= 0xFFFFFFFF else 8000
    return 8000
