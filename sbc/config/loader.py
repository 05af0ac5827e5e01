"""YAML configuration to a validated `SbcConfig`: every problem reported, each with its line.

Each section is read through a table of its YAML keys (`_Key`: the model field it fills, the
converter that checks it, whether it is required). A key the table does not know is an error with a
"did you mean" hint; a key left out, or left empty, takes the model's default. Checks that span
several values (t1 <= t2, unique realm names and listeners, overlapping media ports, routes naming
realms, header rules, a firewall opening's address families, connection limits) run after the values
themselves.
Nothing stops at the first problem: the whole file is read and `ConfigError` lists everything.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

from dataplane.settings import BpfLoader, DataplaneSettings, RelayChoice, XdpAttach
from sbc.config.model import (
    DSCP_NAMES,
    AuditSettings,
    CallRecordSettings,
    FirewallOpening,
    FirewallProtocol,
    FirewallSettings,
    HttpSettings,
    IPAddress,
    LatchMode,
    Limits,
    Listener,
    ManagementSettings,
    MediaMode,
    MediaSettings,
    Peer,
    PeerTls,
    Realm,
    RedirectPolicy,
    Route,
    SbcConfig,
    SnmpAuth,
    SnmpPriv,
    SnmpSettings,
    SnmpV3User,
    SnmpVersion,
    StreamLimits,
    Timers,
    TlsSettings,
    Transport,
    TrapTarget,
)
from sbc.policy.header_rules import RuleErrors, compile_rules
from sbc.yamlsource import (
    ConfigError,
    ConfigProblem,
    YamlReader,
    child_path,
    did_you_mean,
    item_path,
    parse_yaml,
    unknown_key,
)

__all__ = ["ConfigError", "ConfigProblem", "load_config", "load_config_text"]

EMBEDDED_SOURCE = "<embedded>"
LOG_LEVELS = ("debug", "info", "warning", "error")
TLS_VERSIONS = ("1.2", "1.3")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_HEADER_NAME_RE = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")  # RFC 3261 §25.1 token
_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+$")
_PORT_RANGE_RE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


def load_config(path: Path | None = None) -> SbcConfig:
    """Load a config file, or the embedded default when `path` is None. Raises ConfigError."""
    if path is None:
        text = resources.files("sbc.config").joinpath("default.yaml").read_text(encoding="utf-8")
        return load_config_text(text, EMBEDDED_SOURCE)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigProblem(str(path), 1, "config", f"cannot read the file: {exc}")]) from None
    return load_config_text(text, str(path), base_dir=path.parent)


def load_config_text(text: str, source: str, *, base_dir: Path | None = None) -> SbcConfig:
    """Validate config text; relative file paths (TLS keys) are taken from `base_dir` (default: cwd)."""
    tree, problems = parse_yaml(text, source)
    if problems and tree.data is None:
        raise ConfigError(problems)
    reader = _Reader(tree, source, problems, base_dir=base_dir or Path.cwd())
    config = reader.config()
    if reader.problems or config is None:
        raise ConfigError(reader.problems)
    return config


# ---- the reader and its generic table walk ------------------------------------------------------
class _Invalid(Exception):
    """This value is wrong; the message is recorded at the value's path."""


class _Reported(Exception):
    """Something inside this value is wrong and already recorded; the value cannot be built."""


Converter = Callable[["_Reader", Any, str], Any]


@dataclass(frozen=True, slots=True)
class _Key:
    attr: str | None  # the model field; None: the converter returns a dict of fields (sections, ranges)
    convert: Converter
    required: bool = False


@dataclass(slots=True)
class _Reader(YamlReader):
    document: ClassVar[str] = "config"

    base_dir: Path = field(default_factory=Path.cwd)
    realm_names: set[str] = field(default_factory=set)
    route_names: set[str] = field(default_factory=set)

    def fields(self, value: object, path: str, table: Mapping[str, _Key]) -> dict[str, Any] | None:
        """The model fields a mapping gives, or None (problems recorded) when any of it is wrong."""
        if not isinstance(value, dict):
            self.problem(path, f"expected a mapping, got {_kind(value)}")
            return None
        out: dict[str, Any] = {}
        ok = True
        for key, raw in value.items():
            sub = child_path(path, key)
            spec = table.get(key)
            if spec is None:
                self.problem(sub, unknown_key(key, list(table)))
                ok = False
                continue
            if raw is None:  # `key:` with nothing after it: as if absent
                continue
            try:
                converted = spec.convert(self, raw, sub)
            except _Invalid as exc:
                self.problem(sub, str(exc))
                ok = False
                continue
            except _Reported:
                ok = False
                continue
            if spec.attr is None:
                out.update(converted)
            else:
                out[spec.attr] = converted
        for key, spec in table.items():
            if spec.required and value.get(key) is None:
                self.problem(child_path(path, key), "required key is missing")
                ok = False
        return out if ok else None

    def build(self, cls: Callable[..., Any], value: object, path: str, table: Mapping[str, _Key]) -> Any:
        kwargs = self.fields(value, path, table)
        if kwargs is None:
            raise _Reported
        return cls(**kwargs)

    def items(self, value: object, path: str, convert: Converter) -> list[Any]:
        """Convert every item of a list, reporting each bad one; raise _Reported if any was bad."""
        if not isinstance(value, list):
            raise _Invalid(f"expected a list, got {_kind(value)}")
        out: list[Any] = []
        ok = True
        for i, raw in enumerate(value):
            sub = item_path(path, i)
            try:
                out.append(convert(self, raw, sub))
            except _Invalid as exc:
                self.problem(sub, str(exc))
                ok = False
            except _Reported:
                ok = False
        if not ok:
            raise _Reported
        return out

    def config(self) -> SbcConfig | None:
        data = self.tree.data
        if data is None:
            self.problem("", f"the configuration is empty; it needs at least `realms:` ({', '.join(_TOP)})")
            return None
        if isinstance(data, dict):
            # Routes and header rules may come before the realms they name: collect names first.
            self.realm_names = _names(data.get("realms"))
            self.route_names = _names(data.get("routes"))
        kwargs = self.fields(data, "", _TOP)
        if kwargs is None:
            return None
        config = SbcConfig(**kwargs, source=self.source)
        return config if _check_firewall_families(self, config) else None


def _names(raw: object) -> set[str]:
    if not isinstance(raw, list):
        return set()
    return {item["name"] for item in raw if isinstance(item, dict) and isinstance(item.get("name"), str)}


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


# ---- scalar converters -------------------------------------------------------------------------
def _string(r: _Reader, value: Any, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(f"expected a non-empty string, got {_kind(value)}")
    if "\r" in value or "\n" in value:
        raise _Invalid("may not contain a line break")
    return value


def _name(r: _Reader, value: Any, path: str) -> str:
    text = _string(r, value, path)
    if not _NAME_RE.match(text):
        raise _Invalid(f"{text!r} is not a name: letters, digits, '_', '.', '-', at most 63")
    return text


def _bool(r: _Reader, value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"expected true or false, got {_kind(value)}")
    return value


def _integer(r: _Reader, value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"expected an integer, got {_kind(value)}")
    return value


def _at_least(minimum: int) -> Converter:
    def convert(r: _Reader, value: Any, path: str) -> int:
        number = _integer(r, value, path)
        if number < minimum:
            raise _Invalid(f"must be at least {minimum}, got {number}")
        return number

    return convert


_positive = _at_least(1)


def _port(r: _Reader, value: Any, path: str) -> int:
    number = _integer(r, value, path)
    if not 1 <= number <= 65535:
        raise _Invalid(f"port {number} is not within 1-65535")
    return number


def _choice(options: tuple[str, ...]) -> Converter:
    def convert(r: _Reader, value: Any, path: str) -> str:
        # A float is accepted for `min_version: 1.3`, which YAML reads as a number.
        text = str(value).lower() if isinstance(value, str | float) else ""
        if text not in options:
            raise _Invalid(f"{value!r} is not one of: {', '.join(options)}")
        return text

    return convert


def _enum(
    cls: type[Transport]
    | type[LatchMode]
    | type[MediaMode]
    | type[RedirectPolicy]
    | type[SnmpAuth]
    | type[SnmpPriv]
    | type[SnmpVersion]
    | type[RelayChoice]
    | type[XdpAttach]
    | type[FirewallProtocol]
    | type[BpfLoader],
) -> Converter:
    options = tuple(m.value for m in cls)
    pick = _choice(options)

    def convert(r: _Reader, value: Any, path: str) -> Any:
        return cls(pick(r, value, path))

    return convert


def _address(r: _Reader, value: Any, path: str) -> IPAddress:
    """An address the SBC binds and writes into Via, Contact and SDP: concrete and unicast."""
    if not isinstance(value, str):
        raise _Invalid(f"expected an IPv4 or IPv6 address, got {_kind(value)}")
    try:
        address = ipaddress.ip_address(value.strip().removeprefix("[").removesuffix("]"))
    except ValueError:
        raise _Invalid(f"{value!r} is not an IPv4 or IPv6 address") from None
    if address.is_unspecified or address.is_multicast:
        raise _Invalid(f"{address} cannot be used: the realm's address goes into Via, Contact and SDP")
    return address


def _network(r: _Reader, value: Any, path: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not isinstance(value, str):
        raise _Invalid(f"expected a network like 192.168.0.0/16, got {_kind(value)}")
    try:
        return ipaddress.ip_network(value.strip())
    except ValueError as exc:
        raise _Invalid(f"{value!r} is not a network: {exc}") from None


def _networks(r: _Reader, value: Any, path: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(r.items(value, path, _network))


def _dscp(r: _Reader, value: Any, path: str) -> int:
    if isinstance(value, str):
        number = DSCP_NAMES.get(value.strip().lower())
        if number is None:
            hint = did_you_mean(value.strip().lower(), list(DSCP_NAMES), " (use a name like ef, af31, cs3 or 0-63)")
            raise _Invalid(f"unknown DSCP name {value!r}{hint}")
        return number
    number = _integer(r, value, path)
    if not 0 <= number <= 63:
        raise _Invalid(f"DSCP {number} is not within 0-63")
    return number


def _path(r: _Reader, value: Any, path: str) -> Path:
    return Path(_string(r, value, path)).expanduser()


def _existing_file(r: _Reader, value: Any, path: str) -> Path:
    file = _path(r, value, path)
    if not file.is_absolute():
        file = r.base_dir / file
    if not file.is_file():
        raise _Invalid(f"{file} does not exist or is not a file")
    return file


def _regex(r: _Reader, value: Any, path: str) -> str:
    text = _string(r, value, path)
    try:
        re.compile(text)
    except re.error as exc:
        raise _Invalid(f"regex {text!r} does not compile: {exc}") from None
    return text


def _header_names(r: _Reader, value: Any, path: str) -> tuple[str, ...]:
    def one(r: _Reader, item: Any, sub: str) -> str:
        if not isinstance(item, str) or not _HEADER_NAME_RE.match(item):
            raise _Invalid(f"{item!r} is not a header name")
        return item

    return tuple(r.items(value, path, one))


def _media_ports(r: _Reader, value: Any, path: str) -> dict[str, int]:
    """`"A-B"`: RTP on even ports, RTCP on the odd one above (RFC 3550 §11), so A even and B odd."""
    m = _PORT_RANGE_RE.match(value) if isinstance(value, str) else None
    if m is None:
        raise _Invalid(f"expected a port range like 30000-30999, got {_kind(value)}")
    low, high = int(m[1]), int(m[2])
    for port in (low, high):
        if not 1 <= port <= 65535:
            raise _Invalid(f"port {port} is not within 1-65535")
    if low > high:
        raise _Invalid(f"range {low}-{high} is empty")
    if low % 2:
        raise _Invalid(f"range {low}-{high} must start on an even port (RTP even, RTCP odd: RFC 3550 §11)")
    if high % 2 == 0:
        raise _Invalid(f"range {low}-{high} must end on an odd port, so the last RTP port has its RTCP port")
    return {"port_min": low, "port_max": high}


# ---- sections ----------------------------------------------------------------------------------
def _peer(r: _Reader, value: Any, path: str) -> Peer:
    peer: Peer = r.build(Peer, value, path, _PEER)
    if peer.tls != PeerTls() and peer.transport is not Transport.TLS:
        r.problem(child_path(path, "tls"), f"`tls:` verifies a TLS peer, but this one uses {peer.transport}")
        raise _Reported
    return peer


def _host(r: _Reader, value: Any, path: str) -> str:
    text = _string(r, value, path).strip()
    bare = text.removeprefix("[").removesuffix("]")
    try:
        ipaddress.ip_address(bare)
        return bare
    except ValueError:
        pass
    if ":" in text:
        raise _Invalid(f"{text!r} is not a host: give the port as `port:`")
    if not _HOSTNAME_RE.match(text):
        raise _Invalid(f"{text!r} is neither an IP address nor a host name")
    return text


def _peer_tls(r: _Reader, value: Any, path: str) -> PeerTls:
    tls: PeerTls = r.build(PeerTls, value, path, _PEER_TLS)
    return tls


def _server_name(r: _Reader, value: Any, path: str) -> str:
    """The name a peer's certificate must carry: a DNS name (a wildcard certificate may match it)."""
    text = _string(r, value, path).strip()
    if not _HOSTNAME_RE.match(text):
        raise _Invalid(f"{text!r} is not a host name")
    return text


def _seconds(r: _Reader, value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"expected a number of seconds, got {_kind(value)}")
    if value <= 0:
        raise _Invalid(f"must be more than 0 seconds, got {value}")
    return float(value)


def _stream_limits(r: _Reader, value: Any, path: str) -> StreamLimits:
    limits: StreamLimits = r.build(StreamLimits, value, path, _STREAM_LIMITS)
    if limits.connections_per_source > limits.connections:
        r.problem(
            child_path(path, "connections_per_source"),
            f"connections_per_source ({limits.connections_per_source}) exceeds connections ({limits.connections})",
        )
        raise _Reported
    return limits


def _limits(r: _Reader, value: Any, path: str) -> Limits:
    limits: Limits = r.build(Limits, value, path, _LIMITS)
    return limits


def _tls(r: _Reader, value: Any, path: str) -> TlsSettings:
    tls: TlsSettings = r.build(TlsSettings, value, path, _TLS)
    if tls.verify_client and tls.ca_file is None:
        r.problem(child_path(path, "verify_client"), "verify_client needs ca_file: to verify against")
        raise _Reported
    return tls


def _listener(r: _Reader, value: Any, path: str) -> Listener:
    listener: Listener = r.build(Listener, value, path, _LISTENER)
    return listener


def _listeners(r: _Reader, value: Any, path: str) -> tuple[Listener, ...]:
    listeners = r.items(value, path, _listener)
    if not listeners:
        raise _Invalid("a realm needs at least one listener")
    return tuple(listeners)


def _media(r: _Reader, value: Any, path: str) -> MediaSettings:
    media: MediaSettings = r.build(MediaSettings, value, path, _MEDIA)
    return media


def _realm(r: _Reader, value: Any, path: str) -> Realm:
    # Checked on the raw listeners, so that it is reported even when the realm has other errors.
    tls_ok = True
    if isinstance(value, dict) and not value.get("tls") and isinstance(value.get("listen"), list):
        for i, listener in enumerate(value["listen"]):
            if isinstance(listener, dict) and listener.get("transport") == Transport.TLS.value:
                r.problem(
                    item_path(child_path(path, "listen"), i),
                    "a tls listener needs a `tls:` section with certificate and private_key",
                )
                tls_ok = False
    realm: Realm = r.build(Realm, value, path, _REALM)
    if not tls_ok:
        raise _Reported
    for name in ("peer", "registrar"):
        peer: Peer | None = getattr(realm, name)
        if peer is not None and peer.large_over_tcp and realm.listener(Transport.TCP) is None:
            r.problem(
                child_path(child_path(path, name), "large_over_tcp"),
                "large_over_tcp needs a tcp listener in this realm (`listen:`): the Via names the port for the answer",
            )
            raise _Reported
    return realm


def _realms(r: _Reader, value: Any, path: str) -> tuple[Realm, ...]:
    # Convert every realm before failing, so that the checks across realms still run on the good ones.
    good: list[tuple[int, Realm]] = []
    bad = False
    if not isinstance(value, list) or not value:
        raise _Invalid(f"expected a non-empty list of realms, got {_kind(value)}")
    for i, raw in enumerate(value):
        try:
            good.append((i, _realm(r, raw, item_path(path, i))))
        except _Invalid as exc:
            r.problem(item_path(path, i), str(exc))
            bad = True
        except _Reported:
            bad = True
    bad |= not _unique_names(r, value, path, "realm")
    bad |= not _check_realms(r, good, path)
    if bad:
        raise _Reported
    return tuple(realm for _, realm in good)


def _check_realms(r: _Reader, realms: list[tuple[int, Realm]], path: str) -> bool:
    ok = True
    # TCP and TLS listeners are both TCP sockets: they cannot share an address and port.
    sockets: dict[tuple[IPAddress, str, int], tuple[str, Transport]] = {}
    media: list[tuple[str, MediaSettings]] = []
    for i, realm in realms:
        realm_path = item_path(path, i)
        for j, listener in enumerate(realm.listeners):
            listener_path = item_path(child_path(realm_path, "listen"), j)
            kind = "udp" if listener.transport == Transport.UDP else "tcp"
            key = (realm.address, kind, listener.port)
            if key in sockets:
                other_path, other = sockets[key]
                r.problem(
                    listener_path,
                    f"{listener.transport} {realm.address}:{listener.port} is already used by {other_path} ({other})",
                )
                ok = False
            else:
                sockets[key] = (listener_path, listener.transport)
        ports_path = child_path(child_path(realm_path, "media"), "ports")
        mine = realm.media
        for seen_path, seen in media:
            if seen.address == mine.address and mine.port_min <= seen.port_max and seen.port_min <= mine.port_max:
                r.problem(
                    ports_path,
                    f"{mine.port_min}-{mine.port_max} overlaps {seen_path} "
                    f"({seen.port_min}-{seen.port_max}) on {seen.address}",
                )
                ok = False
        media.append((ports_path, realm.media))
    return ok


def _realm_ref(r: _Reader, value: Any, path: str) -> str:
    name = _string(r, value, path)
    if name not in r.realm_names:
        realms = sorted(r.realm_names)
        hint = did_you_mean(name, realms, f"; realms are: {', '.join(realms)}")
        raise _Invalid(f"unknown realm {name!r}{hint}")
    return name


def _route(r: _Reader, value: Any, path: str) -> Route:
    route: Route = r.build(Route, value, path, _ROUTE)
    return route


def _routes(r: _Reader, value: Any, path: str) -> tuple[Route, ...]:
    unique = _unique_names(r, value, path, "route")
    routes: list[Route] = r.items(value, path, _route)
    if not unique:
        raise _Reported
    return tuple(routes)


def _unique_names(r: _Reader, value: Any, path: str, what: str) -> bool:
    """Check on the raw items, so that a duplicate is found even when an item has other errors."""
    if not isinstance(value, list):
        return True  # reported by the list check
    seen: dict[str, int] = {}
    for i, raw in enumerate(value):
        name = raw.get("name") if isinstance(raw, dict) else None
        if not isinstance(name, str):
            continue
        if name in seen:
            r.problem(
                child_path(item_path(path, i), "name"),
                f"{what} {name!r} is already defined at {item_path(path, seen[name])}",
            )
        seen.setdefault(name, i)
    return len(seen) == sum(1 for raw in value if isinstance(raw, dict) and isinstance(raw.get("name"), str))


def _timers(r: _Reader, value: Any, path: str) -> Timers:
    timers: Timers = r.build(Timers, value, path, _TIMERS)
    ok = True
    if timers.t1_ms > timers.t2_ms:
        r.problem(child_path(path, "t1_ms"), f"t1_ms ({timers.t1_ms}) must not exceed t2_ms ({timers.t2_ms})")
        ok = False
    if timers.min_se_s > timers.session_expires_s:
        r.problem(
            child_path(path, "session_expires_s"),
            f"session_expires_s ({timers.session_expires_s}) is below min_se_s ({timers.min_se_s})",
        )
        ok = False
    if not ok:
        raise _Reported
    return timers


def _sbc_section(r: _Reader, value: Any, path: str) -> dict[str, Any]:
    fields = r.fields(value, path, _SBC)
    if fields is None:
        raise _Reported
    return fields


def _header_rules(r: _Reader, value: Any, path: str) -> Any:
    if not isinstance(value, list):
        raise _Invalid(f"expected a list of rules, got {_kind(value)}")
    try:
        return compile_rules(value, r.realm_names, r.route_names, path=path)
    except RuleErrors as exc:
        for error in exc.errors:
            r.problem(error.path, error.reason)
        raise _Reported from None


# ---- management (sbc mgmt: REST API, web UI, SNMP) ----------------------------------------------
def _bind_address(r: _Reader, value: Any, path: str) -> IPAddress:
    """An address a management listener binds: unlike a realm's, `0.0.0.0` or `::` (every address) is fine."""
    if not isinstance(value, str):
        raise _Invalid(f"expected an IPv4 or IPv6 address, got {_kind(value)}")
    try:
        address = ipaddress.ip_address(value.strip().removeprefix("[").removesuffix("]"))
    except ValueError:
        raise _Invalid(f"{value!r} is not an IPv4 or IPv6 address") from None
    if address.is_multicast:
        raise _Invalid(f"{address} is a multicast address")
    return address


def _secret(minimum: int) -> Converter:
    def convert(r: _Reader, value: Any, path: str) -> str:
        # Never echo the value: it is a key or a community.
        if not isinstance(value, str) or not value:
            raise _Invalid(f"expected a string, got {_kind(value) if not isinstance(value, str) else 'an empty one'}")
        if "\r" in value or "\n" in value:
            raise _Invalid("may not contain a line break")
        if len(value) < minimum:
            raise _Invalid(f"must be at least {minimum} characters long")
        return value

    return convert


def _http(r: _Reader, value: Any, path: str) -> HttpSettings:
    http: HttpSettings = r.build(HttpSettings, value, path, _HTTP)
    if (http.tls_certificate is None) != (http.tls_key is None):
        missing = "tls_key" if http.tls_key is None else "tls_certificate"
        r.problem(child_path(path, missing), "tls_certificate and tls_key go together (or neither: self-signed)")
        raise _Reported
    return http


def _v3_user(r: _Reader, value: Any, path: str) -> SnmpV3User:
    user: SnmpV3User = r.build(SnmpV3User, value, path, _SNMP_USER)
    return user


def _v3_users(r: _Reader, value: Any, path: str) -> tuple[SnmpV3User, ...]:
    unique = _unique_names(r, value, path, "SNMPv3 user")
    users: list[SnmpV3User] = r.items(value, path, _v3_user)
    if not unique:
        raise _Reported
    return tuple(users)


def _trap_target(r: _Reader, value: Any, path: str) -> TrapTarget:
    target: TrapTarget = r.build(TrapTarget, value, path, _TRAP_TARGET)
    if target.version == SnmpVersion.V3 and (target.user is None or target.community is not None):
        raise _Invalid("a v3 trap target names `user:` (one of v3_users) and no community")
    if target.version == SnmpVersion.V2C and (target.community is None or target.user is not None):
        raise _Invalid("a v2c trap target gives `community:` and no user")
    return target


def _trap_targets(r: _Reader, value: Any, path: str) -> tuple[TrapTarget, ...]:
    return tuple(r.items(value, path, _trap_target))


def _engine_id(r: _Reader, value: Any, path: str) -> str:
    text = _string(r, value, path).strip().lower().removeprefix("0x")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise _Invalid("expected hexadecimal digits (an SNMP engine ID)") from None
    if not 5 <= len(raw) <= 32:  # RFC 3411 SnmpEngineID
        raise _Invalid(f"an SNMP engine ID has 5 to 32 octets, this one {len(raw)}")
    return text


def _snmp(r: _Reader, value: Any, path: str) -> SnmpSettings:
    snmp: SnmpSettings = r.build(SnmpSettings, value, path, _SNMP)
    names = {u.name for u in snmp.v3_users}
    ok = True
    for i, target in enumerate(snmp.trap_targets):
        if target.user is not None and target.user not in names:
            r.problem(
                child_path(item_path(child_path(path, "trap_targets"), i), "user"),
                f"unknown SNMPv3 user {target.user!r}; v3_users are: {', '.join(sorted(names)) or 'none'}",
            )
            ok = False
    if not ok:
        raise _Reported
    return snmp


def _dataplane(r: _Reader, value: Any, path: str) -> DataplaneSettings:
    settings: DataplaneSettings = r.build(DataplaneSettings, value, path, _DATAPLANE)
    if not settings.pin_dir.is_absolute():
        r.problem(child_path(path, "pin_dir"), f"{settings.pin_dir} is not an absolute path (a bpffs directory)")
        raise _Reported
    return settings


def _audit(r: _Reader, value: Any, path: str) -> AuditSettings:
    audit: AuditSettings = r.build(AuditSettings, value, path, _AUDIT)
    return audit


def _call_records(r: _Reader, value: Any, path: str) -> CallRecordSettings:
    records: CallRecordSettings = r.build(CallRecordSettings, value, path, _CALL_RECORDS)
    return records


def _management(r: _Reader, value: Any, path: str) -> ManagementSettings:
    management: ManagementSettings = r.build(ManagementSettings, value, path, _MANAGEMENT)
    return management


# ---- firewall (hw/firewall.py renders it) -------------------------------------------------------
def _opening_ports(r: _Reader, value: Any, path: str) -> dict[str, int]:
    """`port: 5061` or a range `port: 8000-8010`."""
    if isinstance(value, int) and not isinstance(value, bool):
        port = _port(r, value, path)
        return {"port_min": port, "port_max": port}
    m = _PORT_RANGE_RE.match(value) if isinstance(value, str) else None
    if m is None:
        raise _Invalid(f"expected a port or a range like 8000-8010, got {_kind(value)}")
    low, high = int(m[1]), int(m[2])
    for port in (low, high):
        if not 1 <= port <= 65535:
            raise _Invalid(f"port {port} is not within 1-65535")
    if low > high:
        raise _Invalid(f"range {low}-{high} is empty")
    return {"port_min": low, "port_max": high}


def _opening_target(r: _Reader, value: Any, path: str) -> dict[str, Any]:
    """`to:` names a realm (its SIP address) or gives one of the box's addresses."""
    text = _string(r, value, path).strip()
    if text in r.realm_names:
        return {"to_realm": text}
    try:
        address = ipaddress.ip_address(text.removeprefix("[").removesuffix("]"))
    except ValueError:
        realms = sorted(r.realm_names)
        hint = did_you_mean(text, realms, f"; realms are: {', '.join(realms)}")
        raise _Invalid(f"{text!r} is neither a realm nor an address{hint}") from None
    if address.is_unspecified or address.is_multicast:
        raise _Invalid(f"{address} is not one address of the box: leave `to:` out to open on every address")
    return {"to_address": address}


def _opening(r: _Reader, value: Any, path: str) -> FirewallOpening:
    opening: FirewallOpening = r.build(FirewallOpening, value, path, _FIREWALL_OPENING)
    return opening


def _openings(r: _Reader, value: Any, path: str) -> tuple[FirewallOpening, ...]:
    return tuple(r.items(value, path, _opening))


def _firewall(r: _Reader, value: Any, path: str) -> FirewallSettings:
    firewall: FirewallSettings = r.build(FirewallSettings, value, path, _FIREWALL)
    return firewall


def _check_firewall_families(r: _Reader, config: SbcConfig) -> bool:
    """An opening from an IPv4 network to an IPv6 address (or back) would never match: say so."""
    ok = True
    for i, opening in enumerate(config.firewall.allow):
        if opening.source is None:
            continue
        target = config.realm(opening.to_realm).address if opening.to_realm else opening.to_address
        if target is not None and target.version != opening.source.version:
            r.problem(
                child_path(item_path("firewall.allow", i), "from"),
                f"{opening.source} is IPv{opening.source.version} but `to` is the IPv{target.version} {target}",
            )
            ok = False
    return ok


# ---- the tables: YAML key -> model field -----------------------------------------------------------
_PEER: dict[str, _Key] = {
    "host": _Key("host", _host, required=True),
    "port": _Key("port", _port),
    "transport": _Key("transport", _enum(Transport)),
    "keepalive_s": _Key("keepalive_s", _at_least(0)),
    "large_over_tcp": _Key("large_over_tcp", _bool),
    "tls": _Key("tls", _peer_tls),
}
_PEER_TLS: dict[str, _Key] = {
    "ca_file": _Key("ca_file", _existing_file),
    "server_name": _Key("server_name", _server_name),
}
_TLS: dict[str, _Key] = {
    "certificate": _Key("certificate", _existing_file, required=True),
    "private_key": _Key("private_key", _existing_file, required=True),
    "ca_file": _Key("ca_file", _existing_file),
    "verify_client": _Key("verify_client", _bool),
    "min_version": _Key("min_version", _choice(TLS_VERSIONS)),
}
_LISTENER: dict[str, _Key] = {
    "transport": _Key("transport", _enum(Transport), required=True),
    "port": _Key("port", _port, required=True),
}
_MEDIA: dict[str, _Key] = {
    "address": _Key("address", _address, required=True),
    "ports": _Key(None, _media_ports, required=True),
    "latch": _Key("latch", _enum(LatchMode)),
    "latch_window_ms": _Key("latch_window_ms", _positive),
    "relatch": _Key("relatch", _bool),
    "dscp": _Key("dscp", _dscp),
    "timeout_s": _Key("timeout_s", _positive),
    "hangup_on_timeout": _Key("hangup_on_timeout", _bool),
}
_REALM: dict[str, _Key] = {
    "name": _Key("name", _name, required=True),
    "address": _Key("address", _address, required=True),
    "listen": _Key("listeners", _listeners, required=True),
    "media": _Key("media", _media, required=True),
    "trusted": _Key("trusted", _bool),
    "peer": _Key("peer", _peer),
    "registrar": _Key("registrar", _peer),
    "sip_dscp": _Key("sip_dscp", _dscp),
    "tls": _Key("tls", _tls),
    "user_agent": _Key("user_agent", _string),
    "pass_headers": _Key("pass_headers", _header_names),
    "strip_headers": _Key("strip_headers", _header_names),
    "direct_media": _Key("direct_media", _bool),
    "advertised_address": _Key("advertised_address", _address),
    "networks": _Key("networks", _networks),
    "nat_traversal": _Key("nat_traversal", _bool),
    "redirects": _Key("redirects", _enum(RedirectPolicy)),
}
_ROUTE: dict[str, _Key] = {
    "name": _Key("name", _name, required=True),
    "from": _Key("from_realm", _realm_ref, required=True),
    "to": _Key("to_realm", _realm_ref, required=True),
    "match_user": _Key("match_user", _regex),
    "target": _Key("target", _peer),
    "use_registrations": _Key("use_registrations", _bool),
    "media": _Key("media", _enum(MediaMode)),
}
_TIMERS: dict[str, _Key] = {
    "t1_ms": _Key("t1_ms", _positive),
    "t2_ms": _Key("t2_ms", _positive),
    "t4_ms": _Key("t4_ms", _positive),
    "session_expires_s": _Key("session_expires_s", _positive),
    "min_se_s": _Key("min_se_s", _at_least(90)),  # RFC 4028 §4: never below 90 seconds
}
_SBC: dict[str, _Key] = {
    "user_agent": _Key("user_agent", _string),
    "state_dir": _Key("state_dir", _path),
    "control_socket": _Key("control_socket", _path),
    "max_calls": _Key("max_calls", _positive),
    "log_level": _Key("log_level", _choice(LOG_LEVELS)),
    "cdr": _Key("cdr", _call_records),
}
_CALL_RECORDS: dict[str, _Key] = {
    "max_bytes": _Key("max_bytes", _at_least(4096)),
    "max_age_days": _Key("max_age_days", _at_least(0)),
    "keep": _Key("keep", _at_least(0)),
}
_AUDIT: dict[str, _Key] = {
    "max_bytes": _Key("max_bytes", _at_least(4096)),
    "keep": _Key("keep", _at_least(0)),
}
_HTTP: dict[str, _Key] = {
    "address": _Key("address", _bind_address),
    "port": _Key("port", _port),
    "tls_certificate": _Key("tls_certificate", _existing_file),
    "tls_key": _Key("tls_key", _existing_file),
}
_SNMP_USER: dict[str, _Key] = {
    "name": _Key("name", _name, required=True),
    "auth": _Key("auth", _enum(SnmpAuth)),
    "auth_key": _Key("auth_key", _secret(8), required=True),  # RFC 3414 §11.2: at least 8 characters
    "priv": _Key("priv", _enum(SnmpPriv)),
    "priv_key": _Key("priv_key", _secret(8), required=True),
}
_TRAP_TARGET: dict[str, _Key] = {
    "host": _Key("host", _host, required=True),
    "port": _Key("port", _port),
    "version": _Key("version", _enum(SnmpVersion)),
    "user": _Key("user", _name),
    "community": _Key("community", _secret(1)),
}
_SNMP: dict[str, _Key] = {
    "enabled": _Key("enabled", _bool),
    "address": _Key("address", _bind_address),
    "port": _Key("port", _port),
    "v3_users": _Key("v3_users", _v3_users),
    "v2c_community": _Key("v2c_community", _secret(1)),
    "trap_targets": _Key("trap_targets", _trap_targets),
    "engine_id": _Key("engine_id", _engine_id),
    "sys_name": _Key("sys_name", _string),
    "sys_contact": _Key("sys_contact", _string),
    "sys_location": _Key("sys_location", _string),
}
_MANAGEMENT: dict[str, _Key] = {
    "http": _Key("http", _http),
    "users_file": _Key("users_file", _path),
    "state_dir": _Key("state_dir", _path),
    "confirm_timeout_s": _Key("confirm_timeout_s", _at_least(10)),
    "snmp": _Key("snmp", _snmp),
    "poll_interval_s": _Key("poll_interval_s", _positive),
    "audit": _Key("audit", _audit),
}
_DATAPLANE: dict[str, _Key] = {
    "relay": _Key("relay", _enum(RelayChoice)),
    "pin_dir": _Key("pin_dir", _path),
    "xdp_mode": _Key("xdp_mode", _enum(XdpAttach)),
    "loader": _Key("loader", _enum(BpfLoader)),
}
_FIREWALL_OPENING: dict[str, _Key] = {
    "from": _Key("source", _network),
    "port": _Key(None, _opening_ports, required=True),
    "protocol": _Key("protocol", _enum(FirewallProtocol)),
    "to": _Key(None, _opening_target),
}
_FIREWALL: dict[str, _Key] = {
    "enabled": _Key("enabled", _bool),
    "allow": _Key("allow", _openings),
}
_STREAM_LIMITS: dict[str, _Key] = {
    "connections": _Key("connections", _positive),
    "connections_per_source": _Key("connections_per_source", _positive),
    "idle_timeout_s": _Key("idle_timeout_s", _seconds),
    "header_timeout_s": _Key("header_timeout_s", _seconds),
    "body_timeout_s": _Key("body_timeout_s", _seconds),
    "max_header_bytes": _Key("max_header_bytes", _at_least(256)),
    "max_body_bytes": _Key("max_body_bytes", _at_least(0)),
    "max_buffered_bytes": _Key("max_buffered_bytes", _at_least(1024)),
}
_LIMITS: dict[str, _Key] = {
    "stream": _Key("stream", _stream_limits),
}
_TOP: dict[str, _Key] = {
    "sbc": _Key(None, _sbc_section),
    "timers": _Key("timers", _timers),
    "realms": _Key("realms", _realms, required=True),
    "routes": _Key("routes", _routes, required=True),
    "header_rules": _Key("header_rules", _header_rules),
    "management": _Key("management", _management),
    "dataplane": _Key("dataplane", _dataplane),
    "firewall": _Key("firewall", _firewall),
    "limits": _Key("limits", _limits),
}

# For the test that every model field can be set from YAML.
TABLES: dict[type, dict[str, _Key]] = {
    Peer: _PEER,
    PeerTls: _PEER_TLS,
    TlsSettings: _TLS,
    Listener: _LISTENER,
    MediaSettings: _MEDIA,
    Realm: _REALM,
    Route: _ROUTE,
    Timers: _TIMERS,
    HttpSettings: _HTTP,
    SnmpV3User: _SNMP_USER,
    TrapTarget: _TRAP_TARGET,
    SnmpSettings: _SNMP,
    ManagementSettings: _MANAGEMENT,
    DataplaneSettings: _DATAPLANE,
    FirewallOpening: _FIREWALL_OPENING,
    FirewallSettings: _FIREWALL,
    AuditSettings: _AUDIT,
    CallRecordSettings: _CALL_RECORDS,
    StreamLimits: _STREAM_LIMITS,
    Limits: _LIMITS,
}
