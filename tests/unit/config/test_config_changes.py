"""Reload: which changes a running SBC takes at once and which wait for a restart."""

from __future__ import annotations

import dataclasses
import ipaddress

from sbc.config.changes import live_part, restart_required
from sbc.config.loader import load_config
from sbc.config.model import SbcConfig, Timers


def _with_realm(config: SbcConfig, name: str, **changes: object) -> SbcConfig:
    realms = tuple(dataclasses.replace(r, **changes) if r.name == name else r for r in config.realms)
    return dataclasses.replace(config, realms=realms)


def test_policy_changes_are_live() -> None:
    old = load_config()
    new = _with_realm(dataclasses.replace(old, max_calls=5), "lan", user_agent="Other", strip_headers=("Subject",))
    assert restart_required(old, new) == []
    live = live_part(old, new)
    assert live == new


def test_bound_values_wait_for_a_restart_and_the_rest_applies() -> None:
    old = load_config()
    lan = old.realm("lan")
    moved = dataclasses.replace(lan.media, port_min=lan.media.port_min + 2, dscp=10)
    new = _with_realm(
        dataclasses.replace(old, timers=Timers(t1_ms=250), max_calls=7),
        "lan",
        address=ipaddress.ip_address("127.0.1.99"),
        media=moved,
        user_agent="Other",
    )
    assert restart_required(old, new) == ["realms[lan].address", "realms[lan].media.ports", "timers"]
    live = live_part(old, new)
    assert live is not None
    assert live.max_calls == 7 and live.timers == old.timers
    live_lan = live.realm("lan")
    assert live_lan.address == lan.address and live_lan.user_agent == "Other"
    assert (live_lan.media.port_min, live_lan.media.dscp) == (lan.media.port_min, 10)


def test_a_changed_set_of_realms_applies_nothing() -> None:
    old = load_config()
    new = dataclasses.replace(old, realms=old.realms[:1])
    assert restart_required(old, new) == ["realms (added, removed or renamed)"]
    assert live_part(old, new) is None
