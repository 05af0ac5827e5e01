"""The record of a confirmed call in the dialog state file, and a call read back from it (pure).

Saved, per confirmed call (a call still being set up cannot be resumed: its transactions die with the
process): both legs' dialog state (RFC 3261 §12.1: Call-ID, local and remote tag, local and remote
CSeq, route set, remote target, our Contact, where requests go and over which transport), route,
timestamps, session timer, header-rule store, the CSeqs of REFERs relayed (for their NOTIFYs), and
its media: each stream's anchors (realm, address, RTP port), the leg program last given to each
anchor, the anchor it is connected to, the SDP endpoints last seen (hold, rtcp-mux, clock rates),
hairpin links, and the o= state of each leg (sess-id kept; sess-version moved on by one, so whatever
SDP is sent next is newer than the last one the peer saw: RFC 3264 §8).

The file itself, its writing and the re-taking of anchors at start belong to the shell
(`sbc.dialog_state`); this module only turns calls into plain records and back.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dataplane.api import AnchorPort, Endpoint, IPAddress, Latch, LegProgram
from sbc.b2bua.call import Call, CallState, Leg
from sbc.b2bua.media import CallMedia, StreamAnchors
from sbc.b2bua.media_ledger import MediaLedger
from sbc.config.model import MediaMode, Realm
from sbc.sdp.endpoints import MediaEndpoint
from sbc.sdp.fields import Direction
from sbc.sdp.origin import OriginRewriter
from sbc.sip.transaction import PeerAddress

__all__ = [
    "AnchorKey",
    "SavedAnchor",
    "SavedCall",
    "StateFormatError",
    "anchor_key",
    "anchors_of",
    "decode_call",
    "encode_call",
    "leg_of",
    "leg_record",
    "program_of",
    "program_record",
]

AnchorKey = tuple[str, int]  # (address, RTP port): what names an anchor across processes


class StateFormatError(ValueError):
    """A record in the state file cannot be turned back into a call."""


def anchor_key(anchor: AnchorPort) -> AnchorKey:
    return (str(anchor.address), anchor.rtp_port)


def anchors_of(call: Call) -> Iterable[AnchorPort]:
    for stream in call.media.streams:
        yield from stream.anchors.values()


# ---- leg programs and legs -----------------------------------------------------------------------


def _endpoint(ep: Endpoint | None) -> list[object] | None:
    return None if ep is None else [str(ep.address), ep.port]


def _endpoint_of(value: object) -> Endpoint | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2 or not isinstance(value[1], int):
        raise StateFormatError(f"bad endpoint {value!r}")
    return Endpoint(ipaddress.ip_address(str(value[0])), value[1])


_ENDPOINT_FIELDS = ("remote_rtp", "remote_rtcp")


def program_record(leg: LegProgram) -> dict[str, object]:
    out: dict[str, object] = {}
    for f in dataclasses.fields(leg):
        value = getattr(leg, f.name)
        if f.name in _ENDPOINT_FIELDS:
            out[f.name] = _endpoint(value)
        elif isinstance(value, Latch):
            out[f.name] = value.value
        else:
            out[f.name] = value
    return out


def program_of(record: dict[str, Any]) -> LegProgram:
    known = {f.name for f in dataclasses.fields(LegProgram)}
    kwargs: dict[str, Any] = {}
    for name, value in record.items():
        if name not in known:
            continue  # written by a newer version: its default is the best we can do
        if name in _ENDPOINT_FIELDS:
            kwargs[name] = _endpoint_of(value)
        elif name == "latch":
            kwargs[name] = Latch(value)
        else:
            kwargs[name] = value
    return LegProgram(**kwargs)


def leg_record(leg: Leg) -> dict[str, object]:
    out: dict[str, object] = {}
    for f in dataclasses.fields(leg):
        if f.name == "scrubber":
            continue  # derived, rebuilt on first use
        value = getattr(leg, f.name)
        if isinstance(value, PeerAddress):
            out[f.name] = {"transport": value.transport, "host": value.host, "port": value.port}
        elif isinstance(value, list):
            out[f.name] = list(value)
        else:
            out[f.name] = value
    return out


def leg_of(record: dict[str, Any]) -> Leg:
    known = {f.name for f in dataclasses.fields(Leg)} - {"scrubber"}
    kwargs = {name: value for name, value in record.items() if name in known}
    dest = kwargs.get("destination")
    if not isinstance(dest, dict):
        raise StateFormatError("leg without destination")
    kwargs["destination"] = PeerAddress(str(dest["transport"]), str(dest["host"]), int(dest["port"]))
    kwargs["route_set"] = list(kwargs.get("route_set") or [])
    return Leg(**kwargs)


# ---- media ---------------------------------------------------------------------------------------


def _media_endpoint(ep: MediaEndpoint) -> dict[str, object]:
    return {
        "address": str(ep.address),
        "rtp_port": ep.rtp_port,
        "rtcp_address": str(ep.rtcp_address),
        "rtcp_port": ep.rtcp_port,
        "rtcp_mux": ep.rtcp_mux,
        "direction": ep.direction.value,
        "rejected": ep.rejected,
    }


def _media_endpoint_of(d: dict[str, Any]) -> MediaEndpoint:
    return MediaEndpoint(
        address=ipaddress.ip_address(str(d["address"])),
        rtp_port=int(d["rtp_port"]),
        rtcp_address=ipaddress.ip_address(str(d["rtcp_address"])),
        rtcp_port=int(d["rtcp_port"]),
        rtcp_mux=bool(d["rtcp_mux"]),
        direction=Direction(d["direction"]),
        rejected=bool(d["rejected"]),
    )


def _legs(d: dict[str, Any] | None) -> dict[int, Any]:
    return {int(k): v for k, v in (d or {}).items()}


def _media_record(
    media: CallMedia, ledger: MediaLedger, owner_of: Callable[[CallMedia], str | None]
) -> dict[str, object]:
    streams = []
    for stream in media.streams:
        anchors: dict[str, object] = {}
        for leg, anchor in sorted(stream.anchors.items()):
            program = ledger.program_of(anchor)
            partner = ledger.partner_of(anchor)
            anchors[str(leg)] = {
                "realm": anchor.realm,
                "address": str(anchor.address),
                "rtp_port": anchor.rtp_port,
                "program": program_record(program) if program is not None else None,
                "partner": list(anchor_key(partner)) if partner is not None else None,
            }
        peer = None
        if stream.hairpin_peer is not None:
            peer_ref = owner_of(stream.hairpin_peer[0])
            peer = [peer_ref, stream.hairpin_peer[1]] if peer_ref is not None else None
        streams.append(
            {
                "anchors": anchors,
                "endpoints": {str(k): _media_endpoint(ep) for k, ep in sorted(stream.endpoints.items())},
                "muxed": {str(k): v for k, v in sorted(stream.muxed.items())},
                "clock_rates": {str(k): v for k, v in sorted(stream.clock_rates.items())},
                "hairpinned": stream.hairpinned,
                "hairpin_leg": stream.hairpin_leg,
                "hairpin_peer": peer,
                "hairpin_events": stream.hairpin_events,
                "one_way_events": stream.one_way_events,
            }
        )
    return {
        "mode": media.mode.value,
        "realms": list(media.realms),
        "origins": {str(leg): {"sess_id": o.sess_id, "version": o.sess_version} for leg, o in media.origins.items()},
        "streams": streams,
    }


# ---- calls ---------------------------------------------------------------------------------------


def encode_call(
    call: Call, ledger: MediaLedger, owner_of: Callable[[CallMedia], str | None] = lambda m: None
) -> dict[str, object]:
    """The record of a confirmed call. `owner_of` names the call of another call's media (a hairpin
    partner); `ledger` knows what the relay was last told for each anchor."""
    return {
        "call_ref": call.call_ref,
        "route": call.route,
        "created_at": call.created_at,
        "answered_at": call.answered_at,
        "final_status": call.final_status,
        "session_expires_s": call.session_expires_s,
        "session_refreshed_at": call.session_refreshed_at,
        "store": dict(call.store),
        # REFERs relayed: their NOTIFYs may come after a restart (sbc.b2bua.transfer)
        "refer_ids": [[leg, cseq, origin] for (leg, cseq), origin in sorted(call.refer_ids.items())],
        "legs": [leg_record(leg) for leg in call.legs],
        "media": _media_record(call.media, ledger, owner_of),
    }


@dataclass(frozen=True, slots=True)
class SavedAnchor:
    """An anchor a saved call held: to be re-taken at the same address and port for `leg` of `stream`."""

    stream: StreamAnchors
    leg: int
    realm: str
    address: IPAddress
    rtp_port: int
    program: LegProgram | None
    partner: AnchorKey | None


@dataclass(slots=True)
class SavedCall:
    """A call read back from its record, without its anchors yet (`anchors` says which to re-take)."""

    call: Call
    anchors: list[SavedAnchor] = field(default_factory=list)
    hairpin_peers: list[tuple[StreamAnchors, str, int]] = field(default_factory=list)  # stream, call, index


def decode_call(record: dict[str, Any], realms: Mapping[str, Realm], origin_user: str) -> SavedCall:
    """The call of `record`, confirmed; any record that does not make one raises (StateFormatError,
    KeyError, ValueError, TypeError...): it costs that call only."""
    legs = record["legs"]
    if not isinstance(legs, list) or len(legs) != 2:
        raise StateFormatError("a call has two legs")
    caller, callee = leg_of(legs[0]), leg_of(legs[1])
    if (caller.index, callee.index) != (0, 1):
        raise StateFormatError("leg indexes")
    m = record["media"]
    media = CallMedia(MediaMode(m["mode"]), (str(m["realms"][0]), str(m["realms"][1])))
    for name in (caller.realm, callee.realm, *media.realms):
        if name not in realms:
            raise StateFormatError(f"realm {name!r} is not in the config any more")
    for leg_text, origin in (m.get("origins") or {}).items():
        leg_index = int(leg_text)
        address = realms[media.realms[leg_index]].media.address
        media.origins[leg_index] = OriginRewriter(
            origin_user, address, int(origin["sess_id"]), int(origin["version"]) + 1
        )
    call = Call(
        call_ref=str(record["call_ref"]),
        legs=(caller, callee),
        route=str(record["route"]),
        media=media,
        created_at=float(record["created_at"]),
        state=CallState.CONFIRMED,
        answered_at=None if record.get("answered_at") is None else float(record["answered_at"]),
        final_status=record.get("final_status"),
        session_expires_s=record.get("session_expires_s"),
        session_refreshed_at=float(record.get("session_refreshed_at") or 0.0),
        store={str(k): str(v) for k, v in (record.get("store") or {}).items()},
        refer_ids={(int(leg), int(cseq)): int(origin) for leg, cseq, origin in record.get("refer_ids") or []},
    )
    saved = SavedCall(call)
    for s in m["streams"]:
        stream = StreamAnchors(
            endpoints={k: _media_endpoint_of(v) for k, v in _legs(s.get("endpoints")).items()},
            muxed={k: bool(v) for k, v in _legs(s.get("muxed")).items()},
            clock_rates={k: int(v) for k, v in _legs(s.get("clock_rates")).items()},
            hairpinned=bool(s.get("hairpinned")),
            hairpin_leg=s.get("hairpin_leg"),
            hairpin_events=int(s.get("hairpin_events") or 0),
            one_way_events=int(s.get("one_way_events") or 0),
        )
        if s.get("hairpin_peer"):
            saved.hairpin_peers.append((stream, str(s["hairpin_peer"][0]), int(s["hairpin_peer"][1])))
        media.streams.append(stream)
        for leg_text, a in s["anchors"].items():
            partner = a.get("partner")
            saved.anchors.append(
                SavedAnchor(
                    stream=stream,
                    leg=int(leg_text),
                    realm=str(a["realm"]),
                    address=ipaddress.ip_address(str(a["address"])),
                    rtp_port=int(a["rtp_port"]),
                    program=program_of(a["program"]) if a.get("program") is not None else None,
                    partner=(str(partner[0]), int(partner[1])) if partner is not None else None,
                )
            )
    return saved
