"""Bars (candles) as the engine sees them."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from appliance.model.instrument import InstrumentId


@dataclass(frozen=True, slots=True)
class Bar:
    """One OHLCV candle.

    Attributes:
        instrument: venue + symbol.
        open_ns: bar open time (ns since epoch, UTC).
        close_ns: bar close time = open_ns + timeframe; a bar is known only from then on.
        open, high, low, close: prices (quote per base), exact decimals of the source file.
        volume: traded quantity during the bar (base units; may be 0 when the source has none).
    """

    instrument: InstrumentId
    open_ns: int
    close_ns: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass(frozen=True, slots=True)
class BarSlice:
    """All bars that close at the same instant, handled as one engine message (one transaction)."""

    close_ns: int
    bars: tuple[Bar, ...]
