"""TrendMomentum: long-only EMA crossover with an ADX trend filter and an ATR chandelier stop.

See :class:`TrendMomentum` for the rules. Indicators come from TA-Lib over the strategy's
:class:`~appliance.strategies.base.BarBuffer` (float64 views, no copy); signals and the trailing
stop come from the numba kernels in :mod:`appliance.kernels.signals`. Floats become ``Decimal``
only at that boundary (:func:`appliance.model.money.from_kernel`); order quantities and prices
are computed in ``Decimal`` from the bar's exact close and the account's balances.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar, Literal, Mapping

import pydantic
import talib
from pydantic import Field, field_validator

from appliance.kernels.signals import cross_signal, trailing_stop, trend_filter
from appliance.marketdata.bar import Bar
from appliance.model.errors import ValidationError
from appliance.model.fill import Fill
from appliance.model.instrument import Instrument, InstrumentId
from appliance.model.money import ZERO, dec_str, from_kernel, parse_decimal
from appliance.model.order import Order, OrderSide, OrderStatus, OrderType
from appliance.strategies.base import BarBuffer, Strategy, StrategyContext

_NAN = float("nan")
_HUNDRED = Decimal(100)
_SIG_DIGITS = 12  # significant digits kept when a kernel price (a stop) becomes a Decimal
_FINALIZED_MEMORY = 256  # terminal order ids remembered to ignore late duplicate fills


def _price_from_kernel(value: float) -> Decimal:
    """A kernel price (float64) as a Decimal with ``_SIG_DIGITS`` significant digits."""
    if value == 0.0:
        return ZERO
    exponent = math.floor(math.log10(abs(value)))
    places = max(0, min(30, _SIG_DIGITS - 1 - exponent))
    return from_kernel(value, places)


@dataclass
class _Book:
    """The strategy's own view of its position in one instrument (what it persists).

    ``entry is None`` means flat. ``stop_f`` mirrors ``stop`` as ``float(stop)`` (NaN for none)
    so the kernel sees exactly the persisted value, before and after a restart.
    """

    entry: Decimal | None = None  # average entry price (quote per base)
    entry_qty: Decimal = ZERO  # base bought by the entry order
    entry_order: str = ""  # client order id of the entry order
    stop: Decimal | None = None  # stop level (quote per base)
    exiting: bool = False  # an exit was decided and is not complete yet
    pending_entry: str = ""  # client order id of a working entry order (flat until it fills)
    stop_f: float = _NAN

    @property
    def in_position(self) -> bool:
        return self.entry is not None

    @property
    def persisted(self) -> bool:
        return self.entry is not None or bool(self.pending_entry)

    def set_stop(self, stop: Decimal | None) -> None:
        self.stop = stop
        self.stop_f = _NAN if stop is None else float(stop)

    def clear(self) -> None:
        self.entry, self.entry_qty, self.entry_order, self.exiting, self.pending_entry = None, ZERO, "", False, ""
        self.set_stop(None)

    def to_json(self) -> dict[str, Any]:
        return {
            "entry": dec_str(self.entry) if self.entry is not None else None,
            "entry_qty": dec_str(self.entry_qty),
            "entry_order": self.entry_order,
            "stop": dec_str(self.stop) if self.stop is not None else None,
            "exiting": self.exiting,
            "pending_entry": self.pending_entry,
        }

    @classmethod
    def from_json(cls, key: str, raw: Any) -> "_Book":
        where = f"state.positions[{key}]"
        if not isinstance(raw, Mapping):
            raise ValidationError(where, f"must be an object, got {type(raw).__name__}")
        book = cls()
        if raw.get("entry") is not None:
            book.entry = parse_decimal(raw["entry"], f"{where}.entry", positive=True)
        book.entry_qty = parse_decimal(raw.get("entry_qty", "0"), f"{where}.entry_qty", non_negative=True)
        book.entry_order = str(raw.get("entry_order", ""))
        if raw.get("stop") is not None:
            book.set_stop(parse_decimal(raw["stop"], f"{where}.stop"))
        book.exiting = bool(raw.get("exiting", False))
        book.pending_entry = str(raw.get("pending_entry", "") or "")
        return book


class TrendMomentum(Strategy):
    """Long-only spot trend follower: EMA crossover entries, ADX filter, ATR chandelier stop.

    Rules, per instrument, evaluated on each closed bar (``on_bar``) with TA-Lib indicators on
    the bar buffer (which already contains the bar):

    * **Entry** — when the strategy is flat in the instrument (no position of its own and no
      sellable base held in the account), has no open order of its own there, the fast EMA
      crosses above the slow EMA on this bar (``fast[-2] <= slow[-2]`` and
      ``fast[-1] > slow[-1]``) and ADX >= ``adx_min``: buy
      ``qty = free_quote * position_size_pct / 100 / close`` (``Decimal``; the OMS rounds it to
      the lot step). ``order_type="limit"`` places the buy at the bar's close instead and
      cancels it if it is still open at the next bar.
    * **Initial stop** — at the entry fill: ``entry_price - atr_stop_mult * ATR`` with the ATR
      of the signal bar (average entry price if the order fills in several parts; a later part
      never lowers the stop).
    * **Trailing** — if ``trailing``, after each bar that does not exit the stop becomes
      ``max(stop, close - atr_stop_mult * ATR)``: raised, never lowered (chandelier exit).
    * **Exit** — market sell of the whole position (capped by the free base balance) when the
      bar's close <= the stop in force before the bar, or the fast EMA crosses below the slow
      EMA. An exit that is rejected, canceled or expires is retried on every following bar
      until it fills or what is left is below the venue's minimums (dust).
    * It never submits while it has an open order on that instrument.

    State: per instrument ``entry``, ``entry_qty``, ``entry_order``, ``stop`` and ``exiting``
    are saved with ``ctx.save_state`` whenever they change (never on an unchanged bar) and are
    restored from ``state`` at construction, so a restarted instance continues the same trade
    with the same stop. ``warmup_bars`` is long enough for the recursive indicators to forget
    their seed (see :meth:`warmup_bars`), so a restarted instance warmed with that many bars
    computes the same indicator values as one that ran through.

    Assumptions: the strategy owns the instrument's base asset in the account (it does not
    enter while the account holds a sellable amount it did not buy, and it sells the whole
    position); exits are market orders whatever ``order_type`` is; stops are evaluated on
    closes, not intrabar.

    Sources:
        * EMA crossover: the classic dual moving-average crossover trend system.
        * ADX and ATR (and Wilder's smoothing): J. Welles Wilder Jr., *New Concepts in
          Technical Trading Systems*, Trend Research, 1978 (as implemented by TA-Lib).
        * Chandelier exit: Chuck LeBeau (popularised in A. Elder, *Come Into My Trading
          Room*, 2002): a long stop hung a multiple of ATR below the price, only raised.
    """

    type_name: ClassVar[str] = "trend_momentum"
    description: ClassVar[str] = (
        "Long-only spot trend following: buy when the fast EMA crosses above the slow EMA while "
        "ADX >= adx_min; sell on the opposite cross or when the close breaches an ATR "
        "chandelier stop (entry - atr_stop_mult*ATR, optionally trailed)."
    )

    #: Settling time of the recursive indicators, in time constants (see ``warmup_bars``).
    SETTLE_TIME_CONSTANTS: ClassVar[int] = 20
    STATE_VERSION: ClassVar[int] = 1

    class Params(Strategy.Params):
        """Parameters of :class:`TrendMomentum`. Strings are accepted for every field (the API
        passes ``map<string,string>``): ``"12"``, ``"2.5"``, ``"true"``, ``"10"``.

        Periods are in bars of the strategy's timeframe. ``slow_period`` must be greater than
        ``fast_period``. Indicators: EMA (exponential moving average, alpha = 2/(n+1), seeded
        with the SMA of the first n closes as TA-Lib does), ADX and ATR after Wilder (1978).
        """

        fast_period: int = Field(12, ge=2, le=400, description="Period of the fast EMA of closes, in bars.")
        slow_period: int = Field(
            26,
            ge=3,
            le=500,
            validate_default=True,  # so fast_period=30 alone is refused too
            description="Period of the slow EMA of closes, in bars; must be greater than fast_period.",
        )
        adx_period: int = Field(14, ge=2, le=100, description="Period of Wilder's ADX (trend strength), in bars.")
        adx_min: float = Field(
            25.0,
            ge=0,
            le=100,
            allow_inf_nan=False,
            description="Trend filter: enter only if ADX >= adx_min (ADX points, 0-100).",
        )
        atr_period: int = Field(14, ge=1, le=100, description="Period of Wilder's ATR used for the stop, in bars.")
        atr_stop_mult: float = Field(
            2.5,
            gt=0,
            le=50,
            allow_inf_nan=False,
            description="Stop distance in ATRs: stop = entry price - atr_stop_mult * ATR (chandelier exit).",
        )
        trailing: bool = Field(
            True, description="Raise the stop to close - atr_stop_mult * ATR after each bar (never lower it)."
        )
        position_size_pct: Decimal = Field(
            Decimal("10"),
            gt=0,
            le=100,
            allow_inf_nan=False,
            description="Percent of the free quote balance spent on one entry.",
        )
        order_type: Literal["market", "limit"] = Field(
            "market",
            description=(
                "Entry order type: market, or limit at the signal bar's close (canceled if still open at "
                "the next bar). Exits are always market orders."
            ),
        )

        @field_validator("slow_period")
        @classmethod
        def _slow_above_fast(cls, value: int, info: pydantic.ValidationInfo) -> int:
            fast = info.data.get("fast_period")
            if fast is not None and value <= fast:
                raise ValueError(f"slow_period must be greater than fast_period ({fast}), got {value}")
            return value

    params: "TrendMomentum.Params"

    def __init__(
        self,
        ctx: StrategyContext,
        instruments: list[InstrumentId],
        params: "TrendMomentum.Params | Mapping[str, Any]",
        state: dict,
    ) -> None:
        """See :class:`~appliance.strategies.base.Strategy`.

        ``params`` may also be a mapping (e.g. the API's strings); it is then validated.

        Raises:
            pydantic.ValidationError: invalid ``params`` (the error's ``loc`` names the field).
            ValidationError: a malformed saved ``state`` (``field`` names the entry).
        """
        if not isinstance(params, TrendMomentum.Params):
            params = TrendMomentum.Params.model_validate(dict(params))
        super().__init__(ctx, instruments, params, state)
        self._books: dict[InstrumentId, _Book] = {i: _Book() for i in self.instruments}
        self._foreign: dict[str, Any] = {}  # saved entries of instruments no longer traded: kept as is
        self._pending: dict[InstrumentId, str] = {}  # order we submitted and have not seen end
        self._cancel_requested: set[str] = set()
        self._entry_atr: dict[InstrumentId, float] = {}  # ATR of the entry signal bar
        self._finalized: dict[str, None] = {}  # terminal order ids (ordered set, bounded)
        self._last_saved: dict[str, Any] | None = None
        self._restore(self.state)

    # -- sizing of history ------------------------------------------------------------------
    def lookback_bars(self) -> int:
        """Bars needed before every indicator has a value and the EMAs two points.

        EMA(n) is defined from bar n-1, ATR(n) from bar n, ADX(n) from bar 2n-1 (TA-Lib).
        """
        p = self.params
        return max(p.slow_period + 1, 2 * p.adx_period, p.atr_period + 1)

    def warmup_bars(self) -> int:
        """History needed before signals are valid and reproducible.

        ``lookback_bars()`` plus ``SETTLE_TIME_CONSTANTS`` time constants of the slowest
        recursive smoothing (EMA(n): (n+1)/2 bars; Wilder's ADX/ATR smoothing: n bars), so the
        indicators have forgotten how they were seeded (~e^-20): an instance restarted with this
        much history computes the same values as one that ran through. Defaults: 28 + 20*14 = 308.
        """
        p = self.params
        tau = max((p.slow_period + 1) / 2.0, float(p.adx_period), float(p.atr_period))
        return self.lookback_bars() + int(math.ceil(self.SETTLE_TIME_CONSTANTS * tau))

    # -- persistence --------------------------------------------------------------------------
    def _restore(self, state: Mapping[str, Any]) -> None:
        if not state:
            return
        version = state.get("version", self.STATE_VERSION)
        if version != self.STATE_VERSION:
            raise ValidationError("state.version", f"unsupported version {version!r}, expected {self.STATE_VERSION}")
        positions = state.get("positions", {})
        if not isinstance(positions, Mapping):
            raise ValidationError("state.positions", "must be an object")
        by_key = {str(i): i for i in self.instruments}
        for key, raw in positions.items():
            inst = by_key.get(key)
            if inst is None:
                self._foreign[key] = raw
                continue
            self._books[inst] = _Book.from_json(key, raw)
        self._last_saved = self._snapshot()

    def _snapshot(self) -> dict[str, Any]:
        positions: dict[str, Any] = dict(self._foreign)
        for inst, book in self._books.items():
            if book.persisted:
                positions[str(inst)] = book.to_json()
        return {"version": self.STATE_VERSION, "positions": positions}

    def _save(self) -> None:
        """Persist the books if (and only if) they differ from what was saved last."""
        snap = self._snapshot()
        if snap == self._last_saved:
            return
        self._last_saved = snap
        self.state = snap
        self.ctx.save_state(snap)

    # -- helpers ------------------------------------------------------------------------------
    def _busy(self, inst: InstrumentId) -> bool:
        """Whether this strategy has an open order on ``inst`` (the OMS's view is authoritative;
        a pending id the OMS no longer lists is an order whose end we missed: forgotten)."""
        if self.ctx.open_orders(inst):
            return True
        self._pending.pop(inst, None)
        return False

    def _held_qty(self, instrument: Instrument) -> Decimal:
        """Base the strategy could sell: the position, capped by the free base balance."""
        qty = self.ctx.position(instrument.id).qty
        if qty <= 0:
            return ZERO
        return min(qty, self.ctx.free_balance(instrument.base, instrument.id.venue))

    @staticmethod
    def _is_dust(instrument: Instrument, qty: Decimal, price: Decimal | None) -> bool:
        """True if ``qty`` cannot be traded: it rounds to 0 or is below the venue minimums
        (the minimum notional is checked only when ``price`` is known)."""
        rounded = instrument.round_qty(qty) if qty > 0 else ZERO
        if rounded <= 0 or rounded < instrument.min_qty:
            return True
        if price is None or price <= 0:
            return False
        try:
            instrument.check_order_size(rounded, price)
        except ValidationError:
            return True
        return False

    def _submit(
        self,
        inst: InstrumentId,
        side: OrderSide,
        qty: Decimal,
        order_type: OrderType = OrderType.MARKET,
        limit_price: Decimal | None = None,
    ) -> Order | None:
        """Submit through the context. Returns the order (open or REJECTED), or ``None`` when the
        OMS refused the input (``ValidationError``, e.g. below the venue minimums at its mark)."""
        try:
            order = self.ctx.submit_order(inst, side, qty, order_type, limit_price)
        except ValidationError as exc:
            self.ctx.log("order refused by the OMS", instrument=str(inst), side=side.value, qty=dec_str(qty),
                         field=exc.field, reason=exc.reason)
            return None
        if order.is_open and order.client_order_id not in self._finalized:
            self._pending[inst] = order.client_order_id
        elif not order.is_open:
            self._finalized_add(order.client_order_id)
            self.ctx.log(
                "order not accepted",
                strategy=self.type_name,
                instrument=str(inst),
                side=side.value,
                client_order_id=order.client_order_id,
                status=order.status.value,
                reject_rule=order.reject_rule,
                reason=order.reason,
            )
        return order

    def _finalized_add(self, client_order_id: str) -> None:
        self._finalized[client_order_id] = None
        while len(self._finalized) > _FINALIZED_MEMORY:
            del self._finalized[next(iter(self._finalized))]

    def _atr_now(self, buffer: BarBuffer) -> float:
        if len(buffer) <= self.params.atr_period:
            return _NAN
        return float(talib.ATR(buffer.high, buffer.low, buffer.close, timeperiod=self.params.atr_period)[-1])

    # -- hooks --------------------------------------------------------------------------------
    def on_start(self) -> None:
        """Reconcile the restored books with the account (after a restart).

        * A book in position whose base is gone (closed while the appliance was down, or by an
          operator) is cleared.
        * A working entry that ended while the strategy could not see it: if the account now holds
          the base it is adopted (entry = the position's average price, stop from the current
          ATR); otherwise the marker is dropped.
        Instruments with an open order of this strategy are left alone: their events will follow.
        """
        for inst, book in self._books.items():
            if not book.persisted or self.ctx.open_orders(inst):
                continue
            instrument = self.ctx.instrument(inst)
            held = self._held_qty(instrument)
            if book.in_position:
                if self._is_dust(instrument, held, book.entry):
                    self.ctx.log("position gone while stopped; book cleared", instrument=str(inst),
                                 entry=dec_str(book.entry))
                    book.clear()
                else:
                    book.pending_entry = ""
                continue
            avg = self.ctx.position(inst).avg_price
            if self._is_dust(instrument, held, avg):
                self.ctx.log("entry order ended while stopped without a position", instrument=str(inst),
                             client_order_id=book.pending_entry)
                book.clear()
            else:
                self.ctx.log("adopting the entry filled while stopped", instrument=str(inst),
                             client_order_id=book.pending_entry, qty=dec_str(held), avg_price=dec_str(avg))
                self._book_entry(inst, book, avg, held, book.pending_entry)
        self._save()

    def on_bar(self, bar: Bar, buffer: BarBuffer) -> None:
        """Evaluate the rules for ``bar.instrument`` (see the class docstring)."""
        inst = bar.instrument
        book = self._books.get(inst)
        if book is None:
            return
        if self._busy(inst):
            if self.params.order_type == "limit":
                self._cancel_stale_limits(inst, bar)
            return
        p = self.params
        enough = len(buffer) >= self.lookback_bars()
        if book.in_position:
            if book.exiting:
                self._exit(inst, book, bar, "retry")
                return
            if book.stop is not None and bar.close <= book.stop:
                self._exit(inst, book, bar, "stop")
                return
            if not enough:
                return
            close = buffer.close
            fast = talib.EMA(close, timeperiod=p.fast_period)
            slow = talib.EMA(close, timeperiod=p.slow_period)
            if cross_signal(fast, slow) == -1:
                self._exit(inst, book, bar, "cross_down")
                return
            if p.trailing:
                new = trailing_stop(book.stop_f, float(close[-1]), self._atr_now(buffer), p.atr_stop_mult)
                if not math.isnan(new):
                    new_stop = _price_from_kernel(new)
                    if book.stop is None or new_stop > book.stop:
                        book.set_stop(new_stop)
                        self._save()
            return
        if not enough:
            return
        close = buffer.close
        fast = talib.EMA(close, timeperiod=p.fast_period)
        slow = talib.EMA(close, timeperiod=p.slow_period)
        if cross_signal(fast, slow) != 1:
            return
        adx = talib.ADX(buffer.high, buffer.low, close, timeperiod=p.adx_period)
        if not trend_filter(adx, p.adx_min):
            return
        self._enter(inst, bar, buffer, float(adx[-1]))

    def _enter(self, inst: InstrumentId, bar: Bar, buffer: BarBuffer, adx: float) -> None:
        p = self.params
        instrument = self.ctx.instrument(inst)
        held = self._held_qty(instrument)
        if not self._is_dust(instrument, held, bar.close):
            self.ctx.log("entry signal ignored: account holds a position this strategy did not open",
                         instrument=str(inst), qty=dec_str(held))
            return
        atr = self._atr_now(buffer)
        if math.isnan(atr):
            return
        free_quote = self.ctx.free_balance(instrument.quote, instrument.id.venue)
        if free_quote <= 0 or bar.close <= 0:
            self.ctx.log("entry signal ignored: no free quote balance", instrument=str(inst), asset=instrument.quote)
            return
        qty = free_quote * p.position_size_pct / _HUNDRED / bar.close
        if self._is_dust(instrument, qty, bar.close):
            self.ctx.log("entry signal ignored: size below the venue minimums", instrument=str(inst),
                         qty=dec_str(qty), free_quote=dec_str(free_quote))
            return
        self._entry_atr[inst] = atr
        if p.order_type == "limit":
            order = self._submit(inst, OrderSide.BUY, qty, OrderType.LIMIT, bar.close)
        else:
            order = self._submit(inst, OrderSide.BUY, qty)
        if order is None:
            return
        book = self._books[inst]
        if order.is_open and not book.in_position:
            book.pending_entry = order.client_order_id
            self._save()
        self.ctx.log(
            "entry",
            instrument=str(inst),
            client_order_id=order.client_order_id,
            qty=dec_str(qty),
            close=dec_str(bar.close),
            adx=dec_str(from_kernel(adx, 6)),
            atr=dec_str(_price_from_kernel(atr)),
        )

    def _exit(self, inst: InstrumentId, book: _Book, bar: Bar, reason: str) -> None:
        instrument = self.ctx.instrument(inst)
        qty = self._held_qty(instrument)
        if self._is_dust(instrument, qty, bar.close):
            self.ctx.log("position is flat or dust; book closed", instrument=str(inst), qty=dec_str(qty), reason=reason)
            book.clear()
            self._save()
            return
        if not book.exiting:
            book.exiting = True
            self._save()
        order = self._submit(inst, OrderSide.SELL, qty)
        self.ctx.log(
            "exit",
            instrument=str(inst),
            client_order_id=order.client_order_id if order is not None else "",
            reason=reason,
            qty=dec_str(qty),
            close=dec_str(bar.close),
            stop=dec_str(book.stop) if book.stop is not None else "",
        )

    def _cancel_stale_limits(self, inst: InstrumentId, bar: Bar) -> None:
        for order in self.ctx.open_orders(inst):
            if (
                order.type is OrderType.LIMIT
                and order.side is OrderSide.BUY
                and order.created_ns < bar.close_ns
                and order.client_order_id not in self._cancel_requested
            ):
                self._cancel_requested.add(order.client_order_id)
                self.ctx.cancel_order(order.client_order_id)

    def on_fill(self, fill: Fill) -> None:
        """Book an entry fill: average entry price and initial stop (a sell needs no booking)."""
        book = self._books.get(fill.instrument)
        if book is None or fill.side is not OrderSide.BUY or fill.client_order_id in self._finalized:
            return
        if book.in_position:
            total = book.entry_qty + fill.qty
            entry = (book.entry * book.entry_qty + fill.price * fill.qty) / total
        else:
            total, entry = fill.qty, fill.price
        self._book_entry(fill.instrument, book, entry, total, fill.client_order_id)

    def _book_entry(self, inst: InstrumentId, book: _Book, entry: Decimal, qty: Decimal, client_order_id: str) -> None:
        book.entry, book.entry_qty, book.entry_order, book.exiting = entry, qty, client_order_id, False
        book.pending_entry = ""
        atr = self._entry_atr.get(inst)
        if atr is None:
            atr = self._atr_now(self.buffers[inst])
        initial = trailing_stop(_NAN, float(entry), atr, self.params.atr_stop_mult)
        if not math.isnan(initial):
            stop = _price_from_kernel(initial)
            if book.stop is None or stop > book.stop:
                book.set_stop(stop)
        self._save()

    def on_order_event(self, order: Order) -> None:
        """Clear the pending flag when an order ends; reconcile the entry from the order's own
        totals; close the book when the exit order is FILLED (otherwise the exit is retried)."""
        inst = order.instrument
        book = self._books.get(inst)
        if book is None or not order.status.is_terminal:
            return
        coid = order.client_order_id
        if self._pending.get(inst) == coid:
            del self._pending[inst]
        self._cancel_requested.discard(coid)
        already = coid in self._finalized
        self._finalized_add(coid)
        if order.side is OrderSide.BUY:
            if not already and order.filled_qty > 0 and (
                not book.in_position or (book.entry_order == coid and book.entry_qty != order.filled_qty)
            ):
                self._book_entry(inst, book, order.avg_fill_price, order.filled_qty, coid)
            self._entry_atr.pop(inst, None)
            if book.pending_entry == coid:
                book.pending_entry = ""
                self._save()
            if order.status is not OrderStatus.FILLED and not already:
                self.ctx.log("entry order ended", instrument=str(inst), client_order_id=coid,
                             status=order.status.value, filled_qty=dec_str(order.filled_qty),
                             reject_rule=order.reject_rule, reason=order.reason)
        elif book.in_position:
            if order.status is OrderStatus.FILLED:
                book.clear()
                self._save()
            elif not already:
                self.ctx.log("exit order ended unfilled; retrying next bar", instrument=str(inst),
                             client_order_id=coid, status=order.status.value, reason=order.reason)
