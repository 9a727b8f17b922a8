"""The *auth key*: 32 random bytes in ``<data_dir>/auth.key`` that encrypt authentication secrets
at rest (TOTP seeds, the JWT signing key) and key the recovery-code HMAC.

Why a key file and not the database: database snapshots are shipped off the box for disaster
recovery (see DESIGN.md, replication). Anyone holding a snapshot must not be able to mint access
tokens (signing key), generate a user's TOTP codes (seed) or test recovery codes offline. The
auth key file stays on the box (it is not part of any snapshot), so a snapshot alone is useless
for that. Restoring a snapshot on a new box therefore needs the auth key file from the old box
(back it up separately and offline), or else every user re-enrolls TOTP (``ResetTotp``) and a
new signing key is created (all access tokens become invalid; refresh tokens keep working).

Encryption: XChaCha20-Poly1305 (IETF; RFC 8439 ChaCha20-Poly1305 with the 24-byte nonce of
draft-irtf-cfrg-xchacha) through libsodium (pynacl ``nacl.bindings``). A blob is::

    b"\\x01" || nonce (24 random bytes) || ciphertext || tag (16 bytes)

The associated data names the record (``b"lyra-auth:totp:<user_id>"``), so a ciphertext cannot
be moved to another user or another purpose without failing authentication.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from nacl import bindings as _sodium
from nacl.exceptions import CryptoError

from appliance.model.errors import IntegrityError

AUTH_KEY_FILE = "auth.key"
AUTH_KEY_BYTES = 32
_VERSION = b"\x01"
_NONCE_BYTES = _sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES  # 24
_TAG_BYTES = _sodium.crypto_aead_xchacha20poly1305_ietf_ABYTES  # 16


class AuthKeyError(RuntimeError):
    """The auth key file is unsafe or unreadable (boot-time error; the message names the file)."""


def load_or_create_auth_key(data_dir: Path | str) -> bytes:
    """The 32-byte auth key in ``<data_dir>/auth.key``, created on first use.

    Created with ``O_CREAT | O_EXCL`` and mode 0600 (``secrets.token_bytes``, the OS CSPRNG),
    then fsynced with its folder. An existing file must be a regular file of exactly 32 bytes
    owned by this user with no group/other permission bits.

    Args:
        data_dir: the appliance data folder (must exist).

    Returns:
        The key (32 bytes). Never log it.

    Raises:
        AuthKeyError: the file is group/world accessible, not a regular file, owned by someone
            else, or not 32 bytes long.
        OSError: the folder is not writable / the file not readable.
    """
    path = Path(data_dir) / AUTH_KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        return _read_key(path)
    try:
        key = secrets.token_bytes(AUTH_KEY_BYTES)
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:  # pragma: no cover - some filesystems do not support fsync on folders
        pass
    return key


def _read_key(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise AuthKeyError(f"{path}: auth key is not a regular file")
        if info.st_mode & 0o077:
            raise AuthKeyError(
                f"{path}: auth key is accessible by group or others (mode {stat.S_IMODE(info.st_mode):04o}); "
                "refusing to use it: chmod 600 it"
            )
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            raise AuthKeyError(f"{path}: auth key is owned by uid {info.st_uid}, not by this user")
        data = os.read(fd, AUTH_KEY_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) != AUTH_KEY_BYTES:
        raise AuthKeyError(f"{path}: auth key must be exactly {AUTH_KEY_BYTES} bytes")
    return data


def ephemeral_auth_key() -> bytes:
    """A random in-memory key, for tests and tools that keep nothing across restarts."""
    return secrets.token_bytes(AUTH_KEY_BYTES)


def _check_key(key: bytes) -> None:
    if not isinstance(key, (bytes, bytearray)) or len(key) != AUTH_KEY_BYTES:
        raise ValueError(f"the auth key must be {AUTH_KEY_BYTES} bytes")


def seal(key: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    """Encrypt ``plaintext`` under ``key`` (XChaCha20-Poly1305, random 24-byte nonce).

    Args:
        key: the 32-byte auth key.
        plaintext: what to protect.
        associated_data: names the record; the same value is needed to :func:`open_sealed`.

    Returns:
        ``version (1) || nonce (24) || ciphertext || tag (16)`` bytes.

    Raises:
        ValueError: ``key`` is not 32 bytes.
    """
    _check_key(key)
    nonce = secrets.token_bytes(_NONCE_BYTES)
    box = _sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(bytes(plaintext), bytes(associated_data), nonce, bytes(key))
    return _VERSION + nonce + box


def open_sealed(key: bytes, blob: bytes, associated_data: bytes, *, what: str) -> bytes:
    """Decrypt a blob from :func:`seal`.

    Args:
        key: the 32-byte auth key.
        blob: the stored bytes.
        associated_data: as given to :func:`seal`.
        what: names the record for the error message (e.g. ``"TOTP secret of user <id>"``).

    Returns:
        The plaintext.

    Raises:
        IntegrityError: wrong key (another box's auth.key), tampered or truncated blob, or
            wrong associated data (DATA_LOSS); nothing is decrypted.
        ValueError: ``key`` is not 32 bytes.
    """
    _check_key(key)
    blob = bytes(blob) if blob is not None else b""
    if len(blob) < 1 + _NONCE_BYTES + _TAG_BYTES or blob[:1] != _VERSION:
        raise IntegrityError(f"{what} is malformed")
    nonce, box = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
    try:
        return _sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(box, bytes(associated_data), nonce, bytes(key))
    except CryptoError:
        raise IntegrityError(f"{what} cannot be decrypted (wrong auth key or modified data)") from None


def keyed_hash(key: bytes, label: str, value: str) -> str:
    """HMAC-SHA-256 (RFC 2104) hex of ``label || NUL || value`` under the auth key.

    Used for recovery codes: a database snapshot alone does not allow testing candidate codes.
    """
    _check_key(key)
    return hmac.new(bytes(key), label.encode("utf-8") + b"\x00" + value.encode("utf-8"), hashlib.sha256).hexdigest()
