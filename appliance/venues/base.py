"""The Venue protocol: what the OMS needs from an exchange, live or simulated.

Sends (``submit``, ``cancel``) are made only after the transaction that recorded the intent
has committed; their outcome comes back asynchronously as :data:`VenueReport` messages through
the report sink, which the engine handles in order like any other message.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from decimal import Decimal
from typing import Callable, Protocol, Union

from appliance.model.fill import Fill
from appliance.model.instrument import Instrument
from appliance.model.order import Order


@dataclass(frozen=True, slots=True)
class OrderAccepted:
    client_order_id: str
    venue_order_id: str
    ts_ns: int


@dataclass(frozen=True, slots=True)
class OrderRejected:
    client_order_id: str
    reason: str
    ts_ns: int


@dataclass(frozen=True, slots=True)
class OrderCanceled:
    client_order_id: str
    reason: str
    ts_ns: int


@dataclass(frozen=True, slots=True)
class OrderExpired:
    client_order_id: str
    reason: str
    ts_ns: int


@dataclass(frozen=True, slots=True)
class OrderFilled:
    fill: Fill


@dataclass(frozen=True, slots=True)
class UnknownVenueOrder:
    """Reconciliation found an order on the venue that Lyra did not place: reported, never touched."""

    venue: str
    venue_order_id: str
    client_order_id: str
    symbol: str
    side: str
    qty: Decimal
    price: Decimal | None
    status: str
    ts_ns: int


@dataclass(frozen=True, slots=True)
class BalanceSnapshot:
    """The venue's own view of the account's balances (asset -> total), for drift checks."""

    venue: str
    balances: dict[str, Decimal]
    ts_ns: int


class VenueHealth(str, Enum):
    CONNECTED = "CONNECTED"
    DEGRADED = "DEGRADED"  # answering, but with errors/rate limiting/stale streams: new orders still allowed
    DOWN = "DOWN"  # not answering: orders are not sent


@dataclass(frozen=True, slots=True)
class VenueHealthChanged:
    venue: str
    health: VenueHealth
    reason: str
    ts_ns: int


VenueReport = Union[
    OrderAccepted, OrderRejected, OrderCanceled, OrderExpired, OrderFilled, UnknownVenueOrder, BalanceSnapshot,
    VenueHealthChanged,
]
ReportSink = Callable[[VenueReport], None]


@dataclass(frozen=True, slots=True)
class VenueOrderState:
    """What the venue knows of an order, for reconciliation.

    Attributes:
        client_order_id, venue_order_id: identities.
        status: ``"open"``, ``"filled"``, ``"canceled"``, ``"rejected"`` or ``"expired"``.
        filled_qty: cumulative filled quantity (base).
    """

    client_order_id: str
    venue_order_id: str
    status: str
    filled_qty: Decimal


class Venue(Protocol):
    """An exchange account. ``name`` is the venue part of every InstrumentId it serves."""

    name: str

    def instruments(self) -> list[Instrument]:
        """Every instrument tradable here, with precision, minimums and fees."""
        ...

    def set_report_sink(self, sink: ReportSink) -> None:
        """Where to deliver reports (the engine posts them on its queue)."""
        ...

    def submit(self, order: Order) -> None:
        """Send an order already recorded as PENDING_SUBMIT. Outcome comes as reports."""
        ...

    def cancel(self, order: Order) -> None:
        """Request cancellation. Outcome comes as reports (OrderCanceled, or a fill that won the race)."""
        ...

    def lookup(self, client_order_id: str) -> VenueOrderState | None:
        """The venue's view of an order by Lyra's client order id; ``None`` if it never arrived.
        Synchronous: only venues that can answer without I/O (the paper venue) implement it.

        Raises:
            VenueUnavailable: the venue could not be asked (never means "not found").
        """
        ...

    def reconcile(self, orders: list[Order]) -> None:
        """Check Lyra's non-terminal ``orders`` on this venue against the venue's truth, without
        blocking; the outcome comes back as reports: OrderAccepted / OrderFilled (fills that happened
        while Lyra was away; the OMS applies each fill_id once) / OrderCanceled / OrderExpired /
        OrderRejected(reason starting "lost_before_send") for a PENDING_SUBMIT order the venue never
        received, UnknownVenueOrder for orders Lyra did not place, and a BalanceSnapshot. A venue
        that cannot answer reports VenueHealthChanged and nothing else: a failed query never
        means "no order" or "no position"."""
        ...

    def health(self) -> VenueHealth:
        ...


class VenueUnavailable(Exception):
    """The venue could not answer; callers must not treat this as 'order not found'."""


LOST_BEFORE_SEND = "lost_before_send"


def reconcile_by_lookup(
    orders: list[Order], lookup: Callable[[str], VenueOrderState | None], sink: ReportSink, now_ns: int
) -> int:
    """Reconcile ``orders`` with a venue that answers lookups by client order id synchronously.

    Reports: OrderAccepted for a PENDING_SUBMIT order the venue has; OrderCanceled / OrderExpired
    for orders the venue ended; OrderRejected(``"lost_before_send: ..."``) for a PENDING_SUBMIT
    order it never received. Fills are not reported here: a venue using this helper applies them
    in the same transaction as Lyra (the paper venue), so none can be missing.

    Returns:
        The number of reports sent.

    Raises:
        VenueUnavailable: from ``lookup``; nothing is concluded for the remaining orders.
    """
    sent = 0
    for order in orders:
        state = lookup(order.client_order_id)
        report: VenueReport | None = None
        if state is None:
            if order.status.value == "PENDING_SUBMIT":
                report = OrderRejected(order.client_order_id, f"{LOST_BEFORE_SEND}: never reached the venue before a restart", now_ns)
        elif state.status == "canceled":
            if order.status.value == "PENDING_SUBMIT":
                sink(OrderAccepted(order.client_order_id, state.venue_order_id, now_ns))
                sent += 1
            report = OrderCanceled(order.client_order_id, "canceled at the venue while Lyra was away", now_ns)
        elif state.status == "expired":
            report = OrderExpired(order.client_order_id, "expired at the venue while Lyra was away", now_ns)
        elif order.status.value == "PENDING_SUBMIT":
            report = OrderAccepted(order.client_order_id, state.venue_order_id, now_ns)
        if report is not None:
            sink(report)
            sent += 1
    return sent
