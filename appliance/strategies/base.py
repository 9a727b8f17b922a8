"""The Strategy base class.

A strategy sees bars, fills and order events and acts only through its :class:`StrategyContext`
(submit/cancel through the OMS, read positions and balances, ask the Clock). It never touches the
database or a venue, so the same class runs unchanged in backtest, replay and live.

Lifecycle: ``on_start`` -> (``on_bar`` | ``on_fill`` | ``on_order_event``)* -> ``on_stop``.
Before ``on_start`` the manager fills each instrument's :class:`BarBuffer` to capacity with
history (at least ``warmup_bars``), so indicators are ready on the first live bar and equal those
of an instance that never stopped.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar, Protocol

import numpy as np
import pydantic

from appliance.marketdata.bar import Bar
from appliance.model.fill import Fill
from appliance.model.instrument import Instrument, InstrumentId
from appliance.model.order import Order, OrderSide, OrderType
from appliance.model.position import Position


class BarBuffer:
    """A rolling window of the last ``capacity`` bars of one instrument as float64 numpy arrays.

    ``open``, ``high``, ``low``, ``close``, ``volume`` (float64) and ``close_ns`` (int64) are
    views, oldest first, of length ``len(self)`` (<= capacity); they are ready to pass to TA-Lib
    or a numba kernel without copying. Appending is amortized O(1): the storage is twice the
    capacity and is compacted when full.
    """

    _FIELDS = ("open", "high", "low", "close", "volume")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._data = np.zeros((5, 2 * capacity), dtype=np.float64)
        self._ts = np.zeros(2 * capacity, dtype=np.int64)
        self._start = 0
        self._end = 0

    def __len__(self) -> int:
        return self._end - self._start

    def append(self, close_ns: int, o: float, h: float, l: float, c: float, v: float) -> None:
        if self._end == self._data.shape[1]:
            keep = self.capacity - 1
            self._data[:, :keep] = self._data[:, self._end - keep : self._end]
            self._ts[:keep] = self._ts[self._end - keep : self._end]
            self._start, self._end = 0, keep
        self._data[:, self._end] = (o, h, l, c, v)
        self._ts[self._end] = close_ns
        self._end += 1
        if self._end - self._start > self.capacity:
            self._start += 1

    def append_bar(self, bar: Bar) -> None:
        self.append(bar.close_ns, float(bar.open), float(bar.high), float(bar.low), float(bar.close), float(bar.volume))

    @property
    def open(self) -> np.ndarray:
        return self._data[0, self._start : self._end]

    @property
    def high(self) -> np.ndarray:
        return self._data[1, self._start : self._end]

    @property
    def low(self) -> np.ndarray:
        return self._data[2, self._start : self._end]

    @property
    def close(self) -> np.ndarray:
        return self._data[3, self._start : self._end]

    @property
    def volume(self) -> np.ndarray:
        return self._data[4, self._start : self._end]

    @property
    def close_ns(self) -> np.ndarray:
        return self._ts[self._start : self._end]


class StrategyContext(Protocol):
    """What a running strategy may do. Implemented by the strategy manager."""

    strategy_id: str

    def now_ns(self) -> int:
        """Clock time (ns since epoch, UTC)."""
        ...

    def instrument(self, instrument_id: InstrumentId) -> Instrument:
        ...

    def submit_order(
        self,
        instrument_id: InstrumentId,
        side: OrderSide,
        qty: Decimal,
        type: OrderType = OrderType.MARKET,
        limit_price: Decimal | None = None,
    ) -> Order:
        """Submit through the OMS (rounding, risk checks). Returns the order; it may be REJECTED
        (see ``order.reject_rule``) — a rejection is not an exception for a strategy."""
        ...

    def cancel_order(self, client_order_id: str) -> None:
        ...

    def open_orders(self, instrument_id: InstrumentId | None = None) -> list[Order]:
        """This strategy's non-terminal orders."""
        ...

    def position(self, instrument_id: InstrumentId) -> Position:
        """The account's position in the instrument (flat Position if none)."""
        ...

    def free_balance(self, asset: str, venue: str) -> Decimal:
        """Balance of ``asset`` on ``venue`` minus what open orders there reserve."""
        ...

    def save_state(self, state: dict[str, Any]) -> None:
        """Persist (and journal) the strategy's own state, e.g. stop levels; JSON values only."""
        ...

    def log(self, message: str, **fields: Any) -> None:
        ...


class Strategy:
    """Base class of every strategy.

    Subclasses set ``type_name``, ``description`` and ``Params`` (a pydantic model whose field
    descriptions document each parameter), and override the ``on_*`` hooks they need.

    Args:
        ctx: the strategy's context.
        instruments: the instruments it trades (validated by the manager).
        params: validated parameters.
        state: what it persisted last time through ``ctx.save_state`` (empty dict if new).
    """

    type_name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    class Params(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")

    def __init__(self, ctx: StrategyContext, instruments: list[InstrumentId], params: "Strategy.Params", state: dict) -> None:
        self.ctx = ctx
        self.instruments = list(instruments)
        self.params = params
        self.state: dict[str, Any] = dict(state)
        self.buffers: dict[InstrumentId, BarBuffer] = {i: BarBuffer(self.buffer_capacity()) for i in self.instruments}

    # -- sizing of history ------------------------------------------------------------------
    def warmup_bars(self) -> int:
        """Bars of history needed before signals are valid (default: none)."""
        return 0

    def buffer_capacity(self) -> int:
        return max(2 * self.warmup_bars(), 64)

    # -- hooks --------------------------------------------------------------------------------
    def on_start(self) -> None:
        """Called once when started (or resumed after a restart), after warm-up."""

    def on_bar(self, bar: Bar, buffer: BarBuffer) -> None:
        """Called for each closed bar of one of its instruments; ``buffer`` already holds it."""

    def on_fill(self, fill: Fill) -> None:
        """Called for each fill of one of its own orders."""

    def on_order_event(self, order: Order) -> None:
        """Called after each status change of one of its own orders."""

    def on_stop(self) -> None:
        """Called once when stopped by the operator (not on a crash)."""
