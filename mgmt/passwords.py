"""Password hashing with scrypt (RFC 7914), a memory-hard KDF.

Why scrypt: it is memory-hard like Argon2id (each guess needs N*r*128 bytes, here 32 MiB, which is
what makes GPU and ASIC guessing expensive), it is in the standard library through OpenSSL
(`hashlib.scrypt`), so the firmware needs no extra native package, and OWASP lists it as acceptable
with N=2^15, r=8, p=1 — the cost used here (about 0.1 s on the box). PBKDF2 is not memory-hard; bcrypt
truncates at 72 bytes. Parameters are stored in each hash, so the cost can be raised later and old
hashes still verify (`needs_rehash` tells when to upgrade one at the next login).

Format: `scrypt$N$r$p$<salt b64>$<hash b64>`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
_DKLEN = 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r, dklen=_DKLEN)


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    salt = secrets.token_bytes(16)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(_scrypt(password, salt, n, r, p))}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        computed = _scrypt(password, _unb64(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed, _unb64(digest))


def needs_rehash(encoded: str, *, n: int = SCRYPT_N) -> bool:
    parts = encoded.split("$")
    return len(parts) != 6 or parts[0] != "scrypt" or int(parts[1]) < n


# Verified against for unknown user names, so that a login takes as long whether the user exists or not.
def dummy_hash(n: int = SCRYPT_N) -> str:
    return hash_password(secrets.token_urlsafe(16), n=n)
