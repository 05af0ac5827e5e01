"""Auth: scrypt hashes, RFC 6238 TOTP vectors, login limits, sessions, API tokens, first run."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from mgmt import passwords, totp
from mgmt.audit import AuditLog
from mgmt.auth import (
    Authenticator,
    AuthError,
    LoginLimiter,
    Role,
    SessionTable,
    UserStore,
    csrf_ok,
    first_run,
)

FAST_N = 2**10  # tests only; the default cost is 2**15
PW = "correct horse battery"


# ---- password hashing ----------------------------------------------------------------------------
def test_scrypt_hash_verifies_and_is_salted() -> None:
    a = passwords.hash_password(PW, n=FAST_N)
    b = passwords.hash_password(PW, n=FAST_N)
    assert a != b and a.startswith(f"scrypt${FAST_N}$8$1$")
    assert passwords.verify_password(PW, a) and passwords.verify_password(PW, b)
    assert not passwords.verify_password(PW + "x", a)
    assert not passwords.verify_password(PW, "garbage") and not passwords.verify_password(PW, "md5$1$2$3$4$5")
    assert passwords.needs_rehash(a) and not passwords.needs_rehash(a, n=FAST_N)


def test_scrypt_matches_rfc_7914_vector() -> None:
    # RFC 7914 §12, third vector: P="pleaseletmein", S="SodiumChloride", N=16384, r=8, p=1, dkLen=64
    import hashlib

    derived = hashlib.scrypt(b"pleaseletmein", salt=b"SodiumChloride", n=16384, r=8, p=1, dklen=64)
    assert derived.hex().startswith("7023bdcb3afd7348461c06cd81fd38ebfda8fbba904f8e3ea9b543f6545da1f2")


# ---- TOTP: RFC 6238 Appendix B ---------------------------------------------------------------------
SEED_SHA1 = b"12345678901234567890"
SEED_SHA256 = b"12345678901234567890123456789012"
SEED_SHA512 = b"1234567890123456789012345678901234567890123456789012345678901234"
RFC6238 = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]


@pytest.mark.parametrize(("t", "sha1", "sha256", "sha512"), RFC6238)
def test_totp_rfc6238_vectors(t: int, sha1: str, sha256: str, sha512: str) -> None:
    assert totp.totp(SEED_SHA1, t, digits=8, digest="sha1") == sha1
    assert totp.totp(SEED_SHA256, t, digits=8, digest="sha256") == sha256
    assert totp.totp(SEED_SHA512, t, digits=8, digest="sha512") == sha512


def test_hotp_rfc4226_vectors() -> None:
    expected = ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"]
    assert [totp.hotp(SEED_SHA1, i) for i in range(10)] == expected


def test_totp_verify_window_and_replay() -> None:
    key = SEED_SHA1
    now = 1111111111.0
    code = totp.totp(key, now)
    step = totp.verify(key, code, now)
    assert step == totp.time_step(now)
    assert totp.verify(key, code, now + 30) == step  # one step of drift is fine
    assert totp.verify(key, code, now + 95) is None  # three steps later it is not
    assert totp.verify(key, code, now, after_step=step) is None  # used once already
    assert totp.verify(key, "12345", now) is None and totp.verify(key, "abcdef", now) is None


def test_secret_round_trip_and_uri() -> None:
    secret = totp.new_secret()
    assert len(totp.secret_key(secret)) == 20
    assert totp.otpauth_uri(secret, "alice").startswith("otpauth://totp/EdgeSBC%3Aalice?secret=")


# ---- users, login, TOTP at login, limits -----------------------------------------------------------
@pytest.fixture
def users(tmp_path: Path) -> UserStore:
    store = UserStore(tmp_path / "users.json", scrypt_n=FAST_N)
    store.create("admin", Role.ADMIN, PW, 0.0)
    store.create("viewer", Role.READ_ONLY, PW, 0.0)
    return store


@pytest.fixture
def auth(users: UserStore) -> Authenticator:
    limiter = LoginLimiter(pair_failures=3, address_failures=5, account_failures=6, lock_s=60)
    return Authenticator(users, SessionTable(), limiter)


def test_users_file_holds_no_password(users: UserStore) -> None:
    text = users.path.read_text()
    assert PW not in text and "scrypt$" in text
    assert oct(users.path.stat().st_mode & 0o777) == "0o600"
    again = UserStore(users.path, scrypt_n=FAST_N)
    assert [u.name for u in again.users()] == ["admin", "viewer"]


def test_login_and_wrong_password(auth: Authenticator) -> None:
    result = auth.login("admin", PW, None, "127.0.0.1", 100.0)
    assert result.user.role is Role.ADMIN and auth.sessions.get(result.session.token, 101.0) is not None
    with pytest.raises(AuthError) as info:
        auth.login("admin", "wrong password!", None, "127.0.0.1", 100.0)
    assert info.value.status == 401
    with pytest.raises(AuthError):
        auth.login("nobody", PW, None, "127.0.0.1", 100.0)


def test_bad_logins_lock_the_address_not_the_account(auth: Authenticator) -> None:
    for i in range(3):
        with pytest.raises(AuthError):
            auth.login("admin", "nope-nope-nope", None, "127.0.0.66", 100.0 + i)
    with pytest.raises(AuthError) as info:
        auth.login("admin", PW, None, "127.0.0.66", 104.0)  # right password, but from the guessing address
    assert info.value.status == 429 and info.value.retry_after is not None and 0 < info.value.retry_after <= 61
    assert auth.login("admin", PW, None, "127.0.0.9", 104.0)  # the admin elsewhere is not locked out
    assert auth.login("viewer", PW, None, "127.0.0.66", 104.0)  # other accounts from there are not either
    assert auth.login("admin", PW, None, "127.0.0.66", 170.0)  # the lock ends


def test_an_attack_from_many_addresses_never_refuses_a_clean_address(auth: Authenticator, users: UserStore) -> None:
    secret = users.totp_enroll("admin")
    now = 1_700_000_000.0
    assert users.totp_activate("admin", totp.totp(totp.secret_key(secret), now), now)
    for i in range(20):  # far beyond every limit, one guess per address
        with pytest.raises(AuthError) as info:
            auth.login("admin", "nope-nope-nope", None, f"127.0.1.{i}", now + 1 + i)
        assert info.value.status in (401, 429)
    # The account is under attack: an address that guessed wrong once is refused at once ...
    with pytest.raises(AuthError) as info:
        auth.login("admin", "another-guess!", None, "127.0.1.3", now + 30)
    assert info.value.status == 429
    # ... but the right password and code from a clean address always work.
    code = totp.totp(totp.secret_key(secret), now + 60)
    assert auth.login("admin", PW, code, "127.0.0.9", now + 60).user.name == "admin"


def test_lockout_per_address(auth: Authenticator) -> None:
    for i in range(5):
        with pytest.raises(AuthError):
            auth.login(f"guess{i}", "nope-nope-nope", None, "127.0.0.66", 100.0 + i)
    with pytest.raises(AuthError) as info:
        auth.login("viewer", PW, None, "127.0.0.66", 106.0)
    assert info.value.status == 429
    assert auth.login("viewer", PW, None, "127.0.0.67", 106.0)


def test_failures_outside_the_window_are_forgotten() -> None:
    limiter = LoginLimiter(pair_failures=3, account_failures=3, window_s=10, lock_s=60)
    for t in (0.0, 11.0, 22.0, 33.0):
        limiter.failed("admin", "127.0.0.1", t)
    assert limiter.retry_after("admin", "127.0.0.1", 34.0) is None
    for t in (40.0, 41.0, 42.0):
        limiter.failed("admin", "127.0.0.1", t)
    assert limiter.retry_after("admin", "127.0.0.1", 43.0) is not None


def test_the_limiter_memory_is_bounded() -> None:
    limiter = LoginLimiter(window_s=10, max_keys=50)
    for i in range(500):
        limiter.failed(f"user{i}", f"127.0.{i // 256}.{i % 256}", float(i * 20))  # each older than the window
    assert len(limiter._pairs) + len(limiter._addresses) + len(limiter._accounts) <= 53


def test_totp_required_for_enrolled_admin(auth: Authenticator, users: UserStore) -> None:
    secret = users.totp_enroll("admin")
    key = totp.secret_key(secret)
    now = 1_700_000_000.0
    assert auth.login("admin", PW, None, "127.0.0.1", now)  # enrolment not finished: not required yet
    assert users.totp_activate("admin", totp.totp(key, now), now)
    with pytest.raises(AuthError) as info:
        auth.login("admin", PW, None, "127.0.0.1", now + 1)
    assert info.value.status == 401 and info.value.field == "totp"
    later = now + 60
    assert auth.login("admin", PW, totp.totp(key, later), "127.0.0.1", later)
    with pytest.raises(AuthError):  # the same code again: replay
        auth.login("admin", PW, totp.totp(key, later), "127.0.0.1", later + 1)


def test_last_admin_cannot_go(users: UserStore) -> None:
    with pytest.raises(AuthError) as info:
        users.delete("admin")
    assert info.value.status == 409
    with pytest.raises(AuthError):
        users.update("admin", role=Role.OPERATOR)
    with pytest.raises(AuthError):
        users.update("admin", disabled=True)
    users.create("admin2", Role.ADMIN, PW, 0.0)
    users.delete("admin")


def test_password_policy(users: UserStore) -> None:
    with pytest.raises(AuthError) as info:
        users.create("shorty", Role.OPERATOR, "short", 0.0)
    assert info.value.status == 422 and info.value.field == "password"
    with pytest.raises(AuthError):
        users.create("bad name!", Role.OPERATOR, PW, 0.0)


# ---- sessions and CSRF -----------------------------------------------------------------------------
def test_session_idle_and_absolute_expiry() -> None:
    table = SessionTable(idle_s=100, absolute_s=250)
    s = table.create("alice", "127.0.0.1", 0.0)
    assert table.get(s.token, 90.0) is not None  # within idle; refreshes
    assert table.get(s.token, 180.0) is not None
    assert table.get(s.token, 260.0) is None  # absolute limit, though never idle long
    s2 = table.create("alice", "127.0.0.1", 300.0)
    assert table.get(s2.token, 401.0) is None  # idle too long


def test_csrf_token_must_match() -> None:
    s = SessionTable().create("alice", "127.0.0.1", 0.0)
    assert csrf_ok(s, s.csrf)
    assert not csrf_ok(s, None) and not csrf_ok(s, "") and not csrf_ok(s, s.token)


def test_drop_user_sessions_keeps_the_current() -> None:
    table = SessionTable()
    a = table.create("alice", "x", 0.0)
    b = table.create("alice", "y", 0.0)
    table.drop_user("alice", keep=a.token)
    assert table.get(a.token, 1.0) is not None and table.get(b.token, 1.0) is None


# ---- API tokens ------------------------------------------------------------------------------------
def test_api_token_hashed_at_rest_expires_and_revokes(users: UserStore) -> None:
    token, secret = users.create_token("viewer", "monitoring", 100.0, expires_in_s=3600)
    assert secret.startswith("sbc_") and secret not in users.path.read_text()
    found = users.check_token(secret, 200.0)
    assert found is not None and found[0].name == "viewer"
    assert users.check_token(secret, 100.0 + 3600) is None
    assert users.check_token(secret[:-1] + ("A" if secret[-1] != "A" else "B"), 200.0) is None
    assert users.check_token("sbc_nope.nope", 200.0) is None and users.check_token("Bearer x", 200.0) is None
    users.revoke_token(token.id)
    assert users.check_token(secret, 200.0) is None


# ---- first run ---------------------------------------------------------------------------------------
def test_first_run_prints_a_generated_password_once(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json", scrypt_n=FAST_N)
    out = io.StringIO()
    assert first_run(store, 0.0, env={}, out=out, make_password=lambda: "Generated-Pass-123") == "generated"
    assert "Generated-Pass-123" in out.getvalue() and "ONCE" in out.getvalue()
    admin = store.get("admin")
    assert admin.must_change_password and admin.role is Role.ADMIN
    assert "Generated-Pass-123" not in store.path.read_text()
    assert store.check_password("admin", "Generated-Pass-123") is not None
    out2 = io.StringIO()
    assert first_run(store, 1.0, env={}, out=out2) is None and out2.getvalue() == ""


def test_first_run_takes_the_environment(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json", scrypt_n=FAST_N)
    out = io.StringIO()
    assert first_run(store, 0.0, env={"SBC_ADMIN_PASSWORD": PW}, out=out) == "from SBC_ADMIN_PASSWORD"
    assert out.getvalue() == "" and not store.get("admin").must_change_password
    with pytest.raises(AuthError):
        first_run(UserStore(tmp_path / "u2.json", scrypt_n=FAST_N), 0.0, env={"SBC_ADMIN_PASSWORD": "short"})


# ---- audit ---------------------------------------------------------------------------------------------
def test_audit_log_redacts_secrets_and_tails(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    for i in range(5):
        log.write("alice", "127.0.0.1", "config.commit", target=f"r{i}", now=float(i))
    log.write("alice", "127.0.0.1", "users.create", new_password="hunter2hunter2", token_id="abc")
    entries = log.tail(3)
    assert [e["action"] for e in entries] == ["config.commit", "config.commit", "users.create"]
    assert entries[-1]["new_password"] == "[redacted]" and "hunter2" not in (tmp_path / "audit.log").read_text()
    first = json.loads((tmp_path / "audit.log").read_text().splitlines()[0])
    assert first == {"time": 0.0, "user": "alice", "source": "127.0.0.1", "action": "config.commit",
                     "target": "r0", "outcome": "ok", "prev": "0" * 64}  # fmt: skip
