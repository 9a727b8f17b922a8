"""UserService and the self-service AuthService RPCs against the real server: users, roles,
disabling, the last-admin rule, password and TOTP resets, sessions, service tokens, ChangePassword,
secrets at rest, and a restart on the same data folder (auth key + encrypted keys survive)."""

from __future__ import annotations

import importlib.util
import stat
from pathlib import Path

import grpc
import pyotp
import pytest
from google.protobuf import field_mask_pb2

from lyra.v1 import auth_pb2, auth_pb2_grpc, orders_pb2, orders_pb2_grpc, users_pb2, users_pb2_grpc

C = grpc.StatusCode
CONFIG = """
[auth]
totp_required_roles = []
rate_limit_rps = 1000.0
rate_limit_burst = 1000
"""

_spec = importlib.util.spec_from_file_location("lyra_integration_harness_users", Path(__file__).with_name("conftest.py"))
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)


def _meta(token: str):
    return (("authorization", f"Bearer {token}"),)


class Api:
    def __init__(self, running) -> None:
        self.running = running
        self.channel = grpc.insecure_channel(running.target)
        self.auth = auth_pb2_grpc.AuthServiceStub(self.channel)
        self.users = users_pb2_grpc.UserServiceStub(self.channel)
        self.orders = orders_pb2_grpc.OrderServiceStub(self.channel)

    def login(self, username: str, password: str, **kw) -> auth_pb2.LoginResponse:
        return self.auth.Login(auth_pb2.LoginRequest(username=username, password=password, **kw), timeout=30)

    def code(self, fn, request, token: str | None = None) -> grpc.StatusCode:
        try:
            fn(request, metadata=_meta(token) if token else (), timeout=30)
            return C.OK
        except grpc.RpcError as err:
            return err.code()

    def error(self, fn, request, token: str | None = None) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as info:
            fn(request, metadata=_meta(token) if token else (), timeout=30)
        return info.value

    def works(self, token: str) -> bool:
        return self.code(self.orders.ListOrders, orders_pb2.ListOrdersRequest(), token) is C.OK


@pytest.fixture
def api(appliance_factory):
    running = appliance_factory(extra=CONFIG)
    for role in ("admin", "trader", "viewer"):
        running.add_user(role, role)
    client = Api(running)
    client.admin = client.login("admin", "admin-password-123").access_token
    yield client
    client.channel.close()


def test_create_get_list_users(api: Api) -> None:
    created = api.users.CreateUser(users_pb2.CreateUserRequest(username="rita", password="rita-password-123", role="risk_manager"),
                                   metadata=_meta(api.admin), timeout=30)
    assert (created.username, created.role, created.disabled, created.totp_enrolled) == ("rita", "risk_manager", False, False)
    assert created.create_time.seconds > 0 and not created.HasField("locked_until")
    got = api.users.GetUser(users_pb2.GetUserRequest(username="rita"), metadata=_meta(api.admin), timeout=30)
    assert got == created
    listed = api.users.ListUsers(users_pb2.ListUsersRequest(), metadata=_meta(api.admin), timeout=30)
    assert [u.username for u in listed.users] == ["admin", "rita", "trader", "viewer"]
    assert api.login("rita", "rita-password-123").role == "risk_manager"
    dup = api.error(api.users.CreateUser, users_pb2.CreateUserRequest(username="rita", password="rita-password-123", role="viewer"), api.admin)
    assert dup.code() is C.ALREADY_EXISTS
    bad = api.error(api.users.CreateUser, users_pb2.CreateUserRequest(username="sam", password="short", role="viewer"), api.admin)
    assert bad.code() is C.INVALID_ARGUMENT and bad.details().startswith("password: ") and "short" not in bad.details()
    assert api.error(api.users.GetUser, users_pb2.GetUserRequest(username="nobody"), api.admin).code() is C.NOT_FOUND


def test_update_user_role_and_disabled_revoke_sessions(api: Api) -> None:
    trader = api.login("trader", "trader-password-123")
    mask = field_mask_pb2.FieldMask
    updated = api.users.UpdateUser(users_pb2.UpdateUserRequest(username="trader", role="analyst", update_mask=mask(paths=["role"])),
                                   metadata=_meta(api.admin), timeout=30)
    assert updated.role == "analyst"
    assert not api.works(trader.access_token)  # revoked at once
    assert api.login("trader", "trader-password-123").role == "analyst"
    again = api.login("trader", "trader-password-123")
    disabled = api.users.UpdateUser(users_pb2.UpdateUserRequest(username="trader", disabled=True, update_mask=mask(paths=["disabled"])),
                                    metadata=_meta(api.admin), timeout=30)
    assert disabled.disabled and not api.works(again.access_token)
    assert api.code(api.auth.Login, auth_pb2.LoginRequest(username="trader", password="trader-password-123")) is C.UNAUTHENTICATED
    api.users.UpdateUser(users_pb2.UpdateUserRequest(username="trader", disabled=False, update_mask=mask(paths=["disabled"])),
                         metadata=_meta(api.admin), timeout=30)
    assert api.works(api.login("trader", "trader-password-123").access_token)
    # the role is validated, the mask is required
    err = api.error(api.users.UpdateUser, users_pb2.UpdateUserRequest(username="trader", role="root", update_mask=mask(paths=["role"])), api.admin)
    assert err.code() is C.INVALID_ARGUMENT and err.details().startswith("role: ")
    err = api.error(api.users.UpdateUser, users_pb2.UpdateUserRequest(username="trader", role="viewer"), api.admin)
    assert err.code() is C.INVALID_ARGUMENT and err.details().startswith("update_mask: ")


def test_last_admin_is_protected(api: Api) -> None:
    mask = field_mask_pb2.FieldMask
    for request in (users_pb2.UpdateUserRequest(username="admin", disabled=True, update_mask=mask(paths=["disabled"])),
                    users_pb2.UpdateUserRequest(username="admin", role="viewer", update_mask=mask(paths=["role"]))):
        err = api.error(api.users.UpdateUser, request, api.admin)
        assert err.code() is C.FAILED_PRECONDITION and "last enabled admin" in err.details()
    assert api.works(api.admin)  # nothing happened (its session is intact)
    api.users.CreateUser(users_pb2.CreateUserRequest(username="admin2", password="admin2-password-123", role="admin"),
                         metadata=_meta(api.admin), timeout=30)
    api.users.UpdateUser(users_pb2.UpdateUserRequest(username="admin", role="viewer", update_mask=mask(paths=["role"])),
                         metadata=_meta(api.admin), timeout=30)
    assert not api.works(api.admin)  # own sessions revoked with the role change


def test_reset_password_revokes_sessions_and_clears_lockout(api: Api) -> None:
    from appliance.engine.clock import NS_PER_SECOND, SimClock

    clock = SimClock(api.running.app.wall_clock.now_ns())
    api.running.app.auth.throttle.clock = clock
    viewer = api.login("viewer", "viewer-password-123")
    for _ in range(5):
        api.code(api.auth.Login, auth_pb2.LoginRequest(username="viewer", password="wrong-password-1"))
    locked = api.users.GetUser(users_pb2.GetUserRequest(username="viewer"), metadata=_meta(api.admin), timeout=30)
    assert locked.HasField("locked_until")
    reset = api.users.ResetPassword(users_pb2.ResetPasswordRequest(username="viewer", new_password="viewer-password-456"),
                                    metadata=_meta(api.admin), timeout=30)
    assert not reset.HasField("locked_until")
    assert not api.works(viewer.access_token)
    clock.advance_to(clock.now_ns() + 2 * NS_PER_SECOND)  # the peer (127.0.0.1) counter is not reset: wait out its backoff
    assert api.code(api.auth.Login, auth_pb2.LoginRequest(username="viewer", password="viewer-password-123")) is C.UNAUTHENTICATED
    clock.advance_to(clock.now_ns() + 3 * NS_PER_SECOND)
    assert api.works(api.login("viewer", "viewer-password-456").access_token)


def test_reset_totp(api: Api) -> None:
    login = api.login("trader", "trader-password-123")
    begin = api.auth.BeginTotpEnrollment(auth_pb2.BeginTotpEnrollmentRequest(password="trader-password-123"),
                                         metadata=_meta(login.access_token), timeout=30)
    api.auth.ConfirmTotpEnrollment(auth_pb2.ConfirmTotpEnrollmentRequest(totp_code=pyotp.TOTP(begin.secret).now()),
                                   metadata=_meta(login.access_token), timeout=30)
    assert api.users.GetUser(users_pb2.GetUserRequest(username="trader"), metadata=_meta(api.admin), timeout=30).totp_enrolled
    again = api.error(api.auth.BeginTotpEnrollment, auth_pb2.BeginTotpEnrollmentRequest(password="trader-password-123"), login.access_token)
    assert again.code() is C.FAILED_PRECONDITION
    reset = api.users.ResetTotp(users_pb2.ResetTotpRequest(username="trader"), metadata=_meta(api.admin), timeout=30)
    assert reset.totp_enrolled is False
    assert not api.works(login.access_token)
    assert api.works(api.login("trader", "trader-password-123").access_token)  # no code needed any more


def test_sessions_list_and_revoke(api: Api) -> None:
    first = api.login("viewer", "viewer-password-123")
    second = api.login("viewer", "viewer-password-123")
    sessions = api.users.ListSessions(users_pb2.ListSessionsRequest(username="viewer"), metadata=_meta(api.admin), timeout=30).sessions
    assert len(sessions) == 2 and {s.username for s in sessions} == {"viewer"}
    assert all(s.peer == "127.0.0.1" and not s.revoked and s.expire_time.seconds > s.create_time.seconds for s in sessions)
    everyone = api.users.ListSessions(users_pb2.ListSessionsRequest(), metadata=_meta(api.admin), timeout=30).sessions
    assert {s.username for s in everyone} == {"viewer", "admin"}
    target = sessions[0].session_id
    revoked = api.users.RevokeSession(users_pb2.RevokeSessionRequest(session_id=target), metadata=_meta(api.admin), timeout=30)
    assert revoked.revoked and revoked.session_id == target
    alive = [t for t in (first, second) if api.works(t.access_token)]
    assert len(alive) == 1  # exactly the revoked one stopped, at once
    live = api.users.ListSessions(users_pb2.ListSessionsRequest(username="viewer"), metadata=_meta(api.admin), timeout=30).sessions
    assert target not in {s.session_id for s in live}
    with_revoked = api.users.ListSessions(users_pb2.ListSessionsRequest(username="viewer", include_revoked=True),
                                          metadata=_meta(api.admin), timeout=30).sessions
    assert target in {s.session_id for s in with_revoked}
    assert api.error(api.users.RevokeSession, users_pb2.RevokeSessionRequest(session_id="nope"), api.admin).code() is C.NOT_FOUND
    assert api.error(api.users.ListSessions, users_pb2.ListSessionsRequest(username="nobody"), api.admin).code() is C.NOT_FOUND


def test_service_tokens_lifecycle(api: Api) -> None:
    created = api.users.CreateServiceToken(users_pb2.CreateServiceTokenRequest(name="exporter", role="analyst", ttl_seconds=86_400),
                                           metadata=_meta(api.admin), timeout=30)
    info = created.service_token
    assert (info.name, info.role, info.created_by, info.revoked) == ("exporter", "analyst", "admin", False)
    assert info.expire_time.seconds - info.create_time.seconds == 86_400
    assert api.works(created.token)
    listed = api.users.ListServiceTokens(users_pb2.ListServiceTokensRequest(), metadata=_meta(api.admin), timeout=30)
    assert [t.token_id for t in listed.service_tokens] == [info.token_id]
    assert listed.service_tokens[0].HasField("last_used_time")
    assert created.token not in str(listed)  # shown once, never again
    stored = api.running.call(lambda: api.running.app.db.query("SELECT * FROM service_tokens"))
    assert created.token.rpartition("_")[2] not in repr(stored)
    for ttl in (0, 3599, 365 * 86_400 + 1, -5):
        err = api.error(api.users.CreateServiceToken, users_pb2.CreateServiceTokenRequest(name="x-bot", role="viewer", ttl_seconds=ttl), api.admin)
        assert err.code() is C.INVALID_ARGUMENT and err.details().startswith("ttl_seconds: ")
    api.users.RevokeServiceToken(users_pb2.RevokeServiceTokenRequest(token_id=info.token_id), metadata=_meta(api.admin), timeout=30)
    assert not api.works(created.token)
    assert not api.users.ListServiceTokens(users_pb2.ListServiceTokensRequest(), metadata=_meta(api.admin), timeout=30).service_tokens
    assert api.users.ListServiceTokens(users_pb2.ListServiceTokensRequest(include_revoked=True),
                                       metadata=_meta(api.admin), timeout=30).service_tokens[0].revoked
    err = api.error(api.users.RevokeServiceToken, users_pb2.RevokeServiceTokenRequest(token_id="ffffffffffffffff"), api.admin)
    assert err.code() is C.NOT_FOUND


def test_change_password(api: Api) -> None:
    current = api.login("trader", "trader-password-123")
    other = api.login("trader", "trader-password-123")
    wrong = api.error(api.auth.ChangePassword, auth_pb2.ChangePasswordRequest(current_password="not-my-password",
                                                                              new_password="trader-password-456"), current.access_token)
    assert wrong.code() is C.INVALID_ARGUMENT and "current_password" in wrong.details() and api.works(current.access_token)
    weak = api.error(api.auth.ChangePassword, auth_pb2.ChangePasswordRequest(current_password="trader-password-123",
                                                                             new_password="short"), current.access_token)
    assert weak.code() is C.INVALID_ARGUMENT and weak.details().startswith("new_password: ")
    api.auth.ChangePassword(auth_pb2.ChangePasswordRequest(current_password="trader-password-123", new_password="trader-password-456"),
                            metadata=_meta(current.access_token), timeout=30)
    assert api.works(current.access_token)  # the caller's own session stays
    assert not api.works(other.access_token)  # every other session is revoked
    assert api.code(api.auth.Login, auth_pb2.LoginRequest(username="trader", password="trader-password-123")) is C.UNAUTHENTICATED
    assert api.works(api.login("trader", "trader-password-456").access_token)


def test_no_secret_in_journal_or_database(api: Api) -> None:
    api.users.CreateUser(users_pb2.CreateUserRequest(username="sue", password="sue-secret-password", role="auditor"),
                         metadata=_meta(api.admin), timeout=30)
    token = api.users.CreateServiceToken(users_pb2.CreateServiceTokenRequest(name="bot", role="viewer", ttl_seconds=3600),
                                         metadata=_meta(api.admin), timeout=30).token
    login = api.login("sue", "sue-secret-password")
    api.auth.ChangePassword(auth_pb2.ChangePasswordRequest(current_password="sue-secret-password", new_password="sue-new-secret-pw"),
                            metadata=_meta(login.access_token), timeout=30)
    app = api.running.app

    def dump():
        parts = []
        for table in ("journal", "users", "sessions", "service_tokens", "signing_keys", "auth_failures"):
            parts += [repr(r) for r in app.db.query(f"SELECT * FROM {table}")]
        return "\n".join(parts)

    text = api.running.call(dump)
    token_secret = token[len("lyst_") + 16 + 1:]  # lyst_<16 hex id>_<43-char secret, which may hold "_">
    assert len(token_secret) == 43
    for secret in ("sue-secret-password", "sue-new-secret-pw", token, token_secret, login.refresh_token,
                   login.access_token, "PRIVATE KEY"):
        assert secret not in text
    key_file = Path(api.running.config.storage.data_dir) / "auth.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and key_file.read_bytes() not in text.encode()


def test_restart_keeps_totp_and_tokens_working(tmp_path: Path) -> None:
    config = harness.write_config(tmp_path, extra=CONFIG)
    running = harness.RunningAppliance(config)
    try:
        running.add_user("viewer", "viewer")
        api = Api(running)
        login = api.login("viewer", "viewer-password-123")
        begin = api.auth.BeginTotpEnrollment(auth_pb2.BeginTotpEnrollmentRequest(password="viewer-password-123"),
                                             metadata=_meta(login.access_token), timeout=30)
        codes = api.auth.ConfirmTotpEnrollment(auth_pb2.ConfirmTotpEnrollmentRequest(totp_code=pyotp.TOTP(begin.secret).now()),
                                               metadata=_meta(login.access_token), timeout=30).recovery_codes
        api.channel.close()
    finally:
        running.stop()
    restarted = harness.RunningAppliance(config)
    try:
        api = Api(restarted)
        assert api.works(login.access_token)  # the signing key decrypted with the same auth key
        assert api.login("viewer", "viewer-password-123", recovery_code=codes[0]).access_token
        err = api.error(api.auth.Login, auth_pb2.LoginRequest(username="viewer", password="viewer-password-123"))
        assert ("lyra-mfa", "required") in tuple(err.trailing_metadata())
        api.channel.close()
    finally:
        restarted.stop()
    # a group-readable auth key is refused at boot
    key_file = Path(restarted.config.storage.data_dir) / "auth.key"
    key_file.chmod(0o640)
    with pytest.raises(Exception, match="group or others"):
        harness.RunningAppliance(config)
