"""Topology hiding: which headers of one leg may appear on the other, and the leak check.

The B2BUA builds every message of a leg from that leg's own dialog state; only the headers listed
here are copied across from the other leg. After building, `scrub_addresses` replaces any address of
the realm the message comes from (its SBC address, its networks, its endpoints) by the SBC's address
on the realm the message goes to — so no header, passed or configured, carries the inside topology.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from sbc.sip.message import Message, header_key

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Headers the B2BUA writes itself from each leg's dialog state: never copied from the other leg.
OWNED_HEADERS = frozenset(
    {
        "via",
        "route",
        "record-route",
        "contact",
        "call-id",
        "cseq",
        "from",
        "to",
        "max-forwards",
        "content-length",
        "user-agent",
        "server",
        "rseq",
        "rack",
        "www-authenticate",  # passed explicitly by the B2BUA where it belongs (challenges)
        "proxy-authenticate",
        "authorization",
        "proxy-authorization",
        "path",
        "service-route",
        "p-asserted-identity",
        "p-preferred-identity",
        "alert-info",
        "call-info",
        "error-info",
        "reply-to",
        "in-reply-to",
        "warning",
        "p-charging-vector",
        "p-visited-network-id",
    }
)

# Headers that may cross by default: they describe the session or the request, not the topology.
DEFAULT_PASSED = frozenset(
    {
        "content-type",
        "content-disposition",
        "content-encoding",
        "content-language",
        "allow",
        "allow-events",
        "supported",
        "require",
        "accept",
        "accept-encoding",
        "accept-language",
        "session-expires",
        "min-se",
        "subject",
        "priority",
        "privacy",
        "date",
        "event",
        "subscription-state",
        "refer-to",
        "referred-by",
        "replaces",
        "expires",
        "min-expires",
        "retry-after",
        "unsupported",
        "organization",
        "timestamp",
        "reason",
        "info-package",
        "recv-info",
        "mime-version",
        "diversion",
        "history-info",
    }
)


@dataclass(frozen=True, slots=True)
class HeaderPolicy:
    """What may cross into one realm: the default set plus the realm's `pass_headers`, minus `strip_headers`."""

    passed: frozenset[str]

    @classmethod
    def for_realm(cls, pass_headers: Iterable[str], strip_headers: Iterable[str]) -> HeaderPolicy:
        passed = set(DEFAULT_PASSED)
        passed.update(header_key(h) for h in pass_headers)
        passed.difference_update(header_key(h) for h in strip_headers)
        passed.difference_update(OWNED_HEADERS)
        return cls(frozenset(passed))

    def copy_headers(self, source: Message, target: Message, *, extra: Iterable[str] = ()) -> None:
        """Append to `target` every header of `source` that may cross (in their original order)."""
        allowed = self.passed | {header_key(h) for h in extra}
        for h in source.headers:
            if h.key in allowed:
                target.add(h.name, h.value)


# Cheap pre-check: an IPv4 address has a digit-dot-digit, an IPv6 one a hex-colon-hex or "::".
_MAYBE_ADDRESS = re.compile(r"\d\.\d|[0-9A-Fa-f]:[0-9A-Fa-f:]|::")
# A hidden address is replaced together with the port after it: the port of an inside host is its
# topology too (a phone's own port in a Diversion or a NOTIFY's sipfrag), and the SBC's address
# stands alone for its default port.
_IPV4_RE = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d])(?::\d{1,5}(?![\d]))?")
_IPV6_RE = re.compile(
    r"\[([0-9A-Fa-f:.]+)\](?::\d{1,5}(?![\d]))?|(?<![\w:])((?:[0-9A-Fa-f]{1,4}:){2,7}[0-9A-Fa-f:.]*[0-9A-Fa-f])"
)


@lru_cache(maxsize=1024)
def _ipv4(text: str) -> ipaddress.IPv4Address | None:
    """The address a dotted quad names (the same few addresses appear in every message)."""
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        return None


@dataclass(slots=True)
class AddressScrubber:
    """Replaces addresses of the realm a message comes from by the SBC's address on the realm it goes to."""

    hidden_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    hidden_addresses: frozenset[IPAddress]
    # Derived: (network as int, mask as int) per IP version; whether anything of a version is hidden
    # (a pass for a version with nothing hidden could not change anything and is skipped).
    _masks: dict[int, tuple[tuple[int, int], ...]] = field(init=False, repr=False, compare=False)
    _versions: frozenset[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._masks = {
            v: tuple((int(n.network_address), int(n.netmask)) for n in self.hidden_networks if n.version == v)
            for v in (4, 6)
        }
        self._versions = frozenset(
            {n.version for n in self.hidden_networks} | {a.version for a in self.hidden_addresses}
        )

    def is_hidden(self, address: IPAddress) -> bool:
        if address in self.hidden_addresses:
            return True
        value = int(address)
        return any(value & mask == net for net, mask in self._masks[address.version])

    def scrub_text(self, text: str, replacement: IPAddress) -> str:
        if _MAYBE_ADDRESS.search(text) is None:
            return text
        if 4 not in self._versions:
            return self._scrub_v6(text, replacement)

        def v4(m: re.Match[str]) -> str:
            addr = _ipv4(m.group(1))
            if addr is None:
                return m.group(0)
            return str(replacement) if self.is_hidden(addr) else m.group(0)

        out = _IPV4_RE.sub(v4, text)
        return self._scrub_v6(out, replacement)

    def _scrub_v6(self, out: str, replacement: IPAddress) -> str:
        if 6 in self._versions and ":" in out:

            def v6(m: re.Match[str]) -> str:
                raw = m.group(1) or m.group(2)
                try:
                    addr = ipaddress.IPv6Address(raw)
                except ValueError:
                    return m.group(0)
                if not self.is_hidden(addr):
                    return m.group(0)
                rep = f"[{replacement}]" if replacement.version == 6 else str(replacement)
                return rep if m.group(1) else str(replacement)

            out = _IPV6_RE.sub(v6, out)
        return out

    def hidden_in(self, text: str) -> set[IPAddress]:
        """The hidden addresses `text` names."""
        if _MAYBE_ADDRESS.search(text) is None:
            return set()
        found: set[IPAddress] = set()
        for m in _IPV4_RE.finditer(text):
            addr = _ipv4(m.group(1))
            if addr is not None:
                found.add(addr)
        if ":" in text:
            for m in _IPV6_RE.finditer(text):
                try:
                    found.add(ipaddress.IPv6Address(m.group(1) or m.group(2)))
                except ValueError:
                    continue
        return {a for a in found if self.is_hidden(a)}

    def scrub_message(self, msg: Message, replacement: IPAddress, *, skip: Iterable[str] = ()) -> int:
        """Rewrite hidden addresses in every header value except `skip`; returns how many headers changed."""
        skipped = {header_key(s) for s in skip}
        changed = 0
        for h in msg.headers:
            if h.key in skipped:
                continue
            new = self.scrub_text(h.value, replacement)
            if new != h.value:
                h.value = new
                h.raw = None
                changed += 1
        return changed
