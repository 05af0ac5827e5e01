"""Transfer targets across the SBC: Refer-To, Referred-By (RFC 3515, RFC 3892) and Replaces (RFC 3891).

A REFER names a URI for the other side to call, and for an attended transfer the dialog it should
replace. Both are written in the topology of the side that sent the REFER, so both are translated:
- a URI with an address of the sender's side is rewritten to the SBC's own address on the receiving
  side (the user part stays): the new INVITE comes back through the SBC;
- a Replaces that names a dialog the SBC holds is mapped to the identifiers of that dialog's other
  leg, and when that leg lives on the receiving side, the URI becomes its real remote target, so the
  referee reaches the party it replaces directly; a Replaces for a dialog the SBC does not know
  would leak the sender's Call-ID and tags, and is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, unquote

from sbc.policy.topology import AddressScrubber
from sbc.sip.errors import RemoteProtocolError
from sbc.sip.uri import NameAddr, Uri, format_host, param_value, parse_params

# URI parameters that describe the target, not the path to it; the others (transport, maddr, lr...)
# belong to the sender's side.
_KEPT_URI_PARAMS = frozenset({"user"})


@dataclass(frozen=True, slots=True)
class DialogIds:
    """A dialog as the recipient of an INVITE with Replaces matches it (RFC 3891 §3)."""

    call_id: str
    to_tag: str  # the recipient's local tag
    from_tag: str  # the recipient's remote tag
    early_only: bool = False

    @classmethod
    def parse(cls, value: str) -> DialogIds | None:
        call_id, _, rest = value.strip().partition(";")
        params = parse_params(rest)
        to_tag = param_value(params, "to-tag")
        from_tag = param_value(params, "from-tag")
        if not call_id or not to_tag or not from_tag:
            return None
        return cls(call_id.strip(), to_tag, from_tag, param_value(params, "early-only") is not None)

    def __str__(self) -> str:
        early = ";early-only" if self.early_only else ""
        return f"{self.call_id};to-tag={self.to_tag};from-tag={self.from_tag}{early}"


@dataclass(frozen=True, slots=True)
class MappedDialog:
    """The leg of a known dialog on the receiving side: its identifiers and its remote target."""

    ids: DialogIds
    remote_target: str | None  # set when that leg is in the realm the REFER goes to


# Maps a Replaces written on the sender's side to the same dialog's other leg, or None if unknown.
ReplacesMapper = Callable[[DialogIds], MappedDialog | None]


@dataclass(frozen=True, slots=True)
class TargetRewriter:
    """Rewrites transfer targets from the sender's side (`hidden`) for the side `sbc_host` faces."""

    hidden: AddressScrubber
    sbc_host: str
    sbc_port: int | None
    map_replaces: ReplacesMapper

    def refer_to(self, value: str) -> str:
        """A Refer-To value for the receiving side."""
        try:
            target = NameAddr.parse(value)
        except RemoteProtocolError:
            return value  # copied as it is; the address scrubber still removes hidden addresses
        uri = target.uri
        headers, mapped = self._uri_headers(uri.headers)
        if mapped is not None and mapped.remote_target is not None:
            try:
                uri = Uri.parse(mapped.remote_target)
            except RemoteProtocolError:
                uri = self._rehosted(uri)
        else:
            uri = self._rehosted(uri)
        uri = Uri(uri.scheme, uri.user, None, uri.host, uri.port, uri.params, headers)
        return str(NameAddr(target.display, uri, target.params, True))

    def referred_by(self, value: str) -> str:
        try:
            who = NameAddr.parse(value)
        except RemoteProtocolError:
            return value
        uri = self._rehosted(who.uri)
        return str(NameAddr(who.display, Uri(uri.scheme, uri.user, None, uri.host, uri.port, uri.params), (), True))

    def replaces(self, value: str) -> str | None:
        """A Replaces header value for the receiving side, or None when it must be dropped."""
        ids = DialogIds.parse(value)
        mapped = self.map_replaces(ids) if ids is not None else None
        return str(mapped.ids) if mapped is not None else None

    def _rehosted(self, uri: Uri) -> Uri:
        if uri.scheme == "tel":
            return uri
        addr = uri.address
        if addr is None or not self.hidden.is_hidden(addr):
            return uri
        params = tuple((k, v) for k, v in uri.params if k.lower() in _KEPT_URI_PARAMS)
        return Uri(uri.scheme, uri.user, None, format_host(self.sbc_host), self.sbc_port, params)

    def _uri_headers(self, text: str | None) -> tuple[str | None, MappedDialog | None]:
        """The URI's `?headers` for the receiving side: Replaces mapped (or dropped), Require kept."""
        if not text:
            return None, None
        kept: list[str] = []
        mapped: MappedDialog | None = None
        for part in text.split("&"):
            name, _, raw = part.partition("=")
            key = name.strip().lower()
            if key == "replaces":
                ids = DialogIds.parse(unquote(raw))
                mapped = self.map_replaces(ids) if ids is not None else None
                if mapped is not None:
                    kept.append(f"{name}={quote(str(mapped.ids), safe='')}")
            elif key == "require":
                kept.append(part)
        return ("&".join(kept) or None), mapped


# ---- the implicit subscription of a relayed REFER (RFC 3515 §2.4.6) ----------------------------
# The NOTIFYs of a REFER name it by the CSeq it had where it was received (`Event: refer;id=<CSeq>`;
# required from the second REFER of a dialog on, allowed for the first). Each leg of a call counts its
# own CSeqs, so a REFER relayed from one leg to the other has two numbers and the id must be mapped.
# `ReferIds` maps (leg index the REFER was sent on, its CSeq there) -> its CSeq on the leg it came from.
ReferIds = dict[tuple[int, int], int]


def refer_relayed(ids: ReferIds, sent_on: int, sent_cseq: int, received_cseq: int) -> None:
    ids[(sent_on, sent_cseq)] = received_cseq


def notify_event(ids: ReferIds, arrived_on: int, value: str) -> str:
    """The Event value for a NOTIFY (or SUBSCRIBE) that arrived on leg `arrived_on`, for the other leg:
    a refer id that names a REFER we relayed onto `arrived_on` names it as its sender numbered it."""
    package, sep, params = value.partition(";")
    if package.strip().lower() != "refer" or not sep:
        return value
    parts = params.split(";")
    for i, part in enumerate(parts):
        name, eq, number = part.partition("=")
        if name.strip().lower() == "id" and eq and number.strip().isdigit():
            mapped = ids.get((arrived_on, int(number.strip())))
            if mapped is not None:
                parts[i] = f"{name}={mapped}"
    return f"{package};{';'.join(parts)}"
