"""Checks on what SIPp peers sent and received (their -trace_msg logs), shared by the call-flow tests.

`assert_topology_hidden` is the acceptance check of topology hiding: nothing that identifies one
side (its addresses, ports, Call-IDs, tags, branches, Contacts, User-Agent/Server values) appears in
any byte the other side received.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tests.integration.harness import LAN_NET, WAN_NET, Sipp, received_messages, sent_messages


def identifiers(messages: Iterable[str]) -> dict[str, set[str]]:
    """What of one side's topology its messages carry: Call-IDs, tags, branches, contacts, user agents."""
    found: dict[str, set[str]] = {"call-id": set(), "tag": set(), "branch": set(), "contact": set(), "ua": set()}
    for msg in messages:
        head = msg.split("\n\n", 1)[0]
        for line in head.splitlines():
            name, _, value = line.partition(":")
            key = name.strip().lower()
            value = value.strip()
            if key in ("call-id", "i"):
                found["call-id"].add(value)
            elif key in ("from", "f", "to", "t"):
                found["tag"].update(re.findall(r";tag=([^;>\s]+)", value))
            elif key in ("via", "v"):
                found["branch"].update(re.findall(r"branch=([^;\s,]+)", value))
            elif key in ("contact", "m"):
                found["contact"].update(re.findall(r"<([^>]+)>", value))
            elif key in ("user-agent", "server"):
                found["ua"].add(value)
    return found


def _net_prefix(network: str) -> str:
    """`127.1.1.0/24` -> `127.1.1.` (the test networks are /24s)."""
    return network.rsplit(".", 1)[0] + "."


def _addresses_in(text: str, prefix: str) -> set[str]:
    return set(re.findall(re.escape(prefix) + r"\d{1,3}(?!\d)", text))


def assert_hidden_one_way(
    inside: Sipp | Iterable[Sipp],
    outside: Sipp | Iterable[Sipp],
    *,
    inside_network: str,
    allowed_addresses: Iterable[str],
    inside_ports: Iterable[int] = (),
    secrets: Iterable[str] = (),
    credential_addresses: Iterable[str] = (),
) -> None:
    """Nothing that identifies the `inside` peers reaches the `outside` peers.

    `allowed_addresses` are addresses of the inside network the outside may see (none, normally; the
    SBC's address on the outside realm is in the outside network). `credential_addresses` may appear
    only inside digest credentials, which cross unchanged (the digest-uri of a phone that addressed
    the SBC by its inside address)."""
    inside_peers = [inside] if isinstance(inside, Sipp) else list(inside)
    outside_peers = [outside] if isinstance(outside, Sipp) else list(outside)
    sent = [m for p in inside_peers for m in sent_messages(p.messages())]
    received = "\n".join(m for p in outside_peers for m in received_messages(p.messages()))
    assert sent, "the inside peer sent nothing"
    assert received, "the outside peer received nothing"
    found = identifiers(sent)
    # The check means something only if the inside side's identities were seen in what it sent.
    assert found["call-id"] and found["tag"] and found["branch"], found
    for kind, values in found.items():
        for value in values:
            assert value not in received, f"{kind} {value!r} crossed to the other side:\n{received}"
    in_credentials = "\n".join(
        line for line in received.splitlines() if line.lower().startswith(("authorization:", "proxy-authorization:"))
    )
    outside_credentials = "\n".join(
        line
        for line in received.splitlines()
        if not line.lower().startswith(("authorization:", "proxy-authorization:"))
    )
    prefix = _net_prefix(inside_network)
    leaked = _addresses_in(outside_credentials, prefix) - set(allowed_addresses)
    leaked |= _addresses_in(in_credentials, prefix) - set(allowed_addresses) - set(credential_addresses)
    assert not leaked, f"addresses {sorted(leaked)} of {inside_network} crossed to the other side:\n{received}"
    for port in inside_ports:
        assert not re.search(rf"[:=]{port}(?!\d)", received), f"port {port} crossed to the other side:\n{received}"
    for secret in secrets:
        assert secret not in received, f"{secret!r} crossed to the other side:\n{received}"


def assert_topology_hidden(
    lan_peers: Sipp | Iterable[Sipp],
    wan_peers: Sipp | Iterable[Sipp],
    *,
    lan_ports: Iterable[int],
    wan_ports: Iterable[int],
    lan_credential_addresses: Iterable[str] = (),
) -> None:
    """Both ways: no LAN peer's identity reaches a WAN peer, and no WAN peer's identity a LAN peer."""
    assert_hidden_one_way(
        lan_peers,
        wan_peers,
        inside_network=LAN_NET,
        allowed_addresses=(),
        inside_ports=lan_ports,
        secrets=("secret-lan-ua", "InsidePhone"),
        credential_addresses=lan_credential_addresses,
    )
    assert_hidden_one_way(
        wan_peers,
        lan_peers,
        inside_network=WAN_NET,
        allowed_addresses=(),
        inside_ports=wan_ports,
        secrets=("secret-wan-ua", "OutsidePBX"),
    )


def all_received(peer: Sipp, start: str) -> list[str]:
    """The messages `peer` received whose start line begins with `start` (e.g. "INVITE ", "SIP/2.0 183")."""
    return [m for m in received_messages(peer.messages()) if m.startswith(start)]


def first_received(peer: Sipp, start: str) -> str:
    found = all_received(peer, start)
    if not found:
        raise AssertionError(f"{peer.name} received no {start.strip()!r}:\n{peer.messages()[-4000:]}")
    return found[0]


def header(msg: str, name: str) -> str | None:
    """The value of the first `name` header of a traced message (case-insensitive), or None."""
    head = msg.split("\n\n", 1)[0]
    for line in head.splitlines()[1:]:
        key, colon, value = line.partition(":")
        if colon and key.strip().lower() == name.lower():
            return value.strip()
    return None


def body(msg: str) -> str:
    parts = re.split(r"\r?\n\r?\n", msg, maxsplit=1)
    return parts[1].strip() if len(parts) > 1 else ""
