-- Authentication hardening: TOTP second factor, recovery codes, idle sessions, login
-- lockout counters, service-account API tokens, encrypted JWT signing key.
--
-- Secrets at rest: nothing in these tables is usable on its own. TOTP seeds and the JWT
-- signing key are encrypted (XChaCha20-Poly1305) under the *auth key*, 32 random bytes in
-- <data_dir>/auth.key (mode 0600) that never enters the database; recovery codes are stored as
-- HMAC-SHA-256 under that key; service-token secrets as SHA-256 (256-bit random secrets). Database
-- snapshots are shipped off the box for disaster recovery; the auth key file stays on the box.

-- TOTP (RFC 6238). A secret is "pending" from BeginTotpEnrollment until ConfirmTotpEnrollment
-- proves the device has it; only then is it the active secret.
ALTER TABLE users ADD COLUMN totp_secret_enc BLOB;       -- active secret, encrypted; NULL = not enrolled
ALTER TABLE users ADD COLUMN totp_enrolled_ns INTEGER;
ALTER TABLE users ADD COLUMN totp_last_step INTEGER;     -- last accepted time step (replay protection)
ALTER TABLE users ADD COLUMN totp_pending_enc BLOB;      -- pending secret, encrypted
ALTER TABLE users ADD COLUMN totp_pending_ns INTEGER;    -- when the pending secret was created

-- One-time recovery codes (ten per enrollment), each usable once.
CREATE TABLE recovery_codes (
    user_id     TEXT NOT NULL REFERENCES users(user_id),
    code_hash   TEXT NOT NULL,           -- HMAC-SHA-256 hex under the auth key of user_id + code
    created_ns  INTEGER NOT NULL,
    used_ns     INTEGER,                 -- NULL = unused
    PRIMARY KEY (user_id, code_hash)
);

-- Sessions: idle timeout and MFA state.
ALTER TABLE sessions ADD COLUMN last_used_ns INTEGER;               -- written at most once a minute
ALTER TABLE sessions ADD COLUMN mfa_pending INTEGER NOT NULL DEFAULT 0;  -- 1 = must enroll TOTP first
ALTER TABLE sessions ADD COLUMN peer TEXT NOT NULL DEFAULT '';       -- client address at login (no port)

-- Consecutive failed logins per username ('user') and per client address ('peer'). Counted
-- for unknown usernames too, so a lockout does not reveal whether a user exists.
CREATE TABLE auth_failures (
    scope             TEXT NOT NULL CHECK (scope IN ('user', 'peer')),
    key               TEXT NOT NULL,     -- username as typed (valid pattern only) or peer host
    failures          INTEGER NOT NULL,
    last_failure_ns   INTEGER NOT NULL,
    blocked_until_ns  INTEGER NOT NULL,  -- attempts before this time are refused
    PRIMARY KEY (scope, key)
);

-- Service-account API tokens: "lyst_<token_id>_<secret>", shown once.
CREATE TABLE service_tokens (
    token_id      TEXT PRIMARY KEY,      -- 16 hex characters
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    secret_hash   TEXT NOT NULL,         -- SHA-256 hex of <secret>
    created_by    TEXT NOT NULL,         -- username of the creator
    created_ns    INTEGER NOT NULL,
    expires_ns    INTEGER NOT NULL,
    revoked       INTEGER NOT NULL DEFAULT 0,
    revoked_ns    INTEGER,
    last_used_ns  INTEGER
);

-- The JWT signing key, encrypted under the auth key. private_key_pem is '' once encrypted
-- (a plaintext row from schema <= 4 is encrypted in place at the first start).
ALTER TABLE signing_keys ADD COLUMN private_key_enc BLOB;
