"""Instruments: what can be traded on a venue, with its precision and minimums."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from appliance.model.errors import ValidationError
from appliance.model.money import ZERO, round_to_step


@dataclass(frozen=True, slots=True)
class InstrumentId:
    """A venue-qualified symbol in ccxt notation, e.g. ``InstrumentId("paper", "ADA/BTC")``."""

    venue: str
    symbol: str

    def __str__(self) -> str:
        return f"{self.symbol}@{self.venue}"

    @classmethod
    def parse(cls, text: str, default_venue: str | None = None, field: str = "instrument") -> "InstrumentId":
        """Parse ``"ADA/BTC@paper"`` (or ``"ADA/BTC"`` when ``default_venue`` is given).

        Raises:
            ValidationError: malformed text.
        """
        symbol, sep, venue = text.strip().partition("@")
        if not sep:
            if default_venue is None:
                raise ValidationError(field, f"{text!r} must be SYMBOL@VENUE, e.g. ADA/BTC@paper")
            venue = default_venue
        if "/" not in symbol or not venue:
            raise ValidationError(field, f"{text!r} must be SYMBOL@VENUE with SYMBOL like BASE/QUOTE")
        return cls(venue=venue, symbol=symbol)


@dataclass(frozen=True, slots=True)
class Instrument:
    """A spot instrument on a venue.

    Attributes:
        id: venue + symbol.
        base, quote: asset codes; prices are quote per 1 base.
        price_tick: smallest price increment (quote).
        qty_step: smallest quantity increment (base).
        min_qty: smallest order quantity (base).
        min_notional: smallest order value, qty * price (quote).
        maker_fee_bps, taker_fee_bps: fees charged in the quote asset.
    """

    id: InstrumentId
    base: str
    quote: str
    price_tick: Decimal
    qty_step: Decimal
    min_qty: Decimal = ZERO
    min_notional: Decimal = ZERO
    maker_fee_bps: Decimal = ZERO
    taker_fee_bps: Decimal = ZERO

    def round_price(self, price: Decimal, side: str | None = None) -> Decimal:
        """Round a price to the tick; passive direction when ``side`` is given (buy down, sell up)."""
        mode = "nearest" if side is None else ("down" if side == "buy" else "up")
        return round_to_step(price, self.price_tick, mode)

    def round_qty(self, qty: Decimal) -> Decimal:
        """Round a quantity down to the lot step (never trade more than asked)."""
        return round_to_step(qty, self.qty_step, "down")

    def check_order_size(self, qty: Decimal, price: Decimal) -> None:
        """Check venue minimums for an already-rounded order.

        Raises:
            ValidationError: ``qty`` below ``min_qty`` or ``qty*price`` below ``min_notional``.
        """
        if qty <= 0:
            raise ValidationError("qty", f"rounds to 0 at lot step {self.qty_step}")
        if qty < self.min_qty:
            raise ValidationError("qty", f"{qty} is below the minimum quantity {self.min_qty} of {self.id}")
        notional = qty * price
        if notional < self.min_notional:
            raise ValidationError(
                "qty", f"notional {notional} {self.quote} is below the minimum {self.min_notional} of {self.id}"
            )
