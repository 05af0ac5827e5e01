"""One-time passwords: HOTP (RFC 4226) and TOTP (RFC 6238), with the standard library's hmac."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import urllib.parse

STEP_S = 30
DIGITS = 6


def hotp(key: bytes, counter: int, *, digits: int = DIGITS, digest: str = "sha1") -> str:
    mac = hmac.new(key, struct.pack(">Q", counter), getattr(hashlib, digest)).digest()
    offset = mac[-1] & 0x0F  # RFC 4226 §5.3: dynamic truncation
    code = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(code % 10**digits).zfill(digits)


def time_step(now: float, step: int = STEP_S) -> int:
    return int(now // step)  # RFC 6238 §4.2: T = floor((Current Unix time - T0) / X), T0 = 0


def totp(key: bytes, now: float, *, step: int = STEP_S, digits: int = DIGITS, digest: str = "sha1") -> str:
    return hotp(key, time_step(now, step), digits=digits, digest=digest)


def verify(key: bytes, code: str, now: float, *, after_step: int = -1, window: int = 1) -> int | None:
    """The time step `code` matches within ±window steps (RFC 6238 §5.2 clock drift), or None.

    A step at or before `after_step` (the last one used) is refused: a code works once (§5.2).
    """
    code = code.strip().replace(" ", "")
    if not code.isdigit() or len(code) != DIGITS:
        return None
    current = time_step(now)
    for candidate in range(current - window, current + window + 1):
        if candidate > after_step and hmac.compare_digest(hotp(key, candidate), code):
            return candidate
    return None


def new_secret() -> str:
    """160 bits, the HMAC-SHA-1 key length RFC 4226 §4 recommends; base32 as authenticator apps expect."""
    return base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")


def secret_key(secret: str) -> bytes:
    return base64.b32decode(secret + "=" * (-len(secret) % 8), casefold=True)


def otpauth_uri(secret: str, account: str, issuer: str = "EdgeSBC") -> str:
    label = urllib.parse.quote(f"{issuer}:{account}")
    query = urllib.parse.urlencode({"secret": secret, "issuer": issuer, "algorithm": "SHA1", "digits": DIGITS,
                                    "period": STEP_S})  # fmt: skip
    return f"otpauth://totp/{label}?{query}"
