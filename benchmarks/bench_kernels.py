"""Benchmark: signal kernels and the TrendMomentum on_bar hot path on real candles.

Run: ``.venv/bin/python benchmarks/bench_kernels.py [--bars N]``. Prints one line per figure with
its target; never fails on a missed target (machines are shared and noisy): read the figures.

Figures:
* ``kernels.warm_up``: compilation (first run) or numba cache load (later runs, with
  ``NUMBA_CACHE_DIR`` or the in-tree ``__pycache__``) of every kernel.
* per-call cost of the kernels on a 512-bar buffer;
* the hot path per bar per instrument on a sliding 512-bar buffer: TA-Lib EMA x2, ADX, ATR +
  cross_signal, trend_filter, trailing_stop (the worst case: every indicator every bar);
* ``TrendMomentum.on_bar`` end to end per bar (its own buffer capacity, a stub context that
  rejects orders so the strategy keeps evaluating).

Data: ``$LYRA_SHARED_DATA/candles/bittrex_ETH-BTC_5m.csv`` (default ``<repo>/../shared/data``).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import talib  # noqa: E402

BUFFER_BARS = 512


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    target: float  # the figure should be below this
    note: str = ""

    def line(self) -> str:
        status = "ok" if self.value <= self.target else "ABOVE TARGET"
        return f"{self.name:<58} {self.value:>10.2f} {self.unit:<4} target < {self.target:g} {self.unit:<4} {status}  {self.note}"


def _data_file() -> Path:
    root = Path(os.environ.get("LYRA_SHARED_DATA", REPO.parent / "shared" / "data"))
    path = root / "candles" / "bittrex_ETH-BTC_5m.csv"
    if not path.is_file():
        raise SystemExit(f"{path} not found: set LYRA_SHARED_DATA to the shared data folder")
    return path


def _load_rows() -> list[dict[str, str]]:
    with open(_data_file(), newline="") as fh:
        return list(csv.DictReader(fh))


def _per_call_us(fn: Callable[[], Any], repeat: int) -> float:
    """Median over 5 runs of the mean time of ``repeat`` calls, in microseconds."""
    samples = []
    for _ in range(5):
        t0 = time.perf_counter_ns()
        for _ in range(repeat):
            fn()
        samples.append((time.perf_counter_ns() - t0) / repeat / 1e3)
    return statistics.median(samples)


def run(bars: int = 3000) -> list[Figure]:
    from appliance import kernels
    from appliance.kernels import cross_signal, trailing_stop, trend_filter
    from appliance.marketdata.bar import Bar
    from appliance.model.instrument import Instrument, InstrumentId
    from appliance.model.order import Order, OrderStatus
    from appliance.model.position import Position
    from appliance.strategies.base import BarBuffer
    from appliance.strategies.trend_momentum import TrendMomentum

    figures: list[Figure] = []
    t0 = time.perf_counter_ns()
    kernels.warm_up()
    figures.append(Figure("kernels.warm_up (compile or cache load)", (time.perf_counter_ns() - t0) / 1e9, "s", 5.0,
                          "cold compile; a cache hit should be well under 1 s"))

    rows = _load_rows()
    iid = InstrumentId("paper", "ETH/BTC")
    ns5m = 300 * 10**9
    all_bars = [
        Bar(iid, int(r["timestamp_ms"]) * 10**6, int(r["timestamp_ms"]) * 10**6 + ns5m, Decimal(r["open"]),
            Decimal(r["high"]), Decimal(r["low"]), Decimal(r["close"]), Decimal(r["volume"] or "0"))
        for r in rows
    ]
    n = min(bars, len(all_bars) - BUFFER_BARS)

    # -- kernels alone on a full 512-bar buffer ---------------------------------------------------
    buf = BarBuffer(BUFFER_BARS)
    for bar in all_bars[:BUFFER_BARS]:
        buf.append_bar(bar)
    fast = talib.EMA(buf.close, timeperiod=12)
    slow = talib.EMA(buf.close, timeperiod=26)
    adx = talib.ADX(buf.high, buf.low, buf.close, timeperiod=14)
    atr = talib.ATR(buf.high, buf.low, buf.close, timeperiod=14)
    c_last, a_last = float(buf.close[-1]), float(atr[-1])
    figures.append(Figure("cross_signal per call", _per_call_us(lambda: cross_signal(fast, slow), 20000), "us", 2.0))
    figures.append(Figure("trend_filter per call", _per_call_us(lambda: trend_filter(adx, 25.0), 20000), "us", 2.0))
    figures.append(Figure("trailing_stop per call", _per_call_us(lambda: trailing_stop(0.08, c_last, a_last, 2.5), 20000), "us", 2.0))
    figures.append(Figure("talib EMA(26) on 512 bars", _per_call_us(lambda: talib.EMA(buf.close, timeperiod=26), 2000), "us", 50.0))
    figures.append(Figure("talib ADX(14) on 512 bars", _per_call_us(lambda: talib.ADX(buf.high, buf.low, buf.close, timeperiod=14), 2000), "us", 50.0))
    figures.append(Figure("talib ATR(14) on 512 bars", _per_call_us(lambda: talib.ATR(buf.high, buf.low, buf.close, timeperiod=14), 2000), "us", 50.0))

    # -- hot path per bar, sliding buffer, worst case (every indicator every bar) -------------------
    per_bar = []
    stop = float("nan")
    for bar in all_bars[BUFFER_BARS : BUFFER_BARS + n]:
        t0 = time.perf_counter_ns()
        buf.append_bar(bar)
        close = buf.close
        f = talib.EMA(close, timeperiod=12)
        s = talib.EMA(close, timeperiod=26)
        cross = cross_signal(f, s)
        a = talib.ADX(buf.high, buf.low, close, timeperiod=14)
        ok = trend_filter(a, 25.0)
        r = talib.ATR(buf.high, buf.low, close, timeperiod=14)
        stop = trailing_stop(stop, float(close[-1]), float(r[-1]), 2.5)
        per_bar.append((time.perf_counter_ns() - t0) / 1e3)
        del cross, ok
    per_bar.sort()
    figures.append(Figure(f"hot path per bar, {BUFFER_BARS}-bar buffer (median)", statistics.median(per_bar), "us", 200.0,
                          "EMA x2 + ADX + ATR + 3 kernels, per instrument"))
    figures.append(Figure(f"hot path per bar, {BUFFER_BARS}-bar buffer (p99)", per_bar[int(0.99 * (len(per_bar) - 1))], "us", 400.0))

    # -- the strategy end to end ---------------------------------------------------------------------
    inst = Instrument(iid, "ETH", "BTC", Decimal("0.000001"), Decimal("0.001"), Decimal("0.001"), Decimal("0.0001"))

    class RejectingContext:
        strategy_id = "bench"

        def __init__(self) -> None:
            self.now = 0

        def now_ns(self) -> int:
            return self.now

        def instrument(self, instrument_id: InstrumentId) -> Instrument:
            return inst

        def submit_order(self, instrument_id, side, qty, type=None, limit_price=None) -> Order:
            return Order("b", instrument_id, side, type, qty, limit_price, OrderStatus.REJECTED, self.now, self.now,
                         reject_rule="bench")

        def cancel_order(self, client_order_id: str) -> None:
            pass

        def open_orders(self, instrument_id=None) -> list:
            return []

        def position(self, instrument_id: InstrumentId) -> Position:
            return Position(instrument_id, "BTC")

        def free_balance(self, asset: str, venue: str) -> Decimal:
            return Decimal("1") if asset == "BTC" else Decimal("0")

        def save_state(self, state: dict) -> None:
            pass

        def log(self, message: str, **fields: Any) -> None:
            pass

    ctx = RejectingContext()
    strategy = TrendMomentum(ctx, [iid], TrendMomentum.Params(), {})
    sbuf = strategy.buffers[iid]
    start = BUFFER_BARS
    for bar in all_bars[start - strategy.warmup_bars() : start]:
        sbuf.append_bar(bar)
    strategy.on_start()
    per_bar = []
    for bar in all_bars[start : start + n]:
        ctx.now = bar.close_ns
        t0 = time.perf_counter_ns()
        sbuf.append_bar(bar)
        strategy.on_bar(bar, sbuf)
        per_bar.append((time.perf_counter_ns() - t0) / 1e3)
    per_bar.sort()
    figures.append(Figure(f"TrendMomentum.on_bar per bar, flat ({strategy.buffer_capacity()}-bar buffer, median)",
                          statistics.median(per_bar), "us", 200.0))
    figures.append(Figure(f"TrendMomentum.on_bar per bar, flat ({strategy.buffer_capacity()}-bar buffer, p99)",
                          per_bar[int(0.99 * (len(per_bar) - 1))], "us", 400.0))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=3000, help="bars to time on the sliding buffer")
    args = parser.parse_args(argv)
    print(f"{'figure':<58} {'value':>10}      target")
    for fig in run(args.bars):
        print(fig.line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
