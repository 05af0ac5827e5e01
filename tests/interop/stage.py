"""Who is where in the interop tier: addresses, extensions and tones of the PBX and the phones.

Addresses (N is SBC_TEST_NET, as in the integration tier): the SBC on 127.N.1.1 (LAN) and 127.N.2.1
(WAN); Kamailio where the integration harness puts its trunk/PBX (127.N.2.10:5082), so the harness's
SBC config points its peer and registrar at it; LAN phones on 127.N.1.20-22 registering through the
SBC; a WAN phone on 127.N.2.30 registering with Kamailio directly (a user elsewhere on the PBX).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.integration.harness import LAN_SBC, NET, SBC_PORT, TRUNK, TRUNK_PORT
from tests.interop.baresip import Phone

PBX = f"{TRUNK}:{TRUNK_PORT}"
SBC_LAN = f"{LAN_SBC}:{SBC_PORT}"
INSIDE_PREFIX = f"127.{NET}.1."
WAN_PREFIX = f"127.{NET}.2."


@dataclass(frozen=True)
class PhoneSpec:
    user: str  # the extension
    address: str
    via_sbc: bool  # registers through the SBC (a branch phone) or with the PBX directly
    tone_hz: int  # what its microphone plays


PHONES = {
    "A": PhoneSpec("1001", f"127.{NET}.1.20", True, 440),
    "B": PhoneSpec("1002", f"127.{NET}.1.21", True, 1000),
    "C": PhoneSpec("1003", f"127.{NET}.1.22", True, 1400),
    "W": PhoneSpec("2001", f"127.{NET}.2.30", False, 700),
}
TONE_SECONDS = 20  # aufile ends the call when its file ends: longer than any flow's call
# baresip binds RTP to 0.0.0.0: each phone gets its own ports, apart from those of other test runs.
RTP_BASE = 50000 + NET * 40

# baresip sends its RTP from 127.0.0.1 (its socket is bound to 0.0.0.0), so on loopback the WAN
# phone looks NATed as well: the WAN realm learns the media source as the LAN realm does.
WAN_MEDIA_LEARNS = "      latch: learn"

PhoneFactory = Callable[..., Phone]

needs_interop_peers = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in ("kamailio", "kamcmd", "baresip", "sox", "dumpcap", "sipp")),
        reason="needs the Debian packages kamailio, baresip-core, sox, tshark and sip-tester (make test installs them)",
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="the WAN-side capture (dumpcap on lo) needs root"),
]
