"""The interop tier's fixtures: Kamailio as the cloud PBX, the real SBC, baresip phones, a capture.

Kamailio is started once per module; the SBC, the capture (of this run's whole 127.N/16, see
wire_capture.py) and the phones once per test. Who is where: stage.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import NET, TRUNK, TRUNK_PORT, SbcProcess, running_sbc, sbc_config
from tests.interop.audio import make_tone
from tests.interop.baresip import Phone
from tests.interop.kamailio import Kamailio
from tests.interop.stage import PBX, PHONES, RTP_BASE, SBC_LAN, TONE_SECONDS, WAN_MEDIA_LEARNS, PhoneFactory
from tests.interop.wire_capture import Capture


@pytest.fixture(scope="module")
def pbx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kamailio]:
    kamailio = Kamailio(TRUNK, tmp_path_factory.mktemp("kamailio"), port=TRUNK_PORT).start()
    yield kamailio
    kamailio.stop()


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tones")
    return {name: make_tone(folder / f"{name}.wav", spec.tone_hz, TONE_SECONDS) for name, spec in PHONES.items()}


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


@pytest.fixture
def phone(tmp_path: Path, pbx: Kamailio, tones: dict[str, Path]) -> Iterator[PhoneFactory]:
    """`phone("A")` starts phone A (registered, unless `register=False`); all are stopped at the end."""
    started: list[Phone] = []

    def start(name: str, *, transport: str = "udp", register: bool = True) -> Phone:
        spec = PHONES[name]
        pbx.forget(spec.user)
        index = list(PHONES).index(name)
        made = Phone(
            name=name,
            user=spec.user,
            address=spec.address,
            registrar=SBC_LAN if spec.via_sbc else PBX,
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
