"""A rogue DHCP server on the WAN cannot provision the box (issue 16, item 3).

The first boot runs for real inside a namespace whose wan0 faces a dnsmasq that answers DHCPINFORM
with an http:// provisioning URL, next to a web server (both in a second namespace) that serves a
config naming /etc as the SBC's state directory. Ownership changes are recorded, not made: the test
checks the first boot never tries to hand out anything outside the box's state directories.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hw.appliance.fetch import fetch_as
from tests.dhcp import dnsmasq_dhcp, wan_pair
from tests.processes import stop_process

pytestmark = [
    pytest.mark.integration,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("dnsmasq") is None, reason="needs root and dnsmasq"),
]
NET = os.environ.get("SBC_TEST_NET", "0")
SERVER, BOX = "198.18.9.2", "198.18.9.10"
WEB_PORT = 8080
ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "rootfs/usr/lib/sbc/sbc.yaml"

# Runs in the box's namespace: the real FirstBoot (DHCPINFORM on wan0, the unprivileged fetch) on
# directories under argv[1], with chown recorded.
FIRST_BOOT = """
import json, sys
from pathlib import Path
from hw.appliance import dhcpinform
from hw.appliance.firstboot import FirstBoot, Provisioning

work, cmdline = Path(sys.argv[1]), sys.argv[2]
shown, chowned = [], []
fb = FirstBoot(system_dir=work / "system", config_dir=work / "config", template=work / "template.yaml",
               provisioning=Provisioning.gather(cmdline=cmdline, credentials=work / "credentials",
                                                keys_dir=work / "keys", ca_file=work / "no-ca.pem"),
               discover=lambda: dhcpinform.ask("wan0", waits=(1.0, 2.0)), show=shown.append,
               owner="root", mgmt_owner="root", set_hostname=lambda name: None,
               etc_hostname=work / "etc-hostname", state_roots=(work / "state", work / "state-mgmt"),
               chown=lambda path, uid, gid: chowned.append(str(path)))
fb.run()
print(json.dumps({"shown": shown, "chowned": chowned, "marker": json.loads(fb.marker.read_text())}))
"""


@pytest.fixture
def wan() -> Iterator[tuple[str, str]]:
    """(server namespace, box namespace) joined by a veth whose box end is called wan0."""
    with wan_pair(f"sbcprov{NET}{os.getpid()}", "rogue", SERVER, BOX) as pair:
        yield pair


@pytest.fixture
def rogue_web(wan: tuple[str, str], tmp_path: Path) -> Iterator[Path]:
    """The rogue's web server in the server namespace; yields its access log (stderr of http.server)."""
    www = tmp_path / "www"
    www.mkdir()
    text = TEMPLATE.read_text().replace("@SNMP_AUTH_KEY@", "rogue-auth-key-0123")
    text = text.replace("@SNMP_PRIV_KEY@", "rogue-priv-key-0123")
    text = text.replace("state_dir: /var/lib/sbc\n", "state_dir: /etc\n")
    text = text.replace("state_dir: /var/lib/sbc-mgmt", "state_dir: /etc/sbc-mgmt")
    (www / "sbc.yaml").write_text(text)
    log = tmp_path / "web.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(["ip", "netns", "exec", wan[0], sys.executable, "-m", "http.server", str(WEB_PORT),
                                 "--bind", SERVER, "--directory", str(www)], stdout=out, stderr=out,
                                start_new_session=True)  # fmt: skip
    try:
        for _ in range(100):  # bounded: 10 s for the server to listen
            probe = subprocess.run(["ip", "netns", "exec", wan[0], "ss", "-ltnH", f"sport = :{WEB_PORT}"],
                                   capture_output=True, text=True, timeout=5, check=False)  # fmt: skip
            if probe.stdout.strip():
                break
            assert proc.poll() is None, log.read_text()
            threading.Event().wait(0.1)
        yield log
    finally:
        stop_process(proc)


def first_boot(box: str, work: Path, cmdline: str) -> dict[str, object]:
    work.mkdir(parents=True, exist_ok=True)
    (work / "template.yaml").write_text(TEMPLATE.read_text().replace("/var/lib/sbc", str(work / "state")))
    done = subprocess.run(["ip", "netns", "exec", box, sys.executable, "-c", FIRST_BOOT, str(work), cmdline],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    result["log"] = done.stderr
    return result


def only_inside(chowned: object, work: Path) -> bool:
    assert isinstance(chowned, list) and chowned, "the first boot hands its own state directories over"
    return all(Path(p).resolve().is_relative_to(work) for p in chowned)


def test_a_rogue_dhcp_server_is_not_even_asked_by_default(wan: tuple[str, str], rogue_web: Path,
                                                           tmp_path: Path) -> None:  # fmt: skip
    server, box = wan
    etc_before = os.stat("/etc")
    url = f"http://{SERVER}:{WEB_PORT}/sbc.yaml"
    with dnsmasq_dhcp(server, "rogue", f"{SERVER}/24", {224: url, 160: url}, tmp_path) as dhcp_log:
        result = first_boot(box, tmp_path / "box", "quiet")
        dhcp_text = dhcp_log.read_text()
    assert result["marker"]["config"] == "default"  # type: ignore[index]
    assert "DHCPINFORM" not in dhcp_text and "GET /sbc.yaml" not in rogue_web.read_text()
    assert only_inside(result["chowned"], tmp_path / "box")
    assert (os.stat("/etc").st_uid, os.stat("/etc").st_gid) == (etc_before.st_uid, etc_before.st_gid)


def test_opted_in_an_http_url_from_dhcp_is_refused_on_the_console(wan: tuple[str, str], rogue_web: Path,
                                                                  tmp_path: Path) -> None:  # fmt: skip
    server, box = wan
    url = f"http://{SERVER}:{WEB_PORT}/sbc.yaml"
    with dnsmasq_dhcp(server, "rogue", f"{SERVER}/24", {224: url}, tmp_path) as dhcp_log:
        result = first_boot(box, tmp_path / "box", "quiet sbc.provision_dhcp=yes")
        dhcp_text = dhcp_log.read_text()
    assert f"DHCPINFORM(rogue) {BOX}" in dhcp_text  # asked, and answered with the http URL
    shown = "\n".join(result["shown"])  # type: ignore[arg-type]
    assert "PROVISIONING REFUSED" in shown and "plain http:// URL from DHCP is refused" in shown
    assert f"{url} (DHCP option 224 from {SERVER})" in shown
    assert result["marker"]["config"] == "default"  # type: ignore[index]
    assert "GET /sbc.yaml" not in rogue_web.read_text()
    assert only_inside(result["chowned"], tmp_path / "box")


def test_a_config_naming_etc_is_refused_and_chowns_nothing_outside(wan: tuple[str, str], rogue_web: Path,
                                                                   tmp_path: Path) -> None:  # fmt: skip
    _, box = wan
    etc_before = os.stat("/etc")
    # Even the operator's own URL (fetched as given, over http) cannot choose the state directories.
    result = first_boot(box, tmp_path / "box", f"sbc.provision=http://{SERVER}:{WEB_PORT}/sbc.yaml")
    assert "GET /sbc.yaml" in rogue_web.read_text()  # fetched (by the unprivileged child)...
    shown = "\n".join(result["shown"])  # type: ignore[arg-type]
    assert "PROVISIONING FAILED" in shown and "sbc.state_dir: /etc is not inside" in shown  # ...and refused
    assert "management.state_dir: /etc/sbc-mgmt is not inside" in shown
    assert result["marker"]["config"] == "default"  # type: ignore[index]
    assert only_inside(result["chowned"], tmp_path / "box")
    assert not (Path("/etc") / "sbc-mgmt").exists()
    assert (os.stat("/etc").st_uid, os.stat("/etc").st_gid) == (etc_before.st_uid, etc_before.st_gid)


def _socket_owner(local_port: int) -> int | None:
    """The uid owning the TCP socket bound to `local_port` on this side (from /proc/net/tcp)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == local_port:
            return int(fields[7])
    return None


def test_the_fetch_runs_as_nobody() -> None:
    """The server looks up who owns the client's socket: the fetcher, not root."""
    owners: list[int | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's name
            owners.append(_socket_owner(self.client_address[1]))
            body = b"sbc: {}\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # http.server's names
            pass

    server = ThreadingHTTPServer((f"127.{NET}.90.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        body = fetch_as("nobody", f"http://127.{NET}.90.1:{server.server_port}/c.yaml", None, attempts=1)
    finally:
        server.shutdown()
        server.server_close()
    assert body == b"sbc: {}\n"
    assert owners == [65534]
