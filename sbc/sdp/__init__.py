"""Sans-IO SDP (RFC 8866, RFC 3264): lossless parsing, in-place edits for anchoring and topology hiding."""

from sbc.sdp.endpoints import MediaEndpoint, media_endpoints
from sbc.sdp.errors import SdpError
from sbc.sdp.fields import Address, Direction, Origin, RtcpAttribute
from sbc.sdp.origin import OriginRewriter
from sbc.sdp.rewrite import MediaAnchor, anchor_sdp, hide_origin_only
from sbc.sdp.session import MediaSection, SessionDescription

__all__ = [
    "Address",
    "Direction",
    "MediaAnchor",
    "MediaEndpoint",
    "MediaSection",
    "Origin",
    "OriginRewriter",
    "RtcpAttribute",
    "SdpError",
    "SessionDescription",
    "anchor_sdp",
    "hide_origin_only",
    "media_endpoints",
]
