"""Order state machine: every legal transition works, every illegal one raises and changes nothing."""

from decimal import Decimal

import pytest

from appliance.model.errors import IllegalTransitionError, ValidationError
from appliance.model.instrument import InstrumentId
from appliance.model.order import TRANSITIONS, Order, OrderSide, OrderStatus, OrderType

IID = InstrumentId("paper", "ADA/BTC")


def make(status=OrderStatus.PENDING_SUBMIT, qty="10"):
    return Order("c1", IID, OrderSide.BUY, OrderType.MARKET, Decimal(qty), None, status, 1, 1)


@pytest.mark.parametrize("src", list(OrderStatus))
@pytest.mark.parametrize("dst", list(OrderStatus))
def test_transition_table_is_enforced(src, dst):
    order = make(src)
    if dst in TRANSITIONS[src]:
        moved = order.transition(dst, 2)
        assert moved.status is dst and moved.updated_ns == 2
    else:
        with pytest.raises(IllegalTransitionError):
            order.transition(dst, 2)
    assert order.status is src  # immutable either way


def test_terminal_states_have_no_exit():
    for status in (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED):
        assert status.is_terminal and not TRANSITIONS[status]


def test_partial_then_full_fill_averages_price_and_sums_fees():
    order = make(OrderStatus.OPEN)
    order = order.apply_fill(Decimal("4"), Decimal("0.00005"), Decimal("0.0000005"), "BTC", 5)
    assert order.status is OrderStatus.PARTIALLY_FILLED and order.leaves_qty == Decimal("6")
    order = order.apply_fill(Decimal("6"), Decimal("0.00006"), Decimal("0.0000009"), "BTC", 6)
    assert order.status is OrderStatus.FILLED
    # independent: (4*5e-5 + 6*6e-5) / 10
    assert order.avg_fill_price == (Decimal("4") * Decimal("0.00005") + Decimal("6") * Decimal("0.00006")) / 10
    assert order.fees == Decimal("0.0000014")


def test_overfill_and_fill_of_terminal_order_raise():
    order = make(OrderStatus.OPEN)
    with pytest.raises(ValidationError) as err:
        order.apply_fill(Decimal("11"), Decimal("1"), Decimal("0"), "BTC", 2)
    assert err.value.field == "fill.qty"
    with pytest.raises(IllegalTransitionError):
        make(OrderStatus.CANCELED).apply_fill(Decimal("1"), Decimal("1"), Decimal("0"), "BTC", 2)
