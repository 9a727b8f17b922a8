"""Unit tests of the lyra_client SDK against an in-process fake gRPC server.

``FakeServer`` (below) is a test double of a few lyra.v1 services with just enough behaviour
to exercise the client: token issue/rotation, bearer checks, pagination, risk rejection with
trailing metadata, roles, a server stream. test_lyractl.py reuses it.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from concurrent import futures
from decimal import Decimal

import grpc
import pytest
from google.protobuf import timestamp_pb2

from lyra.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    common_pb2,
    orders_pb2,
    orders_pb2_grpc,
    portfolio_pb2,
    portfolio_pb2_grpc,
    risk_pb2,
    risk_pb2_grpc,
)
from lyra_client import (
    FailedPrecondition,
    InvalidArgument,
    LyraClient,
    LyraError,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from lyra_client.convert import to_dict

USERS = {"alice": ("pw-alice", "trader"), "victor": ("pw-victor", "viewer"), "rita": ("pw-rita", "risk_manager")}


def _ts(seconds: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds)


class FakeState:
    """Shared state of the fake services; inspect it from tests."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counter = itertools.count(1)
        self.access: dict[str, str] = {}  # access token -> username
        self.refresh: dict[str, str] = {}  # live refresh token -> username
        self.spent_refresh: set[str] = set()
        self.metadata: list[tuple[str, dict[str, str]]] = []  # (method, metadata) of every call
        self.refresh_calls = 0
        self.list_orders_requests: list[orders_pb2.ListOrdersRequest] = []
        self.last_update_mask: list[str] = []
        self.orders = [
            orders_pb2.Order(
                client_order_id=f"o-{i}",
                instrument="ADA/BTC@paper",
                side=common_pb2.SIDE_BUY if i % 2 else common_pb2.SIDE_SELL,
                type=orders_pb2.ORDER_TYPE_LIMIT,
                qty="100",
                limit_price="0.00003010",
                status=orders_pb2.ORDER_STATUS_OPEN if i < 3 else orders_pb2.ORDER_STATUS_FILLED,
                filled_qty="0" if i < 3 else "100",
                strategy_id="manual",
                create_time=_ts(1_515_560_100 + i),
            )
            for i in range(7)
        ]
        self.fills = [
            orders_pb2.Fill(fill_id=f"f-{i}", client_order_id=f"o-{i}", instrument="ADA/BTC@paper",
                            side=common_pb2.SIDE_BUY, qty="100", price="0.00003010", fee="0.00000301",
                            fee_asset="BTC", liquidity=orders_pb2.LIQUIDITY_TAKER, time=_ts(1_515_560_200 + i))
            for i in range(5)
        ]

    def issue(self, username: str) -> tuple[str, str]:
        n = next(self.counter)
        access, refresh = f"access-{username}-{n}", f"refresh-{username}-{n}"
        self.access[access] = username
        self.refresh[refresh] = username
        return access, refresh

    def expire_access_tokens(self) -> None:
        """Simulate expiry of every access token issued so far."""
        with self.lock:
            self.access.clear()

    def calls(self, method: str) -> list[dict[str, str]]:
        return [md for m, md in self.metadata if m == method]


def _record(state: FakeState, method: str, context: grpc.ServicerContext) -> dict[str, str]:
    md = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
    with state.lock:
        state.metadata.append((method, md))
    return md


def _authenticate(state: FakeState, method: str, context: grpc.ServicerContext) -> tuple[str, str]:
    md = _record(state, method, context)
    header = md.get("authorization", "")
    if not header.startswith("Bearer "):
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing bearer token")
    with state.lock:
        user = state.access.get(header[len("Bearer "):])
    if user is None:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "access token expired or invalid")
    return user, USERS[user][1]


class FakeAuth(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, state: FakeState) -> None:
        self.s = state

    def Login(self, request, context):
        _record(self.s, "Login", context)
        expected = USERS.get(request.username)
        if expected is None or expected[0] != request.password:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid username or password")
        with self.s.lock:
            access, refresh = self.s.issue(request.username)
        return auth_pb2.LoginResponse(access_token=access, refresh_token=refresh, role=expected[1],
                                      username=request.username, access_expires_at=_ts(2_000_000_000))

    def Refresh(self, request, context):
        _record(self.s, "Refresh", context)
        with self.s.lock:
            self.s.refresh_calls += 1
            user = self.s.refresh.pop(request.refresh_token, None)
            if user is None:
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "refresh token invalid or reused")
            self.s.spent_refresh.add(request.refresh_token)
            access, refresh = self.s.issue(user)
        return auth_pb2.RefreshResponse(access_token=access, refresh_token=refresh, role=USERS[user][1],
                                        username=user, access_expires_at=_ts(2_000_000_000))

    def Logout(self, request, context):
        _authenticate(self.s, "Logout", context)  # like the real server: needs an access token
        with self.s.lock:
            self.s.refresh.pop(request.refresh_token, None)
        return auth_pb2.LogoutResponse()

    def WhoAmI(self, request, context):
        user, role = _authenticate(self.s, "WhoAmI", context)
        return auth_pb2.WhoAmIResponse(username=user, role=role, permissions=["orders.read", "orders.submit"])


class FakeOrders(orders_pb2_grpc.OrderServiceServicer):
    def __init__(self, state: FakeState) -> None:
        self.s = state

    def SubmitOrder(self, request, context):
        _, role = _authenticate(self.s, "SubmitOrder", context)
        if role == "viewer":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "role viewer may not call SubmitOrder")
        if not request.qty:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "qty: required")
        if Decimal(request.qty) > 1000:
            context.set_trailing_metadata((("lyra-reject-rule", "max_order_notional"),))
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          "order notional exceeds max_order_notional 0.01 BTC")
        return orders_pb2.Order(client_order_id=request.client_order_id or "srv-1", instrument=request.instrument,
                                side=request.side, type=request.type, qty=request.qty,
                                limit_price=request.limit_price, status=orders_pb2.ORDER_STATUS_PENDING_SUBMIT,
                                filled_qty="0", strategy_id=request.strategy_id or "manual")

    def GetOrder(self, request, context):
        _authenticate(self.s, "GetOrder", context)
        for order in self.s.orders:
            if order.client_order_id == request.client_order_id:
                return order
        context.abort(grpc.StatusCode.NOT_FOUND, f"order {request.client_order_id!r} not found")

    def CancelOrder(self, request, context):
        _authenticate(self.s, "CancelOrder", context)
        order = self.GetOrder(request, context)
        out = orders_pb2.Order()
        out.CopyFrom(order)
        out.status = orders_pb2.ORDER_STATUS_CANCELED
        return out

    def ListOrders(self, request, context):
        _authenticate(self.s, "ListOrders", context)
        with self.s.lock:
            self.s.list_orders_requests.append(request)
        items = [o for o in self.s.orders
                 if (not request.open_only or o.status == orders_pb2.ORDER_STATUS_OPEN)
                 and (not request.statuses or o.status in request.statuses)]
        start = int(request.page_token or 0)
        size = request.page_size or 100
        page = items[start:start + size]
        nxt = str(start + size) if start + size < len(items) else ""
        return orders_pb2.ListOrdersResponse(orders=page, next_page_token=nxt)

    def ListFills(self, request, context):
        _authenticate(self.s, "ListFills", context)
        items = [f for f in self.s.fills if not request.client_order_id or f.client_order_id == request.client_order_id]
        start = int(request.page_token or 0)
        size = min(request.page_size or 2, 2)  # the fake pages by 2 at most
        nxt = str(start + size) if start + size < len(items) else ""
        return orders_pb2.ListFillsResponse(fills=items[start:start + size], next_page_token=nxt)

    def StreamOrderEvents(self, request, context):
        _authenticate(self.s, "StreamOrderEvents", context)
        for seq, order in enumerate(self.s.orders[:3], start=101):
            yield orders_pb2.OrderEvent(seq=seq, type=orders_pb2.ORDER_EVENT_TYPE_ACCEPTED, order=order,
                                        time=_ts(1_515_560_300 + seq))


class FakePortfolio(portfolio_pb2_grpc.PortfolioServiceServicer):
    def __init__(self, state: FakeState) -> None:
        self.s = state

    def ListBalances(self, request, context):
        _authenticate(self.s, "ListBalances", context)
        return portfolio_pb2.ListBalancesResponse(balances=[
            portfolio_pb2.Balance(asset="BTC", total="1.00000000", reserved="0.00012300", free="0.99987700",
                                  venue="paper"),
            portfolio_pb2.Balance(asset="ADA", total="0", reserved="0", free="0", venue="paper"),
        ])

    def GetPnl(self, request, context):
        _authenticate(self.s, "GetPnl", context)
        return portfolio_pb2.Pnl(nav_currency="BTC", nav="1.00010000", starting_nav="1.00000000",
                                 realized_pnl="0.00010000", unrealized_pnl="0", fees="0.00000301",
                                 net_pnl="0.00009699", as_of=_ts(1_515_560_400),
                                 instruments=[portfolio_pb2.InstrumentPnl(instrument="ADA/BTC@paper",
                                                                          realized_pnl="0.00010000")])


class FakeRisk(risk_pb2_grpc.RiskServiceServicer):
    def __init__(self, state: FakeState) -> None:
        self.s = state
        self.limits = risk_pb2.RiskLimits(max_order_notional="0.01", max_position_notional="0.1",
                                          max_open_orders=50, daily_loss_limit="0.005", currency="BTC")
        self.status = risk_pb2.RiskStatus(trading_state=risk_pb2.TRADING_STATE_ACTIVE, daily_pnl="0",
                                          day_start_nav="1.00000000", currency="BTC")

    def GetRiskLimits(self, request, context):
        _authenticate(self.s, "GetRiskLimits", context)
        return self.limits

    def UpdateRiskLimits(self, request, context):
        _, role = _authenticate(self.s, "UpdateRiskLimits", context)
        if role not in ("risk_manager", "admin"):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"role {role} may not call UpdateRiskLimits")
        self.s.last_update_mask = list(request.update_mask.paths)
        for path in request.update_mask.paths:
            setattr(self.limits, path, getattr(request.limits, path))
        return self.limits

    def GetRiskStatus(self, request, context):
        _authenticate(self.s, "GetRiskStatus", context)
        return self.status

    def EngageKillSwitch(self, request, context):
        _, role = _authenticate(self.s, "EngageKillSwitch", context)
        if role not in ("risk_manager", "admin"):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"role {role} may not call EngageKillSwitch")
        if not request.reason:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "reason: required")
        self.status.kill_switch_engaged = True
        self.status.kill_switch_reason = request.reason
        self.status.trading_state = risk_pb2.TRADING_STATE_HALTED
        return self.status


class FakeAdmin(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, state: FakeState) -> None:
        self.s = state

    def GetVersion(self, request, context):
        _authenticate(self.s, "GetVersion", context)
        return admin_pb2.GetVersionResponse(version="0.1.0", schema_version=3)

    def GetStatus(self, request, context):
        _authenticate(self.s, "GetStatus", context)
        return admin_pb2.GetStatusResponse(
            state=admin_pb2.SERVER_STATE_RUNNING, uptime_seconds=12.5, mode="replay",
            clock_time=_ts(1_515_560_400), journal_seq=42,
            replay=admin_pb2.ReplayProgress(state=admin_pb2.REPLAY_STATE_RUNNING, slices_done=10, slices_total=40,
                                            percent=25.0, current_time=_ts(1_515_560_400)))


class FakeServer:
    """In-process gRPC server on 127.0.0.1:<ephemeral> with the fake services."""

    def __init__(self) -> None:
        self.state = FakeState()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        auth_pb2_grpc.add_AuthServiceServicer_to_server(FakeAuth(self.state), self.server)
        orders_pb2_grpc.add_OrderServiceServicer_to_server(FakeOrders(self.state), self.server)
        portfolio_pb2_grpc.add_PortfolioServiceServicer_to_server(FakePortfolio(self.state), self.server)
        risk_pb2_grpc.add_RiskServiceServicer_to_server(FakeRisk(self.state), self.server)
        admin_pb2_grpc.add_AdminServiceServicer_to_server(FakeAdmin(self.state), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.target = f"127.0.0.1:{self.port}"

    def __enter__(self) -> "FakeServer":
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(grace=None).wait()


def unused_target() -> str:
    """host:port on which nothing listens (bound then released by a throw-away server)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    server.stop(grace=None).wait()
    return f"127.0.0.1:{port}"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def fake():
    with FakeServer() as srv:
        yield srv


@pytest.fixture
def client(fake):
    with LyraClient(fake.target, timeout=5) as c:
        yield c


# --------------------------------------------------------------------------- tests


def test_login_stores_tokens_and_sends_bearer(fake):
    seen = []
    with LyraClient(fake.target, on_tokens=lambda a, r: seen.append((a, r)), timeout=5) as c:
        resp = c.login("alice", "pw-alice")
        assert resp.role == "trader" and resp.username == "alice"
        assert c.access_token == resp.access_token and c.refresh_token == resp.refresh_token
        assert seen == [(resp.access_token, resp.refresh_token)]
        who = c.whoami()
    assert who.username == "alice" and who.role == "trader"
    assert "authorization" not in fake.state.calls("Login")[0]
    assert fake.state.calls("WhoAmI")[0]["authorization"] == f"Bearer {resp.access_token}"


def test_bad_password_is_unauthenticated(client):
    with pytest.raises(Unauthenticated) as info:
        client.login("alice", "wrong")
    assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert "invalid" in info.value.message
    assert client.access_token is None


def test_refresh_on_unauthenticated_retries_once_and_reports_rotation(fake):
    rotations = []
    with LyraClient(fake.target, on_tokens=lambda a, r: rotations.append((a, r)), timeout=5) as c:
        login = c.login("alice", "pw-alice")
        fake.state.expire_access_tokens()
        status = c.get_status()
        assert status.journal_seq == 42
        assert fake.state.refresh_calls == 1
        assert len(rotations) == 2
        new_access, new_refresh = rotations[-1]
        assert new_refresh != login.refresh_token and new_access != login.access_token
        assert (c.access_token, c.refresh_token) == (new_access, new_refresh)
        calls = fake.state.calls("GetStatus")
        assert [md["authorization"] for md in calls] == [f"Bearer {login.access_token}", f"Bearer {new_access}"]
        assert login.refresh_token in fake.state.spent_refresh
        # The next call uses the rotated token directly, without refreshing again.
        c.get_status()
        assert fake.state.refresh_calls == 1


def test_refresh_with_preloaded_tokens(fake):
    with fake.state.lock:
        access, refresh = fake.state.issue("alice")
    fake.state.expire_access_tokens()
    rotated = []
    with LyraClient(fake.target, access_token=access, refresh_token=refresh,
                    on_tokens=lambda a, r: rotated.append((a, r)), timeout=5) as c:
        assert c.list_balances().balances[0].asset == "BTC"
    assert len(rotated) == 1 and rotated[0][1] != refresh


def test_no_refresh_token_raises_unauthenticated(fake):
    with LyraClient(fake.target, timeout=5) as c:
        with pytest.raises(Unauthenticated):
            c.get_status()
    assert fake.state.refresh_calls == 0


def test_revoked_refresh_token_raises_unauthenticated(fake):
    with LyraClient(fake.target, timeout=5) as c:
        c.login("alice", "pw-alice")
        fake.state.refresh.clear()  # session revoked server-side
        fake.state.expire_access_tokens()
        with pytest.raises(Unauthenticated) as info:
            c.get_status()
        assert "refresh" in info.value.message
    assert fake.state.refresh_calls == 1


def test_iter_orders_follows_page_tokens(client, fake):
    client.login("alice", "pw-alice")
    ids = [o.client_order_id for o in client.iter_orders(page_size=3)]
    assert ids == [f"o-{i}" for i in range(7)]
    tokens = [r.page_token for r in fake.state.list_orders_requests]
    assert tokens == ["", "3", "6"]
    assert all(r.page_size == 3 for r in fake.state.list_orders_requests)


def test_iter_orders_limit_and_filters(client, fake):
    client.login("alice", "pw-alice")
    assert len(list(client.iter_orders(page_size=2, limit=3))) == 3
    assert len(fake.state.list_orders_requests) == 2  # stopped as soon as the limit was reached
    fake.state.list_orders_requests.clear()
    opened = list(client.iter_orders(statuses=["open"], page_size=10))
    assert [o.client_order_id for o in opened] == ["o-0", "o-1", "o-2"]
    assert list(fake.state.list_orders_requests[0].statuses) == [orders_pb2.ORDER_STATUS_OPEN]
    page = client.list_orders(page_size=5)
    assert len(page.orders) == 5 and page.next_page_token == "5"


def test_iter_fills_all_pages(client):
    client.login("alice", "pw-alice")
    assert [f.fill_id for f in client.iter_fills()] == [f"f-{i}" for i in range(5)]


def test_submit_order_builds_request(client):
    client.login("alice", "pw-alice")
    order = client.submit_order("ADA/BTC@paper", "BUY", Decimal("100"), limit_price="0.00003010",
                                client_order_id="my-1")
    assert order.client_order_id == "my-1"
    assert order.side == common_pb2.SIDE_BUY
    assert order.type == orders_pb2.ORDER_TYPE_LIMIT  # inferred from the price
    assert order.limit_price == "0.00003010" and order.qty == "100"
    market = client.submit_order("ADA/BTC@paper", "sell", "5")
    assert market.type == orders_pb2.ORDER_TYPE_MARKET and market.limit_price == ""


def test_submit_order_validates_before_calling(client, fake):
    with pytest.raises(TypeError):
        client.submit_order("ADA/BTC@paper", "buy", 1.5)
    with pytest.raises(ValueError, match="limit_price"):
        client.submit_order("ADA/BTC@paper", "buy", "1", order_type="limit")
    with pytest.raises(ValueError, match="side"):
        client.submit_order("ADA/BTC@paper", "hold", "1")
    with pytest.raises(ValueError, match="qty"):
        client.submit_order("ADA/BTC@paper", "buy", "lots")
    assert fake.state.calls("SubmitOrder") == []


def test_risk_rejection_keeps_trailing_metadata(client):
    client.login("alice", "pw-alice")
    with pytest.raises(FailedPrecondition) as info:
        client.submit_order("ADA/BTC@paper", "buy", "5000", limit_price="0.00003")
    err = info.value
    assert isinstance(err, LyraError)
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION
    assert err.details["lyra-reject-rule"] == "max_order_notional"
    assert err.reject_rule == "max_order_notional"
    assert "max_order_notional" in str(err)
    assert isinstance(err.__cause__, grpc.RpcError)


def test_error_classes(client, fake):
    client.login("victor", "pw-victor")
    with pytest.raises(PermissionDenied):
        client.submit_order("ADA/BTC@paper", "buy", "1")
    with pytest.raises(NotFound):
        client.get_order("nope")
    client.login("rita", "pw-rita")
    with pytest.raises(InvalidArgument, match="reason"):
        client.engage_kill_switch("")
    with LyraClient(unused_target(), timeout=2) as dead:
        with pytest.raises(Unavailable):
            dead.login("alice", "pw-alice")


def test_update_risk_limits_sets_mask_from_keywords(client, fake):
    client.login("rita", "pw-rita")
    limits = client.update_risk_limits(max_order_notional="0.02", max_open_orders=10)
    assert fake.state.last_update_mask == ["max_order_notional", "max_open_orders"]
    assert limits.max_order_notional == "0.02" and limits.max_open_orders == 10
    assert limits.daily_loss_limit == "0.005"  # untouched
    with pytest.raises(ValueError, match="not a risk limit"):
        client.update_risk_limits(max_leverage="3")


def test_stream_order_events_refreshes_before_first_event(client, fake):
    client.login("alice", "pw-alice")
    fake.state.expire_access_tokens()
    events = list(client.stream_order_events())
    assert [e.seq for e in events] == [101, 102, 103]
    assert events[0].type == orders_pb2.ORDER_EVENT_TYPE_ACCEPTED
    assert fake.state.refresh_calls == 1


def test_stream_can_be_closed_early(client):
    client.login("alice", "pw-alice")
    stream = client.stream_order_events()
    first = next(stream)
    stream.close()
    assert first.seq == 101


def test_to_dict_keeps_decimal_strings_and_short_enums(client):
    client.login("alice", "pw-alice")
    balances = to_dict(client.list_balances())
    assert balances["balances"][0]["reserved"] == "0.00012300"
    order = to_dict(client.get_order("o-1"))
    assert order["side"] == "BUY" and order["status"] == "OPEN" and order["type"] == "LIMIT"
    assert order["limit_price"] == "0.00003010"
    assert order["create_time"] == "2018-01-10T04:55:01Z"
    assert order["update_time"] is None
    status = to_dict(client.get_status())
    assert status["state"] == "RUNNING" and status["replay"]["state"] == "RUNNING"
    assert status["journal_seq"] == 42


def test_get_candles_time_conversion():
    from lyra_client.client import _timestamp

    aware = dt.datetime(2018, 1, 10, 4, 55, tzinfo=dt.timezone.utc)
    assert _timestamp(aware, field="t").seconds == 1_515_560_100
    assert _timestamp(dt.datetime(2018, 1, 10, 4, 55), field="t").seconds == 1_515_560_100  # naive = UTC
    assert _timestamp(1_515_560_100_000_000_000, field="t").seconds == 1_515_560_100
    with pytest.raises(TypeError):
        _timestamp("2018-01-10", field="t")
