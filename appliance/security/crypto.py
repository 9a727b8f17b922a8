"""Small, generic cryptographic helpers: AEAD boxes, a passphrase KDF, key check values.

Nothing here knows about the vault, the database or the engine; the vault
(:mod:`appliance.security.vault`) and any other module that needs to encrypt a small record
may import these. Every function is deterministic except where it draws randomness
(``os.urandom``, the kernel CSPRNG).

Algorithms and their sources:

* **AEAD: XChaCha20-Poly1305** (IETF construction: ChaCha20-Poly1305 of RFC 8439 with the
  24-byte extended nonce of draft-irtf-cfrg-xchacha, HChaCha20 subkey derivation), through
  libsodium's ``crypto_aead_xchacha20poly1305_ietf_*`` as exposed by ``nacl.bindings``.
  32-byte key, 24-byte nonce, 16-byte tag appended to the ciphertext. The 192-bit nonce is large
  enough to be drawn at random for every message (collision probability is negligible for any
  number of messages this appliance will ever encrypt under one key).
* **KDF: Argon2id** (RFC 9106) through ``argon2.low_level.hash_secret_raw`` (argon2-cffi).
  :data:`ARGON2ID_PRODUCTION` is RFC 9106's second recommended profile (t=3, m=64 MiB, p=4),
  the same as the appliance's password hashing (:mod:`appliance.security.passwords`).
* **Key check value: HMAC-SHA-256** (RFC 2104 / FIPS 180-4) of a fixed label under the key,
  so that a stored value tells whether a candidate key is the right one without revealing it.

Limits of in-memory secrecy in Python (read before relying on :class:`SecretKey.wipe`):
the libsodium bindings only accept ``bytes``, so every call copies the key into an immutable
``bytes`` object that cannot be overwritten and is freed (not zeroed) whenever the garbage
collector gets to it; Python may also keep copies in freed memory, and the process may be
swapped out. :class:`SecretKey` keeps the long-lived copy in a ``bytearray`` that *is* zeroed on
:meth:`SecretKey.wipe`, which removes the key from the one place we control; run the appliance
with swap disabled or encrypted and core dumps off (the shipped systemd unit does).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from argon2.low_level import Type, hash_secret_raw
from nacl import bindings as _sodium
from nacl.exceptions import CryptoError

KEY_BYTES = _sodium.crypto_aead_xchacha20poly1305_ietf_KEYBYTES
"""32: XChaCha20-Poly1305 key length in bytes."""

NONCE_BYTES = _sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
"""24: XChaCha20-Poly1305 nonce length in bytes."""

TAG_BYTES = _sodium.crypto_aead_xchacha20poly1305_ietf_ABYTES
"""16: Poly1305 tag length in bytes (appended to every ciphertext)."""

SALT_BYTES = 16
"""Argon2id salt length in bytes (RFC 9106 recommends 128 bits)."""


class DecryptionFailed(Exception):
    """An AEAD ciphertext did not authenticate: wrong key, wrong nonce, wrong associated data,
    or modified ciphertext. Nothing was decrypted. The message never contains key material.

    This is deliberately *not* a :class:`~appliance.model.errors.LyraError`: callers translate it
    into an error that names their record (e.g. ``IntegrityError``).
    """


# -- randomness ------------------------------------------------------------------------------------

def random_key() -> bytes:
    """A fresh 256-bit key from the kernel CSPRNG (``os.urandom``). Returns 32 bytes."""
    return os.urandom(KEY_BYTES)


def random_salt() -> bytes:
    """A fresh 16-byte salt from ``os.urandom``."""
    return os.urandom(SALT_BYTES)


# -- AEAD ------------------------------------------------------------------------------------------

def _check_key(key: bytes | bytearray) -> bytes:
    if len(key) != KEY_BYTES:
        raise ValueError(f"key must be {KEY_BYTES} bytes, got {len(key)}")
    return bytes(key)  # libsodium bindings accept bytes only (a copy: see the module docstring)


def aead_encrypt(key: bytes | bytearray, plaintext: bytes, associated_data: bytes) -> tuple[bytes, bytes]:
    """Encrypt with XChaCha20-Poly1305 under a fresh random nonce.

    Args:
        key: 32 bytes.
        plaintext: any length.
        associated_data: authenticated but not encrypted; the same bytes must be given to
            :func:`aead_decrypt` (bind the ciphertext to its record: id, version ...).

    Returns:
        ``(nonce, ciphertext)``: a 24-byte random nonce and ``len(plaintext) + 16`` bytes
        (ciphertext followed by the Poly1305 tag).

    Raises:
        ValueError: the key is not 32 bytes.
    """
    raw_key = _check_key(key)
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = _sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(bytes(plaintext), bytes(associated_data), nonce, raw_key)
    return nonce, ciphertext


def aead_decrypt(key: bytes | bytearray, nonce: bytes, ciphertext: bytes, associated_data: bytes) -> bytes:
    """Decrypt and authenticate an :func:`aead_encrypt` result.

    Args:
        key: 32 bytes.
        nonce: the 24-byte nonce returned by :func:`aead_encrypt`.
        ciphertext: ciphertext with its 16-byte tag.
        associated_data: the exact bytes used when encrypting.

    Returns:
        The plaintext.

    Raises:
        DecryptionFailed: anything does not authenticate (including a nonce or ciphertext of the
            wrong length); nothing is returned.
        ValueError: the key is not 32 bytes.
    """
    raw_key = _check_key(key)
    if not isinstance(nonce, (bytes, bytearray)) or len(nonce) != NONCE_BYTES:
        raise DecryptionFailed("nonce has the wrong length")
    if not isinstance(ciphertext, (bytes, bytearray)) or len(ciphertext) < TAG_BYTES:
        raise DecryptionFailed("ciphertext is shorter than its tag")
    try:
        return _sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(bytes(ciphertext), bytes(associated_data),
                                                                 bytes(nonce), raw_key)
    except CryptoError:
        raise DecryptionFailed("ciphertext did not authenticate") from None


def seal_box(key: bytes | bytearray, plaintext: bytes, associated_data: bytes = b"") -> bytes:
    """:func:`aead_encrypt` packed into one blob: ``nonce (24) || ciphertext || tag (16)``.

    Convenient for storing a small secret in one column. Same algorithm and guarantees.

    Raises:
        ValueError: the key is not 32 bytes.
    """
    nonce, ciphertext = aead_encrypt(key, plaintext, associated_data)
    return nonce + ciphertext


def open_box(key: bytes | bytearray, box: bytes, associated_data: bytes = b"") -> bytes:
    """Open a :func:`seal_box` blob.

    Raises:
        DecryptionFailed: too short, wrong key or associated data, or modified.
        ValueError: the key is not 32 bytes.
    """
    if len(box) < NONCE_BYTES + TAG_BYTES:
        raise DecryptionFailed("box is too short")
    return aead_decrypt(key, box[:NONCE_BYTES], box[NONCE_BYTES:], associated_data)


# -- KDF -------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Argon2idParams:
    """Argon2id cost parameters (RFC 9106 section 3.1).

    Attributes:
        time_cost: passes over memory, ``t`` (1..10 accepted).
        memory_kib: memory in KiB, ``m`` (>= 8 * parallelism, <= 4 GiB).
        parallelism: lanes, ``p`` (1..64).
    """

    time_cost: int = 3
    memory_kib: int = 65536
    parallelism: int = 4

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("invalid Argon2id parameters: " + "; ".join(problems))

    def problems(self) -> list[str]:
        """Why these parameters are unacceptable (empty if they are fine)."""
        found = []
        if not isinstance(self.time_cost, int) or not 1 <= self.time_cost <= 10:
            found.append(f"time_cost {self.time_cost!r} not in 1..10")
        if not isinstance(self.parallelism, int) or not 1 <= self.parallelism <= 64:
            found.append(f"parallelism {self.parallelism!r} not in 1..64")
        elif not isinstance(self.memory_kib, int) or not 8 * self.parallelism <= self.memory_kib <= 4 * 1024 * 1024:
            found.append(f"memory_kib {self.memory_kib!r} not in {8 * self.parallelism}..4194304")
        return found

    def describe(self) -> str:
        """Human-readable form, e.g. ``"argon2id t=3 m=65536KiB p=4"``."""
        return f"argon2id t={self.time_cost} m={self.memory_kib}KiB p={self.parallelism}"


ARGON2ID_PRODUCTION = Argon2idParams(time_cost=3, memory_kib=65536, parallelism=4)
"""RFC 9106 second recommended option (t=3, m=64 MiB, p=4): ~0.1 s on a 2-core appliance."""

ARGON2ID_TEST_ONLY_FAST = Argon2idParams(time_cost=1, memory_kib=64, parallelism=1)
"""Cheap parameters so tests run fast. Never use outside tests (reachable only explicitly)."""


def derive_key(secret: bytes, salt: bytes, params: Argon2idParams = ARGON2ID_PRODUCTION, length: int = KEY_BYTES) -> bytes:
    """Derive a key from a low-entropy secret (a passphrase) with Argon2id (RFC 9106).

    Args:
        secret: the passphrase, encoded (UTF-8 after NFC normalisation is the caller's job).
        salt: random, >= 8 bytes (use :func:`random_salt`, 16 bytes), stored beside the result's use.
        params: cost parameters.
        length: output length in bytes (default 32).

    Returns:
        ``length`` bytes. Takes ~``params.time_cost * params.memory_kib`` of work: ~0.1 s and
        64 MiB for :data:`ARGON2ID_PRODUCTION`.

    Raises:
        ValueError: salt shorter than 8 bytes.
    """
    if len(salt) < 8:
        raise ValueError("salt must be at least 8 bytes")
    return hash_secret_raw(secret, salt, time_cost=params.time_cost, memory_cost=params.memory_kib,
                           parallelism=params.parallelism, hash_len=length, type=Type.ID)


# -- checks and fingerprints -------------------------------------------------------------------------

def key_check_value(key: bytes | bytearray, label: bytes) -> bytes:
    """HMAC-SHA-256(key, label): 32 bytes that identify ``key`` without revealing it.

    Store it beside something wrapped under ``key``: a candidate key whose check value differs is
    simply the wrong key, while a matching key whose AEAD still fails means the wrapped record was
    modified. Use a distinct ``label`` per purpose.
    """
    return hmac.new(bytes(key), label, hashlib.sha256).digest()


def constant_time_equal(a: bytes, b: bytes) -> bool:
    """``hmac.compare_digest``: compare secrets or check values without a timing side channel."""
    return hmac.compare_digest(a, b)


def sha256_fingerprint(text: str, hex_digits: int = 12) -> str:
    """First ``hex_digits`` lowercase hex digits of SHA-256(text encoded as UTF-8).

    Matches ``printf %s TEXT | sha256sum | cut -c1-12``. 48 bits: enough to tell keys apart, not to
    recover them (an API key is high-entropy).
    """
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:hex_digits]


# -- key holder ------------------------------------------------------------------------------------

class SecretKey:
    """A 32-byte key kept in a ``bytearray`` so that it can be zeroed.

    ``repr``/``str`` never show the key. After :meth:`wipe` the object is unusable.
    See the module docstring for what wiping can and cannot guarantee in Python.
    """

    __slots__ = ("_buf",)

    def __init__(self, key: bytes | bytearray) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"key must be {KEY_BYTES} bytes, got {len(key)}")
        self._buf: bytearray | None = bytearray(key)

    @property
    def wiped(self) -> bool:
        return self._buf is None

    def material(self) -> bytearray:
        """The key bytes (the live buffer, not a copy).

        Raises:
            RuntimeError: the key was wiped.
        """
        if self._buf is None:
            raise RuntimeError("key was wiped")
        return self._buf

    def wipe(self) -> None:
        """Overwrite the buffer with zeros and drop it. Idempotent."""
        if self._buf is not None:
            wipe(self._buf)
            self._buf = None

    def __repr__(self) -> str:
        return "SecretKey(<wiped>)" if self._buf is None else "SecretKey(<32 bytes, hidden>)"

    __str__ = __repr__

    def __reduce__(self):  # never pickled (would write the key somewhere)
        raise TypeError("SecretKey cannot be pickled")


def wipe(buffer: bytearray) -> None:
    """Overwrite ``buffer`` in place with zeros."""
    buffer[:] = bytes(len(buffer))
