"""TOTP (RFC 6238 / RFC 4226 vectors, window, replay), recovery codes, enrollment, MFA login,
mfa_pending sessions, encryption of secrets at rest — on a SimClock."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import pytest

from appliance.engine.clock import NS_PER_SECOND, SimClock
from appliance.model.errors import IntegrityError, PreconditionError, ValidationError
from appliance.security import totp
from appliance.security.auth import (
    LOGIN_FAILED_MESSAGE,
    AuthenticationFailed,
    AuthService,
    MfaRequired,
    Principal,
)
from appliance.security.authkey import ephemeral_auth_key
from appliance.security.passwords import TEST_ONLY_FAST
from appliance.security.permissions import ServiceTokenForbidden
from appliance.security.tokens import TokenSigner, load_or_create_signing_key
from appliance.security.users import UserStore
from appliance.store.db import Database
from appliance.store.journal import Journal

T0_NS = 1_700_000_010 * NS_PER_SECOND  # 10 s into a 30 s step
PASSWORD = "totp-test-password"


# == RFC vectors ===============================================================================
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode("ascii")


@pytest.mark.parametrize("counter, expected", list(enumerate(
    ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"])))
def test_rfc4226_appendix_d_hotp_vectors(counter: int, expected: str) -> None:
    assert totp.code_at_step(RFC_SECRET, counter) == expected


@pytest.mark.parametrize("unix_s, eight_digits", [
    (59, "94287082"), (1111111109, "07081804"), (1111111111, "14050471"),
    (1234567890, "89005924"), (2000000000, "69279037"), (20000000000, "65353130"),
])
def test_rfc6238_appendix_b_sha1_vectors(unix_s: int, eight_digits: str) -> None:
    # the 6-digit code is the same dynamic truncation mod 10^6
    assert totp.code_at(RFC_SECRET, unix_s * NS_PER_SECOND) == eight_digits[-6:]
    assert totp.time_step(unix_s * NS_PER_SECOND) == unix_s // 30


def test_window_is_plus_minus_one_step_and_steps_are_never_reused() -> None:
    secret = totp.generate_secret()
    now = T0_NS
    step = totp.time_step(now)
    for offset in (-1, 0, 1):
        assert totp.match_step(secret, totp.code_at_step(secret, step + offset), now, None) == step + offset
    for offset in (-2, 2, 10):
        assert totp.match_step(secret, totp.code_at_step(secret, step + offset), now, None) is None
    code = totp.code_at_step(secret, step)
    assert totp.match_step(secret, code, now, last_step=step) is None  # replay
    assert totp.match_step(secret, code, now, last_step=step + 1) is None  # older than the last used
    assert totp.match_step(secret, totp.code_at_step(secret, step - 1), now, last_step=step) is None
    for bad in ("", "12345", "1234567", "abcdef", "12 345", "１２３４５６", None):
        assert totp.match_step(secret, bad, now, None) is None  # type: ignore[arg-type]


def test_secret_and_provisioning_uri() -> None:
    secret = totp.generate_secret()
    assert len(secret) == 32 and len(base64.b32decode(secret)) == 20  # 160 bits
    assert secret != totp.generate_secret()
    uri = totp.provisioning_uri(secret, "alice")
    parsed = urlparse(uri)
    query = parse_qs(parsed.query)
    assert parsed.scheme == "otpauth" and parsed.netloc == "totp"
    assert unquote(parsed.path) == "/Lyra:alice"
    assert query == {"secret": [secret], "issuer": ["Lyra"], "algorithm": ["SHA1"], "digits": ["6"], "period": ["30"]}


def test_recovery_codes_format_and_normalisation() -> None:
    codes = totp.generate_recovery_codes()
    assert len(codes) == 10 and len(set(codes)) == 10
    for code in codes:
        groups = code.split("-")
        assert len(groups) == 4 and all(len(g) == 4 and set(g) <= set(totp.RECOVERY_ALPHABET) for g in groups)
        normalized = totp.normalize_recovery_code(code)
        assert normalized == code.replace("-", "")
        assert totp.normalize_recovery_code(code.upper().replace("-", " ")) == normalized
    for bad in ("", "abc", "abcd-efgh-ijkl-mnoo!", "x" * 100, "0000-0000-0000-0000"):
        assert totp.normalize_recovery_code(bad) is None


# == the service ===============================================================================
class Env:
    def __init__(self, path: Path, *, required=("admin", "trader"), auth_key: bytes | None = None) -> None:
        self.clock = SimClock(T0_NS)
        self.db = Database(path)
        self.journal = Journal(self.db)
        self.auth_key = auth_key or ephemeral_auth_key()
        self.users = UserStore(self.db, self.journal, self.clock, password_params=TEST_ONLY_FAST)
        self.signer = TokenSigner.from_signing_key(load_or_create_signing_key(self.db, self.clock, self.auth_key), self.clock)
        self.auth = AuthService(self.db, self.journal, self.users, self.signer, self.clock, idle_timeout_s=None,
                                totp_required_roles=required, auth_key=self.auth_key)

    def principal(self, pair) -> Principal:
        return self.auth.authenticate(pair.access)

    async def enroll(self, username: str, password: str = PASSWORD) -> tuple[str, list[str]]:
        pair = self.auth.login(username, password)
        enrollment = await self.auth.begin_totp_enrollment_async(self.principal(pair), password)
        codes = self.auth.confirm_totp_enrollment(self.principal(pair), totp.code_at(enrollment.secret, self.clock.now_ns()))
        return enrollment.secret, codes

    def advance(self, seconds: float) -> None:
        self.clock.advance_to(self.clock.now_ns() + int(seconds * NS_PER_SECOND))

    def dump(self) -> str:
        rows = []
        for table in ("users", "recovery_codes", "sessions", "signing_keys"):
            rows += [repr(r) for r in self.db.query(f"SELECT * FROM {table}")]
        return "\n".join(rows) + "\n".join(json.dumps(e.payload) for e in self.journal.iter_all())


@pytest.fixture()
def env(tmp_path: Path):
    env = Env(tmp_path / "lyra.db")
    env.users.create_user("alice", PASSWORD, "trader")
    env.users.create_user("vic", PASSWORD, "viewer")
    yield env
    env.db.close()


async def test_enrollment_is_pending_until_confirmed(env: Env) -> None:
    pair = env.auth.login("vic", PASSWORD)
    assert pair.mfa_pending is False  # viewer: not a required role
    enrollment = await env.auth.begin_totp_enrollment_async(env.principal(pair), PASSWORD)
    assert enrollment.secret in enrollment.otpauth_uri and "issuer=Lyra" in enrollment.otpauth_uri
    assert enrollment.secret not in repr(enrollment)
    # pending: login without a code still works, the user is not enrolled
    assert env.auth.login("vic", PASSWORD).access
    assert env.users.get_by_username("vic").totp_enrolled is False
    with pytest.raises(ValidationError) as wrong:
        env.auth.confirm_totp_enrollment(env.principal(pair), "000000" if totp.code_at(enrollment.secret, env.clock.now_ns()) != "000000" else "111111")
    assert wrong.value.field == "totp_code"
    codes = env.auth.confirm_totp_enrollment(env.principal(pair), totp.code_at(enrollment.secret, env.clock.now_ns()))
    assert len(codes) == 10
    assert env.users.get_by_username("vic").totp_enrolled is True
    assert {"UserTotpEnrollmentStarted", "UserTotpEnrolled"} <= {e.type for e in env.journal.iter_all()}


async def test_begin_needs_the_current_password_and_counts_failures(env: Env) -> None:
    pair = env.auth.login("vic", PASSWORD)
    with pytest.raises(ValidationError) as wrong:  # authenticated caller, wrong argument: no token refresh
        await env.auth.begin_totp_enrollment_async(env.principal(pair), "not-the-password")
    assert wrong.value.field == "password"
    assert env.db.scalar("SELECT failures FROM auth_failures WHERE scope='user' AND key='vic'") == 1
    with pytest.raises(ValidationError):
        await env.auth.begin_totp_enrollment_async(env.principal(pair), "")
    assert env.db.scalar("SELECT totp_pending_enc FROM users WHERE username='vic'") is None


async def test_login_requires_a_code_once_enrolled(env: Env) -> None:
    secret, _ = await env.enroll("vic")
    env.advance(60)
    with pytest.raises(MfaRequired) as required:
        env.auth.login("vic", PASSWORD)
    assert "TOTP" in str(required.value)
    with pytest.raises(AuthenticationFailed) as wrong_code:
        env.auth.login("vic", PASSWORD, totp_code="000000" if totp.code_at(secret, env.clock.now_ns()) != "000000" else "111111")
    assert str(wrong_code.value) == LOGIN_FAILED_MESSAGE and not isinstance(wrong_code.value, MfaRequired)
    with pytest.raises(AuthenticationFailed) as wrong_password:
        env.auth.login("vic", "wrong-password-1", totp_code=totp.code_at(secret, env.clock.now_ns()))
    assert str(wrong_password.value) == LOGIN_FAILED_MESSAGE
    pair = env.auth.login("vic", PASSWORD, totp_code=totp.code_at(secret, env.clock.now_ns()))
    assert env.principal(pair).username == "vic"


async def test_a_code_is_never_accepted_twice(env: Env) -> None:
    secret, _ = await env.enroll("vic")
    env.advance(60)
    code = totp.code_at(secret, env.clock.now_ns())
    env.auth.login("vic", PASSWORD, totp_code=code)
    for step_s in (0, 5, 20):  # 0, 5 and 25 s later: still inside the +-1 step window
        env.advance(step_s)
        assert totp.match_step(secret, code, env.clock.now_ns(), None) is not None  # valid but for the replay rule
        with pytest.raises(AuthenticationFailed) as reused:
            env.auth.login("vic", PASSWORD, totp_code=code)
        assert str(reused.value) == LOGIN_FAILED_MESSAGE
    # the previous step's code is older than the one used: refused too
    previous = totp.code_at_step(secret, totp.time_step(env.clock.now_ns()) - 1)
    if previous != code:
        with pytest.raises(AuthenticationFailed):
            env.auth.login("vic", PASSWORD, totp_code=previous)
    env.advance(30)
    env.auth.login("vic", PASSWORD, totp_code=totp.code_at(secret, env.clock.now_ns()))  # next step: fine
    # the confirmation code itself cannot be replayed at login (its step was stored)
    assert env.db.scalar("SELECT totp_last_step FROM users WHERE username='vic'") == totp.time_step(env.clock.now_ns())


async def test_confirmation_code_cannot_be_replayed_for_login(env: Env) -> None:
    pair = env.auth.login("vic", PASSWORD)
    enrollment = await env.auth.begin_totp_enrollment_async(env.principal(pair), PASSWORD)
    code = totp.code_at(enrollment.secret, env.clock.now_ns())
    env.auth.confirm_totp_enrollment(env.principal(pair), code)
    with pytest.raises(AuthenticationFailed):
        env.auth.login("vic", PASSWORD, totp_code=code)


async def test_recovery_code_works_once(env: Env) -> None:
    _, codes = await env.enroll("vic")
    pair = env.auth.login("vic", PASSWORD, recovery_code=codes[0])
    assert env.principal(pair).username == "vic"
    with pytest.raises(AuthenticationFailed) as again:
        env.auth.login("vic", PASSWORD, recovery_code=codes[0])
    assert str(again.value) == LOGIN_FAILED_MESSAGE
    # formatting is forgiving, but each code still works once
    env.auth.login("vic", PASSWORD, recovery_code=codes[1].upper().replace("-", " "))
    with pytest.raises(AuthenticationFailed):
        env.auth.login("vic", PASSWORD, recovery_code=codes[1])
    assert env.auth.recovery_codes_left(env.users.get_by_username("vic").user_id) == 8
    used = [e.payload for e in env.journal.iter_all() if e.type == "RecoveryCodeUsed"]
    assert [p["remaining"] for p in used] == [9, 8]
    # another user's code is not this user's code
    _, alice_codes = await env.enroll("alice")
    with pytest.raises(AuthenticationFailed):
        env.auth.login("vic", PASSWORD, recovery_code=alice_codes[0])


async def test_bad_second_factor_input_is_invalid_argument(env: Env) -> None:
    for kwargs, field in (
        ({"totp_code": "12345"}, "totp_code"),
        ({"totp_code": "abcdef"}, "totp_code"),
        ({"recovery_code": "nope"}, "recovery_code"),
        ({"totp_code": "123456", "recovery_code": "aaaa-bbbb-cccc-dddd"}, "recovery_code"),
    ):
        with pytest.raises(ValidationError) as info:
            env.auth.login("vic", PASSWORD, **kwargs)
        assert info.value.field == field
    assert env.db.scalar("SELECT COUNT(*) FROM auth_failures") == 0  # malformed input is not counted


async def test_secrets_are_encrypted_at_rest(env: Env, tmp_path: Path) -> None:
    secret, codes = await env.enroll("vic")
    dump = env.dump()
    assert secret not in dump and secret.lower() not in dump
    assert base64.b32decode(secret).hex() not in dump
    for code in codes:
        assert code not in dump and code.replace("-", "") not in dump
    blob = env.db.scalar("SELECT totp_secret_enc FROM users WHERE username='vic'")
    assert isinstance(blob, bytes) and len(blob) == 1 + 24 + 32 + 16
    # another box's auth key cannot read it: DATA_LOSS-class error, no secret in the message
    other = AuthService(env.db, env.journal, env.users, env.signer, env.clock, idle_timeout_s=None, auth_key=ephemeral_auth_key())
    with pytest.raises(IntegrityError) as info:
        other.login("vic", PASSWORD, totp_code=totp.code_at(secret, env.clock.now_ns() + 30 * NS_PER_SECOND))
    assert secret not in str(info.value)
    # a ciphertext moved to another user does not authenticate (associated data = user id)
    with env.db.transaction():
        env.db.execute("UPDATE users SET totp_secret_enc = ? WHERE username = 'alice'", (blob,))
    with pytest.raises(IntegrityError):
        env.auth.login("alice", PASSWORD, totp_code="123456")


async def test_required_roles_get_mfa_pending_sessions_until_enrolled(env: Env) -> None:
    first = env.auth.login("alice", PASSWORD)  # trader: required
    second = env.auth.login("alice", PASSWORD)
    assert first.mfa_pending and second.mfa_pending
    assert env.principal(first).mfa_pending
    refreshed = env.auth.refresh(first.refresh)
    assert refreshed.mfa_pending and env.auth.authenticate(refreshed.access).mfa_pending
    enrollment = await env.auth.begin_totp_enrollment_async(env.principal(refreshed), PASSWORD)
    env.auth.confirm_totp_enrollment(env.principal(refreshed), totp.code_at(enrollment.secret, env.clock.now_ns()))
    assert env.auth.authenticate(refreshed.access).mfa_pending is False  # this session is cleared
    assert env.auth.authenticate(second.access).mfa_pending is True  # others are not
    env.advance(30)
    third = env.auth.login("alice", PASSWORD, totp_code=totp.code_at(enrollment.secret, env.clock.now_ns()))
    assert third.mfa_pending is False
    assert env.auth.login("vic", PASSWORD).mfa_pending is False  # viewer: not required


async def test_reset_totp_removes_it_and_revokes_sessions(env: Env) -> None:
    secret, codes = await env.enroll("alice")
    env.advance(30)
    pair = env.auth.login("alice", PASSWORD, totp_code=totp.code_at(secret, env.clock.now_ns()))
    user = env.auth.reset_totp("alice")
    assert user.totp_enrolled is False
    with pytest.raises(Exception):
        env.auth.authenticate(pair.access)
    again = env.auth.login("alice", PASSWORD)  # no code needed any more ...
    assert again.mfa_pending is True  # ... but the trader must enroll again
    assert env.db.scalar("SELECT COUNT(*) FROM recovery_codes WHERE user_id = ?", (user.user_id,)) == 0
    assert "UserTotpReset" in {e.type for e in env.journal.iter_all()}


async def test_enrollment_preconditions(env: Env) -> None:
    pair = env.auth.login("vic", PASSWORD)
    principal = env.principal(pair)
    with pytest.raises(PreconditionError, match="BeginTotpEnrollment first"):
        env.auth.confirm_totp_enrollment(principal, "123456")
    enrollment = await env.auth.begin_totp_enrollment_async(principal, PASSWORD)
    env.advance(16 * 60)
    with pytest.raises(PreconditionError, match="expired"):
        env.auth.confirm_totp_enrollment(principal, totp.code_at(enrollment.secret, env.clock.now_ns()))
    enrollment = await env.auth.begin_totp_enrollment_async(principal, PASSWORD)  # begin again replaces it
    env.auth.confirm_totp_enrollment(principal, totp.code_at(enrollment.secret, env.clock.now_ns()))
    with pytest.raises(PreconditionError, match="already enrolled"):
        await env.auth.begin_totp_enrollment_async(principal, PASSWORD)


async def test_service_principals_cannot_manage_credentials(env: Env) -> None:
    issued = env.auth.service_tokens.create("robot", "admin", 3600, "alice")
    principal = env.auth.authenticate(issued.token)
    assert principal.kind == "service" and principal.role == "admin"
    with pytest.raises(ServiceTokenForbidden):
        await env.auth.begin_totp_enrollment_async(principal, PASSWORD)
    with pytest.raises(ServiceTokenForbidden):
        env.auth.confirm_totp_enrollment(principal, "123456")
    with pytest.raises(ServiceTokenForbidden):
        await env.auth.change_password_async(principal, PASSWORD, "another-password-123")
