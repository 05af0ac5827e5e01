"""The interop tier's stage: Kamailio as the cloud PBX, the real SBC, baresip phones, a WAN capture.

Addresses (N is SBC_TEST_NET, as in the integration tier): the SBC on 127.N.1.1 (LAN) and 127.N.2.1
(WAN); Kamailio where the integration harness puts its trunk/PBX (127.N.2.10:5082), so the harness's
SBC config points its peer and registrar at it; LAN phones on 127.N.1.20-22 registering through the
SBC; a WAN phone on 127.N.2.30 registering with Kamailio directly (a user elsewhere on the PBX).
Kamailio is started once per module; the SBC, the capture and the phones once per test.
The capture is of this run's whole 127.N/16 (wire_capture.py).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.harness import LAN_SBC, NET, SBC_PORT, TRUNK, TRUNK_PORT, SbcProcess, running_sbc, sbc_config
from tests.interop.audio import make_tone
from tests.interop.baresip import Phone
from tests.interop.kamailio import Kamailio
from tests.interop.wire_capture import Capture

PBX = f"{TRUNK}:{TRUNK_PORT}"
SBC_LAN = f"{LAN_SBC}:{SBC_PORT}"
INSIDE_PREFIX = f"127.{NET}.1."
WAN_PREFIX = f"127.{NET}.2."

# name -> (extension, address, registers through the SBC, tone in Hz)
PHONES = {
    "A": ("1001", f"127.{NET}.1.20", True, 440),
    "B": ("1002", f"127.{NET}.1.21", True, 1000),
    "C": ("1003", f"127.{NET}.1.22", True, 1400),
    "W": ("2001", f"127.{NET}.2.30", False, 700),
}
TONE_SECONDS = 20  # aufile ends the call when its file ends: longer than any flow's call
# baresip binds RTP to 0.0.0.0: each phone gets its own ports, apart from those of other test runs.
RTP_BASE = 50000 + NET * 40

# baresip sends its RTP from 127.0.0.1 (its socket is bound to 0.0.0.0), so on loopback the WAN
# phone looks NATed as well: the WAN realm learns the media source as the LAN realm does.
WAN_MEDIA_LEARNS = "      latch: learn"

needs_interop_peers = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in ("kamailio", "kamcmd", "baresip", "sox", "dumpcap", "sipp")),
        reason="needs the Debian packages kamailio, baresip-core, sox, tshark and sip-tester (make test installs them)",
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="the WAN-side capture (dumpcap on lo) needs root"),
]


@pytest.fixture(scope="module")
def pbx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kamailio]:
    kamailio = Kamailio(TRUNK, tmp_path_factory.mktemp("kamailio"), port=TRUNK_PORT).start()
    yield kamailio
    kamailio.stop()


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tones")
    return {name: make_tone(folder / f"{name}.wav", spec[3], TONE_SECONDS) for name, spec in PHONES.items()}


@pytest.fixture
def sbc(tmp_path: Path) -> Iterator[SbcProcess]:
    with running_sbc(tmp_path, sbc_config(tmp_path / "state", extra_realm_wan=WAN_MEDIA_LEARNS)) as proc:
        yield proc


@pytest.fixture
def wire(tmp_path: Path) -> Iterator[Capture]:
    """Everything on this run's 127.N/16 (both sides of the SBC); `stop()` returns the packets."""
    capture = Capture(f"127.{NET}.0.0/16", tmp_path / "wire.pcap").start()
    yield capture
    capture.stop()


PhoneFactory = Callable[..., Phone]


@pytest.fixture
def phone(tmp_path: Path, pbx: Kamailio, tones: dict[str, Path]) -> Iterator[PhoneFactory]:
    """`phone("A")` starts phone A (registered, unless `register=False`); all are stopped at the end."""
    started: list[Phone] = []

    def start(name: str, *, transport: str = "udp", register: bool = True) -> Phone:
        user, address, via_sbc, _ = PHONES[name]
        pbx.forget(user)
        index = list(PHONES).index(name)
        made = Phone(
            name=name,
            user=user,
            address=address,
            registrar=SBC_LAN if via_sbc else PBX,
            workdir=tmp_path / f"phone-{name}",
            tone=tones[name],
            rtp_ports=(RTP_BASE + index * 8, RTP_BASE + index * 8 + 7),
            transport=transport,
            register=register,
        )
        started.append(made)
        return made.start()

    yield start
    for made in started:
        made.stop()
