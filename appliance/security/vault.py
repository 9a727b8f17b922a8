"""The vault: exchange credentials encrypted at rest in the appliance's database.

States
======

``UNINITIALIZED`` -> :meth:`Vault.initialize` -> ``UNSEALED`` <-> ``SEALED``
(:meth:`Vault.seal` / :meth:`Vault.unseal` / :meth:`Vault.unseal_with_key_file`).
A new :class:`Vault` on an initialised database is ``SEALED``: the appliance boots sealed.
While sealed, credential *metadata* (list, get, status) stays readable; anything that needs
the data key or changes the vault raises :class:`VaultSealed` (FAILED_PRECONDITION).

Key hierarchy
=============

::

    passphrase --Argon2id (RFC 9106; random 16-byte salt; t, m, p stored)--> KEK
    KEK       --XChaCha20-Poly1305 wrap--> root key     (vault_unseal_keys, kind 'passphrase')
    key file  --XChaCha20-Poly1305 wrap--> root key     (vault_unseal_keys, kind 'key_file')
    root key  --XChaCha20-Poly1305 wrap--> data key v N (vault_data_keys, current version only)
    data key  --XChaCha20-Poly1305-------> one JSON blob per credential version

All AEAD is XChaCha20-Poly1305 (RFC 8439 ChaCha20-Poly1305 with the 24-byte nonce of
draft-irtf-cfrg-xchacha), a fresh random nonce per encryption, see :mod:`.crypto`.

* The **data key** (256 bits, random) encrypts every secret version with associated data
  ``"<credential_id>:<version>"``: a ciphertext moved to another credential or version does not
  authenticate (:class:`~appliance.model.errors.IntegrityError` naming the record).
* The **root key** (256 bits, random, never rotated by :meth:`Vault.rotate_data_key`) wraps the
  data key. It exists so that :meth:`Vault.rotate_data_key` can wrap a *new* data key while
  unsealed without asking for the passphrase or the key file (the same layering as HashiCorp
  Vault's root key and keyring), and so that a passphrase change or a key file only re-wraps
  one 32-byte key.
* The **KEK** is derived from the operator's passphrase with Argon2id; a **verifier**
  ``HMAC-SHA-256(KEK, "lyra-vault:kek-check:passphrase")`` is stored beside the wrapped root key,
  so a wrong passphrase (verifier mismatch: :class:`WrongPassphrase`, counted) is told apart from
  a modified wrapped key (verifier matches but the AEAD fails: ``IntegrityError``).
* The **key file** (unattended boot) holds 32 random bytes used directly as a KEK; it must not be
  accessible to group or others (mode ``0600`` or stricter).

Unseal failures
===============

Wrong passphrases (to :meth:`Vault.unseal` and :meth:`Vault.change_passphrase`) are counted in
``vault_state`` - in the database, so a restart does not reset them. After
``unseal_max_failures`` consecutive failures every passphrase attempt (even the right one) is
refused with :class:`UnsealLockedOut` (RESOURCE_EXHAUSTED) for 30 s, doubling with each further
failure, capped at 1 h. A success resets the count. The key file is not rate-limited (it cannot
be guessed) so unattended boot keeps working during a lockout.

Because a raised error rolls back the engine message's transaction, a caller running
:meth:`Vault.unseal` or :meth:`Vault.change_passphrase` inside its own transaction must use
:func:`commit_failed_attempts` so the failure count commits (the servicer does).

Journal (no secret, key, nonce or ciphertext is ever journaled)
===============================================================

aggregate ``"vault"`` (id ``"vault"``): ``VaultInitialized`` {data_key_version, kdf, actor},
``VaultUnsealed`` {method, actor}, ``VaultUnsealFailed`` {failed_attempts, locked_until_ns, actor},
``VaultSealed`` {actor}, ``VaultPassphraseChanged`` {kdf, actor}, ``VaultDataKeyRotated``
{data_key_version, previous_version, secrets_reencrypted, actor}, ``VaultKeyFileCreated``
{path, replaced, actor}, ``VaultKeyFileRemoved`` {actor}.

aggregate ``"credential"`` (id = credential id): ``CredentialCreated`` {credential_id, venue,
label, version, fingerprint, fields, actor}, ``CredentialRotationStarted`` {credential_id, venue,
label, version, previous_version, fingerprint, fields, actor}, ``CredentialRotationConfirmed``
{credential_id, version, previous_version, fingerprint, actor}, ``CredentialRotationAborted``
{credential_id, version, current_version, actor}, ``CredentialDeleted`` {credential_id, venue,
label, versions_deleted, actor}.

Memory
======

The root and data keys live in :class:`~appliance.security.crypto.SecretKey` buffers (bytearrays)
that :meth:`Vault.seal` zeroes. Python cannot guarantee more: pynacl copies keys into immutable
``bytes`` on every call and decrypted secrets are ``str`` objects; see :mod:`.crypto`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import stat
import unicodedata
import uuid
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Generic, Iterator, Mapping, TypeVar

from appliance.engine.clock import NS_PER_DAY, NS_PER_SECOND, Clock
from appliance.model.errors import (
    AlreadyExistsError,
    IntegrityError,
    NotFoundError,
    PreconditionError,
    RateLimitedError,
    ValidationError,
)
from appliance.security.crypto import (
    ARGON2ID_PRODUCTION,
    KEY_BYTES,
    Argon2idParams,
    DecryptionFailed,
    SecretKey,
    aead_decrypt,
    aead_encrypt,
    constant_time_equal,
    derive_key,
    key_check_value,
    random_key,
    random_salt,
    sha256_fingerprint,
    wipe,
)
from appliance.store.db import Database
from appliance.store.journal import Journal

log = logging.getLogger("lyra.vault")

MIN_PASSPHRASE_LENGTH = 12
MAX_PASSPHRASE_LENGTH = 1024
"""Characters. The upper bound stops a request from making us hash megabytes."""
MAX_SECRET_LENGTH = 4096
"""Characters per secret field (PEM private keys of some exchanges are ~250)."""
MAX_LABEL_LENGTH = 64
VENUE_PATTERN = re.compile(r"[a-z0-9_]{2,32}")
SECRET_FIELDS = ("api_key", "secret", "passphrase", "uid")
REQUIRED_SECRET_FIELDS = ("api_key", "secret")
KEY_FILE_BYTES = KEY_BYTES
PLAINTEXT_BLOCK = 256
"""Secret blobs are padded (JSON whitespace) to a multiple of this many bytes so the ciphertext
length only roughly reveals the secrets' length."""

LOCKOUT_BASE_S = 30.0
LOCKOUT_MAX_S = 3600.0

SEALED_MESSAGE = "vault is sealed: unseal it with `lyractl vault unseal`"
UNINITIALIZED_MESSAGE = ("vault is not initialized: initialize it with `lyractl vault init` "
                         "(InitializeVault with a passphrase of at least 12 characters)")

_AGG_VAULT = "vault"
_AGG_CREDENTIAL = "credential"
_PASSPHRASE = "passphrase"
_KEY_FILE = "key_file"


def _root_ad(kind: str) -> bytes:
    return f"lyra-vault:root-key:{kind}".encode()


def _check_label(kind: str) -> bytes:
    return f"lyra-vault:kek-check:{kind}".encode()


def _data_key_ad(version: int) -> bytes:
    return f"lyra-vault:data-key:{version}".encode()


def _secret_ad(credential_id: str, version: int) -> bytes:
    return f"{credential_id}:{version}".encode()


# -- errors ----------------------------------------------------------------------------------------

class VaultSealed(PreconditionError):
    """The operation needs the data key but the vault is sealed (FAILED_PRECONDITION)."""

    def __init__(self) -> None:
        super().__init__(SEALED_MESSAGE)


class VaultUninitialized(PreconditionError):
    """The vault has not been initialized yet (FAILED_PRECONDITION); the message says how."""

    def __init__(self) -> None:
        super().__init__(UNINITIALIZED_MESSAGE)


class WrongPassphrase(ValidationError):
    """A passphrase that does not unseal the vault (INVALID_ARGUMENT). Already counted.

    Attributes:
        failed_attempts: consecutive failures so far (this one included).
        locked_until_ns: when set (> 0), attempts are refused until then.
    """

    def __init__(self, field: str, failed_attempts: int, locked_until_ns: int) -> None:
        super().__init__(field, "does not unseal the vault")
        self.failed_attempts = failed_attempts
        self.locked_until_ns = locked_until_ns


class UnsealLockedOut(RateLimitedError):
    """Too many wrong passphrases in a row: attempts are refused for ``retry_after_s`` seconds
    (RESOURCE_EXHAUSTED), even with the right passphrase."""


# -- value objects ---------------------------------------------------------------------------------

class VaultState(str, Enum):
    UNINITIALIZED = "UNINITIALIZED"
    SEALED = "SEALED"
    UNSEALED = "UNSEALED"


@dataclass(frozen=True, slots=True)
class VaultStatus:
    """What anyone with ``vault.read`` may know about the vault.

    Attributes:
        state: UNINITIALIZED, SEALED or UNSEALED.
        data_key_version: 0 when uninitialized; increments on :meth:`Vault.rotate_data_key`.
        kdf: the passphrase KDF, e.g. ``"argon2id t=3 m=65536KiB p=4"`` ("" when uninitialized).
        credentials: number of credentials.
        stale_credentials: credentials whose current version is older than ``max_age_days``.
        unsealed_since_ns: when the vault was last unsealed (None unless UNSEALED).
        failed_attempts: consecutive wrong passphrases.
        locked_until_ns: passphrase attempts refused until then (0: not locked).
        key_file_registered: a key file can unseal the vault.
    """

    state: VaultState
    data_key_version: int
    kdf: str
    credentials: int
    stale_credentials: int
    unsealed_since_ns: int | None
    failed_attempts: int
    locked_until_ns: int
    key_file_registered: bool


@dataclass(frozen=True, slots=True, repr=False)
class CredentialSecrets:
    """The secret fields of one exchange credential. ``repr`` never shows a value.

    Attributes:
        api_key, secret: required.
        passphrase: some exchanges (OKX, KuCoin, Coinbase); "" when unused.
        uid: some exchanges (Bitmart ...); "" when unused.
    """

    api_key: str
    secret: str
    passphrase: str = ""
    uid: str = ""

    @property
    def fields(self) -> tuple[str, ...]:
        """Names of the fields that are set, in :data:`SECRET_FIELDS` order."""
        return tuple(name for name in SECRET_FIELDS if getattr(self, name))

    def as_ccxt(self) -> dict[str, str]:
        """ccxt constructor keys: ``apiKey``, ``secret``, ``password``, ``uid`` (only those set)."""
        mapping = {"api_key": "apiKey", "secret": "secret", "passphrase": "password", "uid": "uid"}
        return {mapping[name]: getattr(self, name) for name in self.fields}

    def __repr__(self) -> str:
        return f"CredentialSecrets(<hidden: {', '.join(self.fields)}>)"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class CredentialInfo:
    """Credential metadata (never a secret).

    Attributes:
        credential_id: UUID4 string.
        venue: ccxt exchange id (``binance``).
        label: operator's name for it, unique per venue.
        created_ns: when the credential was created (ns since epoch).
        rotated_ns: when the current version was stored (== created_ns before any rotation).
        version: current version (1, 2, ...).
        fingerprint: first 12 hex digits of SHA-256(api_key) of the current version.
        fields: secret fields set in the current version.
        rotation_pending: a new version awaits :meth:`Vault.confirm_rotation`.
        pending_version, pending_fingerprint: of that version (None / "" otherwise).
        age_days: whole days since ``rotated_ns``.
        stale: the current version is older than ``max_age_days``.
    """

    credential_id: str
    venue: str
    label: str
    created_ns: int
    rotated_ns: int
    version: int
    fingerprint: str
    fields: tuple[str, ...]
    rotation_pending: bool
    pending_version: int | None
    pending_fingerprint: str
    age_days: int
    stale: bool


@dataclass(frozen=True, slots=True)
class CredentialAge:
    """For metrics: age of each credential's current version, in seconds."""

    credential_id: str
    venue: str
    label: str
    age_s: float
    stale: bool


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Attempt(Generic[T]):
    """Outcome of :func:`commit_failed_attempts`: a value, or the counted failure to raise."""

    value: T | None
    failure: WrongPassphrase | None

    def result(self) -> T:
        """The value.

        Raises:
            WrongPassphrase: the attempt failed (its count is already committed).
        """
        if self.failure is not None:
            raise self.failure
        return self.value  # type: ignore[return-value]


def commit_failed_attempts(fn: Callable[..., T], *args: Any, **kwargs: Any) -> Attempt[T]:
    """Run ``fn`` and turn a :class:`WrongPassphrase` into a returned :class:`Attempt`.

    Use it as the engine message for :meth:`Vault.unseal` / :meth:`Vault.change_passphrase`::

        attempt = await engine.call(commit_failed_attempts, vault.unseal, passphrase)
        status = attempt.result()   # raises WrongPassphrase after the count has committed

    A raised exception would roll the message's transaction back, and with it the failure count;
    ``WrongPassphrase`` is only raised after the count was written and nothing else changed, so
    committing is safe. Every other exception propagates (and rolls back) as usual.
    """
    try:
        return Attempt(fn(*args, **kwargs), None)
    except WrongPassphrase as exc:
        return Attempt(None, exc)


# -- validation ------------------------------------------------------------------------------------

def _encodable(value: str, field: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(field, "must be valid Unicode text (no lone surrogates)") from None


def validate_passphrase(passphrase: object, field: str = "passphrase") -> bytes:
    """Check a passphrase and return it NFC-normalised and UTF-8 encoded (what the KDF hashes).

    Rules: a string of 12 to 1024 characters. NFC normalisation (Unicode UAX #15) makes the same
    passphrase typed on different systems derive the same key.

    Raises:
        ValidationError: naming ``field``; the message never contains the passphrase.
    """
    if not isinstance(passphrase, str):
        raise ValidationError(field, "must be a string")
    if len(passphrase) > MAX_PASSPHRASE_LENGTH:
        raise ValidationError(field, f"must be at most {MAX_PASSPHRASE_LENGTH} characters")
    _encodable(passphrase, field)
    normalized = unicodedata.normalize("NFC", passphrase)
    if len(normalized) < MIN_PASSPHRASE_LENGTH:
        raise ValidationError(field, f"must be at least {MIN_PASSPHRASE_LENGTH} characters")
    if len(normalized) > MAX_PASSPHRASE_LENGTH:
        raise ValidationError(field, f"must be at most {MAX_PASSPHRASE_LENGTH} characters")
    return normalized.encode("utf-8")


def _require_credential_id(credential_id: object) -> None:
    if not isinstance(credential_id, str) or not credential_id:
        raise ValidationError("credential_id", "is required")


def validate_venue(venue: object) -> str:
    """A ccxt exchange id: 2-32 characters of ``a-z 0-9 _``.

    Raises:
        ValidationError: field ``venue``.
    """
    if not isinstance(venue, str) or not VENUE_PATTERN.fullmatch(venue):
        raise ValidationError("venue", "must be a ccxt exchange id: 2 to 32 characters of a-z, 0-9, '_' (e.g. \"binance\")")
    return venue


def validate_label(label: object) -> str:
    """1-64 characters, not blank, no control characters.

    Raises:
        ValidationError: field ``label``.
    """
    if not isinstance(label, str):
        raise ValidationError("label", "must be a string")
    if not 1 <= len(label) <= MAX_LABEL_LENGTH:
        raise ValidationError("label", f"must be 1 to {MAX_LABEL_LENGTH} characters")
    _encodable(label, "label")
    if not label.strip():
        raise ValidationError("label", "must not be blank")
    if any(unicodedata.category(ch) == "Cc" for ch in label):
        raise ValidationError("label", "must not contain control characters")
    return label


def validate_secrets(secrets: object) -> CredentialSecrets:
    """Check credential secrets given as :class:`CredentialSecrets` or a mapping with the keys
    ``api_key``, ``secret`` (required, non-empty) and ``passphrase``, ``uid`` (optional; ""/None
    = unused). Each value is a string of at most 4096 characters.

    Raises:
        ValidationError: field ``secrets`` or ``secrets.<name>``; never contains a value.
    """
    if isinstance(secrets, CredentialSecrets):
        values: dict[str, object] = {name: getattr(secrets, name) for name in SECRET_FIELDS}
    elif isinstance(secrets, Mapping):
        unknown = sorted(str(k) for k in secrets if k not in SECRET_FIELDS)
        if unknown:
            raise ValidationError(f"secrets.{unknown[0][:40]}", f"unknown field; expected {', '.join(SECRET_FIELDS)}")
        values = {name: secrets.get(name) for name in SECRET_FIELDS}
    else:
        raise ValidationError("secrets", f"must be a mapping with {', '.join(SECRET_FIELDS)}")
    clean: dict[str, str] = {}
    for name in SECRET_FIELDS:
        field = f"secrets.{name}"
        value = values[name]
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise ValidationError(field, "must be a string")
        if len(value) > MAX_SECRET_LENGTH:
            raise ValidationError(field, f"must be at most {MAX_SECRET_LENGTH} characters")
        _encodable(value, field)
        if name in REQUIRED_SECRET_FIELDS and not value:
            raise ValidationError(field, "is required")
        clean[name] = value
    return CredentialSecrets(**clean)


def _short(text: object, limit: int = 64) -> str:
    value = str(text)
    return value if len(value) <= limit else value[:limit] + "..."


# -- the service -----------------------------------------------------------------------------------

class Vault:
    """Exchange credentials encrypted at rest; the appliance's only holder of their keys.

    Args:
        db: the database (tables of migration 0004).
        journal: every mutation is journaled in its transaction (ids, versions, fingerprints only).
        clock: wall-clock time source (credential ages, lockouts).
        kdf_params: Argon2id parameters for *new* passphrase wraps (initialize, change); existing
            wraps keep the parameters stored with them. Default
            :data:`~appliance.security.crypto.ARGON2ID_PRODUCTION` (t=3, m=64 MiB, p=4, ~0.1 s);
            tests pass :data:`~appliance.security.crypto.ARGON2ID_TEST_ONLY_FAST` explicitly.
        max_age_days: credentials whose current version is older are ``stale``.
        unseal_max_failures: consecutive wrong passphrases before attempts are refused.
        lockout_base_s, lockout_max_s: the first refusal period and its cap (doubling between).

    Methods run on the engine (single writer); each opens its own unit of work (a savepoint when
    the engine's message transaction is open). Errors are raised before anything changes, except
    :class:`WrongPassphrase` which is raised after the failure count is written (see
    :func:`commit_failed_attempts`).
    """

    def __init__(self, db: Database, journal: Journal, clock: Clock, *,
                 kdf_params: Argon2idParams = ARGON2ID_PRODUCTION, max_age_days: int = 90,
                 unseal_max_failures: int = 5, lockout_base_s: float = LOCKOUT_BASE_S,
                 lockout_max_s: float = LOCKOUT_MAX_S) -> None:
        if max_age_days < 1:
            raise ValueError("max_age_days must be >= 1")
        if unseal_max_failures < 1:
            raise ValueError("unseal_max_failures must be >= 1")
        self.db = db
        self.journal = journal
        self.clock = clock
        self.kdf_params = kdf_params
        self.max_age_days = max_age_days
        self.unseal_max_failures = unseal_max_failures
        self.lockout_base_s = lockout_base_s
        self.lockout_max_s = lockout_max_s
        self._root: SecretKey | None = None
        self._data: SecretKey | None = None
        self._data_version = 0
        self._unsealed_since_ns: int | None = None

    # -- infrastructure -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _unit(self) -> Iterator[None]:
        """A transaction (a savepoint when nested); journal entries reach listeners after commit."""
        outermost = self.db.conn.getautocommit()
        try:
            with self.db.transaction():
                yield
        except BaseException:
            if outermost:
                self.journal.discard_uncommitted()
            raise
        if outermost:
            self.journal.flush_committed()

    def _journal(self, type_: str, aggregate: str, aggregate_id: str, payload: dict) -> None:
        self.journal.append(self.clock.now_ns(), type_, aggregate, aggregate_id, payload)

    def _state_row(self) -> tuple[int, int, int, int] | None:
        """(data_key_version, failed_attempts, last_failure_ns, locked_until_ns) or None."""
        return self.db.query_one(
            "SELECT data_key_version, failed_attempts, last_failure_ns, locked_until_ns FROM vault_state WHERE id=1")

    def _unseal_record(self, kind: str) -> tuple | None:
        return self.db.query_one(
            "SELECT kdf, kdf_time_cost, kdf_memory_kib, kdf_parallelism, salt, verifier, nonce, wrapped_key "
            "FROM vault_unseal_keys WHERE kind=?", (kind,))

    def _require_initialized(self) -> tuple[int, int, int, int]:
        row = self._state_row()
        if row is None:
            self._forget_keys()
            raise VaultUninitialized()
        return row

    def _require_unsealed(self) -> None:
        self._require_initialized()
        if self._data is None or self._root is None:
            raise VaultSealed()

    def _forget_keys(self) -> None:
        for key in (self._root, self._data):
            if key is not None:
                key.wipe()
        self._root = None
        self._data = None
        self._data_version = 0
        self._unsealed_since_ns = None

    # -- state ----------------------------------------------------------------------------------
    @property
    def state(self) -> VaultState:
        """UNINITIALIZED (no vault in the database), SEALED or UNSEALED."""
        if self._state_row() is None:
            return VaultState.UNINITIALIZED
        return VaultState.UNSEALED if self._data is not None else VaultState.SEALED

    def status(self) -> VaultStatus:
        """The vault's state and counts (never a secret). Works in every state."""
        row = self._state_row()
        state = self.state
        if row is None:
            return VaultStatus(state, 0, "", 0, 0, None, 0, 0, False)
        record = self._unseal_record(_PASSPHRASE)
        kdf_text = f"argon2id t={record[1]} m={record[2]}KiB p={record[3]}" if record is not None else ""
        count = self.db.scalar("SELECT COUNT(*) FROM vault_credentials")
        stale_before = self.clock.now_ns() - self.max_age_days * NS_PER_DAY
        stale = self.db.scalar(
            "SELECT COUNT(*) FROM vault_credentials c JOIN vault_secret_versions v "
            "ON v.credential_id=c.credential_id AND v.version=c.current_version WHERE v.created_ns < ?",
            (stale_before,))
        key_file = self.db.scalar("SELECT COUNT(*) FROM vault_unseal_keys WHERE kind=?", (_KEY_FILE,))
        return VaultStatus(state, row[0], kdf_text, count, stale,
                           self._unsealed_since_ns if state is VaultState.UNSEALED else None,
                           row[1], row[3], bool(key_file))

    # -- lifecycle --------------------------------------------------------------------------------
    def initialize(self, passphrase: str, *, actor: str = "system") -> VaultStatus:
        """Create the vault: random root and data keys, the root key wrapped under the
        passphrase's Argon2id KEK. Leaves the vault UNSEALED.

        Args:
            passphrase: 12-1024 characters (NFC-normalised before hashing).
            actor: who asked (journaled).

        Returns:
            The new status (UNSEALED, data key version 1).

        Raises:
            ValidationError: ``passphrase`` breaks the rules.
            PreconditionError: the vault is initialized already.
        """
        secret = validate_passphrase(passphrase)
        if self._state_row() is not None:
            raise PreconditionError("vault is initialized already; to change the passphrase use "
                                    "ChangeVaultPassphrase (`lyractl vault change-passphrase`)")
        now = self.clock.now_ns()
        params = self.kdf_params
        root = SecretKey(random_key())
        data = SecretKey(random_key())
        try:
            salt = random_salt()
            kek = bytearray(derive_key(secret, salt, params))
            try:
                nonce, wrapped = aead_encrypt(kek, bytes(root.material()), _root_ad(_PASSPHRASE))
                verifier = key_check_value(kek, _check_label(_PASSPHRASE))
            finally:
                wipe(kek)
            dk_nonce, dk_wrapped = aead_encrypt(root.material(), bytes(data.material()), _data_key_ad(1))
            with self._unit():
                self.db.execute("INSERT INTO vault_state(id, data_key_version, initialized_ns) VALUES (1, 1, ?)", (now,))
                self._write_passphrase_record(params, salt, verifier, nonce, wrapped, now)
                self.db.execute("INSERT INTO vault_data_keys(version, nonce, wrapped_key, created_ns) VALUES (1,?,?,?)",
                                (dk_nonce, dk_wrapped, now))
                self._journal("VaultInitialized", _AGG_VAULT, _AGG_VAULT,
                              {"data_key_version": 1, "kdf": params.describe(), "actor": actor})
        except BaseException:
            root.wipe()
            data.wipe()
            raise
        self._install_keys(root, data, 1, now)
        log.info("vault initialized (%s); unsealed", params.describe())
        return self.status()

    def _write_passphrase_record(self, params: Argon2idParams, salt: bytes, verifier: bytes, nonce: bytes,
                                 wrapped: bytes, now: int) -> None:
        self.db.execute(
            "INSERT INTO vault_unseal_keys(kind, kdf, kdf_time_cost, kdf_memory_kib, kdf_parallelism, salt, verifier, "
            "nonce, wrapped_key, note, created_ns) VALUES (?, 'argon2id', ?, ?, ?, ?, ?, ?, ?, '', ?) "
            "ON CONFLICT(kind) DO UPDATE SET kdf=excluded.kdf, kdf_time_cost=excluded.kdf_time_cost, "
            "kdf_memory_kib=excluded.kdf_memory_kib, kdf_parallelism=excluded.kdf_parallelism, salt=excluded.salt, "
            "verifier=excluded.verifier, nonce=excluded.nonce, wrapped_key=excluded.wrapped_key, "
            "created_ns=excluded.created_ns",
            (_PASSPHRASE, params.time_cost, params.memory_kib, params.parallelism, salt, verifier, nonce, wrapped, now))

    def _install_keys(self, root: SecretKey, data: SecretKey, version: int, now: int) -> None:
        if self._root is not None and self._root is not root:
            self._root.wipe()
        if self._data is not None and self._data is not data:
            self._data.wipe()
        self._root, self._data, self._data_version = root, data, version
        self._unsealed_since_ns = now

    # -- passphrase checks and the lockout ----------------------------------------------------------
    def _check_lockout(self, row: tuple[int, int, int, int]) -> None:
        now = self.clock.now_ns()
        locked_until = row[3]
        if locked_until > now:
            retry_after_s = (locked_until - now) / NS_PER_SECOND
            raise UnsealLockedOut(
                f"too many wrong vault passphrases ({row[1]} in a row): passphrase attempts are refused for "
                f"{retry_after_s:.0f} s more", retry_after_s)

    def _record_failure(self, row: tuple[int, int, int, int], field: str, actor: str) -> WrongPassphrase:
        """Count a wrong passphrase (own unit of work) and return the error to raise."""
        now = self.clock.now_ns()
        failures = row[1] + 1
        locked_until = 0
        if failures >= self.unseal_max_failures:
            exponent = min(failures - self.unseal_max_failures, 30)
            delay_s = min(self.lockout_base_s * (2 ** exponent), self.lockout_max_s)
            locked_until = now + int(delay_s * NS_PER_SECOND)
        with self._unit():
            self.db.execute("UPDATE vault_state SET failed_attempts=?, last_failure_ns=?, locked_until_ns=? WHERE id=1",
                            (failures, now, locked_until))
            self._journal("VaultUnsealFailed", _AGG_VAULT, _AGG_VAULT,
                          {"failed_attempts": failures, "locked_until_ns": locked_until, "field": field, "actor": actor})
        log.warning("vault: wrong passphrase (%d in a row)%s", failures,
                    f"; attempts refused for {(locked_until - now) / NS_PER_SECOND:.0f} s" if locked_until else "")
        return WrongPassphrase(field, failures, locked_until)

    def _reset_failures(self) -> None:
        self.db.execute("UPDATE vault_state SET failed_attempts=0, locked_until_ns=0 WHERE id=1 AND "
                        "(failed_attempts<>0 OR locked_until_ns<>0)")

    def _stored_params(self, record: tuple, kind: str) -> Argon2idParams:
        if record[0] != "argon2id":
            raise IntegrityError(f"vault key record {kind!r}: unknown KDF {record[0]!r}")
        try:
            return Argon2idParams(record[1], record[2], record[3])
        except (ValueError, TypeError):
            raise IntegrityError(f"vault key record {kind!r}: stored Argon2id parameters are out of range "
                                 "(modified in the database)") from None

    def _passphrase_kek(self, secret: bytes, record: tuple) -> bytearray:
        params = self._stored_params(record, _PASSPHRASE)
        salt = record[4]
        if not isinstance(salt, bytes) or len(salt) < 8:
            raise IntegrityError(f"vault key record {_PASSPHRASE!r}: salt is malformed (modified in the database)")
        return bytearray(derive_key(secret, salt, params))

    def _unwrap_root(self, kek: bytearray, record: tuple, kind: str) -> SecretKey:
        try:
            raw = aead_decrypt(kek, record[6], record[7], _root_ad(kind))
        except DecryptionFailed:
            raise IntegrityError(
                f"vault key record {kind!r}: the wrapped root key failed authentication although the "
                f"{'passphrase' if kind == _PASSPHRASE else 'key file'} is right (modified in the database); "
                "the vault stays sealed") from None
        if len(raw) != KEY_BYTES:
            raise IntegrityError(f"vault key record {kind!r}: the wrapped root key has the wrong length")
        return SecretKey(raw)

    def _unwrap_data_key(self, root: SecretKey, version: int) -> SecretKey:
        row = self.db.query_one("SELECT nonce, wrapped_key FROM vault_data_keys WHERE version=?", (version,))
        if row is None:
            raise IntegrityError(f"vault data key v{version} is missing from the database; the vault stays sealed")
        try:
            raw = aead_decrypt(root.material(), row[0], row[1], _data_key_ad(version))
        except DecryptionFailed:
            raise IntegrityError(f"vault data key v{version}: the wrapped data key failed authentication "
                                 "(modified in the database); the vault stays sealed") from None
        if len(raw) != KEY_BYTES:
            raise IntegrityError(f"vault data key v{version}: wrong length")
        return SecretKey(raw)

    def _open_with_kek(self, kek: bytearray, record: tuple, kind: str, version: int) -> tuple[SecretKey, SecretKey]:
        root = self._unwrap_root(kek, record, kind)
        try:
            data = self._unwrap_data_key(root, version)
        except BaseException:
            root.wipe()
            raise
        return root, data

    # -- unseal / seal ------------------------------------------------------------------------------
    def unseal(self, passphrase: str, *, actor: str = "system") -> VaultStatus:
        """Unseal with the operator's passphrase (derives the KEK with the stored Argon2id parameters).

        Already UNSEALED: the passphrase is still checked (and counted); the keys are kept.

        Args:
            passphrase: 12-1024 characters.
            actor: who asked (journaled).

        Returns:
            The status (UNSEALED).

        Raises:
            ValidationError: ``passphrase`` breaks the length rules (not counted: it cannot be right).
            VaultUninitialized: nothing to unseal.
            UnsealLockedOut: too many wrong passphrases recently (nothing checked, nothing counted).
            WrongPassphrase: field ``passphrase``, "does not unseal the vault"; counted in the
                database *before* raising - inside a caller's transaction use
                :func:`commit_failed_attempts`.
            IntegrityError: the passphrase is right but a stored key record was modified; names the
                record; the vault stays sealed.
        """
        secret = validate_passphrase(passphrase)
        row = self._require_initialized()
        self._check_lockout(row)
        record = self._unseal_record(_PASSPHRASE)
        if record is None:
            raise IntegrityError(f"vault key record {_PASSPHRASE!r} is missing from the database")
        kek = self._passphrase_kek(secret, record)
        try:
            if not constant_time_equal(key_check_value(kek, _check_label(_PASSPHRASE)), record[5] or b""):
                raise self._record_failure(row, "passphrase", actor)
            root, data = self._open_with_kek(kek, record, _PASSPHRASE, row[0])
        finally:
            wipe(kek)
        return self._finish_unseal(root, data, row[0], "passphrase", actor)

    def _finish_unseal(self, root: SecretKey, data: SecretKey, version: int, method: str, actor: str) -> VaultStatus:
        if self._data is not None:  # already unsealed: keep the installed keys
            root.wipe()
            data.wipe()
            with self._unit():
                self._reset_failures()
            return self.status()
        now = self.clock.now_ns()
        try:
            with self._unit():
                self._reset_failures()
                self._journal("VaultUnsealed", _AGG_VAULT, _AGG_VAULT, {"method": method, "actor": actor})
        except BaseException:
            root.wipe()
            data.wipe()
            raise
        self._install_keys(root, data, version, now)
        log.info("vault unsealed (%s)", method)
        return self.status()

    def unseal_with_key_file(self, path: str | os.PathLike, *, actor: str = "system") -> VaultStatus:
        """Unseal from a key file (unattended boot, e.g. systemd ``LoadCredential=``).

        The file must be a regular file of exactly 32 bytes, not accessible to group or others
        (mode 0600 or 0400). The passphrase lockout does not apply (the file cannot be guessed).

        Returns:
            The status (UNSEALED).

        Raises:
            VaultUninitialized: nothing to unseal.
            PreconditionError: no key file is registered; the file cannot be read; its mode gives
                group/others access (names the path and the mode).
            ValidationError: field ``key_file``: not 32 bytes, or not the registered key file.
            IntegrityError: right key file but a stored key record was modified.
        """
        row = self._require_initialized()
        record = self._unseal_record(_KEY_FILE)
        if record is None:
            raise PreconditionError("no key file is registered with the vault: unseal with the passphrase, then "
                                    "create one (Vault.create_key_file)")
        key = read_key_file(path)
        try:
            if not constant_time_equal(key_check_value(key, _check_label(_KEY_FILE)), record[5] or b""):
                raise ValidationError("key_file", f"{path} does not unseal the vault (not the registered key file)")
            root, data = self._open_with_kek(key, record, _KEY_FILE, row[0])
        finally:
            wipe(key)
        return self._finish_unseal(root, data, row[0], "key_file", actor)

    def seal(self, *, actor: str = "system") -> VaultStatus:
        """Wipe the root and data keys from memory (zeroed bytearrays; see the module docstring for
        the limits). Idempotent when already SEALED.

        Raises:
            VaultUninitialized: there is no vault.
        """
        self._require_initialized()
        if self._data is None:
            return self.status()
        try:
            with self._unit():
                self._journal("VaultSealed", _AGG_VAULT, _AGG_VAULT, {"actor": actor})
        finally:
            self._forget_keys()
        log.info("vault sealed")
        return self.status()

    def change_passphrase(self, current: str, new: str, *, actor: str = "system") -> VaultStatus:
        """Re-wrap the root key under a KEK derived from ``new`` (new random salt, current
        ``kdf_params``). Secrets are untouched; the vault stays UNSEALED.

        Raises:
            ValidationError: ``current_passphrase`` / ``new_passphrase`` break the rules, or
                ``new_passphrase`` equals the current one.
            VaultUninitialized, VaultSealed: wrong state.
            UnsealLockedOut: too many wrong passphrases recently.
            WrongPassphrase: field ``current_passphrase``; counted like an unseal failure (use
                :func:`commit_failed_attempts` inside a transaction).
            IntegrityError: the stored passphrase record was modified.
        """
        current_secret = validate_passphrase(current, "current_passphrase")
        new_secret = validate_passphrase(new, "new_passphrase")
        if constant_time_equal(current_secret, new_secret):
            raise ValidationError("new_passphrase", "must differ from the current passphrase")
        row = self._require_initialized()
        if self._data is None:
            raise VaultSealed()
        self._check_lockout(row)
        record = self._unseal_record(_PASSPHRASE)
        if record is None:
            raise IntegrityError(f"vault key record {_PASSPHRASE!r} is missing from the database")
        kek = self._passphrase_kek(current_secret, record)
        try:
            if not constant_time_equal(key_check_value(kek, _check_label(_PASSPHRASE)), record[5] or b""):
                raise self._record_failure(row, "current_passphrase", actor)
            stored_root = self._unwrap_root(kek, record, _PASSPHRASE)
        finally:
            wipe(kek)
        try:
            if not constant_time_equal(bytes(stored_root.material()), bytes(self._root.material())):  # type: ignore[union-attr]
                raise IntegrityError(f"vault key record {_PASSPHRASE!r} wraps another root key than the one in use")
        finally:
            stored_root.wipe()
        params = self.kdf_params
        salt = random_salt()
        new_kek = bytearray(derive_key(new_secret, salt, params))
        try:
            nonce, wrapped = aead_encrypt(new_kek, bytes(self._root.material()), _root_ad(_PASSPHRASE))  # type: ignore[union-attr]
            verifier = key_check_value(new_kek, _check_label(_PASSPHRASE))
        finally:
            wipe(new_kek)
        with self._unit():
            self._write_passphrase_record(params, salt, verifier, nonce, wrapped, self.clock.now_ns())
            self._reset_failures()
            self._journal("VaultPassphraseChanged", _AGG_VAULT, _AGG_VAULT, {"kdf": params.describe(), "actor": actor})
        log.info("vault passphrase changed (%s)", params.describe())
        return self.status()

    def rotate_data_key(self, *, actor: str = "system") -> VaultStatus:
        """Generate a new data key and re-encrypt every secret version (current and pending) with
        it, fresh nonces, in ONE transaction; ``data_key_version`` increments and the previous
        data key is deleted. Stays UNSEALED.

        Raises:
            VaultUninitialized, VaultSealed: wrong state.
            IntegrityError: a stored secret fails to decrypt (names it); nothing changed.
        """
        self._require_unsealed()
        old_version = self._data_version
        new_version = old_version + 1
        rows = self.db.query("SELECT credential_id, version, data_key_version, nonce, ciphertext "
                             "FROM vault_secret_versions ORDER BY credential_id, version")
        new_key = SecretKey(random_key())
        try:
            updates = []
            for credential_id, version, dk_version, nonce, ciphertext in rows:
                plaintext = self._decrypt_row(credential_id, version, dk_version, nonce, ciphertext)
                new_nonce, new_ct = aead_encrypt(new_key.material(), plaintext, _secret_ad(credential_id, version))
                updates.append((new_version, new_nonce, new_ct, credential_id, version))
            dk_nonce, dk_wrapped = aead_encrypt(self._root.material(), bytes(new_key.material()),  # type: ignore[union-attr]
                                                _data_key_ad(new_version))
            now = self.clock.now_ns()
            with self._unit():
                for update in updates:
                    self.db.execute("UPDATE vault_secret_versions SET data_key_version=?, nonce=?, ciphertext=? "
                                    "WHERE credential_id=? AND version=?", update)
                self.db.execute("DELETE FROM vault_data_keys")
                self.db.execute("INSERT INTO vault_data_keys(version, nonce, wrapped_key, created_ns) VALUES (?,?,?,?)",
                                (new_version, dk_nonce, dk_wrapped, now))
                self.db.execute("UPDATE vault_state SET data_key_version=? WHERE id=1", (new_version,))
                self._journal("VaultDataKeyRotated", _AGG_VAULT, _AGG_VAULT,
                              {"data_key_version": new_version, "previous_version": old_version,
                               "secrets_reencrypted": len(updates), "actor": actor})
        except BaseException:
            new_key.wipe()
            raise
        old = self._data
        self._data, self._data_version = new_key, new_version
        if old is not None:
            old.wipe()
        log.info("vault data key rotated to v%d (%d secret versions re-encrypted)", new_version, len(updates))
        return self.status()

    # -- key file ---------------------------------------------------------------------------------
    def create_key_file(self, path: str | os.PathLike, *, actor: str = "system") -> Path:
        """Write a new key file (32 random bytes, mode 0600, created exclusively: never overwrites)
        and store the root key wrapped under it, so :meth:`unseal_with_key_file` works at boot.
        Replaces a previously registered key file (the old file stops working).

        Returns:
            The path written.

        Raises:
            VaultUninitialized, VaultSealed: wrong state.
            PreconditionError: the file exists already or cannot be created (names the path).
        """
        self._require_unsealed()
        target = Path(path)
        key = bytearray(random_key())
        try:
            try:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
            except FileExistsError:
                raise PreconditionError(f"key file {target} exists already: refusing to overwrite it "
                                        "(remove it first or choose another path)") from None
            except OSError as exc:
                raise PreconditionError(f"cannot create key file {target}: {exc.strerror}") from None
            try:
                try:
                    os.fchmod(fd, 0o600)
                    os.write(fd, bytes(key))
                    os.fsync(fd)
                finally:
                    os.close(fd)
                nonce, wrapped = aead_encrypt(key, bytes(self._root.material()), _root_ad(_KEY_FILE))  # type: ignore[union-attr]
                verifier = key_check_value(key, _check_label(_KEY_FILE))
                replaced = bool(self.db.scalar("SELECT COUNT(*) FROM vault_unseal_keys WHERE kind=?", (_KEY_FILE,)))
                with self._unit():
                    self.db.execute(
                        "INSERT OR REPLACE INTO vault_unseal_keys(kind, kdf, salt, verifier, nonce, wrapped_key, note, "
                        "created_ns) VALUES (?, 'none', X'', ?, ?, ?, ?, ?)",
                        (_KEY_FILE, verifier, nonce, wrapped, str(target), self.clock.now_ns()))
                    self._journal("VaultKeyFileCreated", _AGG_VAULT, _AGG_VAULT,
                                  {"path": str(target), "replaced": replaced, "actor": actor})
            except BaseException as exc:
                with contextlib.suppress(OSError):
                    target.unlink()
                if isinstance(exc, OSError):
                    raise PreconditionError(f"cannot write key file {target}: {exc.strerror}") from None
                raise
        finally:
            wipe(key)
        log.info("vault key file created at %s%s", target, " (replaces the previous one)" if replaced else "")
        return target

    def remove_key_file_wrap(self, *, actor: str = "system") -> bool:
        """Revoke the key file: delete the root key wrapped under it (the file itself is left for
        the operator to shred). Works sealed or unsealed.

        Returns:
            True if a key file was registered.

        Raises:
            VaultUninitialized: there is no vault.
        """
        self._require_initialized()
        if not self.db.scalar("SELECT COUNT(*) FROM vault_unseal_keys WHERE kind=?", (_KEY_FILE,)):
            return False
        with self._unit():
            self.db.execute("DELETE FROM vault_unseal_keys WHERE kind=?", (_KEY_FILE,))
            self._journal("VaultKeyFileRemoved", _AGG_VAULT, _AGG_VAULT, {"actor": actor})
        log.info("vault key file revoked")
        return True

    # -- secrets encryption -------------------------------------------------------------------------
    def _encrypt_secrets(self, credential_id: str, version: int, secrets: CredentialSecrets) -> tuple[bytes, bytes]:
        blob = json.dumps({name: getattr(secrets, name) for name in SECRET_FIELDS}, ensure_ascii=False,
                          separators=(",", ":"), sort_keys=True).encode("utf-8")
        padded = blob + b" " * (-len(blob) % PLAINTEXT_BLOCK)
        return aead_encrypt(self._data.material(), padded, _secret_ad(credential_id, version))  # type: ignore[union-attr]

    def _decrypt_row(self, credential_id: str, version: int, dk_version: int, nonce: bytes, ciphertext: bytes) -> bytes:
        if dk_version != self._data_version:
            raise IntegrityError(f"credential {credential_id} version {version}: encrypted under data key "
                                 f"v{dk_version} but the vault holds v{self._data_version}; nothing was decrypted")
        try:
            return aead_decrypt(self._data.material(), nonce, ciphertext, _secret_ad(credential_id, version))  # type: ignore[union-attr]
        except DecryptionFailed:
            raise IntegrityError(f"credential {credential_id} version {version}: stored secret failed authentication "
                                 "(modified, or moved from another credential or version); nothing was decrypted") from None

    # -- credentials ------------------------------------------------------------------------------
    _INFO_SQL = (
        "SELECT c.credential_id, c.venue, c.label, c.created_ns, c.current_version, c.pending_version, "
        "cur.created_ns, cur.fingerprint, cur.fields, pen.fingerprint "
        "FROM vault_credentials c "
        "JOIN vault_secret_versions cur ON cur.credential_id=c.credential_id AND cur.version=c.current_version "
        "LEFT JOIN vault_secret_versions pen ON pen.credential_id=c.credential_id AND pen.version=c.pending_version ")

    def _info(self, row: tuple, now: int) -> CredentialInfo:
        age_ns = max(now - row[6], 0)
        return CredentialInfo(
            credential_id=row[0], venue=row[1], label=row[2], created_ns=row[3], rotated_ns=row[6], version=row[4],
            fingerprint=row[7], fields=tuple(f for f in row[8].split(",") if f), rotation_pending=row[5] is not None,
            pending_version=row[5], pending_fingerprint=row[9] or "", age_days=age_ns // NS_PER_DAY,
            stale=age_ns > self.max_age_days * NS_PER_DAY,
        )

    def _credential_row(self, credential_id: object) -> tuple:
        _require_credential_id(credential_id)
        row = self.db.query_one(self._INFO_SQL + "WHERE c.credential_id=?", (credential_id,))
        if row is None:
            raise NotFoundError(f"credential {_short(credential_id)!r} not found")
        return row

    def list_credentials(self, venue: str = "") -> list[CredentialInfo]:
        """Metadata of every credential (of ``venue`` when given), ordered by venue then label.
        Works sealed (metadata is stored in clear); empty when uninitialized."""
        now = self.clock.now_ns()
        if venue:
            venue = validate_venue(venue)
            rows = self.db.query(self._INFO_SQL + "WHERE c.venue=? ORDER BY c.venue, c.label", (venue,))
        else:
            rows = self.db.query(self._INFO_SQL + "ORDER BY c.venue, c.label")
        return [self._info(r, now) for r in rows]

    def get_credential(self, credential_id: str) -> CredentialInfo:
        """Metadata of one credential. Works sealed.

        Raises:
            ValidationError: ``credential_id`` empty.
            NotFoundError: no such credential.
        """
        return self._info(self._credential_row(credential_id), self.clock.now_ns())

    def create_credential(self, venue: str, label: str, secrets: Mapping[str, str | None] | CredentialSecrets,
                          *, actor: str = "system") -> CredentialInfo:
        """Store a new exchange credential (version 1), encrypted under the data key.

        Args:
            venue: ccxt exchange id, ``[a-z0-9_]{2,32}``.
            label: 1-64 characters, unique per venue.
            secrets: ``api_key`` and ``secret`` required; ``passphrase``, ``uid`` optional; each <= 4096
                characters (see :func:`validate_secrets`).
            actor: who asked (journaled).

        Returns:
            Its metadata (fingerprint = first 12 hex of SHA-256(api_key)).

        Raises:
            ValidationError: ``venue``, ``label``, ``secrets.<field>``.
            VaultUninitialized, VaultSealed: wrong state.
            AlreadyExistsError: a credential with that label exists for the venue.
        """
        venue = validate_venue(venue)
        label = validate_label(label)
        clean = validate_secrets(secrets)
        self._require_unsealed()
        existing = self.db.scalar("SELECT credential_id FROM vault_credentials WHERE venue=? AND label=?", (venue, label))
        if existing is not None:
            raise AlreadyExistsError(f"a credential labelled {label!r} exists already for venue {venue!r} ({existing})")
        credential_id = str(uuid.uuid4())
        fingerprint = sha256_fingerprint(clean.api_key)
        fields = ",".join(clean.fields)
        nonce, ciphertext = self._encrypt_secrets(credential_id, 1, clean)
        now = self.clock.now_ns()
        with self._unit():
            self.db.execute("INSERT INTO vault_credentials(credential_id, venue, label, created_ns, current_version, "
                            "pending_version, updated_ns) VALUES (?,?,?,?,1,NULL,?)", (credential_id, venue, label, now, now))
            self.db.execute("INSERT INTO vault_secret_versions(credential_id, version, created_ns, fingerprint, fields, "
                            "data_key_version, nonce, ciphertext) VALUES (?,1,?,?,?,?,?,?)",
                            (credential_id, now, fingerprint, fields, self._data_version, nonce, ciphertext))
            self._journal("CredentialCreated", _AGG_CREDENTIAL, credential_id,
                          {"credential_id": credential_id, "venue": venue, "label": label, "version": 1,
                           "fingerprint": fingerprint, "fields": list(clean.fields), "actor": actor})
        log.info("vault credential %s created (venue %s, fingerprint %s)", credential_id, venue, fingerprint)
        return self.get_credential(credential_id)

    def rotate_credential(self, credential_id: str, secrets: Mapping[str, str | None] | CredentialSecrets,
                          *, actor: str = "system") -> CredentialInfo:
        """Store new secrets as a *pending* version beside the current one; the current version
        stays in use until :meth:`confirm_rotation` (or is kept by :meth:`abort_rotation`).

        Raises:
            ValidationError: ``credential_id``, ``secrets.<field>``.
            VaultUninitialized, VaultSealed: wrong state.
            NotFoundError: no such credential.
            PreconditionError: a rotation is pending already.
        """
        clean = validate_secrets(secrets)
        _require_credential_id(credential_id)  # bad input is named before any state check
        self._require_unsealed()
        row = self._credential_row(credential_id)
        if row[5] is not None:
            raise PreconditionError(f"credential {row[0]} has a rotation pending (version {row[5]}): confirm or abort "
                                    "it first")
        version = row[4] + 1
        fingerprint = sha256_fingerprint(clean.api_key)
        nonce, ciphertext = self._encrypt_secrets(row[0], version, clean)
        now = self.clock.now_ns()
        with self._unit():
            self.db.execute("DELETE FROM vault_secret_versions WHERE credential_id=? AND version=?", (row[0], version))
            self.db.execute("INSERT INTO vault_secret_versions(credential_id, version, created_ns, fingerprint, fields, "
                            "data_key_version, nonce, ciphertext) VALUES (?,?,?,?,?,?,?,?)",
                            (row[0], version, now, fingerprint, ",".join(clean.fields), self._data_version, nonce,
                             ciphertext))
            self.db.execute("UPDATE vault_credentials SET pending_version=?, updated_ns=? WHERE credential_id=?",
                            (version, now, row[0]))
            self._journal("CredentialRotationStarted", _AGG_CREDENTIAL, row[0],
                          {"credential_id": row[0], "venue": row[1], "label": row[2], "version": version,
                           "previous_version": row[4], "fingerprint": fingerprint, "fields": list(clean.fields),
                           "actor": actor})
        log.info("vault credential %s: rotation to version %d pending (fingerprint %s)", row[0], version, fingerprint)
        return self.get_credential(row[0])

    def _with_pending_rotation(self, credential_id: str, hint: str = "") -> tuple:
        _require_credential_id(credential_id)  # bad input is named before any state check
        self._require_unsealed()
        row = self._credential_row(credential_id)
        if row[5] is None:
            raise PreconditionError(f"credential {row[0]} has no rotation pending{hint}")
        return row

    def confirm_rotation(self, credential_id: str, *, actor: str = "system") -> CredentialInfo:
        """Make the pending version current and delete the previous one.

        Raises:
            ValidationError: ``credential_id`` empty.
            VaultUninitialized, VaultSealed: wrong state.
            NotFoundError: no such credential.
            PreconditionError: no rotation is pending.
        """
        row = self._with_pending_rotation(credential_id, " (RotateCredential first)")
        now = self.clock.now_ns()
        with self._unit():
            self.db.execute("UPDATE vault_credentials SET current_version=?, pending_version=NULL, updated_ns=? "
                            "WHERE credential_id=?", (row[5], now, row[0]))
            self.db.execute("DELETE FROM vault_secret_versions WHERE credential_id=? AND version=?", (row[0], row[4]))
            self._journal("CredentialRotationConfirmed", _AGG_CREDENTIAL, row[0],
                          {"credential_id": row[0], "version": row[5], "previous_version": row[4],
                           "fingerprint": row[9], "actor": actor})
        log.info("vault credential %s: version %d is current", row[0], row[5])
        return self.get_credential(row[0])

    def abort_rotation(self, credential_id: str, *, actor: str = "system") -> CredentialInfo:
        """Drop the pending version; the current one stays.

        Raises:
            ValidationError: ``credential_id`` empty.
            VaultUninitialized, VaultSealed: wrong state.
            NotFoundError: no such credential.
            PreconditionError: no rotation is pending.
        """
        row = self._with_pending_rotation(credential_id)
        now = self.clock.now_ns()
        with self._unit():
            self.db.execute("UPDATE vault_credentials SET pending_version=NULL, updated_ns=? WHERE credential_id=?",
                            (now, row[0]))
            self.db.execute("DELETE FROM vault_secret_versions WHERE credential_id=? AND version=?", (row[0], row[5]))
            self._journal("CredentialRotationAborted", _AGG_CREDENTIAL, row[0],
                          {"credential_id": row[0], "version": row[5], "current_version": row[4], "actor": actor})
        log.info("vault credential %s: pending version %d dropped", row[0], row[5])
        return self.get_credential(row[0])

    def delete_credential(self, credential_id: str, *, actor: str = "system") -> None:
        """Delete a credential and every stored version of it.

        Raises:
            ValidationError: ``credential_id`` empty.
            VaultUninitialized, VaultSealed: wrong state (a sealed vault is not changed).
            NotFoundError: no such credential.
        """
        _require_credential_id(credential_id)  # bad input is named before any state check
        self._require_unsealed()
        row = self._credential_row(credential_id)
        with self._unit():
            versions = self.db.scalar("SELECT COUNT(*) FROM vault_secret_versions WHERE credential_id=?", (row[0],))
            self.db.execute("DELETE FROM vault_secret_versions WHERE credential_id=?", (row[0],))
            self.db.execute("DELETE FROM vault_credentials WHERE credential_id=?", (row[0],))
            self._journal("CredentialDeleted", _AGG_CREDENTIAL, row[0],
                          {"credential_id": row[0], "venue": row[1], "label": row[2], "versions_deleted": versions,
                           "actor": actor})
        log.info("vault credential %s deleted", row[0])

    def reveal(self, credential_id: str, *, pending: bool = False) -> CredentialSecrets:
        """Decrypt a credential's secrets, for the live exchange adapters ONLY.

        NEVER expose the result through any RPC, log line, journal payload, metric or error
        message. No servicer calls this. The returned object's ``repr`` hides the values.

        Args:
            credential_id: the credential.
            pending: decrypt the pending version instead of the current one (to test new keys
                against the exchange before :meth:`confirm_rotation`).

        Returns:
            The secrets of the current (or pending) version.

        Raises:
            ValidationError: ``credential_id`` empty.
            VaultUninitialized, VaultSealed: wrong state.
            NotFoundError: no such credential, or ``pending`` without a pending version.
            IntegrityError: the stored ciphertext, nonce or associated record was modified
                (names the credential and version); nothing was decrypted.
        """
        self._require_unsealed()
        row = self._credential_row(credential_id)
        version = row[5] if pending else row[4]
        if version is None:
            raise NotFoundError(f"credential {row[0]} has no pending version")
        stored = self.db.query_one("SELECT data_key_version, nonce, ciphertext FROM vault_secret_versions "
                                   "WHERE credential_id=? AND version=?", (row[0], version))
        if stored is None:
            raise IntegrityError(f"credential {row[0]} version {version}: the encrypted secret is missing")
        plaintext = self._decrypt_row(row[0], version, stored[0], stored[1], stored[2])
        try:
            values = json.loads(plaintext.decode("utf-8"))
            if not isinstance(values, dict) or set(values) != set(SECRET_FIELDS) or \
                    not all(isinstance(v, str) for v in values.values()):
                raise ValueError
        except ValueError:
            raise IntegrityError(f"credential {row[0]} version {version}: decrypted secret is malformed") from None
        return CredentialSecrets(**{name: values[name] for name in SECRET_FIELDS})

    def credential_ages(self) -> list[CredentialAge]:
        """Age of each credential's current version (for metrics such as
        ``lyra_vault_credential_age_seconds``). Works sealed."""
        now = self.clock.now_ns()
        return [CredentialAge(i.credential_id, i.venue, i.label, max(now - i.rotated_ns, 0) / NS_PER_SECOND, i.stale)
                for i in self.list_credentials()]


# -- key files ---------------------------------------------------------------------------------------

def read_key_file(path: str | os.PathLike) -> bytearray:
    """Read a vault key file: a regular file of exactly 32 bytes, mode without any group/other
    permission bits (``mode & 0o077 == 0``), checked on the opened descriptor (no race).

    Returns:
        The 32 key bytes in a bytearray (wipe it after use).

    Raises:
        PreconditionError: cannot be opened, not a regular file, or group/world-accessible (names
            the path and the mode).
        ValidationError: field ``key_file``: not exactly 32 bytes. The contents are never shown.
    """
    target = Path(path)
    try:
        fd = os.open(target, os.O_RDONLY)
    except OSError as exc:
        raise PreconditionError(f"key file {target} cannot be opened: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PreconditionError(f"key file {target} is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise PreconditionError(f"key file {target} has mode {mode:04o}: it must not be accessible to group or "
                                    f"others (run `chmod 600 {target}`)")
        data = bytearray()
        while len(data) <= KEY_FILE_BYTES:
            chunk = os.read(fd, KEY_FILE_BYTES + 1 - len(data))
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        raise PreconditionError(f"key file {target} cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) != KEY_FILE_BYTES:
        wipe(data)
        raise ValidationError("key_file", f"{target} must hold exactly {KEY_FILE_BYTES} bytes")
    return data
