"""Fetch a provisioning URL in a child process that holds no privilege.

The first boot runs as root; what a provisioning server sends back (and the TLS and HTTP parsing of
it) is handled by `python -m hw.appliance.fetch` started through setpriv as `nobody`: its own uid and
gid, no supplementary groups, no capabilities, no_new_privs. The request (URL and the CA to trust)
goes in on stdin as JSON, the body comes back on stdout, the reason of a failure on stderr.
"""

from __future__ import annotations

import json
import os
import pwd
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

FETCH_USER = "nobody"
MAX_BODY_BYTES = 1 << 20
ATTEMPTS, PAUSE_S, TIMEOUT_S = 10, 3.0, 10.0


def _package_root() -> str:
    """The directory `hw` is imported from, for the child's PYTHONPATH (site-packages in the image)."""
    return str(Path(__file__).resolve().parents[2])


def unprivileged_argv(user: str | None) -> list[str]:
    """The child's command line: through setpriv as `user` when one is given (the first boot: root)."""
    child = [sys.executable, "-m", "hw.appliance.fetch"]
    if user is None:
        return child
    entry = pwd.getpwnam(user)
    return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups", "--no-new-privs",
            "--inh-caps=-all", "--bounding-set=-all", *child]  # fmt: skip


def fetch_as(user: str | None, url: str, ca_pem: bytes | None, *, attempts: int = ATTEMPTS,
             pause_s: float = PAUSE_S) -> bytes:  # fmt: skip
    """The body at `url`, fetched by an unprivileged child (as `user`; None: as the caller, in tests).
    Raises OSError with the child's reason."""
    request = {"url": url, "ca_pem": ca_pem.decode() if ca_pem else None, "attempts": attempts, "pause_s": pause_s}
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": _package_root(), "LC_ALL": "C.UTF-8"}
    budget = attempts * (TIMEOUT_S + pause_s) + 30
    try:
        done = subprocess.run(unprivileged_argv(user), input=json.dumps(request).encode(), capture_output=True,
                              env=env, cwd="/", timeout=budget, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise OSError(f"no answer within {budget:.0f} s") from None
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise OSError(reason[-1] if reason else f"the fetcher failed with exit status {done.returncode}")
    if len(done.stdout) > MAX_BODY_BYTES:
        raise OSError(f"larger than {MAX_BODY_BYTES} bytes")
    return done.stdout


def _context(url: str, ca_pem: str | None) -> ssl.SSLContext | None:
    """TLS checked against the configured CA alone when there is one, else the system's CAs."""
    if not url.startswith("https://"):
        return None
    if ca_pem:
        return ssl.create_default_context(cadata=ca_pem)
    return ssl.create_default_context()


def fetch(url: str, ca_pem: str | None, attempts: int, pause_s: float) -> bytes:
    """GET `url` (http or https); retried while the network comes up, not after a definite answer."""
    if not url.startswith(("http://", "https://")):
        raise ValueError("only http:// and https:// URLs are fetched")
    context = _context(url, ca_pem)
    last: Exception | None = None
    for _ in range(max(1, attempts)):
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S, context=context) as response:
                body: bytes = response.read(MAX_BODY_BYTES + 1)
            if len(body) > MAX_BODY_BYTES:
                raise ValueError(f"larger than {MAX_BODY_BYTES} bytes")
            return body
        except urllib.error.HTTPError as exc:
            raise ValueError(f"the server answered {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ssl.SSLError):  # a definite answer: asking again changes nothing
                raise ValueError(f"TLS failed: {exc.reason}") from None
            last = exc
            time.sleep(pause_s)
        except (OSError, ValueError) as exc:
            last = exc
            if isinstance(exc, ValueError):
                break
            time.sleep(pause_s)
    assert last is not None
    raise last


def main() -> int:
    request = json.loads(sys.stdin.read())
    try:
        body = fetch(str(request["url"]), request.get("ca_pem"), int(request["attempts"]), float(request["pause_s"]))
    except (OSError, ValueError) as exc:
        print(f"cannot fetch {request['url']}: {exc}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(body)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main())
