"""Every RPC x every role against the real server: the exact status code of each call.

Allowed calls get a request that is valid for that RPC and must return the code listed here
(OK, or the precise domain error such as NOT_FOUND for an unknown id); denied calls must return
PERMISSION_DENIED; calls without a token or with a forged one must return UNAUTHENTICATED.

The expected permission of each RPC and the permissions of each role are written out here,
independently of ``appliance.security.permissions`` (which a separate test compares them to),
so a drift in the implementation's tables fails this test instead of silently moving with it.

Each role runs against its own fresh appliance prepared to the same state (six users, a target
user with a live session, a service token, an initialised vault holding one credential), so an
allowed state change by one role cannot alter what another role's call returns. MFA is off
(``auth.totp_required_roles = []``) and the API rate limit is lifted: both are tested on their
own in ``test_auth_attacks.py``.
"""

from __future__ import annotations


import grpc
import pyotp
import pytest
from google.protobuf import field_mask_pb2

from appliance.security.permissions import METHOD_PERMISSIONS, PUBLIC, ROLE_PERMISSIONS, ROLES, all_rpc_methods
from lyra.v1 import (
    admin_pb2, audit_pb2, auth_pb2, common_pb2, marketdata_pb2, orders_pb2, portfolio_pb2, risk_pb2, strategies_pb2,
    users_pb2, vault_pb2,
)

C = grpc.StatusCode
MATRIX_CONFIG = """
[auth]
totp_required_roles = []
rate_limit_rps = 1000.0
rate_limit_burst = 1000
"""
ALL_ROLES = ("admin", "trader", "risk_manager", "analyst", "auditor", "viewer")
VAULT_PASSPHRASE = "matrix-vault-passphrase-1"
VAULT_PASSPHRASE_2 = "matrix-vault-passphrase-2"
TARGET_USER, TARGET_PASSWORD = "target-user", "target-password-123"

# -- the expectations, written out ----------------------------------------------------------------
_READS = {"auth.self", "orders.read", "portfolio.read", "strategies.read", "risk.read", "marketdata.read", "admin.read"}
EXPECTED_ROLE_PERMISSIONS = {
    "admin": _READS | {"orders.write", "orders.cancel", "strategies.write", "risk.write", "risk.kill_switch.engage",
                       "risk.kill_switch.release", "admin.write", "vault.read", "vault.write", "vault.unseal",
                       "vault.admin", "users.read", "users.write", "audit.read", "marketdata.write"},
    "trader": _READS | {"orders.write", "orders.cancel", "strategies.write", "risk.kill_switch.engage", "vault.read",
                        "marketdata.write"},
    "risk_manager": _READS | {"risk.write", "risk.kill_switch.engage", "risk.kill_switch.release", "orders.cancel"},
    "analyst": set(_READS),
    "auditor": _READS | {"audit.read", "users.read"},
    "viewer": set(_READS),
}


def password_of(role: str) -> str:
    return f"{role}-password-123"


def cases(role: str, ids: dict) -> dict[str, tuple[str, object, grpc.StatusCode]]:
    """method -> (permission, request, code expected when the role is allowed).

    Ordered: reads first, state changes last. A request may be a callable taking the dict of
    earlier responses (for ConfirmTotpEnrollment, whose code depends on BeginTotpEnrollment).
    """
    secrets_pb = vault_pb2.CredentialSecrets(api_key="matrix-api-key-0001", secret="matrix-secret-0001-abcdef")
    return {
        # -- reads --------------------------------------------------------------------------------
        "/lyra.v1.AuthService/WhoAmI": ("auth.self", auth_pb2.WhoAmIRequest(), C.OK),
        "/lyra.v1.OrderService/GetOrder": ("orders.read", orders_pb2.GetOrderRequest(client_order_id="no-such-order"), C.NOT_FOUND),
        "/lyra.v1.OrderService/ListOrders": ("orders.read", orders_pb2.ListOrdersRequest(), C.OK),
        "/lyra.v1.OrderService/ListFills": ("orders.read", orders_pb2.ListFillsRequest(), C.OK),
        "/lyra.v1.OrderService/StreamOrderEvents": ("orders.read", orders_pb2.StreamOrderEventsRequest(), C.DEADLINE_EXCEEDED),
        "/lyra.v1.PortfolioService/ListBalances": ("portfolio.read", portfolio_pb2.ListBalancesRequest(), C.OK),
        "/lyra.v1.PortfolioService/ListPositions": ("portfolio.read", portfolio_pb2.ListPositionsRequest(), C.OK),
        "/lyra.v1.PortfolioService/GetPnl": ("portfolio.read", portfolio_pb2.GetPnlRequest(), C.OK),
        "/lyra.v1.StrategyService/ListStrategyTypes": ("strategies.read", strategies_pb2.ListStrategyTypesRequest(), C.OK),
        "/lyra.v1.StrategyService/GetStrategy": ("strategies.read", strategies_pb2.GetStrategyRequest(strategy_id="nope"), C.NOT_FOUND),
        "/lyra.v1.StrategyService/ListStrategies": ("strategies.read", strategies_pb2.ListStrategiesRequest(), C.OK),
        "/lyra.v1.RiskService/GetRiskLimits": ("risk.read", risk_pb2.GetRiskLimitsRequest(), C.OK),
        "/lyra.v1.RiskService/GetRiskStatus": ("risk.read", risk_pb2.GetRiskStatusRequest(), C.OK),
        "/lyra.v1.MarketDataService/ListInstruments": ("marketdata.read", marketdata_pb2.ListInstrumentsRequest(), C.OK),
        "/lyra.v1.MarketDataService/GetCandles": ("marketdata.read", marketdata_pb2.GetCandlesRequest(instrument="ADA/BTC@paper"), C.OK),
        # no symbols: lists the dataset folder, downloads nothing
        "/lyra.v1.MarketDataService/FetchCandles": ("marketdata.write", marketdata_pb2.FetchCandlesRequest(), C.OK),
        "/lyra.v1.AdminService/ListVenues": ("admin.read", admin_pb2.ListVenuesRequest(), C.OK),
        "/lyra.v1.AdminService/GetVersion": ("admin.read", admin_pb2.GetVersionRequest(), C.OK),
        "/lyra.v1.AdminService/GetStatus": ("admin.read", admin_pb2.GetStatusRequest(), C.OK),
        "/lyra.v1.AdminService/GetReplayProgress": ("admin.read", admin_pb2.GetReplayProgressRequest(), C.OK),
        "/lyra.v1.VaultService/GetVaultStatus": ("vault.read", vault_pb2.GetVaultStatusRequest(), C.OK),
        "/lyra.v1.VaultService/ListCredentials": ("vault.read", vault_pb2.ListCredentialsRequest(), C.OK),
        "/lyra.v1.VaultService/GetCredential": ("vault.read", vault_pb2.GetCredentialRequest(credential_id=ids["credential_id"]), C.OK),
        "/lyra.v1.UserService/ListUsers": ("users.read", users_pb2.ListUsersRequest(), C.OK),
        "/lyra.v1.UserService/GetUser": ("users.read", users_pb2.GetUserRequest(username=TARGET_USER), C.OK),
        "/lyra.v1.UserService/ListSessions": ("users.read", users_pb2.ListSessionsRequest(), C.OK),
        "/lyra.v1.UserService/ListServiceTokens": ("users.read", users_pb2.ListServiceTokensRequest(include_revoked=True), C.OK),
        "/lyra.v1.AuditService/ListAuditRecords": ("audit.read", audit_pb2.ListAuditRecordsRequest(page_size=10), C.OK),
        "/lyra.v1.AuditService/VerifyAuditChain": ("audit.read", audit_pb2.VerifyAuditChainRequest(), C.OK),
        "/lyra.v1.AuditService/ExportAuditRecords": ("audit.read", audit_pb2.ExportAuditRecordsRequest(), C.OK),
        # -- trading state changes ---------------------------------------------------------------
        "/lyra.v1.OrderService/SubmitOrder": ("orders.write", orders_pb2.SubmitOrderRequest(
            instrument="ADA/BTC@paper", side=common_pb2.SIDE_BUY, type=orders_pb2.ORDER_TYPE_LIMIT, qty="1000",
            limit_price="0.00001"), C.OK),
        "/lyra.v1.OrderService/CancelOrder": ("orders.cancel", orders_pb2.CancelOrderRequest(client_order_id="no-such-order"), C.NOT_FOUND),
        "/lyra.v1.StrategyService/CreateStrategy": ("strategies.write", strategies_pb2.CreateStrategyRequest(
            type="trend_momentum", strategy_id=f"tm-{role}".replace("_", "-"), instruments=["ADA/BTC@paper"]), C.OK),
        "/lyra.v1.StrategyService/StartStrategy": ("strategies.write", strategies_pb2.StartStrategyRequest(strategy_id="nope"), C.NOT_FOUND),
        "/lyra.v1.StrategyService/StopStrategy": ("strategies.write", strategies_pb2.StopStrategyRequest(strategy_id="nope"), C.NOT_FOUND),
        "/lyra.v1.RiskService/UpdateRiskLimits": ("risk.write", risk_pb2.UpdateRiskLimitsRequest(
            limits=risk_pb2.RiskLimits(max_open_orders=25),
            update_mask=field_mask_pb2.FieldMask(paths=["max_open_orders"])), C.OK),
        "/lyra.v1.RiskService/ResetCircuitBreaker": ("risk.write", risk_pb2.ResetCircuitBreakerRequest(reason="test"), C.FAILED_PRECONDITION),
        "/lyra.v1.RiskService/EngageKillSwitch": ("risk.kill_switch.engage", risk_pb2.EngageKillSwitchRequest(reason="matrix"), C.OK),
        "/lyra.v1.RiskService/ReleaseKillSwitch": ("risk.kill_switch.release", risk_pb2.ReleaseKillSwitchRequest(reason="matrix"), C.OK),
        "/lyra.v1.AdminService/PauseReplay": ("admin.write", admin_pb2.PauseReplayRequest(), C.OK),
        "/lyra.v1.AdminService/StartReplay": ("admin.write", admin_pb2.StartReplayRequest(), C.OK),
        # -- vault state changes (the vault was initialised and is unsealed) -----------------------
        "/lyra.v1.VaultService/CreateCredential": ("vault.write", vault_pb2.CreateCredentialRequest(
            venue="kraken", label=f"by-{role}", secrets=secrets_pb), C.OK),
        "/lyra.v1.VaultService/RotateCredential": ("vault.write", vault_pb2.RotateCredentialRequest(
            credential_id=ids["credential_id"], secrets=vault_pb2.CredentialSecrets(api_key="matrix-api-key-0002",
                                                                                     secret="matrix-secret-0002-abcdef")), C.OK),
        "/lyra.v1.VaultService/AbortCredentialRotation": ("vault.write", vault_pb2.AbortCredentialRotationRequest(
            credential_id=ids["credential_id"]), C.OK),
        # nothing is pending any more after the abort
        "/lyra.v1.VaultService/ConfirmCredentialRotation": ("vault.write", vault_pb2.ConfirmCredentialRotationRequest(
            credential_id=ids["credential_id"]), C.FAILED_PRECONDITION),
        "/lyra.v1.VaultService/DeleteCredential": ("vault.write", vault_pb2.DeleteCredentialRequest(credential_id=ids["credential_id"]), C.OK),
        "/lyra.v1.VaultService/ChangeVaultPassphrase": ("vault.admin", vault_pb2.ChangeVaultPassphraseRequest(
            current_passphrase=VAULT_PASSPHRASE, new_passphrase=VAULT_PASSPHRASE_2), C.OK),
        "/lyra.v1.VaultService/RotateDataKey": ("vault.admin", vault_pb2.RotateDataKeyRequest(), C.OK),
        "/lyra.v1.VaultService/SealVault": ("vault.unseal", vault_pb2.SealVaultRequest(), C.OK),
        "/lyra.v1.VaultService/UnsealVault": ("vault.unseal", vault_pb2.UnsealVaultRequest(passphrase=VAULT_PASSPHRASE_2), C.OK),
        "/lyra.v1.VaultService/InitializeVault": ("vault.admin", vault_pb2.InitializeVaultRequest(passphrase=VAULT_PASSPHRASE), C.FAILED_PRECONDITION),
        # -- user administration -------------------------------------------------------------------
        "/lyra.v1.UserService/CreateUser": ("users.write", users_pb2.CreateUserRequest(
            username=f"created-by-{role}", password="created-password-123", role="analyst"), C.OK),
        "/lyra.v1.UserService/UpdateUser": ("users.write", users_pb2.UpdateUserRequest(
            username=TARGET_USER, role="analyst", update_mask=field_mask_pb2.FieldMask(paths=["role"])), C.OK),
        "/lyra.v1.UserService/ResetPassword": ("users.write", users_pb2.ResetPasswordRequest(
            username=TARGET_USER, new_password="target-password-456"), C.OK),
        "/lyra.v1.UserService/ResetTotp": ("users.write", users_pb2.ResetTotpRequest(username=TARGET_USER), C.OK),
        "/lyra.v1.UserService/RevokeSession": ("users.write", users_pb2.RevokeSessionRequest(session_id=ids["session_id"]), C.OK),
        "/lyra.v1.UserService/CreateServiceToken": ("users.write", users_pb2.CreateServiceTokenRequest(
            name=f"token-by-{role}".replace("_", "-"), role="viewer", ttl_seconds=3600), C.OK),
        "/lyra.v1.UserService/RevokeServiceToken": ("users.write", users_pb2.RevokeServiceTokenRequest(token_id=ids["token_id"]), C.OK),
        # -- own credentials (every role) -----------------------------------------------------------
        "/lyra.v1.AuthService/BeginTotpEnrollment": ("auth.self", auth_pb2.BeginTotpEnrollmentRequest(password=password_of(role)), C.OK),
        "/lyra.v1.AuthService/ConfirmTotpEnrollment": ("auth.self", lambda answers: auth_pb2.ConfirmTotpEnrollmentRequest(
            totp_code=pyotp.TOTP(auth_pb2.BeginTotpEnrollmentResponse.FromString(
                answers["/lyra.v1.AuthService/BeginTotpEnrollment"]).secret).now()), C.OK),
        # a throwaway session's refresh token is filled in by the test
        "/lyra.v1.AuthService/Logout": ("auth.self", auth_pb2.LogoutRequest(), C.OK),
        "/lyra.v1.AuthService/ChangePassword": ("auth.self", auth_pb2.ChangePasswordRequest(
            current_password=password_of(role), new_password=password_of(role) + "-changed"), C.OK),
    }


PUBLIC_CASES = {
    "/lyra.v1.AuthService/Login": (auth_pb2.LoginRequest(username="admin", password="wrong-password-1"), C.UNAUTHENTICATED),
    "/lyra.v1.AuthService/Refresh": (auth_pb2.RefreshRequest(refresh_token="not-a-real-token"), C.UNAUTHENTICATED),
}
STREAMING = {"/lyra.v1.OrderService/StreamOrderEvents": 1.0, "/lyra.v1.AuditService/ExportAuditRecords": 30.0,
             "/lyra.v1.MarketDataService/FetchCandles": 30.0}
_PLACEHOLDER_IDS = {"credential_id": "cred-placeholder", "session_id": "session-placeholder", "token_id": "0123456789abcdef"}


def invoke(channel: grpc.Channel, method: str, request, token: str | None) -> tuple[grpc.StatusCode, bytes | None]:
    """Call ``method`` with raw bytes out; returns (code, serialized response or None)."""
    metadata = [("authorization", f"Bearer {token}")] if token else []
    try:
        if method in STREAMING:
            call = channel.unary_stream(method, request_serializer=type(request).SerializeToString,
                                        response_deserializer=lambda b: b)(request, metadata=metadata, timeout=STREAMING[method])
            for _ in call:
                pass
            return C.OK, None
        answer = channel.unary_unary(method, request_serializer=type(request).SerializeToString,
                                     response_deserializer=lambda b: b)(request, metadata=metadata, timeout=30)
        return C.OK, answer
    except grpc.RpcError as err:
        return err.code(), None


def prepare(running) -> dict:
    """Bring a fresh appliance to the state every role's walk starts from."""
    app = running.app
    for role in ("risk_manager", "analyst", "auditor"):
        running.add_user(role, role)
    running.call(app.auth.users.create_user, TARGET_USER, TARGET_PASSWORD, "viewer")
    session_id = running.call(app.auth.login, TARGET_USER, TARGET_PASSWORD).session_id
    token_id = running.call(app.auth.service_tokens.create, "matrix-token", "viewer", 3600, "admin").info.token_id
    running.call(app.vault.initialize, VAULT_PASSPHRASE)
    credential = running.call(app.vault.create_credential, "binance", "matrix",
                              {"api_key": "matrix-api-key-0000", "secret": "matrix-secret-0000-abcdef"})
    return {"credential_id": credential.credential_id, "session_id": session_id, "token_id": token_id}


@pytest.fixture
def matrix_appliance(appliance_factory):
    running = appliance_factory(extra=MATRIX_CONFIG)
    for role in ("admin", "trader", "viewer"):
        running.add_user(role, role)
    running.ids = prepare(running)
    return running


# -- the tables themselves -----------------------------------------------------------------------
def test_cases_cover_every_rpc():
    assert set(cases("x", _PLACEHOLDER_IDS)) | set(PUBLIC_CASES) == set(all_rpc_methods())
    assert set(all_rpc_methods()) <= set(METHOD_PERMISSIONS)


def test_written_out_expectations_match_the_implementation_tables():
    assert ROLES == ALL_ROLES
    for role in ALL_ROLES:
        assert ROLE_PERMISSIONS[role] == EXPECTED_ROLE_PERMISSIONS[role], role
    for method, (permission, _, _) in cases("x", _PLACEHOLDER_IDS).items():
        assert METHOD_PERMISSIONS[method] == permission, method
    assert {m for m, p in METHOD_PERMISSIONS.items() if p == PUBLIC} == set(PUBLIC_CASES)


# -- the walk ------------------------------------------------------------------------------------
@pytest.mark.parametrize("role", ALL_ROLES)
def test_every_rpc_for_role(matrix_appliance, role):
    from lyra_client.client import LyraClient

    appliance = matrix_appliance
    with LyraClient(appliance.target) as c:
        c.login(role, password_of(role))
        token = c.access_token
    with LyraClient(appliance.target) as other:
        other.login(role, password_of(role))
        spare_refresh = other.refresh_token
    allowed_permissions = EXPECTED_ROLE_PERMISSIONS[role]
    results, answers = {}, {}
    with grpc.insecure_channel(appliance.target) as channel:
        for method, (permission, request, allowed_code) in cases(role, appliance.ids).items():
            if method.endswith("/Logout"):
                request = auth_pb2.LogoutRequest(refresh_token=spare_refresh)
            if callable(request):
                if method.endswith("/ConfirmTotpEnrollment") and "/lyra.v1.AuthService/BeginTotpEnrollment" not in answers:
                    request = auth_pb2.ConfirmTotpEnrollmentRequest(totp_code="000000")
                else:
                    request = request(answers)
            expected = allowed_code if permission in allowed_permissions else C.PERMISSION_DENIED
            code, answer = invoke(channel, method, request, token)
            results[method] = (code, expected)
            if answer is not None:
                answers[method] = answer
            if (method.endswith("/EngageKillSwitch") and code is C.OK
                    and "risk.kill_switch.release" not in allowed_permissions):
                appliance.call(appliance.app.risk.release_kill_switch, "reset by test", "test")
    wrong = {m: r for m, r in results.items() if r[0] != r[1]}
    assert not wrong, wrong
    assert len(results) == len(all_rpc_methods()) - len(PUBLIC_CASES)


def test_no_token_and_forged_token_are_unauthenticated(matrix_appliance):
    appliance = matrix_appliance
    forged = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhZG1pbiIsInJvbGUiOiJhZG1pbiJ9."
    forged_service = "lyst_0123456789abcdef_" + "A" * 43
    with grpc.insecure_channel(appliance.target) as channel:
        for method, (_, request, _) in cases("x", appliance.ids).items():
            if callable(request):
                request = auth_pb2.ConfirmTotpEnrollmentRequest(totp_code="000000")
            for token in (None, forged, forged_service):
                assert invoke(channel, method, request, token)[0] is C.UNAUTHENTICATED, (method, token and token[:5])
        for method, (request, expected) in PUBLIC_CASES.items():
            assert invoke(channel, method, request, None)[0] is expected, method


def test_health_and_reflection_are_public(appliance):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(appliance.target) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
        names = {s.name for r in responses for s in r.list_services_response.service}
    assert "lyra.v1.OrderService" in names and "grpc.health.v1.Health" in names
