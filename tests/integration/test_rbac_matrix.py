"""Every RPC x every role against the real server: the exact status code of each call.

Allowed calls get a request that is valid for that RPC and must return the code listed here
(OK, or the precise domain error such as NOT_FOUND for an unknown id); denied calls must return
PERMISSION_DENIED; calls without a token or with a forged one must return UNAUTHENTICATED.
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2

from appliance.security.permissions import METHOD_PERMISSIONS, PUBLIC, all_rpc_methods, has_permission
from lyra.v1 import (
    admin_pb2, auth_pb2, common_pb2, marketdata_pb2, orders_pb2, portfolio_pb2, risk_pb2, strategies_pb2,
)

C = grpc.StatusCode


def cases(role: str) -> dict[str, tuple[object, grpc.StatusCode]]:
    """method -> (request, code expected when the role is allowed). Ordered: state-changing last."""
    return {
        "/lyra.v1.AuthService/WhoAmI": (auth_pb2.WhoAmIRequest(), C.OK),
        "/lyra.v1.OrderService/SubmitOrder": (orders_pb2.SubmitOrderRequest(
            instrument="ADA/BTC@paper", side=common_pb2.SIDE_BUY, type=orders_pb2.ORDER_TYPE_LIMIT, qty="1000",
            limit_price="0.00001"), C.OK),
        "/lyra.v1.OrderService/CancelOrder": (orders_pb2.CancelOrderRequest(client_order_id="no-such-order"), C.NOT_FOUND),
        "/lyra.v1.OrderService/GetOrder": (orders_pb2.GetOrderRequest(client_order_id="no-such-order"), C.NOT_FOUND),
        "/lyra.v1.OrderService/ListOrders": (orders_pb2.ListOrdersRequest(), C.OK),
        "/lyra.v1.OrderService/ListFills": (orders_pb2.ListFillsRequest(), C.OK),
        "/lyra.v1.OrderService/StreamOrderEvents": (orders_pb2.StreamOrderEventsRequest(), C.DEADLINE_EXCEEDED),
        "/lyra.v1.PortfolioService/ListBalances": (portfolio_pb2.ListBalancesRequest(), C.OK),
        "/lyra.v1.PortfolioService/ListPositions": (portfolio_pb2.ListPositionsRequest(), C.OK),
        "/lyra.v1.PortfolioService/GetPnl": (portfolio_pb2.GetPnlRequest(), C.OK),
        "/lyra.v1.StrategyService/ListStrategyTypes": (strategies_pb2.ListStrategyTypesRequest(), C.OK),
        "/lyra.v1.StrategyService/CreateStrategy": (strategies_pb2.CreateStrategyRequest(
            type="trend_momentum", strategy_id=f"tm-{role}", instruments=["ADA/BTC@paper"]), C.OK),
        "/lyra.v1.StrategyService/StartStrategy": (strategies_pb2.StartStrategyRequest(strategy_id="nope"), C.NOT_FOUND),
        "/lyra.v1.StrategyService/StopStrategy": (strategies_pb2.StopStrategyRequest(strategy_id="nope"), C.NOT_FOUND),
        "/lyra.v1.StrategyService/GetStrategy": (strategies_pb2.GetStrategyRequest(strategy_id="nope"), C.NOT_FOUND),
        "/lyra.v1.StrategyService/ListStrategies": (strategies_pb2.ListStrategiesRequest(), C.OK),
        "/lyra.v1.RiskService/GetRiskLimits": (risk_pb2.GetRiskLimitsRequest(), C.OK),
        "/lyra.v1.RiskService/UpdateRiskLimits": (risk_pb2.UpdateRiskLimitsRequest(
            limits=risk_pb2.RiskLimits(max_open_orders=25),
            update_mask=field_mask_pb2.FieldMask(paths=["max_open_orders"])), C.OK),
        "/lyra.v1.RiskService/GetRiskStatus": (risk_pb2.GetRiskStatusRequest(), C.OK),
        "/lyra.v1.RiskService/ResetCircuitBreaker": (risk_pb2.ResetCircuitBreakerRequest(reason="test"), C.FAILED_PRECONDITION),
        "/lyra.v1.RiskService/EngageKillSwitch": (risk_pb2.EngageKillSwitchRequest(reason="matrix"), C.OK),
        "/lyra.v1.RiskService/ReleaseKillSwitch": (risk_pb2.ReleaseKillSwitchRequest(reason="matrix"), C.OK),
        "/lyra.v1.MarketDataService/ListInstruments": (marketdata_pb2.ListInstrumentsRequest(), C.OK),
        "/lyra.v1.MarketDataService/GetCandles": (marketdata_pb2.GetCandlesRequest(instrument="ADA/BTC@paper"), C.OK),
        "/lyra.v1.AdminService/GetVersion": (admin_pb2.GetVersionRequest(), C.OK),
        "/lyra.v1.AdminService/GetStatus": (admin_pb2.GetStatusRequest(), C.OK),
        "/lyra.v1.AdminService/GetReplayProgress": (admin_pb2.GetReplayProgressRequest(), C.OK),
        "/lyra.v1.AdminService/PauseReplay": (admin_pb2.PauseReplayRequest(), C.OK),
        "/lyra.v1.AdminService/StartReplay": (admin_pb2.StartReplayRequest(), C.OK),
        # a throwaway session's refresh token is filled in by the test
        "/lyra.v1.AuthService/Logout": (auth_pb2.LogoutRequest(), C.OK),
    }


PUBLIC_CASES = {
    "/lyra.v1.AuthService/Login": (auth_pb2.LoginRequest(username="admin", password="wrong-password-1"), C.UNAUTHENTICATED),
    "/lyra.v1.AuthService/Refresh": (auth_pb2.RefreshRequest(refresh_token="not-a-real-token"), C.UNAUTHENTICATED),
}


def invoke(channel: grpc.Channel, method: str, request, token: str | None) -> grpc.StatusCode:
    metadata = [("authorization", f"Bearer {token}")] if token else []
    streaming = method.endswith("/StreamOrderEvents")
    try:
        if streaming:
            call = channel.unary_stream(method, request_serializer=type(request).SerializeToString,
                                        response_deserializer=lambda b: b)(request, metadata=metadata, timeout=1.0)
            for _ in call:
                pass
        else:
            channel.unary_unary(method, request_serializer=type(request).SerializeToString,
                                response_deserializer=lambda b: b)(request, metadata=metadata, timeout=30)
    except grpc.RpcError as err:
        return err.code()
    return C.OK


def test_cases_cover_every_rpc():
    assert set(cases("x")) | set(PUBLIC_CASES) == set(all_rpc_methods())
    assert set(all_rpc_methods()) <= set(METHOD_PERMISSIONS)


@pytest.mark.parametrize("role", ["viewer", "trader", "admin"])
def test_every_rpc_for_role(appliance, role):
    from lyra_client.client import LyraClient

    with LyraClient(appliance.target) as c:
        c.login(role, f"{role}-password-123")
        token = c.access_token
    with LyraClient(appliance.target) as other:
        other.login(role, f"{role}-password-123")
        spare_refresh = other.refresh_token
    results = {}
    with grpc.insecure_channel(appliance.target) as channel:
        for method, (request, allowed_code) in cases(role).items():
            if method.endswith("/Logout"):
                request = auth_pb2.LogoutRequest(refresh_token=spare_refresh)
            expected = allowed_code if has_permission(role, METHOD_PERMISSIONS[method]) else C.PERMISSION_DENIED
            results[method] = (invoke(channel, method, request, token), expected)
            if method.endswith("/EngageKillSwitch") and results[method][0] is C.OK and role != "admin":
                appliance.call(appliance.app.risk.release_kill_switch, "reset by test", "test")
    wrong = {m: r for m, r in results.items() if r[0] != r[1]}
    assert not wrong, wrong


def test_no_token_and_forged_token_are_unauthenticated(appliance):
    forged = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhZG1pbiIsInJvbGUiOiJhZG1pbiJ9."
    with grpc.insecure_channel(appliance.target) as channel:
        for method, (request, _) in cases("x").items():
            assert invoke(channel, method, request, None) is C.UNAUTHENTICATED, method
            assert invoke(channel, method, request, forged) is C.UNAUTHENTICATED, method
        for method, (request, expected) in PUBLIC_CASES.items():
            assert invoke(channel, method, request, None) is expected, method
    assert {m for m, p in METHOD_PERMISSIONS.items() if p == PUBLIC} == set(PUBLIC_CASES)


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
