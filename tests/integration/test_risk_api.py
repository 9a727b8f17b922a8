"""The risk API end to end: limits set over the API deny orders with a precise status and rule,
bad limits are refused whole, the kill switch halts and cancels, only an admin releases it, it
survives a restart, and the order RPCs keep UNAUTHENTICATED and PERMISSION_DENIED apart.

No replay runs in these tests (the harness starts with ``start = "manual"``), so limit orders
far from the market rest on the paper venue until canceled.
"""

from __future__ import annotations

import importlib.util
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2

from lyra.v1 import orders_pb2, risk_pb2, risk_pb2_grpc
from lyra_client.errors import FailedPrecondition, InvalidArgument, PermissionDenied, Unauthenticated

_spec = importlib.util.spec_from_file_location("lyra_integration_harness_risk", Path(__file__).with_name("conftest.py"))
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)

# Polling and paging tests make more calls per second than the API rate limit allows a token
# (auth.rate_limit_*); rate limiting is not what these tests are about.
NO_RATE_LIMIT = "[auth]\nrate_limit_rps = 1000000.0\nrate_limit_burst = 1000000\n"
PW = harness.PASSWORDS
ADA = "ADA/BTC@paper"
REJECT_RULE = "lyra-reject-rule"


def barrier(running) -> None:
    """Every message queued so far (venue reports posted after the last RPC) is handled."""
    running.call(lambda: None)


def limits_tuple(limits: risk_pb2.RiskLimits) -> tuple:
    return (limits.max_order_notional, limits.max_position_notional, limits.max_open_orders,
            limits.daily_loss_limit, limits.currency)


class DataHome:
    """Appliances started one after another on the same config (same data dir). Each is stopped
    exactly once (the harness' ``RunningAppliance.stop`` cannot be called twice)."""

    def __init__(self, tmp: Path) -> None:
        self.config_path = harness.write_config(tmp, extra=NO_RATE_LIMIT)
        self.running: list = []

    def start(self):
        running = harness.RunningAppliance(self.config_path)
        self.running.append(running)
        return running

    def stop(self, running) -> None:
        self.running.remove(running)
        running.stop()


@pytest.fixture
def home(tmp_path):
    h = DataHome(tmp_path)
    yield h
    for running in list(h.running):
        h.stop(running)


# -- limits ----------------------------------------------------------------------------------------

def test_max_order_notional_denies_with_rule_and_records_rejection(appliance):
    admin = appliance.client("admin", PW["admin"])
    trader = appliance.client("trader", PW["trader"])
    updated = admin.update_risk_limits(max_order_notional="0.001")
    assert updated.max_order_notional == "0.001"
    assert admin.get_risk_limits().max_order_notional == "0.001"
    # the other limits keep the configured values
    assert (updated.max_position_notional, updated.max_open_orders, updated.daily_loss_limit) == ("0.6", 20, "0.5")

    # 100.001 ADA at 0.00001 BTC = 0.00100001 BTC > 0.001
    with pytest.raises(FailedPrecondition) as err:
        trader.submit_order(ADA, "buy", "100.001", limit_price="0.00001", client_order_id="too-big-1")
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert err.value.details.get(REJECT_RULE) == "max_order_notional"
    assert err.value.reject_rule == "max_order_notional"

    rejected = trader.get_order("too-big-1")
    assert rejected.status == orders_pb2.ORDER_STATUS_REJECTED
    assert rejected.reject_rule == "max_order_notional"
    assert rejected.reason
    listed = [o.client_order_id for o in trader.iter_orders(statuses=["rejected"])]
    assert listed == ["too-big-1"]

    # exactly at the limit passes: 100 ADA at 0.00001 = 0.001 BTC
    ok = trader.submit_order(ADA, "buy", "100", limit_price="0.00001", client_order_id="at-limit-1")
    assert ok.status == orders_pb2.ORDER_STATUS_PENDING_SUBMIT
    barrier(appliance)
    assert trader.get_order("at-limit-1").status == orders_pb2.ORDER_STATUS_OPEN


@pytest.mark.parametrize("bad", ["-1", "abc", "NaN"])
def test_bad_limit_value_is_invalid_argument_and_changes_nothing(appliance, bad):
    admin = appliance.client("admin", PW["admin"])
    before = limits_tuple(admin.get_risk_limits())
    # raw stub: the SDK refuses non-numbers before sending, the server must refuse them too
    channel = grpc.insecure_channel(appliance.target)
    try:
        stub = risk_pb2_grpc.RiskServiceStub(channel)
        metadata = [("authorization", f"Bearer {admin.access_token}")]
        request = risk_pb2.UpdateRiskLimitsRequest(
            limits=risk_pb2.RiskLimits(max_order_notional=bad, max_open_orders=3),
            update_mask=field_mask_pb2.FieldMask(paths=["max_open_orders", "max_order_notional"]),
        )
        with pytest.raises(grpc.RpcError) as err:
            stub.UpdateRiskLimits(request, metadata=metadata, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "max_order_notional" in err.value.details()
    finally:
        channel.close()
    # validated as a whole: the valid max_open_orders=3 of the same request was not applied either
    assert limits_tuple(admin.get_risk_limits()) == before
    assert admin.get_risk_limits().max_open_orders == 20


def test_negative_limit_through_sdk(appliance):
    admin = appliance.client("admin", PW["admin"])
    before = limits_tuple(admin.get_risk_limits())
    with pytest.raises(InvalidArgument) as err:
        admin.update_risk_limits(max_order_notional="-1")
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_order_notional" in err.value.message
    with pytest.raises(InvalidArgument) as err:
        admin.update_risk_limits(max_open_orders=-5)
    assert "max_open_orders" in err.value.message
    assert limits_tuple(admin.get_risk_limits()) == before


def test_trader_cannot_change_limits(appliance):
    trader = appliance.client("trader", PW["trader"])
    with pytest.raises(PermissionDenied) as err:
        trader.update_risk_limits(max_order_notional="100")
    assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert trader.get_risk_limits().max_order_notional == "0.5"


# -- kill switch -----------------------------------------------------------------------------------

def test_kill_switch_cancels_open_orders_blocks_new_ones_and_only_admin_releases(appliance):
    admin = appliance.client("admin", PW["admin"])
    trader = appliance.client("trader", PW["trader"])
    for k in range(3):
        trader.submit_order(ADA, "buy", "1000", limit_price="0.00001", client_order_id=f"rest-{k}")
    barrier(appliance)
    assert [trader.get_order(f"rest-{k}").status for k in range(3)] == [orders_pb2.ORDER_STATUS_OPEN] * 3

    with pytest.raises(InvalidArgument) as err:
        trader.engage_kill_switch("")
    assert "reason" in err.value.message

    status = trader.engage_kill_switch("trader saw something odd")
    assert status.kill_switch_engaged is True
    assert status.trading_state == risk_pb2.TRADING_STATE_HALTED
    assert status.kill_switch_reason == "trader saw something odd"
    barrier(appliance)  # the venue's cancel reports are handled
    for k in range(3):
        order = trader.get_order(f"rest-{k}")
        assert order.status == orders_pb2.ORDER_STATUS_CANCELED, order
    assert list(trader.iter_orders(open_only=True)) == []
    # nothing reserved any more
    btc = {b.asset: b for b in trader.list_balances().balances}["BTC"]
    assert Decimal(btc.reserved) == 0 and Decimal(btc.free) == Decimal(btc.total) == 1

    with pytest.raises(FailedPrecondition) as err:
        trader.submit_order(ADA, "buy", "100", limit_price="0.00001", client_order_id="halted-1")
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert err.value.reject_rule == "kill_switch"
    assert trader.get_order("halted-1").reject_rule == "kill_switch"

    with pytest.raises(PermissionDenied) as err:
        trader.release_kill_switch("trader wants to trade")
    assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert admin.get_risk_status().kill_switch_engaged is True

    released = admin.release_kill_switch("checked by admin")
    assert released.kill_switch_engaged is False
    assert released.trading_state == risk_pb2.TRADING_STATE_ACTIVE
    with pytest.raises(FailedPrecondition):  # releasing twice is a state error
        admin.release_kill_switch("again")

    accepted = trader.submit_order(ADA, "buy", "100", limit_price="0.00001", client_order_id="after-release-1")
    assert accepted.status == orders_pb2.ORDER_STATUS_PENDING_SUBMIT
    barrier(appliance)
    assert trader.get_order("after-release-1").status == orders_pb2.ORDER_STATUS_OPEN


def test_kill_switch_survives_restart(home):
    first = home.start()
    for role in ("admin", "trader"):
        first.add_user(role, role)
    trader = first.client("trader", PW["trader"])
    trader.submit_order(ADA, "buy", "1000", limit_price="0.00001", client_order_id="before-restart")
    barrier(first)
    trader.engage_kill_switch("halt before maintenance")
    barrier(first)
    assert trader.get_order("before-restart").status == orders_pb2.ORDER_STATUS_CANCELED
    home.stop(first)

    second = home.start()
    trader = second.client("trader", PW["trader"])
    admin = second.client("admin", PW["admin"])
    status = admin.get_risk_status()
    assert status.kill_switch_engaged is True
    assert status.trading_state == risk_pb2.TRADING_STATE_HALTED
    assert status.kill_switch_reason == "halt before maintenance"
    assert trader.get_order("before-restart").status == orders_pb2.ORDER_STATUS_CANCELED
    with pytest.raises(FailedPrecondition) as err:
        trader.submit_order(ADA, "buy", "100", limit_price="0.00001", client_order_id="after-restart")
    assert err.value.reject_rule == "kill_switch"
    with pytest.raises(PermissionDenied):
        trader.release_kill_switch("still a trader")

    admin.release_kill_switch("maintenance done")
    home.stop(second)
    # released state survives a restart too
    third = home.start()
    trader = third.client("trader", PW["trader"])
    assert trader.get_risk_status().kill_switch_engaged is False
    order = trader.submit_order(ADA, "buy", "100", limit_price="0.00001", client_order_id="after-release")
    assert order.status == orders_pb2.ORDER_STATUS_PENDING_SUBMIT


# -- authentication vs authorization ---------------------------------------------------------------

def test_viewer_submit_is_permission_denied_and_records_nothing(appliance):
    viewer = appliance.client("viewer", PW["viewer"])
    with pytest.raises(PermissionDenied) as err:
        viewer.submit_order(ADA, "buy", "100", limit_price="0.00001", client_order_id="viewer-1")
    assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert "orders.write" in err.value.message
    with pytest.raises(PermissionDenied):
        viewer.engage_kill_switch("viewer")
    trader = appliance.client("trader", PW["trader"])
    assert list(trader.iter_orders()) == []
    assert trader.get_risk_status().kill_switch_engaged is False


def test_missing_or_bad_token_is_unauthenticated(appliance):
    anonymous = appliance.client()
    with pytest.raises(Unauthenticated) as err:
        anonymous.submit_order(ADA, "buy", "100", limit_price="0.00001", client_order_id="anon-1")
    assert err.value.code == grpc.StatusCode.UNAUTHENTICATED
    forged = appliance.client()
    forged.set_tokens("not.a.jwt", None)
    with pytest.raises(Unauthenticated) as err:
        forged.submit_order(ADA, "buy", "100", limit_price="0.00001", client_order_id="anon-2")
    assert err.value.code == grpc.StatusCode.UNAUTHENTICATED
    trader = appliance.client("trader", PW["trader"])
    assert list(trader.iter_orders()) == []
