"""Composition root: builds every service from the configuration and wires them together.

Nothing else constructs services; tests build an :class:`Appliance` from a config exactly as
``lyrad run`` does.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from appliance import __version__, kernels
from appliance.config import LyraConfig
from appliance.engine.clock import LiveClock, SimClock
from appliance.engine.engine import Engine
from appliance.execution.oms import OrderManager
from appliance.marketdata import candles
from appliance.marketdata.bar import Bar, BarSlice
from appliance.marketdata.controller import ReplayController
from appliance.marketdata.replay import ReplayFeed
from appliance.model.instrument import Instrument, InstrumentId
from appliance.portfolio.service import Portfolio
from appliance.risk.engine import RiskEngine, RiskLimits
from appliance.security.vault import VaultState
from appliance.store.db import Database
from appliance.store.journal import Journal
from appliance.strategies.manager import StrategyManager
from appliance.strategies.registry import STRATEGY_TYPES
from appliance.telemetry.metrics import Metrics
from appliance.execution.venue_monitor import DriftPolicy, VenueMonitor
from appliance.model.errors import PreconditionError
from appliance.venues.base import (
    BalanceSnapshot, OrderAccepted, OrderCanceled, OrderExpired, OrderFilled, OrderRejected, UnknownVenueOrder,
    VenueHealthChanged,
)
from appliance.venues.paper.fill_model import CandleFillModel
from appliance.venues.paper.venue import PaperVenue, instruments_from_dataset

log = logging.getLogger("lyra.app")

REPLAY_FEED = "replay"
MARK_INTERVAL_S = 5.0


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
        self.feed: ReplayFeed | None = None
        self.replay: ReplayController | None = None
        self.venue: PaperVenue | None = None
        self.cursor_ns = 0
        self.exchange_factory = None  # tests point live venues at the exchange emulator
        self._pending_live: list = list(config.venues)
        self._live_lock: asyncio.Lock | None = None
        if self._pending_live:
            self.journal.subscribe(self._on_vault_event)
        if config.live:
            # live: wall-clock time; the CCXT venues are connected by start_live_venues()
            self.clock = LiveClock()
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
            self.strategies.unavailable_reason = ("strategies need bars: in live mode they arrive with the live bar feed "
                                                  "(not built yet); operator orders work")
        if self.feed is not None:
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
        cannot connect is retried at the next call. Each connected venue is reconciled at once.

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
        return notes

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
        """The factory a CcxtVenue uses: the test override, or ccxt with the config's url overrides."""
        if self.exchange_factory is not None:
            return self.exchange_factory
        if not vc.urls:
            return None

        def factory(exchange_id: str, options: dict):
            import ccxt.async_support as ccxt_async

            exchange = getattr(ccxt_async, exchange_id)(options)
            api = exchange.urls.get("api")
            if isinstance(api, dict):
                api.update(vc.urls)
            return exchange

        return factory

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
            raise PreconditionError("no replay: lyrad runs in live mode ([[venues]] configured)")
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
        self.clock.advance_to(slice_.close_ns)
        for bar in slice_.bars:
            for report in self.venue.on_bar(bar):
                self.oms.on_report(report)
            self.portfolio.update_mark(bar.instrument, bar.close)
        nav = self.risk.on_valuation()
        if nav is not None:
            self.metrics.nav.labels(self.portfolio.nav_currency).set(float(nav))
        self.strategies.on_slice(slice_)
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

    def _history(self, instrument: InstrumentId, n: int) -> list[Bar]:
        """The last ``n`` bars of ``instrument`` up to the replay position (for warm-up and marks)."""
        if n <= 0 or self.feed is None:
            return []
        return self.feed.history(instrument, self.clock.now_ns(), n)

    def close(self) -> None:
        vault = getattr(self, "vault", None)
        if vault is not None and vault.state is VaultState.UNSEALED:
            vault.seal()  # wipe the data key from memory before the process goes
        self.db.close()
