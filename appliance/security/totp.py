"""TOTP second factor (RFC 6238 over HOTP, RFC 4226) and one-time recovery codes. Pure: no I/O,
no clock of its own (callers pass ``now_ns`` from the injected Clock).

Parameters (what every authenticator app assumes; also in the otpauth URI):

=========  ===========================================================
algorithm  HMAC-SHA-1 (RFC 6238 default; RFC 4226 §5)
digits     6
period     30 s (time step X, T0 = Unix epoch; step = floor(unix_s / 30))
secret     160 bits (RFC 4226 §4 R6 recommends >= 160), base32 (32 characters)
window     +-1 step accepted (RFC 6238 §5.2 "at most one time step" of network/clock drift)
=========  ===========================================================

Replay protection (RFC 6238 §5.2: "the verifier MUST NOT accept the second attempt of the same
OTP after the successful validation has been issued"): :func:`match_step` only accepts a step
strictly greater than the last accepted one, which the caller stores per user. A code is thus
usable once, and a code older than the last used one never.

Recovery codes: ten per enrollment, ``xxxx-xxxx-xxxx-xxxx`` from a 32-symbol alphabet (80 bits
each), compared after :func:`normalize_recovery_code` (case, spaces and dashes ignored).
"""

from __future__ import annotations

import hmac
import re
import secrets
from urllib.parse import quote, urlencode

import pyotp

ISSUER = "Lyra"
DIGITS = 6
PERIOD_S = 30
WINDOW_STEPS = 1
SECRET_BYTES = 20  # 160 bits -> 32 base32 characters
RECOVERY_CODE_COUNT = 10
RECOVERY_CODE_GROUPS = 4
RECOVERY_CODE_GROUP_LEN = 4
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: easy to read aloud
MAX_RECOVERY_CODE_INPUT = 64
"""Longest recovery-code input accepted before normalisation (dashes/spaces included)."""

_CODE_RE = re.compile(r"[0-9]{%d}" % DIGITS)
_NS_PER_SECOND = 1_000_000_000


def generate_secret() -> str:
    """A new random base32 TOTP secret (160 bits from ``secrets``). Never log it."""
    return pyotp.random_base32(length=32)


def provisioning_uri(secret: str, username: str) -> str:
    """The ``otpauth://totp/Lyra:<username>?secret=..&issuer=Lyra&digits=6&period=30`` URI (Key
    Uri Format used by Google Authenticator and compatibles), for a QR code.

    Args:
        secret: base32 secret from :func:`generate_secret`.
        username: account name shown in the app.
    """
    label = quote(f"{ISSUER}:{username}", safe=":@")
    query = urlencode({"secret": secret, "issuer": ISSUER, "algorithm": "SHA1", "digits": DIGITS, "period": PERIOD_S})
    return f"otpauth://totp/{label}?{query}"


def time_step(now_ns: int) -> int:
    """The RFC 6238 time step of ``now_ns`` (ns since the epoch): ``floor(unix_s / 30)``."""
    return (now_ns // _NS_PER_SECOND) // PERIOD_S


def code_at_step(secret: str, step: int) -> str:
    """The 6-digit code of ``secret`` for time step ``step`` (HOTP with counter = step)."""
    return pyotp.HOTP(secret, digits=DIGITS).at(step)


def code_at(secret: str, now_ns: int) -> str:
    """The code an authenticator app shows at ``now_ns`` (tests, ``lyractl`` helpers)."""
    return code_at_step(secret, time_step(now_ns))


def is_code_format(code: object) -> bool:
    """True if ``code`` is exactly six ASCII digits."""
    return isinstance(code, str) and bool(_CODE_RE.fullmatch(code))


def match_step(secret: str, code: str, now_ns: int, last_step: int | None, window: int = WINDOW_STEPS) -> int | None:
    """The time step at which ``code`` is valid, or None.

    Accepts steps ``now-window .. now+window`` that are strictly greater than ``last_step``
    (replay protection). Every candidate is compared in constant time.

    Args:
        secret: base32 secret.
        code: the six digits the user typed.
        now_ns: current time, ns since the epoch.
        last_step: the last accepted step for this user (None: never).
        window: steps of drift tolerated each side (1 = +-30 s).

    Returns:
        The matching step (store it as the new ``last_step``), or None: wrong, malformed,
        outside the window, or already used.
    """
    if not is_code_format(code):
        return None
    current = time_step(now_ns)
    found: int | None = None
    for step in range(current - window, current + window + 1):
        if hmac.compare_digest(code_at_step(secret, step), code) and (last_step is None or step > last_step):
            found = step if found is None else found
    return found


def generate_recovery_codes(count: int = RECOVERY_CODE_COUNT) -> list[str]:
    """``count`` random codes ``xxxx-xxxx-xxxx-xxxx`` (80 bits each). Show once; store hashed."""
    group = lambda: "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_CODE_GROUP_LEN))  # noqa: E731
    return ["-".join(group() for _ in range(RECOVERY_CODE_GROUPS)) for _ in range(count)]


def normalize_recovery_code(code: str) -> str | None:
    """Lower-case ``code`` without spaces and dashes, or None when it cannot be a recovery code
    (wrong length or characters). Never raises."""
    if not isinstance(code, str) or len(code) > MAX_RECOVERY_CODE_INPUT:
        return None
    cleaned = "".join(ch for ch in code.strip().lower() if ch not in " -")
    if len(cleaned) != RECOVERY_CODE_GROUPS * RECOVERY_CODE_GROUP_LEN or any(ch not in RECOVERY_ALPHABET for ch in cleaned):
        return None
    return cleaned
