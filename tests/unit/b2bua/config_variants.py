"""`Net`s on variants of the harness's config: the same realms and routes with some lines edited."""

from __future__ import annotations

import itertools

from dataplane.fake import FakeDataplane
from sbc.b2bua.core import Core
from sbc.config.loader import load_config_text
from tests.unit.b2bua.sip_peers import CONFIG, LAN_SBC, TRUNK, WAN_SBC, Net

WAN_PEER = f"peer: {{host: {TRUNK}, port: 5060, transport: udp}}"
WAN_LISTEN = f"address: {WAN_SBC}\n    listen: [{{transport: udp, port: 5060}}]"
WAN_MEDIA = f"media: {{address: {WAN_SBC}, ports: 31000-31099}}"


def config_text(edits: dict[str, str]) -> str:
    """The harness's config with each key's text replaced by its value (each must occur)."""
    text = CONFIG.format(lan_sbc=LAN_SBC, wan_sbc=WAN_SBC, trunk=TRUNK, rules="[]")
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


def net_with(edits: dict[str, str]) -> Net:
    net = Net()
    counter = itertools.count(1)
    net.core = Core(
        load_config_text(config_text(edits), "unit-test"),
        FakeDataplane(),
        token=lambda n: format(next(counter), "x").rjust(2 * n, "0"),
    )
    return net
