"""The validated configuration: frozen dataclasses the rest of the SBC reads. Built by `sbc.config.loader`."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from dataplane.settings import DataplaneSettings

# The config holds the header rules compiled (config is above policy: policy imports no config).
# MessageDirection is named here too, explicitly re-exported, for the b2bua modules that import it here.
from sbc.policy.header_rules import HeaderRule
from sbc.policy.header_rules import MessageDirection as MessageDirection

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
LOCALHOST = ipaddress.IPv4Address("127.0.0.1")  # management listeners bind only here unless configured

# RFC 4594 class selectors: names an operator writes in the config, mapped to DSCP values.
DSCP_NAMES: dict[str, int] = {
    "cs0": 0, "default": 0, "cs1": 8, "af11": 10, "af12": 12, "af13": 14, "cs2": 16, "af21": 18,
    "af22": 20, "af23": 22, "cs3": 24, "af31": 26, "af32": 28, "af33": 30, "cs4": 32, "af41": 34,
    "af42": 36, "af43": 38, "cs5": 40, "voice-admit": 44, "ef": 46, "cs6": 48, "cs7": 56,
}  # fmt: skip


class Transport(StrEnum):
    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"


class MediaMode(StrEnum):
    ANCHOR = "anchor"
    DIRECT = "direct"


class LatchMode(StrEnum):
    """How the relay learns where a leg's RTP really comes from (symmetric RTP, RFC 4961)."""

    SDP = "sdp"  # only the address the SDP names
    LEARN = "learn"  # NATed realm: the first packets inside the learning window


class RedirectPolicy(StrEnum):
    """What the SBC does with a 3xx that answers a call it sent into a realm (RFC 3261 §8.1.3.4)."""

    FOLLOW = "follow"  # try the contacts that are the realm's own peer or registrar, as the same call
    RELAY = "relay"  # pass the 3xx on with contacts that lead back through the SBC
    REFUSE = "refuse"  # the caller gets 480


@dataclass(frozen=True, slots=True)
class TlsSettings:
    certificate: Path
    private_key: Path
    ca_file: Path | None = None  # set: verify client certificates (mutual TLS)
    verify_client: bool = False
    min_version: str = "1.3"


@dataclass(frozen=True, slots=True)
class PeerTls:
    """How the SBC verifies a peer it connects to over TLS (a trunk, a registrar, a route target).

    The peer's certificate must chain to `ca_file` (None: the system's trusted CAs) and name
    `server_name` (None: the host the SBC dials, a DNS name or an IP address).
    """

    ca_file: Path | None = None
    server_name: str | None = None


@dataclass(frozen=True, slots=True)
class Listener:
    transport: Transport
    port: int


@dataclass(frozen=True, slots=True)
class Peer:
    """The next hop a realm sends to when no registration or Route says otherwise."""

    host: str
    port: int = 5060
    transport: Transport = Transport.UDP
    # Seconds between OPTIONS keepalives (sbc.b2bua.keepalive); 0: not monitored. Only a realm's `peer`
    # (its trunk) is monitored; on a registrar or a route target the value is ignored.
    keepalive_s: int = 0
    # A request above 1300 bytes goes over TCP although `transport` is udp (RFC 3261 §18.1.1); None:
    # when the realm listens on TCP (see `Realm.large_over_tcp`).
    large_over_tcp: bool | None = None
    tls: PeerTls = field(default_factory=PeerTls)  # with `transport: tls`: how its certificate is verified


@dataclass(frozen=True, slots=True)
class MediaSettings:
    address: IPAddress
    port_min: int
    port_max: int
    latch: LatchMode = LatchMode.SDP
    latch_window_ms: int = 2000
    relatch: bool = False  # allow switching source mid-call (only for endpoints known to roam)
    dscp: int = 46
    timeout_s: int = 60
    hangup_on_timeout: bool = True


@dataclass(frozen=True, slots=True)
class Realm:
    name: str
    address: IPAddress
    listeners: tuple[Listener, ...]
    media: MediaSettings
    trusted: bool = False  # an inside realm whose addresses must never leak
    peer: Peer | None = None
    registrar: Peer | None = None
    sip_dscp: int = 26  # AF31
    tls: TlsSettings | None = None
    user_agent: str | None = None
    pass_headers: tuple[str, ...] = ()
    strip_headers: tuple[str, ...] = ()
    direct_media: bool = False
    advertised_address: IPAddress | None = None  # the public address behind a static NAT
    # Networks of this realm's side: addresses in them never appear in messages sent to another realm.
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # Endpoints behind NAT: send their requests to the address their messages came from (RFC 3581
    # style), not to the private address in their Contact.
    nat_traversal: bool = False
    redirects: RedirectPolicy = RedirectPolicy.FOLLOW  # a 3xx from this realm's side

    @property
    def public_address(self) -> IPAddress:
        return self.advertised_address or self.address

    def large_over_tcp(self, peer: Peer) -> bool:
        """Whether requests too large for UDP go to `peer` over TCP: only from a realm with a TCP
        listener (the Via must name a port that takes the answer), by default whenever it has one."""
        if self.listener(Transport.TCP) is None:
            return False
        return peer.large_over_tcp is not False

    def listener(self, transport: Transport) -> Listener | None:
        return next((ls for ls in self.listeners if ls.transport == transport), None)


@dataclass(frozen=True, slots=True)
class Route:
    """Where a call entering from `from_realm` goes: `to_realm`, optionally only for matching URIs."""

    name: str
    from_realm: str
    to_realm: str
    match_user: str | None = None  # regex on the Request-URI user part
    target: Peer | None = None  # overrides the destination realm's peer
    use_registrations: bool = False  # look up the Request-URI in the registration bindings first
    media: MediaMode = MediaMode.ANCHOR


@dataclass(frozen=True, slots=True)
class Timers:
    t1_ms: int = 500
    t2_ms: int = 4000
    t4_ms: int = 5000
    session_expires_s: int = 1800
    min_se_s: int = 90


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """What one TCP or TLS connection, and all of them together, may hold (sbc.transport.limits).

    A connection that breaks a limit is closed (or not admitted) and counted by the limit's name.
    """

    connections: int = 1024  # accepted and opened, all realms together
    connections_per_source: int = 32  # accepted from one IP address
    idle_timeout_s: float = 600.0  # nothing received for this long
    header_timeout_s: float = 10.0  # a message's first byte to its complete header block (slowloris)
    body_timeout_s: float = 30.0  # a complete header block to the end of its body
    max_header_bytes: int = 16384
    max_body_bytes: int = 65535  # Content-Length
    max_buffered_bytes: int = 131072  # received and not yet framed, or waiting to be sent


@dataclass(frozen=True, slots=True)
class Limits:
    stream: StreamLimits = field(default_factory=StreamLimits)


class SnmpAuth(StrEnum):
    """USM authentication (RFC 7860 HMAC-SHA-2): the SHA-1 and MD5 of RFC 3414 are not offered."""

    SHA256 = "sha256"
    SHA512 = "sha512"


class SnmpPriv(StrEnum):
    """USM privacy (RFC 3826 AES-CFB; 256-bit keys per the Blumenthal draft net-snmp implements)."""

    AES128 = "aes128"
    AES256 = "aes256"


class SnmpVersion(StrEnum):
    V3 = "v3"
    V2C = "v2c"


@dataclass(frozen=True, slots=True)
class SnmpV3User:
    name: str
    auth_key: str
    priv_key: str
    auth: SnmpAuth = SnmpAuth.SHA256
    priv: SnmpPriv = SnmpPriv.AES128


@dataclass(frozen=True, slots=True)
class TrapTarget:
    """A manager that receives notifications: v3 names one of `v3_users`, v2c gives a community."""

    host: str
    port: int = 162
    version: SnmpVersion = SnmpVersion.V3
    user: str | None = None
    community: str | None = None


@dataclass(frozen=True, slots=True)
class SnmpSettings:
    """The SNMP agent of `sbc mgmt` (mgmt/snmp). v2c is read-only and off unless a community is set."""

    enabled: bool = True
    address: IPAddress = LOCALHOST
    port: int = 16161
    v3_users: tuple[SnmpV3User, ...] = ()
    v2c_community: str | None = None
    trap_targets: tuple[TrapTarget, ...] = ()
    engine_id: str | None = None  # hex, 5-32 octets; None: derived from /etc/machine-id (stable per box)
    sys_name: str = ""  # SNMPv2-MIB sysName; empty: the host name
    sys_contact: str = ""
    sys_location: str = ""


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """The HTTPS listener of the REST API and web UI. No certificate given: a self-signed one is made."""

    address: IPAddress = LOCALHOST
    port: int = 8443
    tls_certificate: Path | None = None
    tls_key: Path | None = None


@dataclass(frozen=True, slots=True)
class AuditSettings:
    """The management audit log's rotation: by size, keeping `keep` rotated files (0: none)."""

    max_bytes: int = 10 * 1024 * 1024
    keep: int = 5


@dataclass(frozen=True, slots=True)
class CallRecordSettings:
    """The SBC's call records (`<state_dir>/cdr.jsonl`): rotated when the file reaches `max_bytes` or its
    first record is `max_age_days` old (0: no age limit); `keep` rotated files are kept (0: none)."""

    max_bytes: int = 50 * 1024 * 1024
    max_age_days: int = 7
    keep: int = 10


@dataclass(frozen=True, slots=True)
class ManagementSettings:
    http: HttpSettings = field(default_factory=HttpSettings)
    users_file: Path | None = None  # None: <management state dir>/users.json
    # Users, sessions' audit log, config revisions, TLS key: None keeps them in the SBC's state_dir
    # (one user runs both); the appliance gives management a directory the SBC's user cannot read.
    state_dir: Path | None = None
    confirm_timeout_s: int = 300  # default of a commit-confirmed when the request names none
    snmp: SnmpSettings = field(default_factory=SnmpSettings)
    poll_interval_s: int = 5  # how often sbc mgmt reads the SBC's figures (SNMP, alarms)
    audit: AuditSettings = field(default_factory=AuditSettings)

    def state_path(self, sbc_state_dir: Path) -> Path:
        return self.state_dir or sbc_state_dir

    def users_path(self, sbc_state_dir: Path) -> Path:
        return self.users_file or self.state_path(sbc_state_dir) / "users.json"


class FirewallProtocol(StrEnum):
    TCP = "tcp"
    UDP = "udp"


@dataclass(frozen=True, slots=True)
class FirewallOpening:
    """A port the operator opens beyond what the realms and management need (`firewall.allow`)."""

    port_min: int
    port_max: int  # == port_min for a single port
    protocol: FirewallProtocol = FirewallProtocol.TCP
    source: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None  # `from`; None: anyone
    # `to`: a realm (its SIP address) or one of the box's addresses; neither: every address of the box.
    to_realm: str | None = None
    to_address: IPAddress | None = None


@dataclass(frozen=True, slots=True)
class FirewallSettings:
    """The host firewall `sbc-hw firewall apply` renders from this config (hw/firewall.py)."""

    enabled: bool = True
    allow: tuple[FirewallOpening, ...] = ()


@dataclass(frozen=True, slots=True)
class SbcConfig:
    realms: tuple[Realm, ...]
    routes: tuple[Route, ...]
    header_rules: tuple[HeaderRule, ...] = ()  # compiled, in config order: see sbc.policy.header_rules
    timers: Timers = field(default_factory=Timers)
    user_agent: str = "EdgeSBC"
    state_dir: Path = Path("/tmp/sbc")
    control_socket: Path | None = None
    max_calls: int = 2000
    log_level: str = "info"
    cdr: CallRecordSettings = field(default_factory=CallRecordSettings)
    management: ManagementSettings = field(default_factory=ManagementSettings)
    dataplane: DataplaneSettings = field(default_factory=DataplaneSettings)  # which relay, XDP attach mode
    firewall: FirewallSettings = field(default_factory=FirewallSettings)
    limits: Limits = field(default_factory=Limits)
    source: str = "<embedded>"

    def realm(self, name: str) -> Realm:
        for r in self.realms:
            if r.name == name:
                return r
        raise KeyError(name)

    @property
    def management_dir(self) -> Path:
        """Where sbc mgmt keeps its own files (users, revisions, audit log, TLS key)."""
        return self.management.state_path(self.state_dir)

    @property
    def control_path(self) -> Path:
        return self.control_socket or self.state_dir / "control.sock"
