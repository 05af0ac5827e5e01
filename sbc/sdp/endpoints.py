"""Where each stream of a received SDP wants its media: what the relay is programmed with."""

from __future__ import annotations

from dataclasses import dataclass

from sbc.sdp.fields import Address, Direction
from sbc.sdp.session import SessionDescription


@dataclass(frozen=True, slots=True)
class MediaEndpoint:
    """The remote end of one m= line. `direction` is the SDP writer's view (sendonly: it only sends).

    RTCP goes to `rtcp_address`:`rtcp_port`: the a=rtcp port and address when given (RFC 3605), the RTP
    port itself under rtcp-mux (RFC 5761), else the RTP port + 1 (RFC 3550 §11). A rejected stream has
    port 0 and RTCP port 0.
    """

    address: Address
    rtp_port: int
    rtcp_address: Address
    rtcp_port: int
    rtcp_mux: bool
    direction: Direction
    rejected: bool

    @property
    def on_hold(self) -> bool:
        """The writer does not want media from us (sendonly/inactive, or the old c=0.0.0.0 hold)."""
        return self.direction in (Direction.SENDONLY, Direction.INACTIVE)


def is_address_hold(sd: SessionDescription, index: int) -> bool:
    """RFC 3264 §8.4: c=IN IP4 0.0.0.0 is the RFC 2543 way of holding. Under ICE it only means that no
    default candidate is known yet (RFC 8839 §4.2.4), so it is not a hold there."""
    address = sd.connection_address(index)
    return address is not None and address.is_unspecified and not (sd.session_has_ice or sd.media[index].has_ice)


def media_endpoints(sd: SessionDescription) -> list[MediaEndpoint | None]:
    """One entry per m= line, in order; None for a rejected stream that has no c= at all."""
    endpoints: list[MediaEndpoint | None] = []
    for index, section in enumerate(sd.media):
        address = sd.connection_address(index)
        if address is None:
            endpoints.append(None)
            continue
        direction = Direction.INACTIVE if is_address_hold(sd, index) else sd.media_direction(index)
        rtcp_address = address
        if section.rejected:
            rtcp_port = 0
        elif section.rtcp_mux:
            rtcp_port = section.port
        elif section.rtcp is not None:
            rtcp_port = section.rtcp.port
            rtcp_address = section.rtcp.address or address
        else:
            # An odd top port cannot carry RTP anyway; never hand the relay port 65536.
            rtcp_port = min(section.port + 1, 65535)
        endpoints.append(
            MediaEndpoint(address, section.port, rtcp_address, rtcp_port, section.rtcp_mux, direction, section.rejected)
        )
    return endpoints
