"""Where each call's media flows: anchor, direct, or hairpin short-circuit (ARCHITECTURE "Media decisions").

Every SDP body that crosses the SBC goes through `MediaSessions.process(call, source leg, target
leg, body)`. The SDP describes the endpoint of the leg it came from; the anchors of that leg are
programmed with it, and the body sent to the other leg names the other leg's anchors. Offer and
answer are handled the same way, which also covers late offer (answer in ACK), re-INVITE and UPDATE.

Hairpin: when an endpoint in an SDP is one of our own live anchors (a call that left the branch
came back), the two local anchors behind them are connected to each other and the media stays in
the branch.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from dataplane.api import AnchorPort, Dataplane, Endpoint, Latch, LegProgram, LegStats, PortsExhausted
from dataplane.quality import OneWayAudioDetector, estimate_mos
from sbc.config.model import LatchMode, MediaMode, Realm
from sbc.sdp.endpoints import media_endpoints
from sbc.sdp.errors import SdpError
from sbc.sdp.origin import OriginRewriter
from sbc.sdp.rewrite import MediaAnchor, anchor_sdp, hide_origin_only
from sbc.sdp.session import SessionDescription

__all__ = ["MediaError", "MediaSessions", "StreamAnchors"]

ONE_WAY_WINDOW_S = 5.0  # media from one side only for this long: one-way audio


class MediaError(Exception):
    """The SDP could not be anchored: the call gets `status` (488 for bad SDP, 503 when out of ports)."""

    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(slots=True)
class StreamAnchors:
    """One m-line of a call: an anchor in each leg's realm, keyed by leg index (0 = caller side)."""

    anchors: dict[int, AnchorPort] = field(default_factory=dict)
    hairpinned: bool = False
    flow: OneWayAudioDetector = field(default_factory=lambda: OneWayAudioDetector(ONE_WAY_WINDOW_S))


@dataclass(slots=True)
class CallMedia:
    mode: MediaMode
    realms: tuple[str, str]  # realm of leg 0 (caller) and leg 1 (callee)
    streams: list[StreamAnchors] = field(default_factory=list)
    origins: dict[int, OriginRewriter] = field(default_factory=dict)  # per target leg


@dataclass(slots=True)
class AnchorOwner:
    media: CallMedia
    stream: int
    leg: int


class MediaSessions:
    """All calls' media state, shared so hairpins between two calls can be found."""

    def __init__(self, dataplane: Dataplane, realms: Iterable[Realm], origin_user: str = "sbc") -> None:
        self.dataplane = dataplane
        self.realms = {r.name: r for r in realms}
        self.origin_user = origin_user
        self._by_endpoint: dict[tuple[str, int], AnchorOwner] = {}
        self.hairpins = 0
        self.anchors_allocated = 0  # since start: a direct call never adds to it

    def new_call(self, mode: MediaMode, caller_realm: str, callee_realm: str) -> CallMedia:
        return CallMedia(mode, (caller_realm, callee_realm))

    def process(self, media: CallMedia, source_leg: int, body: bytes) -> bytes:
        """Rewrite an SDP body that came from `source_leg` for the other leg; program the relay."""
        target_leg = 1 - source_leg
        target_realm = self.realms[media.realms[target_leg]]
        origin = media.origins.get(target_leg)
        if origin is None:
            origin = OriginRewriter(self.origin_user, target_realm.media.address, secrets.randbelow(2**62))
            media.origins[target_leg] = origin
        try:
            sd = SessionDescription.parse(body)
        except SdpError as exc:
            raise MediaError(f"unparsable SDP: {exc}", 488) from exc
        if media.mode is MediaMode.DIRECT:
            return hide_origin_only(sd, origin)
        endpoints = media_endpoints(sd)
        out_anchors: list[MediaAnchor | None] = []
        for index, ep in enumerate(endpoints):
            while len(media.streams) <= index:
                media.streams.append(StreamAnchors())
            stream = media.streams[index]
            if ep is None or ep.rejected:
                out_anchors.append(None)
                continue
            source_anchor = self._anchor(media, stream, index, source_leg)
            target_anchor = self._anchor(media, stream, index, target_leg)
            source_realm = self.realms[media.realms[source_leg]]
            remote_rtp = Endpoint(ep.address, ep.rtp_port) if ep.rtp_port and not ep.address.is_unspecified else None
            remote_rtcp = (
                Endpoint(ep.rtcp_address, ep.rtcp_port) if remote_rtp is not None and not ep.rtcp_mux else None
            )
            settings = source_realm.media
            self.dataplane.program(
                source_anchor,
                LegProgram(
                    remote_rtp=remote_rtp,
                    remote_rtcp=remote_rtcp,
                    rtcp_mux=ep.rtcp_mux,
                    latch=Latch.LEARN if settings.latch is LatchMode.LEARN else Latch.SDP,
                    latch_window_s=settings.latch_window_ms / 1000,
                    relatch=settings.relatch,
                    dscp=settings.dscp,
                    send_enabled=not ep.on_hold,
                ),
            )
            self._link(media, stream, index, source_leg, remote_rtp)
            out_anchors.append(
                MediaAnchor(
                    address=target_anchor.address,
                    rtp_port=target_anchor.rtp_port,
                    rtcp_port=None if ep.rtcp_mux else target_anchor.rtcp_port,
                )
            )
        return anchor_sdp(sd, out_anchors, origin)

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
                stream.hairpinned = True
                other_stream.hairpinned = True
            return
        if stream.hairpinned:
            return
        self.dataplane.connect(stream.anchors[0], stream.anchors[1])

    def release(self, media: CallMedia) -> None:
        for stream in media.streams:
            for anchor in stream.anchors.values():
                self._by_endpoint.pop((str(anchor.address), anchor.rtp_port), None)
                self.dataplane.release(anchor)
        media.streams.clear()

    def stats(self, media: CallMedia) -> list[dict[int, LegStats]]:
        return [{leg: self.dataplane.stats(a) for leg, a in s.anchors.items()} for s in media.streams]

    def observe(self, media: CallMedia, now: float) -> list[int]:
        """Feed the one-way-audio detectors; returns the indexes of streams that just turned one-way."""
        turned: list[int] = []
        for index, stream in enumerate(media.streams):
            if len(stream.anchors) < 2:
                continue
            was = stream.flow.one_way
            a, b = (self.dataplane.stats(stream.anchors[leg]) for leg in (0, 1))
            if stream.flow.observe_stats(now, a, b).one_way and not was:
                turned.append(index)
        return turned

    def report(self, media: CallMedia) -> list[dict[str, object]]:
        """Per stream and leg: anchor, where media comes from, counters and quality (RFC 3550, G.107)."""
        out: list[dict[str, object]] = []
        for stream in media.streams:
            entry: dict[str, object] = {"hairpin": stream.hairpinned, "flow": stream.flow.flow.value}
            for leg, anchor in sorted(stream.anchors.items()):
                st = self.dataplane.stats(anchor)
                entry["a" if leg == 0 else "b"] = {
                    "anchor": str(Endpoint(anchor.address, anchor.rtp_port)),
                    "source": str(st.latched_source) if st.latched_source else None,
                    "packets_in": st.packets_in,
                    "rtp_in": st.extra.get("rtp_packets", st.packets_in),
                    "packets_out": st.packets_out,
                    "bytes_in": st.bytes_in,
                    "lost": st.rtp_lost,
                    "loss_pct": round(100 * st.loss_fraction, 2),
                    "jitter_ms": round(st.jitter_ms, 2),
                    "mos": round(estimate_mos(st.loss_fraction, st.jitter_ms), 2) if st.rtp_expected else None,
                    "dropped_spoofed": st.dropped_spoofed,
                    "not_sent_hold": st.extra.get("not_sent_hold", 0),
                    "in_kernel": st.in_kernel,
                }
            out.append(entry)
        return out
