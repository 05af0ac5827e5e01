"""Topology hiding of o= for one leg: our username, our address, a stable sess-id, an honest sess-version."""

from __future__ import annotations

from sbc.sdp.fields import Address, Origin, addrtype
from sbc.sdp.session import SessionDescription


class OriginRewriter:
    """Holds one leg's o= state; `rewrite()` turns each SDP about to be sent into the one sent.

    RFC 3264 §8: the sess-version of a new SDP in the same session is the previous one plus one, and an
    unchanged version means an identical description. So ours is bumped exactly when the lines we send
    (all but o=) differ from what we sent last time. An incoming re-offer with an unchanged version
    carries the same lines, so ours does not move either; a peer that bumps its version without changing
    anything does not make us bump, and one that changes its SDP without bumping still makes us bump.
    """

    __slots__ = ("_address", "_last", "_sess_id", "_username", "_version")

    def __init__(self, username: str, address: Address, sess_id: int, first_version: int = 1) -> None:
        if not username or any(ch.isspace() for ch in username):
            raise ValueError(f"o= username must be one non-empty token: {username!r}")
        if sess_id < 0 or first_version < 0:
            raise ValueError("sess-id and sess-version are non-negative numbers")
        self._username = username
        self._address = address
        self._sess_id = str(sess_id)
        self._version = first_version
        self._last: tuple[str, ...] | None = None

    @property
    def sess_id(self) -> int:
        return int(self._sess_id)

    @property
    def sess_version(self) -> int:
        """The version of the last SDP sent (or of the first one, before any)."""
        return self._version

    def rewrite(self, sd: SessionDescription) -> SessionDescription:
        lines = sd.lines_without_origin()
        if self._last is not None and lines != self._last:
            self._version += 1
        self._last = lines
        origin = Origin(self._username, self._sess_id, self._version, "IN", addrtype(self._address), str(self._address))
        return sd.with_origin(origin)
