"""The one SDP error: the peer sent a body we cannot read (the B2BUA answers it, typically 488 or 400)."""

from __future__ import annotations


class SdpError(ValueError):
    """A session description that breaks RFC 8866 in a way this layer cannot pass through safely."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
