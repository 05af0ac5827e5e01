"""Which parts of a config change the running SBC can take on the fly, and which wait for a restart.

Live: routes, header rules, per-realm header policy, peers and registrars, trust and NAT handling,
the media policy of new calls (latching, DSCP, timeouts), limits, log level. Bound to sockets or to
the transaction layers when the SBC started, so they wait for a restart: the set of realms, their
SIP and media addresses, listeners, TLS, signalling DSCP, media port ranges, timers, state directory
and control socket, the dataplane (which relay, its pins, the XDP attach mode). Management settings
belong to `sbc mgmt` and are not the SBC's concern.
"""

from __future__ import annotations

from dataclasses import replace

from sbc.config.model import Realm, SbcConfig

__all__ = ["live_part", "restart_required"]


def _realm_bindings(realm: Realm) -> dict[str, object]:
    return {
        "address": realm.address,
        "advertised_address": realm.advertised_address,
        "listen": realm.listeners,
        "tls": realm.tls,
        "sip_dscp": realm.sip_dscp,
        "media.address": realm.media.address,
        "media.ports": (realm.media.port_min, realm.media.port_max),
    }


def restart_required(old: SbcConfig, new: SbcConfig) -> list[str]:
    """The config paths whose new value takes effect only after `sbc run` restarts (empty: all live)."""
    changed: list[str] = []
    old_realms = {r.name: r for r in old.realms}
    new_realms = {r.name: r for r in new.realms}
    if list(old_realms) != list(new_realms):
        changed.append("realms (added, removed or renamed)")
    for name in old_realms.keys() & new_realms.keys():
        before, after = _realm_bindings(old_realms[name]), _realm_bindings(new_realms[name])
        changed += [f"realms[{name}].{key}" for key in before if before[key] != after[key]]
    for key in ("timers", "state_dir", "control_socket", "dataplane"):
        if getattr(old, key) != getattr(new, key):
            changed.append(key)
    return sorted(changed)


def live_part(old: SbcConfig, new: SbcConfig) -> SbcConfig | None:
    """`new` with every restart-bound value kept as `old` has it: what a running SBC switches to.

    None when the set of realms changed: the sockets and transaction layers are per realm, so nothing
    of such a change can be applied before a restart.
    """
    old_realms = {r.name: r for r in old.realms}
    if [r.name for r in new.realms] != list(old_realms):
        return None
    realms = tuple(_keep_bindings(old_realms[r.name], r) for r in new.realms)
    return replace(
        new,
        realms=realms,
        timers=old.timers,
        state_dir=old.state_dir,
        control_socket=old.control_socket,
        dataplane=old.dataplane,
    )


def _keep_bindings(old: Realm, new: Realm) -> Realm:
    media = replace(new.media, address=old.media.address, port_min=old.media.port_min, port_max=old.media.port_max)
    return replace(
        new,
        address=old.address,
        advertised_address=old.advertised_address,
        listeners=old.listeners,
        tls=old.tls,
        sip_dscp=old.sip_dscp,
        media=media,
    )
