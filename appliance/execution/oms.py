"""The order management system: the only way an order reaches a venue.

Submit path (inside one engine transaction):
validate -> round to the instrument's precision -> check venue minimums -> risk check ->
INSERT as PENDING_SUBMIT + journal ``OrderSubmitted`` -> (after commit) ``venue.submit``.
A risk denial is recorded too (REJECTED with the rule) so it can be listed and audited.

Venue reports move orders through the state machine of :mod:`appliance.model.order`; each
transition is persisted and journaled; fills are applied once (idempotent by ``fill_id``).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Callable, Iterable, Mapping

from appliance.engine.clock import Clock
from appliance.engine.engine import Engine
from appliance.model.errors import AlreadyExistsError, NotFoundError, PreconditionError, RiskRejection, ValidationError
from appliance.model.fill import Fill, Liquidity
from appliance.model.instrument import Instrument, InstrumentId
from appliance.model.money import ZERO, dec_str, parse_decimal
from appliance.model.order import Order, OrderSide, OrderStatus, OrderType
from appliance.portfolio.service import Portfolio
from appliance.store.db import Database
from appliance.store.journal import Journal
from appliance.venues.base import (
    LOST_BEFORE_SEND, OrderAccepted, OrderCanceled, OrderExpired, OrderFilled, OrderRejected, Venue, VenueReport,
)

log = logging.getLogger("lyra.oms")

_CLIENT_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """What a strategy or an operator asks for. Text fields are validated by :meth:`OrderManager.submit`.

    Attributes:
        instrument: target instrument.
        side: buy or sell.
        type: market or limit.
        qty: quantity in base units (rounded DOWN to the lot step).
        limit_price: required for limit orders, forbidden for market orders (rounded passively to the tick).
        client_order_id: optional caller-chosen id (1-36 chars of [A-Za-z0-9_-]); generated if empty.
        strategy_id: owner (``"manual"`` for operators).
    """

    instrument: InstrumentId
    side: OrderSide
    type: OrderType
    qty: Decimal
    limit_price: Decimal | None = None
    client_order_id: str = ""
    strategy_id: str = "manual"


OrderListener = Callable[[Order], None]
FillListener = Callable[[Fill, Order], None]


class OrderManager:
    """Orders, fills and their persistence.

    Args:
        db, journal, clock, engine: store, time and the engine (for after-commit sends).
        venues: venue name -> Venue.
        instruments: instrument id -> Instrument.
        portfolio: receives every fill.
        risk_check: ``check(order, instrument)`` raising RiskRejection (the risk engine's).
    """

    def __init__(
        self,
        db: Database,
        journal: Journal,
        clock: Clock,
        engine: Engine,
        venues: Mapping[str, Venue],
        instruments: Mapping[InstrumentId, Instrument],
        portfolio: Portfolio,
    ) -> None:
        self.db = db
        self.journal = journal
        self.clock = clock
        self.engine = engine
        self.venues = venues
        self.instruments = instruments
        self.portfolio = portfolio
        self.risk_check: Callable[[Order, Instrument], None] = lambda order, instrument: None
        self.order_listeners: list[OrderListener] = []
        self.fill_listeners: list[FillListener] = []
        self.open_orders: dict[str, Order] = {}
        for row in db.query(f"SELECT {_COLUMNS} FROM orders WHERE status NOT IN ('FILLED','CANCELED','REJECTED','EXPIRED')"):
            order = _row_to_order(row)
            if order.filled_qty:
                notional = sum((Decimal(q) * Decimal(p) for q, p in db.query(
                    "SELECT qty, price FROM fills WHERE client_order_id=?", (order.client_order_id,))), ZERO)
                order = replace(order, filled_notional=notional)
            self.open_orders[order.client_order_id] = order

    # -- reads --------------------------------------------------------------------------------
    def get(self, client_order_id: str) -> Order:
        """Raises NotFoundError for an unknown id."""
        order = self.open_orders.get(client_order_id)
        if order is not None:
            return order
        row = self.db.query_one(f"SELECT {_COLUMNS} FROM orders WHERE client_order_id=?", (client_order_id,))
        if row is None:
            raise NotFoundError(f"order {client_order_id!r} not found")
        return _row_to_order(row)

    def list(
        self,
        *,
        before_seq: int = 0,
        limit: int = 100,
        statuses: Iterable[OrderStatus] = (),
        instrument: InstrumentId | None = None,
        strategy_id: str = "",
        open_only: bool = False,
    ) -> tuple[list[Order], int]:
        """Orders newest first, older than ``before_seq`` (0 = from the newest).

        Returns:
            (orders, seq to pass as ``before_seq`` for the next page, or 0 when exhausted).
        """
        where, params = ["seq < ?"], [before_seq or 2**62]
        states = [s.value for s in statuses]
        if open_only:
            states = [s.value for s in OrderStatus if not s.is_terminal and (not states or s.value in states)]
        if states:
            where.append(f"status IN ({','.join('?' * len(states))})")
            params += states
        if instrument is not None:
            where += ["venue = ?", "symbol = ?"]
            params += [instrument.venue, instrument.symbol]
        if strategy_id:
            where.append("strategy_id = ?")
            params.append(strategy_id)
        rows = self.db.query(
            f"SELECT {_COLUMNS}, seq FROM orders WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?", (*params, limit + 1)
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return [_row_to_order(r[:-1]) for r in rows], (rows[-1][-1] if more else 0)

    def list_fills(
        self, *, before_seq: int = 0, limit: int = 100, client_order_id: str = "", instrument: InstrumentId | None = None
    ) -> tuple[list[Fill], int]:
        """Fills newest first, older than ``before_seq`` (0 = from the newest).

        Returns:
            (fills, seq to pass as ``before_seq`` for the next page, or 0 when exhausted).
        """
        where, params = ["seq < ?"], [before_seq or 2**62]
        if client_order_id:
            where.append("client_order_id = ?")
            params.append(client_order_id)
        if instrument is not None:
            where += ["venue = ?", "symbol = ?"]
            params += [instrument.venue, instrument.symbol]
        rows = self.db.query(
            "SELECT fill_id, client_order_id, venue, symbol, side, qty, price, fee, fee_asset, liquidity, ts_ns, seq "
            f"FROM fills WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?", (*params, limit + 1)
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return [_row_to_fill(r[:-1]) for r in rows], (rows[-1][-1] if more else 0)

    def all_fills(self) -> list[Fill]:
        rows = self.db.query(
            "SELECT fill_id, client_order_id, venue, symbol, side, qty, price, fee, fee_asset, liquidity, ts_ns FROM fills ORDER BY seq"
        )
        return [_row_to_fill(r) for r in rows]

    def open_order_count(self) -> int:
        return len(self.open_orders)

    def reserved(self, asset: str, venue: str) -> Decimal:
        """What open orders on ``venue`` hold of ``asset``: quote for buys (at limit or mark, plus
        taker fee), base for sells."""
        total = ZERO
        for order in self.open_orders.values():
            inst = self.instruments.get(order.instrument)
            if inst is None or order.instrument.venue != venue:
                continue
            if order.side is OrderSide.BUY and inst.quote == asset:
                price = order.limit_price or self.portfolio.mark(order.instrument) or ZERO
                total += order.leaves_qty * price * (1 + inst.taker_fee_bps / 10_000)
            elif order.side is OrderSide.SELL and inst.base == asset:
                total += order.leaves_qty
        return total

    # -- submit / cancel (inside an engine message) ----------------------------------------------
    def submit(self, request: OrderRequest) -> Order:
        """Validate, round, risk-check and record an order; send it after commit.

        Returns:
            The order: PENDING_SUBMIT, or REJECTED with ``reject_rule`` when risk denied it
            (recorded and journaled; the caller decides how to report it).

        Raises:
            ValidationError: bad input (unknown instrument, qty/price out of range, duplicate id,
                below venue minimums); nothing is recorded.
        """
        instrument = self.instruments.get(request.instrument)
        if instrument is None:
            raise ValidationError("instrument", f"unknown instrument {request.instrument}")
        qty = parse_decimal(request.qty, "qty", positive=True)
        if request.type is OrderType.LIMIT:
            if request.limit_price is None:
                raise ValidationError("limit_price", "is required for a limit order")
            price = instrument.round_price(parse_decimal(request.limit_price, "limit_price", positive=True), request.side.value)
            if price <= 0:
                raise ValidationError("limit_price", f"rounds to 0 at tick {instrument.price_tick}")
        else:
            if request.limit_price is not None:
                raise ValidationError("limit_price", "must be empty for a market order")
            price = None
        qty = instrument.round_qty(qty)
        reference = price if price is not None else self.portfolio.mark(request.instrument)
        if reference is not None:
            instrument.check_order_size(qty, reference)
        elif qty <= 0:
            raise ValidationError("qty", f"rounds to 0 at lot step {instrument.qty_step}")
        client_order_id = request.client_order_id or self._new_client_order_id()
        self._validate_client_order_id(client_order_id)
        now = self.clock.now_ns()
        order = Order(
            client_order_id=client_order_id, instrument=request.instrument, side=request.side, type=request.type,
            qty=qty, limit_price=price, status=OrderStatus.PENDING_SUBMIT, created_ns=now, updated_ns=now,
            strategy_id=request.strategy_id or "manual", fee_asset=instrument.quote,
        )
        try:
            self.risk_check(order, instrument)
        except RiskRejection as rejection:
            rejected = order.transition(OrderStatus.REJECTED, now, reject_rule=rejection.rule, reason=rejection.reason)
            self._insert(rejected, "OrderDenied")
            self._notify(rejected)
            return rejected
        self._insert(order, "OrderSubmitted")
        self.open_orders[client_order_id] = order
        venue = self.venues[order.instrument.venue]
        self.engine.after_commit(lambda: venue.submit(order))
        self._notify(order)
        return order

    def cancel(self, client_order_id: str, reason: str = "canceled by request") -> Order:
        """Ask the venue to cancel an open order (the status changes when the venue confirms).

        Raises:
            NotFoundError: unknown order.
            PreconditionError: the order is already terminal.
        """
        order = self.get(client_order_id)
        if order.status.is_terminal:
            raise PreconditionError(f"order {client_order_id} is {order.status.value}; nothing to cancel")
        self.journal.append(self.clock.now_ns(), "CancelRequested", "order", client_order_id, {"reason": reason})
        venue = self.venues[order.instrument.venue]
        self.engine.after_commit(lambda: venue.cancel(order))
        return order

    def cancel_all(self, reason: str) -> int:
        """Request cancellation of every open order; returns how many."""
        for client_order_id in list(self.open_orders):
            self.cancel(client_order_id, reason)
        return len(self.open_orders)

    # -- venue reports ---------------------------------------------------------------------------
    def on_report(self, report: VenueReport) -> None:
        """Apply a venue report (inside an engine message). Reports for unknown or already-terminal
        orders are logged and ignored (a late duplicate must not change anything)."""
        if isinstance(report, OrderFilled):
            self._on_fill(report.fill)
            return
        order = self.open_orders.get(report.client_order_id)
        if order is None:
            log.warning("report %s for unknown or closed order %s ignored", type(report).__name__, report.client_order_id)
            return
        if isinstance(report, OrderAccepted):
            if order.status is OrderStatus.PENDING_SUBMIT:
                self._update(order.transition(OrderStatus.OPEN, report.ts_ns, venue_order_id=report.venue_order_id), "OrderAccepted")
        elif isinstance(report, OrderRejected):
            rule = LOST_BEFORE_SEND if report.reason.startswith(LOST_BEFORE_SEND) else "venue"
            self._update(order.transition(OrderStatus.REJECTED, report.ts_ns, reject_rule=rule, reason=report.reason), "OrderRejected")
        elif isinstance(report, OrderCanceled):
            self._update(order.transition(OrderStatus.CANCELED, report.ts_ns, reason=report.reason), "OrderCanceled")
        elif isinstance(report, OrderExpired):
            self._update(order.transition(OrderStatus.EXPIRED, report.ts_ns, reason=report.reason), "OrderExpired")

    def _on_fill(self, fill: Fill) -> None:
        if self.db.scalar("SELECT 1 FROM fills WHERE fill_id=?", (fill.fill_id,)):
            log.warning("duplicate fill %s ignored", fill.fill_id)
            return
        order = self.open_orders.get(fill.client_order_id)
        if order is None:
            log.error("fill %s for unknown or closed order %s ignored", fill.fill_id, fill.client_order_id)
            return
        updated = order.apply_fill(fill.qty, fill.price, fill.fee, fill.fee_asset, fill.ts_ns)
        seq = self.journal.append(
            fill.ts_ns, "OrderFilled", "order", order.client_order_id,
            {"fill_id": fill.fill_id, "qty": fill.qty, "price": fill.price, "fee": fill.fee, "fee_asset": fill.fee_asset,
             "liquidity": fill.liquidity.value, "side": fill.side.value, "instrument": str(fill.instrument),
             "status": updated.status.value, "filled_qty": updated.filled_qty},
        )
        self.db.execute(
            "INSERT INTO fills(fill_id, client_order_id, venue, symbol, side, qty, price, fee, fee_asset, liquidity, ts_ns, seq) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (fill.fill_id, fill.client_order_id, fill.instrument.venue, fill.instrument.symbol, fill.side.value,
             dec_str(fill.qty), dec_str(fill.price), dec_str(fill.fee), fill.fee_asset, fill.liquidity.value, fill.ts_ns, seq),
        )
        self._update(updated, None)
        self.portfolio.apply_fill(fill)
        for listener in self.fill_listeners:
            listener(fill, updated)

    # -- recovery -----------------------------------------------------------------------------
    def reconcile(self) -> list[str]:
        """Ask every venue to reconcile Lyra's non-terminal orders there (start-up, reconnects,
        periodically). Inside an engine message: the requests leave after commit and the venues'
        answers come back as ordinary reports (see :meth:`Venue.reconcile`), applied in order and
        idempotently. Returns notes of what was requested.

        A PENDING_SUBMIT order a venue never received is rejected (rule ``lost_before_send``):
        sending it now could act on a stale decision; its strategy sees the rejection and decides
        again. A venue that cannot answer concludes nothing (never "not found").
        """
        notes = []
        by_venue: dict[str, list[Order]] = {name: [] for name in self.venues}
        for order in self.open_orders.values():
            by_venue.setdefault(order.instrument.venue, []).append(order)
        for name, orders in sorted(by_venue.items()):
            venue = self.venues.get(name)
            if venue is None:
                notes.append(f"{len(orders)} open orders on venue {name}, which is not connected; "
                             "they are reconciled when it connects")
                continue
            # every connected venue, even without open orders: the answer carries its balances
            self.engine.after_commit(lambda venue=venue, orders=orders: venue.reconcile(orders))
            if orders:
                notes.append(f"reconciling {len(orders)} open orders with venue {name}")
        return notes

    # -- persistence --------------------------------------------------------------------------------
    def _new_client_order_id(self) -> str:
        return "ly-" + secrets.token_hex(10)

    def _validate_client_order_id(self, client_order_id: str) -> None:
        if not 1 <= len(client_order_id) <= 36 or not set(client_order_id) <= _CLIENT_ID_CHARS:
            raise ValidationError("client_order_id", "must be 1-36 characters of A-Z a-z 0-9 - _")
        if self.db.scalar("SELECT 1 FROM orders WHERE client_order_id=?", (client_order_id,)):
            raise AlreadyExistsError(f"client_order_id {client_order_id!r} is already used; an order is never sent twice")

    def _insert(self, order: Order, event: str) -> None:
        seq = self.journal.append(order.updated_ns, event, "order", order.client_order_id, _order_payload(order))
        self.db.execute(
            f"INSERT INTO orders({_COLUMNS}, seq) VALUES ({','.join('?' * (_NCOLS + 1))})", (*_order_row(order), seq)
        )

    def _update(self, order: Order, event: str | None) -> None:
        if event is not None:
            self.journal.append(order.updated_ns, event, "order", order.client_order_id, _order_payload(order))
        self.db.execute(
            "UPDATE orders SET status=?, filled_qty=?, avg_fill_price=?, fees=?, fee_asset=?, venue_order_id=?, "
            "reject_rule=?, reason=?, updated_ns=? WHERE client_order_id=?",
            (order.status.value, dec_str(order.filled_qty), dec_str(order.avg_fill_price), dec_str(order.fees),
             order.fee_asset, order.venue_order_id, order.reject_rule, order.reason, order.updated_ns, order.client_order_id),
        )
        if order.status.is_terminal:
            self.open_orders.pop(order.client_order_id, None)
        else:
            self.open_orders[order.client_order_id] = order
        self._notify(order)

    def _notify(self, order: Order) -> None:
        for listener in self.order_listeners:
            listener(order)


_COLUMNS = (
    "client_order_id, venue, symbol, side, type, qty, limit_price, status, filled_qty, avg_fill_price, fees, "
    "fee_asset, strategy_id, venue_order_id, reject_rule, reason, created_ns, updated_ns"
)
_NCOLS = 18


def _order_row(o: Order) -> tuple:
    return (
        o.client_order_id, o.instrument.venue, o.instrument.symbol, o.side.value, o.type.value, dec_str(o.qty),
        dec_str(o.limit_price) if o.limit_price is not None else None, o.status.value, dec_str(o.filled_qty),
        dec_str(o.avg_fill_price), dec_str(o.fees), o.fee_asset, o.strategy_id, o.venue_order_id, o.reject_rule,
        o.reason, o.created_ns, o.updated_ns,
    )


def _row_to_order(r: tuple) -> Order:
    return Order(
        client_order_id=r[0], instrument=InstrumentId(r[1], r[2]), side=OrderSide(r[3]), type=OrderType(r[4]),
        qty=Decimal(r[5]), limit_price=Decimal(r[6]) if r[6] is not None else None, status=OrderStatus(r[7]),
        filled_qty=Decimal(r[8]), avg_fill_price=Decimal(r[9]), fees=Decimal(r[10]), fee_asset=r[11],
        strategy_id=r[12], venue_order_id=r[13], reject_rule=r[14], reason=r[15], created_ns=r[16], updated_ns=r[17],
    )


def _row_to_fill(r: tuple) -> Fill:
    return Fill(
        fill_id=r[0], client_order_id=r[1], instrument=InstrumentId(r[2], r[3]), side=OrderSide(r[4]), qty=Decimal(r[5]),
        price=Decimal(r[6]), fee=Decimal(r[7]), fee_asset=r[8], liquidity=Liquidity(r[9]), ts_ns=r[10],
    )


def _order_payload(o: Order) -> dict:
    return {
        "instrument": str(o.instrument), "side": o.side.value, "type": o.type.value, "qty": o.qty,
        "limit_price": o.limit_price, "status": o.status.value, "filled_qty": o.filled_qty,
        "avg_fill_price": o.avg_fill_price, "fees": o.fees, "strategy_id": o.strategy_id,
        "venue_order_id": o.venue_order_id, "reject_rule": o.reject_rule, "reason": o.reason,
    }
