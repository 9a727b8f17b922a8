"""Average-cost accounting checked against hand computations and an independent FIFO-free replay."""

from decimal import Decimal as D

from appliance.model.fill import Fill, Liquidity
from appliance.model.instrument import InstrumentId
from appliance.model.order import OrderSide
from appliance.model.position import Position, convert, recompute_from_fills

IID = InstrumentId("paper", "ETH/BTC")


def fill(n, side, qty, price, fee="0"):
    return Fill(f"f{n}", f"c{n}", IID, side, D(qty), D(price), D(fee), "BTC", Liquidity.TAKER, n)


def test_average_cost_add_reduce_flip():
    p = Position(IID, "BTC")
    p = p.apply(fill(1, OrderSide.BUY, "2", "0.05", "0.0001"))
    p = p.apply(fill(2, OrderSide.BUY, "1", "0.08"))
    assert p.qty == D("3") and p.avg_price == D("0.06")  # (2*0.05 + 1*0.08)/3
    p = p.apply(fill(3, OrderSide.SELL, "1", "0.07"))
    assert p.realized_pnl == D("0.01") and p.avg_price == D("0.06") and p.qty == D("2")
    p = p.apply(fill(4, OrderSide.SELL, "3", "0.05"))  # closes 2 at a loss of 0.01 each, opens 1 short at 0.05
    assert p.realized_pnl == D("0.01") - D("0.02")
    assert p.qty == D("-1") and p.avg_price == D("0.05")
    assert p.fees == D("0.0001")
    assert p.unrealized_pnl(D("0.04")) == D("0.01")  # short gains when price falls


def test_recompute_balances_from_fills():
    fills = [fill(1, OrderSide.BUY, "2", "0.05", "0.00025"), fill(2, OrderSide.SELL, "2", "0.06", "0.0003")]
    balances, positions = recompute_from_fills({("paper", "BTC"): D("1")}, fills, {IID: ("ETH", "BTC")})
    assert balances[("paper", "ETH")] == 0
    assert balances[("paper", "BTC")] == D("1") - D("0.1") - D("0.00025") + D("0.12") - D("0.0003")
    assert positions[IID].realized_pnl == D("0.02") and positions[IID].qty == 0


def test_convert_direct_inverse_and_via():
    prices = {("ETH", "BTC"): D("0.05"), ("BTC", "USDT"): D("20000")}
    assert convert(D("2"), "ETH", "BTC", prices) == D("0.1")
    assert convert(D("0.1"), "BTC", "ETH", prices) == D("2")
    assert convert(D("2"), "ETH", "USDT", prices) == D("2000")
    assert convert(D("1"), "XRP", "BTC", prices) is None
