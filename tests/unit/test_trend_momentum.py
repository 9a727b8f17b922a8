"""TrendMomentum over real candles, with a fake StrategyContext that plays OMS + venue.

The fake fills market orders at the next bar's open (after a configurable delay), can split
fills, deliver each fill's order event before the fill (as appliance.execution.oms does:
order event, portfolio update, on_fill) or after it, reject orders synchronously (notifying
during submit, like the OMS) or asynchronously, raise ValidationError for orders below the
venue minimums (like OrderManager.submit) and fills limit orders when the bar trades through them. Signals are checked against indicators
recomputed here independently (plain-Python EMA / Wilder ATR / ADX over the full history).
"""

from __future__ import annotations

import copy
import csv
import functools
import json
import math
import os
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pydantic
import pytest
import talib

from appliance.marketdata.bar import Bar
from appliance.model.errors import NotFoundError, ValidationError
from appliance.model.fill import Fill, Liquidity
from appliance.model.instrument import Instrument, InstrumentId
from appliance.model.money import ZERO
from appliance.model.order import Order, OrderSide, OrderStatus, OrderType
from appliance.model.position import Position, apply_fill_to_balances
from appliance.strategies import registry
from appliance.strategies.trend_momentum import TrendMomentum

REPO = Path(__file__).resolve().parents[2]
FIVE_MIN_NS = 5 * 60 * 1_000_000_000
FEE_RATE = Decimal("0.001")


def shared_data() -> Path:
    root = Path(os.environ.get("LYRA_SHARED_DATA", REPO / ".." / "shared" / "data"))
    if not (root / "candles").is_dir():
        pytest.fail(f"shared market data not found at {root} (set LYRA_SHARED_DATA)", pytrace=False)
    return root


# -- data -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Series:
    iid: InstrumentId
    bars: tuple[Bar, ...]
    o: np.ndarray
    h: np.ndarray
    l: np.ndarray
    c: np.ndarray


MARKETS = {
    "bittrex_ETH-BTC_5m.csv": dict(base="ETH", quote="BTC", tick="0.000001", step="0.001", min_qty="0.001", min_notional="0.0001"),
    "bittrex_ADA-BTC_5m.csv": dict(base="ADA", quote="BTC", tick="0.00000001", step="1", min_qty="1", min_notional="0.0001"),
}


@functools.lru_cache(maxsize=None)
def load(name: str) -> Series:
    spec = MARKETS[name]
    iid = InstrumentId("paper", f"{spec['base']}/{spec['quote']}")
    bars = []
    with open(shared_data() / "candles" / name, newline="") as fh:
        for row in csv.DictReader(fh):
            open_ns = int(row["timestamp_ms"]) * 1_000_000
            bars.append(
                Bar(iid, open_ns, open_ns + FIVE_MIN_NS, Decimal(row["open"]), Decimal(row["high"]),
                    Decimal(row["low"]), Decimal(row["close"]), Decimal(row["volume"] or "0"))
            )
    f = lambda attr: np.array([float(getattr(b, attr)) for b in bars])  # noqa: E731
    return Series(iid, tuple(bars), f("open"), f("high"), f("low"), f("close"))


def instrument_for(name: str) -> Instrument:
    spec = MARKETS[name]
    s = load(name)
    return Instrument(s.iid, spec["base"], spec["quote"], Decimal(spec["tick"]), Decimal(spec["step"]),
                      Decimal(spec["min_qty"]), Decimal(spec["min_notional"]))


# -- independent indicator implementations (plain Python loops) -----------------------------------
def ref_ema(x: np.ndarray, period: int) -> np.ndarray:
    """EMA with alpha = 2/(n+1), seeded with the SMA of the first n values (TA-Lib's convention)."""
    out = np.full(len(x), np.nan)
    if len(x) < period:
        return out
    alpha = 2.0 / (period + 1)
    value = sum(float(v) for v in x[:period]) / period
    out[period - 1] = value
    for i in range(period, len(x)):
        value = (float(x[i]) - value) * alpha + value
        out[i] = value
    return out


def _true_range(h: np.ndarray, l: np.ndarray, c: np.ndarray, i: int) -> float:
    return max(h[i] - l[i], abs(h[i] - c[i - 1]), abs(l[i] - c[i - 1]))


def ref_atr(h: np.ndarray, l: np.ndarray, c: np.ndarray, period: int) -> np.ndarray:
    """Wilder (1978): first ATR = mean of TR[1..n], then ATR = (ATR*(n-1) + TR)/n."""
    out = np.full(len(c), np.nan)
    value = sum(_true_range(h, l, c, i) for i in range(1, period + 1)) / period
    out[period] = value
    for i in range(period + 1, len(c)):
        value = (value * (period - 1) + _true_range(h, l, c, i)) / period
        out[i] = value
    return out


def ref_adx(h: np.ndarray, l: np.ndarray, c: np.ndarray, period: int) -> np.ndarray:
    """Wilder (1978): +DM/-DM/TR summed over n-1 bars then Wilder-smoothed; DX = 100|+DI - -DI|/(+DI + -DI);
    first ADX = mean of the first n DX, then ADX = (ADX*(n-1) + DX)/n."""
    out = np.full(len(c), np.nan)

    def step(i: int) -> tuple[float, float, float]:
        up, down = h[i] - h[i - 1], l[i - 1] - l[i]
        plus = up if (up > 0 and up > down) else 0.0
        minus = down if (down > 0 and down > up) else 0.0
        return plus, minus, _true_range(h, l, c, i)

    pdm = mdm = tr = 0.0
    for i in range(1, period):
        a, b, t = step(i)
        pdm, mdm, tr = pdm + a, mdm + b, tr + t

    def advance(i: int) -> float:
        nonlocal pdm, mdm, tr
        a, b, t = step(i)
        pdm, mdm, tr = pdm - pdm / period + a, mdm - mdm / period + b, tr - tr / period + t
        pdi, mdi = 100 * pdm / tr, 100 * mdm / tr
        return 100 * abs(pdi - mdi) / (pdi + mdi) if pdi + mdi else 0.0

    adx = sum(advance(i) for i in range(period, 2 * period)) / period
    out[2 * period - 1] = adx
    for i in range(2 * period, len(c)):
        adx = (adx * (period - 1) + advance(i)) / period
        out[i] = adx
    return out


@dataclass
class Indicators:
    fast: np.ndarray
    slow: np.ndarray
    adx: np.ndarray
    atr: np.ndarray

    def cross(self, i: int) -> int:
        f0, f1, s0, s1 = self.fast[i - 1], self.fast[i], self.slow[i - 1], self.slow[i]
        if f0 <= s0 and f1 > s1:
            return 1
        if f0 >= s0 and f1 < s1:
            return -1
        return 0


@functools.lru_cache(maxsize=None)
def ref_indicators(name: str, fast: int, slow: int, adx: int, atr: int) -> Indicators:
    s = load(name)
    return Indicators(ref_ema(s.c, fast), ref_ema(s.c, slow), ref_adx(s.h, s.l, s.c, adx), ref_atr(s.h, s.l, s.c, atr))


# -- the fake context -------------------------------------------------------------------------------
@dataclass
class Submission:
    bar: int
    order: Order
    open_before: int  # own open orders on that instrument at the time of the submit


class FakeContext:
    """StrategyContext double: an OMS + paper venue driven bar by bar by :func:`run`."""

    def __init__(self, instrument: Instrument, quote_balance: Decimal = Decimal("1")) -> None:
        self.strategy_id = "tm-test"
        self.inst = instrument
        self.balances: dict[str, Decimal] = {instrument.quote: quote_balance, instrument.base: ZERO}
        self.positions: dict[InstrumentId, Position] = {}
        self.orders: dict[str, Order] = {}
        self.submitted: list[Submission] = []
        self.submit_bar: dict[str, int] = {}
        self.saved: list[tuple[int, dict]] = []
        self.logs: list[tuple[int, str, dict]] = []
        self.cancel_requests: list[str] = []
        self.now = 0
        self.bar = -1
        self.last_close = Decimal(1)
        self.strategy: TrendMomentum | None = None
        self.stop_before: dict[int, float] = {}  # bar -> persisted stop in force when on_bar(bar) was called
        self.stop_after: dict[int, float] = {}  # bar -> persisted stop after on_bar(bar), if in position
        # behaviour knobs
        self.fill_delay_bars = 1
        self.split_fills = False
        self.event_order = "oms"  # "oms": event, portfolio, on_fill (per fill); "fill_first": portfolio, on_fill, event
        self.reject_buys_sync = 0
        self.reject_buys_async = 0
        self._async_reject: set[str] = set()
        self._seq = 0

    # StrategyContext protocol
    def now_ns(self) -> int:
        return self.now

    def instrument(self, instrument_id: InstrumentId) -> Instrument:
        assert instrument_id == self.inst.id
        return self.inst

    def submit_order(self, instrument_id, side, qty, type=OrderType.MARKET, limit_price=None) -> Order:
        assert isinstance(qty, Decimal) and (limit_price is None or isinstance(limit_price, Decimal))
        self._seq += 1
        coid = f"T-{self._seq}"
        rounded = self.inst.round_qty(qty)
        self.inst.check_order_size(rounded, limit_price or self.last_close)  # raises ValidationError, like the OMS
        order = Order(coid, instrument_id, side, type, rounded, limit_price, OrderStatus.PENDING_SUBMIT,
                      self.now, self.now, strategy_id=self.strategy_id)
        open_before = len(self.open_orders(instrument_id))
        if side is OrderSide.BUY and self.reject_buys_sync > 0:
            self.reject_buys_sync -= 1
            order = order.transition(OrderStatus.REJECTED, self.now, reject_rule="test_sync", reason="test")
        elif side is OrderSide.BUY and self.reject_buys_async > 0:
            self.reject_buys_async -= 1
            self._async_reject.add(coid)
        self.orders[coid] = order
        self.submit_bar[coid] = self.bar
        self.submitted.append(Submission(self.bar, order, open_before))
        self.strategy.on_order_event(order)  # the OMS notifies listeners before submit returns
        return order

    def cancel_order(self, client_order_id: str) -> None:
        self.cancel_requests.append(client_order_id)

    def open_orders(self, instrument_id=None) -> list[Order]:
        return [o for o in self.orders.values() if o.is_open and (instrument_id is None or o.instrument == instrument_id)]

    def position(self, instrument_id: InstrumentId) -> Position:
        return self.positions.get(instrument_id) or Position(instrument_id, self.inst.quote)

    def free_balance(self, asset: str, venue: str) -> Decimal:
        reserved = ZERO
        for o in self.open_orders():
            if o.side is OrderSide.BUY and asset == self.inst.quote:
                reserved += o.leaves_qty * (o.limit_price or self.last_close)
            elif o.side is OrderSide.SELL and asset == self.inst.base:
                reserved += o.leaves_qty
        return self.balances.get(asset, ZERO) - reserved

    def save_state(self, state: dict[str, Any]) -> None:
        self.saved.append((self.bar, json.loads(json.dumps(state))))  # must be JSON

    def log(self, message: str, **fields: Any) -> None:
        self.logs.append((self.bar, message, fields))

    # venue side
    def _apply_to_portfolio(self, fill: Fill) -> None:
        keyed = {(self.inst.id.venue, a): v for a, v in self.balances.items()}
        apply_fill_to_balances(keyed, fill, self.inst.base, self.inst.quote)
        self.balances = {a: v for (_, a), v in keyed.items()}
        self.positions[fill.instrument] = self.position(fill.instrument).apply(fill)

    def venue_step(self, i: int, bar: Bar) -> None:
        """At bar ``i``'s open: fill/reject the orders that are due."""
        self.now = bar.open_ns
        for coid in list(self.orders):
            order = self.orders[coid]
            if not order.is_open or self.submit_bar[coid] + self.fill_delay_bars > i:
                continue
            if coid in self._async_reject:
                order = order.transition(OrderStatus.REJECTED, self.now, reject_rule="venue", reason="test async")
                self.orders[coid] = order
                self.strategy.on_order_event(order)
                continue
            if order.type is OrderType.LIMIT:
                if bar.low > order.limit_price:
                    if order.status is OrderStatus.PENDING_SUBMIT:
                        order = order.transition(OrderStatus.OPEN, self.now)
                        self.orders[coid] = order
                        self.strategy.on_order_event(order)
                    continue
                price = min(bar.open, order.limit_price)
            else:
                price = bar.open
            parts = [order.qty]
            if self.split_fills:
                first = self.inst.round_qty(order.qty / 3)
                if 0 < first < order.qty:
                    parts = [first, order.qty - first]
            for k, q in enumerate(parts):
                fee = (q * price * FEE_RATE).quantize(Decimal("1e-12"))
                fill = Fill(f"{coid}-{k}", coid, order.instrument, order.side, q, price, fee, self.inst.quote,
                            Liquidity.TAKER, self.now)
                order = order.apply_fill(q, price, fee, self.inst.quote, self.now)
                self.orders[coid] = order
                if self.event_order == "oms":
                    self.strategy.on_order_event(order)
                    self._apply_to_portfolio(fill)
                    self.strategy.on_fill(fill)
                else:
                    self._apply_to_portfolio(fill)
                    self.strategy.on_fill(fill)
                    self.strategy.on_order_event(order)

    def process_cancels(self) -> None:
        while self.cancel_requests:
            coid = self.cancel_requests.pop(0)
            order = self.orders[coid]
            if order.is_open:
                order = order.transition(OrderStatus.CANCELED, self.now, reason="canceled by strategy")
                self.orders[coid] = order
                self.strategy.on_order_event(order)

    def snapshot(self) -> dict:
        return dict(balances=dict(self.balances), positions=dict(self.positions), open=len(self.open_orders()),
                    saved=copy.deepcopy(self.saved[-1][1]) if self.saved else {})


def run(strategy: TrendMomentum, ctx: FakeContext, series: Series, start: int, end: int | None = None,
        after_bar: Callable[[int], None] | None = None) -> None:
    """Play the manager: bars ``start..end-1`` one by one (venue step, append, on_bar, cancels)."""
    ctx.strategy = strategy
    end = len(series.bars) if end is None else end
    buf = strategy.buffers[series.iid]
    for i in range(start, end):
        bar = series.bars[i]
        ctx.bar = i
        ctx.venue_step(i, bar)
        ctx.now = bar.close_ns
        ctx.last_close = bar.close
        buf.append_bar(bar)
        before = persisted_stop(ctx)
        if before is not None:
            ctx.stop_before[i] = before
        strategy.on_bar(bar, buf)
        ctx.process_cancels()
        after = persisted_stop(ctx)
        if after is not None:
            ctx.stop_after[i] = after
        if after_bar is not None:
            after_bar(i)


def start_strategy(name: str, params: dict | None = None, state: dict | None = None, ctx: FakeContext | None = None,
                   upto: int | None = None) -> tuple[TrendMomentum, FakeContext, int]:
    """Construct, warm the buffer with ``warmup_bars`` bars ending before ``upto`` (default: the first
    warmup_bars bars), call on_start. Returns (strategy, ctx, first bar index to feed)."""
    series = load(name)
    ctx = ctx or FakeContext(instrument_for(name))
    strategy = TrendMomentum(ctx, [series.iid], TrendMomentum.Params(**(params or {})), state or {})
    ctx.strategy = strategy
    warm = strategy.warmup_bars()
    first = warm if upto is None else upto
    for bar in series.bars[first - warm : first]:
        strategy.buffers[series.iid].append_bar(bar)
    strategy.on_start()
    return strategy, ctx, first


# -- reference model of the rules -----------------------------------------------------------------------
@dataclass
class RefTrade:
    bar: int
    side: str
    reason: str


def reference_trades(name: str, p: TrendMomentum.Params, start: int) -> tuple[list[RefTrade], dict[int, float]]:
    """The rules applied to independently computed full-history indicators, fills at the next open."""
    s = load(name)
    ind = ref_indicators(name, p.fast_period, p.slow_period, p.adx_period, p.atr_period)
    trades: list[RefTrade] = []
    stops: dict[int, float] = {}
    in_pos, stop, pending = False, math.nan, None  # pending = (side, signal bar)
    for i in range(start, len(s.c)):
        if pending is not None and pending[1] + 1 == i:
            if pending[0] == "buy":
                in_pos, stop = True, s.o[i] - p.atr_stop_mult * ind.atr[pending[1]]
            else:
                in_pos, stop = False, math.nan
            pending = None
        if in_pos:
            if s.c[i] <= stop:
                trades.append(RefTrade(i, "sell", "stop"))
                pending = ("sell", i)
            elif ind.cross(i) == -1:
                trades.append(RefTrade(i, "sell", "cross_down"))
                pending = ("sell", i)
            elif p.trailing:
                stop = max(stop, s.c[i] - p.atr_stop_mult * ind.atr[i])
            if pending is None:
                stops[i] = stop
        elif ind.cross(i) == 1 and ind.adx[i] >= p.adx_min:
            trades.append(RefTrade(i, "buy", "entry"))
            pending = ("buy", i)
    return trades, stops


def strategy_trades(ctx: FakeContext) -> list[RefTrade]:
    reasons = iter(f.get("reason", "") for _, m, f in ctx.logs if m == "exit")
    return [RefTrade(s.bar, s.order.side.value, "entry" if s.order.side is OrderSide.BUY else next(reasons))
            for s in ctx.submitted]


def persisted_stop(ctx: FakeContext) -> float | None:
    """The stop in the last saved state while in position and not exiting (None otherwise)."""
    if not ctx.saved:
        return None
    rec = ctx.saved[-1][1].get("positions", {}).get(str(ctx.inst.id))
    if rec and rec.get("entry") and rec.get("stop") and not rec.get("exiting"):
        return float(rec["stop"])
    return None


# -- tests ------------------------------------------------------------------------------------------------
def test_reference_indicators_agree_with_talib() -> None:
    s = load("bittrex_ETH-BTC_5m.csv")
    for period in (12, 26):
        ours, theirs = ref_ema(s.c, period), talib.EMA(s.c, timeperiod=period)
        assert np.array_equal(np.isnan(ours), np.isnan(theirs))
        valid = ~np.isnan(theirs)
        assert np.max(np.abs(ours[valid] - theirs[valid]) / np.abs(theirs[valid])) < 1e-9
    ours, theirs = ref_atr(s.h, s.l, s.c, 14), talib.ATR(s.h, s.l, s.c, timeperiod=14)
    valid = ~np.isnan(theirs)
    assert np.array_equal(np.isnan(ours), ~valid)
    assert np.max(np.abs(ours[valid] - theirs[valid]) / theirs[valid]) < 1e-9
    ours, theirs = ref_adx(s.h, s.l, s.c, 14), talib.ADX(s.h, s.l, s.c, timeperiod=14)
    valid = ~np.isnan(theirs)
    assert np.array_equal(np.isnan(ours), ~valid)
    assert np.max(np.abs(ours[valid] - theirs[valid]) / theirs[valid]) < 1e-9


@pytest.mark.parametrize("name", sorted(MARKETS))
def test_trades_exactly_as_the_rules_say_on_real_data(name: str) -> None:
    strategy, ctx, start = start_strategy(name)
    run(strategy, ctx, load(name), start)
    p = strategy.params
    got = strategy_trades(ctx)
    entries = [t for t in got if t.side == "buy"]
    exits = [t for t in got if t.side == "sell"]
    assert len(entries) >= 10 and len(exits) >= 10, "expected the strategy to trade on this series"
    assert {t.reason for t in exits} == {"stop", "cross_down"}, "expected both exit kinds on this series"

    # every entry bar: fast EMA crosses above slow EMA and ADX >= adx_min (independent full-history values)
    ind = ref_indicators(name, p.fast_period, p.slow_period, p.adx_period, p.atr_period)
    for t in entries:
        i = t.bar
        assert ind.fast[i - 1] <= ind.slow[i - 1] and ind.fast[i] > ind.slow[i], f"no cross up at bar {i}"
        assert ind.adx[i] >= p.adx_min, f"ADX {ind.adx[i]} < {p.adx_min} at entry bar {i}"
    # every exit: a cross down or a close at/below the stop in force before the bar
    closes = load(name).c
    for t in exits:
        i = t.bar
        if t.reason == "cross_down":
            assert ind.fast[i - 1] >= ind.slow[i - 1] and ind.fast[i] < ind.slow[i]
        else:
            assert closes[i] <= ctx.stop_before[i]
    # alternate buy/sell, never two orders at once
    assert [t.side for t in got] == ["buy", "sell"] * (len(got) // 2) + ["buy"] * (len(got) % 2)
    assert all(s.open_before == 0 for s in ctx.submitted)

    # the whole decision sequence equals the reference model's
    ref, ref_stops = reference_trades(name, p, start)
    assert got == ref
    assert ctx.stop_after.keys() == ref_stops.keys()
    assert len(ref_stops) > 100
    for i, stop in ref_stops.items():
        assert ctx.stop_after[i] == pytest.approx(stop, rel=1e-9), f"stop differs at bar {i}"


def test_entry_size_and_initial_stop() -> None:
    name = "bittrex_ETH-BTC_5m.csv"
    strategy, ctx, start = start_strategy(name, {"position_size_pct": "25"})
    run(strategy, ctx, load(name), start)
    sub = next(s for s in ctx.submitted if s.order.side is OrderSide.BUY)
    bar = load(name).bars[sub.bar]
    # the first entry spends 25 % of the whole free quote balance (1 BTC) at the signal close
    assert sub.order.qty == strategy.ctx.inst.round_qty(Decimal("1") * Decimal("25") / 100 / bar.close)
    # its stop: fill price (next open) - 2.5 * ATR(signal bar), persisted once the fill is booked
    entry_saves = [st for b, st in ctx.saved if b == sub.bar + 1]
    rec = entry_saves[0]["positions"][str(load(name).iid)]
    atr = talib.ATR(load(name).h, load(name).l, load(name).c, timeperiod=14)[sub.bar]
    fill_price = load(name).bars[sub.bar + 1].open
    assert Decimal(rec["entry"]) == fill_price
    assert float(rec["stop"]) == pytest.approx(float(fill_price) - 2.5 * atr, rel=1e-9)


def test_stop_never_decreases_and_state_saved_only_on_change() -> None:
    name = "bittrex_ETH-BTC_5m.csv"
    strategy, ctx, start = start_strategy(name)
    run(strategy, ctx, load(name), start)
    key = str(load(name).iid)
    assert ctx.saved, "nothing persisted"
    assert len(ctx.saved) < (len(load(name).bars) - start) / 2  # not every bar
    prev_state: dict | None = None
    prev_stop: Decimal | None = None
    for _, state in ctx.saved:
        assert state != prev_state, "save_state called without a change"
        prev_state = state
        rec = state["positions"].get(key)
        if rec is None or rec["entry"] is None:  # flat: a new position may start lower
            prev_stop = None
            continue
        if rec["stop"] is not None:
            stop = Decimal(rec["stop"])
            if prev_stop is not None:
                assert stop >= prev_stop
            prev_stop = stop


def test_without_trailing_the_stop_stays_at_its_initial_level() -> None:
    name = "bittrex_ETH-BTC_5m.csv"
    strategy, ctx, start = start_strategy(name, {"trailing": "false"})
    run(strategy, ctx, load(name), start)
    key = str(load(name).iid)
    stops_per_entry: dict[str, set[str]] = {}
    for _, state in ctx.saved:
        rec = state["positions"].get(key)
        if rec and rec["entry"]:
            stops_per_entry.setdefault(rec["entry_order"], set()).add(rec["stop"])
    assert len(stops_per_entry) >= 5
    assert all(len(v) == 1 for v in stops_per_entry.values())
    ref, _ = reference_trades(name, strategy.params, start)
    assert strategy_trades(ctx) == ref


def test_no_submit_while_an_order_is_open_with_slow_fills() -> None:
    name = "bittrex_ETH-BTC_5m.csv"
    strategy, ctx, start = start_strategy(name)
    ctx.fill_delay_bars = 4
    run(strategy, ctx, load(name), start)
    assert len(ctx.submitted) >= 10
    assert all(s.open_before == 0 for s in ctx.submitted)
    subs = ctx.submitted
    for a, b in zip(subs, subs[1:]):
        assert b.bar >= a.bar + ctx.fill_delay_bars  # the previous one had to fill first


@pytest.mark.parametrize("event_order", ["oms", "fill_first"])
def test_split_fills_and_event_order_do_not_change_decisions(event_order: str) -> None:
    name = "bittrex_ETH-BTC_5m.csv"
    base, base_ctx, start = start_strategy(name)
    run(base, base_ctx, load(name), start)
    strategy, ctx, start = start_strategy(name)
    ctx.split_fills = True
    ctx.event_order = event_order
    run(strategy, ctx, load(name), start)
    assert strategy_trades(ctx) == strategy_trades(base_ctx)
    assert [s.order.qty for s in ctx.submitted] == [s.order.qty for s in base_ctx.submitted]
    assert ctx.saved[-1][1] == base_ctx.saved[-1][1]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_rejected_entry_clears_pending_and_later_entries_happen(mode: str) -> None:
    name = "bittrex_ETH-BTC_5m.csv"
    strategy, ctx, start = start_strategy(name)
    if mode == "sync":
        ctx.reject_buys_sync = 2
    else:
        ctx.reject_buys_async = 2
    run(strategy, ctx, load(name), start)
    subs = ctx.submitted
    assert [s.order.side for s in subs[:2]] == [OrderSide.BUY, OrderSide.BUY]  # two rejected entries
    assert all(ctx.orders[s.order.client_order_id].status is OrderStatus.REJECTED for s in subs[:2])
    assert subs[2].order.side is OrderSide.BUY  # third entry accepted: it was not stuck
    assert ctx.orders[subs[2].order.client_order_id].status is OrderStatus.FILLED
    assert any(s.order.side is OrderSide.SELL for s in subs[3:])
    assert all(s.open_before == 0 for s in subs)
    # no position was ever booked from the rejected entries, and their markers were cleared
    rejected = {subs[0].order.client_order_id, subs[1].order.client_order_id}
    key = str(load(name).iid)
    for bar, state in ctx.saved:
        rec = state["positions"].get(key)
        if rec:
            assert rec["entry_order"] not in rejected
            if rec["pending_entry"] in rejected:
                assert bar < subs[2].bar
    assert set(strategy._pending.values()) <= {o.client_order_id for o in ctx.open_orders()}


def test_limit_entries_are_canceled_after_one_bar() -> None:
    name = "bittrex_ETH-BTC_5m.csv"
    strategy, ctx, start = start_strategy(name, {"order_type": "limit"})
    run(strategy, ctx, load(name), start)
    buys = [s for s in ctx.submitted if s.order.side is OrderSide.BUY]
    sells = [s for s in ctx.submitted if s.order.side is OrderSide.SELL]
    assert buys and sells
    assert all(s.order.type is OrderType.LIMIT and s.order.limit_price == load(name).bars[s.bar].close for s in buys)
    assert all(s.order.type is OrderType.MARKET for s in sells)
    statuses = {ctx.orders[s.order.client_order_id].status for s in buys}
    assert OrderStatus.FILLED in statuses and OrderStatus.CANCELED in statuses
    assert all(s.open_before == 0 for s in ctx.submitted)
    assert not ctx.open_orders() or ctx.open_orders()[0].created_ns >= load(name).bars[-2].close_ns


def test_restart_from_saved_state_behaves_the_same() -> None:
    name = "bittrex_ETH-BTC_5m.csv"
    series = load(name)
    key = str(series.iid)
    original, ctx, start = start_strategy(name)
    snaps: dict[int, dict] = {}
    run(original, ctx, series, start, after_bar=lambda i: snaps.__setitem__(i, ctx.snapshot()))
    # restart points: mid-trade (in position, stop set, nothing open) and flat
    def rec(i: int) -> dict:
        return snaps[i]["saved"].get("positions", {}).get(key) or {}

    in_pos = [i for i in snaps if snaps[i]["open"] == 0 and rec(i).get("entry")]
    flat = [i for i in snaps if snaps[i]["open"] == 0 and not rec(i) and i > start + 50]
    points = [in_pos[len(in_pos) // 3], in_pos[2 * len(in_pos) // 3], flat[len(flat) // 2]]
    for k in points:
        snap = snaps[k]
        new_ctx = FakeContext(instrument_for(name))
        new_ctx.balances = dict(snap["balances"])
        new_ctx.positions = dict(snap["positions"])
        new_ctx._seq = 10_000
        new_ctx.saved = [(k, copy.deepcopy(snap["saved"]))]  # what the database holds
        restarted, new_ctx, first = start_strategy(name, state=copy.deepcopy(snap["saved"]), ctx=new_ctx, upto=k + 1)
        assert len(restarted.buffers[series.iid]) == restarted.warmup_bars()
        run(restarted, new_ctx, series, first)
        expected = [t for t in strategy_trades(ctx) if t.bar > k]
        assert strategy_trades(new_ctx) == expected, f"restart at bar {k} diverged"
        assert [s.order.qty for s in new_ctx.submitted] == [s.order.qty for s in ctx.submitted if s.bar > k]
        a = {i: v for i, v in ctx.stop_after.items() if i > k}
        assert a.keys() == new_ctx.stop_after.keys()
        for i in a:
            assert new_ctx.stop_after[i] == pytest.approx(a[i], rel=1e-9)


def test_on_start_clears_a_position_that_is_gone() -> None:
    name = "bittrex_ETH-BTC_5m.csv"
    key = str(load(name).iid)
    state = {"version": 1, "positions": {key: {"entry": "0.09", "entry_qty": "1", "entry_order": "X",
                                              "stop": "0.085", "exiting": False}}}
    strategy, ctx, _ = start_strategy(name, state=state)  # the fake account holds no ETH
    assert ctx.saved and ctx.saved[-1][1]["positions"] == {}


def test_restored_position_exits_on_stop_breach() -> None:
    name = "bittrex_ETH-BTC_5m.csv"
    series = load(name)
    key = str(series.iid)
    inst = instrument_for(name)
    k = 1000
    close = series.bars[k].close
    ctx = FakeContext(inst)
    ctx.balances[inst.base] = Decimal("2")
    fill = Fill("f", "X", series.iid, OrderSide.BUY, Decimal("2"), close, ZERO, "BTC", Liquidity.TAKER, 0)
    ctx.positions[series.iid] = Position(series.iid, "BTC").apply(fill)
    state = {"version": 1, "positions": {key: {"entry": str(close), "entry_qty": "2", "entry_order": "X",
                                              "stop": str(close * 2), "exiting": False}}}
    strategy, ctx, first = start_strategy(name, state=state, ctx=ctx, upto=k)
    assert not ctx.saved  # still in position: nothing to change at start
    run(strategy, ctx, series, first, first + 3)
    sub = ctx.submitted[0]
    assert sub.bar == k and sub.order.side is OrderSide.SELL and sub.order.qty == Decimal("2")
    assert ctx.saved[0][1]["positions"][key]["exiting"] is True
    assert ctx.saved[-1][1]["positions"] == {}  # closed once the sell filled


def test_malformed_state_is_refused() -> None:
    name = "bittrex_ETH-BTC_5m.csv"
    key = str(load(name).iid)
    with pytest.raises(ValidationError) as exc:
        start_strategy(name, state={"version": 1, "positions": {key: {"entry": "abc"}}})
    assert exc.value.field == f"state.positions[{key}].entry"
    with pytest.raises(ValidationError):
        start_strategy(name, state={"version": 99, "positions": {}})


# -- params ---------------------------------------------------------------------------------------------
def test_params_accept_api_strings() -> None:
    p = TrendMomentum.Params.model_validate({
        "fast_period": "8", "slow_period": "21", "adx_period": "10", "adx_min": "20.5", "atr_period": "7",
        "atr_stop_mult": "3", "trailing": "false", "position_size_pct": "12.5", "order_type": "limit",
    })
    assert (p.fast_period, p.slow_period, p.adx_period, p.atr_period) == (8, 21, 10, 7)
    assert p.adx_min == 20.5 and p.atr_stop_mult == 3.0 and p.trailing is False
    assert p.position_size_pct == Decimal("12.5") and p.order_type == "limit"
    d = TrendMomentum.Params()
    assert (d.fast_period, d.slow_period, d.adx_period, d.adx_min, d.atr_period, d.atr_stop_mult, d.trailing,
            d.position_size_pct, d.order_type) == (12, 26, 14, 25.0, 14, 2.5, True, Decimal("10"), "market")


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"fast_period": "26", "slow_period": "26"}, "slow_period"),
        ({"fast_period": "30"}, "slow_period"),
        ({"position_size_pct": "-5"}, "position_size_pct"),
        ({"position_size_pct": "0"}, "position_size_pct"),
        ({"position_size_pct": "101"}, "position_size_pct"),
        ({"position_size_pct": "NaN"}, "position_size_pct"),
        ({"adx_min": "inf"}, "adx_min"),
        ({"atr_stop_mult": "0"}, "atr_stop_mult"),
        ({"fast_period": "1"}, "fast_period"),
        ({"order_type": "stop"}, "order_type"),
        ({"unknown": "1"}, "unknown"),
    ],
)
def test_invalid_params_name_the_field(raw: dict, field: str) -> None:
    with pytest.raises(pydantic.ValidationError) as exc:
        TrendMomentum.Params.model_validate(raw)
    assert field in [err["loc"][0] for err in exc.value.errors()]
    with pytest.raises(ValidationError) as exc2:
        registry.parse_params(TrendMomentum, raw)
    assert exc2.value.field == f"params.{field}"


def test_slow_not_above_fast_message_is_clear() -> None:
    with pytest.raises(pydantic.ValidationError) as exc:
        TrendMomentum.Params(fast_period=20, slow_period=10)
    assert "slow_period must be greater than fast_period" in str(exc.value)


def test_warmup_covers_the_slowest_indicator() -> None:
    s = TrendMomentum(FakeContext(instrument_for("bittrex_ETH-BTC_5m.csv")), [load("bittrex_ETH-BTC_5m.csv").iid],
                      TrendMomentum.Params(), {})
    assert s.lookback_bars() == 28
    assert s.warmup_bars() >= 2 * 14 + 10 * 14
    assert s.buffer_capacity() >= s.warmup_bars()
    p = TrendMomentum.Params(fast_period=50, slow_period=200, adx_period=30, atr_period=60)
    s2 = TrendMomentum(s.ctx, s.instruments, p, {})
    assert s2.warmup_bars() > 201 and s2.lookback_bars() == 201
    # talib has a value for every indicator at the end of a warm buffer
    c = load("bittrex_ETH-BTC_5m.csv")
    n = s.lookback_bars()
    assert not math.isnan(talib.ADX(c.h[:n], c.l[:n], c.c[:n], 14)[-1])
    assert not math.isnan(talib.EMA(c.c[:n], 26)[-2])


# -- registry -------------------------------------------------------------------------------------------
def test_registry() -> None:
    assert registry.get_type("trend_momentum") is TrendMomentum
    assert registry.STRATEGY_TYPES["trend_momentum"] is TrendMomentum
    with pytest.raises(NotFoundError) as exc:
        registry.get_type("nope")
    assert "trend_momentum" in str(exc.value)
    described = registry.describe_params(TrendMomentum)
    names = [d[0] for d in described]
    assert names == list(TrendMomentum.Params.model_fields)
    by_name = {d.name: d for d in described}
    assert by_name["slow_period"][1:3] == ("int", "26")
    assert by_name["position_size_pct"][1:3] == ("decimal", "10")
    assert by_name["trailing"][1:3] == ("bool", "true")
    assert by_name["order_type"][1:3] == ("enum(market|limit)", "market")
    assert all(d.description for d in described)
    # every rendered default is accepted back as an API string
    TrendMomentum.Params.model_validate({d.name: d.default for d in described})


def test_params_mapping_is_validated_by_the_constructor() -> None:
    name = "bittrex_ETH-BTC_5m.csv"
    s = TrendMomentum(FakeContext(instrument_for(name)), [load(name).iid], {"fast_period": "5", "slow_period": "9"}, {})
    assert s.params.fast_period == 5
    with pytest.raises(pydantic.ValidationError):
        TrendMomentum(s.ctx, s.instruments, {"slow_period": "3"}, {})


def test_entry_below_venue_minimums_is_skipped_not_raised() -> None:
    name = "bittrex_ETH-BTC_5m.csv"
    inst = instrument_for(name)
    ctx = FakeContext(inst, quote_balance=Decimal("0.0005"))  # 10 % = 0.00005 BTC < min_notional 0.0001
    strategy, ctx, start = start_strategy(name, ctx=ctx)
    run(strategy, ctx, load(name), start)
    assert ctx.submitted == []
    assert any(m == "entry signal ignored: size below the venue minimums" for _, m, _ in ctx.logs)


def test_on_start_adopts_an_entry_that_filled_while_stopped() -> None:
    name = "bittrex_ETH-BTC_5m.csv"
    series = load(name)
    key = str(series.iid)
    inst = instrument_for(name)
    k = 2000
    ctx = FakeContext(inst)
    price = series.bars[k - 1].open
    fill = Fill("f", "T-7", series.iid, OrderSide.BUY, Decimal("1.5"), price, ZERO, "BTC", Liquidity.TAKER, 0)
    ctx.positions[series.iid] = Position(series.iid, "BTC").apply(fill)
    ctx.balances[inst.base] = Decimal("1.5")
    state = {"version": 1, "positions": {key: {"entry": None, "entry_qty": "0", "entry_order": "", "stop": None,
                                              "exiting": False, "pending_entry": "T-7"}}}
    strategy, ctx, _ = start_strategy(name, state=state, ctx=ctx, upto=k)
    rec = ctx.saved[-1][1]["positions"][key]
    assert Decimal(rec["entry"]) == price and Decimal(rec["entry_qty"]) == Decimal("1.5")
    assert rec["entry_order"] == "T-7" and rec["pending_entry"] == ""
    atr = talib.ATR(series.h[:k], series.l[:k], series.c[:k], timeperiod=14)[-1]
    assert float(rec["stop"]) == pytest.approx(float(price) - 2.5 * atr, rel=1e-9)
    # and without a position the marker is simply dropped
    strategy2, ctx2, _ = start_strategy(name, state=state, upto=k)
    assert ctx2.saved[-1][1]["positions"] == {}


def test_entry_marker_is_persisted_while_the_entry_works() -> None:
    name = "bittrex_ETH-BTC_5m.csv"
    strategy, ctx, start = start_strategy(name)
    ctx.fill_delay_bars = 2
    run(strategy, ctx, load(name), start)
    key = str(load(name).iid)
    first_buy = next(s for s in ctx.submitted if s.order.side is OrderSide.BUY)
    marker = [st for b, st in ctx.saved if b == first_buy.bar]
    assert marker and marker[-1]["positions"][key]["pending_entry"] == first_buy.order.client_order_id
    booked = [st for b, st in ctx.saved if b == first_buy.bar + 2][0]["positions"][key]
    assert booked["pending_entry"] == "" and booked["entry_order"] == first_buy.order.client_order_id


def test_duplicate_terminal_event_does_not_reopen_a_closed_position() -> None:
    name = "bittrex_ETH-BTC_5m.csv"
    strategy, ctx, start = start_strategy(name)
    run(strategy, ctx, load(name), start)
    key = str(load(name).iid)
    first_buy = next(s for s in ctx.submitted if s.order.side is OrderSide.BUY)
    final = ctx.orders[first_buy.order.client_order_id]
    assert final.status is OrderStatus.FILLED
    before = ctx.saved[-1][1]["positions"].get(key)
    strategy.on_order_event(final)  # a late duplicate of an entry that was exited long ago
    after = ctx.saved[-1][1]["positions"].get(key)
    assert before == after
