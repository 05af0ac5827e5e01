"""Who may do what: users and roles, sessions, API tokens, TOTP for admins, login rate limits.

- Users live in one JSON file (mode 0600): name, role, scrypt hash (see `mgmt.passwords`), TOTP
  secret once enrolled. There is no default password: `first_run` creates `admin` with a random one,
  printed once, that must be changed at the first login (or takes `SBC_ADMIN_PASSWORD`).
- A browser gets a session: a random token in a cookie (HttpOnly, Secure, SameSite=Strict) with idle
  and absolute expiry, and a CSRF token it must echo in `X-CSRF-Token` on every state-changing request
  (synchronizer token: the cookie alone, which a cross-site form sends along, is not enough).
- Automation uses API tokens (`Authorization: Bearer sbc_<id>.<secret>`), stored as SHA-256 of the
  secret: it is 256 random bits, so a fast hash suffices (no KDF needed for non-guessable secrets).
- Failed logins are limited per source address (and per account from that address), never per account
  alone: an attacker cannot lock anyone out (see `LoginLimiter`).

Time is passed in (`now`, seconds since the epoch); nothing here sleeps or schedules.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

from mgmt import passwords, totp
from mgmt.store import atomic_write

MIN_PASSWORD = 12
MAX_PASSWORD = 1024
SESSION_IDLE_S = 15 * 60
SESSION_ABSOLUTE_S = 8 * 3600
TOKEN_PREFIX = "sbc_"


class Role(StrEnum):
    READ_ONLY = "read-only"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


_RANK = {Role.READ_ONLY: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


class AuthError(Exception):
    """A refused request: 401 (who are you), 403 (not allowed), 429 (slow down), 400/404/409."""

    def __init__(self, status: int, detail: str, *, field: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role
    password_hash: str
    created: float
    must_change_password: bool = False
    disabled: bool = False
    totp_secret: str | None = None  # set by enroll; required at login once `totp_enrolled`
    totp_enrolled: bool = False
    totp_last_step: int = -1  # a code works once

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role.value,
            "created": self.created,
            "must_change_password": self.must_change_password,
            "disabled": self.disabled,
            "totp_enrolled": self.totp_enrolled,
        }


@dataclass(frozen=True, slots=True)
class ApiToken:
    id: str
    user: str
    name: str
    digest: str  # SHA-256 of the secret part
    created: float
    expires: float | None = None

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "user": self.user, "name": self.name, "created": self.created, "expires": self.expires}


def valid_user_name(name: object) -> bool:
    return isinstance(name, str) and 1 <= len(name) <= 64 and all(c.isalnum() or c in "._-" for c in name)


def check_password_policy(password: object, field: str = "password") -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AuthError(422, f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters", field=field)
    return password


class UserStore:
    """The users file. Every change is written at once (atomically)."""

    def __init__(self, path: Path, *, scrypt_n: int = passwords.SCRYPT_N) -> None:
        self.path = path
        self.scrypt_n = scrypt_n
        self._users: dict[str, User] = {}
        self._tokens: dict[str, ApiToken] = {}
        self._dummy = passwords.dummy_hash(scrypt_n)
        self.load()

    def load(self) -> None:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        self._users = {u["name"]: User(**{**u, "role": Role(u["role"])}) for u in raw.get("users", [])}
        self._tokens = {t["id"]: ApiToken(**t) for t in raw.get("tokens", [])}

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = {
            "users": [{**asdict(u), "role": u.role.value} for u in self._users.values()],
            "tokens": [asdict(t) for t in self._tokens.values()],
        }
        atomic_write(self.path, json.dumps(data, indent=1), 0o600)

    # ---- users ---------------------------------------------------------------------------------
    def users(self) -> list[User]:
        return sorted(self._users.values(), key=lambda u: u.name)

    def get(self, name: str) -> User:
        user = self._users.get(name)
        if user is None:
            raise AuthError(404, f"there is no user {name!r}", field="name")
        return user

    def exists(self, name: str) -> bool:
        return name in self._users

    def is_admin(self, name: str) -> bool:
        """An enabled admin (the config store asks before a change to `management:`)."""
        user = self._users.get(name)
        return user is not None and user.role is Role.ADMIN and not user.disabled

    def create(self, name: str, role: Role, password: str, now: float, *, must_change: bool = False) -> User:
        if not valid_user_name(name):
            raise AuthError(422, "a user name has 1-64 letters, digits, '.', '_' or '-'", field="name")
        if name in self._users:
            raise AuthError(409, f"user {name!r} exists already", field="name")
        check_password_policy(password)
        user = User(name, role, passwords.hash_password(password, n=self.scrypt_n), now,
                    must_change_password=must_change)  # fmt: skip
        self._users[name] = user
        self._save()
        return user

    def _admins_left_without(self, name: str) -> int:
        return sum(1 for u in self._users.values() if u.role is Role.ADMIN and not u.disabled and u.name != name)

    def update(self, name: str, *, role: Role | None = None, disabled: bool | None = None) -> User:
        user = self.get(name)
        demoted = (role is not None and role is not Role.ADMIN) or disabled is True
        if user.role is Role.ADMIN and demoted and self._admins_left_without(name) == 0:
            raise AuthError(409, "this is the last enabled admin: create another admin first", field="role")
        user = replace(
            user,
            role=user.role if role is None else role,
            disabled=user.disabled if disabled is None else disabled,
        )
        self._users[name] = user
        self._save()
        return user

    def delete(self, name: str) -> None:
        user = self.get(name)
        if user.role is Role.ADMIN and self._admins_left_without(name) == 0:
            raise AuthError(409, "this is the last enabled admin: create another admin first", field="name")
        del self._users[name]
        self._tokens = {k: t for k, t in self._tokens.items() if t.user != name}
        self._save()

    def set_password(self, name: str, password: str, *, must_change: bool = False) -> User:
        check_password_policy(password)
        user = replace(
            self.get(name),
            password_hash=passwords.hash_password(password, n=self.scrypt_n),
            must_change_password=must_change,
        )
        self._users[name] = user
        self._save()
        return user

    def set_must_change(self, name: str, value: bool) -> User:
        user = replace(self.get(name), must_change_password=value)
        self._users[name] = user
        self._save()
        return user

    def check_password(self, name: str, password: str) -> User | None:
        user = self._users.get(name)
        if user is None:
            passwords.verify_password(password, self._dummy)  # same cost as a real check
            return None
        return user if passwords.verify_password(password, user.password_hash) else None

    # ---- TOTP ----------------------------------------------------------------------------------
    def totp_enroll(self, name: str) -> str:
        """A new secret, not yet required: `totp_activate` with a code from it turns it on."""
        secret = totp.new_secret()
        self._users[name] = replace(self.get(name), totp_secret=secret, totp_enrolled=False, totp_last_step=-1)
        self._save()
        return secret

    def totp_check(self, name: str, code: str, now: float) -> bool:
        user = self.get(name)
        if user.totp_secret is None:
            return False
        step = totp.verify(totp.secret_key(user.totp_secret), code, now, after_step=user.totp_last_step)
        if step is None:
            return False
        self._users[name] = replace(user, totp_last_step=step)
        self._save()
        return True

    def totp_activate(self, name: str, code: str, now: float) -> bool:
        if not self.totp_check(name, code, now):
            return False
        self._users[name] = replace(self.get(name), totp_enrolled=True)
        self._save()
        return True

    def totp_disable(self, name: str) -> User:
        user = replace(self.get(name), totp_secret=None, totp_enrolled=False, totp_last_step=-1)
        self._users[name] = user
        self._save()
        return user

    # ---- API tokens ----------------------------------------------------------------------------
    def tokens(self) -> list[ApiToken]:
        return sorted(self._tokens.values(), key=lambda t: t.created)

    def create_token(self, user: str, name: str, now: float, expires_in_s: int | None = None) -> tuple[ApiToken, str]:
        self.get(user)
        token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        token = ApiToken(token_id, user, name, _digest(secret), now, now + expires_in_s if expires_in_s else None)
        self._tokens[token_id] = token
        self._save()
        return token, f"{TOKEN_PREFIX}{token_id}.{secret}"

    def revoke_token(self, token_id: str) -> ApiToken:
        token = self._tokens.pop(token_id, None)
        if token is None:
            raise AuthError(404, f"there is no token {token_id!r}", field="id")
        self._save()
        return token

    def check_token(self, presented: str, now: float) -> tuple[User, ApiToken] | None:
        if not presented.startswith(TOKEN_PREFIX) or "." not in presented:
            return None
        token_id, _, secret = presented[len(TOKEN_PREFIX) :].partition(".")
        token = self._tokens.get(token_id)
        if token is None or not hmac.compare_digest(token.digest, _digest(secret)):
            return None
        if token.expires is not None and now >= token.expires:
            return None
        user = self._users.get(token.user)
        if user is None or user.disabled:
            return None
        return user, token


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# ---- sessions ------------------------------------------------------------------------------------
@dataclass(slots=True)
class Session:
    token: str
    user: str
    csrf: str
    created: float
    last_seen: float
    source: str


class SessionTable:
    def __init__(self, idle_s: int = SESSION_IDLE_S, absolute_s: int = SESSION_ABSOLUTE_S) -> None:
        self.idle_s = idle_s
        self.absolute_s = absolute_s
        self._sessions: dict[str, Session] = {}

    def create(self, user: str, source: str, now: float) -> Session:
        self._expire(now)
        session = Session(secrets.token_urlsafe(32), user, secrets.token_urlsafe(32), now, now, source)
        self._sessions[session.token] = session
        return session

    def get(self, token: str, now: float) -> Session | None:
        session = self._sessions.get(token)
        if session is None:
            return None
        if now - session.last_seen > self.idle_s or now - session.created > self.absolute_s:
            del self._sessions[token]
            return None
        session.last_seen = now
        return session

    def drop(self, token: str) -> None:
        self._sessions.pop(token, None)

    def drop_user(self, user: str, keep: str | None = None) -> None:
        """End a user's sessions (password change, role change, deletion), maybe keeping the current one."""
        for token in [t for t, s in self._sessions.items() if s.user == user and t != keep]:
            del self._sessions[token]

    def _expire(self, now: float) -> None:
        for token in [t for t, s in self._sessions.items()
                      if now - s.last_seen > self.idle_s or now - s.created > self.absolute_s]:  # fmt: skip
            del self._sessions[token]


def csrf_ok(session: Session, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(session.csrf.encode(), presented.encode())


# ---- login rate limiting -------------------------------------------------------------------------
@dataclass(slots=True)
class _Window:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0

    def count(self, now: float, window_s: float) -> int:
        while self.failures and self.failures[0] <= now - window_s:
            self.failures.popleft()
        return len(self.failures)


class LoginLimiter:
    """Failed logins slow down the address they come from, never the account for everyone.

    - One address and one account: `pair_failures` failures within `window_s` refuse that account from
      that address for `lock_s` (429). The same account from any other address is not affected, so
      nobody can lock the admin out by guessing at it.
    - One address, any accounts: `address_failures` failures (higher: several people may sit behind
      one NAT) refuse that address for `lock_s`, whatever account it names.
    - One account, many addresses: once `account_failures` failures within `window_s` hit one account,
      it is "under attack": an address with any failure on record within the window is refused for it
      at once, so a spread-out guesser gets one guess per address and window. An address with a clean
      record is never refused this way: the right password (and code) from it always works.
    """

    def __init__(
        self,
        *,
        pair_failures: int = 5,
        address_failures: int = 20,
        account_failures: int = 10,
        window_s: float = 900.0,
        lock_s: float = 900.0,
        max_keys: int = 10_000,
    ) -> None:
        self.pair_failures = pair_failures
        self.address_failures = address_failures
        self.account_failures = account_failures
        self.window_s = window_s
        self.lock_s = lock_s
        self.max_keys = max_keys
        self._pairs: dict[tuple[str, str], _Window] = {}
        self._addresses: dict[str, _Window] = {}
        self._accounts: dict[str, _Window] = {}

    def retry_after(self, user: str, address: str, now: float) -> int | None:
        """Seconds `address` must wait before trying `user` again; None: it may try now."""
        waits = [
            w.locked_until - now
            for w in (self._pairs.get((user, address)), self._addresses.get(address))
            if w is not None and w.locked_until > now
        ]
        if waits:
            return int(max(waits)) + 1
        account = self._accounts.get(user)
        if account is not None and account.count(now, self.window_s) >= self.account_failures:
            seen = self._addresses.get(address)
            if seen is not None and seen.count(now, self.window_s) > 0:
                return int(seen.failures[-1] + self.window_s - now) + 1
        return None

    def failed(self, user: str, address: str, now: float) -> None:
        if len(self._pairs) + len(self._addresses) + len(self._accounts) >= self.max_keys:
            self._forget_idle(now)  # bounded memory under a spray of names or addresses
        self._count_failure(self._pairs.setdefault((user, address), _Window()), now, self.pair_failures)
        self._count_failure(self._addresses.setdefault(address, _Window()), now, self.address_failures)
        self._count_failure(self._accounts.setdefault(user, _Window()), now, None)

    def _count_failure(self, window: _Window, now: float, lock_at: int | None) -> None:
        window.failures.append(now)
        if lock_at is not None and window.count(now, self.window_s) >= lock_at:
            window.locked_until = now + self.lock_s
            window.failures.clear()  # after the lock, a fresh start

    def succeeded(self, user: str, address: str) -> None:
        # Only this pair is forgiven: knowing one account's password must not wipe an address's record.
        self._pairs.pop((user, address), None)

    def _forget_idle(self, now: float) -> None:
        def live(w: _Window) -> bool:
            return w.locked_until > now or w.count(now, self.window_s) > 0

        self._pairs = {k: w for k, w in self._pairs.items() if live(w)}
        self._addresses = {k: w for k, w in self._addresses.items() if live(w)}
        self._accounts = {k: w for k, w in self._accounts.items() if live(w)}


# ---- login ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LoginResult:
    session: Session
    user: User


class Authenticator:
    def __init__(self, users: UserStore, sessions: SessionTable, limiter: LoginLimiter) -> None:
        self.users = users
        self.sessions = sessions
        self.limiter = limiter

    def login(self, name: str, password: str, code: str | None, source: str, now: float) -> LoginResult:
        wait = self.limiter.retry_after(name, source, now)
        if wait is not None:
            raise AuthError(429, f"too many failed logins: try again in {wait} s", retry_after=wait)
        user = self.users.check_password(name, password)
        if user is None or user.disabled:
            self.limiter.failed(name, source, now)
            raise AuthError(401, "wrong user name or password")
        if user.totp_enrolled:
            if not code:
                # Not a failure: the UI asks for the code and tries again.
                raise AuthError(401, "this account needs a TOTP code", field="totp")
            if not self.users.totp_check(name, code, now):
                self.limiter.failed(name, source, now)
                raise AuthError(401, "wrong or already used TOTP code", field="totp")
        self.limiter.succeeded(name, source)
        if passwords.needs_rehash(user.password_hash, n=self.users.scrypt_n):
            user = self.users.set_password(name, password, must_change=user.must_change_password)
        return LoginResult(self.sessions.create(name, source, now), user)


def first_run(
    users: UserStore,
    now: float,
    *,
    env: dict[str, str] | None = None,
    out: TextIO | None = None,
    make_password: Callable[[], str] = lambda: secrets.token_urlsafe(15),
) -> str | None:
    """With no users yet: create `admin`. Returns how it was done, or None if users exist."""
    if users.users():
        return None
    env = dict(os.environ) if env is None else env
    given = env.get("SBC_ADMIN_PASSWORD")
    if given:
        users.create("admin", Role.ADMIN, check_password_policy(given, "SBC_ADMIN_PASSWORD"), now)
        return "from SBC_ADMIN_PASSWORD"
    password = make_password()
    users.create("admin", Role.ADMIN, password, now, must_change=True)
    out = out or sys.stdout
    bar = "=" * 72
    out.write(
        f"\n{bar}\n  FIRST START: an administrator account was created.\n\n"
        f"    user:     admin\n    password: {password}\n\n"
        "  This password is shown ONCE and is not stored (only its hash is).\n"
        "  It must be changed at the first login.\n"
        f"{bar}\n\n"
    )
    with contextlib.suppress(OSError, ValueError):
        out.flush()
    return "generated"
