"""Password hashing: Argon2id (RFC 9106) through argon2-cffi.

Parameters (``PRODUCTION``) are argon2-cffi's defaults, which are RFC 9106's second recommended
("low memory") profile:

============  ==========  ==========================================================
time_cost     3           passes over memory
memory_cost   65536 KiB   64 MiB of memory per hash
parallelism   4           lanes
hash_len      32 bytes
salt_len      16 bytes    random per hash (``os.urandom``)
============  ==========  ==========================================================

One hash takes ~50-100 ms on the appliance class of hardware, which is the point. A stored hash
is a PHC string (``$argon2id$v=19$m=65536,t=3,p=4$<salt>$<hash>``) and carries its own
parameters, so raising them later only needs :func:`verify_password`'s ``needs_rehash`` flag
acted on at the next successful login.

Lighter parameters exist only for tests (``TEST_ONLY_FAST``) and are reachable only by passing
``params=`` explicitly; nothing reads them from configuration.

Never log, journal or return a password or a hash.
"""

from __future__ import annotations

import functools
import logging
import secrets
import string
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

log = logging.getLogger(__name__)

GENERATED_PASSWORD_ALPHABET = string.ascii_letters + string.digits
"""62 symbols: ~5.95 bits per character, no characters that need quoting in a shell."""

MIN_GENERATED_PASSWORD_LENGTH = 20


@dataclass(frozen=True, slots=True)
class Argon2Params:
    """Argon2id cost parameters.

    Attributes:
        time_cost: passes over memory (>= 1).
        memory_cost_kib: memory per hash in KiB (>= 8 * parallelism).
        parallelism: lanes (>= 1).
        hash_len: output length in bytes.
        salt_len: random salt length in bytes.
    """

    time_cost: int = 3
    memory_cost_kib: int = 65536
    parallelism: int = 4
    hash_len: int = 32
    salt_len: int = 16


PRODUCTION = Argon2Params()
"""The parameters every stored password uses (RFC 9106 low-memory profile)."""

TEST_ONLY_FAST = Argon2Params(time_cost=1, memory_cost_kib=64, parallelism=1, hash_len=32, salt_len=16)
"""Cheap parameters so unit tests run fast. Never use outside tests."""


@functools.lru_cache(maxsize=8)
def _hasher(params: Argon2Params) -> PasswordHasher:
    return PasswordHasher(
        time_cost=params.time_cost,
        memory_cost=params.memory_cost_kib,
        parallelism=params.parallelism,
        hash_len=params.hash_len,
        salt_len=params.salt_len,
        type=Type.ID,
    )


@dataclass(frozen=True, slots=True)
class PasswordCheck:
    """Outcome of :func:`verify_password`.

    Truthiness is ``ok``, so ``if verify_password(h, p):`` does the right thing.

    Attributes:
        ok: the password matches the hash.
        needs_rehash: the hash was made with other parameters than the current ones; the caller
            should store ``hash_password(password)`` now that it knows the password
            (only ever True when ``ok`` is True).
    """

    ok: bool
    needs_rehash: bool = False

    def __bool__(self) -> bool:
        return self.ok


def hash_password(password: str, *, params: Argon2Params = PRODUCTION) -> str:
    """Hash ``password`` with Argon2id and a fresh random salt.

    Args:
        password: the plaintext (any length; callers validate policy before).
        params: cost parameters; leave the default outside tests.

    Returns:
        The PHC-encoded hash string (~100 ASCII characters).

    Raises:
        TypeError: ``password`` is not a str.
    """
    if not isinstance(password, str):
        raise TypeError("password must be a str")
    return _hasher(params).hash(password)


def verify_password(password_hash: str, password: str, *, params: Argon2Params = PRODUCTION) -> PasswordCheck:
    """Check ``password`` against ``password_hash`` in constant time (libargon2 compares digests
    with a constant-time comparison; the cost is dominated by the hash itself).

    Args:
        password_hash: a PHC string from :func:`hash_password`.
        password: the candidate plaintext.
        params: the *current* parameters, used for the ``needs_rehash`` decision.

    Returns:
        :class:`PasswordCheck`. A malformed hash counts as a mismatch (and is logged without
        its content); it never raises for bad input.
    """
    if not isinstance(password, str) or not isinstance(password_hash, str):
        return PasswordCheck(False)
    hasher = _hasher(params)
    try:
        hasher.verify(password_hash, password)
    except VerifyMismatchError:
        return PasswordCheck(False)
    except InvalidHashError:
        log.warning("stored password hash is malformed; treated as a mismatch")
        return PasswordCheck(False)
    except VerificationError:
        return PasswordCheck(False)
    try:
        needs_rehash = hasher.check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError):  # pragma: no cover - verify accepted it already
        needs_rehash = True
    return PasswordCheck(True, needs_rehash)


def generate_password(length: int = 24) -> str:
    """A random password from the OS CSPRNG (``secrets``), letters and digits only.

    Args:
        length: characters; 24 (~143 bits) by default.

    Returns:
        The password. Show it once to the operator; never log it.

    Raises:
        ValueError: ``length`` < 20.
    """
    if length < MIN_GENERATED_PASSWORD_LENGTH:
        raise ValueError(f"length must be >= {MIN_GENERATED_PASSWORD_LENGTH}, not {length}")
    return "".join(secrets.choice(GENERATED_PASSWORD_ALPHABET) for _ in range(length))
