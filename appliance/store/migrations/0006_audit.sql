-- The audit log: append-only and hash-chained (appliance/security/audit.py documents the hash).
--
-- One row per audited RPC: every mutating call and every denied call. Times are INTEGER ns
-- (UTC, wall clock). request_summary is a JSON object with secrets replaced by "[redacted]".
-- prev_hash is the hash of the row with seq - 1 ('' for seq 1); hash is the lowercase hex
-- SHA-256 of the row's canonical JSON. AUTOINCREMENT keeps sqlite_sequence at the highest seq
-- ever written, so a truncated tail is detectable too.
--
-- UPDATE and DELETE fail in the database itself. (Someone with write access to the file can
-- drop the triggers; the hash chain is what makes that tampering evident.)

CREATE TABLE audit_log (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ns           INTEGER NOT NULL,
    username        TEXT NOT NULL,
    role            TEXT NOT NULL,
    method          TEXT NOT NULL,
    request_summary TEXT NOT NULL,
    code            TEXT NOT NULL,
    peer            TEXT NOT NULL,
    session_id      TEXT NOT NULL,
    prev_hash       TEXT NOT NULL,
    hash            TEXT NOT NULL
);
CREATE INDEX audit_log_username ON audit_log(username, seq);
CREATE INDEX audit_log_method ON audit_log(method, seq);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: records cannot be changed'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: records cannot be deleted'); END;
