"""Attacks on authentication against the real server (harness appliance, raw gRPC stubs):
forged / expired / alg-none / HS256-with-the-public-key / revoked tokens, refresh-token replay,
TOTP replay, recovery codes, brute force (per user and per peer), idle timeout on a SimClock,
service tokens, the MFA-enrollment restriction on every RPC, the API rate limit, and
property-based malformed and oversized requests on every AuthService and UserService RPC.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import grpc
import jwt
import pyotp
import pytest
from cryptography.hazmat.primitives import serialization
from google.protobuf import field_mask_pb2
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from appliance.engine.clock import NS_PER_SECOND, SimClock
from appliance.security.auth import LOGIN_FAILED_MESSAGE
from appliance.security.permissions import MFA_ENROLLMENT_REQUIRED_MESSAGE, MFA_PENDING_ALLOWED_METHODS, PUBLIC, METHOD_PERMISSIONS, all_rpc_methods
from appliance.security.ratelimit import LOGIN_THROTTLED_MESSAGE
from appliance.security.users import USERNAME_PATTERN
from lyra.v1 import auth_pb2, auth_pb2_grpc, orders_pb2, orders_pb2_grpc, users_pb2, users_pb2_grpc

C = grpc.StatusCode
NO_MFA = """
[auth]
totp_required_roles = []
rate_limit_rps = 1000.0
rate_limit_burst = 1000
"""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _meta(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


class Api:
    """Raw stubs on one channel (no SDK retries, so every code is the server's own)."""

    def __init__(self, running) -> None:
        self.running = running
        self.channel = grpc.insecure_channel(running.target)
        self.auth = auth_pb2_grpc.AuthServiceStub(self.channel)
        self.users = users_pb2_grpc.UserServiceStub(self.channel)
        self.orders = orders_pb2_grpc.OrderServiceStub(self.channel)

    def login(self, username: str, password: str, **kwargs) -> auth_pb2.LoginResponse:
        return self.auth.Login(auth_pb2.LoginRequest(username=username, password=password, **kwargs), timeout=30)

    def error(self, fn, *args, **kwargs) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as info:
            fn(*args, timeout=30, **kwargs)
        return info.value

    def list_orders(self, token: str):
        return self.orders.ListOrders(orders_pb2.ListOrdersRequest(), metadata=_meta(token), timeout=30)

    def close(self) -> None:
        self.channel.close()


@pytest.fixture
def api(appliance_factory):
    running = appliance_factory(extra=NO_MFA)
    for role in ("admin", "trader", "viewer"):
        running.add_user(role, role)
    client = Api(running)
    yield client
    client.close()


# == forged tokens =================================================================================
def test_forged_and_tampered_access_tokens_are_unauthenticated(api: Api) -> None:
    good = api.login("viewer", "viewer-password-123").access_token
    assert api.list_orders(good) is not None
    header, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    public_pem = api.running.app.auth.signer.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    admin_claims = dict(claims, role="admin", usr="admin")
    kid = json.loads(base64.urlsafe_b64decode(header + "=="))["kid"]

    def hs256(secret: bytes, body: dict) -> str:
        head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
        data = _b64(json.dumps(body).encode())
        sig = _b64(hmac.new(secret, f"{head}.{data}".encode(), hashlib.sha256).digest())
        return f"{head}.{data}.{sig}"

    forgeries = {
        "alg none": f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT', 'kid': kid}).encode())}.{_b64(json.dumps(admin_claims).encode())}.",
        "HS256 keyed with the public key": hs256(public_pem, admin_claims),
        "payload swapped": f"{header}.{_b64(json.dumps(admin_claims).encode())}.{signature}",
        "signature cut": f"{header}.{payload}.",
        "own key": jwt.encode(admin_claims, "x" * 32, algorithm="HS256", headers={"kid": kid}),
        "garbage": "not.a.jwt",
        "forged service token": "lyst_0123456789abcdef_" + "A" * 43,
    }
    for name, token in forgeries.items():
        err = api.error(api.orders.ListOrders, orders_pb2.ListOrdersRequest(), metadata=_meta(token))
        assert err.code() is C.UNAUTHENTICATED, name
        assert token not in err.details(), name
    # and the genuine token still works
    assert api.list_orders(good) is not None


def test_expired_and_revoked_tokens_are_unauthenticated(api: Api) -> None:
    from appliance.security.tokens import TokenSigner

    app = api.running.app
    login = api.login("viewer", "viewer-password-123")
    user = app.auth.users.get_by_username("viewer")
    past = SimClock(app.wall_clock.now_ns() - 3600 * NS_PER_SECOND)
    expired = TokenSigner(app.auth.signer._private_key, app.auth.signer.key_id, past, ttl_s=900).issue(
        user_id=user.user_id, username="viewer", role="viewer", session_id="any-session")
    err = api.error(api.orders.ListOrders, orders_pb2.ListOrdersRequest(), metadata=_meta(expired.token))
    assert err.code() is C.UNAUTHENTICATED and "token expired" in err.details()
    # revoked: logout ends the session at once, though the JWT has 15 minutes left
    api.auth.Logout(auth_pb2.LogoutRequest(refresh_token=login.refresh_token), metadata=_meta(login.access_token), timeout=30)
    err = api.error(api.orders.ListOrders, orders_pb2.ListOrdersRequest(), metadata=_meta(login.access_token))
    assert err.code() is C.UNAUTHENTICATED and "session revoked" in err.details()


def test_replayed_refresh_token_revokes_the_session(api: Api) -> None:
    login = api.login("trader", "trader-password-123")
    rotated = api.auth.Refresh(auth_pb2.RefreshRequest(refresh_token=login.refresh_token), timeout=30)
    assert api.list_orders(rotated.access_token) is not None
    err = api.error(api.auth.Refresh, auth_pb2.RefreshRequest(refresh_token=login.refresh_token))  # the replay
    assert err.code() is C.UNAUTHENTICATED and "already used" in err.details()
    # the whole session is gone: the rotated refresh token and every access token of it
    err = api.error(api.auth.Refresh, auth_pb2.RefreshRequest(refresh_token=rotated.refresh_token))
    assert err.code() is C.UNAUTHENTICATED
    for token in (login.access_token, rotated.access_token):
        err = api.error(api.orders.ListOrders, orders_pb2.ListOrdersRequest(), metadata=_meta(token))
        assert err.code() is C.UNAUTHENTICATED and "session revoked" in err.details()
    reasons = api.running.call(lambda: api.running.app.db.query("SELECT revoke_reason FROM sessions WHERE revoked = 1"))
    assert ("refresh_reuse",) in reasons  # committed, not rolled back with the failed call


# == TOTP ==========================================================================================
def _enroll(api: Api, username: str, password: str) -> tuple[str, list[str], auth_pb2.LoginResponse]:
    login = api.login(username, password)
    begin = api.auth.BeginTotpEnrollment(auth_pb2.BeginTotpEnrollmentRequest(password=password), metadata=_meta(login.access_token), timeout=30)
    assert begin.otpauth_uri.startswith(f"otpauth://totp/Lyra:{username}?") and "issuer=Lyra" in begin.otpauth_uri
    confirm = api.auth.ConfirmTotpEnrollment(auth_pb2.ConfirmTotpEnrollmentRequest(totp_code=pyotp.TOTP(begin.secret).now()),
                                             metadata=_meta(login.access_token), timeout=30)
    return begin.secret, list(confirm.recovery_codes), login


def _fresh_code(api: Api, secret: str, username: str) -> str:
    """A code for a step after the last accepted one (the test clock is the wall clock)."""
    app = api.running.app
    last = api.running.call(lambda: app.db.scalar("SELECT totp_last_step FROM users WHERE username = ?", (username,)))
    step = max(last + 1, app.wall_clock.now_ns() // NS_PER_SECOND // 30 - 1)
    assert step <= app.wall_clock.now_ns() // NS_PER_SECOND // 30 + 1
    return pyotp.TOTP(secret).at(step * 30)


def test_totp_login_mfa_prompt_and_replay_refused(api: Api) -> None:
    secret, codes, _ = _enroll(api, "viewer", "viewer-password-123")
    assert len(codes) == 10
    err = api.error(api.auth.Login, auth_pb2.LoginRequest(username="viewer", password="viewer-password-123"))
    assert err.code() is C.UNAUTHENTICATED and ("lyra-mfa", "required") in tuple(err.trailing_metadata())
    wrong_password = api.error(api.auth.Login, auth_pb2.LoginRequest(username="viewer", password="nope-nope-nope"))
    assert ("lyra-mfa", "required") not in tuple(wrong_password.trailing_metadata() or ())
    code = _fresh_code(api, secret, "viewer")
    assert api.login("viewer", "viewer-password-123", totp_code=code).access_token
    # the same code again, within its validity window: refused like a wrong password
    replay = api.error(api.auth.Login, auth_pb2.LoginRequest(username="viewer", password="viewer-password-123", totp_code=code))
    assert replay.code() is C.UNAUTHENTICATED and replay.details() == wrong_password.details() == LOGIN_FAILED_MESSAGE
    assert secret not in replay.details()


def test_recovery_code_works_exactly_once(api: Api) -> None:
    _, codes, _ = _enroll(api, "viewer", "viewer-password-123")
    assert api.login("viewer", "viewer-password-123", recovery_code=codes[3]).access_token
    err = api.error(api.auth.Login, auth_pb2.LoginRequest(username="viewer", password="viewer-password-123", recovery_code=codes[3]))
    assert err.code() is C.UNAUTHENTICATED and err.details() == LOGIN_FAILED_MESSAGE
    assert api.login("viewer", "viewer-password-123", recovery_code=codes[4]).access_token


def test_totp_secret_and_codes_never_stored_or_journaled_in_clear(api: Api) -> None:
    secret, codes, _ = _enroll(api, "viewer", "viewer-password-123")
    app = api.running.app

    def dump():
        text = []
        for table in ("users", "recovery_codes", "journal", "signing_keys"):
            text += [repr(r) for r in app.db.query(f"SELECT * FROM {table}")]
        return "\n".join(text)

    text = api.running.call(dump)
    for value in [secret, "viewer-password-123"] + codes + [c.replace("-", "") for c in codes]:
        assert value not in text
    assert "PRIVATE KEY" not in text


# == brute force ===================================================================================
LOCKOUT = """
[auth]
totp_required_roles = []
rate_limit_rps = 1000.0
rate_limit_burst = 1000
lockout_threshold = 3
lockout_max = 6
lockout_s = 600
"""


@pytest.fixture
def lockout_api(appliance_factory):
    running = appliance_factory(extra=LOCKOUT)
    for role in ("admin", "trader", "viewer"):
        running.add_user(role, role)
    clock = SimClock(running.app.wall_clock.now_ns())
    running.app.auth.throttle.clock = clock  # backoff delays pass on a SimClock, not by sleeping
    client = Api(running)
    client.clock = clock
    yield client
    client.close()


def _attempt(api: Api, username: str, password: str) -> tuple[grpc.StatusCode, str, float | None]:
    try:
        api.login(username, password)
        return C.OK, "", None
    except grpc.RpcError as err:
        retry = dict(err.trailing_metadata() or ()).get("lyra-retry-after-s")
        return err.code(), err.details(), float(retry) if retry is not None else None


def test_brute_force_locks_out_even_the_right_password(lockout_api: Api) -> None:
    api = lockout_api
    outcomes = []
    for _ in range(6):  # lockout_max wrong passwords, waiting out each backoff on the SimClock
        code, details, retry = _attempt(api, "trader", "wrong-password-1")
        if code is C.RESOURCE_EXHAUSTED:
            api.clock.advance_to(api.clock.now_ns() + int(retry * NS_PER_SECOND))
            code, details, retry = _attempt(api, "trader", "wrong-password-1")
        outcomes.append(code)
    assert outcomes == [C.UNAUTHENTICATED] * 6
    # the (lockout_max+1)th attempt, with the RIGHT password: refused, with retry-after metadata
    code, details, retry = _attempt(api, "trader", "trader-password-123")
    assert code is C.RESOURCE_EXHAUSTED and details == LOGIN_THROTTLED_MESSAGE and retry == pytest.approx(600, abs=1)
    api.clock.advance_to(api.clock.now_ns() + 300 * NS_PER_SECOND)
    assert _attempt(api, "trader", "trader-password-123")[0] is C.RESOURCE_EXHAUSTED
    # an unknown user under the same treatment answers identically (existence is not revealed)
    for _ in range(20):
        code, _, retry = _attempt(api, "nobody-here", "wrong-password-1")
        if code is C.RESOURCE_EXHAUSTED and retry > 500:
            break
        if code is C.RESOURCE_EXHAUSTED:
            api.clock.advance_to(api.clock.now_ns() + int(retry * NS_PER_SECOND))
    unknown = _attempt(api, "nobody-here", "whatever-password")
    assert unknown[:2] == (C.RESOURCE_EXHAUSTED, LOGIN_THROTTLED_MESSAGE)
    api.clock.advance_to(api.clock.now_ns() + 601 * NS_PER_SECOND)
    assert _attempt(api, "trader", "trader-password-123")[0] is C.OK


def test_per_peer_lockout_across_usernames(lockout_api: Api) -> None:
    api = lockout_api
    api.running.add_user("fresh-user", "analyst")
    for name in ("admin", "trader", "viewer", "ghost-a", "ghost-b", "ghost-c"):
        api.clock.advance_to(api.clock.now_ns() + 30 * NS_PER_SECOND)  # past every per-user backoff
        assert _attempt(api, name, "wrong-password-1")[0] is C.UNAUTHENTICATED, name
    # six failures from 127.0.0.1 across six usernames: this address is locked out ...
    code, details, retry = _attempt(api, "fresh-user", "analyst-password-123")
    assert code is C.RESOURCE_EXHAUSTED and retry == pytest.approx(600, abs=1)
    # ... although that user has no failure of its own
    app = api.running.app
    rows = api.running.call(lambda: app.db.query("SELECT scope, key, failures FROM auth_failures ORDER BY scope, key"))
    assert ("peer", "127.0.0.1", 6) in rows and not [r for r in rows if r[1] == "fresh-user"]


# == sessions and service tokens ===================================================================
def test_idle_session_ends_on_a_sim_clock(api: Api) -> None:
    app = api.running.app
    login = api.login("viewer", "viewer-password-123")
    clock = SimClock(app.wall_clock.now_ns())
    app.auth.clock = clock  # session times; JWTs keep the wall clock (15 min, not reached)
    clock.advance_to(clock.now_ns() + 59 * 60 * NS_PER_SECOND)
    assert api.list_orders(login.access_token) is not None
    clock.advance_to(clock.now_ns() + 3600 * NS_PER_SECOND)
    err = api.error(api.orders.ListOrders, orders_pb2.ListOrdersRequest(), metadata=_meta(login.access_token))
    assert err.code() is C.UNAUTHENTICATED and "idle" in err.details()
    err = api.error(api.auth.Refresh, auth_pb2.RefreshRequest(refresh_token=login.refresh_token))
    assert err.code() is C.UNAUTHENTICATED


def test_service_token_scoped_expired_revoked(api: Api) -> None:
    admin = api.login("admin", "admin-password-123").access_token
    created = api.users.CreateServiceToken(users_pb2.CreateServiceTokenRequest(name="grafana", role="viewer", ttl_seconds=3600),
                                           metadata=_meta(admin), timeout=30)
    token = created.token
    assert token.startswith(f"lyst_{created.service_token.token_id}_")
    who = api.auth.WhoAmI(auth_pb2.WhoAmIRequest(), metadata=_meta(token), timeout=30)
    assert (who.principal_kind, who.role, who.username) == ("service", "viewer", "service:grafana")
    assert api.list_orders(token) is not None
    err = api.error(api.users.ListUsers, users_pb2.ListUsersRequest(), metadata=_meta(token))
    assert err.code() is C.PERMISSION_DENIED  # scoped to viewer
    # no second factor or password for a token, even an admin one
    boss = api.users.CreateServiceToken(users_pb2.CreateServiceTokenRequest(name="boss", role="admin", ttl_seconds=7200),
                                        metadata=_meta(admin), timeout=30).token
    for call, request in ((api.auth.BeginTotpEnrollment, auth_pb2.BeginTotpEnrollmentRequest(password="x" * 12)),
                          (api.auth.ChangePassword, auth_pb2.ChangePasswordRequest(current_password="x" * 12, new_password="y" * 12)),
                          (api.auth.ConfirmTotpEnrollment, auth_pb2.ConfirmTotpEnrollmentRequest(totp_code="123456"))):
        assert api.error(call, request, metadata=_meta(boss)).code() is C.PERMISSION_DENIED
    assert api.users.ListUsers(users_pb2.ListUsersRequest(), metadata=_meta(boss), timeout=30).users
    # revoked: at once
    api.users.RevokeServiceToken(users_pb2.RevokeServiceTokenRequest(token_id=created.service_token.token_id),
                                 metadata=_meta(admin), timeout=30)
    err = api.error(api.orders.ListOrders, orders_pb2.ListOrdersRequest(), metadata=_meta(token))
    assert err.code() is C.UNAUTHENTICATED and "revoked" in err.details()
    # expired: on a SimClock
    app = api.running.app
    clock = SimClock(app.wall_clock.now_ns() + 7200 * NS_PER_SECOND)
    app.auth.service_tokens.clock = clock
    err = api.error(api.orders.ListOrders, orders_pb2.ListOrdersRequest(), metadata=_meta(boss))
    assert err.code() is C.UNAUTHENTICATED and "expired" in err.details()


def test_api_rate_limit_per_token(appliance_factory) -> None:
    running = appliance_factory(extra="[auth]\nrate_limit_rps = 0.05\nrate_limit_burst = 4\n")
    running.add_user("viewer", "viewer")
    api = Api(running)
    try:
        first = api.login("viewer", "viewer-password-123").access_token
        second = api.login("viewer", "viewer-password-123").access_token
        for _ in range(4):
            api.list_orders(first)
        err = api.error(api.orders.ListOrders, orders_pb2.ListOrdersRequest(), metadata=_meta(first))
        assert err.code() is C.RESOURCE_EXHAUSTED and "rate limit" in err.details()
        assert 0 < float(dict(err.trailing_metadata())["lyra-retry-after-s"]) <= 20.0
        assert api.list_orders(second) is not None  # another session has its own bucket
    finally:
        api.close()


# == MFA enrollment required =========================================================================
def test_mfa_pending_session_is_limited_to_enrollment_on_every_rpc(appliance_factory) -> None:
    running = appliance_factory(extra="[auth]\ntotp_required_roles = [\"admin\", \"trader\"]\nrate_limit_rps = 1000.0\nrate_limit_burst = 1000\n")
    for role in ("admin", "trader", "viewer"):
        running.add_user(role, role)
    api = Api(running)
    try:
        login = api.login("admin", "admin-password-123")
        assert login.mfa_enrollment_required is True
        assert api.login("viewer", "viewer-password-123").mfa_enrollment_required is False
        checked = 0
        for method in all_rpc_methods():
            if METHOD_PERMISSIONS[method] == PUBLIC:
                continue
            empty = b""
            try:
                if method.endswith(("/StreamOrderEvents", "/ExportAuditRecords")):
                    for _ in api.channel.unary_stream(method)(empty, metadata=_meta(login.access_token), timeout=1):
                        pass
                else:
                    api.channel.unary_unary(method)(empty, metadata=_meta(login.access_token), timeout=30)
                code, details = C.OK, ""
            except grpc.RpcError as err:
                code, details = err.code(), err.details()
            if method in MFA_PENDING_ALLOWED_METHODS:
                assert details != MFA_ENROLLMENT_REQUIRED_MESSAGE, method
            else:
                assert (code, details) == (C.PERMISSION_DENIED, MFA_ENROLLMENT_REQUIRED_MESSAGE), method
                checked += 1
        assert checked == len(all_rpc_methods()) - len(MFA_PENDING_ALLOWED_METHODS) - 2
        # enrolling lifts the restriction for this very session
        begin = api.auth.BeginTotpEnrollment(auth_pb2.BeginTotpEnrollmentRequest(password="admin-password-123"),
                                             metadata=_meta(login.access_token), timeout=30)
        api.auth.ConfirmTotpEnrollment(auth_pb2.ConfirmTotpEnrollmentRequest(totp_code=pyotp.TOTP(begin.secret).now()),
                                       metadata=_meta(login.access_token), timeout=30)
        assert api.users.ListUsers(users_pb2.ListUsersRequest(), metadata=_meta(login.access_token), timeout=30).users
        who = api.auth.WhoAmI(auth_pb2.WhoAmIRequest(), metadata=_meta(login.access_token), timeout=30)
        assert who.totp_enrolled is True and who.principal_kind == "user"
    finally:
        api.close()


# == property-based: malformed and oversized requests ==================================================
FUZZ = """
[auth]
totp_required_roles = []
rate_limit_rps = 100000.0
rate_limit_burst = 100000
lockout_threshold = 100000
lockout_max = 200000
"""
MAX_MESSAGE = 4 * 1024 * 1024  # server.max_message_bytes default
EXISTING = {"admin", "trader", "viewer"}
ROLES = {"admin", "trader", "risk_manager", "analyst", "auditor", "viewer"}

_chars = st.characters(blacklist_categories=("Cs",))  # lone surrogates cannot be sent as proto strings
fuzz_text = st.one_of(
    st.just(""),
    st.text(_chars, max_size=80),
    st.text(_chars, max_size=20).map(lambda s: f"{s}\x00{s}"),
    st.sampled_from(["admin", "trader", "viewer", "123456", "aaaa-bbbb-cccc-dddd", "x" * 12, "ghost-user"]),
    st.builds(lambda s, n: (s * n)[:1_000_000], st.text(_chars, min_size=1, max_size=4), st.integers(1_000, 1_000_000)),
)

valid_name = st.from_regex(r"\A[a-z0-9_.-]{3,64}\Z")
password_like = st.text(_chars, min_size=12, max_size=60)
six_digits = st.from_regex(r"\A[0-9]{6}\Z")
maybe_empty = lambda strategy: st.one_of(st.just(""), strategy)  # noqa: E731


def _valid_username(s: str) -> bool:
    return bool(USERNAME_PATTERN.fullmatch(s))


def _password_ok(s: str) -> bool:
    return 12 <= len(s) <= 1024


def _snapshot(running) -> tuple:
    db = running.app.db

    def read():
        return (
            db.query("SELECT * FROM users ORDER BY user_id"),
            db.query("SELECT session_id, revoked, mfa_pending FROM sessions ORDER BY session_id"),
            db.query("SELECT * FROM service_tokens ORDER BY token_id"),
            db.query("SELECT * FROM recovery_codes ORDER BY user_id, code_hash"),
        )
    return running.call(read)


@pytest.fixture
def fuzz_api(appliance_factory):
    running = appliance_factory(extra=FUZZ)
    for role in ("admin", "trader", "viewer"):
        running.add_user(role, role)
    client = Api(running)
    client.token = client.login("admin", "admin-password-123").access_token
    yield client
    client.close()


def _call(api: Api, method: str, request, token: str | None) -> tuple[grpc.StatusCode, str]:
    metadata = _meta(token) if token else ()
    try:
        api.channel.unary_unary(method, request_serializer=type(request).SerializeToString,
                                response_deserializer=lambda b: b)(request, metadata=metadata, timeout=60)
        return C.OK, ""
    except grpc.RpcError as err:
        return err.code(), err.details() or ""


def _check(api: Api, method: str, request, expected: grpc.StatusCode, field: str | None, token: str | None = "admin") -> None:
    size = request.ByteSize()
    before = _snapshot(api.running)
    code, details = _call(api, method, request, api.token if token == "admin" else token)
    if size > MAX_MESSAGE - 64:
        assert code is C.RESOURCE_EXHAUSTED, (method, size, code, details[:200])
    else:
        assert code is expected, (method, code, expected, details[:300])
        if field is not None:
            assert details.startswith(f"{field}: "), (method, details[:300])
    assert code is not C.INTERNAL and code is not C.UNKNOWN
    assert len(details) < 400, (method, len(details))  # a clear message, never the (huge) input echoed
    after = _snapshot(api.running)
    assert before == after, method
    assert api.list_orders(api.token) is not None  # the admin's session is intact


_FUZZ_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                                   HealthCheck.too_slow, HealthCheck.data_too_large])


@_FUZZ_SETTINGS
@given(username=st.one_of(fuzz_text, valid_name), password=st.one_of(fuzz_text, password_like),
       totp_code=maybe_empty(st.one_of(fuzz_text, six_digits)), recovery_code=maybe_empty(fuzz_text))
@example(username="ghost-user", password="x" * 12, totp_code="", recovery_code="")
@example(username="admin", password="\x00" * 12, totp_code="123456", recovery_code="")
@example(username="trader", password="é" * 1024, totp_code="", recovery_code="aaaa-bbbb-cccc-dddd")
@example(username="viewer", password="p" * 1025, totp_code="", recovery_code="")
@example(username="a" * 65, password="x" * 12, totp_code="", recovery_code="")
@example(username="admin", password="x" * 1_000_000, totp_code="", recovery_code="")
def test_fuzz_login(fuzz_api: Api, username, password, totp_code, recovery_code) -> None:
    from appliance.security import totp

    request = auth_pb2.LoginRequest(username=username, password=password, totp_code=totp_code, recovery_code=recovery_code)
    assume(not (username in EXISTING and password == f"{username}-password-123"))
    if not username or not _valid_username(username):
        expected, field = C.INVALID_ARGUMENT, "username"
    elif not password or len(password) > 1024:
        expected, field = C.INVALID_ARGUMENT, "password"
    elif totp_code and recovery_code:
        expected, field = C.INVALID_ARGUMENT, "recovery_code"
    elif totp_code and not totp.is_code_format(totp_code):
        expected, field = C.INVALID_ARGUMENT, "totp_code"
    elif recovery_code and totp.normalize_recovery_code(recovery_code) is None:
        expected, field = C.INVALID_ARGUMENT, "recovery_code"
    else:
        expected, field = C.UNAUTHENTICATED, None
    _check(fuzz_api, "/lyra.v1.AuthService/Login", request, expected, field, token=None)


@_FUZZ_SETTINGS
@given(refresh_token=fuzz_text, logout=st.booleans())
def test_fuzz_refresh_and_logout(fuzz_api: Api, refresh_token, logout) -> None:
    if not refresh_token:
        expected, field = C.INVALID_ARGUMENT, "refresh_token"
    elif len(refresh_token) > 1024:
        expected, field = C.INVALID_ARGUMENT, "refresh_token"
    else:
        expected, field = (C.OK if logout else C.UNAUTHENTICATED), None
    if logout:
        _check(fuzz_api, "/lyra.v1.AuthService/Logout", auth_pb2.LogoutRequest(refresh_token=refresh_token), expected, field)
    else:
        _check(fuzz_api, "/lyra.v1.AuthService/Refresh", auth_pb2.RefreshRequest(refresh_token=refresh_token), expected, field, token=None)


@_FUZZ_SETTINGS
@given(password=st.one_of(fuzz_text, password_like), code=st.one_of(fuzz_text, six_digits))
def test_fuzz_totp_enrollment(fuzz_api: Api, password, code) -> None:
    from appliance.security import totp

    assume(password != "admin-password-123")
    # a wrong password is INVALID_ARGUMENT too: the caller is authenticated, the argument is wrong
    expected, field = C.INVALID_ARGUMENT, "password"
    _check(fuzz_api, "/lyra.v1.AuthService/BeginTotpEnrollment", auth_pb2.BeginTotpEnrollmentRequest(password=password), expected, field)
    if totp.is_code_format(code):
        expected, field = C.FAILED_PRECONDITION, None  # nothing to confirm
    else:
        expected, field = C.INVALID_ARGUMENT, "totp_code"
    _check(fuzz_api, "/lyra.v1.AuthService/ConfirmTotpEnrollment", auth_pb2.ConfirmTotpEnrollmentRequest(totp_code=code), expected, field)
    _check(fuzz_api, "/lyra.v1.AuthService/WhoAmI", auth_pb2.WhoAmIRequest(), C.OK, None)


@_FUZZ_SETTINGS
@given(current=st.one_of(fuzz_text, password_like), new=st.one_of(fuzz_text, password_like))
def test_fuzz_change_password(fuzz_api: Api, current, new) -> None:
    assume(current != "admin-password-123")
    if not current or len(current) > 1024:
        expected, field = C.INVALID_ARGUMENT, "current_password"
    elif not _password_ok(new):
        expected, field = C.INVALID_ARGUMENT, "new_password"
    elif new == current:
        expected, field = C.INVALID_ARGUMENT, "new_password"
    else:
        expected, field = C.INVALID_ARGUMENT, "current_password"  # wrong current password
    _check(fuzz_api, "/lyra.v1.AuthService/ChangePassword",
           auth_pb2.ChangePasswordRequest(current_password=current, new_password=new), expected, field)


def _username_case(username: str, *, exists_code=C.OK) -> tuple[grpc.StatusCode, str | None]:
    if not username:
        return C.INVALID_ARGUMENT, "username"
    if not _valid_username(username):
        return C.INVALID_ARGUMENT, "username"
    return (exists_code, None) if username in EXISTING else (C.NOT_FOUND, None)


@_FUZZ_SETTINGS
@given(username=st.one_of(fuzz_text, valid_name), password=st.one_of(fuzz_text, password_like),
       role=st.one_of(fuzz_text, st.sampled_from(sorted(ROLES))))
def test_fuzz_create_user(fuzz_api: Api, username, password, role) -> None:
    if not username or not _valid_username(username):
        expected, field = C.INVALID_ARGUMENT, "username"
    elif role not in ROLES:
        expected, field = C.INVALID_ARGUMENT, "role"
    elif not _password_ok(password):
        expected, field = C.INVALID_ARGUMENT, "password"
    elif username in EXISTING:
        expected, field = C.ALREADY_EXISTS, None
    else:
        assume(False)  # a valid new user would (rightly) change state
    _check(fuzz_api, "/lyra.v1.UserService/CreateUser",
           users_pb2.CreateUserRequest(username=username, password=password, role=role), expected, field)


@_FUZZ_SETTINGS
@given(username=st.one_of(fuzz_text, valid_name), include_revoked=st.booleans())
def test_fuzz_user_lookups(fuzz_api: Api, username, include_revoked) -> None:
    expected, field = _username_case(username)
    _check(fuzz_api, "/lyra.v1.UserService/GetUser", users_pb2.GetUserRequest(username=username), expected, field)
    expected, field = (C.OK, None) if username == "" else _username_case(username)
    _check(fuzz_api, "/lyra.v1.UserService/ListSessions",
           users_pb2.ListSessionsRequest(username=username, include_revoked=include_revoked), expected, field)
    _check(fuzz_api, "/lyra.v1.UserService/ListUsers", users_pb2.ListUsersRequest(), C.OK, None)
    _check(fuzz_api, "/lyra.v1.UserService/ListServiceTokens",
           users_pb2.ListServiceTokensRequest(include_revoked=include_revoked), C.OK, None)


@_FUZZ_SETTINGS
@given(username=st.one_of(fuzz_text, valid_name), role=st.one_of(fuzz_text, st.sampled_from(sorted(ROLES))), disabled=st.booleans(),
       paths=st.lists(st.one_of(st.sampled_from(["role", "disabled"]), st.text(_chars, max_size=30)), max_size=3))
def test_fuzz_update_user(fuzz_api: Api, username, role, disabled, paths) -> None:
    assume(username not in EXISTING)
    request = users_pb2.UpdateUserRequest(username=username, role=role, disabled=disabled,
                                          update_mask=field_mask_pb2.FieldMask(paths=paths))
    if not username or not _valid_username(username):
        expected, field = C.INVALID_ARGUMENT, "username"
    elif not paths or any(p not in ("role", "disabled") for p in paths):
        expected, field = C.INVALID_ARGUMENT, "update_mask"
    elif "role" in paths and role not in ROLES:
        expected, field = C.INVALID_ARGUMENT, "role"
    else:
        expected, field = C.NOT_FOUND, None
    _check(fuzz_api, "/lyra.v1.UserService/UpdateUser", request, expected, field)


@_FUZZ_SETTINGS
@given(username=st.one_of(fuzz_text, valid_name), new_password=st.one_of(fuzz_text, password_like))
def test_fuzz_resets(fuzz_api: Api, username, new_password) -> None:
    assume(username not in EXISTING)
    if not username or not _valid_username(username):
        expected, field = C.INVALID_ARGUMENT, "username"
    elif not _password_ok(new_password):
        expected, field = C.INVALID_ARGUMENT, "new_password"
    else:
        expected, field = C.NOT_FOUND, None
    _check(fuzz_api, "/lyra.v1.UserService/ResetPassword",
           users_pb2.ResetPasswordRequest(username=username, new_password=new_password), expected, field)
    expected, field = _username_case(username)
    _check(fuzz_api, "/lyra.v1.UserService/ResetTotp", users_pb2.ResetTotpRequest(username=username), expected, field)


@_FUZZ_SETTINGS
@given(identifier=fuzz_text)
def test_fuzz_revocations(fuzz_api: Api, identifier) -> None:
    for method, request, field in (
        ("/lyra.v1.UserService/RevokeSession", users_pb2.RevokeSessionRequest(session_id=identifier), "session_id"),
        ("/lyra.v1.UserService/RevokeServiceToken", users_pb2.RevokeServiceTokenRequest(token_id=identifier), "token_id"),
    ):
        if not identifier or len(identifier) > 128:
            _check(fuzz_api, method, request, C.INVALID_ARGUMENT, field)
        else:
            _check(fuzz_api, method, request, C.NOT_FOUND, None)


@_FUZZ_SETTINGS
@given(name=st.one_of(fuzz_text, valid_name), role=st.one_of(fuzz_text, st.sampled_from(sorted(ROLES))),
       ttl=st.one_of(st.integers(-2**63, 2**63 - 1), st.integers(3000, 400 * 86_400)))
def test_fuzz_create_service_token(fuzz_api: Api, name, role, ttl) -> None:
    if not USERNAME_PATTERN.fullmatch(name):
        expected, field = C.INVALID_ARGUMENT, "name"
    elif role not in ROLES:
        expected, field = C.INVALID_ARGUMENT, "role"
    elif not 3600 <= ttl <= 365 * 86_400:
        expected, field = C.INVALID_ARGUMENT, "ttl_seconds"
    else:
        assume(False)  # a valid token would (rightly) be created
    _check(fuzz_api, "/lyra.v1.UserService/CreateServiceToken",
           users_pb2.CreateServiceTokenRequest(name=name, role=role, ttl_seconds=ttl), expected, field)
