"""Positions and balances under average-cost accounting. Pure functions of fills.

Average cost (weighted average price, WAC), as used by most exchanges' position screens:
adding to a position re-averages the entry price (rounded to 18 decimals); reducing realizes
``closed_qty * (exit_price - avg_price) * direction``; a reduction past zero opens the other
side at the fill price. Fees are kept apart from realized PnL so both can be shown; the net
figure is ``realized_pnl - fees`` when fees are charged in the quote asset.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Iterable, Mapping

from appliance.model.fill import Fill
from appliance.model.instrument import InstrumentId
from appliance.model.money import AVG_PRICE_QUANTUM, ZERO


@dataclass(frozen=True, slots=True)
class Position:
    """A net position in one instrument.

    Attributes:
        instrument: venue + symbol.
        qty: signed quantity in base units (> 0 long, < 0 short).
        avg_price: average entry price (quote per base); 0 when flat.
        realized_pnl: realized PnL before fees (quote).
        fees: fees paid on this instrument's fills (quote).
        quote: the quote asset the PnL is in.
    """

    instrument: InstrumentId
    quote: str
    qty: Decimal = ZERO
    avg_price: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    fees: Decimal = ZERO

    def unrealized_pnl(self, mark_price: Decimal) -> Decimal:
        """Mark-to-market PnL of the open quantity at ``mark_price`` (quote)."""
        return self.qty * (mark_price - self.avg_price)

    def notional(self, mark_price: Decimal) -> Decimal:
        """Absolute value of the position at ``mark_price`` (quote)."""
        return abs(self.qty) * mark_price

    def apply(self, fill: Fill) -> "Position":
        """Return the position after ``fill`` (see the module docstring for the rules)."""
        d = fill.qty * fill.side.sign
        q, a, p = self.qty, self.avg_price, fill.price
        realized = self.realized_pnl
        if q == 0 or (q > 0) == (d > 0):
            new_q = q + d
            new_a = ((a * abs(q) + p * abs(d)) / abs(new_q)).quantize(AVG_PRICE_QUANTUM)
        else:
            closed = min(abs(d), abs(q))
            direction = 1 if q > 0 else -1
            realized += closed * (p - a) * direction
            new_q = q + d
            if new_q == 0:
                new_a = ZERO
            elif (new_q > 0) != (q > 0):
                new_a = p
            else:
                new_a = a
        fees = self.fees + (fill.fee if fill.fee_asset == self.quote else ZERO)
        return replace(self, qty=new_q, avg_price=new_a, realized_pnl=realized, fees=fees)


AccountAsset = tuple[str, str]
"""(venue, asset): balances are per venue account; the same asset may sit on several venues."""


def apply_fill_to_balances(balances: dict[AccountAsset, Decimal], fill: Fill, base: str, quote: str) -> None:
    """Apply a spot fill to ``balances`` ((venue, asset) -> total amount) in place.

    A buy adds ``qty`` base and removes ``qty*price`` quote on the fill's venue; a sell does the
    reverse; the fee is taken from ``fee_asset`` on that venue.
    """
    venue = fill.instrument.venue
    sign = fill.side.sign
    balances[(venue, base)] = balances.get((venue, base), ZERO) + sign * fill.qty
    balances[(venue, quote)] = balances.get((venue, quote), ZERO) - sign * fill.qty * fill.price
    if fill.fee:
        balances[(venue, fill.fee_asset)] = balances.get((venue, fill.fee_asset), ZERO) - fill.fee


def recompute_from_fills(
    starting_balances: Mapping[AccountAsset, Decimal],
    fills: Iterable[Fill],
    assets_of: Mapping[InstrumentId, tuple[str, str]],
) -> tuple[dict[AccountAsset, Decimal], dict[InstrumentId, Position]]:
    """Rebuild balances and positions from the starting balances and the fills alone.

    Args:
        starting_balances: (venue, asset) -> amount before any fill.
        fills: every fill, in execution order.
        assets_of: instrument -> (base, quote).

    Returns:
        (balances, positions) exactly as the live portfolio must hold them.
    """
    balances = dict(starting_balances)
    positions: dict[InstrumentId, Position] = {}
    for fill in fills:
        base, quote = assets_of[fill.instrument]
        apply_fill_to_balances(balances, fill, base, quote)
        pos = positions.get(fill.instrument) or Position(fill.instrument, quote)
        positions[fill.instrument] = pos.apply(fill)
    return balances, positions


def convert(amount: Decimal, asset: str, target: str, prices: Mapping[tuple[str, str], Decimal]) -> Decimal | None:
    """Value ``amount`` of ``asset`` in ``target`` using mark prices ``(base, quote) -> price``.

    Tries the direct pair, the inverse pair, then one intermediate asset. Returns ``None`` when
    no path exists (the caller decides whether that is an error).
    """
    if asset == target or amount == 0:
        return amount
    direct = _rate(asset, target, prices)
    if direct is not None:
        return amount * direct
    for (b, q) in prices:
        for mid in (b, q):
            if mid in (asset, target):
                continue
            first = _rate(asset, mid, prices)
            second = _rate(mid, target, prices)
            if first is not None and second is not None:
                return amount * first * second
    return None


def _rate(asset: str, target: str, prices: Mapping[tuple[str, str], Decimal]) -> Decimal | None:
    if (asset, target) in prices:
        return prices[(asset, target)]
    inverse = prices.get((target, asset))
    if inverse:
        return 1 / inverse
    return None
