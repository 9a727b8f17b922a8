"""Orders and their state machine.

Every transition is explicit and checked against :data:`TRANSITIONS`; an illegal one raises
:class:`IllegalTransitionError` and leaves the order untouched (after NautilusTrader's order FSM).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from decimal import Decimal

from appliance.model.errors import IllegalTransitionError, ValidationError
from appliance.model.instrument import InstrumentId
from appliance.model.money import AVG_PRICE_QUANTUM, ZERO


class OrderSide(str, enum.Enum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is OrderSide.BUY else -1


class OrderType(str, enum.Enum):
    MARKET = "market"
    LIMIT = "limit"


class OrderStatus(str, enum.Enum):
    PENDING_SUBMIT = "PENDING_SUBMIT"
    OPEN = "OPEN"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED})

S = OrderStatus
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.PENDING_SUBMIT: frozenset({S.OPEN, S.PARTIALLY_FILLED, S.FILLED, S.REJECTED, S.CANCELED, S.EXPIRED}),
    S.OPEN: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.EXPIRED}),
    S.PARTIALLY_FILLED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.EXPIRED}),
    S.FILLED: frozenset(),
    S.CANCELED: frozenset(),
    S.REJECTED: frozenset(),
    S.EXPIRED: frozenset(),
}
del S


@dataclass(frozen=True, slots=True)
class Order:
    """An order as Lyra knows it. Immutable: transitions return a new ``Order``.

    Attributes:
        client_order_id: Lyra's id, sent to the venue, unique forever.
        instrument: where and what.
        side, type: buy/sell, market/limit.
        qty: ordered quantity (base units), already rounded to the lot step.
        limit_price: limit price (quote per base), ``None`` for market orders.
        status: current state.
        filled_qty: cumulative filled quantity (base).
        avg_fill_price: volume-weighted fill price (quote per base, rounded to 18 decimals), 0 before any fill.
        fees: cumulative fees (in ``fee_asset``).
        strategy_id: the strategy that placed it, or ``"manual"`` for operator orders.
        venue_order_id: the venue's id once acknowledged.
        created_ns, updated_ns: Clock times (ns since epoch, UTC).
        reject_rule, reason: why it was rejected/canceled/expired, if it was.
        filled_notional: exact sum of fill qty * price (quote); ``avg_fill_price`` is derived from
            it, so rounding never accumulates over many partial fills. Not stored: the OMS rebuilds
            it from the fills of open orders at start-up.
    """

    client_order_id: str
    instrument: InstrumentId
    side: OrderSide
    type: OrderType
    qty: Decimal
    limit_price: Decimal | None
    status: OrderStatus
    created_ns: int
    updated_ns: int
    strategy_id: str = "manual"
    filled_qty: Decimal = ZERO
    avg_fill_price: Decimal = ZERO
    fees: Decimal = ZERO
    fee_asset: str = ""
    venue_order_id: str = ""
    reject_rule: str = ""
    reason: str = ""
    filled_notional: Decimal = ZERO

    @property
    def leaves_qty(self) -> Decimal:
        """Quantity still working (base units)."""
        return self.qty - self.filled_qty

    @property
    def is_open(self) -> bool:
        return not self.status.is_terminal

    def transition(self, to: OrderStatus, now_ns: int, **changes: object) -> "Order":
        """Return this order moved to ``to``.

        Raises:
            IllegalTransitionError: the table forbids ``status -> to``.
        """
        if to not in TRANSITIONS[self.status]:
            raise IllegalTransitionError(
                f"order {self.client_order_id}: illegal transition {self.status.value} -> {to.value}"
            )
        return replace(self, status=to, updated_ns=now_ns, **changes)

    def apply_fill(self, qty: Decimal, price: Decimal, fee: Decimal, fee_asset: str, now_ns: int) -> "Order":
        """Return this order with a fill applied (PARTIALLY_FILLED or FILLED).

        Raises:
            ValidationError: ``qty`` not positive or larger than ``leaves_qty``.
            IllegalTransitionError: the order is terminal.
        """
        if qty <= 0:
            raise ValidationError("fill.qty", f"must be > 0, got {qty}")
        if qty > self.leaves_qty:
            raise ValidationError("fill.qty", f"{qty} exceeds leaves_qty {self.leaves_qty} of {self.client_order_id}")
        filled = self.filled_qty + qty
        notional = self.filled_notional + price * qty
        avg = (notional / filled).quantize(AVG_PRICE_QUANTUM)
        to = OrderStatus.FILLED if filled == self.qty else OrderStatus.PARTIALLY_FILLED
        return self.transition(
            to, now_ns, filled_qty=filled, avg_fill_price=avg, filled_notional=notional, fees=self.fees + fee,
            fee_asset=fee_asset or self.fee_asset,
        )
