"""ccxt structures -> Lyra's model (pure functions, no I/O).

ccxt's unified structures are documented in the ccxt manual (docs.ccxt.com, "Market Structure",
"Order Structure", "Trade Structure", "Balance Structure"). Their numbers are Python floats built
from the exchange's decimal strings, so each is converted through its shortest ``repr``
(``Decimal(repr(0.1)) == Decimal("0.1")``): exact for every value of up to 15 significant digits,
which covers exchange prices, quantities and fees. Floats never reach the model.
"""

from __future__ import annotations

import logging
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

from appliance.model.fill import Fill, Liquidity
from appliance.model.instrument import Instrument, InstrumentId
from appliance.model.money import BPS, ZERO, dec_str
from appliance.model.order import OrderSide

log = logging.getLogger("lyra.venues.ccxt")

# ccxt/base/decimal_to_precision.py
DECIMAL_PLACES = 2
SIGNIFICANT_DIGITS = 3
TICK_SIZE = 4

NS_PER_MS = 1_000_000


def to_decimal(value: Any) -> Decimal | None:
    """A ccxt number (float, int, str, Decimal or None) as a Decimal; None for None/""/non-finite."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, float):
            result = Decimal(repr(value))
        else:
            result = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return result if result.is_finite() else None


def step_from_precision(value: Any, precision_mode: int) -> Decimal | None:
    """A precision entry of a ccxt market (``market["precision"]["price"|"amount"]``) as a step.

    ``TICK_SIZE``: the value is the step itself (``0.01``). ``DECIMAL_PLACES``: the value is a
    number of decimals (``2`` -> ``0.01``). ``SIGNIFICANT_DIGITS``: a number of significant digits,
    which has no fixed step: ``10 ** -digits`` is returned as a fine step (the exchange rounds the
    rest; logged by the caller).
    """
    number = to_decimal(value)
    if number is None:
        return None
    if precision_mode == TICK_SIZE:
        return number if number > 0 else None
    digits = int(number)
    return Decimal(1).scaleb(-digits)


def instrument_from_market(venue: str, market: Mapping[str, Any], precision_mode: int) -> Instrument | None:
    """A ccxt spot market as an :class:`Instrument`, or None when it cannot be traded through Lyra
    (not spot, inactive, or without a usable precision).

    * ``price_tick`` / ``qty_step``: from ``market["precision"]`` (see :func:`step_from_precision`).
    * ``min_qty``: ``limits.amount.min``, else ``qty_step``. ``min_notional``: ``limits.cost.min`` or 0.
    * ``maker_fee_bps`` / ``taker_fee_bps``: ``market["maker"|"taker"]`` (fractions) x 10 000; the
      exchange's default schedule, not the account's tier.
    """
    if not market.get("spot", False) or market.get("active") is False:
        return None
    precision = market.get("precision") or {}
    tick = step_from_precision(precision.get("price"), precision_mode)
    step = step_from_precision(precision.get("amount"), precision_mode)
    if tick is None or step is None:
        return None
    if precision_mode == SIGNIFICANT_DIGITS:
        log.warning("market %s uses significant-digit precision; price tick approximated as %s", market.get("symbol"), tick)
    limits = market.get("limits") or {}
    min_qty = to_decimal((limits.get("amount") or {}).get("min")) or step
    min_notional = to_decimal((limits.get("cost") or {}).get("min")) or ZERO
    maker = to_decimal(market.get("maker")) or ZERO
    taker = to_decimal(market.get("taker")) or ZERO
    return Instrument(
        id=InstrumentId(venue, str(market["symbol"])),
        base=str(market["base"]),
        quote=str(market["quote"]),
        price_tick=_plain(tick),
        qty_step=_plain(step),
        min_qty=_plain(max(min_qty, ZERO)),
        min_notional=_plain(max(min_notional, ZERO)),
        maker_fee_bps=_plain(maker * BPS),
        taker_fee_bps=_plain(taker * BPS),
    )


def _plain(value: Decimal) -> Decimal:
    """``value`` without trailing zeros or an exponent (``Decimal("10")``, not ``1E+1``)."""
    return Decimal(dec_str(value))


def order_status(order: Mapping[str, Any]) -> str:
    """ccxt's order status (``open``, ``closed``, ``canceled``, ``expired``, ``rejected``), lower case;
    ``"open"`` when missing."""
    return str(order.get("status") or "open").lower()


def order_filled(order: Mapping[str, Any]) -> Decimal | None:
    """Cumulative filled quantity (base) of a ccxt order, if the exchange said."""
    return to_decimal(order.get("filled"))


def ms(order_or_trade: Mapping[str, Any]) -> int | None:
    value = order_or_trade.get("timestamp")
    return int(value) if isinstance(value, (int, float)) else None


def fill_id(venue: str, trade: Mapping[str, Any]) -> str:
    """``f"{venue}-{trade id}"``; without a trade id (rare), a key made of the order id, time,
    amount and price, stable across polls of the same trade."""
    trade_id = trade.get("id")
    if trade_id not in (None, ""):
        return f"{venue}-{trade_id}"
    return f"{venue}-{trade.get('order')}-{trade.get('timestamp')}-{trade.get('amount')}-{trade.get('price')}"


def trade_fee(trade: Mapping[str, Any], quote: str) -> tuple[Decimal, str]:
    """(fee, asset) of a ccxt trade: ``trade["fee"]``, or the sum of ``trade["fees"]`` in the first
    currency charged (another currency is logged and left out: a Fill carries one fee asset).
    No fee information -> (0, quote)."""
    fees = list(trade.get("fees") or [])
    if not fees and trade.get("fee"):
        fees = [trade["fee"]]
    total, asset = ZERO, ""
    for fee in fees:
        if not fee:
            continue
        cost = to_decimal(fee.get("cost"))
        currency = str(fee.get("currency") or "")
        if cost is None:
            continue
        if not asset:
            asset = currency or quote
        if (currency or quote) == asset:
            total += cost
        elif cost != 0:
            log.warning("trade %s charged fees in %s and %s; the %s part is not recorded", trade.get("id"), asset,
                        currency, currency)
    return total, asset or quote


def trade_to_fill(
    venue: str, trade: Mapping[str, Any], client_order_id: str, instrument: Instrument, side: OrderSide
) -> Fill | None:
    """A ccxt trade of one of Lyra's orders as a :class:`Fill` (None when amount/price are missing
    or not positive).

    ``fill_id`` see :func:`fill_id`; ``ts_ns`` = ``timestamp`` (ms) x 1e6; ``liquidity`` from
    ``takerOrMaker`` (taker when the exchange does not say); fee in its own currency; ``side`` is
    the order's (a trade's own side is logged when it disagrees).
    """
    qty = to_decimal(trade.get("amount"))
    price = to_decimal(trade.get("price"))
    if qty is None or price is None or qty <= 0 or price <= 0:
        return None
    trade_side = str(trade.get("side") or "").lower()
    if trade_side and trade_side != side.value:
        log.warning("trade %s of order %s has side %s, the order %s", trade.get("id"), client_order_id, trade_side, side.value)
    fee, fee_asset = trade_fee(trade, instrument.quote)
    liquidity = Liquidity.MAKER if str(trade.get("takerOrMaker") or "").lower() == "maker" else Liquidity.TAKER
    return Fill(
        fill_id=fill_id(venue, trade),
        client_order_id=client_order_id,
        instrument=instrument.id,
        side=side,
        qty=qty,
        price=price,
        fee=fee,
        fee_asset=fee_asset,
        liquidity=liquidity,
        ts_ns=(ms(trade) or 0) * NS_PER_MS,
    )


def balances_total(balance: Mapping[str, Any]) -> dict[str, Decimal]:
    """``balance["total"]`` of a ccxt balance structure as asset -> Decimal, zero totals left out."""
    totals = balance.get("total") or {}
    out: dict[str, Decimal] = {}
    for asset, value in totals.items():
        amount = to_decimal(value)
        if amount is not None and amount != 0:
            out[str(asset)] = amount
    return out
