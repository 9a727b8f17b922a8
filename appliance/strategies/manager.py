"""The strategy manager: creates, starts, stops and feeds strategies; gives each its context.

Strategies are persisted (type, parameters, instruments, status, own state) and every change is
journaled. After a restart, strategies that were RUNNING are resumed: their bar buffers are
warmed from history up to the replay position and ``on_start`` is called again with the state
they saved.

A strategy's exceptions are contained: the strategy goes to ERROR with the message, and the
others go on. What it did before raising (e.g. an order it submitted) stands: every OMS call is
complete and consistent on its own, so there is nothing half-done to undo.
"""

from __future__ import annotations

import enum
import json
import logging
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Mapping

from appliance.engine.clock import Clock
from appliance.marketdata.bar import Bar, BarSlice
from appliance.model.errors import AlreadyExistsError, NotFoundError, PreconditionError, ValidationError
from appliance.model.fill import Fill
from appliance.model.instrument import Instrument, InstrumentId
from appliance.model.order import Order, OrderSide, OrderType
from appliance.model.position import Position
from appliance.execution.oms import OrderManager, OrderRequest
from appliance.portfolio.service import Portfolio
from appliance.store.db import Database
from appliance.store.journal import Journal
from appliance.strategies.base import Strategy
from appliance.strategies.registry import parse_params

log = logging.getLogger("lyra.strategies")

_STRATEGY_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")

HistoryProvider = Callable[[InstrumentId, int], list[Bar]]


class StrategyStatus(str, enum.Enum):
    CREATED = "CREATED"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    ERROR = "ERROR"


@dataclass(slots=True)
class StrategyRecord:
    """A strategy as stored: identity, configuration, status and its own persisted state."""

    strategy_id: str
    type: str
    params: dict[str, Any]
    instruments: list[InstrumentId]
    status: StrategyStatus
    state: dict[str, Any]
    last_error: str
    created_ns: int
    updated_ns: int
    instance: Strategy | None = None


class _Context:
    """The StrategyContext handed to one strategy."""

    def __init__(self, manager: "StrategyManager", strategy_id: str) -> None:
        self._m = manager
        self.strategy_id = strategy_id

    def now_ns(self) -> int:
        return self._m.clock.now_ns()

    def instrument(self, instrument_id: InstrumentId) -> Instrument:
        return self._m.instruments[instrument_id]

    def submit_order(self, instrument_id: InstrumentId, side: OrderSide, qty: Decimal,
                     type: OrderType = OrderType.MARKET, limit_price: Decimal | None = None) -> Order:
        return self._m.oms.submit(OrderRequest(instrument_id, side, type, qty, limit_price, strategy_id=self.strategy_id))

    def cancel_order(self, client_order_id: str) -> None:
        order = self._m.oms.get(client_order_id)
        if order.strategy_id != self.strategy_id:
            raise PreconditionError(f"order {client_order_id} belongs to {order.strategy_id}")
        self._m.oms.cancel(client_order_id, reason=f"canceled by strategy {self.strategy_id}")

    def open_orders(self, instrument_id: InstrumentId | None = None) -> list[Order]:
        return [o for o in self._m.oms.open_orders.values()
                if o.strategy_id == self.strategy_id and (instrument_id is None or o.instrument == instrument_id)]

    def position(self, instrument_id: InstrumentId) -> Position:
        return self._m.portfolio.position(instrument_id)

    def free_balance(self, asset: str, venue: str) -> Decimal:
        return self._m.portfolio.free_balance(asset, venue)

    def save_state(self, state: dict[str, Any]) -> None:
        self._m._save_state(self.strategy_id, state)

    def log(self, message: str, **fields: Any) -> None:
        log.info("strategy %s: %s %s", self.strategy_id, message, json.dumps(fields, default=str) if fields else "")


class StrategyManager:
    """Owns strategy instances and routes bars, fills and order events to them.

    Args:
        db, journal, clock: store and time.
        oms, portfolio: what strategies act on.
        instruments: known instruments (a strategy may only trade these).
        types: strategy type name -> class (the registry).
        history: ``history(instrument, n)`` -> the last n bars up to the current replay position
            (live: the last n closed bars of the live bar feed).

    Attributes:
        unavailable_reason: when set, no strategy can start (the mode cannot feed bars at all).
        bar_check: ``bar_check(instrument)`` -> why no bars can be fed for it now (None when they
            can); a strategy starts (or resumes after a restart) only when all its instruments pass.
        on_instruments_used: called with a strategy's instruments when it is created or started
            (live mode subscribes the bar feed to them).
    """

    def __init__(self, db: Database, journal: Journal, clock: Clock, oms: OrderManager, portfolio: Portfolio,
                 instruments: Mapping[InstrumentId, Instrument], types: Mapping[str, type[Strategy]],
                 history: HistoryProvider) -> None:
        self.db = db
        self.journal = journal
        self.clock = clock
        self.oms = oms
        self.portfolio = portfolio
        self.instruments = instruments
        self.types = types
        self.history = history
        self.on_first_start: Callable[[], None] | None = None
        self.unavailable_reason = ""  # set when this mode cannot feed strategies bars
        self.bar_check: Callable[[InstrumentId], str | None] | None = None
        self.on_instruments_used: Callable[[list[InstrumentId]], None] | None = None
        self.records: dict[str, StrategyRecord] = {}
        for row in db.query("SELECT strategy_id, type, params, instruments, status, state, last_error, created_ns, updated_ns "
                            "FROM strategies ORDER BY created_ns, strategy_id"):
            self.records[row[0]] = StrategyRecord(
                row[0], row[1], json.loads(row[2]), [InstrumentId.parse(t) for t in json.loads(row[3])],
                StrategyStatus(row[4]), json.loads(row[5]), row[6], row[7], row[8],
            )
        oms.fill_listeners.append(self._on_fill)
        oms.order_listeners.append(self._on_order)

    # -- operator commands (inside an engine message) -------------------------------------------
    def create(self, type_name: str, instruments: list[str], params: Mapping[str, str], strategy_id: str = "") -> StrategyRecord:
        """Create a strategy (status CREATED).

        Raises:
            ValidationError: unknown type, bad id, unknown/duplicate instrument, or bad parameter
                (field named ``params.<name>``); nothing is created.
            AlreadyExistsError: the id is taken.
        """
        cls = self.types.get(type_name)
        if cls is None:
            raise ValidationError("type", f"unknown strategy type {type_name!r}; known: {', '.join(sorted(self.types))}")
        if not instruments:
            raise ValidationError("instruments", "at least one instrument is required")
        parsed: list[InstrumentId] = []
        for i, text in enumerate(instruments):
            iid = InstrumentId.parse(text, default_venue=self._default_venue(), field=f"instruments[{i}]")
            if iid not in self.instruments:
                raise ValidationError(f"instruments[{i}]", f"unknown instrument {iid}")
            if iid in parsed:
                raise ValidationError(f"instruments[{i}]", f"{iid} is listed twice")
            parsed.append(iid)
        validated = self._validate_params(cls, params)
        if self.on_instruments_used is not None:
            self.on_instruments_used(parsed)
        if not strategy_id:
            strategy_id = f"{type_name.replace('_', '-')}-{len(self.records) + 1}"
            while strategy_id in self.records:
                strategy_id += "x"
        if not _STRATEGY_ID.match(strategy_id):
            raise ValidationError("strategy_id", "must be 1-64 chars of a-z 0-9 _ . - starting with a letter or digit")
        if strategy_id in self.records:
            raise AlreadyExistsError(f"strategy {strategy_id!r} exists already")
        now = self.clock.now_ns()
        record = StrategyRecord(strategy_id, type_name, validated, parsed, StrategyStatus.CREATED, {}, "", now, now)
        self.db.execute(
            "INSERT INTO strategies(strategy_id, type, params, instruments, status, state, last_error, created_ns, updated_ns) "
            "VALUES (?,?,?,?,?,?,?,?,?)",
            (strategy_id, type_name, json.dumps(validated), json.dumps([str(i) for i in parsed]), record.status.value, "{}", "", now, now),
        )
        self.journal.append(now, "StrategyCreated", "strategy", strategy_id,
                            {"type": type_name, "params": validated, "instruments": [str(i) for i in parsed]})
        self.records[strategy_id] = record
        return record

    def start(self, strategy_id: str) -> StrategyRecord:
        """Start (or restart after STOPPED/ERROR) a strategy.

        Raises:
            NotFoundError: unknown id.
            PreconditionError: already running, or no bars can be fed for one of its instruments
                (the message names it).
        """
        record = self.get(strategy_id)
        if self.unavailable_reason:
            raise PreconditionError(self.unavailable_reason)
        if record.status is StrategyStatus.RUNNING:
            raise PreconditionError(f"strategy {strategy_id} is already running")
        if self.on_instruments_used is not None:
            self.on_instruments_used(list(record.instruments))
        problem = self.bars_problem(record)
        if problem:
            raise PreconditionError(f"strategy {strategy_id} cannot start: {problem}")
        self._activate(record)
        self._set_status(record, StrategyStatus.RUNNING, "StrategyStarted")
        if self.on_first_start is not None:
            self.on_first_start()
        return record

    def stop(self, strategy_id: str) -> StrategyRecord:
        """Stop a running strategy (its open orders stay; cancel them explicitly if wanted).

        Raises:
            NotFoundError: unknown id.
            PreconditionError: not running.
        """
        record = self.get(strategy_id)
        if record.status is not StrategyStatus.RUNNING:
            raise PreconditionError(f"strategy {strategy_id} is {record.status.value}, not RUNNING")
        if record.instance is not None:
            self._guarded(record, record.instance.on_stop)
        record.instance = None
        self._set_status(record, StrategyStatus.STOPPED, "StrategyStopped")
        return record

    def get(self, strategy_id: str) -> StrategyRecord:
        record = self.records.get(strategy_id)
        if record is None:
            raise NotFoundError(f"strategy {strategy_id!r} not found")
        return record

    def list(self) -> list[StrategyRecord]:
        return list(self.records.values())

    def bars_problem(self, record: StrategyRecord) -> str | None:
        """Why bars cannot be fed to ``record``'s instruments now (see ``bar_check``), or None."""
        if self.bar_check is None:
            return None
        for iid in record.instruments:
            problem = self.bar_check(iid)
            if problem:
                return problem
        return None

    def resume_running(self) -> list[str]:
        """Re-activate strategies that were RUNNING before a restart. Returns their ids.

        A strategy whose instruments have no bars yet (``bar_check``; live mode before its feed
        has loaded) stays RUNNING without an instance and is resumed by a later call."""
        resumed = []
        for record in self.records.values():
            if record.status is StrategyStatus.RUNNING and record.instance is None:
                if self.bars_problem(record):
                    continue
                self._activate(record)
                self.journal.append(self.clock.now_ns(), "StrategyResumed", "strategy", record.strategy_id, {})
                resumed.append(record.strategy_id)
        return resumed

    @property
    def any_running(self) -> bool:
        return any(r.status is StrategyStatus.RUNNING for r in self.records.values())

    # -- market data and reports ---------------------------------------------------------------------
    def on_slice(self, slice_: BarSlice) -> None:
        """Feed each bar to the running strategies that trade its instrument."""
        for bar in slice_.bars:
            for record in self.records.values():
                instance = record.instance
                if instance is None or record.status is not StrategyStatus.RUNNING or bar.instrument not in instance.buffers:
                    continue
                buffer = instance.buffers[bar.instrument]
                if len(buffer) and bar.close_ns <= buffer.close_ns[-1]:
                    continue  # already in the buffer (live: warmed up with it before the slice was handled)
                buffer.append_bar(bar)
                self._guarded(record, lambda: instance.on_bar(bar, buffer))

    def _on_fill(self, fill: Fill, order: Order) -> None:
        record = self.records.get(order.strategy_id)
        if record is not None and record.instance is not None and record.status is StrategyStatus.RUNNING:
            instance = record.instance
            self._guarded(record, lambda: instance.on_fill(fill))

    def _on_order(self, order: Order) -> None:
        record = self.records.get(order.strategy_id)
        if record is not None and record.instance is not None and record.status is StrategyStatus.RUNNING:
            instance = record.instance
            self._guarded(record, lambda: instance.on_order_event(order))

    # -- internals --------------------------------------------------------------------------------
    def _default_venue(self) -> str | None:
        venues = {i.venue for i in self.instruments}
        return next(iter(venues)) if len(venues) == 1 else None

    @staticmethod
    def _validate_params(cls: type[Strategy], params: Mapping[str, str]) -> dict[str, Any]:
        return json.loads(parse_params(cls, params).model_dump_json())

    def _activate(self, record: StrategyRecord) -> None:
        cls = self.types.get(record.type)
        if cls is None:
            raise PreconditionError(f"strategy type {record.type!r} is not available in this build")
        params = parse_params(cls, record.params)
        instance = cls(_Context(self, record.strategy_id), record.instruments, params, record.state)
        # fill each buffer to capacity (not just warmup_bars): indicators computed over the whole
        # window then equal, bit for bit, those of an instance that never stopped
        for iid in record.instruments:
            for bar in self.history(iid, instance.buffers[iid].capacity):
                instance.buffers[iid].append_bar(bar)
        record.instance = instance
        self._guarded(record, instance.on_start)

    def _guarded(self, record: StrategyRecord, hook: Callable[[], None]) -> None:
        try:
            hook()
        except Exception as exc:  # strategy code is not trusted to be correct
            log.exception("strategy %s failed", record.strategy_id)
            record.instance = None
            record.last_error = f"{type(exc).__name__}: {exc}"[:500]
            self._set_status(record, StrategyStatus.ERROR, "StrategyFailed")

    def _set_status(self, record: StrategyRecord, status: StrategyStatus, event: str) -> None:
        now = self.clock.now_ns()
        record.status = status
        record.updated_ns = now
        if status is not StrategyStatus.ERROR:
            record.last_error = ""
        self.db.execute("UPDATE strategies SET status=?, last_error=?, updated_ns=? WHERE strategy_id=?",
                        (status.value, record.last_error, now, record.strategy_id))
        self.journal.append(now, event, "strategy", record.strategy_id, {"status": status.value, "error": record.last_error})

    def _save_state(self, strategy_id: str, state: dict[str, Any]) -> None:
        record = self.get(strategy_id)
        try:
            text = json.dumps(state, sort_keys=True)
        except TypeError as exc:
            raise ValidationError("state", f"strategy state must be JSON values: {exc}") from None
        record.state = json.loads(text)
        now = self.clock.now_ns()
        self.db.execute("UPDATE strategies SET state=?, updated_ns=? WHERE strategy_id=?", (text, now, strategy_id))
        self.journal.append(now, "StrategyStateSaved", "strategy", strategy_id, {"state": record.state})
