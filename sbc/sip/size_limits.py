"""When a request is too large for UDP (RFC 3261 §18.1.1).

"If a request is within 200 bytes of the path MTU, or if it is larger than 1300 bytes and the path
MTU is unknown, the request MUST be sent using an RFC 2914 congestion controlled transport protocol,
such as TCP." The path MTU is never known here, so 1300 bytes is the limit; when the transport changes,
the top Via must name the new one (and the port that takes its answer).
"""

from __future__ import annotations

from sbc.sip.message import Request
from sbc.sip.uri import Via

UDP_REQUEST_LIMIT = 1300


def too_large_for_udp(size: int) -> bool:
    return size > UDP_REQUEST_LIMIT


def with_top_via(request: Request, transport: str, port: int) -> None:
    """Rewrite the top Via of `request` (ours) to `transport` and our `port` for it; params stay."""
    values = request.values("via")
    top = Via.parse(values[0])
    values[0] = str(Via(transport.upper(), top.host, port, top.params))
    request.set_values("Via", values)
