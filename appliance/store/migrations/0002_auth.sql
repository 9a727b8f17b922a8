-- Authentication sessions: refresh-token rotation with reuse detection.
--
-- sessions.refresh_hash holds the SHA-256 (hex) of the session's *current* refresh token.
-- Every rotation moves the spent hash into session_refresh_history, so presenting a spent
-- token again is recognised as reuse and revokes the whole session. Only hashes are stored.

CREATE TABLE session_refresh_history (
    refresh_hash  TEXT PRIMARY KEY,          -- SHA-256 hex of a spent refresh token
    session_id    TEXT NOT NULL REFERENCES sessions(session_id),
    rotated_ns    INTEGER NOT NULL
);
CREATE INDEX session_refresh_history_session ON session_refresh_history(session_id);

ALTER TABLE sessions ADD COLUMN last_refresh_ns INTEGER;
ALTER TABLE sessions ADD COLUMN revoked_ns INTEGER;
-- logout | refresh_reuse | user_disabled | password_changed | role_changed | admin
ALTER TABLE sessions ADD COLUMN revoke_reason TEXT NOT NULL DEFAULT '';
CREATE INDEX sessions_user ON sessions(user_id);

ALTER TABLE users ADD COLUMN updated_ns INTEGER;
