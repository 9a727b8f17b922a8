"""CcxtVenue: a live exchange account through ccxt's asyncio API (``ccxt.async_support`` / ``ccxt.pro``).

It implements :class:`appliance.venues.base.Venue`. Everything that talks to the exchange runs in
tasks on the engine's event loop; ``submit``/``cancel``/``reconcile`` only schedule them and
return. Outcomes come back as :data:`~appliance.venues.base.VenueReport` through the report sink,
in the order they were learnt.

Sending an order (``submit``)
=============================

The order is already on disk as PENDING_SUBMIT. It is sent once, with Lyra's client order id in
the exchange's own field (:mod:`.client_ids`). Then:

* accepted -> ``OrderAccepted`` (fills follow from trade polling / the trade stream);
* a definitive refusal (``InsufficientFunds``, ``InvalidOrder`` ...) -> ``OrderRejected(reason)``;
* 429/418/nonce (the exchange did not process it) -> wait as told, send again (same id), up to
  ``send_retries``; still limited -> ``OrderRejected("rate_limited: ...")``;
* an unknown outcome (timeout, network error, 5xx, "execution status unknown") -> NEVER a blind
  re-send: the order is looked up by its client id, ``lookup_attempts`` times with exponential
  backoff. Found -> ``OrderAccepted`` (+ fills). Not found ``not_found_confirmations`` times in a row
  (and the exchange can answer "not found" definitively) -> sent again ONCE with the same client id
  (an exchange that still has it refuses the duplicate, which leads to a look-up). Still unknown
  -> the venue turns DEGRADED ("unresolved" condition) and the order stays PENDING_SUBMIT until
  reconciliation finds it or proves it lost.
* venue DOWN (authentication refused, IP banned, repeated failures) -> not sent:
  ``OrderRejected("venue_down: ...")``.

Cancelling (``cancel``)
=======================

``cancel_order`` by venue order id (looked up by client id first if the order was not
acknowledged yet). ``OrderNotFound`` / "already closed" -> the order is looked up: it may have
filled, in which case its fills are reported and no cancel. Network errors -> retried with backoff
(a cancel is idempotent). ``OrderCanceled`` is reported only after every fill the exchange counts
for the order has been reported, because the OMS ignores fills of a terminal order.

Updates
=======

A polling loop, per symbol with tracked orders: ``fetch_open_orders(symbol)``; when an order's
filled quantity grew or it left the open list, ``fetch_my_trades(symbol, since=last trade time -
overlap)`` -> ``OrderFilled`` (``fill_id = f"{venue}-{trade id}"``, each once, in time order);
orders gone from the open list are settled with ``fetch_order``. With ``ccxt.pro`` and
``exchange.has['watchOrders']`` / ``['watchMyTrades']``, websocket loops feed the same handlers
(reconnect with exponential backoff, which re-subscribes; reconciliation after each reconnect),
and polling slows to ``stream_poll_interval_s`` as a safety net. Polling never runs faster than
the request budget allows (:mod:`.budget`).

Reconciliation (``reconcile``)
==============================

See :meth:`CcxtVenue.reconcile_now`. Also run periodically (``reconcile_interval_s``), after a
stream reconnects and after the venue comes back from DOWN.

Secrets
=======

The credentials go to the ccxt constructor only. Every error text that leaves this module (logs,
reports, ``status()``) passes a :class:`~.errors.Redactor` holding the credential values.

Sources: ccxt manual (docs.ccxt.com: "Unified API", "Order Structure", "Trade Structure",
"Exception Hierarchy", "Rate Limit", ccxt.pro "watchOrders"/"watchMyTrades").
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import defaultdict
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from appliance.engine.clock import Clock
from appliance.model.errors import PreconditionError, ValidationError
from appliance.model.instrument import Instrument
from appliance.model.money import ZERO
from appliance.model.order import Order, OrderSide, OrderStatus, OrderType
from appliance.venues.base import (
    LOST_BEFORE_SEND,
    BalanceSnapshot,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    ReportSink,
    UnknownVenueOrder,
    VenueHealth,
    VenueHealthChanged,
    VenueOrderState,
    VenueReport,
    VenueUnavailable,
)
from appliance.venues.ccxt.budget import Priority, RequestBudget, BudgetSpec, budget_spec_for
from appliance.venues.ccxt.client_ids import ClientIdSpec, LookupMethod, client_id_spec, venue_client_id
from appliance.venues.ccxt.convert import (
    NS_PER_MS,
    balances_total,
    fill_id as make_fill_id,
    instrument_from_market,
    ms,
    order_filled,
    order_status,
    to_decimal,
    trade_to_fill,
)
from appliance.venues.ccxt.errors import ErrorKind, Redactor, classify, is_ccxt_or_io_error, retry_after_s
from appliance.venues.ccxt.health import HealthTracker
from appliance.venues.ccxt.options import spot_options
from appliance.venues.ccxt.paging import MAX_BACKWARD_TRADE_PAGES, trade_paging

if TYPE_CHECKING:  # only the type: the vault itself is not needed here
    from appliance.security.vault import CredentialSecrets

log = logging.getLogger("lyra.venues.ccxt")

ExchangeFactory = Callable[[str, dict], Any]

@dataclass(slots=True)
class CcxtVenueOptions:
    """Tuning of a :class:`CcxtVenue` (firmware-config ``[venues.<name>]``); all times in seconds
    unless named ``_ms``.

    Attributes:
        poll_interval_s: period of order/trade polling without live streams (raised automatically
            when the request budget cannot sustain it).
        stream_poll_interval_s: polling period while websocket streams are live (safety net).
        reconcile_interval_s: periodic reconciliation (0 = never; start-up reconciliation is the
            caller's ``reconcile``).
        lookup_attempts: look-ups after an unknown send outcome before giving up (DEGRADED).
        not_found_confirmations: consecutive "not found" answers needed to believe it.
        backoff_base_s, backoff_max_s: exponential backoff (x2 per attempt, +-20 % jitter).
        send_retries: re-sends after 429/nonce errors (the exchange did not process them).
        max_rate_limit_wait_s: an order is rejected ("rate_limited: ...") rather than held when the
            exchange asks to wait longer than this (a stale order is worse than a refused one).
        cancel_attempts: cancel tries on network errors.
        down_after_failures: consecutive failed calls that make the venue DOWN.
        rate_limit_default_s, ban_default_s: pause after a 429 / 418 without Retry-After.
        request_timeout_ms: ccxt ``timeout``.
        use_streams: use ccxt.pro watch_orders/watch_my_trades when the exchange has them.
        stream_max_failures: consecutive stream failures before falling back to polling only...
        stream_retry_s: ...for this long, after which the stream is tried again.
        stream_settle_s: a (re)started watch still pending after this long counts as subscribed
            (live, reconciliation after a reconnect), since ccxt's watch returns only with data.
        symbols: restrict the instruments to these ccxt symbols (None = every active spot market).
        order_reserve: fraction of each budget bucket kept for orders.
        poll_share: fraction of the budget's refill rate polling may plan to use.
        trade_overlap_ms: how far before the last seen trade each trade poll starts (late trades).
        trade_lookback_ms: the furthest back a symbol's trade poll reaches (older fills are fetched
            per order, see ``_fill_history``).
        clock_skew_ms: margin before an order's creation time for "since" queries.
        max_trade_pages: pages of fetch_my_trades per poll on exchanges that page forward (the
            rest is read next poll); newest-first exchanges page back to the cursor at once.
        shutdown_grace_s: how long stop() waits for in-flight sends/cancels.
        auto_reconcile_min_gap_s: minimum gap between automatic reconciliations (after a stream
            reconnect or a return from DOWN), so a flapping connection cannot loop on them.
        resend_guard_s: minimum time between a send with an unknown outcome and its re-send, so
            that a first request still in flight can no longer be accepted: None = per exchange
            (Binance: ccxt's ``recvWindow`` + 1 s, since Binance refuses a request older than
            recvWindow; Kraken: 0, since each look-up is a private call with a higher nonce, which
            makes Kraken refuse an older in-flight request (no nonce window on the key); others:
            the request timeout + 1 s).
        ccxt_options: merged into ``exchange.options``.
        sandbox: ``exchange.set_sandbox_mode(True)`` (testnet).
    """

    poll_interval_s: float = 2.0
    stream_poll_interval_s: float = 30.0
    reconcile_interval_s: float = 300.0
    lookup_attempts: int = 4
    not_found_confirmations: int = 2
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    send_retries: int = 3
    max_rate_limit_wait_s: float = 10.0
    cancel_attempts: int = 4
    down_after_failures: int = 3
    rate_limit_default_s: float = 5.0
    ban_default_s: float = 120.0
    request_timeout_ms: int = 10_000
    use_streams: bool = True
    stream_max_failures: int = 8
    stream_retry_s: float = 300.0
    stream_settle_s: float = 2.0
    symbols: tuple[str, ...] | None = None
    order_reserve: float = 0.25
    poll_share: float = 0.5
    trade_overlap_ms: int = 60_000
    trade_lookback_ms: int = 6 * 3_600_000
    clock_skew_ms: int = 60_000
    max_trade_pages: int = 10
    shutdown_grace_s: float = 5.0
    auto_reconcile_min_gap_s: float = 30.0
    resend_guard_s: float | None = None
    ccxt_options: dict = field(default_factory=dict)
    sandbox: bool = False

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None, field_prefix: str = "options") -> "CcxtVenueOptions":
        """Build from a mapping (e.g. parsed TOML).

        Raises:
            ValidationError: unknown key or a value of the wrong type/sign (field ``options.<key>``).
        """
        if values is None:
            return cls()
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            if key not in known:
                raise ValidationError(f"{field_prefix}.{key}", f"unknown option (known: {', '.join(sorted(known))})")
            default = getattr(cls(), key)
            if key == "resend_guard_s":
                if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                    raise ValidationError(f"{field_prefix}.{key}", f"must be a number >= 0, got {value!r}")
                value = float(value) if value is not None else None
            elif key == "symbols":
                if value is not None and (isinstance(value, str) or not all(isinstance(s, str) for s in value)):
                    raise ValidationError(f"{field_prefix}.{key}", "must be a list of ccxt symbols like BTC/USDT")
                value = tuple(value) if value is not None else None
            elif key == "ccxt_options":
                if not isinstance(value, Mapping):
                    raise ValidationError(f"{field_prefix}.{key}", "must be a table")
                value = dict(value)
            elif isinstance(default, bool):
                if not isinstance(value, bool):
                    raise ValidationError(f"{field_prefix}.{key}", "must be true or false")
            elif isinstance(default, (int, float)):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                    raise ValidationError(f"{field_prefix}.{key}", f"must be a number >= 0, got {value!r}")
                value = type(default)(value)
            kwargs[key] = value
        return cls(**kwargs)


@dataclass(slots=True)
class _Tracked:
    """What the adapter knows of one of Lyra's non-terminal orders."""

    order: Order
    vcid: str
    instrument: Instrument | None
    venue_order_id: str = ""
    accepted_reported: bool = False
    seen_fill_ids: set[str] = field(default_factory=set)
    seen_qty: Decimal = ZERO
    submit_in_flight: bool = False
    unresolved: bool = False
    finished: bool = False
    backfills: int = 0
    needs_history: bool = False
    task: asyncio.Task | None = None

    @property
    def cid(self) -> str:
        return self.order.client_order_id

    @property
    def symbol(self) -> str:
        return self.order.instrument.symbol

    @property
    def created_ms(self) -> int:
        return self.order.created_ns // NS_PER_MS


@dataclass(frozen=True, slots=True)
class _Lookup:
    """Result of a look-up: ``order`` (ccxt dict) when found; ``definitive`` when "not found" can be
    trusted; ``failed`` when the exchange could not be asked (never means "not found")."""

    order: dict | None = None
    definitive: bool = False
    failed: bool = False


class CcxtVenue:
    """A live exchange account implementing :class:`appliance.venues.base.Venue`.

    Args:
        name: venue name: the venue part of every InstrumentId served (e.g. ``"binance"``, ``"kraken-main"``).
        exchange_id: ccxt exchange id (``"binance"``, ``"kraken"`` ...).
        credentials: from ``Vault.reveal(credential_id)``; None for a read-only venue (orders are then
            refused by the exchange: AuthenticationError -> DOWN).
        clock: Lyra's clock (report times).
        exchange_factory: ``factory(exchange_id, config) -> ccxt exchange`` (tests point it at the
            emulator); default: ``ccxt.pro`` class when streams are wanted and available, else
            ``ccxt.async_support``. ``config`` holds ``enableRateLimit``, ``timeout``, ``options`` and
            the credential keys (``apiKey``, ``secret``, ``password``, ``uid``).
        budget: a :class:`RequestBudget`, or a :class:`BudgetSpec` to build one; default from
            :data:`.budget.BUDGETS` or ccxt's ``rateLimit``.
        options: :class:`CcxtVenueOptions` or a mapping of its fields.

    Raises:
        ValidationError: bad name or options.
    """

    def __init__(
        self,
        name: str,
        exchange_id: str,
        credentials: CredentialSecrets | None,
        clock: Clock,
        *,
        exchange_factory: ExchangeFactory | None = None,
        budget: RequestBudget | BudgetSpec | None = None,
        options: CcxtVenueOptions | Mapping[str, Any] | None = None,
    ) -> None:
        if not name or "@" in name:
            raise ValidationError("name", f"{name!r} is not a venue name")
        if not exchange_id:
            raise ValidationError("exchange_id", "is empty")
        self.name = name
        self.exchange_id = exchange_id
        self.clock = clock
        self.options = options if isinstance(options, CcxtVenueOptions) else CcxtVenueOptions.from_mapping(options)
        self._credentials = credentials
        self._redact = Redactor(credentials.as_ccxt().values() if credentials is not None else ())
        self._factory = exchange_factory
        self._budget_arg = budget
        self.budget: RequestBudget | None = budget if isinstance(budget, RequestBudget) else None
        self.exchange: Any = None
        self.id_spec: ClientIdSpec = client_id_spec(exchange_id)
        self._sink: ReportSink | None = None
        self._pending_reports: list[VenueReport] = []
        self._health = HealthTracker(name, clock, self._on_health_changed, self.options.down_after_failures)
        self._instruments: dict[str, Instrument] = {}
        self._tracked: dict[str, _Tracked] = {}
        # every symbol Lyra placed or tracked an order in since start: where an exchange that lists
        # open orders only per symbol is asked for orders Lyra did not place
        self._symbols_traded: set[str] = set()
        self._by_vcid: dict[str, str] = {}
        self._by_vid: dict[str, str] = {}
        self._dirty: set[str] = set()
        self._trade_cursor: dict[str, int] = {}
        self._unknown_reported: dict[str, UnknownVenueOrder] = {}
        self._tasks: set[asyncio.Task] = set()
        self._loops: list[asyncio.Task] = []
        self._wake: asyncio.Event | None = None
        self._reconcile_lock: asyncio.Lock | None = None
        self._reconcile_scheduled = False
        self._streams: dict[str, str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._stopping = False
        self._was_down = False
        self._last_auto_reconcile = float("-inf")
        self.stats: dict[str, int] = defaultdict(int)

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Create the ccxt exchange, load its markets (-> :meth:`instruments`), and start the polling,
        periodic reconciliation and (if available) stream loops. Does NOT reconcile orders: the
        caller passes Lyra's non-terminal orders to :meth:`reconcile`.

        Raises:
            VenueUnavailable: markets could not be loaded after ``lookup_attempts`` tries (the
                reason is redacted); the exchange is closed again.
            PreconditionError: already started.
        """
        if self._started:
            raise PreconditionError(f"venue {self.name} is started already")
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._reconcile_lock = asyncio.Lock()
        self._stopping = False
        self.exchange = self._make_exchange()
        self.exchange.enableRateLimit = True  # ccxt's own throttle stays on, under our budget
        self.id_spec = client_id_spec(self.exchange_id, getattr(self.exchange, "has", {}) or {})
        if self.budget is None:
            spec = self._budget_arg if isinstance(self._budget_arg, BudgetSpec) else budget_spec_for(
                self.exchange_id, getattr(self.exchange, "rateLimit", None))
            self.budget = RequestBudget(spec, order_reserve=self.options.order_reserve)
        markets = None
        last: BaseException | None = None
        for attempt in range(max(1, self.options.lookup_attempts)):
            try:
                markets = await self._call("load_markets", Priority.ORDER, "load_markets")
                break
            except Exception as exc:  # noqa: BLE001 - classified below
                if not is_ccxt_or_io_error(exc):
                    raise
                last = exc
                if classify(exc) is ErrorKind.AUTH:
                    break
                await self._backoff(attempt)
        if markets is None:
            reason = self._redact.error(last) if last is not None else "no markets"
            await self._close_exchange()
            raise VenueUnavailable(f"venue {self.name} ({self.exchange_id}): could not load markets: {reason}")
        self._load_instruments(markets)
        self._health.force(VenueHealth.CONNECTED, "markets loaded")
        self._was_down = False
        self._started = True
        self._loops.append(self._spawn(self._poll_loop(), "poll", keep=False))
        if self.options.reconcile_interval_s > 0:
            self._loops.append(self._spawn(self._reconcile_loop(), "reconcile", keep=False))
        if self.options.use_streams:
            has = getattr(self.exchange, "has", {}) or {}
            for method, handler in (("watch_orders", self._on_stream_orders),
                                    ("watch_my_trades", self._on_stream_trades)):
                capability = "watchOrders" if method == "watch_orders" else "watchMyTrades"
                if has.get(capability) and callable(getattr(self.exchange, method, None)):
                    self._streams[method] = "connecting"
                    self._loops.append(self._spawn(self._stream_loop(method, handler), method, keep=False))

    async def stop(self) -> None:
        """Stop the loops, give in-flight sends/cancels ``shutdown_grace_s`` to finish (an
        interrupted send is resolved by the next start-up reconciliation), close the exchange."""
        self._stopping = True
        for task in self._loops:
            task.cancel()
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            done, still = await asyncio.wait(pending, timeout=self.options.shutdown_grace_s)
            for task in still:
                task.cancel()
            if still:
                await asyncio.gather(*still, return_exceptions=True)
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops.clear()
        await self._close_exchange()
        self._started = False
        self._health.force(VenueHealth.DOWN, "stopped")

    async def _close_exchange(self) -> None:
        if self.exchange is not None:
            try:
                await self.exchange.close()
            except Exception as exc:  # noqa: BLE001 - closing must not fail stop()
                log.warning("venue %s: closing the exchange failed: %s", self.name, self._redact.error(exc))

    def _make_exchange(self) -> Any:
        config: dict[str, Any] = {
            "enableRateLimit": True,
            "timeout": int(self.options.request_timeout_ms),
            "options": {**spot_options(self.exchange_id), **self.options.ccxt_options},
        }
        if self._credentials is not None:
            config.update(self._credentials.as_ccxt())
        if self._factory is not None:
            exchange = self._factory(self.exchange_id, config)
            # the factory may have set options of its own: spot defaults only fill gaps,
            # the operator's ccxt_options win
            for key, value in spot_options(self.exchange_id).items():
                exchange.options.setdefault(key, value)
            exchange.options.update(self.options.ccxt_options)
        else:
            exchange = self._default_exchange(config)
        if self.options.sandbox:
            exchange.set_sandbox_mode(True)
        return exchange

    def _default_exchange(self, config: dict) -> Any:
        import ccxt.async_support as ccxt_async

        cls = None
        if self.options.use_streams:
            try:
                import ccxt.pro as ccxt_pro

                cls = getattr(ccxt_pro, self.exchange_id, None)
            except ImportError:  # pragma: no cover - ccxt >= 4 ships pro
                cls = None
        if cls is None:
            cls = getattr(ccxt_async, self.exchange_id, None)
        if cls is None:
            raise ValidationError("exchange_id", f"ccxt has no exchange {self.exchange_id!r}")
        return cls(config)

    def _load_instruments(self, markets: Mapping[str, Any]) -> None:
        mode = int(getattr(self.exchange, "precisionMode", 4))
        wanted = set(self.options.symbols) if self.options.symbols else None
        instruments: dict[str, Instrument] = {}
        for symbol, market in markets.items():
            if wanted is not None and symbol not in wanted:
                continue
            inst = instrument_from_market(self.name, market, mode)
            if inst is not None:
                instruments[inst.id.symbol] = inst
        if wanted is not None:
            missing = wanted - set(instruments)
            if missing:
                log.warning("venue %s: symbols not tradable on %s: %s", self.name, self.exchange_id, sorted(missing))
        self._instruments = instruments
        for tracked in self._tracked.values():  # orders tracked before (re)start
            tracked.instrument = instruments.get(tracked.symbol)

    # -- Venue protocol -------------------------------------------------------------------------
    def instruments(self) -> list[Instrument]:
        """Spot instruments loaded by :meth:`start` (empty before)."""
        return list(self._instruments.values())

    def set_report_sink(self, sink: ReportSink) -> None:
        """Where reports go (the engine's ``post``); reports made before are delivered now."""
        self._sink = sink
        pending, self._pending_reports = self._pending_reports, []
        for report in pending:
            sink(report)

    def health(self) -> VenueHealth:
        return self._health.state

    def submit(self, order: Order) -> None:
        """Send ``order`` (PENDING_SUBMIT, committed) in a background task; never blocks.

        The outcome comes as reports (see the module docstring). An order of another venue, or
        one submitted before :meth:`start`, is rejected at once (it was not sent).
        """
        if order.instrument.venue != self.name:
            self._report(OrderRejected(order.client_order_id, f"instrument {order.instrument} is not on venue {self.name}",
                                       self.clock.now_ns()))
            return
        if not self._started or self._stopping:
            self._report(OrderRejected(order.client_order_id, f"venue_down: venue {self.name} is not started",
                                       self.clock.now_ns()))
            return
        tracked = self._track(order)
        if tracked.submit_in_flight or tracked.accepted_reported:
            log.warning("venue %s: order %s submitted twice; ignored", self.name, order.client_order_id)
            return
        tracked.submit_in_flight = True
        tracked.task = self._spawn(self._submit_flow(tracked), f"submit {order.client_order_id}")

    def cancel(self, order: Order) -> None:
        """Request cancellation in a background task; never blocks. Outcome: ``OrderCanceled`` after
        the order's fills, or fills only (the order filled first)."""
        if order.instrument.venue != self.name or not self._started:
            log.warning("venue %s: cancel of %s ignored (not started or not this venue)", self.name, order.client_order_id)
            return
        tracked = self._track(order)
        self._spawn(self._cancel_flow(tracked), f"cancel {order.client_order_id}")

    def lookup(self, client_order_id: str) -> VenueOrderState | None:
        """Not available synchronously on a live venue (it needs I/O): always raises, which callers
        treat as "unknown", never as "not found". Use :meth:`reconcile`.

        Raises:
            VenueUnavailable: always.
        """
        raise VenueUnavailable(f"venue {self.name} answers look-ups through reconcile() reports only")

    def reconcile(self, orders: list[Order]) -> None:
        """Schedule :meth:`reconcile_now` for ``orders`` (Lyra's non-terminal orders); never blocks."""
        if not self._started:
            self._health.note_error("reconcile() before start()")
            self._report(VenueHealthChanged(self.name, self._health.state, "reconcile requested before start",
                                            self.clock.now_ns()))
            return
        self._spawn(self.reconcile_now(list(orders)), "reconcile")

    # -- status / metrics -----------------------------------------------------------------------
    def status(self) -> dict:
        """For the API: ``state``, ``reason``, ``last_success_ns``, ``last_error`` (redacted),
        ``last_error_ns``, ``requests_last_minute``, conditions, streams, tracked/unresolved orders,
        unknown venue orders seen, and the budget counters."""
        budget = self.budget.counters() if self.budget is not None else {}
        return {
            "venue": self.name,
            "exchange": self.exchange_id,
            "state": self._health.state.value,
            "reason": self._health.reason,
            "last_success_ns": self._health.last_success_ns,
            "last_error": self._health.last_error,
            "last_error_ns": self._health.last_error_ns,
            "requests_last_minute": budget.get("requests_last_minute", 0),
            "conditions": self._health.conditions(),
            "streams": dict(self._streams),
            "tracked_orders": len(self._tracked),
            "unresolved_orders": sorted(t.cid for t in self._tracked.values() if t.unresolved),
            "unknown_venue_orders": sorted(self._unknown_reported),
            "counters": dict(self.stats),
            "budget": budget,
        }

    def counters(self) -> dict:
        """Metrics: the budget's counters (requests by kind, waits, 429s, bans) and the adapter's
        (fills, duplicates dropped, look-ups, re-sends, unresolved)."""
        out = dict(self.budget.counters()) if self.budget is not None else {}
        out.update({f"venue_{k}": v for k, v in self.stats.items()})
        return out

    async def wait_idle(self, timeout: float | None = None) -> None:
        """Wait until no send/cancel/reconcile task is running (for tests and orderly shutdown)."""
        async def _drain() -> None:
            while True:
                pending = [t for t in self._tasks if not t.done()]
                if not pending:
                    return
                await asyncio.wait(pending)

        await asyncio.wait_for(_drain(), timeout)

    # -- reports and tasks ----------------------------------------------------------------------
    def _report(self, report: VenueReport) -> None:
        if self._sink is None:
            self._pending_reports.append(report)
        else:
            self._sink(report)

    def _on_health_changed(self, event: VenueHealthChanged) -> None:
        self._report(event)
        if event.health is not VenueHealth.DOWN and self._started and self._was_down:
            self._schedule_reconcile("venue back from DOWN")
        self._was_down = event.health is VenueHealth.DOWN

    def _spawn(self, coro: Any, label: str, keep: bool = True) -> asyncio.Task:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = self._loop
            if loop is None:
                raise PreconditionError(f"venue {self.name}: no event loop (start() was not awaited)")
        task = loop.create_task(self._guard(coro, label), name=f"lyra-{self.name}-{label}")
        task.add_done_callback(lambda _t: coro.close())  # no-op once run; avoids "never awaited" if cancelled early
        if keep:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return task

    async def _guard(self, coro: Any, label: str) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a task must never die silently
            log.error("venue %s: task %s failed: %s", self.name, label, self._redact.error(exc))
            self.stats["task_errors"] += 1

    def _track(self, order: Order) -> _Tracked:
        tracked = self._tracked.get(order.client_order_id)
        if tracked is None:
            vcid = venue_client_id(self.id_spec, order.client_order_id)
            tracked = _Tracked(order=order, vcid=vcid, instrument=self._instruments.get(order.instrument.symbol))
            self._symbols_traded.add(order.instrument.symbol)
            if order.venue_order_id:
                tracked.venue_order_id = order.venue_order_id
                self._by_vid[order.venue_order_id] = order.client_order_id
            if order.status is not OrderStatus.PENDING_SUBMIT:
                tracked.accepted_reported = True  # Lyra knows it is accepted
            self._tracked[order.client_order_id] = tracked
            self._by_vcid[vcid] = order.client_order_id
        else:
            if order.updated_ns >= tracked.order.updated_ns:
                tracked.order = order
            if order.status is not OrderStatus.PENDING_SUBMIT:
                tracked.accepted_reported = True
        return tracked

    def _finish(self, tracked: _Tracked) -> None:
        tracked.finished = True
        tracked.unresolved = False
        self._tracked.pop(tracked.cid, None)
        self._by_vcid.pop(tracked.vcid, None)
        if tracked.venue_order_id:
            self._by_vid.pop(tracked.venue_order_id, None)
        self._update_unresolved()

    def _find(self, venue_order: Mapping[str, Any]) -> _Tracked | None:
        vid = venue_order.get("id")
        cid = self._by_vid.get(str(vid)) if vid is not None else None
        if cid is None:
            vcid = venue_order.get("clientOrderId")
            cid = self._by_vcid.get(str(vcid)) if vcid is not None else None
        return self._tracked.get(cid) if cid is not None else None

    def _wake_poll(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _backoff(self, attempt: int) -> None:
        delay = min(self.options.backoff_max_s, self.options.backoff_base_s * (2 ** attempt))
        await asyncio.sleep(delay * random.uniform(0.8, 1.2))

    async def fetch_marks(self, symbols: list[str]) -> dict[str, Decimal]:
        """Last traded prices (marks) of ``symbols`` (ccxt ``fetch_tickers``), through the request
        budget at polling priority: quote per base, Decimal.

        Raises:
            ccxt errors after the health bookkeeping (the caller just tries again later).
        """
        tickers = await self._call("fetch_tickers", Priority.POLL, "fetch_tickers", symbols)
        marks: dict[str, Decimal] = {}
        for symbol, ticker in (tickers or {}).items():
            price = ticker.get("last") or ticker.get("close")
            if not price and ticker.get("bid") and ticker.get("ask"):
                price = (Decimal(str(ticker["bid"])) + Decimal(str(ticker["ask"]))) / 2
            if price:
                marks[symbol] = Decimal(str(price))
        return marks

    # -- the one way to call the exchange -------------------------------------------------------
    async def _call(self, kind: str, priority: Priority, method: str, *args: Any) -> Any:
        """Take ``kind``'s tokens from the budget, call ``exchange.<method>(*args)``, update health.

        Raises:
            Whatever ccxt raised (after health/budget bookkeeping).
        """
        assert self.budget is not None and self.exchange is not None
        await self.budget.acquire(kind, priority)
        try:
            result = await getattr(self.exchange, method)(*args)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if is_ccxt_or_io_error(exc):
                self._after_error(kind, exc)
            raise
        self._health.success()
        if kind != "load_markets":
            self._health.clear_condition("auth")
        return result

    def _after_error(self, kind: str, exc: BaseException) -> None:
        error_kind = classify(exc)
        text = self._redact.error(exc)
        headers = getattr(self.exchange, "last_response_headers", None)
        if error_kind is ErrorKind.RATE_LIMITED:
            seconds = retry_after_s(headers, self.options.rate_limit_default_s)
            assert self.budget is not None
            self.budget.pause(seconds)
            self.stats["rate_limited"] += 1
            self._health.note_error(text)
            self._health.set_condition("rate_limit", VenueHealth.DEGRADED,
                                       f"rate limited by {self.exchange_id} ({kind}); backing off {seconds:.0f}s")
            self._clear_later("rate_limit", seconds)
        elif error_kind is ErrorKind.BANNED:
            seconds = retry_after_s(headers, self.options.ban_default_s)
            assert self.budget is not None
            self.budget.pause(seconds, ban=True)
            self.stats["banned"] += 1
            self._health.note_error(text)
            self._health.set_condition("ban", VenueHealth.DOWN,
                                       f"IP banned by {self.exchange_id} (HTTP 418) for {seconds:.0f}s")
            self._clear_later("ban", seconds)
        elif error_kind is ErrorKind.AUTH:
            self._health.note_error(text)
            self._health.set_condition("auth", VenueHealth.DOWN, f"authentication refused by {self.exchange_id}: {text}")
        elif error_kind in (ErrorKind.UNKNOWN, ErrorKind.NONCE):
            self._health.failure(f"{kind}: {text}")
        else:  # the exchange answered (a refusal, not found, duplicate): it is reachable
            self._health.success()
        log.info("venue %s: %s failed (%s): %s", self.name, kind, error_kind.value, text)

    def _clear_later(self, condition: str, seconds: float) -> None:
        if self._loop is not None:
            self._loop.call_later(max(seconds, 0.0), self._health.clear_condition, condition)

    # -- submit ---------------------------------------------------------------------------------
    async def _submit_flow(self, t: _Tracked) -> None:
        try:
            if t.instrument is None:
                self._reject(t, f"unknown instrument {t.order.instrument} on {self.exchange_id}")
                return
            if self._health.state is VenueHealth.DOWN:
                self._reject(t, f"venue_down: {self._health.reason}")
                return
            unsupported = self._unsupported(t.order)
            if unsupported:
                self._reject(t, f"unsupported: {unsupported}")
                return
            assert self._loop is not None
            sent_at = self._loop.time()
            outcome = await self._send(t)
            if outcome != "unknown":
                return
            found = await self._resolve(t)
            if found is False:
                wait = sent_at + self._resend_guard_s() - self._loop.time()
                if wait > 0:  # let a first request still in flight expire, then look once more
                    await asyncio.sleep(wait)
                    found = await self._resolve(t)
            if found is not False:
                if found is None:
                    self._mark_unresolved(t, "send outcome unknown and look-ups inconclusive")
                return
            self.stats["resends"] += 1
            log.warning("venue %s: order %s not found after an unknown send outcome; sending it again once "
                        "with the same client id", self.name, t.cid)
            outcome = await self._send(t, resend=True)
            if outcome in ("accepted", "rejected"):
                return
            found = await self._resolve(t)
            if found is True:
                return
            if found is False and outcome.startswith("refused:"):
                self._reject(t, outcome[len("refused:"):])
                return
            self._mark_unresolved(t, "re-send outcome unknown too")
        finally:
            t.submit_in_flight = False

    def _unsupported(self, order: Order) -> str:
        """Why ``order`` cannot be sent to this exchange as Lyra means it ("" when it can)."""
        if order.type is OrderType.MARKET:
            has = getattr(self.exchange, "has", {}) or {}
            if has.get("createMarketOrder") is False:  # Gemini: limit orders only
                return f"{self.exchange_id} takes no market orders; send a limit order (IOC for immediate)"
            options = getattr(self.exchange, "options", {}) or {}
            if order.side is OrderSide.BUY and self.exchange_id == "coinbase" and \
                    options.get("createMarketBuyOrderRequiresPrice", True):
                # Coinbase sizes market buys in the quote currency: a quantity in base would need a
                # price Lyra does not send with a market order
                return "coinbase sizes market buys in the quote currency; send a limit buy (IOC for immediate)"
        return ""

    def _resend_guard_s(self) -> float:
        if self.options.resend_guard_s is not None:
            return self.options.resend_guard_s
        if self.exchange_id == "binance":
            recv_window_ms = (getattr(self.exchange, "options", {}) or {}).get("recvWindow", 10_000)
            return float(recv_window_ms) / 1000 + 1.0
        if self.exchange_id == "kraken":
            return 0.0
        return self.options.request_timeout_ms / 1000 + 1.0

    async def _send(self, t: _Tracked, resend: bool = False) -> str:
        """One send (with retries for not-processed answers). Returns ``"accepted"``,
        ``"rejected"`` (reported) or ``"unknown"`` (the exchange may or may not have it).

        On a re-send, a refusal is not trusted as such: the first send may have arrived after all
        and be the reason (funds locked by it, its client id in use with a message not recognised
        as "duplicate"), so ``"refused:<reason>"`` is returned for the caller to look up first."""
        order = t.order
        # Bitfinex's cid is an integer in its JSON body, not a string
        params = {self.id_spec.create_param: int(t.vcid) if self.id_spec.digest == "int" else t.vcid}
        amount = float(order.qty)
        price = float(order.limit_price) if order.type is OrderType.LIMIT and order.limit_price is not None else None
        if Decimal(repr(amount)) != order.qty or (price is not None and Decimal(repr(price)) != order.limit_price):
            log.warning("venue %s: order %s qty/price do not survive float conversion exactly", self.name, t.cid)
        for attempt in range(self.options.send_retries + 1):
            try:
                response = await self._call("create_order", Priority.ORDER, "create_order", order.instrument.symbol,
                                            order.type.value, order.side.value, amount, price, params)
            except Exception as exc:  # noqa: BLE001 - classified
                if not is_ccxt_or_io_error(exc):
                    raise
                kind = classify(exc)
                text = self._redact.error(exc)
                if kind in (ErrorKind.RATE_LIMITED, ErrorKind.NONCE, ErrorKind.BANNED):
                    assert self.budget is not None
                    if (attempt < self.options.send_retries and kind is not ErrorKind.BANNED
                            and self.budget.paused_for() <= self.options.max_rate_limit_wait_s):
                        await self._backoff(attempt)  # then the budget holds it until Retry-After
                        continue
                    self._reject(t, f"{kind.value}: not processed by the exchange: {text}")
                    return "rejected"
                if kind is ErrorKind.AUTH:
                    self._reject(t, f"venue_down: authentication refused: {text}")
                    return "rejected"
                if kind in (ErrorKind.REJECTED, ErrorKind.NOT_FOUND):
                    if resend:
                        log.warning("venue %s: re-send of %s refused (%s); looking it up before concluding",
                                    self.name, t.cid, text)
                        return f"refused:{text}"
                    self._reject(t, text)
                    return "rejected"
                if kind is ErrorKind.DUPLICATE:
                    self.stats["duplicates_refused"] += 1
                    log.warning("venue %s: exchange already holds client id of %s (%s); looking it up",
                                self.name, t.cid, text)
                    return "unknown"
                log.warning("venue %s: send of %s has an unknown outcome: %s", self.name, t.cid, text)
                self.stats["unknown_send_outcomes"] += 1
                return "unknown"
            self.stats["orders_sent"] += 1
            if not isinstance(response, Mapping) or not response.get("id"):
                log.warning("venue %s: create_order of %s returned no order id; looking it up", self.name, t.cid)
                return "unknown"
            self._on_order_seen(t, response)
            self._after_state(t, response)
            return "accepted"
        return "unknown"  # pragma: no cover - loop always returns

    async def _resolve(self, t: _Tracked) -> bool | None:
        """After an unknown send outcome: True = found (reported), False = definitively not there,
        None = could not tell."""
        not_found = 0
        for attempt in range(max(1, self.options.lookup_attempts)):
            await self._backoff(attempt)
            self.stats["lookups"] += 1
            result = await self._lookup(t, Priority.ORDER)
            if result.order is not None:
                self._on_order_seen(t, result.order)
                self._after_state(t, result.order)
                return True
            if result.failed or not result.definitive:
                not_found = 0
                continue
            not_found += 1
            if not_found >= max(1, self.options.not_found_confirmations):
                return False
        return None

    def _reject(self, t: _Tracked, reason: str) -> None:
        self._report(OrderRejected(t.cid, reason, self.clock.now_ns()))
        self._finish(t)

    def _mark_unresolved(self, t: _Tracked, why: str) -> None:
        t.unresolved = True
        self.stats["unresolved"] += 1
        log.error("venue %s: order %s (client id %s on %s) left PENDING_SUBMIT for reconciliation: %s",
                  self.name, t.cid, t.vcid, self.exchange_id, why)
        self._update_unresolved()

    def _update_unresolved(self) -> None:
        unresolved = sorted(t.cid for t in self._tracked.values() if t.unresolved)
        if unresolved:
            self._health.set_condition("unresolved", VenueHealth.DEGRADED,
                                       f"{len(unresolved)} order(s) with unknown send outcome awaiting reconciliation: "
                                       f"{', '.join(unresolved[:5])}")
        else:
            self._health.clear_condition("unresolved")

    def _on_order_seen(self, t: _Tracked, venue_order: Mapping[str, Any]) -> None:
        """The exchange showed this order: record its id, report acceptance once."""
        vid = venue_order.get("id")
        if vid and not t.venue_order_id:
            t.venue_order_id = str(vid)
            self._by_vid[t.venue_order_id] = t.cid
            if self.clock.now_ns() // NS_PER_MS - t.created_ms > self.options.trade_overlap_ms // 2:
                # learnt late: its early trades may be behind the trade cursor already
                t.needs_history = True
        if t.unresolved:
            t.unresolved = False
            self._update_unresolved()
        if not t.accepted_reported and t.venue_order_id:
            if order_status(venue_order) == "rejected" and not (order_filled(venue_order) or ZERO):
                return  # settled by _after_state as a rejection
            t.accepted_reported = True
            self._report(OrderAccepted(t.cid, t.venue_order_id, self.clock.now_ns()))

    def _after_state(self, t: _Tracked, venue_order: Mapping[str, Any]) -> None:
        """Settle what an order snapshot says beyond acceptance: fills to fetch, terminal states
        (reported only once every fill the exchange counts has been reported)."""
        if t.finished:  # settled meanwhile by another task (poll vs cancel vs reconcile)
            return
        status = order_status(venue_order)
        filled = order_filled(venue_order)
        if filled is not None and filled > t.seen_qty:
            self._dirty.add(t.symbol)
            self._wake_poll()
            if status == "open":
                return
            if t.backfills < 3:
                t.backfills += 1
                t.needs_history = True
                return
            log.error("venue %s: order %s is %s with %s filled but only %s found in trade history; settling anyway",
                      self.name, t.cid, status, filled, t.seen_qty)
            filled = t.seen_qty
        if status == "open":
            return
        now = self.clock.now_ns()
        if status == "closed":
            if t.seen_qty >= t.order.qty:
                self._finish(t)  # the fills made it FILLED
            elif filled is not None and filled <= t.seen_qty:
                self._report(OrderCanceled(t.cid, f"closed by {self.exchange_id} with {t.seen_qty} of {t.order.qty} "
                                                  "filled", now))
                self._finish(t)
            return
        if status == "rejected" and not t.accepted_reported and t.seen_qty == 0:
            self._report(OrderRejected(t.cid, f"rejected by {self.exchange_id}", now))
        elif status == "expired":
            self._report(OrderExpired(t.cid, f"expired on {self.exchange_id}", now))
        else:
            self._report(OrderCanceled(t.cid, f"{status} on {self.exchange_id}", now))
        self._finish(t)

    # -- look-up ----------------------------------------------------------------------------------
    async def _lookup(self, t: _Tracked, priority: Priority) -> _Lookup:
        """Find ``t`` on the exchange (see :class:`.client_ids.LookupMethod`). A failed query gives
        ``failed=True``, never "not found"."""
        spec = self.id_spec
        has = getattr(self.exchange, "has", {}) or {}
        symbol = t.symbol
        since = max(0, t.created_ms - self.options.clock_skew_ms)
        try:
            if t.venue_order_id and spec.fetch_by_venue_id and has.get("fetchOrder", True):
                try:
                    found = await self._call("fetch_order", priority, "fetch_order", t.venue_order_id, symbol)
                except Exception as exc:  # noqa: BLE001
                    if classify(exc) is ErrorKind.NOT_FOUND:
                        return _Lookup(None, definitive=False)  # it was accepted: never "lost"
                    raise
                return _Lookup(found)
            if spec.lookup is LookupMethod.FETCH_ORDER:
                try:
                    found = await self._call("fetch_order", priority, "fetch_order", None, symbol,
                                             {spec.lookup_param: t.vcid})
                except Exception as exc:  # noqa: BLE001
                    if classify(exc) is ErrorKind.NOT_FOUND:
                        return _Lookup(None, definitive=True)
                    raise
                return _Lookup(found if self._matches(found, t) else None, definitive=True)
            params = {spec.lookup_param: t.vcid} if spec.lookup is LookupMethod.OPEN_CLOSED_FILTERED else {}
            open_orders = await self._call("fetch_open_orders", priority, "fetch_open_orders", symbol, None, None, params)
            for venue_order in open_orders or []:
                if self._matches(venue_order, t):
                    return _Lookup(venue_order)
            if spec.lookup is LookupMethod.OPEN_ONLY or not has.get("fetchClosedOrders", True):
                return _Lookup(None, definitive=False)
            # Bybit's fetch_closed_orders asks for Filled only: a lost order canceled (or partly filled
            # and canceled) since would look "never placed"; an exchange's native "canceled and
            # closed" listing has every finished order
            finished = ("fetch_canceled_and_closed_orders" if has.get("fetchCanceledAndClosedOrders") is True
                        else "fetch_closed_orders")
            closed = await self._call("fetch_closed_orders", priority, finished, symbol, since, None, params)
            for venue_order in closed or []:
                if self._matches(venue_order, t):
                    return _Lookup(venue_order)
            definitive = spec.lookup is LookupMethod.OPEN_CLOSED_FILTERED or len(closed or []) < 50
            return _Lookup(None, definitive=definitive)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            if not is_ccxt_or_io_error(exc):
                raise
            return _Lookup(failed=True)

    @staticmethod
    def _matches(venue_order: Any, t: _Tracked) -> bool:
        if not isinstance(venue_order, Mapping):
            return False
        if t.venue_order_id and str(venue_order.get("id")) == t.venue_order_id:
            return True
        return str(venue_order.get("clientOrderId")) == t.vcid

    # -- cancel -----------------------------------------------------------------------------------
    async def _cancel_flow(self, t: _Tracked) -> None:
        if t.task is not None and not t.task.done():
            await asyncio.wait([t.task])
        if t.finished:
            return
        if not t.venue_order_id:
            result = await self._lookup(t, Priority.ORDER)
            if result.order is None:
                log.warning("venue %s: cancel of %s: the exchange shows no such order (%s)", self.name, t.cid,
                            "query failed" if result.failed else "not found")
                return
            self._on_order_seen(t, result.order)
            if order_status(result.order) != "open":
                self._after_state(t, result.order)
                await self._settle_locked(t.symbol)
                return
        for attempt in range(max(1, self.options.cancel_attempts)):
            try:
                response = await self._call("cancel_order", Priority.ORDER, "cancel_order", t.venue_order_id, t.symbol)
            except Exception as exc:  # noqa: BLE001
                if not is_ccxt_or_io_error(exc):
                    raise
                kind = classify(exc)
                if kind in (ErrorKind.NOT_FOUND, ErrorKind.REJECTED, ErrorKind.CANCEL_PENDING, ErrorKind.DUPLICATE):
                    # already filled / canceled / closing: the exchange's own view settles it
                    result = await self._lookup(t, Priority.ORDER)
                    if result.order is not None:
                        self._after_state(t, result.order)
                    self._dirty.add(t.symbol)
                    await self._settle_locked(t.symbol)
                    return
                if kind is ErrorKind.AUTH:
                    return
                await self._backoff(attempt)
                continue
            self.stats["cancels_sent"] += 1
            self._dirty.add(t.symbol)
            if isinstance(response, Mapping) and response.get("status") and not t.finished:
                self._after_state(t, response)
            await self._settle_locked(t.symbol)
            return
        log.warning("venue %s: cancel of %s not confirmed after %d attempts; polling will settle it",
                    self.name, t.cid, self.options.cancel_attempts)
        self._dirty.add(t.symbol)
        self._wake_poll()

    # -- polling ----------------------------------------------------------------------------------
    def _streams_live(self) -> bool:
        return bool(self._streams) and all(state == "live" for state in self._streams.values())

    def _poll_timing(self, symbols: int) -> tuple[float, float]:
        """(period, minimum gap) of polling cycles for ``symbols`` symbols: the period is the
        configured interval (slower while streams are live), the minimum gap what the budget can
        sustain with ``poll_share`` of its refill (an early wake-up waits at least that long)."""
        assert self.budget is not None
        base = self.options.stream_poll_interval_s if self._streams_live() else self.options.poll_interval_s
        need = self.budget.sustainable_interval_s(
            {"fetch_open_orders": max(1, symbols), "fetch_my_trades": max(1, symbols)}, self.options.poll_share)
        minimum = max(need, self.budget.paused_for())
        return max(base, minimum), minimum

    async def _poll_loop(self) -> None:
        assert self._wake is not None and self._loop is not None
        probe_at = 0.0
        while not self._stopping:
            started = self._loop.time()
            symbols = sorted({t.symbol for t in self._tracked.values()} | self._dirty)
            assert self._reconcile_lock is not None
            async with self._reconcile_lock:  # never interleaved with a reconciliation
                for symbol in symbols:
                    await self._settle_symbol_safely(symbol, Priority.POLL)
            if (self._health.state is VenueHealth.DOWN and not self._health.has_condition("auth")
                    and not self._health.has_condition("ban") and started >= probe_at):
                probe_at = started + max(10.0, self.options.poll_interval_s)
                await self._probe()
            period, minimum = self._poll_timing(len(symbols))
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, started + period - self._loop.time()))
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            rest = started + minimum - self._loop.time()
            if rest > 0:
                await asyncio.sleep(rest)

    async def _probe(self) -> None:
        """One cheap private call while DOWN with nothing to poll, so the venue notices recovery."""
        try:
            await self._call("fetch_balance", Priority.POLL, "fetch_balance")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            if not is_ccxt_or_io_error(exc):
                raise

    async def _settle_locked(self, symbol: str) -> None:
        """Settle ``symbol`` now (after a cancel), not interleaved with polling or reconciliation."""
        assert self._reconcile_lock is not None
        async with self._reconcile_lock:
            await self._settle_symbol_safely(symbol, Priority.ORDER)

    async def _settle_symbol_safely(self, symbol: str, priority: Priority) -> None:
        try:
            await self._settle_symbol(symbol, priority)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            if not is_ccxt_or_io_error(exc):
                raise
            # health/budget already updated by _call; next cycle retries

    async def _settle_symbol(self, symbol: str, priority: Priority) -> None:
        """One polling step for ``symbol``: open orders, trades when needed, closed orders settled."""
        tracked = [t for t in self._tracked.values() if t.symbol == symbol]
        if not tracked and symbol not in self._dirty:
            return
        open_orders = await self._call("fetch_open_orders", priority, "fetch_open_orders", symbol)
        by_vid = {str(o.get("id")): o for o in open_orders or [] if isinstance(o, Mapping)}
        by_vcid = {str(o.get("clientOrderId")): o for o in open_orders or [] if isinstance(o, Mapping)}
        need_trades = symbol in self._dirty
        gone: list[_Tracked] = []
        for t in tracked:
            venue_order = by_vid.get(t.venue_order_id) if t.venue_order_id else by_vcid.get(t.vcid)
            if venue_order is not None:
                self._on_order_seen(t, venue_order)
                filled = order_filled(venue_order)
                # an open-orders list without fill progress (Bitstamp) says nothing about partial
                # fills: then the trades are read every cycle
                if filled is None or filled > t.seen_qty:
                    need_trades = True
            elif t.venue_order_id and not t.submit_in_flight:
                gone.append(t)
                need_trades = True
        history = [t for t in tracked if t.needs_history and t.venue_order_id and not t.finished]
        if history:
            await self._fill_history(history, priority)
        if need_trades and any(t.venue_order_id for t in self._tracked.values() if t.symbol == symbol):
            await self._poll_trades(symbol, priority)
        self._dirty.discard(symbol)
        for t in gone:
            if t.finished:
                continue
            if t.seen_qty >= t.order.qty:
                self._finish(t)
                continue
            result = await self._lookup(t, priority)
            if result.order is not None:
                self._after_state(t, result.order)
                if not t.finished and order_status(result.order) != "open":
                    self._dirty.add(symbol)

    async def _poll_trades(self, symbol: str, priority: Priority) -> None:
        """Recent trades of ``symbol``: since the last one seen minus ``trade_overlap_ms`` (late
        trades), never before the oldest tracked order nor more than ``trade_lookback_ms`` back
        (Binance answers at most 24 h from ``startTime``); older fills come from :meth:`_fill_history`."""
        tracked = [t for t in self._tracked.values() if t.symbol == symbol]
        floor = min((t.created_ms for t in tracked), default=0) - self.options.clock_skew_ms
        floor = max(floor, self.clock.now_ns() // NS_PER_MS - self.options.trade_lookback_ms)
        cursor = self._trade_cursor.get(symbol)
        since = floor if cursor is None else max(floor, cursor - self.options.trade_overlap_ms)
        trades, complete = await self._fetch_trades(symbol, max(0, since), priority)
        self._emit_trades(trades)
        newest = max((ms(tr) or 0 for tr in trades), default=None)
        if newest is not None and complete:  # older unread pages: read from the same point again
            self._trade_cursor[symbol] = max(self._trade_cursor.get(symbol, 0), newest)

    async def _fill_history(self, orders: Sequence[_Tracked], priority: Priority) -> None:
        """Report every fill of ``orders`` since their creation, each once: per order with
        ``fetch_order_trades`` where the exchange has it natively (Binance: myTrades?orderId=, no
        24 h window, weight 5), else ``fetch_my_trades(symbol, since=oldest creation)``.

        Raises:
            Whatever ccxt raised (nothing is concluded then).
        """
        has = getattr(self.exchange, "has", {}) or {}
        if has.get("fetchOrderTrades") is True:
            for t in orders:
                if t.venue_order_id and not t.finished:
                    trades = await self._call("fetch_order_trades", priority, "fetch_order_trades", t.venue_order_id,
                                              t.symbol)
                    self._emit_trades([tr for tr in trades or [] if isinstance(tr, Mapping)])
                    t.needs_history = False
            return
        by_symbol: dict[str, list[_Tracked]] = defaultdict(list)
        for t in orders:
            by_symbol[t.symbol].append(t)
        for symbol, group in by_symbol.items():
            since = min(t.created_ms for t in group) - self.options.clock_skew_ms
            trades, complete = await self._fetch_trades(symbol, max(0, since), priority)
            self._emit_trades(trades)
            for t in group:
                t.needs_history = not complete

    async def _fetch_trades(self, symbol: str, since_ms: int, priority: Priority) -> tuple[list[dict], bool]:
        """Own trades of ``symbol`` since ``since_ms``, page after page the way the exchange pages
        them (:mod:`.paging`), each trade once.

        Returns:
            ``(trades, complete)``: ``complete`` is False when newest-first pages did not reach back
            to ``since_ms`` within ``max_trade_pages`` (or the exchange kept answering the same
            page): older trades may be unread, so the caller must not move its cursor past them.
        """
        paging = trade_paging(self.exchange_id)
        out: list[dict] = []
        seen: set[str] = set()
        since, until, offset = since_ms, None, 0
        # forward pages resume from the cursor next poll; newest-first pages cannot (the unread part
        # is the older one), so they go back to ``since`` now, each page through the budget
        pages = self.options.max_trade_pages
        if paging.mode != "forward":
            pages = max(pages, MAX_BACKWARD_TRADE_PAGES)
        for _ in range(max(1, pages)):
            params = dict(paging.params)
            if until is not None:
                params["until"] = until
            if offset:
                params[paging.offset_param] = offset
            batch = await self._call("fetch_my_trades", priority, "fetch_my_trades", symbol, since, paging.limit, params)
            batch = [tr for tr in batch or [] if isinstance(tr, Mapping)]
            fresh = [tr for tr in batch if make_fill_id(self.name, tr) not in seen]
            for tr in fresh:
                seen.add(make_fill_id(self.name, tr))
            out.extend(fresh)
            if len(batch) < paging.limit:
                return out, True
            stamps = [ms(tr) or 0 for tr in batch]
            if paging.mode == "forward":
                if not fresh or max(stamps) <= since:
                    return out, True  # a full page of one millisecond: nothing more to ask by time
                since = max(stamps)
            elif paging.mode == "until":
                if min(stamps) <= since:
                    return out, True
                if not fresh:
                    break
                until = min(stamps) + 1  # that millisecond again: its other trades, deduplicated
            else:
                if min(stamps) < since:
                    return out, True
                offset += len(batch)
        log.warning("venue %s: own trades of %s since %d not read to the end in %d pages; continued next poll",
                    self.name, symbol, since_ms, pages)
        # forward pages read from ``since`` on: what is unread is newer, where the cursor goes next
        return out, paging.mode == "forward"

    def _emit_trades(self, trades: Iterable[Mapping[str, Any]]) -> None:
        """Fills for the trades of tracked orders, each once, oldest first."""
        def key(trade: Mapping[str, Any]) -> tuple:
            trade_id = str(trade.get("id") or "")
            return (ms(trade) or 0, 0 if trade_id.isdigit() else 1, int(trade_id) if trade_id.isdigit() else 0, trade_id)

        for trade in sorted(trades, key=key):
            order_id = trade.get("order")
            cid = self._by_vid.get(str(order_id)) if order_id is not None else None
            t = self._tracked.get(cid) if cid is not None else None
            if t is None or t.instrument is None:
                continue
            fid = make_fill_id(self.name, trade)
            if fid in t.seen_fill_ids:
                self.stats["duplicate_trades_dropped"] += 1
                continue
            fill = trade_to_fill(self.name, trade, t.cid, t.instrument, t.order.side)
            if fill is None:
                log.warning("venue %s: trade %s of %s has no usable amount/price; skipped", self.name, trade.get("id"), t.cid)
                continue
            if t.seen_qty + fill.qty > t.order.qty:
                log.error("venue %s: trade %s would overfill %s (%s + %s > %s); not reported", self.name, fid, t.cid,
                          t.seen_qty, fill.qty, t.order.qty)
                continue
            t.seen_fill_ids.add(fid)
            t.seen_qty += fill.qty
            if not t.accepted_reported and t.venue_order_id:
                t.accepted_reported = True
                self._report(OrderAccepted(t.cid, t.venue_order_id, self.clock.now_ns()))
            self.stats["fills"] += 1
            self._report(OrderFilled(fill))
            if t.seen_qty >= t.order.qty:
                self._finish(t)

    # -- streams ----------------------------------------------------------------------------------
    async def _stream_loop(self, method: str, handler: Callable[[list], None]) -> None:
        failures = 0
        while not self._stopping:
            call = asyncio.ensure_future(getattr(self.exchange, method)())
            try:
                if self._streams.get(method) != "live":
                    # ccxt's watch_* returns only with data, so a quiet account would look
                    # "connecting"/"reconnecting" forever (DEGRADED, no reconciliation after a
                    # resubscription). ccxt raises at once when the connection or the subscription
                    # is refused: still waiting after the settle time means subscribed.
                    # (ccxt can also leave a watch pending on a connection that failed: only an
                    # open websocket counts)
                    while not call.done() and self._streams.get(method) != "live":
                        await asyncio.wait({call}, timeout=self.options.stream_settle_s)
                        if not call.done() and self._stream_connected():
                            self._stream_up(method, failures)
                            failures = 0
                items = await call
            except asyncio.CancelledError:
                call.cancel()
                raise
            except Exception as exc:  # noqa: BLE001
                failures += 1
                text = self._redact.error(exc)
                self._health.note_error(f"{method}: {text}")
                if failures >= self.options.stream_max_failures:
                    self._streams[method] = f"failed: polling only, retry in {self.options.stream_retry_s:.0f}s"
                    self._health.clear_condition(f"stream:{method}")  # polling is a healthy fallback
                    log.error("venue %s: %s failed %d times; polling only for %.0fs: %s", self.name, method, failures,
                              self.options.stream_retry_s, text)
                    self._wake_poll()
                    await asyncio.sleep(self.options.stream_retry_s)
                    failures = 0
                    continue
                self._streams[method] = "reconnecting"
                self._health.set_condition(f"stream:{method}", VenueHealth.DEGRADED,
                                           f"{method} disconnected; reconnecting, polling meanwhile")
                self._wake_poll()
                await self._backoff(failures - 1)
                continue
            self._stream_up(method, failures)
            failures = 0
            try:
                handler(list(items or []))
            except Exception as exc:  # noqa: BLE001 - a bad message must not kill the stream
                log.error("venue %s: %s update failed: %s", self.name, method, self._redact.error(exc))

    def _stream_connected(self) -> bool:
        """Whether the exchange has an open websocket (ccxt.pro ``clients``; an exchange object
        without them, e.g. a test double, counts as connected)."""
        clients = getattr(self.exchange, "clients", None)
        if not isinstance(clients, Mapping):
            return True
        return any(getattr(c, "connection", None) is not None and not c.closed() for c in list(clients.values())
                   if callable(getattr(c, "closed", None)))

    def _stream_up(self, method: str, failures: int) -> None:
        """``method``'s stream is subscribed: live, DEGRADED cleared, and after a reconnect a
        reconciliation for what happened while it was down (events are not replayed)."""
        if failures or self._streams.get(method) != "live":
            if failures:
                self._schedule_reconcile(f"{method} reconnected")
            self._health.clear_condition(f"stream:{method}")
        self._streams[method] = "live"

    def _on_stream_orders(self, orders: list) -> None:
        for venue_order in orders:
            if not isinstance(venue_order, Mapping):
                continue
            t = self._find(venue_order)
            if t is None:
                continue
            self._on_order_seen(t, venue_order)
            filled = order_filled(venue_order)
            if order_status(venue_order) != "open" or (filled is not None and filled > t.seen_qty):
                self._dirty.add(t.symbol)
                self._wake_poll()

    def _on_stream_trades(self, trades: list) -> None:
        known = [tr for tr in trades if isinstance(tr, Mapping)]
        unmapped = {str(tr.get("symbol")) for tr in known if str(tr.get("order")) not in self._by_vid}
        self._emit_trades(known)
        for symbol in unmapped:
            if any(t.symbol == symbol for t in self._tracked.values()):
                self._dirty.add(symbol)
                self._wake_poll()

    # -- reconciliation ---------------------------------------------------------------------------
    def _schedule_reconcile(self, why: str) -> None:
        if self._reconcile_scheduled or not self._started or self._stopping or self._loop is None:
            return
        now = self._loop.time()
        if now - self._last_auto_reconcile < self.options.auto_reconcile_min_gap_s:
            return
        self._last_auto_reconcile = now
        self._reconcile_scheduled = True
        log.info("venue %s: reconciliation scheduled (%s)", self.name, why)

        async def _run() -> None:
            try:
                await self.reconcile_now(None)
            finally:
                self._reconcile_scheduled = False

        self._spawn(_run(), "reconcile")

    async def _reconcile_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.options.reconcile_interval_s)
            await self._guard(self.reconcile_now(None), "periodic reconcile")

    async def reconcile_now(self, orders: Sequence[Order] | None = None, *, unknown: bool = True,
                            balances: bool = True) -> dict:
        """Check orders against the exchange and report what differs; returns a summary.

        Args:
            orders: Lyra's non-terminal orders of this venue (start-up); None = the orders the adapter
                tracks (periodic / after reconnect).
            unknown: also list open orders on the exchange and report those Lyra did not place as
                :class:`UnknownVenueOrder` (once per venue order id per process; never canceled).
            balances: also report a :class:`BalanceSnapshot` (``fetch_balance``'s totals, zeros left out).

        Per order, looked up by client id (or venue order id once known):

        * found -> ``OrderAccepted`` if Lyra has it PENDING_SUBMIT; its trades since its creation
          (``fetch_my_trades``) -> ``OrderFilled`` each (the OMS ignores fill ids it has); then
          ``OrderCanceled`` / ``OrderExpired`` if it ended so (after its fills);
        * definitively not found while PENDING_SUBMIT -> ``OrderRejected("lost_before_send: ...")``;
          not found while OPEN -> logged, left for an operator (never guessed);
        * the query failed -> nothing concluded for that order; the failure shows as
          ``VenueHealthChanged`` (DEGRADED/DOWN).

        Returns:
            ``{"checked", "found", "lost_before_send", "missing", "failed", "inconclusive", "unknown",
            "balances"}`` (lists of client order ids / venue order ids; balances: bool).
        """
        assert self._reconcile_lock is not None
        summary: dict[str, Any] = {"checked": [], "found": [], "lost_before_send": [], "missing": [], "failed": [],
                                   "inconclusive": [], "unknown": [], "balances": False}
        async with self._reconcile_lock:
            if orders is None:
                targets = list(self._tracked.values())
            else:
                targets = [self._track(o) for o in orders if o.instrument.venue == self.name and o.is_open]
            found_by_symbol: dict[str, list[tuple[_Tracked, dict]]] = defaultdict(list)
            # one open-orders query per symbol settles every order still open (weight 6 on Binance
            # instead of 4 per order); only the others are looked up one by one
            open_by_symbol: dict[str, list] = {}
            for symbol in sorted({t.symbol for t in targets if not t.finished}):
                try:
                    open_by_symbol[symbol] = list(await self._call(
                        "fetch_open_orders", Priority.RECONCILE, "fetch_open_orders", symbol) or [])
                except Exception as exc:  # noqa: BLE001
                    if not is_ccxt_or_io_error(exc):
                        raise
            for t in targets:
                if t.finished or t.submit_in_flight:
                    continue
                summary["checked"].append(t.cid)
                match = next((o for o in open_by_symbol.get(t.symbol, ()) if self._matches(o, t)), None)
                result = _Lookup(match) if match is not None else await self._lookup_confirmed(t)
                if result.failed:
                    summary["failed"].append(t.cid)
                    continue
                if result.order is None:
                    if not result.definitive:
                        summary["inconclusive"].append(t.cid)
                    elif t.order.status is OrderStatus.PENDING_SUBMIT and not t.accepted_reported and not t.submit_in_flight:
                        summary["lost_before_send"].append(t.cid)
                        self._report(OrderRejected(
                            t.cid, f"{LOST_BEFORE_SEND}: {self.exchange_id} has no order with client id {t.vcid}",
                            self.clock.now_ns()))
                        self._finish(t)
                    else:
                        summary["missing"].append(t.cid)
                        log.error("venue %s: order %s is %s in Lyra but %s does not know it; left for an operator",
                                  self.name, t.cid, t.order.status.value, self.exchange_id)
                    continue
                summary["found"].append(t.cid)
                self._on_order_seen(t, result.order)
                found_by_symbol[t.symbol].append((t, result.order))
            for symbol, items in found_by_symbol.items():
                need = [t for t, o in items if (order_filled(o) or ZERO) > t.seen_qty or t.order.filled_qty > 0]
                if need:
                    try:
                        await self._fill_history(need, Priority.RECONCILE)
                    except Exception as exc:  # noqa: BLE001
                        if not is_ccxt_or_io_error(exc):
                            raise
                        summary["failed"].extend(t.cid for t in need)
                        continue  # no terminal conclusion without the fills
                for t, venue_order in items:
                    if not t.finished:
                        self._after_state(t, venue_order)
            if unknown:
                summary["unknown"] = await self._report_unknown_orders()
            if balances:
                try:
                    balance = await self._call("fetch_balance", Priority.RECONCILE, "fetch_balance")
                except Exception as exc:  # noqa: BLE001
                    if not is_ccxt_or_io_error(exc):
                        raise
                else:
                    self._report(BalanceSnapshot(self.name, balances_total(balance), self.clock.now_ns()))
                    summary["balances"] = True
            self._update_unresolved()
        self.stats["reconciliations"] += 1
        return summary

    async def _lookup_confirmed(self, t: _Tracked) -> _Lookup:
        """A look-up whose "not found" is repeated ``not_found_confirmations`` times (with backoff)."""
        result = await self._lookup(t, Priority.RECONCILE)
        confirmations = 1
        while (result.order is None and result.definitive and not result.failed
               and confirmations < max(1, self.options.not_found_confirmations)):
            await self._backoff(confirmations - 1)
            result = await self._lookup(t, Priority.RECONCILE)
            confirmations += 1
        return result

    async def _report_unknown_orders(self) -> list[str] | None:
        """UnknownVenueOrder for open orders Lyra did not place. Returns their venue ids (None on failure)."""
        try:
            try:
                open_orders = await self._call("fetch_open_orders_all", Priority.RECONCILE, "fetch_open_orders")
            except Exception as exc:  # noqa: BLE001
                if not is_ccxt_or_io_error(exc) or classify(exc) is not ErrorKind.REJECTED:
                    raise
                # the exchange needs a symbol: ask per configured symbol and per symbol Lyra has traded
                # since start (finished orders included: someone else's order sits where Lyra trades)
                symbols = sorted(set(self.options.symbols or ()) | self._symbols_traded)
                open_orders = []
                for symbol in symbols:
                    open_orders.extend(await self._call("fetch_open_orders", Priority.RECONCILE, "fetch_open_orders",
                                                        symbol) or [])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            if not is_ccxt_or_io_error(exc):
                raise
            return None
        unknown: list[str] = []
        for venue_order in open_orders or []:
            if not isinstance(venue_order, Mapping) or self._find(venue_order) is not None:
                continue
            vid = str(venue_order.get("id"))
            unknown.append(vid)
            if vid in self._unknown_reported:
                continue
            report = UnknownVenueOrder(
                venue=self.name,
                venue_order_id=vid,
                client_order_id=str(venue_order.get("clientOrderId") or ""),
                symbol=str(venue_order.get("symbol") or ""),
                side=str(venue_order.get("side") or ""),
                qty=to_decimal(venue_order.get("amount")) or ZERO,
                price=to_decimal(venue_order.get("price")),
                status=order_status(venue_order),
                ts_ns=(ms(venue_order) or 0) * NS_PER_MS or self.clock.now_ns(),
            )
            self._unknown_reported[vid] = report
            log.warning("venue %s: open order %s on %s was not placed by Lyra (%s %s %s); reported, not touched",
                        self.name, vid, self.exchange_id, report.side, report.qty, report.symbol)
            self._report(report)
        return unknown
