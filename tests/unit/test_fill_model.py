"""CandleFillModel: every rule with hand-computed numbers."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from appliance.marketdata.bar import Bar
from appliance.model.errors import ValidationError
from appliance.model.fill import Liquidity
from appliance.model.instrument import InstrumentId
from appliance.model.order import OrderSide, OrderType
from appliance.venues.paper.fill_model import CandleFillModel, FillDecision

TF = 300 * 10**9
T = 1_515_560_400 * 10**9  # acceptance time = close of the decision bar = open of the next
ADA = InstrumentId("paper", "ADA/BTC")
BUY, SELL = OrderSide.BUY, OrderSide.SELL
MKT, LMT = OrderType.MARKET, OrderType.LIMIT
MAKER, TAKER = Liquidity.MAKER, Liquidity.TAKER


def bar(o: str, h: str, l: str, c: str, v: str, open_ns: int = T) -> Bar:  # noqa: E741
    return Bar(ADA, open_ns, open_ns + TF, D(o), D(h), D(l), D(c), D(v))


def match(model: CandleFillModel, b: Bar, *, side=BUY, type_=MKT, leaves="1000", limit=None, first=True, **kw):
    return model.match(
        side=side,
        order_type=type_,
        leaves_qty=D(leaves),
        limit_price=D(limit) if limit is not None else None,
        accepted_ns=T,
        bar=b,
        first_eligible=first,
        **kw,
    )


# -- eligibility --------------------------------------------------------------------------
def test_never_trades_on_the_decision_bar() -> None:
    model = CandleFillModel(max_participation=None)
    decision_bar = bar("1.00", "1.10", "0.90", "1.05", "100", open_ns=T - TF)  # closes exactly at T
    assert match(model, decision_bar) is None
    assert match(model, decision_bar, type_=LMT, limit="2.00") is None
    assert match(model, bar("1.00", "1.10", "0.90", "1.05", "100", open_ns=T)) == FillDecision(D("1000"), D("1.00"), TAKER)
    assert match(model, bar("1.00", "1.10", "0.90", "1.05", "100", open_ns=T - 1)) is None


# -- market orders ------------------------------------------------------------------------
def test_market_buy_pays_open_plus_slippage() -> None:
    model = CandleFillModel(slippage_bps=D("10"))
    b = bar("0.0000533", "0.0000533", "0.00005288", "0.0000529", "431401.97869504")
    # 0.0000533 * (1 + 10/10000) = 0.0000533533; cap = 43140.197869504 -> 43140 > 1000
    assert match(model, b, qty_step=D("1")) == FillDecision(D("1000"), D("0.0000533533"), TAKER)
    # rounded to the 1e-8 tick against the buyer: 0.00005336
    got = match(model, b, qty_step=D("1"), price_tick=D("0.00000001"))
    assert got == FillDecision(D("1000"), D("0.00005336"), TAKER)


def test_market_sell_receives_open_minus_slippage() -> None:
    model = CandleFillModel(slippage_bps=D("10"))
    b = bar("0.0000533", "0.0000533", "0.00005288", "0.0000529", "431401.97869504")
    # 0.0000533 * (1 - 0.001) = 0.0000532467 -> tick down: 0.00005324
    assert match(model, b, side=SELL) == FillDecision(D("1000"), D("0.0000532467"), TAKER)
    assert match(model, b, side=SELL, price_tick=D("0.00000001")) == FillDecision(D("1000"), D("0.00005324"), TAKER)


def test_partial_fill_across_two_bars() -> None:
    model = CandleFillModel(max_participation=D("0.1"), qty_step=D("1"))
    first = match(model, bar("2.00", "2.20", "1.90", "2.10", "600"), leaves="100")
    assert first == FillDecision(D("60"), D("2.00"), TAKER)  # 10 % of 600
    second = match(model, bar("2.10", "2.30", "2.00", "2.20", "1000", open_ns=T + TF), leaves="40", first=False)
    assert second == FillDecision(D("40"), D("2.10"), TAKER)  # cap 100 > leaves 40, at the new open


def test_participation_cap_rounds_down_to_step() -> None:
    model = CandleFillModel(max_participation=D("0.1"))
    b = bar("2.00", "2.20", "1.90", "2.10", "123.456")
    assert match(model, b, leaves="50", qty_step=D("0.01")).qty == D("12.34")  # 12.3456 -> 12.34
    assert match(model, b, leaves="50", qty_step=D("0.001")).qty == D("12.345")
    assert CandleFillModel(qty_step=D("0.1")).bar_capacity(b) == D("12.3")


def test_cap_rounding_to_zero_means_no_fill() -> None:
    model = CandleFillModel(max_participation=D("0.1"), qty_step=D("1"))
    assert match(model, bar("2.00", "2.20", "1.90", "2.10", "5")) is None  # 0.5 -> 0


def test_zero_volume_and_disabled_cap_are_uncapped() -> None:
    model = CandleFillModel(max_participation=D("0.1"), qty_step=D("1"))
    assert match(model, bar("2.00", "2.00", "2.00", "2.00", "0"), leaves="777") == FillDecision(D("777"), D("2.00"), TAKER)
    uncapped = CandleFillModel(max_participation=None)
    assert match(uncapped, bar("2.00", "2.20", "1.90", "2.10", "1"), leaves="777").qty == D("777")


# -- limit orders -------------------------------------------------------------------------
def test_limit_buy_marketable_on_arrival_fills_at_open_as_taker() -> None:
    model = CandleFillModel(max_participation=None)
    b = bar("1.00", "1.10", "0.95", "1.05", "100")
    assert match(model, b, type_=LMT, limit="1.05") == FillDecision(D("1000"), D("1.00"), TAKER)
    assert match(model, b, type_=LMT, limit="1.00") == FillDecision(D("1000"), D("1.00"), TAKER)  # open == limit
    # slippage applies but never past the limit: 1.00 * 1.01 = 1.01 <= 1.05; 1.00 * 1.10 = 1.10 -> 1.05
    assert match(CandleFillModel(D("100"), None), b, type_=LMT, limit="1.05").price == D("1.01")
    assert match(CandleFillModel(D("1000"), None), b, type_=LMT, limit="1.05") == FillDecision(D("1000"), D("1.05"), TAKER)


def test_limit_buy_rests_and_fills_only_when_traded_through() -> None:
    model = CandleFillModel(max_participation=None)
    # opens above the limit, trades through it: maker at the limit, same bar
    assert match(model, bar("1.10", "1.12", "1.00", "1.08", "100"), type_=LMT, limit="1.05") == FillDecision(
        D("1000"), D("1.05"), MAKER
    )
    # only touches the limit: no fill
    assert match(model, bar("1.10", "1.12", "1.05", "1.08", "100"), type_=LMT, limit="1.05") is None
    # never reaches it
    assert match(model, bar("1.10", "1.12", "1.06", "1.08", "100"), type_=LMT, limit="1.05") is None


def test_resting_limit_buy_after_a_gap_fills_at_limit_not_open() -> None:
    model = CandleFillModel(max_participation=None)
    gap_down = bar("1.00", "1.02", "0.98", "1.01", "100", open_ns=T + TF)
    assert match(model, gap_down, type_=LMT, limit="1.05", first=False) == FillDecision(D("1000"), D("1.05"), MAKER)


def test_limit_sell_symmetric() -> None:
    model = CandleFillModel(max_participation=None)
    # marketable on arrival: open 1.10 >= 1.05 -> taker at the open
    assert match(model, bar("1.10", "1.12", "1.00", "1.08", "100"), side=SELL, type_=LMT, limit="1.05") == FillDecision(
        D("1000"), D("1.10"), TAKER
    )
    # slippage 10 %: 1.10 * 0.9 = 0.99 < limit -> the limit, still taker
    assert match(
        CandleFillModel(D("1000"), None), bar("1.10", "1.12", "1.00", "1.08", "100"), side=SELL, type_=LMT, limit="1.05"
    ) == FillDecision(D("1000"), D("1.05"), TAKER)
    # resting: high 1.06 > 1.05 -> maker at the limit
    assert match(model, bar("1.00", "1.06", "0.95", "1.02", "100"), side=SELL, type_=LMT, limit="1.05") == FillDecision(
        D("1000"), D("1.05"), MAKER
    )
    # high == limit: no fill
    assert match(model, bar("1.00", "1.05", "0.95", "1.02", "100"), side=SELL, type_=LMT, limit="1.05") is None
    # resting (not first bar) and a gap up through the limit: maker at the limit
    assert match(
        model, bar("1.20", "1.25", "1.15", "1.22", "100", open_ns=T + TF), side=SELL, type_=LMT, limit="1.05", first=False
    ) == FillDecision(D("1000"), D("1.05"), MAKER)


def test_marketable_limit_partial_then_rest_as_maker() -> None:
    model = CandleFillModel(max_participation=D("0.1"), qty_step=D("1"))
    first = match(model, bar("1.00", "1.04", "0.98", "1.02", "300"), type_=LMT, limit="1.05", leaves="50")
    assert first == FillDecision(D("30"), D("1.00"), TAKER)
    # the rest rests at the limit: the next bar opens below it but it is no longer "on arrival"
    second = match(
        model, bar("1.01", "1.03", "0.99", "1.00", "500", open_ns=T + TF), type_=LMT, limit="1.05", leaves="20", first=False
    )
    assert second == FillDecision(D("20"), D("1.05"), MAKER)


# -- parameters ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"slippage_bps": D("-1")}, "slippage_bps"),
        ({"max_participation": D("0")}, "max_participation"),
        ({"max_participation": D("1.5")}, "max_participation"),
        ({"qty_step": D("0")}, "qty_step"),
        ({"slippage_bps": 0.5}, "slippage_bps"),
    ],
)
def test_bad_parameters(kwargs: dict, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        CandleFillModel(**kwargs)
    assert err.value.field == field


def test_bad_order_inputs() -> None:
    model = CandleFillModel()
    b = bar("1.00", "1.10", "0.95", "1.05", "100")
    with pytest.raises(ValidationError) as err:
        match(model, b, leaves="0")
    assert err.value.field == "leaves_qty"
    with pytest.raises(ValidationError) as err:
        match(model, b, type_=LMT, limit=None)
    assert err.value.field == "limit_price"
