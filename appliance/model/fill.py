"""Fills (executions) reported by a venue."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal

from appliance.model.instrument import InstrumentId
from appliance.model.order import OrderSide


class Liquidity(str, enum.Enum):
    MAKER = "maker"
    TAKER = "taker"


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution.

    Attributes:
        fill_id: venue-unique id of the execution (idempotency key: a fill is applied once).
        client_order_id: the order it belongs to.
        instrument: venue + symbol.
        side: buy/sell.
        qty: executed quantity (base units, > 0).
        price: execution price (quote per base).
        fee: fee charged (in ``fee_asset``, >= 0).
        fee_asset: asset the fee was charged in (the quote asset for the paper venue).
        liquidity: maker or taker.
        ts_ns: execution time (ns since epoch, UTC).
    """

    fill_id: str
    client_order_id: str
    instrument: InstrumentId
    side: OrderSide
    qty: Decimal
    price: Decimal
    fee: Decimal
    fee_asset: str
    liquidity: Liquidity
    ts_ns: int

    @property
    def notional(self) -> Decimal:
        """qty * price, in the quote asset."""
        return self.qty * self.price
