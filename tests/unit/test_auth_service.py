"""Users, login, refresh rotation with reuse detection, logout, authenticate, ensure_admin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.engine.clock import NS_PER_SECOND, SimClock
from appliance.model.errors import AlreadyExistsError, NotFoundError, PreconditionError, ValidationError
from appliance.security import auth as auth_module
from appliance.security.auth import (
    LOGIN_FAILED_MESSAGE,
    AuthenticationFailed,
    AuthService,
    Principal,
    hash_refresh_token,
)
from appliance.security.passwords import TEST_ONLY_FAST, Argon2Params
from appliance.security.tokens import InvalidToken, TokenSigner, load_or_create_signing_key
from appliance.security.users import UserStore
from appliance.store.db import Database
from appliance.store.journal import Journal

T0_NS = 1_700_000_000 * NS_PER_SECOND
DAY_NS = 86_400 * NS_PER_SECOND
PASSWORD = "s3cret-passw0rd!"


class Env:
    def __init__(self, path: Path) -> None:
        self.clock = SimClock(T0_NS)
        self.db = Database(path)
        self.journal = Journal(self.db)
        self.users = UserStore(self.db, self.journal, self.clock, password_params=TEST_ONLY_FAST)
        key = load_or_create_signing_key(self.db, self.clock)
        self.signer = TokenSigner.from_signing_key(key, self.clock, ttl_s=900)
        # idle timeout off here: these tests slide sessions over days (idle tests: test_lockout.py)
        self.auth = AuthService(self.db, self.journal, self.users, self.signer, self.clock, idle_timeout_s=None)

    def journal_text(self) -> str:
        return "\n".join(json.dumps(e.payload) for e in self.journal.iter_all())

    def events(self) -> list[str]:
        return [e.type for e in self.journal.iter_all()]


@pytest.fixture()
def env(tmp_path: Path) -> Env:
    env = Env(tmp_path / "lyra.db")
    env.users.create_user("alice", PASSWORD, "trader")
    env.users.create_user("root", PASSWORD + "-admin", "admin")
    yield env
    env.db.close()


# -- users ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("username", "password", "role", "field"),
    [
        ("ab", PASSWORD, "trader", "username"),
        ("Alice", PASSWORD, "trader", "username"),
        ("al ice", PASSWORD, "trader", "username"),
        ("a" * 65, PASSWORD, "trader", "username"),
        ("bob", PASSWORD, "superuser", "role"),
        ("bob", "short-pw", "trader", "password"),
        ("bob", "x" * 1025, "trader", "password"),
    ],
)
def test_create_user_validation_names_the_field(env: Env, username: str, password: str, role: str, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        env.users.create_user(username, password, role)
    assert info.value.field == field
    assert password not in str(info.value)
    assert env.users.find_by_username(username) is None


def test_username_charset_and_bounds(env: Env) -> None:
    for name in ("bob", "b.o_b-1", "x" * 64):
        env.users.create_user(name, PASSWORD, "viewer")
    assert {u.username for u in env.users.list()} >= {"bob", "b.o_b-1", "x" * 64}


def test_duplicate_username(env: Env) -> None:
    with pytest.raises(AlreadyExistsError):
        env.users.create_user("alice", PASSWORD, "viewer")


def test_user_created_is_journaled_without_secrets(env: Env) -> None:
    created = [e for e in env.journal.iter_all() if e.type == "UserCreated"]
    assert [e.payload["username"] for e in created] == ["alice", "root"]
    assert set(created[0].payload) == {"user_id", "username", "role"}
    text = env.journal_text()
    assert PASSWORD not in text and "argon2" not in text
    alice = env.users.get_by_username("alice")
    assert "hash" not in repr(alice) and "argon2" not in repr(alice)


def test_get_missing_user(env: Env) -> None:
    with pytest.raises(NotFoundError):
        env.users.get_by_username("nobody")
    assert env.users.find_by_username("nobody") is None


# -- login ---------------------------------------------------------------------------------
def test_login_returns_a_token_pair_that_authenticates(env: Env) -> None:
    pair = env.auth.login("alice", PASSWORD)
    assert (pair.username, pair.role) == ("alice", "trader")
    assert pair.access_expires_ns == T0_NS + 900 * NS_PER_SECOND
    assert pair.refresh_expires_ns == T0_NS + 7 * DAY_NS
    assert len(pair.refresh) >= 43 and pair.refresh not in repr(pair) and pair.access not in repr(pair)
    principal = env.auth.authenticate(pair.access)
    assert principal == Principal(env.users.get_by_username("alice").user_id, "alice", "trader", pair.session_id)
    assert "SessionCreated" in env.events()


def test_unknown_user_and_wrong_password_fail_identically(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    verified: list[str] = []
    real_verify = auth_module.verify_password

    def spy(password_hash: str, password: str, **kwargs):
        verified.append(password_hash)
        return real_verify(password_hash, password, **kwargs)

    monkeypatch.setattr(auth_module, "verify_password", spy)
    with pytest.raises(AuthenticationFailed) as wrong_password:
        env.auth.login("alice", PASSWORD + "x")
    with pytest.raises(AuthenticationFailed) as unknown_user:
        env.auth.login("mallory", PASSWORD)
    assert str(wrong_password.value) == str(unknown_user.value) == LOGIN_FAILED_MESSAGE
    # timing equalised: the unknown user was verified against a (dummy) hash as well
    assert len(verified) == 2 and all(h.startswith("$argon2id$") for h in verified)
    assert env.db.scalar("SELECT COUNT(*) FROM sessions") == 0


def test_disabled_user_cannot_log_in(env: Env) -> None:
    env.users.disable("alice")
    with pytest.raises(AuthenticationFailed, match=LOGIN_FAILED_MESSAGE):
        env.auth.login("alice", PASSWORD)


async def test_login_async(env: Env) -> None:
    pair = await env.auth.login_async("alice", PASSWORD)
    assert env.auth.authenticate(pair.access).username == "alice"
    with pytest.raises(AuthenticationFailed):
        await env.auth.login_async("alice", "wrong-password-123")


def test_login_rehashes_when_parameters_changed(env: Env) -> None:
    before = env.users.password_hash(env.users.get_by_username("alice").user_id)
    env.users.password_params = Argon2Params(time_cost=2, memory_cost_kib=128, parallelism=1)
    env.auth.login("alice", PASSWORD)
    after = env.users.password_hash(env.users.get_by_username("alice").user_id)
    assert after != before and "m=128,t=2,p=1" in after
    assert "UserPasswordRehashed" in env.events()
    env.auth.login("alice", PASSWORD)  # still works with the new hash


# -- refresh -------------------------------------------------------------------------------
def test_refresh_rotates_and_keeps_the_session(env: Env) -> None:
    first = env.auth.login("alice", PASSWORD)
    env.clock.advance_to(T0_NS + 600 * NS_PER_SECOND)
    second = env.auth.refresh(first.refresh)
    assert second.refresh != first.refresh and second.access != first.access
    assert second.session_id == first.session_id
    assert second.access_expires_ns == T0_NS + 1500 * NS_PER_SECOND
    assert env.auth.authenticate(second.access).session_id == first.session_id
    third = env.auth.refresh(second.refresh)
    assert third.session_id == first.session_id
    # only hashes are stored
    stored = [r[0] for r in env.db.query("SELECT refresh_hash FROM sessions")]
    stored += [r[0] for r in env.db.query("SELECT refresh_hash FROM session_refresh_history")]
    assert hash_refresh_token(third.refresh) in stored and hash_refresh_token(first.refresh) in stored
    for token in (first.refresh, second.refresh, third.refresh):
        assert token not in stored


def test_refresh_token_reuse_revokes_the_whole_session(env: Env) -> None:
    first = env.auth.login("alice", PASSWORD)
    second = env.auth.refresh(first.refresh)  # legitimate rotation
    with pytest.raises(AuthenticationFailed, match="already used"):
        env.auth.refresh(first.refresh)  # the stolen, spent token comes back
    # the session is revoked: the token the rotation handed out is dead too ...
    with pytest.raises(AuthenticationFailed):
        env.auth.refresh(second.refresh)
    # ... and so are the access tokens of the session, at once
    for access in (first.access, second.access):
        with pytest.raises(InvalidToken) as info:
            env.auth.authenticate(access)
        assert info.value.reason == "session revoked"
    assert env.db.query_one("SELECT revoked, revoke_reason FROM sessions WHERE session_id = ?", (first.session_id,)) == (1, "refresh_reuse")
    assert "SessionRevoked" in env.events()
    # other sessions of the same user are unaffected
    other = env.auth.login("alice", PASSWORD)
    assert env.auth.authenticate(other.access).username == "alice"


def test_unknown_refresh_token(env: Env) -> None:
    for token in ("", "not-a-token", "x" * 1000):
        with pytest.raises(AuthenticationFailed):
            env.auth.refresh(token)


def test_refresh_expires_and_slides(env: Env) -> None:
    pair = env.auth.login("alice", PASSWORD)
    env.clock.advance_to(T0_NS + 6 * DAY_NS)
    pair = env.auth.refresh(pair.refresh)  # slides to day 13
    assert pair.refresh_expires_ns == T0_NS + 13 * DAY_NS
    env.clock.advance_to(T0_NS + 13 * DAY_NS)
    with pytest.raises(AuthenticationFailed):
        env.auth.refresh(pair.refresh)


def test_session_has_an_absolute_lifetime(env: Env) -> None:
    pair = env.auth.login("alice", PASSWORD)
    for day in range(6, 30, 6):
        env.clock.advance_to(T0_NS + day * DAY_NS)
        pair = env.auth.refresh(pair.refresh)
    assert pair.refresh_expires_ns == T0_NS + 30 * DAY_NS  # capped
    env.clock.advance_to(T0_NS + 30 * DAY_NS)
    with pytest.raises(AuthenticationFailed):
        env.auth.refresh(pair.refresh)


# -- logout / authenticate -----------------------------------------------------------------
def test_logout_takes_effect_at_once_for_the_access_token(env: Env) -> None:
    pair = env.auth.login("alice", PASSWORD)
    assert env.auth.authenticate(pair.access).username == "alice"
    assert env.auth.logout(pair.refresh) is True
    with pytest.raises(InvalidToken) as info:
        env.auth.authenticate(pair.access)  # the JWT itself is still unexpired
    assert info.value.reason == "session revoked"
    with pytest.raises(AuthenticationFailed):
        env.auth.refresh(pair.refresh)
    assert env.auth.logout(pair.refresh) is False  # idempotent
    assert env.auth.logout("unknown") is False


def test_logout_only_for_own_sessions_when_user_given(env: Env) -> None:
    alice = env.auth.login("alice", PASSWORD)
    root_id = env.users.get_by_username("root").user_id
    assert env.auth.logout(alice.refresh, user_id=root_id) is False
    assert env.auth.authenticate(alice.access).username == "alice"
    assert env.auth.revoke_session(alice.session_id) is True
    with pytest.raises(InvalidToken):
        env.auth.authenticate(alice.access)


def test_access_token_expiry_uses_the_clock(env: Env) -> None:
    pair = env.auth.login("alice", PASSWORD)
    env.clock.advance_to(pair.access_expires_ns - 1)
    env.auth.authenticate(pair.access)
    env.clock.advance_to(pair.access_expires_ns)
    with pytest.raises(InvalidToken) as info:
        env.auth.authenticate(pair.access)
    assert info.value.reason == "token expired"


def test_disabling_a_user_stops_its_tokens_at_once(env: Env) -> None:
    pair = env.auth.login("alice", PASSWORD)
    env.users.disable("alice")
    with pytest.raises(InvalidToken) as info:
        env.auth.authenticate(pair.access)
    assert info.value.reason in ("session revoked", "user disabled")
    env.users.enable("alice")
    with pytest.raises(InvalidToken):  # sessions stay revoked after re-enabling
        env.auth.authenticate(pair.access)
    assert env.auth.authenticate(env.auth.login("alice", PASSWORD).access).username == "alice"
    assert {"UserDisabled", "UserEnabled"} <= set(env.events())


def test_role_change_revokes_sessions_and_new_login_has_new_role(env: Env) -> None:
    pair = env.auth.login("alice", PASSWORD)
    env.users.set_role("alice", "viewer")
    with pytest.raises(InvalidToken):
        env.auth.authenticate(pair.access)
    assert env.auth.authenticate(env.auth.login("alice", PASSWORD).access).role == "viewer"


def test_password_change_revokes_sessions(env: Env) -> None:
    pair = env.auth.login("alice", PASSWORD)
    env.users.set_password("alice", "another-long-password")
    with pytest.raises(InvalidToken):
        env.auth.authenticate(pair.access)
    with pytest.raises(AuthenticationFailed):
        env.auth.login("alice", PASSWORD)
    env.auth.login("alice", "another-long-password")
    assert "another-long-password" not in env.journal_text()


def test_last_admin_cannot_be_disabled_or_demoted(env: Env) -> None:
    with pytest.raises(PreconditionError):
        env.users.disable("root")
    with pytest.raises(PreconditionError):
        env.users.set_role("root", "viewer")
    env.users.create_user("root2", PASSWORD, "admin")
    env.users.disable("root")
    assert env.users.get_by_username("root").disabled


def test_token_of_unknown_session_is_rejected(env: Env) -> None:
    alice = env.users.get_by_username("alice")
    forged_session = env.signer.issue(user_id=alice.user_id, username="alice", role="admin", session_id="no-such-session").token
    with pytest.raises(InvalidToken):
        env.auth.authenticate(forged_session)


def test_principal_role_is_the_current_one(env: Env) -> None:
    pair = env.auth.login("alice", PASSWORD)
    # simulate a role edit that did not revoke sessions: authorization follows the database
    with env.db.transaction():
        env.db.execute("UPDATE users SET role = 'viewer' WHERE username = 'alice'")
    assert env.auth.authenticate(pair.access).role == "viewer"


# -- secrets never leave -------------------------------------------------------------------
def test_no_secret_in_the_journal_or_session_rows(env: Env) -> None:
    pair = env.auth.login("alice", PASSWORD)
    rotated = env.auth.refresh(pair.refresh)
    env.auth.logout(rotated.refresh)
    text = env.journal_text()
    dump = "\n".join(str(row) for row in env.db.query("SELECT * FROM sessions"))
    for secret in (PASSWORD, pair.access, pair.refresh, rotated.access, rotated.refresh):
        assert secret not in text
        assert secret not in dump
    for row in env.db.query("SELECT password_hash FROM users"):
        assert row[0] not in text
    assert {"SessionCreated", "SessionRefreshed", "SessionRevoked"} <= set(env.events())


def test_journal_listeners_see_committed_events(env: Env) -> None:
    seen: list[str] = []
    env.journal.subscribe(lambda entry: seen.append(entry.type))
    pair = env.auth.login("alice", PASSWORD)
    env.auth.refresh(pair.refresh)
    assert seen == ["SessionCreated", "SessionRefreshed"]
    with pytest.raises(AlreadyExistsError):
        env.users.create_user("alice", PASSWORD, "viewer")
    assert seen == ["SessionCreated", "SessionRefreshed"]


# -- ensure_admin --------------------------------------------------------------------------
def test_ensure_admin_generates_a_password_once(tmp_path: Path) -> None:
    env = Env(tmp_path / "init.db")
    created, generated = env.auth.ensure_admin("admin")
    assert created is True and generated is not None and len(generated) >= 20
    assert env.auth.login("admin", generated).role == "admin"
    assert generated not in env.journal_text()
    assert env.auth.ensure_admin("admin") == (False, None)
    assert env.auth.ensure_admin("admin", "some-other-password") == (False, None)
    assert env.auth.login("admin", generated).role == "admin"  # password unchanged
    env.db.close()


def test_ensure_admin_with_a_given_password(env: Env) -> None:
    assert env.auth.ensure_admin("ops", "given-admin-password") == (True, None)
    assert env.auth.login("ops", "given-admin-password").role == "admin"
    with pytest.raises(ValidationError):
        env.auth.ensure_admin("ops2", "short")
    with pytest.raises(PreconditionError):
        env.auth.ensure_admin("alice")  # exists as a trader
