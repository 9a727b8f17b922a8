"""The permission table (every RPC x every role) and the grpc.aio interceptor end to end on a
tiny in-process server on 127.0.0.1:0."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from appliance.engine.clock import NS_PER_SECOND, SimClock
from appliance.model.errors import NotFoundError, RiskRejection, ValidationError
from appliance.security.auth import AuthService
from appliance.security.passwords import TEST_ONLY_FAST
from appliance.security.permissions import (
    METHOD_PERMISSIONS,
    PERMISSIONS,
    PUBLIC,
    ROLE_PERMISSIONS,
    ROLES,
    UnknownMethod,
    all_rpc_methods,
    has_permission,
    is_public,
    required_permission,
)
from appliance.security.tokens import TokenSigner, load_or_create_signing_key
from appliance.security.users import UserStore
from appliance.server.errors import map_exception
from appliance.server.interceptors import (
    AuthInterceptor,
    CallRecord,
    current_principal,
    current_principal_or_none,
)
from appliance.store.db import Database
from appliance.store.journal import Journal
from lyra.v1 import auth_pb2, auth_pb2_grpc

T0_NS = 1_700_000_000 * NS_PER_SECOND
PASSWORD = "interceptor-test-password"
SECRET_TEXT = "db password is hunter2 at /var/lib/lyra"


# == the permission table ======================================================================
def test_every_rpc_has_exactly_one_entry() -> None:
    rpcs = all_rpc_methods()
    assert len(rpcs) >= 30
    assert set(rpcs) == set(METHOD_PERMISSIONS), "add new RPCs to METHOD_PERMISSIONS (and remove stale ones)"
    for method, permission in METHOD_PERMISSIONS.items():
        assert permission == PUBLIC or permission in PERMISSIONS, (method, permission)


def test_only_login_refresh_health_and_reflection_are_public() -> None:
    public = {m for m in all_rpc_methods() if is_public(m)}
    assert public == {"/lyra.v1.AuthService/Login", "/lyra.v1.AuthService/Refresh"}
    for method in (
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    ):
        assert is_public(method)


def test_unknown_methods_are_denied() -> None:
    for method in ("/lyra.v1.OrderService/DropTables", "/lyra.v2.OrderService/SubmitOrder", "", "/grpc.health.v1.Healthz/Check"):
        with pytest.raises(UnknownMethod):
            required_permission(method)
        assert not is_public(method)


# Written out independently of permissions.py (the Security issue's role definitions).
_READS = {"auth.self", "orders.read", "portfolio.read", "strategies.read", "risk.read", "marketdata.read", "admin.read"}
_EXPECTED_ROLE_PERMISSIONS = {
    "trader": _READS | {"orders.write", "orders.cancel", "strategies.write", "risk.kill_switch.engage", "vault.read",
               "marketdata.write"},
    "risk_manager": _READS | {"risk.write", "risk.kill_switch.engage", "risk.kill_switch.release", "orders.cancel"},
    "analyst": _READS,
    "auditor": _READS | {"audit.read", "users.read"},
    "viewer": _READS,
}


def _expected(role: str, permission: str) -> bool:
    if permission == PUBLIC:
        return True
    if role == "admin":
        return True
    if role in _EXPECTED_ROLE_PERMISSIONS:
        return permission in _EXPECTED_ROLE_PERMISSIONS[role]
    raise AssertionError(f"add the expectations for new role {role!r}")


@pytest.mark.parametrize("role", ROLES)
def test_every_rpc_for_every_role(role: str) -> None:
    for method in all_rpc_methods():
        permission = required_permission(method)
        assert has_permission(role, permission) == _expected(role, permission), (role, method)


def test_kill_switch_trader_may_engage_only_admin_and_risk_manager_may_release() -> None:
    engage, release = "/lyra.v1.RiskService/EngageKillSwitch", "/lyra.v1.RiskService/ReleaseKillSwitch"
    assert has_permission("trader", required_permission(engage))
    assert not has_permission("trader", required_permission(release))
    assert has_permission("admin", required_permission(release))
    assert has_permission("risk_manager", required_permission(release))
    assert not has_permission("viewer", required_permission(engage))


def test_cancel_is_separate_from_submit() -> None:
    submit, cancel = "/lyra.v1.OrderService/SubmitOrder", "/lyra.v1.OrderService/CancelOrder"
    assert required_permission(cancel) == "orders.cancel"
    assert has_permission("risk_manager", required_permission(cancel))
    assert not has_permission("risk_manager", required_permission(submit))
    assert has_permission("trader", required_permission(cancel)) and has_permission("trader", required_permission(submit))


def test_reads_do_not_include_vault_users_or_audit() -> None:
    from appliance.security.permissions import READS

    assert not {"vault.read", "users.read", "audit.read"} & READS
    for role in ("viewer", "analyst"):
        for method in ("/lyra.v1.VaultService/ListCredentials", "/lyra.v1.UserService/ListUsers", "/lyra.v1.AuditService/ListAuditRecords"):
            assert not has_permission(role, required_permission(method)), (role, method)


def test_mutating_methods_are_known_and_reads_are_not_in_it() -> None:
    from appliance.security.permissions import MUTATING_METHODS

    assert MUTATING_METHODS <= set(all_rpc_methods())
    for method in all_rpc_methods():
        name = method.rpartition("/")[2]
        if name.startswith(("Get", "List", "Stream", "Verify", "Export", "WhoAmI")):
            assert method not in MUTATING_METHODS, method
        if name.startswith(("Submit", "Cancel", "Create", "Start", "Stop", "Update", "Engage", "Release", "Reset",
                            "Revoke", "Delete", "Rotate", "Confirm", "Abort", "Unseal", "Seal", "Initialize",
                            "Change", "Begin", "Pause", "Login", "Logout", "Refresh")):
            assert method in MUTATING_METHODS, method


def test_roles_and_unknown_role() -> None:
    assert ROLES == ("admin", "trader", "risk_manager", "analyst", "auditor", "viewer")
    assert ROLE_PERMISSIONS["admin"] == frozenset(PERMISSIONS)
    assert not has_permission("intruder", "orders.read")


# == the interceptor on a real grpc.aio server ================================================
class _AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    """A minimal AuthService servicer, as the real one will look: translate and call one method."""

    def __init__(self, auth: AuthService) -> None:
        self.auth = auth

    async def Login(self, request, context):
        pair = await self.auth.login_async(request.username, request.password)
        return auth_pb2.LoginResponse(access_token=pair.access, refresh_token=pair.refresh, role=pair.role, username=pair.username)

    async def Refresh(self, request, context):
        pair = self.auth.refresh(request.refresh_token)
        return auth_pb2.RefreshResponse(access_token=pair.access, refresh_token=pair.refresh, role=pair.role, username=pair.username)

    async def Logout(self, request, context):
        self.auth.logout(request.refresh_token, user_id=current_principal().user_id)
        return auth_pb2.LogoutResponse()

    async def WhoAmI(self, request, context):
        principal = current_principal()
        await asyncio.sleep(0.01)  # let concurrent calls interleave: the principal is per call
        assert current_principal() is principal
        return auth_pb2.WhoAmIResponse(username=principal.username, role=principal.role, permissions=sorted(principal.permissions))


def _bytes_handlers() -> grpc.GenericRpcHandler:
    """Raw-bytes handlers under real lyra method names (the servicers are written elsewhere)."""

    async def submit_order(request: bytes, context) -> bytes:
        if request == b"bad-qty":
            raise ValidationError("qty", "must be > 0")
        if request == b"risky":
            raise RiskRejection("max_notional", "notional 1e9 exceeds 1e6")
        return b"submitted by " + current_principal().username.encode()

    async def get_order(request: bytes, context) -> bytes:
        raise NotFoundError("order abc not found")

    async def get_status(request: bytes, context) -> bytes:
        raise RuntimeError(SECRET_TEXT)

    async def get_version(request: bytes, context) -> bytes:
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "vault sealed")

    async def stream_order_events(request: bytes, context):
        principal = current_principal()
        for i in range(3):
            yield f"{principal.username}:{i}".encode()
        if request == b"fail":
            raise NotFoundError("stream source gone")

    async def list_balances(request: bytes, context) -> None:  # write-API streaming style
        await context.write(b"BTC")
        await context.write(current_principal().role.encode())

    async def hidden(request: bytes, context) -> bytes:
        return b"should never run"

    def unary(fn):
        return grpc.unary_unary_rpc_method_handler(fn)

    def stream(fn):
        return grpc.unary_stream_rpc_method_handler(fn)

    class Handler(grpc.GenericRpcHandler):
        table = {
            "/lyra.v1.OrderService/SubmitOrder": unary(submit_order),
            "/lyra.v1.OrderService/GetOrder": unary(get_order),
            "/lyra.v1.OrderService/StreamOrderEvents": stream(stream_order_events),
            "/lyra.v1.PortfolioService/ListBalances": stream(list_balances),
            "/lyra.v1.AdminService/GetStatus": unary(get_status),
            "/lyra.v1.AdminService/GetVersion": unary(get_version),
            "/lyra.v1.HiddenService/Backdoor": unary(hidden),
        }

        def service(self, handler_call_details):
            return self.table.get(handler_call_details.method)

    return Handler()


class Server:
    def __init__(self, path: Path, *, totp_required_roles=(), rate_limit=None) -> None:
        self.clock = SimClock(T0_NS)
        self.db = Database(path)
        self.journal = Journal(self.db)
        self.users = UserStore(self.db, self.journal, self.clock, password_params=TEST_ONLY_FAST)
        self.signer = TokenSigner.from_signing_key(load_or_create_signing_key(self.db, self.clock), self.clock)
        self.auth = AuthService(self.db, self.journal, self.users, self.signer, self.clock, totp_required_roles=totp_required_roles)
        for name, role in (("root", "admin"), ("tina", "trader"), ("vera", "viewer")):
            self.users.create_user(name, PASSWORD, role)
        self.observed: list[tuple[str, str, float]] = []
        self.records: list[CallRecord] = []
        self.interceptor = AuthInterceptor(self.auth, observe=lambda m, c, s: self.observed.append((m, c, s)),
                                           on_call=self.records.append, rate_limit=rate_limit)

    async def start(self) -> None:
        self.server = grpc.aio.server(interceptors=[self.interceptor])
        auth_pb2_grpc.add_AuthServiceServicer_to_server(_AuthServicer(self.auth), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), self.server)
        self.server.add_generic_rpc_handlers((_bytes_handlers(),))
        reflection.enable_server_reflection(("lyra.v1.AuthService", reflection.SERVICE_NAME), self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.auth_stub = auth_pb2_grpc.AuthServiceStub(self.channel)

    async def stop(self) -> None:
        await self.channel.close()
        await self.server.stop(None)
        self.db.close()

    async def login(self, username: str) -> auth_pb2.LoginResponse:
        return await self.auth_stub.Login(auth_pb2.LoginRequest(username=username, password=PASSWORD))

    async def call(self, method: str, request: bytes = b"", token: str | None = None) -> bytes:
        metadata = (("authorization", f"Bearer {token}"),) if token is not None else None
        return await self.channel.unary_unary(method)(request, metadata=metadata)

    async def stream(self, method: str, request: bytes = b"", token: str | None = None) -> list[bytes]:
        metadata = (("authorization", f"Bearer {token}"),) if token is not None else None
        return [item async for item in self.channel.unary_stream(method)(request, metadata=metadata)]


@pytest.fixture()
async def srv(tmp_path: Path):
    server = Server(tmp_path / "lyra.db")
    await server.start()
    yield server
    await server.stop()


async def _error(awaitable) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await awaitable
    return info.value


SUBMIT = "/lyra.v1.OrderService/SubmitOrder"


async def test_public_methods_need_no_token(srv: Server) -> None:
    response = await srv.login("root")
    assert response.role == "admin" and response.access_token and response.refresh_token
    check = await health_pb2_grpc.HealthStub(srv.channel).Check(health_pb2.HealthCheckRequest())
    assert check.status == health_pb2.HealthCheckResponse.SERVING
    refreshed = await srv.auth_stub.Refresh(auth_pb2.RefreshRequest(refresh_token=response.refresh_token))
    assert refreshed.refresh_token != response.refresh_token


async def test_reflection_is_public(srv: Server) -> None:
    async def requests():
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    stub = reflection_pb2_grpc.ServerReflectionStub(srv.channel)
    responses = [r async for r in stub.ServerReflectionInfo(requests())]  # stream-stream through the interceptor
    names = {s.name for s in responses[0].list_services_response.service}
    assert "lyra.v1.AuthService" in names
    assert ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", "OK") in [(m, c) for m, c, _ in srv.observed]


async def test_bad_login_is_unauthenticated_without_saying_which_part(srv: Server) -> None:
    wrong_pw = await _error(srv.auth_stub.Login(auth_pb2.LoginRequest(username="root", password="wrong-password-xyz")))
    no_user = await _error(srv.auth_stub.Login(auth_pb2.LoginRequest(username="ghost", password=PASSWORD)))
    assert wrong_pw.code() == no_user.code() == grpc.StatusCode.UNAUTHENTICATED
    assert wrong_pw.details() == no_user.details()


async def test_missing_token_is_unauthenticated(srv: Server) -> None:
    error = await _error(srv.call(SUBMIT))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "missing access token" in error.details()
    error = await _error(srv.auth_stub.WhoAmI(auth_pb2.WhoAmIRequest()))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_bad_tokens_are_unauthenticated_and_never_echoed(srv: Server) -> None:
    good = (await srv.login("root")).access_token
    header, payload, signature = good.split(".")
    for token, expected in (
        ("garbage", "malformed token"),
        (f"{header}.{payload}.{signature[:-4]}AAAA", "bad signature"),
        (f"{header}.{payload}.", "bad signature"),
    ):
        error = await _error(srv.call(SUBMIT, token=token))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert expected in error.details() or "malformed" in error.details()
        assert token not in error.details()
    # not a bearer scheme
    error = await _error(srv.channel.unary_unary(SUBMIT)(b"", metadata=(("authorization", f"Basic {good}"),)))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED and "Bearer" in error.details() and good not in error.details()


async def test_expired_token_is_unauthenticated(srv: Server) -> None:
    token = (await srv.login("root")).access_token
    assert await srv.call(SUBMIT, token=token) == b"submitted by root"
    srv.clock.advance_to(T0_NS + 15 * 60 * NS_PER_SECOND)
    error = await _error(srv.call(SUBMIT, token=token))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED and "token expired" in error.details()


async def test_logout_revokes_the_access_token_at_once(srv: Server) -> None:
    login = await srv.login("tina")
    await srv.auth_stub.Logout(auth_pb2.LogoutRequest(refresh_token=login.refresh_token), metadata=(("authorization", f"Bearer {login.access_token}"),))
    error = await _error(srv.call(SUBMIT, token=login.access_token))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED and "session revoked" in error.details()


async def test_viewer_is_denied_a_write_method(srv: Server) -> None:
    token = (await srv.login("vera")).access_token
    error = await _error(srv.call(SUBMIT, token=token))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "orders.write" in error.details()
    # but may read
    assert await srv.stream("/lyra.v1.OrderService/StreamOrderEvents", token=token) == [b"vera:0", b"vera:1", b"vera:2"]


async def test_admin_and_trader_may_submit(srv: Server) -> None:
    for user in ("root", "tina"):
        token = (await srv.login(user)).access_token
        assert await srv.call(SUBMIT, token=token) == f"submitted by {user}".encode()


async def test_unknown_method_is_denied_even_to_admin(srv: Server) -> None:
    token = (await srv.login("root")).access_token
    error = await _error(srv.call("/lyra.v1.HiddenService/Backdoor", token=token))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    error = await _error(srv.call("/lyra.v1.HiddenService/Backdoor"))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    # a method no handler serves stays UNIMPLEMENTED (gRPC's own answer)
    error = await _error(srv.call("/lyra.v1.OrderService/NoSuchMethod", token=token))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_internal_errors_do_not_leak(srv: Server, caplog: pytest.LogCaptureFixture) -> None:
    token = (await srv.login("root")).access_token
    with caplog.at_level(logging.ERROR, logger="appliance.server.errors"):
        error = await _error(srv.call("/lyra.v1.AdminService/GetStatus", token=token))
    assert error.code() == grpc.StatusCode.INTERNAL
    assert SECRET_TEXT not in error.details() and "hunter2" not in error.details() and "RuntimeError" not in error.details()
    error_id = dict(error.trailing_metadata())["lyra-error-id"]
    assert error_id in error.details()
    # the server log has the exception under the same id
    logged = [r for r in caplog.records if error_id in r.getMessage()]
    assert logged and logged[0].exc_info and SECRET_TEXT in str(logged[0].exc_info[1])
    assert srv.records[-1].error_id == error_id


async def test_domain_errors_are_mapped(srv: Server) -> None:
    token = (await srv.login("tina")).access_token
    error = await _error(srv.call(SUBMIT, b"bad-qty", token=token))
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "qty: must be > 0")
    error = await _error(srv.call(SUBMIT, b"risky", token=token))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert dict(error.trailing_metadata())["lyra-reject-rule"] == "max_notional"
    error = await _error(srv.call("/lyra.v1.OrderService/GetOrder", token=token))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    # a servicer's own context.abort passes through
    root = (await srv.login("root")).access_token
    error = await _error(srv.call("/lyra.v1.AdminService/GetVersion", token=root))
    assert (error.code(), error.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "vault sealed")


async def test_streams_get_auth_and_error_mapping(srv: Server) -> None:
    method = "/lyra.v1.OrderService/StreamOrderEvents"
    error = await _error(srv.stream(method))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    token = (await srv.login("tina")).access_token
    call = srv.channel.unary_stream(method)(b"fail", metadata=(("authorization", f"Bearer {token}"),))
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for item in call:
            received.append(item)
    assert received == [b"tina:0", b"tina:1", b"tina:2"]
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    # write-API style streaming handlers are wrapped too
    assert await srv.stream("/lyra.v1.PortfolioService/ListBalances", token=token) == [b"BTC", b"trader"]
    assert (await _error(srv.stream("/lyra.v1.PortfolioService/ListBalances"))).code() == grpc.StatusCode.UNAUTHENTICATED


async def test_principal_is_per_call(srv: Server) -> None:
    tokens = {user: (await srv.login(user)).access_token for user in ("root", "tina", "vera")}
    calls = [
        srv.auth_stub.WhoAmI(auth_pb2.WhoAmIRequest(), metadata=(("authorization", f"Bearer {tokens[user]}"),))
        for user in ("root", "tina", "vera") * 5
    ]
    responses = await asyncio.gather(*calls)
    assert [r.username for r in responses] == ["root", "tina", "vera"] * 5
    assert responses[2].role == "viewer" and "orders.write" not in responses[2].permissions
    assert current_principal_or_none() is None  # nothing leaks into the caller's context


async def test_observe_hook_gets_method_code_and_duration(srv: Server) -> None:
    await _error(srv.call(SUBMIT))
    token = (await srv.login("vera")).access_token
    await _error(srv.call(SUBMIT, token=token))
    codes = [(m, c) for m, c, _ in srv.observed]
    assert codes == [
        (SUBMIT, "UNAUTHENTICATED"),
        ("/lyra.v1.AuthService/Login", "OK"),
        (SUBMIT, "PERMISSION_DENIED"),
    ]
    assert all(seconds >= 0 for _, _, seconds in srv.observed)
    denied = srv.records[-1]
    assert denied.permission == "orders.write" and denied.principal is not None and denied.principal.username == "vera"


def test_error_mapping_table() -> None:
    assert map_exception(ValidationError("price", "must be positive")).details == "price: must be positive"
    mapped = map_exception(KeyError("secret-key-name"))
    assert mapped.code == grpc.StatusCode.INTERNAL and "secret-key-name" not in mapped.details
    assert map_exception(NotImplementedError("x")).code == grpc.StatusCode.UNIMPLEMENTED


# == Security issue: call records, rate limit, MFA gating, service tokens =======================
async def test_call_record_has_request_peer_and_credential(srv: Server) -> None:
    login = await srv.login("tina")
    record = srv.records[-1]
    assert record.method == "/lyra.v1.AuthService/Login" and record.code_name == "OK"
    assert isinstance(record.request, auth_pb2.LoginRequest) and record.request.username == "tina"
    assert "request" not in repr(record) and PASSWORD not in repr(record)  # the raw request is not in repr
    assert record.peer.startswith("ipv4:127.0.0.1:") or record.peer.startswith("ipv6:")
    assert record.principal is None and record.principal_kind == "" and record.credential_id == ""
    await srv.call(SUBMIT, b"payload", token=login.access_token)
    record = srv.records[-1]
    assert record.request == b"payload"
    assert record.principal_kind == "user" and record.credential_id == record.principal.session_id
    await srv.stream("/lyra.v1.OrderService/StreamOrderEvents", b"x", token=login.access_token)
    assert srv.records[-1].request == b"x"


@pytest.fixture()
async def limited(tmp_path: Path):
    from appliance.security.ratelimit import TokenBucketLimiter

    now = [0.0]
    server = Server(tmp_path / "limited.db", rate_limit=TokenBucketLimiter(1.0, 3, timer=lambda: now[0]))
    server.now = now
    await server.start()
    yield server
    await server.stop()


async def test_rate_limit_per_token(limited: Server) -> None:
    tina = (await limited.login("tina")).access_token
    other = (await limited.login("tina")).access_token  # another session: its own bucket
    for _ in range(3):
        await limited.call(SUBMIT, token=tina)
    error = await _error(limited.call(SUBMIT, token=tina))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert float(dict(error.trailing_metadata())["lyra-retry-after-s"]) == pytest.approx(1.0)
    assert tina not in error.details()
    await limited.call(SUBMIT, token=other)
    # denied calls consume the bucket too, and public calls are not limited by it
    limited.now[0] += 1.0
    await limited.call(SUBMIT, token=tina)
    assert (await _error(limited.call("/lyra.v1.HiddenService/Backdoor", token=tina))).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    for _ in range(5):
        await limited.login("vera")


@pytest.fixture()
async def mfa_srv(tmp_path: Path):
    server = Server(tmp_path / "mfa.db", totp_required_roles=("admin", "trader"))
    await server.start()
    yield server
    await server.stop()


async def test_mfa_pending_session_may_only_enroll(mfa_srv: Server) -> None:
    from appliance.security.permissions import MFA_ENROLLMENT_REQUIRED_MESSAGE

    login = await mfa_srv.login("tina")
    assert mfa_srv.auth.authenticate(login.access_token).mfa_pending is True
    metadata = (("authorization", f"Bearer {login.access_token}"),)
    error = await _error(mfa_srv.call(SUBMIT, token=login.access_token))
    assert (error.code(), error.details()) == (grpc.StatusCode.PERMISSION_DENIED, MFA_ENROLLMENT_REQUIRED_MESSAGE)
    error = await _error(mfa_srv.stream("/lyra.v1.OrderService/StreamOrderEvents", token=login.access_token))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    who = await mfa_srv.auth_stub.WhoAmI(auth_pb2.WhoAmIRequest(), metadata=metadata)  # allowed
    assert who.username == "tina"
    viewer = await mfa_srv.login("vera")  # not a required role
    assert mfa_srv.auth.authenticate(viewer.access_token).mfa_pending is False
    assert await mfa_srv.stream("/lyra.v1.OrderService/StreamOrderEvents", token=viewer.access_token)


async def test_service_tokens_through_the_interceptor(srv: Server) -> None:
    issued = srv.auth.service_tokens.create("robot", "viewer", 3600, "root")
    assert await srv.stream("/lyra.v1.OrderService/StreamOrderEvents", token=issued.token) == [
        b"service:robot:0", b"service:robot:1", b"service:robot:2"]
    assert srv.records[-1].principal_kind == "service" and srv.records[-1].credential_id == issued.info.token_id
    error = await _error(srv.call(SUBMIT, token=issued.token))  # scoped to its role
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED and "orders.write" in error.details()
    admin = srv.auth.service_tokens.create("admin-bot", "admin", 3600, "root")
    assert await srv.call(SUBMIT, token=admin.token) == b"submitted by service:admin-bot"
    for method in ("BeginTotpEnrollment", "ConfirmTotpEnrollment", "ChangePassword"):
        error = await _error(srv.call(f"/lyra.v1.AuthService/{method}", token=admin.token))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED and "service tokens" in error.details(), method
    srv.auth.service_tokens.revoke(admin.info.token_id)
    error = await _error(srv.call(SUBMIT, token=admin.token))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED and "service token revoked" in error.details()
    assert admin.token not in error.details()
    srv.clock.advance_to(T0_NS + 3600 * NS_PER_SECOND)
    error = await _error(srv.call("/lyra.v1.OrderService/GetOrder", token=issued.token))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED and "service token expired" in error.details()
