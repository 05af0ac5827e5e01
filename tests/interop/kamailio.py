"""Kamailio (Debian `kamailio`, 5.6) as the branch's cloud PBX: registrar, record-routing proxy.

The routing logic is the stock /etc/kamailio/kamailio.cfg trimmed to what a small hosted PBX without
a database keeps: REQINIT (max-forwards, sanity, keepalive OPTIONS), in-dialog requests by
`loose_route` (WITHINDLG), `record_route` on new INVITEs, REGISTRAR (`save("location")`, usrloc in
memory) and LOCATION (`lookup("location")`, then RELAY through tm). Two branches are added: INVITEs for
`FORWARDED_USER` are answered with a 302 toward another extension on this PBX (call forwarding), and
re-INVITEs are refused with 488 while the `refuse_reinvite` policy is set (`refusing_reinvites()`).
No authentication: the SBC's relaying is what is under test.

Kamailio runs in the foreground (`-DD -E`, log to stderr) with its own runtime directory and a
`ctl` socket, so `kamcmd ul.dump` shows the location table.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.processes import stop_process

PORT = 5060
FORWARDED_USER = "1900"  # an extension forwarded (302) to FORWARD_TARGET
FORWARD_TARGET = "2001"  # the WAN phone: the forwarded call is no hairpin

CONFIG = r"""#!KAMAILIO
debug=2
log_stderror=yes
log_prefix="{$mt $hdr(CSeq) $ci} "
memdbg=5
memlog=5
children=2
tcp_children=2
auto_aliases=no
dns=no
rev_dns=no
dns_try_ipv6=no
use_dns_cache=no
listen=udp:@ADDRESS@:@PORT@
listen=tcp:@ADDRESS@:@PORT@
tcp_accept_no_cl=yes
tcp_connection_lifetime=300

mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "tmx.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "sanity.so"
loadmodule "ctl.so"
loadmodule "htable.so"

modparam("ctl", "binrpc", "unix:@CONTROL@")
modparam("tm", "failure_reply_mode", 3)
modparam("tm", "fr_timer", 5000)
modparam("tm", "fr_inv_timer", 30000)
modparam("rr", "enable_full_lr", 0)
modparam("rr", "append_fromtag", 0)
modparam("registrar", "method_filtering", 1)
modparam("registrar", "max_expires", 3600)
modparam("usrloc", "db_mode", 0)
modparam("usrloc", "use_domain", 0)
modparam("usrloc", "timer_interval", 60)
modparam("sanity", "autodrop", 0)
modparam("htable", "htable", "policy=>size=4;")

request_route {
	xlog("L_INFO", "request $rm $ru from $pr:$si:$sp\n");
	route(REQINIT);
	if (is_method("CANCEL")) {
		if (t_check_trans()) {
			route(RELAY);
		}
		exit;
	}
	if (!is_method("ACK")) {
		if (t_precheck_trans()) {
			t_check_trans();
			exit;
		}
		t_check_trans();
	}
	route(WITHINDLG);
	remove_hf("Route");
	if (is_method("INVITE|SUBSCRIBE")) {
		record_route();
	}
	route(REGISTRAR);
	if ($rU == $null) {
		sl_send_reply("484", "Address Incomplete");
		exit;
	}
	route(FORWARD);
	route(LOCATION);
}

route[RELAY] {
	if (!t_relay()) {
		sl_reply_error();
	}
	exit;
}

route[REQINIT] {
	force_rport();
	if (!mf_process_maxfwd_header("10")) {
		sl_send_reply("483", "Too Many Hops");
		exit;
	}
	if (is_method("OPTIONS") && uri == myself && $rU == $null) {
		sl_send_reply("200", "Keepalive");
		exit;
	}
	if (!sanity_check("17895", "7")) {
		xlog("L_WARN", "malformed SIP request from $si:$sp\n");
		exit;
	}
}

route[WITHINDLG] {
	if (!has_totag()) return;
	# A PBX policy the tests switch on (kamcmd htable.seti policy refuse_reinvite 1): no re-INVITEs.
	if (is_method("INVITE") && $sht(policy=>refuse_reinvite) == 1) {
		sl_send_reply("488", "Not Acceptable Here");
		exit;
	}
	if (loose_route()) {
		if (is_method("NOTIFY")) {
			record_route();
		}
		route(RELAY);
		exit;
	}
	if (is_method("ACK")) {
		if (t_check_trans()) {
			route(RELAY);
		}
		exit;
	}
	sl_send_reply("404", "Not here");
	exit;
}

route[REGISTRAR] {
	if (!is_method("REGISTER")) return;
	if (!save("location")) {
		sl_reply_error();
	}
	exit;
}

# Call forwarding of one extension: a 302 naming another extension of this PBX.
route[FORWARD] {
	if (is_method("INVITE") && $rU == "@FORWARDED_USER@") {
		append_to_reply("Contact: <sip:@FORWARD_TARGET@@@ADDRESS@:@PORT@>\r\n");
		sl_send_reply("302", "Moved Temporarily");
		exit;
	}
}

route[LOCATION] {
	if (!lookup("location")) {
		t_newtran();
		send_reply("404", "Not Found");
		exit;
	}
	route(RELAY);
}
"""


@dataclass
class Kamailio:
    address: str
    workdir: Path
    port: int = PORT
    proc: subprocess.Popen[bytes] | None = None

    @property
    def control(self) -> Path:
        return self.workdir / "kamailio_ctl"

    @property
    def log_path(self) -> Path:
        return self.workdir / "kamailio.log"

    def config(self) -> str:
        text = CONFIG
        for marker, value in {
            "ADDRESS": self.address,
            "PORT": str(self.port),
            "CONTROL": str(self.control),
            "FORWARDED_USER": FORWARDED_USER,
            "FORWARD_TARGET": FORWARD_TARGET,
        }.items():
            text = text.replace(f"@{marker}@", value)
        return text

    def start(self, timeout: float = 15.0) -> Kamailio:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "kamailio.cfg"
        config.write_text(self.config())
        check = subprocess.run(["kamailio", "-c", "-f", str(config)], capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"kamailio -c rejected the config:\n{check.stderr[-3000:]}")
        self.proc = subprocess.Popen(
            ["kamailio", "-DD", "-E", "-f", str(config), "-Y", str(self.workdir), "-w", str(self.workdir),
             "-P", str(self.workdir / "kamailio.pid"), "-m", "64", "-M", "8"],
            stdout=subprocess.DEVNULL, stderr=self.log_path.open("ab"), stdin=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kamailio exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
                self.rpc("core.version")
                return self
            time.sleep(0.1)
        raise RuntimeError(f"kamailio did not answer on its ctl socket within {timeout} s:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_process(self.proc)

    def rpc(self, *command: str) -> str:
        return subprocess.run(
            ["kamcmd", "-s", f"unix:{self.control}", *command], capture_output=True, text=True, check=True, timeout=5
        ).stdout

    def contacts(self, user: str) -> list[str]:
        """The contacts the location table holds for `user` (from `ul.dump`)."""
        found: list[str] = []
        in_user = False
        for line in self.rpc("ul.dump").splitlines():
            key, _, value = line.strip().partition(":")
            if key == "AoR":
                in_user = value.strip() == user
            elif key == "Address" and in_user:
                found.append(value.strip())
        return found

    def forget(self, user: str) -> None:
        """Remove a user's bindings (a test starts from an empty table for its phones)."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self.rpc("ul.rm", "location", user)

    @contextlib.contextmanager
    def refusing_reinvites(self) -> Iterator[None]:
        """While inside, the PBX answers every re-INVITE 488 (a PBX that allows no hold or media change)."""
        self.rpc("htable.seti", "policy", "refuse_reinvite", "1")
        try:
            yield
        finally:
            self.rpc("htable.seti", "policy", "refuse_reinvite", "0")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
