"""The host firewall: an nftables ruleset rendered from the one config (`table inet sbc_filter`).

Pure: a `SbcConfig` in, the text of an nft script out. What it lets in:
- the SIP listeners of each realm, on that realm's address only, and each realm's media port range
  (UDP) on its media address;
- management's HTTPS and SNMP where they are bound: a specific address as configured, a wildcard
  (`0.0.0.0`, `::`) narrowed to the trusted realms' addresses (the WAN gets management only when the
  operator opens it in `firewall.allow`), loopback not at all (loopback is always accepted);
- the operator's `firewall.allow` openings;
- what the box itself needs: loopback, answers to its own connections (DNS, NTP, provisioning),
  DHCP and DHCPv6 answers, the ICMP and ICMPv6 errors that path MTU discovery needs, neighbour
  discovery, and echo requests to trusted realms' addresses (rate limited).

Linux answers on any interface for any of its addresses (the weak host model, RFC 1122 §3.3.4.2):
without more, a WAN neighbour routing 198.18.1.1 at the box's WAN port reaches the LAN address's
management. `fib daddr . iif type != local` drops every packet whose destination is not an address
of the interface it came in on, before any service rule; strict reverse-path filtering (`fib saddr
. iif oif missing`, RFC 3704 §2.2) drops packets whose source would not be routed back out of the
interface they came from. Nothing is forwarded.

Each family of rules counts into a named counter (`CounterName`) that `hw.firewall_counters` reads.
The config does not name interfaces, so the DHCP client's answers are accepted on every interface.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum

from sbc.config.model import FirewallProtocol, IPAddress, SbcConfig, Transport

TABLE = "sbc_filter"
FAMILY = "inet"
ECHO_RATE = "10/second"  # echo requests answered per second, to trusted realms' addresses only

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class CounterName(StrEnum):
    """The named counters of the table, one per family of rules."""

    SIP = "sip"
    MEDIA = "media"
    MGMT = "mgmt"
    SNMP = "snmp"
    ALLOWED = "allowed"  # the operator's `firewall.allow` openings
    SPOOFED = "spoofed"  # reverse-path filter drops (prerouting)
    DROPPED = "dropped"  # input dropped: invalid, wrong interface (weak host), nothing opened
    FORWARD_DROPPED = "forward_dropped"


@dataclass(frozen=True, slots=True)
class Opening:
    """One accepted service: packets of `protocol` to `port_min`-`port_max` on `destination` (None:
    any of the box's addresses on the interface they arrive on) from `source` (None: anyone)."""

    counter: CounterName
    protocol: FirewallProtocol
    port_min: int
    port_max: int
    destination: IPAddress | None
    source: Network | None
    comment: str


def openings(config: SbcConfig) -> tuple[Opening, ...]:
    """Every service the config opens, in rule order, without duplicates."""
    found: list[Opening] = []

    def add(counter: CounterName, protocol: FirewallProtocol, ports: tuple[int, int], comment: str,
            destination: IPAddress | None, source: Network | None = None) -> None:  # fmt: skip
        found.append(Opening(counter, protocol, ports[0], ports[1], destination, source, comment))

    for realm in config.realms:
        for listener in realm.listeners:
            protocol = FirewallProtocol.UDP if listener.transport == Transport.UDP else FirewallProtocol.TCP
            comment = f"realm {realm.name}: SIP over {listener.transport}"
            add(CounterName.SIP, protocol, (listener.port, listener.port), comment, realm.address)
    for realm in config.realms:
        media = realm.media
        ports = (media.port_min, media.port_max)
        add(CounterName.MEDIA, FirewallProtocol.UDP, ports, f"realm {realm.name}: media", media.address)
    http = config.management.http
    for address in _management_addresses(config, http.address):
        add(CounterName.MGMT, FirewallProtocol.TCP, (http.port, http.port), "management HTTPS", address)
    snmp = config.management.snmp
    if snmp.enabled:
        for address in _management_addresses(config, snmp.address):
            add(CounterName.SNMP, FirewallProtocol.UDP, (snmp.port, snmp.port), "SNMP", address)
    for i, allow in enumerate(config.firewall.allow):
        destination = config.realm(allow.to_realm).address if allow.to_realm else allow.to_address
        ports = (allow.port_min, allow.port_max)
        add(CounterName.ALLOWED, allow.protocol, ports, f"firewall.allow[{i}]", destination, allow.source)
    unique: dict[tuple[object, ...], Opening] = {}
    for opening in found:
        key = (opening.protocol, opening.port_min, opening.port_max, opening.destination, opening.source)
        unique.setdefault(key, opening)
    return tuple(unique.values())


def _management_addresses(config: SbcConfig, bound: IPAddress) -> list[IPAddress]:
    """Where a management listener bound to `bound` may be reached from outside the box."""
    if bound.is_loopback:
        return []  # loopback is accepted anyway and never reachable from outside
    if not bound.is_unspecified:
        return [bound]
    # `0.0.0.0` is every IPv4 address; `::` every address of both families (a dual-stack socket).
    families = {4} if bound.version == 4 else {4, 6}
    addresses: list[IPAddress] = []
    for realm in config.realms:
        if realm.trusted and realm.address.version in families and realm.address not in addresses:
            addresses.append(realm.address)
    return addresses


def _address_match(direction: str, value: IPAddress | Network) -> str:
    family = "ip" if value.version == 4 else "ip6"
    return f"{family} {direction} {value}"


def _ports(opening: Opening) -> str:
    if opening.port_min == opening.port_max:
        return f"{opening.protocol} dport {opening.port_min}"
    return f"{opening.protocol} dport {opening.port_min}-{opening.port_max}"


def opening_rule(opening: Opening) -> str:
    matches = []
    if opening.source is not None:
        matches.append(_address_match("saddr", opening.source))
    if opening.destination is not None:
        matches.append(_address_match("daddr", opening.destination))
    matches.append(_ports(opening))
    return f'{" ".join(matches)} counter name "{opening.counter}" accept comment "{opening.comment}"'


def _echo_rules(config: SbcConfig) -> list[str]:
    trusted = [realm.address for realm in config.realms if realm.trusted]
    rules = []
    for version, family, icmp in ((4, "ip", "icmp"), (6, "ip6", "icmpv6")):
        addresses = [str(a) for a in trusted if a.version == version]
        if addresses:
            rules.append(
                f"{family} daddr {{ {', '.join(addresses)} }} {icmp} type echo-request limit rate {ECHO_RATE} "
                'accept comment "ping, trusted realms only"'
            )
    return rules


def render_ruleset(config: SbcConfig) -> str:
    """The table's definition: load it with `render_replacement` (which drops the old table first)."""
    counters = [f"\tcounter {name} {{\n\t}}" for name in CounterName]
    prerouting = [
        'iif "lo" accept',
        # Before the reverse-path check: a DHCP server may answer from an address not yet routed here,
        # and duplicate address detection sends neighbour solicitations from `::`.
        'udp sport 67 udp dport 68 accept comment "DHCP answers"',
        'udp sport 547 udp dport 546 accept comment "DHCPv6 answers"',
        "icmpv6 type { nd-router-advert, nd-neighbor-solicit } accept",
        f'fib saddr . iif oif missing counter name "{CounterName.SPOOFED}" drop comment "strict reverse path"',
    ]
    services = [opening_rule(o) for o in openings(config)]
    input_rules = [
        'iif "lo" accept',
        f'ct state invalid counter name "{CounterName.DROPPED}" drop',
        "ct state { established, related } accept",
        'udp sport 67 udp dport 68 accept comment "DHCP client"',
        'ip6 saddr fe80::/10 udp sport 547 udp dport 546 accept comment "DHCPv6 client"',
        # RFC 4890 §4.4: errors (path MTU discovery needs them), neighbour discovery and MLD.
        "icmp type { destination-unreachable, time-exceeded, parameter-problem } accept",
        "icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem } accept",
        "icmpv6 type { nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect } "
        "ip6 hoplimit 255 accept",
        "icmpv6 type { mld-listener-query, mld-listener-report, mld2-listener-report } ip6 saddr fe80::/10 accept",
        f'fib daddr . iif type != local counter name "{CounterName.DROPPED}" drop '
        'comment "not an address of this interface (weak host)"',
        *_echo_rules(config),
        *services,
        f'counter name "{CounterName.DROPPED}" comment "nothing opened: policy drop"',
    ]
    lines = [
        f"# Rendered from {' '.join(config.source.split())} by hw/firewall.py: edit the config, not this.",
        f"table {FAMILY} {TABLE} {{",
        *counters,
        "",
        "\tchain prerouting {",
        "\t\ttype filter hook prerouting priority raw; policy accept;",
        *(f"\t\t{rule}" for rule in prerouting),
        "\t}",
        "",
        "\tchain input {",
        "\t\ttype filter hook input priority filter; policy drop;",
        *(f"\t\t{rule}" for rule in input_rules),
        "\t}",
        "",
        "\tchain forward {",
        "\t\ttype filter hook forward priority filter; policy drop;",
        f'\t\tcounter name "{CounterName.FORWARD_DROPPED}"',
        "\t}",
        "}",
    ]
    return "\n".join(lines) + "\n"


def render_replacement(config: SbcConfig) -> str:
    """One nft transaction that swaps the old table for the new: both or neither."""
    return _removal() + render_ruleset(config)


def render_removal() -> str:
    """One nft transaction that removes the table (the firewall disabled), present or not."""
    return _removal()


def _removal() -> str:
    # Declaring the table first makes the delete succeed when there is none yet (first boot).
    return f"table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n"
