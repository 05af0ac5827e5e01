"""Link alarms from successive role maps: raised after the delay, cleared at once, gone and missing NICs;
and the sbc-hw console commands for the factory reset."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hw.links import LinkTracker, apply_changes
from hw.nics import FakeNicInventory, Nic
from hw.profile import parse_profile
from hw.roles import assign_roles

PROFILE = parse_profile("name: t\nports:\n  - {match: {path: 'pci-0000:00:03.0'}, role: wan}\nunmatched: in-order\n"
                        "required: [wan, lan]\n", "t.yaml")  # fmt: skip
SBC_HW = Path(sys.executable).parent / "sbc-hw"


class Sink:
    def __init__(self) -> None:
        self.active: dict[str, str] = {}

    def raise_alarm(self, name: str, severity: str, text: str) -> None:
        self.active[name] = severity

    def clear(self, name: str) -> None:
        self.active.pop(name, None)


def test_link_down_raised_after_the_delay_and_cleared_at_once() -> None:
    inv = FakeNicInventory([Nic("eth0", 2, "52:54:00:00:00:01", "virtio_net", "pci-0000:00:03.0", carrier=True),
                            Nic("eth1", 3, "52:54:00:00:00:02", "virtio_net", "pci-0000:00:04.0", carrier=True)])
    tracker, sink = LinkTracker(raise_after_s=2.0), Sink()
    apply_changes(tracker.update(assign_roles(PROFILE, inv.list_nics()), 0.0), sink)
    assert sink.active == {}
    inv.set_link("eth1", False)
    assert tracker.update(assign_roles(PROFILE, inv.list_nics()), 10.0) == []
    assert tracker.next_deadline() == 12.0
    apply_changes(tracker.tick(12.0), sink)
    assert sink.active == {"link-down:lan0": "major"}
    assert "LAN interface lan0 (virtio_net, pci-0000:00:04.0) has no carrier" in tracker.active["link-down:lan0"].text
    inv.set_link("eth1", True)
    apply_changes(tracker.update(assign_roles(PROFILE, inv.list_nics()), 13.0), sink)
    assert sink.active == {}
    inv.set_link("eth1", False)  # a flap shorter than the delay
    tracker.update(assign_roles(PROFILE, inv.list_nics()), 20.0)
    inv.set_link("eth1", True)
    tracker.update(assign_roles(PROFILE, inv.list_nics()), 21.0)
    assert tracker.tick(30.0) == [] and tracker.next_deadline() is None


def test_an_unplugged_wan_is_gone_and_missing() -> None:
    inv = FakeNicInventory([Nic("eth0", 2, "52:54:00:00:00:01", "virtio_net", "pci-0000:00:03.0", carrier=True),
                            Nic("eth1", 3, "52:54:00:00:00:02", "virtio_net", "pci-0000:00:04.0", carrier=None)])
    tracker, sink = LinkTracker(raise_after_s=0.0), Sink()
    apply_changes(tracker.update(assign_roles(PROFILE, inv.list_nics()), 0.0), sink)
    assert sink.active == {"link-down:lan0": "major"}
    assert "administratively down" in tracker.active["link-down:lan0"].text
    inv.nics = inv.nics[1:]
    apply_changes(tracker.update(assign_roles(PROFILE, inv.list_nics()), 1.0), sink)
    # eth1 is the first in order now, so it became the WAN; the old WAN name is gone
    assert sink.active["link-down:wan0"] == "critical"
    assert sink.active["nic-missing:lan"] == "critical"


def test_factory_reset_console_command_and_apply_at_boot(tmp_path: Path) -> None:
    var = tmp_path / "var"
    (var / "lib" / "sbc-config").mkdir(parents=True)
    (var / "lib" / "sbc-config" / "sbc.yaml").write_text("realms: []\n")
    marker = var / "lib" / "sbc-factory-reset" / "request.json"
    refused = subprocess.run([str(SBC_HW), "factory-reset", "--marker", str(marker), "--no-reboot"], input="yes\n",
                             capture_output=True, text=True, timeout=30)  # fmt: skip
    assert refused.returncode == 1 and not marker.exists()
    done = subprocess.run([str(SBC_HW), "factory-reset", "--marker", str(marker), "--no-reboot"],
                          input="factory reset\n", capture_output=True, text=True, timeout=30)  # fmt: skip
    assert done.returncode == 0 and marker.exists(), done.stderr
    applied = subprocess.run([str(SBC_HW), "factory-reset-apply", "--root", str(var), "--marker", str(marker)],
                             capture_output=True, text=True, timeout=30)  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    assert '"event": "factory_reset.done"' in applied.stderr
    assert list(var.iterdir()) == []
    again = subprocess.run([str(SBC_HW), "factory-reset-apply", "--root", str(var), "--marker", str(marker)],
                           capture_output=True, text=True, timeout=30)  # fmt: skip
    assert again.returncode == 0 and "none_requested" in again.stderr


def test_a_broken_profile_is_refused_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("name: x\nports:\n  - {match: {bus: 1}, role: wan}\n")
    out = subprocess.run([str(SBC_HW), "roles", "--profile", str(bad)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert f"{bad}:3: ports[0].match.bus: unknown key" in out.stderr
