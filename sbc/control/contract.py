"""The control API's answers as types: what `sbc status`, `sbc calls`, `sbc registrations` and `sbc reload`
print and what the management plane reads, defined once for both sides of the socket.

The wire stays JSON (see `sbc.control.server`): `encode` turns an answer into JSON values, field names
as keys, enums as their values, tuples as lists; `decode` reads it back into the type and refuses a
missing field or a value of the wrong type (`ContractError`), so a reader never falls back on a key
nobody sends. Keys it does not know are ignored: a newer SBC may report more. The call records in
`<state_dir>/cdr.jsonl` (`CallRecord`) are written and read the same way.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from dataplane.api import DataplaneMode, FallbackReason
from dataplane.quality import MediaFlow
from sbc.config.model import MediaMode

__all__ = [
    "ANSWERS",
    "CallList",
    "CallRecord",
    "CallSnapshot",
    "ContractError",
    "DataplaneMode",
    "FallbackReason",
    "LegFigures",
    "MediaFlow",
    "MediaMode",
    "RealmView",
    "RegistrationList",
    "RegistrationView",
    "RelayTotals",
    "ReloadReport",
    "SipSummary",
    "StatusCounters",
    "StatusReport",
    "StreamFigures",
    "TrunkState",
    "TrunkView",
    "decode",
    "encode",
    "json_schema",
]


class ContractError(ValueError):
    """An answer that does not have the shape of its type: the path to the field and what is wrong."""


class TrunkState(StrEnum):
    UNKNOWN = "unknown"  # no probe answered or failed often enough yet
    UP = "up"
    DOWN = "down"


# ---- status --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RealmView:
    name: str
    address: str  # the SBC's signalling address
    listen: tuple[str, ...]  # "udp:5060"
    media: str  # "address:min-max"
    calls_in: int  # calls that arrived from this realm since the SBC started
    calls_out: int  # calls the SBC placed into this realm


@dataclass(frozen=True, slots=True)
class TrunkView:
    """A monitored trunk (a realm's peer with OPTIONS keepalive)."""

    name: str
    realm: str
    address: str  # "transport:host:port"
    state: TrunkState
    since_s: float | None  # seconds in this state; None: never changed
    keepalive_s: int
    last_status: int | None
    last_rtt_ms: float | None
    probes_sent: int
    probes_failed: int


@dataclass(frozen=True, slots=True)
class StatusCounters:
    calls_total: int
    calls_answered: int
    calls_failed: int
    calls_cancelled: int
    malformed_answered: int
    malformed_dropped: int
    loops_detected: int
    internal_errors: int
    options_answered: int
    registrations_relayed: int
    messages_received: int
    hairpins: int
    anchors_allocated: int


@dataclass(frozen=True, slots=True)
class SipSummary:
    """What RFC 4780 SIP-COMMON-MIB counts: messages in and out, transactions, what was refused or dropped."""

    in_requests: int
    in_responses: int
    out_requests: int
    out_responses: int
    transactions_total: int
    transactions_active: int
    unsupported_uris: int
    unsupported_methods: int
    otherwise_discarded: int


@dataclass(frozen=True, slots=True)
class RelayTotals:
    """`dataplane.api.DataplaneCounters` on the wire: packets relayed and dropped by whichever relay moved
    them, with the kernel's and the userspace slow path's shares."""

    mode: DataplaneMode
    relayed_packets: int
    relayed_bytes: int
    dropped_packets: int
    dropped: dict[str, int]  # by reason
    slow_path: dict[str, int]
    kernel: dict[str, int]


@dataclass(frozen=True, slots=True)
class StreamLimitSettings:
    """The TCP/TLS limits in force (the config's `limits.stream`)."""

    connections: int
    connections_per_source: int
    idle_timeout_s: float
    header_timeout_s: float
    body_timeout_s: float
    max_header_bytes: int
    max_body_bytes: int
    max_buffered_bytes: int


@dataclass(frozen=True, slots=True)
class TlsPeerVerdict:
    """The last TLS verification of a peer the SBC dialled: verified, or refused and why."""

    realm: str
    peer: str  # tls:host:port, as a trunk row's address
    server_name: str
    verified: bool
    reason: str | None = None
    refused_at: float | None = None  # Unix time


@dataclass(frozen=True, slots=True)
class TransportReport:
    """TCP/TLS connections now, the limits reached (by name), and TLS peers' verification."""

    connections: int
    connections_inbound: int
    connections_peak: int
    sources: int
    accepted_total: int
    opened_total: int
    limits: dict[str, int]
    settings: StreamLimitSettings
    tls_peers: tuple[TlsPeerVerdict, ...]


@dataclass(frozen=True, slots=True)
class StatusReport:
    version: str
    uptime_s: float
    config: str
    dataplane: DataplaneMode
    dataplane_note: str  # why the userspace relay runs, in words ("" with XDP)
    dataplane_fallback: FallbackReason | None  # ... and as a kind (None with XDP)
    # XDP when the box runs, or meant to run, the XDP relay: userspace is then a fallback to alarm on
    dataplane_expected: DataplaneMode
    realms: tuple[RealmView, ...]
    active_calls: int
    registrations: int
    counters: StatusCounters
    sip: SipSummary
    max_calls: int
    trunks: tuple[TrunkView, ...]
    relay: RelayTotals
    transport: TransportReport | None = None  # None: a core without the shell's sockets (tests)


# ---- calls ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LegFigures:
    """One leg of one media stream: its anchor, where its media comes from, counters and quality."""

    anchor: str
    source: str | None  # the latched source; None before the first packet
    direction: str | None  # the SDP direction of this side (sendrecv, sendonly...)
    packets_in: int
    rtp_in: int
    packets_out: int
    bytes_in: int
    bytes_out: int
    expected: int  # RTP packets expected (RFC 3550 A.3)
    lost: int
    loss_pct: float
    jitter_ms: float
    mos: float | None  # ITU-T G.107 E-model estimate; None before any RTP
    payload_type: int | None
    dropped_spoofed: int
    dropped_other: int
    not_sent_hold: int
    timed_out: bool
    in_kernel: bool  # relayed by the XDP program


@dataclass(frozen=True, slots=True)
class StreamFigures:
    hairpin: bool
    hairpin_events: int
    flow: MediaFlow
    one_way: bool
    one_way_events: int
    rtcp_mux: bool
    a: LegFigures | None = None  # None: the stream has no anchor on this side (direct media)
    b: LegFigures | None = None


@dataclass(frozen=True, slots=True)
class CallSnapshot:
    call: str  # the SBC's own reference
    a_call_id: str
    b_call_id: str
    state: str  # trying, early, confirmed, ending
    route: str
    a_realm: str
    b_realm: str
    age_s: float
    media_mode: MediaMode
    hairpin: bool
    streams: tuple[StreamFigures, ...]


@dataclass(frozen=True, slots=True)
class CallList:
    calls: tuple[CallSnapshot, ...]


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One line of `cdr.jsonl`: a call that ended, with wall-clock times (ISO 8601, UTC, milliseconds)."""

    recorded_at: float  # Unix time the record was written
    call: str
    a_call_id: str
    b_call_id: str
    route: str
    a_realm: str
    b_realm: str
    start: str
    answer: str | None  # None: never answered
    end: str
    duration_s: float  # from the answer; 0 when never answered
    status: int | None  # the final status the caller got
    reason: str
    media_mode: MediaMode
    streams: tuple[StreamFigures, ...]


# ---- registrations and reload --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RegistrationView:
    aor: str
    contact: str  # the phone's own Contact URI
    flow: str  # where its REGISTER came from
    expires_in_s: int


@dataclass(frozen=True, slots=True)
class RegistrationList:
    registrations: tuple[RegistrationView, ...]


@dataclass(frozen=True, slots=True)
class ReloadReport:
    applied: bool
    restart_required: tuple[str, ...]  # what only a restart of `sbc run` changes
    problems: tuple[str, ...]  # why the config was refused


Answer = StatusReport | CallList | RegistrationList | ReloadReport
ANSWERS: dict[str, type[Answer]] = {
    "status": StatusReport,
    "calls": CallList,
    "registrations": RegistrationList,
    "reload": ReloadReport,
}


# ---- the codec -----------------------------------------------------------------------------------
# Every ended call's record goes through `decode` and `encode` (sbc.app writes call records with
# them), so both work from what each type needs, found once per type: walking the type hints and the
# dataclass fields of every value again cost a busy SBC more CPU than parsing the call's SIP.
_PLAIN = frozenset({str, int, float, bool, type(None)})
# Per type: whether it is a dataclass, and its field names.
_SHAPES: dict[type, tuple[bool, tuple[str, ...]]] = {}


def encode(value: object) -> Any:
    """JSON values for an answer (or any of its parts)."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    shape = _SHAPES.get(kind)
    if shape is None:
        if dataclasses.is_dataclass(kind):
            shape = _SHAPES[kind] = (True, tuple(f.name for f in dataclasses.fields(kind)))
        else:
            shape = _SHAPES[kind] = (False, ())
    if shape[0]:  # plain field values as they are, without a call each (the most common by far)
        return {name: v if type(v := getattr(value, name)) in _PLAIN else encode(v) for name in shape[1]}
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    return value


T = TypeVar("T")
_Decoder = Callable[[object], Any]


class _Misfit(Exception):
    """A value that does not fit, with the path to it gathered on the way out (outermost last)."""

    def __init__(self, problem: str, *path: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.path = list(path)


def decode(cls: type[T], data: object) -> T:
    """`data` (parsed JSON) as a `cls`; ContractError names the first field that does not fit."""
    try:
        return _decoder(cls)(data)  # type: ignore[no-any-return]
    except _Misfit as misfit:
        raise ContractError(f"{cls.__name__}{''.join(reversed(misfit.path))}: {misfit.problem}") from None


_HINTS: dict[type, dict[str, Any]] = {}
_DECODERS: dict[Any, _Decoder] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The resolved field types of a contract dataclass (its annotations are strings), once per class."""
    found = _HINTS.get(cls)
    if found is None:
        found = _HINTS[cls] = get_type_hints(cls)
    return found


def _decoder(kind: Any) -> _Decoder:
    """The decoder of a type of the contract, made once per type."""
    found = _DECODERS.get(kind)
    if found is None:
        found = _DECODERS[kind] = _make_decoder(kind)
    return found


def _make_decoder(kind: Any) -> _Decoder:
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return _object_decoder(kind)
    origin = get_origin(kind)
    if origin in (Union, types.UnionType):
        (inner,) = [o for o in get_args(kind) if o is not type(None)]  # the contract's unions are `X | None`
        return _optional_decoder(_decoder(inner), type(None) in get_args(kind))
    if origin is tuple:
        return _tuple_decoder(_decoder(get_args(kind)[0]))
    if origin is dict:
        return _dict_decoder(_decoder(get_args(kind)[1]))
    if isinstance(kind, type) and issubclass(kind, StrEnum):
        return _enum_decoder(kind)
    if kind is float:
        return _decode_float
    return _exact_decoder(kind)


def _object_decoder(kind: type[Any]) -> _Decoder:
    hints = _hints(kind)
    fields = [(f.name, _decoder(hints[f.name]), f.default is dataclasses.MISSING) for f in dataclasses.fields(kind)]

    def decode_object(data: object) -> Any:
        if not isinstance(data, dict):
            raise _Misfit(f"expected an object, got {_name(data)}")
        values = {}
        for name, decode_field, required in fields:
            if name in data:
                try:
                    values[name] = decode_field(data[name])
                except _Misfit as misfit:
                    misfit.path.append(f".{name}")
                    raise
            elif required:
                raise _Misfit("missing", f".{name}")
        return kind(**values)

    return decode_object


def _optional_decoder(inner: _Decoder, none_allowed: bool) -> _Decoder:
    def decode_optional(data: object) -> Any:
        if data is None and none_allowed:
            return None
        return inner(data)

    return decode_optional


def _tuple_decoder(item: _Decoder) -> _Decoder:
    def decode_tuple(data: object) -> Any:
        if not isinstance(data, list):
            raise _Misfit(f"expected a list, got {_name(data)}")
        out = []
        for i, value in enumerate(data):
            try:
                out.append(item(value))
            except _Misfit as misfit:
                misfit.path.append(f"[{i}]")
                raise
        return tuple(out)

    return decode_tuple


def _dict_decoder(value_decoder: _Decoder) -> _Decoder:
    def decode_dict(data: object) -> Any:
        if not isinstance(data, dict):
            raise _Misfit(f"expected an object, got {_name(data)}")
        out = {}
        for key, value in data.items():
            try:
                out[str(key)] = value_decoder(value)
            except _Misfit as misfit:
                misfit.path.append(f".{key}")
                raise
        return out

    return decode_dict


def _enum_decoder(kind: type[StrEnum]) -> _Decoder:
    members = kind._value2member_map_

    def decode_enum(data: object) -> Any:
        if isinstance(data, str) and data in members:
            return members[data]
        raise _Misfit(f"{data!r} is not one of {', '.join(kind)}")

    return decode_enum


def _decode_float(data: object) -> Any:
    if type(data) is float:
        return data
    if isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    raise _Misfit(f"expected float, got {_name(data)}")


def _exact_decoder(kind: Any) -> _Decoder:
    plain = kind in (int, str, bool)
    problem = f"expected {getattr(kind, '__name__', kind)}"

    def decode_exact(data: object) -> Any:
        if plain and type(data) is kind:
            return data
        raise _Misfit(f"{problem}, got {_name(data)}")

    return decode_exact


_JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean"}


def json_schema(kind: Any) -> dict[str, Any]:
    """The JSON Schema of an answer type (or any of its parts) as `encode` writes it: for API documents."""
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        hints = _hints(kind)
        fields = dataclasses.fields(kind)
        return {
            "type": "object",
            "properties": {f.name: json_schema(hints[f.name]) for f in fields},
            "required": [f.name for f in fields if f.default is dataclasses.MISSING],
        }
    origin = get_origin(kind)
    if origin in (Union, types.UnionType):
        (inner,) = [o for o in get_args(kind) if o is not type(None)]
        return {"anyOf": [json_schema(inner), {"type": "null"}]}
    if origin is tuple:
        return {"type": "array", "items": json_schema(get_args(kind)[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": json_schema(get_args(kind)[1])}
    if isinstance(kind, type) and issubclass(kind, StrEnum):
        return {"type": "string", "enum": [member.value for member in kind]}
    return {"type": _JSON_TYPES[kind]}


def _name(data: object) -> str:
    return "null" if data is None else type(data).__name__
