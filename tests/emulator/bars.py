"""Synthetic 1-second bar series for live-data tests (the emulator serves them as klines)."""

from __future__ import annotations

from decimal import Decimal

TF_MS = 1_000


class Prices:
    """1-second candles of one symbol: falling by ``down`` a bar until ``turn_ms``, then rising by
    ``up`` a bar; open = previous close, so every bar's open is known from the rows."""

    def __init__(self, start_ms: int, end_ms: int, price: Decimal, down: Decimal, up: Decimal, turn_ms: int) -> None:
        self.rows = []
        close = price
        for ts in range(start_ms, end_ms, TF_MS):
            open_ = close
            close = open_ + (up if ts >= turn_ms else -down)
            self.rows.append((ts, str(open_), str(max(open_, close) + 1), str(min(open_, close) - 1), str(close), "100"))
        self.by_open = {r[0]: r for r in self.rows}

    def open_at(self, ts_ms: int) -> Decimal:
        return Decimal(self.by_open[ts_ms][1])

    def close_at(self, ts_ms: int) -> Decimal:
        return Decimal(self.by_open[ts_ms][4])
