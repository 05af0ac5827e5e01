"""First boot on a fresh state partition (sbc-firstboot.service, before sbc and sbc-mgmt).

The state partition is made by systemd-repart just before (rootfs/usr/lib/repart.d/50-state.conf);
this fills it:

1. hostname: `sbc.hostname=` on the kernel command line or the `sbc.hostname` credential, else
   `sbc-` and six hex digits of the WAN MAC (stable per box), kept on the state partition and applied
   at every boot (a new root slot starts without it);
2. the active config: fetched from a provisioning URL (`sbc.provision=URL` on the kernel command line
   or the `sbc.provision_url` credential, optionally pinned with `sbc.provision_sha256=`; without
   either, and only when the operator opted in with `sbc.provision_dhcp=yes`, the https URL the
   WAN's DHCP server gives in answer to a DHCPINFORM, see dhcpinform.py), checked by the rules of
   provisioning.py (https, CA, pin, signature, state directories) and validated like any config;
   fetched by an unprivileged child (fetch.py); else, or when that fails, the image's default with
   fresh SNMPv3 keys;
3. keys: the management TLS certificate (self-signed, P-256) and the SNMPv3 keys;
4. the admin credential: from the `sbc.admin_password` credential, else generated and shown once on
   the console (with the TLS fingerprint and the SNMPv3 keys), never written to the journal.

Credentials reach the unit with ImportCredential=sbc.* (SMBIOS type 11, `systemd.set_credential=`,
or a provisioning system). A factory reset empties the state partition, and this runs again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pwd
import secrets
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hw.appliance import dhcpinform
from hw.appliance.console import banner, show_on_console
from hw.appliance.dhcpinform import Found
from hw.appliance.fetch import FETCH_USER, fetch_as
from hw.appliance.provisioning import (
    PROVISIONING_CA_FILE,
    PROVISIONING_KEYS_DIR,
    SIGNATURE_SUFFIX,
    STATE_ROOTS,
    ProvisioningError,
    dhcp_url_refusal,
    is_inside,
    load_public_keys,
    state_dir_problems,
    verify_signature,
)
from hw.firmware.osinfo import booted_version

log = logging.getLogger(__name__)

SYSTEM_DIR = Path("/var/lib/sbc-system")
CONFIG_DIR = Path("/var/lib/sbc-config")
DEFAULT_TEMPLATE = Path("/usr/lib/sbc/sbc.yaml")
SERVICE_USER = "sbc"  # sbc.service: the SIP and media plane, the process that faces the networks
MGMT_USER = "sbc-mgmt"  # sbc-mgmt.service: API, web UI, SNMP; group sbc, to reach the SBC's socket and files
WAN_INTERFACE = "wan0"


@dataclass(frozen=True, slots=True)
class Provisioning:
    """What the box was told from outside: kernel command line first, then credentials."""

    hostname: str | None = None
    url: str | None = None
    sha256: str | None = None
    admin_password: str | None = None
    dhcp: bool = False  # ask the WAN's DHCP server for a URL when none was given (opt in)
    ca_pem: bytes | None = None  # the CA an https provisioning server's certificate must chain to
    key_pems: tuple[bytes, ...] = ()  # provisioning keys: when any, fetched configs must be signed

    @classmethod
    def gather(
        cls, cmdline: str | None = None, credentials: Path | None = None,
        keys_dir: Path = PROVISIONING_KEYS_DIR, ca_file: Path = PROVISIONING_CA_FILE,
    ) -> Provisioning:  # fmt: skip
        if cmdline is None:
            try:
                cmdline = Path("/proc/cmdline").read_text()
            except OSError:
                cmdline = ""
        args: dict[str, str] = {}
        for word in cmdline.split():
            key, sep, value = word.partition("=")
            if sep and key.startswith("sbc."):
                args[key] = value
        cred_dir = credentials or (Path(os.environ["CREDENTIALS_DIRECTORY"]) if "CREDENTIALS_DIRECTORY" in os.environ
                                   else None)  # fmt: skip

        def credential(name: str) -> str | None:
            if cred_dir is None:
                return None
            try:
                return (cred_dir / name).read_text().strip() or None
            except OSError:
                return None

        # A credential's key and the image's keys all count: any of them may sign the config.
        key_files = [_read_bytes(cred_dir / "sbc.provision_key" if cred_dir else None),
                     *(_read_bytes(p) for p in sorted(keys_dir.glob("*.pem")))]  # fmt: skip
        return cls(
            hostname=args.get("sbc.hostname") or credential("sbc.hostname"),
            url=args.get("sbc.provision") or credential("sbc.provision_url"),
            sha256=args.get("sbc.provision_sha256") or credential("sbc.provision_sha256"),
            admin_password=credential("sbc.admin_password"),
            dhcp=(args.get("sbc.provision_dhcp") or credential("sbc.provision_dhcp") or "no").lower()
            in ("yes", "1", "true", "on"),
            ca_pem=_read_bytes(cred_dir / "sbc.provision_ca" if cred_dir else None) or _read_bytes(ca_file),
            key_pems=tuple(pem for pem in key_files if pem),
        )


def _read_bytes(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes().strip() or None
    except OSError:
        return None


@dataclass
class FirstBoot:
    system_dir: Path = SYSTEM_DIR
    config_dir: Path = CONFIG_DIR
    template: Path = DEFAULT_TEMPLATE
    provisioning: Provisioning = field(default_factory=Provisioning.gather)
    # (URL, CA PEM or None) -> body; an unprivileged child does it when this runs as root.
    fetch: Callable[[str, bytes | None], bytes] = field(
        default=lambda url, ca: fetch_as(FETCH_USER if os.geteuid() == 0 else None, url, ca))
    # The only directories this (root) may create for the services and hand over to them.
    state_roots: tuple[Path, ...] = STATE_ROOTS
    chown: Callable[[Path, int, int], None] = field(default=lambda p, u, g: os.chown(p, u, g, follow_symlinks=False))
    discover: Callable[[], Found | None] = field(default=lambda: dhcpinform.ask(WAN_INTERFACE))
    show: Callable[[str], object] = show_on_console
    owner: str | None = SERVICE_USER  # chown what the services read; None in tests
    mgmt_owner: str = MGMT_USER
    set_hostname: Callable[[str], None] = field(default=lambda name: apply_hostname(name))
    etc_hostname: Path = Path("/etc/hostname")

    @property
    def marker(self) -> Path:
        return self.system_dir / "provisioned.json"

    @property
    def config_path(self) -> Path:
        return self.config_dir / "sbc.yaml"

    def run(self) -> bool:
        """Provision a fresh state partition; returns False if it was provisioned before."""
        self.system_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
        if self.marker.exists():
            self.apply_every_boot()
            return False
        hostname = self._hostname()
        (self.system_dir / "hostname").write_text(hostname + "\n")
        self.set_hostname(hostname)
        text, source, snmp_keys = self._config()
        from sbc.config.loader import load_config

        self.config_dir.mkdir(parents=True, exist_ok=True)
        _write_private(self.config_path, text.encode(), 0o640)
        config = load_config(self.config_path)
        # Checked on the fetched config already; the image's own default must obey it too.
        problems = state_dir_problems(self._state_dirs(config), self.state_roots)
        if problems:
            raise ProvisioningError("\n".join(problems))
        state_dir = config.state_dir
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        mgmt_dir = config.management_dir
        mgmt_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fingerprint = self._tls(config)
        admin = self._admin(config)
        # The SBC reads the config that management writes (group sbc); management's own files (users,
        # TLS key) are its alone. Where both share a directory (a config without management.state_dir),
        # the SBC's user owns it all, as one user then runs both.
        self._chown(state_dir, self.owner)
        if mgmt_dir != state_dir:
            self._chown(mgmt_dir, self.mgmt_owner)
        self._chown(self.config_dir, self.mgmt_owner if mgmt_dir != state_dir else self.owner)
        lines = [f"hostname:  {hostname}", f"firmware:  {booted_version()}", f"config:    {source}"]
        http = config.management.http
        lines.append(f"web UI:    https://{_url_host(str(http.address))}:{http.port}/")
        if fingerprint:
            lines.append(f"TLS SHA-256 fingerprint: {fingerprint}")
        if admin:
            lines += ["", "user:      admin", f"password:  {admin}",
                      "(shown once, only its hash is kept; change it at the first login)"]  # fmt: skip
        if snmp_keys:
            user, auth, priv = snmp_keys
            lines += ["", f"SNMPv3 user {user}: SHA-256 auth key {auth}", f"                 AES-128 priv key {priv}"]
        self.show(banner("FIRST BOOT: this SBC is ready", lines))
        self.marker.write_text(json.dumps({"time": time.time(), "hostname": hostname, "config": source,
                                           "firmware": booted_version()}, indent=2) + "\n")  # fmt: skip
        log.info("first boot done: hostname %s, config from %s", hostname, source)
        return True

    def apply_every_boot(self) -> None:
        """The hostname lives on in the state partition: a slot that has one (set here at its first boot,
        or by the operator through the API since) records it there; a slot without one (just installed
        by an update) gets it from there."""
        stored = self.system_dir / "hostname"
        current = ""
        with contextlib.suppress(OSError):
            current = self.etc_hostname.read_text().strip()
        if current:
            with contextlib.suppress(OSError):
                if stored.read_text().strip() != current:
                    log.info("hostname %s (set on this slot) kept for the next slot", current)
            stored.write_text(current + "\n")
            return
        with contextlib.suppress(OSError):
            name = stored.read_text().strip()
            if name:
                self.set_hostname(name)

    # ---- the steps ---------------------------------------------------------------------------------
    def _hostname(self) -> str:
        given = self.provisioning.hostname
        if given and _valid_hostname(given):
            return given
        if given:
            log.warning("ignoring the provisioned hostname %r: not a valid host name", given)
        try:
            mac = Path(f"/sys/class/net/{WAN_INTERFACE}/address").read_text().strip()
            suffix = mac.replace(":", "")[-6:]
        except OSError:
            suffix = secrets.token_hex(3)
        return f"sbc-{suffix}"

    def _config(self) -> tuple[str, str, tuple[str, str, str] | None]:
        """(YAML text, where it came from, generated SNMPv3 keys or None)."""
        url, source = self.provisioning.url, self.provisioning.url
        if not url and self.provisioning.dhcp:
            try:
                found = self.discover()
            except OSError as exc:  # port 68 taken, no such interface: as if no server answered
                log.warning("cannot ask DHCP for a provisioning URL: %s", exc)
                found = None
            if found is not None:
                url, source = found.url, f"{found.url} (DHCP option {found.option} from {found.server})"
                log.info("DHCP server %s gave the provisioning URL %s (option %d)", found.server, found.url,
                         found.option)  # fmt: skip
                p = self.provisioning
                refusal = dhcp_url_refusal(found.url, has_ca=p.ca_pem is not None, has_pin=bool(p.sha256),
                                           has_key=bool(p.key_pems))  # fmt: skip
                if refusal:
                    log.error("not provisioning from %s: %s", source, refusal)
                    self.show(banner("PROVISIONING REFUSED: running the default config", [f"{source}:", refusal]))
                    url = None
        if url:
            try:
                return self._provisioned(url), source or url, None
            except ProvisioningError as exc:
                log.error("provisioning from %s failed: %s; using the default config", url, exc)
                lines = [f"{url}:", *str(exc).splitlines()]
                self.show(banner("PROVISIONING FAILED: running the default config", lines))
        user = "sbcadmin"
        auth, priv = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        text = self.template.read_text().replace("@SNMP_AUTH_KEY@", auth).replace("@SNMP_PRIV_KEY@", priv)
        return text, "default", (user, auth, priv)

    def _provisioned(self, url: str) -> str:
        from sbc.config.loader import load_config
        from sbc.yamlsource import ConfigError

        p = self.provisioning
        keys = load_public_keys(p.key_pems)
        try:
            body = self.fetch(url, p.ca_pem)
            signature = self.fetch(url + SIGNATURE_SUFFIX, p.ca_pem) if keys else b""
        except (OSError, ValueError) as exc:
            raise ProvisioningError(f"cannot fetch it: {exc}") from None
        if p.sha256 and hashlib.sha256(body).hexdigest() != p.sha256.lower():
            raise ProvisioningError("its SHA-256 differs from sbc.provision_sha256")
        if keys:
            verify_signature(body, signature, keys)
        try:
            text = body.decode()
        except UnicodeDecodeError:
            raise ProvisioningError("it is not UTF-8 text") from None
        with tempfile.TemporaryDirectory() as tmp:
            candidate = Path(tmp) / "provisioned.yaml"
            candidate.write_text(text)
            try:
                config = load_config(candidate)
            except ConfigError as exc:
                raise ProvisioningError("\n".join(str(p) for p in exc.problems)) from None
        problems = state_dir_problems(self._state_dirs(config), self.state_roots)
        if problems:
            raise ProvisioningError("\n".join(problems))
        return text

    @staticmethod
    def _state_dirs(config: object) -> dict[str, Path]:
        """The directories the first boot creates as root and hands to the services, by config key."""
        from sbc.config.model import SbcConfig

        assert isinstance(config, SbcConfig)
        return {"sbc.state_dir": config.state_dir, "management.state_dir": config.management_dir,
                "management.users_file": config.management.users_path(config.state_dir).parent}  # fmt: skip

    def _tls(self, config: object) -> str | None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes

        from mgmt.tls import ensure_self_signed
        from sbc.config.model import SbcConfig

        assert isinstance(config, SbcConfig)
        http = config.management.http
        if http.tls_certificate is not None:
            cert_path = http.tls_certificate
        else:
            cert_path, _ = ensure_self_signed(config.management_dir / "tls", str(http.address))
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        return cert.fingerprint(hashes.SHA256()).hex(":").upper()

    def _admin(self, config: object) -> str | None:
        """Creates `admin`; returns the generated password to show, or None when it was provisioned."""
        from mgmt.auth import UserStore, first_run
        from sbc.config.model import SbcConfig

        assert isinstance(config, SbcConfig)
        users = UserStore(config.management.users_path(config.state_dir))
        shown: list[str] = []
        env = {"SBC_ADMIN_PASSWORD": self.provisioning.admin_password} if self.provisioning.admin_password else {}

        def make_password() -> str:
            shown.append(secrets.token_urlsafe(15))
            return shown[-1]

        # first_run prints its own notice to `out`; the console banner replaces it, so it goes nowhere.
        import io

        first_run(users, time.time(), env=env, out=io.StringIO(), make_password=make_password)
        return shown[0] if shown else None

    def _chown(self, tree: Path, user: str | None) -> None:
        """`tree` to `user` and the SBC's group."""
        if self.owner is None or user is None:
            return
        if not is_inside(tree, (*self.state_roots, self.config_dir)):
            raise ProvisioningError(f"refusing to hand {tree} to {user}: not one of the image's state directories")
        uid = pwd.getpwnam(user).pw_uid
        gid = pwd.getpwnam(self.owner).pw_gid
        for path in [tree, *tree.rglob("*")]:
            self.chown(path, uid, gid)


def _valid_hostname(name: str) -> bool:
    labels = name.split(".")
    return 0 < len(name) <= 63 and all(
        label and len(label) <= 63 and label[0].isalnum() and all(c.isalnum() or c == "-" for c in label)
        for label in labels
    )


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _write_private(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    tmp.replace(path)


def apply_hostname(name: str) -> None:
    """Through hostnamed when it runs (it writes /etc/hostname of this slot), else directly."""
    done = subprocess.run(["hostnamectl", "set-hostname", name], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        log.warning("hostnamectl failed (%s); setting the kernel hostname only", done.stderr.strip())
        with contextlib.suppress(OSError):
            socket.sethostname(name)
