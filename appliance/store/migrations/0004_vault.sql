-- The vault (appliance/security/vault.py): exchange credentials encrypted at rest.
--
-- Key hierarchy (every wrap is XChaCha20-Poly1305, 24-byte random nonce, 16-byte tag):
--
--   passphrase --Argon2id(salt, t, m, p)--> KEK --wraps--> root key   (vault_unseal_keys 'passphrase')
--   key file (32 random bytes)            ------wraps--> root key   (vault_unseal_keys 'key_file')
--   root key                              ------wraps--> data key   (vault_data_keys, current version only)
--   data key                              ------encrypts-> each secret version (vault_secret_versions)
--
-- The root key lets RotateDataKey wrap a new data key without asking for the passphrase or the
-- key file, and lets ChangeVaultPassphrase re-wrap one small key instead of the data. Nothing
-- in these tables is a plaintext secret or an unwrapped key.

-- One row: the vault exists (initialised) and its unseal-failure counters (persisted, so that a
-- restart does not reset a lockout).
CREATE TABLE vault_state (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    data_key_version  INTEGER NOT NULL CHECK (data_key_version >= 1),
    initialized_ns    INTEGER NOT NULL,
    failed_attempts   INTEGER NOT NULL DEFAULT 0,   -- consecutive wrong passphrases
    last_failure_ns   INTEGER NOT NULL DEFAULT 0,
    locked_until_ns   INTEGER NOT NULL DEFAULT 0    -- attempts refused before this time
);

-- The root key wrapped once per unseal method.
-- AEAD associated data: "lyra-vault:root-key:<kind>".
CREATE TABLE vault_unseal_keys (
    kind             TEXT PRIMARY KEY CHECK (kind IN ('passphrase', 'key_file')),
    kdf              TEXT NOT NULL CHECK (kdf IN ('argon2id', 'none')),   -- 'none' for the key file
    kdf_time_cost    INTEGER NOT NULL DEFAULT 0,
    kdf_memory_kib   INTEGER NOT NULL DEFAULT 0,
    kdf_parallelism  INTEGER NOT NULL DEFAULT 0,
    salt             BLOB NOT NULL,                 -- 16 random bytes (empty for the key file)
    verifier         BLOB NOT NULL,                 -- HMAC-SHA-256(KEK, "lyra-vault:kek-check:<kind>")
    nonce            BLOB NOT NULL,                 -- 24 bytes
    wrapped_key      BLOB NOT NULL,                 -- 32 + 16 bytes
    note             TEXT NOT NULL DEFAULT '',      -- e.g. the key file's path (not a secret)
    created_ns       INTEGER NOT NULL
);

-- The data key, wrapped under the root key. Only the current version is kept: after a rotation
-- the previous data key is gone. AEAD associated data: "lyra-vault:data-key:<version>".
CREATE TABLE vault_data_keys (
    version      INTEGER PRIMARY KEY,
    nonce        BLOB NOT NULL,
    wrapped_key  BLOB NOT NULL,
    created_ns   INTEGER NOT NULL
);

-- Credential metadata, in clear (never a secret).
CREATE TABLE vault_credentials (
    credential_id    TEXT PRIMARY KEY,
    venue            TEXT NOT NULL,                 -- ccxt exchange id
    label            TEXT NOT NULL,
    created_ns       INTEGER NOT NULL,
    current_version  INTEGER NOT NULL,
    pending_version  INTEGER,                       -- a rotation awaiting confirmation
    updated_ns       INTEGER NOT NULL,
    UNIQUE (venue, label)
);
CREATE INDEX vault_credentials_venue ON vault_credentials(venue);

-- One encrypted JSON blob per credential version: {"api_key","secret","passphrase","uid"}.
-- AEAD associated data: "<credential_id>:<version>" (a ciphertext moved to another record or
-- version fails to authenticate).
CREATE TABLE vault_secret_versions (
    credential_id     TEXT NOT NULL REFERENCES vault_credentials(credential_id) ON DELETE CASCADE,
    version           INTEGER NOT NULL CHECK (version >= 1),
    created_ns        INTEGER NOT NULL,
    fingerprint       TEXT NOT NULL,                -- first 12 hex of SHA-256(api_key)
    fields            TEXT NOT NULL,                -- comma-separated names of the fields set
    data_key_version  INTEGER NOT NULL,
    nonce             BLOB NOT NULL,                -- 24 bytes
    ciphertext        BLOB NOT NULL,
    PRIMARY KEY (credential_id, version)
);
