"""Fixtures of the firmware image tests: the images (built once per run with the warm mkosi cache) and
the appliance booted in QEMU with TCG inside a lab network namespace.

Every boot is expensive under emulation (a minute or two on a shared 2-core machine), so one VM runs
the whole module and the tests follow its life in order: first boot, calls and management, an update,
a broken update that rolls back, a factory reset. A test that needs the previous one's state says so.
When a boot does not complete, the failure carries the end of the serial console and names its file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from image.labnet import WAN_HOST, LabNet, lab_network
from image.qemu import Vm, VmError, VmSpec
from tests.dhcp import dnsmasq_dhcp
from tests.image.lab import web_server

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build"
ARCH = os.environ.get("SBC_IMAGE_ARCH", "x86-64")
BOOT_TIMEOUT_S = float(os.environ.get("SBC_IMAGE_BOOT_TIMEOUT", "1200"))
BROKEN_TREE = Path(__file__).resolve().parent / "broken-tree"
# The test variant's extra tree: the agent's unit and udev rule; its code comes from image/testagent.py.
AGENT_TREE = Path(__file__).resolve().parent / "agent-tree"
PROVISIONING_PORT = 8080
HOSTNAME = "branch-lab-1"
LAB_USER_AGENT = "LabSBC"
LAB_SNMP = ("sbcadmin", "lab-auth-key-0123456789", "lab-priv-key-0123456789")
TOOLS = ("mkosi", "qemu-system-x86_64" if ARCH == "x86-64" else "qemu-system-aarch64", "qemu-img", "sipp",
         "snmpwalk", "gzip")  # fmt: skip


def base_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        return str(tomllib.load(fh)["project"]["version"])


@dataclass(frozen=True, slots=True)
class Built:
    version: str
    output_dir: Path
    info: dict[str, Any]

    @property
    def disk(self) -> Path:
        return self.output_dir / "image.raw"

    @property
    def bundle(self) -> Path:
        return Path(self.info["bundle"])


@dataclass
class Firmware:
    base: Built
    update: Built
    broken: Built
    build_seconds: dict[str, float | None] = field(default_factory=dict)


def test_variant_tree() -> Path:
    """The tree that turns the production image into the tests' variant: the agent's unit and udev
    rule (agent-tree/) and the agent (image/testagent.py), staged under build/ (mtimes kept, so
    `--if-needed` still sees when they changed)."""
    staged = BUILD / "test-agent-tree"
    if staged.exists():
        shutil.rmtree(staged)
    shutil.copytree(AGENT_TREE, staged)
    (staged / "usr/lib/sbc").mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "image/testagent.py", staged / "usr/lib/sbc/testagent.py")
    return staged


def _build(version: str, output_dir: Path, *extra: str) -> Built:
    argv = [sys.executable, str(ROOT / "image/build.py"), "--arch", ARCH, "--version", version,
            "--output-dir", str(output_dir), "--if-needed", *extra]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=3600, check=False)
    if done.returncode != 0:
        pytest.fail(f"image build {version} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}")
    info = json.loads((output_dir / "image.json").read_text())
    return Built(version, output_dir, info)


def _require_image_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("the image tests need root (mkosi, network namespaces, tap devices)")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)} (make image-deps installs them)")


@pytest.fixture(scope="session")
def production() -> Built:
    """The image a customer flashes, exactly as `make image` builds it (build/, no extra tree)."""
    _require_image_tools()
    return _build(base_version(), BUILD if ARCH == "x86-64" else BUILD / ARCH)


@pytest.fixture(scope="session")
def firmware() -> Firmware:
    """The test variant of this tree's image (the production image plus the test agent), a newer
    version of it, and a broken one."""
    _require_image_tools()
    version = base_version()
    agent = ("--extra-tree", str(test_variant_tree()))
    base = _build(version, BUILD / f"test-{ARCH}-base", *agent)
    update = _build(f"{version}.1", BUILD / f"test-{ARCH}-update", *agent)
    broken = _build(f"{version}.2", BUILD / f"test-{ARCH}-broken", *agent, "--extra-tree", str(BROKEN_TREE))
    seconds = {b.version: b.info.get("build_seconds") for b in (base, update, broken)}
    return Firmware(base, update, broken, seconds)


@pytest.fixture(scope="module")
def lab() -> Iterator[LabNet]:
    with lab_network("lab") as net:
        yield net


@dataclass
class Provisioning:
    """The provisioning server on the WAN side; `stop()` takes it away (the box then falls back)."""

    url: str
    directory: Path
    stack: contextlib.ExitStack

    def stop(self) -> None:
        self.stack.close()


def lab_config() -> str:
    """The image's default config, as a provisioning system would send it for this lab."""
    text = (ROOT / "rootfs/usr/lib/sbc/sbc.yaml").read_text()
    _, auth, priv = LAB_SNMP
    return (text.replace("user_agent: EdgeSBC", f"user_agent: {LAB_USER_AGENT}")
            .replace("@SNMP_AUTH_KEY@", auth).replace("@SNMP_PRIV_KEY@", priv))  # fmt: skip


@pytest.fixture(scope="module")
def provisioning(lab: LabNet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provisioning]:
    www = tmp_path_factory.mktemp("provisioning")
    (www / "sbc.yaml").write_text(lab_config())
    url = f"http://{WAN_HOST}:{PROVISIONING_PORT}/sbc.yaml"
    # The box learns the URL from an SMBIOS credential (the operator's own choice, see `appliance`).
    # The WAN's DHCP server offers the same http:// URL in option 224: the image ignores DHCP unless
    # told otherwise (and would refuse http from it), so the console must not name DHCP as the source.
    # `stop()` takes the web server away: a later first boot finds nothing at the URL.
    with dnsmasq_dhcp(lab.netns, lab.wan_tap, f"{WAN_HOST}/24", {224: url}, www), contextlib.ExitStack() as stack:
        base = stack.enter_context(web_server(lab, www, WAN_HOST, PROVISIONING_PORT))
        assert f"{base}/sbc.yaml" == url
        yield Provisioning(url, www, stack)


@dataclass
class Appliance:
    vm: Vm
    net: LabNet
    workdir: Path
    hello: dict[str, Any]
    boots: list[dict[str, Any]] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def wait_boot(self, timeout: float = BOOT_TIMEOUT_S) -> dict[str, Any]:
        """Wait for the next boot's agent; records how long it took from the reboot being asked."""
        started = time.monotonic()
        hello = self.vm.wait_agent(timeout, after=self.hello["boot_id"])
        hello["seconds_to_agent"] = round(time.monotonic() - started, 1)
        self.hello = hello
        self.boots.append(hello)
        return hello

    def wait_running(self, timeout: float = 900) -> str:
        """`systemctl is-system-running --wait`: running (all units up) or degraded (name the failed ones)."""
        state = self.vm.run(["systemctl", "is-system-running", "--wait"], timeout=timeout, check=False).stdout.strip()
        if state != "running":
            failed = self.vm.run(["systemctl", "--failed", "--no-pager", "--plain"], check=False).stdout
            jobs = self.vm.run(["systemctl", "list-jobs", "--no-pager"], check=False).stdout
            raise AssertionError(f"system is {state!r}\n{failed}\n{jobs}")
        return state


@pytest.fixture(scope="module")
def appliance(firmware: Firmware, lab: LabNet, provisioning: Provisioning,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:  # fmt: skip
    """The box, told its hostname and where its config is by SMBIOS credentials (as a provisioning
    system would); its admin password is generated and shown on the console."""
    workdir = tmp_path_factory.mktemp("appliance")
    smbios = (f"io.systemd.credential:sbc.hostname={HOSTNAME}",
              f"io.systemd.credential:sbc.provision_url={provisioning.url}")  # fmt: skip
    vm = Vm(VmSpec(disk=firmware.base.disk, workdir=workdir, arch=ARCH, netns=lab.netns,
                   taps=(lab.wan_tap, lab.lan_tap), smbios=smbios))  # fmt: skip
    vm.start()
    try:
        try:
            hello = vm.wait_agent(BOOT_TIMEOUT_S)
        except VmError as exc:
            pytest.fail(f"the image did not boot (serial log {vm.serial_log}):\n{exc}")
        box = Appliance(vm, lab, workdir, hello, boots=[hello])
        yield box
    finally:
        vm.stop()
        print(f"\nserial console of the appliance: {vm.serial_log}")
