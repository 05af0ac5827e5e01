"""The console's commands, fed from a string (the real one runs on ttyS0 in tests/image)."""

from __future__ import annotations

import io

import pytest

from hw.appliance import console_menu
from hw.appliance.console_menu import run_console


def test_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[list[str]] = []
    out = io.StringIO()
    monkeypatch.setattr(console_menu, "_addresses", lambda: "lan0 198.18.1.1/24")
    monkeypatch.setattr(console_menu, "booted_version", lambda: "0.3.0")
    stdin = io.StringIO("help\nbogus\nfactory-reset\nreboot\nno\nreboot\nyes\n")
    assert run_console(stdin, out, command=lambda argv: ran.append(argv) or 0) == 0
    text = out.getvalue()
    assert "firmware 0.3.0" in text and "addresses: lan0 198.18.1.1/24" in text
    assert "unknown command 'bogus'" in text and "wipe the state partition and reboot" in text
    assert ran == [["/usr/lib/sbc/venv/bin/sbc-hw", "factory-reset"], ["systemctl", "reboot"]]
