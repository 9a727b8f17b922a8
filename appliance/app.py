"""Composition root: builds every service from the configuration and wires them together.

Nothing else constructs services; tests build an :class:`Appliance` from a config exactly as
``lyrad run`` does.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path

from appliance import __version__, kernels
from appliance.config import LyraConfig
from appliance.engine.clock import LiveClock, SimClock
from appliance.engine.engine import Engine
from appliance.execution.oms import OrderManager
from appliance.marketdata import candles
from appliance.marketdata.candles import timeframe_to_ns
from appliance.marketdata.bar import Bar, BarSlice
from appliance.marketdata.controller import ReplayController
from appliance.marketdata.live import LiveBarFeed, LiveMarketData
from appliance.marketdata.replay import ReplayFeed
from appliance.model.instrument import Instrument, InstrumentId
from appliance.portfolio.service import Portfolio
from appliance.risk.engine import RiskEngine, RiskLimits
from appliance.security.vault import VaultState
from appliance.store.db import Database
from appliance.store.journal import Journal
from appliance.strategies.manager import StrategyManager, StrategyStatus
from appliance.strategies.registry import STRATEGY_TYPES
from appliance.telemetry.metrics import Metrics
from appliance.execution.venue_monitor import DriftPolicy, VenueMonitor
from appliance.model.errors import LyraError, PreconditionError
from appliance.venues.base import (
    BalanceSnapshot, OrderAccepted, OrderCanceled, OrderExpired, OrderFilled, OrderRejected, UnknownVenueOrder,
    VenueHealthChanged,
)
from appliance.venues.paper.fill_model import CandleFillModel
from appliance.venues.paper.venue import PaperVenue, instruments_from_dataset

log = logging.getLogger("lyra.app")

REPLAY_FEED = "replay"
MARK_INTERVAL_S = 5.0
#: ccxt constructor config of the exchanges live bar feeds read (public data: no credential keys).
FEED_EXCHANGE_CONFIG = {"enableRateLimit": True, "timeout": 15_000}
#: Retry of a paper venue on live data whose exchange could not be reached (first wait, then x2).
PAPER_LIVE_RETRY_S = (5.0, 300.0)


class SliceClock:
    """The paper venue's clock on live market data: the wall clock, except while a bar slice is
    handled (and the orders it led to are sent, after its commit), when it reads the slice's close
    time -- what a SimClock reads in replay. So an order a strategy places on a bar is accepted at
    that bar's close and may fill on the next bar (which opens then), exactly as in replay;
    an operator's order placed between bars is accepted at wall time and fills on the first bar
    that opens after it (no look-ahead)."""

    def __init__(self, clock) -> None:
        self._clock = clock
        self.held_ns: int | None = None

    def now_ns(self) -> int:
        return self.held_ns if self.held_ns is not None else self._clock.now_ns()

    def set_timer(self, at_ns, callback):
        return self._clock.set_timer(at_ns, callback)

    def cancel_timer(self, timer_id) -> None:
        self._clock.cancel_timer(timer_id)


@dataclass(frozen=True, slots=True)
class MarkPrices:
    """Last prices from a live venue (market data, not state): marks for NAV, PnL and risk."""

    venue: str
    marks: dict[str, Decimal]
    ts_ns: int


class Appliance:
    """Every service of one lyrad, built from ``config``.

    Raises:
        DatasetNotFound: the paper dataset folder is missing or has no matching candles.
        apsw.Error: the database cannot be opened.
    """

    def __init__(self, config: LyraConfig) -> None:
        self.config = config
        config.storage.data_dir.mkdir(parents=True, exist_ok=True)
        # compile (or load from the numba cache) every kernel now, not on the first tick
        kernels.warm_up()
        self.db = Database(config.db_path)
        self.db.set_synchronous(config.storage.synchronous)
        self.journal = Journal(self.db)
        self.wall_clock = LiveClock()
        self.metrics = Metrics()
        self.version = __version__

        self.engine = Engine(self.db, self.journal)
        self.instruments: dict[InstrumentId, Instrument] = {}
        self.venues: dict[str, object] = {}
        self.feed: ReplayFeed | LiveMarketData | None = None  # where bars are read (history, GetCandles)
        self.market: LiveMarketData | None = None  # live mode: the live bar feeds
        self.replay: ReplayController | None = None
        self.venue: PaperVenue | None = None
        self.cursor_ns = 0
        self.exchange_factory = None  # tests point live venues at the exchange emulator
        self._pending_live: list = list(config.venues)
        self._paper_live_pending = config.paper_live
        self._paper_live_task: asyncio.Task | None = None
        self._paper_live_failures = 0
        self._venue_feeds: dict[str, LiveBarFeed] = {}  # venue name -> its live bar feed
        self._live_lock: asyncio.Lock | None = None
        if self._pending_live:
            self.journal.subscribe(self._on_vault_event)
        if config.live:
            # live: wall-clock time; the CCXT venues (and the paper venue on live data) are
            # connected by start_live_venues(); bars come from live bar feeds
            self.clock = LiveClock()
            self.slice_clock = SliceClock(self.clock)
            self._bar_ns = timeframe_to_ns(config.paper.timeframe)
            self.market = self.feed = LiveMarketData(config.paper.timeframe)
            slices_done = 0
        else:
            slices_done = self._build_replay(config)

        self.portfolio = Portfolio(self.db, self.journal, self.clock, self.instruments, config.portfolio.nav_currency)
        self.oms = OrderManager(self.db, self.journal, self.clock, self.engine, self.venues, self.instruments, self.portfolio)
        self.portfolio.reserved = self.oms.reserved
        r = config.risk
        self.risk = RiskEngine(
            self.db, self.journal, self.clock, self.portfolio,
            RiskLimits(r.max_order_notional, r.max_position_notional, r.max_open_orders, r.daily_loss_limit),
            open_order_count=self.oms.open_order_count,
            on_halt=lambda reason: self.oms.cancel_all(f"kill switch: {reason}"),
        )
        self.oms.risk_check = self.risk.check
        self.strategies = StrategyManager(self.db, self.journal, self.clock, self.oms, self.portfolio, self.instruments,
                                          STRATEGY_TYPES, self._history)
        if config.live:
            self.strategies.bar_check = self._bar_feed_problem
            self.strategies.on_instruments_used = self._subscribe_bars
        if isinstance(self.feed, ReplayFeed):
            self.replay = ReplayController(self.feed, self.engine.submit, after_ns=self.cursor_ns,
                                           slices_done=slices_done, speed=config.paper.speed)
            if config.paper.start == "first_strategy":
                self.strategies.on_first_start = self.replay.start

        self.metrics.seed_orders(self.db.query("SELECT status, COUNT(*) FROM orders GROUP BY status"),
                                 self.oms.open_orders.values())
        self.oms.order_listeners.append(self.metrics.on_order)
        self.oms.fill_listeners.append(lambda fill, order: self.metrics.fills.labels(fill.instrument.venue, fill.liquidity.value).inc())

        self.metrics.kill_switch.set(1 if self.risk.kill_switch_engaged else 0)
        self._stale_warned: set[str] = set()
        self.journal.subscribe(self._metrics_from_journal)

        self.venue_monitor = VenueMonitor(self.journal, self.clock, self.portfolio, {}, self.risk.engage_kill_switch,
                                          on_health=lambda venue, health: self.metrics.venue_health.labels(venue).set(
                                              {"CONNECTED": 2, "DEGRADED": 1, "DOWN": 0}[health.value]))

        self.engine.register(BarSlice, self._on_slice)
        self.engine.register(MarkPrices, self._on_marks)
        self._mark_tasks: list[asyncio.Task] = []
        for report_type in (OrderAccepted, OrderRejected, OrderCanceled, OrderExpired, OrderFilled):
            self.engine.register(report_type, self.oms.on_report)
        for report_type in (VenueHealthChanged, UnknownVenueOrder, BalanceSnapshot):
            self.engine.register(report_type, self.venue_monitor.on_report)

    def _build_replay(self, config: LyraConfig) -> int:
        """Replay mode: the paper venue over the candle dataset, on a SimClock. Returns the
        slices handled before a restart."""
        paper = config.paper
        files = candles.discover(paper.dataset, timeframe=paper.timeframe, exchanges=paper.exchanges or None,
                                 symbols=paper.symbols or None)
        series = [candles.load(f) for f in files]
        instrument_list: list[Instrument] = instruments_from_dataset(
            list(zip(files, series)), venue_name=paper.venue, qty_step=paper.qty_step,
            min_notional_by_quote=paper.min_notional, maker_fee_bps=paper.maker_fee_bps, taker_fee_bps=paper.taker_fee_bps,
        )
        self.instruments.update({i.id: i for i in instrument_list})
        self.feed = ReplayFeed([(i.id, s) for i, s in zip(instrument_list, series)])
        self.dataset_files = files
        row = self.db.query_one("SELECT last_ts_ns, bars_handled FROM replay_cursor WHERE feed=?", (REPLAY_FEED,))
        self.cursor_ns, slices_done = (row[0], row[1]) if row else (0, 0)
        self.clock = SimClock(self.cursor_ns or (self.feed.first_close_ns - 1 if self.feed.total_slices else 0))
        self.venue = PaperVenue(paper.venue, instrument_list, CandleFillModel(
            slippage_bps=paper.slippage_bps, max_participation=paper.max_participation, qty_step=paper.qty_step,
        ), self.db, self.clock)
        self.venue.set_report_sink(self.engine.post)
        self.venues[paper.venue] = self.venue
        return slices_done

    # -- live venues --------------------------------------------------------------------------------
    async def start_live_venues(self) -> list[str]:
        """Connect the configured CCXT venues that are not connected yet (at boot, and again when
        the vault is unsealed). A venue whose credential needs the sealed vault waits; one that
        cannot connect is retried at the next call. Each connected venue is reconciled at once,
        and gets a live bar feed (see :meth:`_start_venue_feed`).

        With ``[paper] market_data = "live"``, the paper venue is built first: its instruments
        from the live exchange's markets, its bar feed's history loaded, its account started
        from ``[paper] starting_balances`` (see :meth:`_start_paper_live`); when the exchange
        cannot be reached it is retried in the background with backoff.

        Returns:
            Notes of what happened (no secret in them).
        """
        if self._live_lock is None:
            self._live_lock = asyncio.Lock()
        async with self._live_lock:  # triggered by boot and by vault events: one at a time
            return await self._start_pending_venues()

    async def _start_pending_venues(self) -> list[str]:
        from appliance.venues.ccxt import CcxtVenue
        from appliance.venues.base import VenueUnavailable

        notes = []
        if self._paper_live_pending:
            notes += await self._start_paper_live()
        for vc in list(self._pending_live):
            credentials = None
            if vc.credential:
                vault = getattr(self, "vault", None)
                if vault is None or vault.state is not VaultState.UNSEALED:
                    notes.append(f"venue {vc.name}: waiting for the vault to be unsealed")
                    continue
                credential_id = await self.engine.call(self._credential_id, vault, vc.credential)
                if credential_id is None:
                    notes.append(f"venue {vc.name}: no credential {vc.credential!r} in the vault yet "
                                 f"(lyractl vault credentials add --venue {vc.exchange} --label ...)")
                    continue
                credentials = await self.engine.call(vault.reveal, credential_id)
            venue = CcxtVenue(vc.name, vc.exchange, credentials, self.clock, exchange_factory=self._exchange_factory(vc),
                              options={"poll_interval_s": vc.poll_interval_s, "reconcile_interval_s": vc.reconcile_interval_s,
                                       "sandbox": vc.sandbox, "symbols": vc.symbols or None,
                                       "ccxt_options": dict(vc.ccxt_options)})
            venue.set_report_sink(self.engine.post)
            try:
                await venue.start()
            except VenueUnavailable as exc:
                notes.append(f"venue {vc.name}: cannot connect yet ({exc})")
                await venue.stop()
                continue
            except Exception as exc:  # a venue that fails to start must not take lyrad down
                log.exception("venue %s failed to start", vc.name)
                notes.append(f"venue {vc.name}: failed to start ({type(exc).__name__}); see the log")
                await venue.stop()
                continue
            self._pending_live.remove(vc)
            self.venue_monitor.policies[vc.name] = DriftPolicy(vc.balance_drift_tolerance, kill_switch=vc.kill_switch_on_drift)

            def register(venue=venue, name=vc.name):
                self.venues[name] = venue
                for instrument in venue.instruments():
                    self.instruments[instrument.id] = instrument
                return self.oms.reconcile()

            notes += await self.engine.call(register)
            self._mark_tasks.append(asyncio.get_running_loop().create_task(self._poll_marks(venue), name=f"marks-{vc.name}"))
            notes.append(f"venue {vc.name} ({vc.exchange}) connected: {len(venue.instruments())} instruments")
            notes += await self._start_venue_feed(vc, venue)
        return notes

    # -- live market data ---------------------------------------------------------------------------
    def _feed_exchange(self, exchange_id: str, vc=None):
        """A ccxt exchange for public market data (no credentials), from
        :meth:`public_exchange_factory`, with the venue's ccxt options and sandbox mode."""
        from appliance.venues.ccxt.options import spot_options

        options = {**spot_options(exchange_id), **(dict(vc.ccxt_options) if vc is not None else {})}
        config = {**FEED_EXCHANGE_CONFIG, "options": options}
        exchange = self.public_exchange_factory(vc)(exchange_id, config)
        if vc is not None and vc.sandbox:
            exchange.set_sandbox_mode(True)
        return exchange

    def public_exchange_factory(self, vc=None):
        """The factory (``factory(exchange_id, config)``) of credential-free ccxt exchanges for
        market data and downloads: the test override when set, else ccxt routed through
        ``[exchange_urls]`` and the venue's ``urls``."""
        from appliance.marketdata.download import public_exchange
        from appliance.venues.ccxt.urls import routed_factory

        if self.exchange_factory is not None:
            return self.exchange_factory
        return routed_factory(public_exchange, self.config.exchange_urls, vc.urls if vc is not None else None)

    def _new_feed(self, getter, instruments, name: str) -> LiveBarFeed:
        paper = self.config.paper
        feed = LiveBarFeed(getter, self.clock, paper.timeframe, instruments=instruments,
                           history_bars=paper.live_history_bars, poll_s=paper.live_poll_s or None, name=name)
        self.market.add_feed(feed)
        return feed

    async def _start_paper_live(self) -> list[str]:
        """The paper venue on live market data: instruments from ``[paper] live_exchange``'s
        markets (precision and limits from ccxt, fees from ``[paper] maker/taker_fee_bps``), the
        bar feed's history loaded, then the venue registered and strategies resumed."""
        from appliance.venues.ccxt.convert import instrument_from_market

        paper = self.config.paper
        where = f"paper venue {paper.venue} (live data from {paper.live_exchange})"
        exchange = None
        try:
            exchange = self._feed_exchange(paper.live_exchange)
            markets = await exchange.load_markets()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - unreachable exchange: retried with backoff
            await _close_quietly(exchange)
            if isinstance(exc, LyraError):
                self._paper_live_pending = False  # e.g. an unknown exchange id: retrying cannot help
                log.error("%s: %s", where, exc)
                return [f"{where}: {exc}"]
            delay = self._schedule_paper_live_retry()
            log.warning("%s: markets not loaded (%s: %s); retry in %.0f s", where, type(exc).__name__, exc, delay)
            return [f"{where}: cannot load markets yet ({type(exc).__name__}); retrying in {delay:.0f} s"]
        timeframes = getattr(exchange, "timeframes", None) or {}
        if timeframes and paper.timeframe not in timeframes:
            await _close_quietly(exchange)
            self._paper_live_pending = False
            log.error("%s: no %s candles", where, paper.timeframe)
            return [f"{where}: the exchange has no {paper.timeframe} candles (it has {', '.join(timeframes)}): "
                    "fix [paper] timeframe"]
        mode = int(getattr(exchange, "precisionMode", 4))
        instruments: list[Instrument] = []
        notes: list[str] = []
        for symbol in paper.symbols:
            market = (markets or {}).get(symbol)
            inst = instrument_from_market(paper.venue, market, mode) if market else None
            if inst is None:
                notes.append(f"{where}: {symbol} is not an active spot market there; left out")
                log.warning("%s: %s is not an active spot market; left out", where, symbol)
                continue
            instruments.append(replace(inst, maker_fee_bps=paper.maker_fee_bps, taker_fee_bps=paper.taker_fee_bps))
        if not instruments:
            await _close_quietly(exchange)
            self._paper_live_pending = False
            return notes + [f"{where}: none of [paper] symbols can be traded; the paper venue is not started"]
        feed = self._new_feed(lambda: exchange, [i.id for i in instruments], f"{paper.venue}@{paper.live_exchange}")
        await feed.load_history()
        notes += await self.engine.call(self._register_paper_live, instruments)
        feed.on_ready = self._on_bars_ready  # histories loaded later (after errors) resume their strategies
        feed.start_polling(self.engine.submit)
        self._paper_live_pending = False
        notes += await self.engine.call(self._resume_strategies)
        loaded = sum(1 for i in instruments if feed.ready(i.id))
        notes.append(f"{where}: {len(instruments)} instruments, {paper.timeframe} bars "
                     f"(history loaded for {loaded}), polled every >= {feed.poll_s:g} s")
        return notes

    def _register_paper_live(self, instruments: list[Instrument]) -> list[str]:
        """(engine message) The PaperVenue over ``instruments``; first boot: its starting balances."""
        paper = self.config.paper
        venue = PaperVenue(paper.venue, instruments, CandleFillModel(
            slippage_bps=paper.slippage_bps, max_participation=paper.max_participation,
        ), self.db, self.slice_clock)
        venue.set_report_sink(self.engine.post)
        self.venue = venue
        self.venues[paper.venue] = venue
        for inst in instruments:
            self.instruments[inst.id] = inst
        notes = []
        if not self.portfolio.initialized(paper.venue):
            self.portfolio.initialize(paper.venue, paper.starting_balances)
            notes.append("first boot: paper starting balances " + ", ".join(
                f"{v} {a}" for a, v in sorted(paper.starting_balances.items())))
        self._marks_from_history([i.id for i in instruments])
        notes += self.oms.reconcile()
        if self.risk.kill_switch_engaged:
            mine = [cid for cid, o in self.oms.open_orders.items() if o.instrument.venue == paper.venue]
            for cid in mine:
                self.oms.cancel(cid, "kill switch engaged at restart")
            if mine:
                notes.append(f"kill switch engaged: cancel requested for {len(mine)} open paper orders")
        return notes

    def _schedule_paper_live_retry(self) -> float:
        self._paper_live_failures += 1
        first, most = PAPER_LIVE_RETRY_S
        delay = min(most, first * 2 ** min(self._paper_live_failures - 1, 16))
        if self._paper_live_task is None or self._paper_live_task.done():
            async def retry() -> None:
                await asyncio.sleep(delay)
                self._paper_live_task = None
                await self._start_and_log()

            self._paper_live_task = asyncio.get_running_loop().create_task(retry(), name="lyra-paper-live-retry")
        return delay

    async def _start_venue_feed(self, vc, venue) -> list[str]:
        """A live bar feed for a connected CCXT venue: the instruments of its ``symbols`` (when
        listed) and those of its strategies; others are added when a strategy asks for them."""
        known = {i.id for i in venue.instruments()}
        used = {iid for r in self.strategies.records.values() for iid in r.instruments if iid.venue == vc.name}
        wanted = sorted((known if vc.symbols else set()) | (used & known), key=str)
        feed = self._new_feed(lambda: self._feed_exchange(vc.exchange, vc), wanted, vc.name)
        self._venue_feeds[vc.name] = feed
        try:
            await feed.load_history()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the exchange object could not even be built
            log.exception("venue %s: live bar feed not started", vc.name)
            return [f"venue {vc.name}: live bars not available ({type(exc).__name__}: {exc})"]
        await self.engine.call(self._marks_from_history, wanted)
        feed.on_ready = self._on_bars_ready  # instruments added later (or loaded after errors)
        feed.start_polling(self.engine.submit)
        notes = await self.engine.call(self._resume_strategies)
        notes.append(f"venue {vc.name}: live {self.config.paper.timeframe} bars for {len(wanted)} instruments"
                     + ("" if vc.symbols else " (those of its strategies; others as strategies use them)"))
        return notes

    def _marks_from_history(self, instruments) -> list[str]:
        """(engine message) Marks from the last closed bar, where an instrument has none yet."""
        for iid in instruments:
            if iid in self.instruments and self.portfolio.mark(iid) is None:
                bars = self._history(iid, 1)
                if bars:
                    self.portfolio.update_mark(iid, bars[-1].close)
        return []

    def _resume_strategies(self) -> list[str]:
        """(engine message) Resume the RUNNING strategies whose bars are available now."""
        resumed = self.strategies.resume_running()
        return ["resumed strategies: " + ", ".join(resumed)] if resumed else []

    def _on_bars_ready(self, instruments: list[InstrumentId]) -> None:
        """A feed loaded the history of ``instruments``: strategies waiting for them may resume."""
        if any(r.instance is None for r in self.strategies.records.values() if r.status is StrategyStatus.RUNNING):
            async def resume() -> None:
                for note in await self.engine.call(self._resume_strategies):
                    log.info("strategies: %s", note)

            asyncio.get_running_loop().create_task(resume(), name="lyra-resume-strategies")

    def _bar_feed_problem(self, instrument: InstrumentId) -> str | None:
        """Why no bars can be fed for ``instrument`` now (live mode), or None."""
        if instrument not in self.instruments:
            return f"instrument {instrument} is not known yet (its venue is not connected)"
        feed = self.market.feed_of(instrument) if self.market is not None else None
        if feed is None:
            return (f"no live bar feed for {instrument}: bars are fed for the paper venue's symbols and for the "
                    f"instruments of connected live venues")
        if not feed.ready(instrument):
            error = next((s.last_error for s in feed.status() if s.instrument == instrument and s.last_error), "")
            return (f"the live bar feed has not loaded the history of {instrument} yet"
                    + (f" (last error: {error})" if error else "") + "; try again in a few seconds")
        return None

    def _subscribe_bars(self, instruments: list[InstrumentId]) -> None:
        """A strategy uses ``instruments``: those of a connected live venue without bars yet are
        added to that venue's bar feed (history loaded at its next round)."""
        for iid in instruments:
            if self.market is not None and self.market.feed_of(iid) is None and iid in self.instruments:
                feed = self._venue_feeds.get(iid.venue)
                if feed is not None:
                    feed.add([iid])

    def _on_vault_event(self, entry) -> None:
        """Post-commit: a venue waiting for its credential may connect now (unsealed, credential added)."""
        if entry.aggregate in ("vault", "credential") and self._pending_live:
            asyncio.get_running_loop().create_task(self._start_and_log())

    async def _start_and_log(self) -> None:
        for note in await self.start_live_venues():
            log.info("venues: %s", note)

    @staticmethod
    def _credential_id(vault, reference: str) -> str | None:
        """A credential id from the config's reference: an id, or EXCHANGE/LABEL."""
        exchange, sep, label = reference.partition("/")
        for info in vault.list_credentials():
            if (sep and info.venue == exchange and info.label == label) or (not sep and info.credential_id == reference):
                return info.credential_id
        return None

    def _exchange_factory(self, vc):
        """The factory a CcxtVenue uses: the test override; or, when ``[exchange_urls]`` or the
        venue's ``urls`` route this exchange elsewhere, ccxt (the ``ccxt.pro`` class where there is
        one, for streams) routed there; else None (the venue builds plain ccxt itself)."""
        if self.exchange_factory is not None:
            return self.exchange_factory
        if not vc.urls and vc.exchange not in self.config.exchange_urls:
            return None
        from appliance.venues.ccxt.urls import routed_factory

        def build(exchange_id: str, options: dict):
            import ccxt.async_support as ccxt_async
            import ccxt.pro as ccxt_pro

            return (getattr(ccxt_pro, exchange_id, None) or getattr(ccxt_async, exchange_id))(options)

        return routed_factory(build, self.config.exchange_urls, vc.urls)

    async def _poll_marks(self, venue) -> None:
        """Marks of a live venue's instruments every MARK_INTERVAL_S (through its request budget)."""
        symbols = sorted(i.id.symbol for i in venue.instruments())
        while True:
            try:
                marks = await venue.fetch_marks(symbols)
                if marks:
                    await self.engine.submit(MarkPrices(venue.name, marks, self.clock.now_ns()))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the venue's health already records it; try again later
                log.debug("marks of %s not fetched: %s", venue.name, type(exc).__name__)
            await asyncio.sleep(MARK_INTERVAL_S)

    def _on_marks(self, message: MarkPrices) -> None:
        for symbol, price in message.marks.items():
            iid = InstrumentId(message.venue, symbol)
            if iid in self.instruments:
                self.portfolio.update_mark(iid, price)
        nav = self.risk.on_valuation()
        if nav is not None:
            self.metrics.nav.labels(self.portfolio.nav_currency).set(float(nav))

    async def stop_live_venues(self) -> None:
        for task in self._mark_tasks:
            task.cancel()
        if self._paper_live_task is not None:
            self._paper_live_task.cancel()
        if self.market is not None:
            await self.market.stop()
        for venue in list(self.venues.values()):
            stop = getattr(venue, "stop", None)
            if stop is not None:
                await stop()

    # -- recovery ---------------------------------------------------------------------------------
    def recover(self) -> list[str]:
        """Bring state back in line before serving (first boot or after a crash). Returns notes.

        One transaction: starting balances on first boot, marks from the last handled bars,
        reconciliation of non-terminal orders with their venue, and resumption of running strategies.
        """
        return self.engine.execute_now(self._recover)

    def _recover(self) -> list[str]:
        notes: list[str] = []
        paper = self.config.paper.venue
        if self.venue is None:  # live mode: no paper account; live accounts start from the venue's balances
            notes += self.oms.reconcile()
            if self.risk.kill_switch_engaged and self.oms.open_orders:
                notes.append("kill switch engaged: open orders are canceled as their venues connect")
            return notes
        if paper != "paper" and not self.portfolio.initialized(paper) and self.portfolio.initialized("paper"):
            self.portfolio.rename_venue("paper", paper)  # balances from before venues were named
            notes.append(f"paper venue renamed to {paper}")
        if not self.portfolio.initialized(paper):
            self.portfolio.initialize(paper, self.config.paper.starting_balances)
            notes.append("first boot: starting balances " + ", ".join(
                f"{v} {a}" for a, v in sorted(self.config.paper.starting_balances.items())))
        for iid in self.instruments:
            history = self._history(iid, 1)
            if history:
                self.portfolio.update_mark(iid, history[-1].close)
        notes += self.oms.reconcile()
        if self.risk.kill_switch_engaged and self.oms.open_orders:
            count = self.oms.cancel_all("kill switch engaged at restart")
            notes.append(f"kill switch engaged: cancel requested for {count} open orders")
        resumed = self.strategies.resume_running()
        if resumed:
            notes.append("resumed strategies: " + ", ".join(resumed))
        return notes

    def replay_should_autostart(self) -> bool:
        """Start the replay at boot when configured so, or when it was under way — unless an
        operator had paused it (a pause survives restarts)."""
        if self.replay is None:
            return False
        if self.db.scalar("SELECT value FROM meta WHERE name='replay_paused'") == "1":
            return False
        return self.config.paper.start == "immediately" or self.cursor_ns > 0 or self.strategies.any_running

    def _require_replay(self) -> ReplayController:
        if self.replay is None:
            raise PreconditionError("no replay: lyrad runs in live mode (live market data or [[venues]] configured)")
        return self.replay

    def pause_replay(self):
        """Operator pause (inside an engine message): persisted so that a restart stays paused."""
        self._require_replay()
        self.db.execute("INSERT INTO meta(name, value) VALUES ('replay_paused', '1') "
                        "ON CONFLICT(name) DO UPDATE SET value='1'")
        self.journal.append(self.clock.now_ns(), "ReplayPaused", "replay", REPLAY_FEED, {})
        return self.replay.pause()

    def start_replay(self):
        """Operator start/resume (inside an engine message)."""
        self._require_replay()
        self.db.execute("DELETE FROM meta WHERE name='replay_paused'")
        self.journal.append(self.clock.now_ns(), "ReplayStarted", "replay", REPLAY_FEED, {})
        return self.replay.start()

    # -- the bar-slice handler (one transaction per slice) ---------------------------------------------------
    def _on_slice(self, slice_: BarSlice) -> None:
        """Bars that closed at one instant (replay or live): the paper venue matches its orders
        against its own instruments' bars, marks move, risk values the book, strategies see the
        bars; in replay, simulated time advances and the replay cursor moves."""
        if isinstance(self.clock, SimClock):
            self.clock.advance_to(slice_.close_ns)
        # live: orders decided on a fresh bar are accepted at its close (see SliceClock); on bars
        # delivered late (catching up after an outage) they are accepted at wall time
        hold = (self.venue is not None and self.config.live
                and self.clock.now_ns() - slice_.close_ns <= self._bar_ns)
        if hold:
            self.slice_clock.held_ns = slice_.close_ns
        try:
            for bar in slice_.bars:
                if self.venue is not None:
                    for report in self.venue.on_bar(bar):
                        self.oms.on_report(report)
                if bar.instrument in self.instruments:
                    self.portfolio.update_mark(bar.instrument, bar.close)
            nav = self.risk.on_valuation()
            if nav is not None:
                self.metrics.nav.labels(self.portfolio.nav_currency).set(float(nav))
            self.strategies.on_slice(slice_)
        except BaseException:
            if hold:
                self.slice_clock.held_ns = None
            raise
        if hold:  # after the orders this slice led to have been sent
            self.engine.after_commit(self._release_slice_clock)
        if self.replay is None:
            self.metrics.engine_messages.inc()
            return
        self.replay.on_handled(slice_)
        progress = self.replay.progress()
        self.db.execute(
            "INSERT INTO replay_cursor(feed, last_ts_ns, bars_handled) VALUES (?,?,?) "
            "ON CONFLICT(feed) DO UPDATE SET last_ts_ns=excluded.last_ts_ns, bars_handled=excluded.bars_handled",
            (REPLAY_FEED, slice_.close_ns, progress.slices_done),
        )
        self.metrics.replay_progress.set(progress.ratio)
        self.metrics.replay_lag.set(progress.lag_s)
        self.metrics.replay_market_time.set(slice_.close_ns / 1e9)
        self.metrics.engine_messages.inc()

    def refresh_vault_metrics(self) -> None:
        """Credential ages and vault state into the metrics; warns once per credential when stale."""
        vault = getattr(self, "vault", None)
        if vault is None:
            return
        ages = vault.credential_ages()
        self.metrics.set_credential_ages(ages, sealed=vault.state is not VaultState.UNSEALED)
        for age in ages:
            if age.stale and age.credential_id not in self._stale_warned:
                self._stale_warned.add(age.credential_id)
                log.warning("credential %s (%s, %s) is older than %d days: rotate it (lyractl vault credentials rotate)",
                            age.credential_id, age.venue, age.label, self.config.vault.credential_max_age_days)

    def _metrics_from_journal(self, entry) -> None:
        """Post-commit: gauges that follow journaled state changes."""
        if entry.type == "KillSwitchEngaged":
            self.metrics.kill_switch.set(1)
        elif entry.type == "KillSwitchReleased":
            self.metrics.kill_switch.set(0)
        elif entry.aggregate in ("vault", "credential"):
            self.refresh_vault_metrics()

    def _release_slice_clock(self) -> None:
        self.slice_clock.held_ns = None

    def _history(self, instrument: InstrumentId, n: int) -> list[Bar]:
        """The last ``n`` bars of ``instrument`` up to the replay position, or the last ``n`` closed
        bars of its live feed (for warm-up and marks)."""
        if n <= 0 or self.feed is None:
            return []
        return self.feed.history(instrument, self.clock.now_ns(), n)

    def close(self) -> None:
        vault = getattr(self, "vault", None)
        if vault is not None and vault.state is VaultState.UNSEALED:
            vault.seal()  # wipe the data key from memory before the process goes
        self.db.close()


async def _close_quietly(exchange) -> None:
    close = getattr(exchange, "close", None)
    if close is None:
        return
    try:
        await close()
    except Exception:  # noqa: BLE001 - closing a session must not hide the outcome
        log.debug("closing an exchange session failed", exc_info=True)
