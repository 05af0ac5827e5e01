"""sd_notify messages, the environment systemd sets, and the pet-or-withhold decision."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from sbc.sd_notify import (
    FakeTransport,
    Health,
    NotifySettings,
    SdNotifier,
    UnixDatagramTransport,
    WatchdogPolicy,
    notify_message,
)


def test_notify_message_format() -> None:
    assert notify_message(READY="1", STATUS="up\nand running") == b"READY=1\nSTATUS=up and running"
    with pytest.raises(ValueError):
        notify_message(ready="1")


@pytest.mark.parametrize(
    ("env", "socket_path", "interval"),
    [
        ({}, None, None),
        ({"NOTIFY_SOCKET": "/run/systemd/notify"}, "/run/systemd/notify", None),
        ({"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "20000000"}, "/n", 10.0),
        ({"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "42"}, "/n", 10.0),
        ({"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "43"}, "/n", None),  # not for us
        ({"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "junk"}, "/n", None),
        ({"WATCHDOG_USEC": "20000000"}, None, None),  # nobody to tell
    ],
)
def test_settings_from_environment(env: dict[str, str], socket_path: str | None, interval: float | None) -> None:
    settings = NotifySettings.from_environment(env, pid=42)
    assert settings.socket == socket_path
    assert settings.pet_interval_s == interval


def test_status_is_sent_only_when_it_changes() -> None:
    transport = FakeTransport()
    notifier = SdNotifier(transport)
    notifier.ready("0 calls")
    notifier.status("0 calls")
    notifier.watchdog()
    notifier.status("1 calls")
    notifier.stopping()
    assert transport.sent == [
        b"READY=1\nSTATUS=0 calls",
        b"WATCHDOG=1",
        b"STATUS=1 calls",
        b"STOPPING=1\nSTATUS=stopping",
    ]


def test_policy_withholds_while_unhealthy_and_says_so_once() -> None:
    policy = WatchdogPolicy()
    assert policy.decide(Health(True)) == (True, None)
    assert policy.decide(Health(False, "core stuck")) == (False, "withheld: core stuck")
    assert policy.decide(Health(False, "core stuck")) == (False, None)
    assert policy.decide(Health(False, "control closed")) == (False, "withheld: control closed")
    assert policy.decide(Health(True)) == (True, "resumed")


def test_datagrams_reach_a_path_and_an_abstract_socket(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as by_path, \
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as abstract:  # fmt: skip
        by_path.bind(str(tmp_path / "notify"))
        name = f"sbc-hw-test-{id(tmp_path)}"
        abstract.bind("\0" + name)
        for sock, address in ((by_path, str(tmp_path / "notify")), (abstract, "@" + name)):
            transport = UnixDatagramTransport(address)
            SdNotifier(transport).watchdog()
            sock.settimeout(2)
            assert sock.recv(100) == b"WATCHDOG=1"
            transport.close()
    gone = UnixDatagramTransport(str(tmp_path / "nobody"))
    gone.send(b"WATCHDOG=1")  # systemd gone: counted, not raised
    assert gone.failures == 1
