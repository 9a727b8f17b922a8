"""PaperVenue: a simulated exchange account matched against candles.

The venue's own ("exchange-side") state is the ``paper_orders`` table: one row per accepted
order with its venue order id, what is left of it and its status. The live (resting) orders are
also kept in memory, ordered by acceptance, and loaded back from the table on construction, so a
restarted appliance finds its resting orders and answers :meth:`PaperVenue.lookup` exactly as
before the restart.

Timing contract with the engine:

* :meth:`PaperVenue.submit` / :meth:`PaperVenue.cancel` are called AFTER the transaction that
  recorded the intent committed, outside any transaction. Each writes ``paper_orders`` in its
  own ``with db.transaction()`` and only then reports through the sink.
* :meth:`PaperVenue.on_bar` is called INSIDE the engine's transaction for each bar of a slice.
  It updates ``paper_orders`` in that transaction and RETURNS the fill reports (it does not use
  the sink), so the fills commit atomically with the engine's bookkeeping. If the engine's
  transaction rolls back afterwards, the table goes back but memory does not; the venue notices
  it on its next call (a cheap aggregate over the live rows, see ``_sync``) and reloads, so the
  rolled-back fills are matched again with the same fill ids. :meth:`PaperVenue.reload` forces it.

``paper_orders.status`` values: ``new`` (accepted, has not met an eligible bar yet -- a limit
order can still be "marketable on arrival"), ``open`` (resting), ``filled``, ``canceled``.
Rejected orders are not stored (a resubmission is simply evaluated, and rejected, again).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal, localcontext
from typing import Iterable, Mapping, Protocol, Sequence

from appliance.engine.clock import Clock
from appliance.marketdata.bar import Bar
from appliance.marketdata.candles import CandleFile, CandleSeries, load
from appliance.model.errors import PreconditionError, ValidationError
from appliance.model.fill import Fill, Liquidity
from appliance.model.instrument import Instrument, InstrumentId
from appliance.model.money import BPS, ZERO, dec_str, round_to_step
from appliance.model.order import Order, OrderSide, OrderType
from appliance.store.db import Database
from appliance.venues.base import (
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    ReportSink,
    VenueHealth,
    VenueOrderState,
    VenueReport,
    reconcile_by_lookup,
)
from appliance.venues.paper.fill_model import FillDecision

LIVE_STATUSES = ("new", "open")
_STATUS_TO_VENUE = {"new": "open", "open": "open", "filled": "filled", "canceled": "canceled"}


class FillModel(Protocol):
    """What the paper venue needs from a fill model (see :class:`CandleFillModel`)."""

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
    ) -> FillDecision | None: ...


@dataclass(frozen=True, slots=True)
class PaperOrder:
    """A paper order as the venue holds it (one ``paper_orders`` row).

    Attributes:
        n: acceptance number; ``venue_order_id == f"{venue}-{n}"``; orders match in this order.
        qty, filled_qty: base units. limit_price: quote per base (None for market orders).
        status: ``new``, ``open``, ``filled`` or ``canceled``.
        accepted_ns: acceptance time (ns); only bars opening at or after it can fill the order.
        fill_count: fills reported so far (the next fill id ends in ``fill_count + 1``).
    """

    n: int
    client_order_id: str
    venue_order_id: str
    symbol: str
    side: OrderSide
    type: OrderType
    qty: Decimal
    limit_price: Decimal | None
    filled_qty: Decimal
    status: str
    accepted_ns: int
    fill_count: int

    @property
    def leaves_qty(self) -> Decimal:
        return self.qty - self.filled_qty

    def state(self) -> VenueOrderState:
        return VenueOrderState(self.client_order_id, self.venue_order_id, _STATUS_TO_VENUE[self.status], self.filled_qty)


class PaperVenue:
    """A simulated venue implementing :class:`appliance.venues.base.Venue`, plus :meth:`on_bar`.

    Args:
        name: venue name; the venue part of every InstrumentId it serves, and the prefix of its
            venue order ids (``f"{name}-{n}"``).
        instruments: tradable instruments (their ``id.venue`` must be ``name``).
        fill_model: decides fills from bars (e.g. :class:`CandleFillModel`).
        db: the appliance database (table ``paper_orders``).
        clock: gives acceptance/cancel times (a SimClock in replay and backtest).

    Raises:
        ValidationError: an instrument belongs to another venue or is listed twice (field ``instruments``).
    """

    def __init__(
        self,
        name: str,
        instruments: Sequence[Instrument],
        fill_model: FillModel,
        db: Database,
        clock: Clock,
    ) -> None:
        if not name or "@" in name:
            raise ValidationError("name", f"{name!r} is not a venue name")
        self.name = name
        self.fill_model = fill_model
        self.db = db
        self.clock = clock
        self._instruments: dict[str, Instrument] = {}
        for inst in instruments:
            if inst.id.venue != name:
                raise ValidationError("instruments", f"{inst.id} does not belong to venue {name!r}")
            if inst.id.symbol in self._instruments:
                raise ValidationError("instruments", f"{inst.id} is listed twice")
            self._instruments[inst.id.symbol] = inst
        self._sink: ReportSink | None = None
        self._last_close: dict[str, Decimal] = {}
        self._book: dict[str, list[PaperOrder]] = {}
        self._live: dict[str, PaperOrder] = {}
        self._next_n = 1
        self.reload()

    # -- state ------------------------------------------------------------------------------
    def _own_n(self, venue_order_id: str) -> int | None:
        prefix = f"{self.name}-"
        if venue_order_id.startswith(prefix):
            suffix = venue_order_id[len(prefix) :]
            if suffix.isdigit():
                return int(suffix)
        return None

    @staticmethod
    def _row_to_order(n: int, row: tuple) -> PaperOrder:
        cid, vid, symbol, side, type_, qty, limit, filled, status, accepted_ns, fill_count = row
        return PaperOrder(
            n=n,
            client_order_id=cid,
            venue_order_id=vid,
            symbol=symbol,
            side=OrderSide(side),
            type=OrderType(type_),
            qty=Decimal(qty),
            limit_price=Decimal(limit) if limit is not None else None,
            filled_qty=Decimal(filled),
            status=status,
            accepted_ns=int(accepted_ns),
            fill_count=int(fill_count),
        )

    _COLUMNS = (
        "client_order_id, venue_order_id, symbol, side, type, qty, limit_price, filled_qty, status, accepted_ns, fill_count"
    )

    def reload(self) -> None:
        """Rebuild the in-memory book and the id counter from ``paper_orders``.

        Called on construction (restart), and automatically when a rolled-back transaction left
        memory ahead of the table (see ``_sync``).
        """
        book: dict[str, list[PaperOrder]] = {}
        live: dict[str, PaperOrder] = {}
        max_n = 0
        for (vid,) in self.db.query("SELECT venue_order_id FROM paper_orders"):
            n = self._own_n(vid)
            if n is not None:
                max_n = max(max_n, n)
        rows = self.db.query(
            f"SELECT {self._COLUMNS} FROM paper_orders WHERE status IN ('new', 'open')"  # noqa: S608
        )
        orders = []
        for row in rows:
            n = self._own_n(row[1])
            if n is not None:
                orders.append(self._row_to_order(n, row))
        for order in sorted(orders, key=lambda o: o.n):
            book.setdefault(order.symbol, []).append(order)
            live[order.client_order_id] = order
        self._book, self._live, self._next_n = book, live, max_n + 1

    def _sync(self) -> None:
        """Reload if the in-memory book no longer matches ``paper_orders``.

        This happens only when a transaction in which this venue wrote (typically the engine's
        transaction around :meth:`on_bar`) was rolled back: the table went back, memory did not.
        Memory can then only be AHEAD of the table (orders missing, more fills, fewer ``new``),
        so comparing (live count, sum of fill_count, count of ``new``) over the live rows detects
        every such case. One indexed query over the live rows only.
        """
        count, fills, new = self.db.query_one(
            "SELECT count(*), coalesce(sum(fill_count), 0), coalesce(sum(status = 'new'), 0) FROM paper_orders "
            "WHERE status IN ('new', 'open') AND substr(venue_order_id, 1, ?) = ? "
            "AND substr(venue_order_id, ?) <> '' AND substr(venue_order_id, ?) NOT GLOB '*[^0-9]*'",
            (len(self.name) + 1, f"{self.name}-", len(self.name) + 2, len(self.name) + 2),
        )  # rows of this venue only: "{name}-{digits}" (as _own_n)
        live = self._live.values()
        mine = (len(self._live), sum(o.fill_count for o in live), sum(1 for o in live if o.status == "new"))
        if (count, fills, new) != mine:
            self.reload()

    def open_orders(self, symbol: str | None = None) -> list[PaperOrder]:
        """Live (``new``/``open``) orders, in acceptance order; optionally of one symbol."""
        self._sync()
        if symbol is not None:
            return list(self._book.get(symbol, ()))
        return sorted(self._live.values(), key=lambda o: o.n)

    # -- Venue protocol ---------------------------------------------------------------------
    def instruments(self) -> list[Instrument]:
        """Every instrument tradable here."""
        return list(self._instruments.values())

    def set_report_sink(self, sink: ReportSink) -> None:
        """Where :meth:`submit` and :meth:`cancel` deliver their reports."""
        self._sink = sink

    def _require_sink(self) -> ReportSink:
        if self._sink is None:
            raise PreconditionError(f"paper venue {self.name}: set_report_sink() was not called")
        return self._sink

    def _check(self, order: Order) -> str | None:
        """Why the venue refuses ``order``, or ``None`` if it is acceptable."""
        if order.instrument.venue != self.name:
            return f"instrument {order.instrument} is not on venue {self.name}"
        inst = self._instruments.get(order.instrument.symbol)
        if inst is None:
            return f"unknown instrument {order.instrument} (venue {self.name} lists {sorted(self._instruments)})"
        if order.qty <= 0:
            return f"qty must be > 0, got {order.qty}"
        if inst.round_qty(order.qty) != order.qty:
            return f"qty {order.qty} is not a multiple of the lot step {inst.qty_step} of {inst.id}"
        if order.type is OrderType.LIMIT:
            if order.limit_price is None or order.limit_price <= 0:
                return f"limit order needs a positive limit_price, got {order.limit_price}"
            if round_to_step(order.limit_price, inst.price_tick, "nearest") != order.limit_price:
                return f"limit_price {order.limit_price} is not a multiple of the tick {inst.price_tick} of {inst.id}"
            reference = order.limit_price
        else:
            if order.limit_price is not None:
                return "market order must not carry a limit_price"
            reference = self._last_close.get(inst.id.symbol)
        try:
            if reference is not None:
                inst.check_order_size(order.qty, reference)
            elif order.qty < inst.min_qty:
                inst.check_order_size(order.qty, ZERO)
        except ValidationError as exc:
            return exc.reason
        return None

    def submit(self, order: Order) -> None:
        """Accept (or reject) an order already recorded as PENDING_SUBMIT.

        Writes the ``paper_orders`` row in its own transaction, then reports
        ``OrderAccepted(venue_order_id=f"{name}-{n}", ts_ns=clock.now_ns())``. An order the venue
        cannot take (unknown instrument, qty off the lot step or below the minimums, limit price
        missing or off the tick, market order with a limit price) is reported as
        ``OrderRejected`` with the reason and is not stored. The minimum notional of a market
        order is checked against the last close the venue has seen (skipped before any bar).

        Idempotent: a client order id the venue already holds is never accepted a second time;
        it is reported again as ``OrderAccepted`` with the SAME venue order id and the original
        acceptance time, whatever its current state (the engine must treat a repeated
        acceptance as a no-op).

        Raises:
            PreconditionError: no report sink set.
        """
        sink = self._require_sink()
        cid = order.client_order_id
        row = self.db.query_one(
            "SELECT venue_order_id, accepted_ns FROM paper_orders WHERE client_order_id = ?", (cid,)
        )
        if row is not None:
            vid, accepted_ns = row
            if self._own_n(vid) is None:
                sink(OrderRejected(cid, f"client order id {cid} is already used by order {vid}", self.clock.now_ns()))
            else:
                sink(OrderAccepted(cid, vid, int(accepted_ns)))
            return
        now = self.clock.now_ns()
        reason = self._check(order)
        if reason is not None:
            sink(OrderRejected(cid, reason, now))
            return
        n = self._next_n
        paper = PaperOrder(
            n=n,
            client_order_id=cid,
            venue_order_id=f"{self.name}-{n}",
            symbol=order.instrument.symbol,
            side=order.side,
            type=order.type,
            qty=order.qty,
            limit_price=order.limit_price if order.type is OrderType.LIMIT else None,
            filled_qty=ZERO,
            status="new",
            accepted_ns=now,
            fill_count=0,
        )
        with self.db.transaction():
            self.db.execute(
                f"INSERT INTO paper_orders ({self._COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",  # noqa: S608
                (
                    paper.client_order_id,
                    paper.venue_order_id,
                    paper.symbol,
                    paper.side.value,
                    paper.type.value,
                    dec_str(paper.qty),
                    dec_str(paper.limit_price) if paper.limit_price is not None else None,
                    "0",
                    paper.status,
                    paper.accepted_ns,
                    0,
                ),
            )
        self._next_n = n + 1
        self._book.setdefault(paper.symbol, []).append(paper)
        self._live[cid] = paper
        sink(OrderAccepted(cid, paper.venue_order_id, now))

    def cancel(self, order: Order) -> None:
        """Cancel a live order: it leaves the book, its row becomes ``canceled``, and
        ``OrderCanceled`` is reported.

        If the venue does not hold the order live -- never received, already filled or already
        canceled -- nothing is reported and nothing changes: the fills or the cancel were
        reported before, and :meth:`lookup` tells the final state (this is how the engine
        settles a cancel whose outcome it did not see).

        Raises:
            PreconditionError: no report sink set.
        """
        sink = self._require_sink()
        self._sync()
        paper = self._live.get(order.client_order_id)
        if paper is None:
            return
        with self.db.transaction():
            self.db.execute(
                "UPDATE paper_orders SET status = 'canceled' WHERE client_order_id = ?", (paper.client_order_id,)
            )
        self._remove(paper)
        sink(OrderCanceled(paper.client_order_id, "canceled on request", self.clock.now_ns()))

    def lookup(self, client_order_id: str) -> VenueOrderState | None:
        """The venue's view of an order (from ``paper_orders``); ``None`` if it never arrived
        (or was rejected: rejections are not stored). Status ``new`` reads as ``"open"``."""
        row = self.db.query_one(
            f"SELECT {self._COLUMNS} FROM paper_orders WHERE client_order_id = ?", (client_order_id,)  # noqa: S608
        )
        if row is None:
            return None
        n = self._own_n(row[1])
        if n is None:
            return None
        return self._row_to_order(n, row).state()

    def reconcile(self, orders: list[Order]) -> None:
        """Report what this venue knows of ``orders`` (see :func:`reconcile_by_lookup`)."""
        reconcile_by_lookup(orders, self.lookup, self._require_sink(), self.clock.now_ns())

    def health(self) -> VenueHealth:
        """The paper venue runs in-process: always connected."""
        return VenueHealth.CONNECTED

    # -- matching ---------------------------------------------------------------------------
    def _remove(self, paper: PaperOrder) -> None:
        self._live.pop(paper.client_order_id, None)
        book = self._book.get(paper.symbol)
        if book is not None:
            book[:] = [o for o in book if o.client_order_id != paper.client_order_id]
            if not book:
                del self._book[paper.symbol]

    def on_bar(self, bar: Bar) -> list[VenueReport]:
        """Match the live orders of ``bar.instrument`` against ``bar``, in acceptance order.

        Called inside the engine's transaction (nested here as a savepoint). Orders accepted
        after the bar opened are skipped (no look-ahead). Each fill updates ``paper_orders``
        (``filled_qty``, ``status``, ``fill_count``) and yields ``OrderFilled`` with
        ``fill_id = f"{venue_order_id}-{k}"`` (k = 1, 2, ... per order), ``ts_ns = bar.close_ns``
        (a fill is known when its bar closes) and ``fee = qty * price * fee_bps / 10000`` in the
        quote asset (maker or taker fee of the instrument; exact, not rounded). Fully filled
        orders leave the book. Bars of other venues or unknown instruments return ``[]``.

        Returns:
            The fill reports, in order.
        """
        if bar.instrument.venue != self.name:
            return []
        inst = self._instruments.get(bar.instrument.symbol)
        if inst is None:
            return []
        self._last_close[inst.id.symbol] = bar.close
        self._sync()
        book = self._book.get(inst.id.symbol)
        if not book:
            return []
        reports: list[VenueReport] = []
        updated: list[PaperOrder] = []
        with self.db.transaction():
            for paper in list(book):
                if bar.open_ns < paper.accepted_ns:
                    continue
                decision = self.fill_model.match(
                    side=paper.side,
                    order_type=paper.type,
                    leaves_qty=paper.leaves_qty,
                    limit_price=paper.limit_price,
                    accepted_ns=paper.accepted_ns,
                    bar=bar,
                    first_eligible=paper.status == "new",
                    qty_step=inst.qty_step,
                    price_tick=inst.price_tick,
                )
                if decision is None:
                    if paper.status == "new":
                        new = replace(paper, status="open")
                        self.db.execute(
                            "UPDATE paper_orders SET status = 'open' WHERE client_order_id = ?", (paper.client_order_id,)
                        )
                        updated.append(new)
                    continue
                qty = min(decision.qty, paper.leaves_qty)
                filled = paper.filled_qty + qty
                k = paper.fill_count + 1
                new = replace(
                    paper, filled_qty=filled, status="filled" if filled >= paper.qty else "open", fill_count=k
                )
                fee_bps = inst.maker_fee_bps if decision.liquidity is Liquidity.MAKER else inst.taker_fee_bps
                with localcontext() as ctx:
                    ctx.prec = 50
                    fee = qty * decision.price * fee_bps / BPS
                fill = Fill(
                    fill_id=f"{paper.venue_order_id}-{k}",
                    client_order_id=paper.client_order_id,
                    instrument=inst.id,
                    side=paper.side,
                    qty=qty,
                    price=decision.price,
                    fee=fee,
                    fee_asset=inst.quote,
                    liquidity=decision.liquidity,
                    ts_ns=bar.close_ns,
                )
                self.db.execute(
                    "UPDATE paper_orders SET filled_qty = ?, status = ?, fill_count = ? WHERE client_order_id = ?",
                    (dec_str(new.filled_qty), new.status, new.fill_count, new.client_order_id),
                )
                updated.append(new)
                reports.append(OrderFilled(fill))
        # The savepoint committed: now (and only now) memory follows the table.
        for new in updated:
            if new.status in LIVE_STATUSES:
                self._live[new.client_order_id] = new
                live_book = self._book[new.symbol]
                live_book[:] = [new if o.client_order_id == new.client_order_id else o for o in live_book]
            else:
                self._remove(new)
        return reports


def instruments_from_dataset(
    series: Iterable[CandleSeries | CandleFile | tuple[CandleFile, CandleSeries]],
    venue_name: str,
    qty_step: Decimal,
    min_notional_by_quote: Mapping[str, Decimal] | None = None,
    maker_fee_bps: Decimal = ZERO,
    taker_fee_bps: Decimal = ZERO,
) -> list[Instrument]:
    """Instruments for a paper venue trading a candle dataset.

    ``price_tick = 10 ** -price_decimals(series)`` (the finest price step written in the file);
    ``qty_step`` and ``min_qty = qty_step`` are given; ``min_notional`` comes from
    ``min_notional_by_quote[quote]`` (0 when the quote is not listed); fees as given (bps).

    Args:
        series: loaded series, files (loaded here to read their price decimals), or
            ``(file, series)`` pairs.
        venue_name: the paper venue's name.
        qty_step: lot step (base units), > 0.
        min_notional_by_quote: e.g. ``{"BTC": Decimal("0.0001"), "USDT": Decimal("10")}``.
        maker_fee_bps, taker_fee_bps: fees in basis points (>= 0).

    Returns:
        One instrument per input item, in the INPUT order (so it can be zipped with the series).

    Raises:
        ValidationError: bad parameter, or two items with the same symbol (field ``series``).
    """
    if qty_step <= 0:
        raise ValidationError("qty_step", f"must be > 0, got {qty_step}")
    for field, fee in (("maker_fee_bps", maker_fee_bps), ("taker_fee_bps", taker_fee_bps)):
        if fee < 0:
            raise ValidationError(field, f"must be >= 0, got {fee}")
    minimums = dict(min_notional_by_quote or {})
    result: list[Instrument] = []
    seen: dict[str, str] = {}
    for item in series:
        if isinstance(item, tuple):
            item = next((x for x in item if isinstance(x, CandleSeries)), item[0])
        loaded = item if isinstance(item, CandleSeries) else load(item)
        f = loaded.file
        if f.symbol in seen:
            raise ValidationError(
                "series", f"{f.symbol} appears twice ({seen[f.symbol]} and {f.path.name}); keep one file per symbol"
            )
        seen[f.symbol] = f.path.name
        result.append(
            Instrument(
                id=InstrumentId(venue_name, f.symbol),
                base=f.base,
                quote=f.quote,
                price_tick=Decimal(1).scaleb(-loaded.price_decimals),
                qty_step=qty_step,
                min_qty=qty_step,
                min_notional=minimums.get(f.quote, ZERO),
                maker_fee_bps=maker_fee_bps,
                taker_fee_bps=taker_fee_bps,
            )
        )
    return result
