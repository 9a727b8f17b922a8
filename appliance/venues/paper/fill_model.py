"""Fill models for the paper venue: when, how much and at what price a simulated order fills.

Only candles (OHLCV) are available, not the order book or the sequence of trades inside a bar,
so the model must not assume anything the bar does not prove. :class:`CandleFillModel` follows
the conservative conventions of the common candle backtesters:

* No look-ahead. An order accepted at time ``t`` may only trade on bars that OPEN at or after
  ``t``; it never trades on the bar whose close triggered the decision (Backtrader's default
  broker executes a market order at the NEXT bar's open; Freqtrade enters at the open of the
  candle after the signal).
* A resting limit order fills only when the bar trades THROUGH its price: a buy needs
  ``low < limit``, a sell ``high > limit``. Touching the price (``low == limit``) is not enough,
  because the order may have been behind others in the queue at that level (Freqtrade checks
  that the candle range includes the limit price; requiring a strict cross is the stricter,
  queue-aware variant used by many simulators). It fills at the limit price, as maker.
* A limit order that is already marketable on arrival (on its first eligible bar, buy
  ``open <= limit`` / sell ``open >= limit``) crosses the spread: it fills at the open (with
  slippage, but never worse than the limit), as taker -- like Backtrader's limit order that
  executes at the open when the bar opens beyond the limit.
* Market orders fill at the eligible bar's open adjusted by ``slippage_bps`` against the trader
  (buys pay more, sells receive less), as taker.
* Liquidity: one order may take at most ``max_participation`` of the bar's volume per bar
  (default 10 %); the rest carries over to the next bars (market: at their open; limit: as a
  resting order). A bar with volume 0 means the source had no volume figure (an empty cell in
  the file is read as 0), so no cap is applied to it. ``max_participation=None`` disables the cap.

All arithmetic is Decimal. Prices are quote per base, quantities base units.
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from typing import NamedTuple

from appliance.marketdata.bar import Bar
from appliance.model.errors import ValidationError
from appliance.model.fill import Liquidity
from appliance.model.money import BPS, ONE, ZERO, round_to_step
from appliance.model.order import OrderSide, OrderType


class FillDecision(NamedTuple):
    """What one bar did to one order: ``qty`` (base, > 0) at ``price`` (quote per base)."""

    qty: Decimal
    price: Decimal
    liquidity: Liquidity


class CandleFillModel:
    """Conservative candle-based fill model (see the module docstring for the rules and sources).

    Args:
        slippage_bps: adverse price adjustment of taker fills at the open, in basis points (>= 0).
        max_participation: largest fraction of a bar's volume one order may fill in that bar,
            in ``(0, 1]``; ``None`` = no cap. A bar with volume 0 is never capped.
        qty_step: lot step the per-bar quantity is rounded DOWN to; ``None`` = use the step
            passed to :meth:`match` (the venue passes the instrument's), or no rounding.

    Raises:
        ValidationError: a parameter is out of range (field names the parameter).
    """

    def __init__(
        self,
        slippage_bps: Decimal = ZERO,
        max_participation: Decimal | None = Decimal("0.1"),
        qty_step: Decimal | None = None,
    ) -> None:
        for name, value in (("slippage_bps", slippage_bps), ("max_participation", max_participation), ("qty_step", qty_step)):
            if value is not None and not isinstance(value, Decimal):
                raise ValidationError(name, f"must be a Decimal, not {type(value).__name__}")
        if slippage_bps < 0:
            raise ValidationError("slippage_bps", f"must be >= 0, got {slippage_bps}")
        if max_participation is not None and not ZERO < max_participation <= ONE:
            raise ValidationError("max_participation", f"must be in (0, 1], got {max_participation}")
        if qty_step is not None and qty_step <= 0:
            raise ValidationError("qty_step", f"must be > 0, got {qty_step}")
        self.slippage_bps = slippage_bps
        self.max_participation = max_participation
        self.qty_step = qty_step

    @staticmethod
    def is_eligible(accepted_ns: int, bar: Bar) -> bool:
        """True if an order accepted at ``accepted_ns`` may trade on ``bar`` (``bar.open_ns >= accepted_ns``)."""
        return bar.open_ns >= accepted_ns

    def bar_capacity(self, bar: Bar, qty_step: Decimal | None = None) -> Decimal | None:
        """Most quantity one order may fill in ``bar``: ``round_down(volume * max_participation, step)``.

        Returns ``None`` when there is no cap (cap disabled or ``bar.volume == 0``).
        """
        if self.max_participation is None or bar.volume == 0:
            return None
        with localcontext() as ctx:
            ctx.prec = 40
            cap = bar.volume * self.max_participation
        step = qty_step if qty_step is not None else self.qty_step
        return round_to_step(cap, step, "down") if step is not None else cap

    def taker_price(self, side: OrderSide, open_price: Decimal, price_tick: Decimal | None = None) -> Decimal:
        """Open price moved by the slippage against the trader, rounded to ``price_tick`` against
        the trader too (buy up, sell down) when a tick is given."""
        with localcontext() as ctx:
            ctx.prec = 40
            factor = self.slippage_bps / BPS
            price = open_price * (ONE + factor) if side is OrderSide.BUY else open_price * (ONE - factor)
        if price_tick is not None:
            price = round_to_step(price, price_tick, "up" if side is OrderSide.BUY else "down")
        return price

    def match(
        self,
        *,
        side: OrderSide,
        order_type: OrderType,
        leaves_qty: Decimal,
        limit_price: Decimal | None,
        accepted_ns: int,
        bar: Bar,
        first_eligible: bool,
        qty_step: Decimal | None = None,
        price_tick: Decimal | None = None,
    ) -> FillDecision | None:
        """Decide whether ``bar`` fills (part of) an order.

        Args:
            side, order_type: of the order.
            leaves_qty: quantity still working (base, > 0).
            limit_price: the limit (quote per base) for limit orders; ignored for market orders.
            accepted_ns: when the venue accepted the order (ns, UTC).
            bar: a bar of the order's instrument.
            first_eligible: True if ``bar`` is the first eligible bar the order meets (decides
                whether a limit order was marketable on arrival); the caller keeps track.
            qty_step: lot step for rounding the participation cap down (overrides the model's).
            price_tick: tick for rounding slipped taker prices (against the trader); ``None`` = exact.

        Returns:
            ``None`` (no fill on this bar) or ``FillDecision(qty, price, liquidity)``.

        Raises:
            ValidationError: ``leaves_qty`` not positive, or a limit order without a positive limit.
        """
        if leaves_qty <= 0:
            raise ValidationError("leaves_qty", f"must be > 0, got {leaves_qty}")
        if not self.is_eligible(accepted_ns, bar):
            return None
        if order_type is OrderType.MARKET:
            price = self.taker_price(side, bar.open, price_tick)
            liquidity = Liquidity.TAKER
        else:
            if limit_price is None or limit_price <= 0:
                raise ValidationError("limit_price", f"limit order needs a positive limit price, got {limit_price}")
            buy = side is OrderSide.BUY
            marketable = bar.open <= limit_price if buy else bar.open >= limit_price
            if first_eligible and marketable:
                taker = self.taker_price(side, bar.open, price_tick)
                price = min(taker, limit_price) if buy else max(taker, limit_price)
                liquidity = Liquidity.TAKER
            elif (bar.low < limit_price) if buy else (bar.high > limit_price):
                price = limit_price
                liquidity = Liquidity.MAKER
            else:
                return None
        cap = self.bar_capacity(bar, qty_step)
        qty = leaves_qty if cap is None else min(leaves_qty, cap)
        if qty <= 0:
            return None
        return FillDecision(qty, price, liquidity)
