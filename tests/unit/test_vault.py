"""The vault: lifecycle, passphrase failures and lockout (persisted), tamper detection, sealed
refusals, passphrase change, data-key rotation, key-file unseal, credential rotation, no
plaintext on disk or in the journal, and property-based input validation."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.engine.clock import NS_PER_DAY, NS_PER_SECOND, SimClock
from appliance.engine.engine import Engine
from appliance.model.errors import (
    AlreadyExistsError,
    IntegrityError,
    NotFoundError,
    PreconditionError,
    RateLimitedError,
    ValidationError,
)
from appliance.security import crypto
from appliance.security.crypto import ARGON2ID_TEST_ONLY_FAST, DecryptionFailed, aead_decrypt
from appliance.security.vault import (
    SEALED_MESSAGE,
    CredentialSecrets,
    UnsealLockedOut,
    Vault,
    VaultSealed,
    VaultState,
    VaultUninitialized,
    WrongPassphrase,
    commit_failed_attempts,
)
from appliance.store.db import Database
from appliance.store.journal import Journal

PASS = "correct horse battery staple"
OTHER = "another long passphrase!"
T0 = 1_700_000_000 * NS_PER_SECOND

BINANCE = {"api_key": "BINANCE-API-KEY-6f1e2d3c4b5a", "secret": "BINANCE-SECRET-9a8b7c6d5e4f3a2b"}
OKX = {"api_key": "OKX-API-KEY-0011223344", "secret": "OKX-SECRET-5566778899", "passphrase": "OKX-PASSPHRASE-aabbcc",
       "uid": "OKX-UID-424242"}


class Env:
    """A database, journal, clock and vault factory on one temp folder."""

    def __init__(self, tmp_path, **vault_kwargs) -> None:
        self.path = tmp_path / "lyra.db"
        self.db = Database(self.path)
        self.journal = Journal(self.db)
        self.clock = SimClock(T0)
        self.kwargs = {"kdf_params": ARGON2ID_TEST_ONLY_FAST, **vault_kwargs}
        self.vault = self.new_vault()

    def new_vault(self, **kwargs) -> Vault:
        """A fresh Vault object on the same database: what a restart sees."""
        return Vault(self.db, self.journal, self.clock, **{**self.kwargs, **kwargs})

    def advance(self, seconds: float) -> None:
        self.clock.advance_to(self.clock.now_ns() + int(seconds * NS_PER_SECOND))

    def rows(self, sql: str, params=()):
        return self.db.query(sql, params)

    def snapshot(self) -> tuple:
        """Everything the vault keeps in the database."""
        return tuple(self.db.query(f"SELECT * FROM {table} ORDER BY 1, 2") for table in (
            "vault_state", "vault_unseal_keys", "vault_data_keys", "vault_credentials", "vault_secret_versions"))


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.db.close()


@pytest.fixture
def ready(env):
    """An initialized, unsealed vault with two credentials."""
    env.vault.initialize(PASS)
    env.binance = env.vault.create_credential("binance", "main", BINANCE)
    env.okx = env.vault.create_credential("okx", "main", OKX)
    return env


def test_crypto_helpers_roundtrip_and_reject_tampering():
    key = crypto.random_key()
    box = crypto.seal_box(key, b"hello", b"ad")
    assert crypto.open_box(key, box, b"ad") == b"hello"
    with pytest.raises(DecryptionFailed):
        crypto.open_box(key, box, b"other ad")
    with pytest.raises(DecryptionFailed):
        crypto.open_box(key, box[:-1] + bytes([box[-1] ^ 1]), b"ad")
    holder = crypto.SecretKey(key)
    buf = holder.material()
    assert "hidden" in repr(holder) and key.hex() not in repr(holder)
    holder.wipe()
    assert buf == bytearray(32) and holder.wiped
    assert crypto.sha256_fingerprint("abc") == hashlib.sha256(b"abc").hexdigest()[:12]
    assert crypto.ARGON2ID_PRODUCTION.describe() == "argon2id t=3 m=65536KiB p=4"
    with pytest.raises(ValueError):
        crypto.Argon2idParams(time_cost=0)


# -- lifecycle ----------------------------------------------------------------------------------------

def test_full_lifecycle(env):
    vault = env.vault
    status = vault.status()
    assert status.state is VaultState.UNINITIALIZED and status.data_key_version == 0 and status.kdf == ""
    for call in (lambda: vault.unseal(PASS), vault.seal, lambda: vault.create_credential("binance", "x", BINANCE),
                 vault.rotate_data_key, lambda: vault.reveal("nope")):
        with pytest.raises(VaultUninitialized, match="lyractl vault init"):
            call()
    assert vault.list_credentials() == []

    status = vault.initialize(PASS)
    assert status.state is VaultState.UNSEALED and status.data_key_version == 1
    assert status.kdf == "argon2id t=1 m=64KiB p=1" and status.unsealed_since_ns == T0
    with pytest.raises(PreconditionError, match="initialized already"):
        vault.initialize(PASS)

    info = vault.create_credential("binance", "main", BINANCE)
    assert info.version == 1 and info.fields == ("api_key", "secret") and not info.rotation_pending
    assert info.fingerprint == hashlib.sha256(BINANCE["api_key"].encode()).hexdigest()[:12]
    assert info.created_ns == info.rotated_ns == T0 and info.age_days == 0 and not info.stale
    secrets = vault.reveal(info.credential_id)
    assert (secrets.api_key, secrets.secret, secrets.passphrase, secrets.uid) == (BINANCE["api_key"], BINANCE["secret"], "", "")
    assert BINANCE["secret"] not in repr(secrets) and BINANCE["api_key"] not in str(secrets)
    assert secrets.as_ccxt() == {"apiKey": BINANCE["api_key"], "secret": BINANCE["secret"]}

    assert vault.seal().state is VaultState.SEALED
    assert vault.seal().state is VaultState.SEALED  # idempotent
    with pytest.raises(VaultSealed):
        vault.reveal(info.credential_id)
    # metadata stays readable while sealed
    assert vault.get_credential(info.credential_id) == info
    assert [i.credential_id for i in vault.list_credentials("binance")] == [info.credential_id]
    assert vault.list_credentials("kraken") == []

    # a restart boots sealed
    restarted = env.new_vault()
    assert restarted.state is VaultState.SEALED and restarted.status().unsealed_since_ns is None
    env.advance(5)
    status = restarted.unseal(PASS)
    assert status.state is VaultState.UNSEALED and status.unsealed_since_ns == T0 + 5 * NS_PER_SECOND
    assert restarted.reveal(info.credential_id).secret == BINANCE["secret"]
    assert restarted.unseal(PASS).unsealed_since_ns == T0 + 5 * NS_PER_SECOND  # already unsealed: keys kept

    restarted.delete_credential(info.credential_id)
    with pytest.raises(NotFoundError):
        restarted.get_credential(info.credential_id)
    assert env.rows("SELECT COUNT(*) FROM vault_secret_versions") == [(0,)]

    types = [e.type for e in env.journal.iter_all()]
    assert types == ["VaultInitialized", "CredentialCreated", "VaultSealed", "VaultUnsealed", "CredentialDeleted"]


def test_passphrase_rules_name_the_field(env):
    for bad, why in (("short", "at least 12"), ("x" * 1025, "at most 1024"), (b"bytes-passphrase", "string"),
                     ("\ud800" * 12, "Unicode")):
        with pytest.raises(ValidationError, match=why) as err:
            env.vault.initialize(bad)
        assert err.value.field == "passphrase"
    assert env.vault.state is VaultState.UNINITIALIZED
    env.vault.initialize("x" * 1024)  # the bound itself is fine
    with pytest.raises(ValidationError) as err:
        env.vault.change_passphrase("x" * 1024, "short")
    assert err.value.field == "new_passphrase"


def test_nfc_equivalent_passphrases_unseal(env):
    env.vault.initialize("caf\u00e9 au lait, s'il vous pla\u00eet")  # precomposed
    env.vault.seal()
    env.vault.unseal("cafe\u0301 au lait, s'il vous pla\u00eet")  # decomposed e + combining acute
    assert env.vault.state is VaultState.UNSEALED


# -- wrong passphrases and the lockout ---------------------------------------------------------------

def test_wrong_passphrase_changes_nothing_but_the_persisted_count(env):
    env.vault.initialize(PASS)
    cred = env.vault.create_credential("binance", "main", BINANCE)
    env.vault.seal()
    before = env.snapshot()
    with pytest.raises(ValidationError, match="passphrase: does not unseal the vault") as err:
        env.vault.unseal(OTHER)
    assert isinstance(err.value, WrongPassphrase) and err.value.field == "passphrase"
    assert err.value.failed_attempts == 1 and err.value.locked_until_ns == 0
    assert env.vault.state is VaultState.SEALED
    after = env.snapshot()
    assert after[1:] == before[1:]  # keys and credentials untouched; only vault_state's counters moved
    assert env.vault.status().failed_attempts == 1
    # a restart does not reset the count
    assert env.new_vault().status().failed_attempts == 1
    with pytest.raises(VaultSealed):
        env.vault.reveal(cred.credential_id)
    entry = list(env.journal.iter_all())[-1]
    assert entry.type == "VaultUnsealFailed" and entry.payload["failed_attempts"] == 1


def test_lockout_after_max_failures_survives_restart_and_doubles(env):
    env.vault.initialize(PASS)
    env.vault.seal()
    for i in range(1, 6):
        with pytest.raises(WrongPassphrase) as err:
            env.new_vault().unseal(OTHER)  # a new object each time: the count lives in the database
        assert err.value.failed_attempts == i
    assert err.value.locked_until_ns == T0 + 30 * NS_PER_SECOND
    restarted = env.new_vault()
    with pytest.raises(RateLimitedError) as err:
        restarted.unseal(PASS)  # even the right passphrase is refused while locked
    assert isinstance(err.value, UnsealLockedOut) and err.value.retry_after_s == pytest.approx(30)
    assert restarted.state is VaultState.SEALED
    env.advance(10)
    with pytest.raises(UnsealLockedOut) as err:
        restarted.unseal(OTHER)  # refused without being checked or counted
    assert err.value.retry_after_s == pytest.approx(20)
    assert restarted.status().failed_attempts == 5

    env.advance(21)
    with pytest.raises(WrongPassphrase) as err:
        restarted.unseal(OTHER)  # 6th failure: 60 s
    assert err.value.locked_until_ns == env.clock.now_ns() + 60 * NS_PER_SECOND
    env.advance(61)
    with pytest.raises(WrongPassphrase) as err:
        restarted.unseal(OTHER)  # 7th: 120 s
    assert err.value.locked_until_ns == env.clock.now_ns() + 120 * NS_PER_SECOND
    env.advance(121)
    assert restarted.unseal(PASS).state is VaultState.UNSEALED
    status = restarted.status()
    assert (status.failed_attempts, status.locked_until_ns) == (0, 0)


def test_lockout_is_capped_at_one_hour(env):
    vault = env.new_vault(unseal_max_failures=1)
    vault.initialize(PASS)
    vault.seal()
    for _ in range(12):
        with pytest.raises(WrongPassphrase) as err:
            vault.unseal(OTHER)
        delay = (err.value.locked_until_ns - env.clock.now_ns()) / NS_PER_SECOND
        env.advance(delay + 1)
    assert delay == 3600


def test_failure_count_commits_through_the_engine_only_with_commit_failed_attempts(env):
    env.vault.initialize(PASS)
    env.vault.seal()
    engine = Engine(env.db, env.journal)
    with pytest.raises(WrongPassphrase):  # a raised error rolls back the message, count included
        engine.execute_now(env.vault.unseal, OTHER)
    assert env.vault.status().failed_attempts == 0
    attempt = engine.execute_now(commit_failed_attempts, env.vault.unseal, OTHER)
    with pytest.raises(WrongPassphrase):
        attempt.result()
    assert env.vault.status().failed_attempts == 1
    assert engine.execute_now(commit_failed_attempts, env.vault.unseal, PASS).result().state is VaultState.UNSEALED
    assert env.vault.status().failed_attempts == 0


# -- tampering -------------------------------------------------------------------------------------

def _flip(blob: bytes, index: int = 0) -> bytes:
    return blob[:index] + bytes([blob[index] ^ 0x01]) + blob[index + 1:]


@pytest.mark.parametrize("column", ["wrapped_key", "nonce"])
def test_tampered_wrapped_root_key_is_an_integrity_error_not_a_wrong_passphrase(env, column):
    env.vault.initialize(PASS)
    env.vault.seal()
    (blob,) = env.db.query_one(f"SELECT {column} FROM vault_unseal_keys WHERE kind='passphrase'")
    env.db.execute(f"UPDATE vault_unseal_keys SET {column}=? WHERE kind='passphrase'", (_flip(blob, 5),))
    with pytest.raises(IntegrityError, match="vault key record 'passphrase'") as err:
        env.vault.unseal(PASS)
    assert "passphrase is right" in str(err.value)
    assert env.vault.state is VaultState.SEALED and env.vault.status().failed_attempts == 0
    with pytest.raises(WrongPassphrase):  # a wrong passphrase is still told apart
        env.vault.unseal(OTHER)


def test_tampered_wrapped_data_key_is_an_integrity_error(env):
    env.vault.initialize(PASS)
    env.vault.seal()
    (blob,) = env.db.query_one("SELECT wrapped_key FROM vault_data_keys")
    env.db.execute("UPDATE vault_data_keys SET wrapped_key=?", (_flip(blob, 3),))
    with pytest.raises(IntegrityError, match="vault data key v1"):
        env.vault.unseal(PASS)
    assert env.vault.state is VaultState.SEALED


def test_tampered_kdf_parameters_are_refused_before_hashing(env):
    env.vault.initialize(PASS)
    env.vault.seal()
    env.db.execute("UPDATE vault_unseal_keys SET kdf_memory_kib=? WHERE kind='passphrase'", (1 << 40,))
    with pytest.raises(IntegrityError, match="out of range"):
        env.vault.unseal(PASS)


@pytest.mark.parametrize("column", ["ciphertext", "nonce"])
def test_tampered_secret_is_an_integrity_error_naming_the_record(ready, column):
    cid = ready.binance.credential_id
    (blob,) = ready.db.query_one(f"SELECT {column} FROM vault_secret_versions WHERE credential_id=?", (cid,))
    ready.db.execute(f"UPDATE vault_secret_versions SET {column}=? WHERE credential_id=?", (_flip(blob, 7), cid))
    with pytest.raises(IntegrityError, match=f"credential {cid} version 1") as err:
        ready.vault.reveal(cid)
    assert "nothing was decrypted" in str(err.value) and BINANCE["secret"] not in str(err.value)
    assert ready.vault.reveal(ready.okx.credential_id).secret == OKX["secret"]  # others unaffected
    with pytest.raises(IntegrityError, match=cid):  # rotation refuses to re-encrypt it; nothing changes
        before = ready.snapshot()
        ready.vault.rotate_data_key()
    assert ready.snapshot() == before and ready.vault.status().data_key_version == 1


def test_ciphertext_swapped_between_credentials_does_not_decrypt(ready):
    a, b = ready.binance.credential_id, ready.okx.credential_id
    row_a = ready.db.query_one("SELECT nonce, ciphertext FROM vault_secret_versions WHERE credential_id=?", (a,))
    row_b = ready.db.query_one("SELECT nonce, ciphertext FROM vault_secret_versions WHERE credential_id=?", (b,))
    ready.db.execute("UPDATE vault_secret_versions SET nonce=?, ciphertext=? WHERE credential_id=?", (*row_b, a))
    ready.db.execute("UPDATE vault_secret_versions SET nonce=?, ciphertext=? WHERE credential_id=?", (*row_a, b))
    with pytest.raises(IntegrityError, match=f"credential {a} version 1"):
        ready.vault.reveal(a)
    with pytest.raises(IntegrityError, match=f"credential {b} version 1"):
        ready.vault.reveal(b)


def test_ciphertext_swapped_between_versions_does_not_decrypt(ready):
    cid = ready.binance.credential_id
    ready.vault.rotate_credential(cid, {"api_key": "NEW-KEY-1234567", "secret": "NEW-SECRET-7654321"})
    v1 = ready.db.query_one("SELECT nonce, ciphertext FROM vault_secret_versions WHERE credential_id=? AND version=1", (cid,))
    ready.db.execute("UPDATE vault_secret_versions SET nonce=?, ciphertext=? WHERE credential_id=? AND version=2", (*v1, cid))
    with pytest.raises(IntegrityError, match=f"credential {cid} version 2"):
        ready.vault.reveal(cid, pending=True)
    assert ready.vault.reveal(cid).secret == BINANCE["secret"]


# -- sealed ----------------------------------------------------------------------------------------

def test_sealed_refuses_everything_that_needs_the_key(ready, tmp_path):
    cid = ready.binance.credential_id
    ready.vault.rotate_credential(ready.okx.credential_id, {"api_key": "K-000000000", "secret": "S-000000000"})
    ready.vault.seal()
    before = ready.snapshot()
    calls = {
        "create_credential": lambda: ready.vault.create_credential("kraken", "k", BINANCE),
        "rotate_credential": lambda: ready.vault.rotate_credential(cid, BINANCE),
        "confirm_rotation": lambda: ready.vault.confirm_rotation(ready.okx.credential_id),
        "abort_rotation": lambda: ready.vault.abort_rotation(ready.okx.credential_id),
        "delete_credential": lambda: ready.vault.delete_credential(cid),
        "reveal": lambda: ready.vault.reveal(cid),
        "rotate_data_key": ready.vault.rotate_data_key,
        "change_passphrase": lambda: ready.vault.change_passphrase(PASS, OTHER),
        "create_key_file": lambda: ready.vault.create_key_file(tmp_path / "vault.key"),
    }
    for name, call in calls.items():
        with pytest.raises(VaultSealed) as err:
            call()
        assert str(err.value) == SEALED_MESSAGE == "vault is sealed: unseal it with `lyractl vault unseal`", name
        assert isinstance(err.value, PreconditionError)
    assert ready.snapshot() == before
    assert not (tmp_path / "vault.key").exists()


# -- passphrase change and data-key rotation ---------------------------------------------------------

def test_change_passphrase_rewraps_and_keeps_secrets(ready):
    cid = ready.binance.credential_id
    secrets_before = ready.db.query("SELECT nonce, ciphertext FROM vault_secret_versions ORDER BY 1, 2")
    salt_before = ready.db.scalar("SELECT salt FROM vault_unseal_keys WHERE kind='passphrase'")
    with pytest.raises(WrongPassphrase) as err:
        ready.vault.change_passphrase(OTHER, "a third passphrase")
    assert err.value.field == "current_passphrase" and ready.vault.status().failed_attempts == 1
    with pytest.raises(ValidationError, match="must differ"):
        ready.vault.change_passphrase(PASS, PASS)

    status = ready.vault.change_passphrase(PASS, OTHER)
    assert status.state is VaultState.UNSEALED and status.failed_attempts == 0  # no downtime
    assert ready.vault.reveal(cid).secret == BINANCE["secret"]
    assert ready.db.query("SELECT nonce, ciphertext FROM vault_secret_versions ORDER BY 1, 2") == secrets_before
    assert ready.db.scalar("SELECT salt FROM vault_unseal_keys WHERE kind='passphrase'") != salt_before

    restarted = ready.new_vault()
    with pytest.raises(WrongPassphrase):
        restarted.unseal(PASS)  # the old passphrase stopped working
    restarted.unseal(OTHER)
    assert restarted.reveal(cid).secret == BINANCE["secret"]


def test_rotate_data_key_reencrypts_every_secret_version(ready):
    vault = ready.vault
    okx = ready.okx.credential_id
    vault.rotate_credential(okx, {"api_key": "OKX-NEW-KEY-77", "secret": "OKX-NEW-SECRET-77"})  # a pending version too
    old_key = bytes(vault._data.material())  # test-only peek at the in-memory key
    before = {(r[0], r[1]): (r[2], r[3]) for r in ready.rows(
        "SELECT credential_id, version, nonce, ciphertext FROM vault_secret_versions")}
    assert len(before) == 3

    status = vault.rotate_data_key()
    assert status.data_key_version == 2 and status.state is VaultState.UNSEALED
    after = {(r[0], r[1]): (r[2], r[3], r[4]) for r in ready.rows(
        "SELECT credential_id, version, nonce, ciphertext, data_key_version FROM vault_secret_versions")}
    assert after.keys() == before.keys()
    for record, (nonce, ciphertext, dk_version) in after.items():
        assert dk_version == 2
        assert nonce != before[record][0] and ciphertext != before[record][1]
        with pytest.raises(DecryptionFailed):  # the old data key decrypts nothing any more
            aead_decrypt(old_key, nonce, ciphertext, f"{record[0]}:{record[1]}".encode())
    assert ready.rows("SELECT version FROM vault_data_keys") == [(2,)]
    assert vault.reveal(ready.binance.credential_id).secret == BINANCE["secret"]
    assert vault.reveal(okx).passphrase == OKX["passphrase"]
    assert vault.reveal(okx, pending=True).secret == "OKX-NEW-SECRET-77"

    restarted = ready.new_vault()
    restarted.unseal(PASS)
    assert restarted.status().data_key_version == 2
    assert restarted.reveal(ready.binance.credential_id).api_key == BINANCE["api_key"]
    event = [e for e in ready.journal.iter_all() if e.type == "VaultDataKeyRotated"][-1]
    assert event.payload["secrets_reencrypted"] == 3 and event.payload["data_key_version"] == 2


# -- key file --------------------------------------------------------------------------------------

def test_key_file_unseal_and_mode_check(ready, tmp_path):
    path = tmp_path / "vault.key"
    assert ready.vault.create_key_file(path) == path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and path.stat().st_size == 32
    assert ready.vault.status().key_file_registered
    with pytest.raises(PreconditionError, match="exists already"):
        ready.vault.create_key_file(path)
    ready.vault.rotate_data_key()  # the key file keeps working across data-key rotations

    booted = ready.new_vault()
    assert booted.unseal_with_key_file(path).state is VaultState.UNSEALED
    assert booted.reveal(ready.binance.credential_id).secret == BINANCE["secret"]

    os.chmod(path, 0o644)
    with pytest.raises(PreconditionError) as err:
        ready.new_vault().unseal_with_key_file(path)
    assert str(path) in str(err.value) and "0644" in str(err.value)
    os.chmod(path, 0o600)

    other = tmp_path / "other.key"
    other.write_bytes(os.urandom(32))
    os.chmod(other, 0o600)
    with pytest.raises(ValidationError, match="not the registered key file") as err:
        ready.new_vault().unseal_with_key_file(other)
    assert err.value.field == "key_file"
    other.write_bytes(b"short")
    with pytest.raises(ValidationError, match="exactly 32 bytes"):
        ready.new_vault().unseal_with_key_file(other)
    with pytest.raises(PreconditionError, match="cannot be opened"):
        ready.new_vault().unseal_with_key_file(tmp_path / "missing.key")

    # the lockout does not block the key file
    locked = ready.new_vault(unseal_max_failures=1)
    with pytest.raises(WrongPassphrase):
        locked.unseal(OTHER)
    with pytest.raises(UnsealLockedOut):
        locked.unseal(PASS)
    assert locked.unseal_with_key_file(path).state is VaultState.UNSEALED

    assert ready.vault.remove_key_file_wrap() is True
    assert ready.vault.remove_key_file_wrap() is False
    with pytest.raises(PreconditionError, match="no key file is registered"):
        ready.new_vault().unseal_with_key_file(path)


# -- credentials -----------------------------------------------------------------------------------

def test_credential_rotation_confirm_and_abort(ready):
    vault, cid = ready.vault, ready.binance.credential_id
    new = {"api_key": "BINANCE-NEW-KEY-1111", "secret": "BINANCE-NEW-SECRET-2222"}
    ready.advance(86_400 * 3)
    info = vault.rotate_credential(cid, new)
    assert info.rotation_pending and info.pending_version == 2 and info.version == 1
    assert info.pending_fingerprint == hashlib.sha256(new["api_key"].encode()).hexdigest()[:12]
    assert info.fingerprint == ready.binance.fingerprint
    assert vault.reveal(cid).secret == BINANCE["secret"]  # the current version stays in use
    assert vault.reveal(cid, pending=True).secret == new["secret"]
    with pytest.raises(PreconditionError, match="rotation pending"):
        vault.rotate_credential(cid, new)

    info = vault.confirm_rotation(cid)
    assert (info.version, info.rotation_pending, info.pending_fingerprint) == (2, False, "")
    assert info.rotated_ns == T0 + 3 * NS_PER_DAY and info.created_ns == T0
    assert info.fingerprint == hashlib.sha256(new["api_key"].encode()).hexdigest()[:12]
    assert vault.reveal(cid).api_key == new["api_key"]
    assert ready.rows("SELECT version FROM vault_secret_versions WHERE credential_id=?", (cid,)) == [(2,)]
    with pytest.raises(PreconditionError, match="no rotation pending"):
        vault.confirm_rotation(cid)
    with pytest.raises(NotFoundError, match="no pending version"):
        vault.reveal(cid, pending=True)

    vault.rotate_credential(cid, {"api_key": "DISCARDED-KEY-333", "secret": "DISCARDED-SECRET-333"})
    info = vault.abort_rotation(cid)
    assert (info.version, info.rotation_pending) == (2, False)
    assert vault.reveal(cid).secret == new["secret"]
    assert ready.rows("SELECT version FROM vault_secret_versions WHERE credential_id=?", (cid,)) == [(2,)]
    with pytest.raises(PreconditionError):
        vault.abort_rotation(cid)
    assert [e.type for e in ready.journal.iter_all()][-4:] == [
        "CredentialRotationStarted", "CredentialRotationConfirmed", "CredentialRotationStarted",
        "CredentialRotationAborted"]


def test_credential_validation_names_the_field(ready):
    cases = [
        (("Binance", "x", BINANCE), "venue"), (("b", "x", BINANCE), "venue"), (("a" * 33, "x", BINANCE), "venue"),
        (("binance", "", BINANCE), "label"), (("binance", "x" * 65, BINANCE), "label"),
        (("binance", "   ", BINANCE), "label"), (("binance", "a\nb", BINANCE), "label"),
        (("binance", "x", {"secret": "s"}), "secrets.api_key"),
        (("binance", "x", {"api_key": "k", "secret": ""}), "secrets.secret"),
        (("binance", "x", {**BINANCE, "uid": "u" * 4097}), "secrets.uid"),
        (("binance", "x", {**BINANCE, "passphrase": 42}), "secrets.passphrase"),
        (("binance", "x", {**BINANCE, "password": "p"}), "secrets.password"),
        (("binance", "x", "not a mapping"), "secrets"),
    ]
    before = ready.snapshot()
    for args, field in cases:
        with pytest.raises(ValidationError) as err:
            ready.vault.create_credential(*args)
        assert err.value.field == field, args
    assert ready.snapshot() == before
    with pytest.raises(AlreadyExistsError, match="main"):
        ready.vault.create_credential("binance", "main", BINANCE)
    assert ready.vault.create_credential("binance", "x", {**BINANCE, "uid": "u" * 4096}).fields == (
        "api_key", "secret", "uid")
    assert ready.vault.create_credential("kraken", "typed", CredentialSecrets("KRAKEN-KEY-1", "KRAKEN-SECRET-1")).fields == (
        "api_key", "secret")
    with pytest.raises(NotFoundError):
        ready.vault.get_credential("no-such-id")
    with pytest.raises(ValidationError, match="credential_id"):
        ready.vault.get_credential("")


def test_ages_and_staleness(ready):
    vault = ready.new_vault(max_age_days=10)
    ready.advance(86_400 * 10)
    assert all(not i.stale and i.age_days == 10 for i in vault.list_credentials())
    ready.advance(1)
    infos = vault.list_credentials()
    assert all(i.stale for i in infos) and vault.status().stale_credentials == 2
    ages = {a.credential_id: a for a in vault.credential_ages()}
    assert ages[ready.binance.credential_id].age_s == 86_400 * 10 + 1 and ages[ready.okx.credential_id].stale
    vault.unseal(PASS)
    vault.rotate_credential(ready.binance.credential_id, {"api_key": "FRESH-KEY-0001", "secret": "FRESH-SECRET-0001"})
    vault.confirm_rotation(ready.binance.credential_id)
    assert vault.status().stale_credentials == 1
    assert vault.get_credential(ready.binance.credential_id).age_days == 0


# -- nothing in clear ----------------------------------------------------------------------------------

def test_no_plaintext_secret_in_database_wal_journal_or_logs(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    env = Env(tmp_path)
    vault = env.vault
    passphrase2 = "second vault passphrase 2024"
    vault.initialize(PASS)
    secrets = [BINANCE, OKX, {"api_key": "KRAKEN-API-KEY-a1b2c3d4e5", "secret": "KRAKEN-SECRET-f6e5d4c3b2a1"}]
    ids = [vault.create_credential(v, "main", s).credential_id for v, s in zip(("binance", "okx", "kraken"), secrets)]
    rotated = {"api_key": "ROTATED-API-KEY-zyxwvu", "secret": "ROTATED-SECRET-tsrqpo"}
    aborted = {"api_key": "ABORTED-API-KEY-nmlkji", "secret": "ABORTED-SECRET-hgfedc"}
    vault.rotate_credential(ids[0], rotated)
    vault.confirm_rotation(ids[0])
    vault.rotate_credential(ids[1], aborted)
    vault.abort_rotation(ids[1])
    vault.change_passphrase(PASS, passphrase2)
    vault.rotate_data_key()
    vault.create_key_file(tmp_path / "vault.key")
    vault.seal()
    with pytest.raises(WrongPassphrase):
        vault.unseal(PASS)
    vault.unseal(passphrase2)

    needles = [v for s in secrets + [rotated, aborted] for v in s.values()] + [PASS, passphrase2]
    wal = tmp_path / "lyra.db-wal"
    assert wal.exists()
    raw = {"db": (tmp_path / "lyra.db").read_bytes(), "wal": wal.read_bytes()}
    journal_text = "\n".join(json.dumps(e.payload) for e in env.journal.iter_all())
    logs = "\n".join(r.getMessage() for r in caplog.records)
    for needle in needles:
        for name, blob in raw.items():
            assert needle.encode() not in blob, f"{name} holds a secret in clear"
        assert needle not in journal_text and needle not in logs
    # the journal says what happened, with fingerprints and versions only
    created = [e for e in env.journal.iter_all() if e.type == "CredentialCreated"][0]
    assert set(created.payload) == {"credential_id", "venue", "label", "version", "fingerprint", "fields", "actor"}
    env.db.close()
    assert not any(n.encode() in (tmp_path / "lyra.db").read_bytes() for n in needles)


# -- property-based --------------------------------------------------------------------------------

_text = st.one_of(
    st.text(max_size=80),
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3),  # lone surrogates
    st.builds(lambda c, n: c * n, st.characters(), st.integers(4090, 4200)),  # around the size bound
    st.sampled_from(["binance", "okx", "k", "main", "a" * 64, "a" * 65]),
)


def test_create_credential_accepts_or_refuses_cleanly(tmp_path):
    env = Env(tmp_path)
    env.vault.initialize(PASS)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(venue=_text, label=_text, api_key=_text, secret=_text, passphrase=st.one_of(st.none(), _text),
           uid=st.one_of(st.none(), _text))
    def check(venue, label, api_key, secret, passphrase, uid):
        before, seq = env.snapshot(), env.journal.last_seq()
        given_secrets = {"api_key": api_key, "secret": secret, "passphrase": passphrase, "uid": uid}
        try:
            info = env.vault.create_credential(venue, label, given_secrets)
        except ValidationError as exc:
            assert env.snapshot() == before and env.journal.last_seq() == seq
            assert exc.field in ("venue", "label") or exc.field.startswith("secrets.")
            for value in given_secrets.values():  # an error never echoes a secret
                if value and len(value) >= 16:
                    assert value not in str(exc)
            return
        revealed = env.vault.reveal(info.credential_id)
        assert (revealed.api_key, revealed.secret, revealed.passphrase, revealed.uid) == (
            api_key, secret, passphrase or "", uid or "")
        env.vault.delete_credential(info.credential_id)

    check()
    env.db.close()


def test_unseal_accepts_or_refuses_cleanly(tmp_path):
    env = Env(tmp_path, unseal_max_failures=10**9)
    env.vault.initialize(PASS)
    env.vault.create_credential("binance", "main", BINANCE)
    env.vault.seal()
    keys_and_credentials = env.snapshot()[1:]

    @settings(max_examples=100, deadline=None)
    @given(passphrase=st.one_of(_text, st.just(PASS + " "), st.just(PASS[:-1])))
    def check(passphrase):
        try:
            env.vault.unseal(passphrase)
        except ValidationError:
            assert env.vault.state is VaultState.SEALED
            assert env.snapshot()[1:] == keys_and_credentials
            return
        assert passphrase == PASS  # only the right passphrase could have unsealed it
        env.vault.seal()

    check()
    assert env.vault.unseal(PASS).state is VaultState.UNSEALED
    env.db.close()
