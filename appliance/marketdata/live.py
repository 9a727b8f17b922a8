"""LiveBarFeed: closed candles of a live exchange, polled through ccxt and delivered to the engine
exactly as the replay delivers recorded ones.

One feed serves a set of instruments quoted on ONE exchange (``InstrumentId.symbol`` is the ccxt
symbol; the venue part is whatever the caller trades them as: the paper venue, or a CCXT venue).

* **Start** (:meth:`LiveBarFeed.load_history`): the last ``history_bars`` CLOSED candles of each
  instrument are fetched (``fetch_ohlcv``, paging forward with ``since``) into an in-memory
  window. They are market data, not state: nothing is written to the database, and a restarted
  appliance simply fetches them again.
* **Polling** (:meth:`LiveBarFeed.start_polling`): each round asks every instrument for the bars
  after the last one it knows. A bar is CLOSED when ``open + timeframe <= clock now``; the
  still-forming bar is never taken (it is fetched again once it has closed). Newly closed bars
  are emitted once each, grouped by close time into :class:`BarSlice` messages (ordered by
  symbol, then venue, as :class:`~appliance.marketdata.replay.ReplayFeed` does), in time order,
  through ``await deliver(slice)`` (the engine's ``submit``: it returns once the slice is
  handled). Rounds run at most every ``poll_s`` seconds, and only when a bar can be due: after
  the next expected close (last bar's open + 2 timeframes) plus ``settle_s``, so a feed whose
  bars are all on time asks the exchange about once per bar. Requests go through ccxt's own
  rate limiter (``enableRateLimit`` is switched on).
* **Order across instruments**: when the fetch of one instrument fails, the bars of the others
  that close after its last successful fetch are held back (at most ``max_hold_s``) so that
  slices stay in time order across instruments. An instrument that stays unreachable longer
  no longer holds the others back; its bars are then emitted when it comes back, in its own
  order (a bar is never emitted twice, never out of order for its own instrument), and such a
  late slice is logged.
* **Gaps**: bars the exchange does not have (no trades, outage) are not invented.
* **Errors**: network and exchange errors are logged and retried with exponential backoff per
  instrument (``poll_s * 2**k`` up to ``backoff_max_s``, or the exchange's ``Retry-After``);
  the feed never stops by itself. After an outage, the bars missed meanwhile (at most
  ``history_bars``) are fetched and emitted in order.

Numbers: ccxt gives floats built from the exchange's decimal strings; each becomes
``Decimal(repr(value))`` (the shortest text that round-trips it), exact for up to 15 significant
digits. ``history(instrument, n)`` (sync) serves strategy warm-up and the GetCandles RPC.

Sources: ccxt manual (docs.ccxt.com), "OHLCV Candlestick Charts" (``fetchOHLCV(symbol,
timeframe, since, limit)``; the last candle may be incomplete) and "Rate Limit".
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Awaitable, Callable, Iterable, Sequence

from appliance.engine.clock import Clock
from appliance.marketdata.bar import Bar, BarSlice
from appliance.marketdata.candles import timeframe_to_ns
from appliance.venues.ccxt.errors import retry_after_s
from appliance.model.errors import NotFoundError, PreconditionError, ValidationError
from appliance.model.instrument import InstrumentId

log = logging.getLogger("lyra.marketdata.live")

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
MIN_POLL_S = 2.0
MAX_POLL_S = 60.0
#: Longest wait honoured from an exchange's Retry-After header.
MAX_RETRY_AFTER_S = 300.0

Deliver = Callable[[BarSlice], Awaitable[object]]
ExchangeGetter = Callable[[], Any]
Sleep = Callable[[float], Awaitable[None]]


def default_poll_s(timeframe_ns: int) -> float:
    """A tenth of the timeframe, within [2 s, 60 s] (1m -> 6 s, 5m -> 30 s, 1h -> 60 s)."""
    return min(MAX_POLL_S, max(MIN_POLL_S, timeframe_ns / NS_PER_S / 10))


def ccxt_decimal(value: Any) -> Decimal | None:
    """A ccxt number as an exact Decimal (floats through their shortest ``repr``); None when
    missing, not a number or not finite."""
    if value is None or isinstance(value, bool) or value == "":
        return None
    try:
        result = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except (InvalidOperation, ValueError, TypeError):
        return None
    return result if result.is_finite() else None


@dataclass(slots=True)
class _Series:
    """What the feed holds for one instrument."""

    instrument: InstrumentId
    history: deque  # of Bar, oldest first: the emitted (or loaded) bars
    loaded: bool = False  # history fetched once
    last_open_ns: int | None = None  # open of the newest bar known (history or pending)
    pending: list[Bar] = field(default_factory=list)  # fetched, closed, not emitted yet
    known_ns: int = 0  # every bar closed by this time has been fetched (time of the last good fetch)
    failures: int = 0  # consecutive failed fetches
    failing_since_ns: int = 0  # time of the first of them
    next_try_ns: int = 0  # after a failure: not asked again before this time
    last_error: str = ""
    bad_bars: int = 0  # malformed candles skipped


@dataclass(frozen=True, slots=True)
class SeriesStatus:
    """One instrument of a feed, for operators and tests."""

    instrument: InstrumentId
    loaded: bool
    bars: int
    last_close_ns: int | None
    failures: int
    last_error: str


class LiveBarFeed:
    """Closed bars of ``instruments`` on one exchange, polled and delivered in time order.

    Args:
        exchange_getter: ``() -> exchange`` (or an awaitable of one): a ccxt async exchange (public
            data only), called once by :meth:`load_history`.
        clock: what "now" is (a bar is closed when ``open + timeframe <= clock.now_ns()``).
        timeframe: ccxt timeframe, e.g. ``"5m"``.
        instruments: the instruments (their ``symbol`` is the exchange's ccxt symbol); more can
            be added later with :meth:`add`.
        deliver: ``async deliver(slice)``; may also be given to :meth:`start_polling`.
        history_bars: closed bars kept per instrument (and fetched at start), >= 1.
        poll_s: shortest time between two polling rounds; default :func:`default_poll_s`.
        settle_s: delay after an expected close before asking for that bar (default a tenth of
            the timeframe, at most 1 s).
        max_hold_s: longest time the bars of healthy instruments wait for a failing one
            (default ``3 * poll_s``).
        backoff_max_s: longest backoff after errors (default ``max(60, poll_s)``).
        page_limit: most bars asked for in one request.
        on_ready: called with the instruments whose history has just been loaded.
        close_exchange: close the exchange in :meth:`stop`.
        name: for logs.
        sleep: ``await sleep(seconds)`` between rounds (tests).

    Raises:
        ValidationError: bad timeframe, ``history_bars``, ``poll_s`` or ``page_limit``.
    """

    def __init__(
        self,
        exchange_getter: ExchangeGetter,
        clock: Clock,
        timeframe: str,
        *,
        instruments: Iterable[InstrumentId] = (),
        deliver: Deliver | None = None,
        history_bars: int = 1000,
        poll_s: float | None = None,
        settle_s: float | None = None,
        max_hold_s: float | None = None,
        backoff_max_s: float | None = None,
        page_limit: int = 1000,
        on_ready: Callable[[list[InstrumentId]], object] | None = None,
        close_exchange: bool = True,
        name: str = "",
        sleep: Sleep | None = None,
    ) -> None:
        self.timeframe = timeframe
        self.tf_ns = timeframe_to_ns(timeframe)
        if history_bars < 1:
            raise ValidationError("history_bars", f"must be >= 1, got {history_bars}")
        if poll_s is not None and poll_s <= 0:
            raise ValidationError("poll_s", f"must be > 0, got {poll_s}")
        if page_limit < 2:
            raise ValidationError("page_limit", f"must be >= 2, got {page_limit}")
        self._getter = exchange_getter
        self.clock = clock
        self.history_bars = history_bars
        self.poll_s = float(poll_s) if poll_s is not None else default_poll_s(self.tf_ns)
        self.settle_s = min(1.0, self.tf_ns / NS_PER_S / 10) if settle_s is None else max(0.0, settle_s)
        self.max_hold_s = 3 * self.poll_s if max_hold_s is None else max(0.0, max_hold_s)
        self.backoff_max_s = max(60.0, self.poll_s) if backoff_max_s is None else max(self.poll_s, backoff_max_s)
        self.page_limit = page_limit
        self.on_ready = on_ready
        self.close_exchange = close_exchange
        self.name = name or timeframe
        self._sleep = sleep
        self._deliver = deliver
        self.exchange: Any = None
        self._series: dict[InstrumentId, _Series] = {}
        self._task: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self._last_round_ns: int | None = None
        self._last_emitted_close_ns = 0
        self.rounds = 0
        self.requests = 0
        self.bars_emitted = 0
        self.slices_emitted = 0
        self.add(instruments)

    # -- instruments --------------------------------------------------------------------------
    @property
    def instruments(self) -> list[InstrumentId]:
        return list(self._series)

    def add(self, instruments: Iterable[InstrumentId]) -> list[InstrumentId]:
        """Also serve ``instruments`` (their history is loaded at the next round). Returns the
        ones that were new."""
        added = []
        for iid in instruments:
            if iid not in self._series:
                self._series[iid] = _Series(iid, deque(maxlen=self.history_bars))
                added.append(iid)
        if added and self._wake is not None:
            self._wake.set()
        return added

    def covers(self, instrument: InstrumentId) -> bool:
        return instrument in self._series

    def ready(self, instrument: InstrumentId) -> bool:
        """Whether ``instrument``'s history has been loaded (strategies can warm up)."""
        series = self._series.get(instrument)
        return series is not None and series.loaded

    def status(self) -> list[SeriesStatus]:
        return [SeriesStatus(s.instrument, s.loaded, len(s.history), s.history[-1].close_ns if s.history else None,
                             s.failures, s.last_error) for s in self._series.values()]

    # -- reading --------------------------------------------------------------------------------
    def _get(self, instrument: InstrumentId) -> _Series:
        series = self._series.get(instrument)
        if series is None:
            raise NotFoundError(f"instrument {instrument} is not in the live bar feed {self.name}")
        return series

    def history(self, instrument: InstrumentId, n: int) -> list[Bar]:
        """The last ``n`` closed bars of ``instrument`` known to the feed, oldest first (those
        loaded at start and those emitted since; never a forming one).

        Raises:
            NotFoundError: the instrument is not in this feed.
        """
        series = self._get(instrument)
        if n <= 0:
            return []
        bars = series.history
        if n >= len(bars):
            return list(bars)
        return [bars[k] for k in range(len(bars) - n, len(bars))]

    def candles(self, instrument: InstrumentId, start_ns: int | None = None, end_ns: int | None = None,
                limit: int = 1000) -> list[Bar]:
        """Bars in the window with ``open_ns >= start_ns`` and ``close_ns <= end_ns``, oldest
        first: the FIRST ``limit`` from ``start_ns`` when it is given, else the LAST ``limit``
        (the semantics of :meth:`ReplayFeed.candles`).

        Raises:
            NotFoundError: the instrument is not in this feed.
            ValidationError: ``limit`` < 1.
        """
        if limit < 1:
            raise ValidationError("limit", f"must be >= 1, got {limit}")
        bars = [b for b in self._get(instrument).history
                if (start_ns is None or b.open_ns >= start_ns) and (end_ns is None or b.close_ns <= end_ns)]
        return bars[:limit] if start_ns is not None else bars[-limit:]

    # -- lifecycle ------------------------------------------------------------------------------
    async def _exchange(self) -> Any:
        if self.exchange is None:
            exchange = self._getter()
            if inspect.isawaitable(exchange):
                exchange = await exchange
            if hasattr(exchange, "enableRateLimit"):
                exchange.enableRateLimit = True  # ccxt spaces our requests by its rateLimit
            self.exchange = exchange
        return self.exchange

    async def load_history(self) -> list[InstrumentId]:
        """Fetch the history of every instrument not loaded yet (one try each; failures are
        retried by the polling rounds). Returns the instruments loaded now.

        Raises:
            Whatever ``exchange_getter`` raises.
        """
        await self._exchange()
        now = self.clock.now_ns()
        loaded = []
        for series in list(self._series.values()):
            if not series.loaded and await self._load(series, now):
                loaded.append(series.instrument)
        if loaded:
            self._notify_ready(loaded)
        return loaded

    def start_polling(self, deliver: Deliver | None = None) -> asyncio.Task:
        """Start the polling task (idempotent).

        Raises:
            PreconditionError: no ``deliver`` was given (here or to the constructor).
        """
        if deliver is not None:
            self._deliver = deliver
        if self._deliver is None:
            raise PreconditionError(f"live bar feed {self.name}: no deliver callback")
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"lyra-bars-{self.name}")
        return self._task

    async def start(self, deliver: Deliver | None = None) -> asyncio.Task:
        """:meth:`load_history`, then :meth:`start_polling`."""
        await self.load_history()
        return self.start_polling(deliver)

    @property
    def is_running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        """Stop polling and (``close_exchange``) close the exchange's HTTP session."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        if self.close_exchange and self.exchange is not None:
            close = getattr(self.exchange, "close", None)
            if close is not None:
                try:
                    result = close()
                    if inspect.isawaitable(result):
                        await result
                except Exception as exc:  # noqa: BLE001 - closing must not fail a shutdown
                    log.warning("live bar feed %s: closing the exchange failed: %s", self.name, exc)
            self.exchange = None

    # -- polling ----------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the feed must outlive any surprise; the next round tries again
                log.exception("live bar feed %s: polling round failed", self.name)
            await self._wait(self.next_delay_s())

    async def _wait(self, seconds: float) -> None:
        if self._sleep is not None:
            await self._sleep(seconds)
            return
        wake = self._wake
        if wake is None:
            await asyncio.sleep(seconds)
            return
        try:
            await asyncio.wait_for(wake.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            pass
        wake.clear()

    def next_delay_s(self) -> float:
        """Seconds until the next round: when a bar can be due (or a retry is), but not sooner
        than ``poll_s`` after the last round."""
        now = self.clock.now_ns()
        due: int | None = None
        for s in self._series.values():
            if not s.loaded or s.failures:
                candidate = s.next_try_ns
            elif s.last_open_ns is None:
                candidate = now  # no bar yet: keep asking at the polling pace
            else:
                candidate = s.last_open_ns + 2 * self.tf_ns + int(self.settle_s * NS_PER_S)
            due = candidate if due is None else min(due, candidate)
        if due is None:
            due = now + int(self.poll_s * NS_PER_S)
        if self._last_round_ns is not None:
            due = max(due, self._last_round_ns + int(self.poll_s * NS_PER_S))
        return max(0.0, (due - now) / NS_PER_S)

    async def poll_once(self) -> int:
        """One round: load missing histories, fetch the new closed bars of every instrument due,
        emit what may be emitted. Returns the number of bars emitted.

        Raises:
            PreconditionError: no ``deliver`` callback.
        """
        if self._deliver is None:
            raise PreconditionError(f"live bar feed {self.name}: no deliver callback")
        await self._exchange()
        now = self.clock.now_ns()
        self._last_round_ns = now
        self.rounds += 1
        ready = []
        for series in list(self._series.values()):
            if series.failures and now < series.next_try_ns:
                continue
            if not series.loaded:
                if await self._load(series, now):
                    ready.append(series.instrument)
                continue
            try:
                bars = await self._fetch_closed(series, now, after_ns=series.last_open_ns)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - network or exchange error: back off, go on
                self._failed(series, exc, now)
                continue
            self._succeeded(series, now)
            if bars:
                series.pending.extend(bars)
                series.last_open_ns = bars[-1].open_ns
        if ready:
            self._notify_ready(ready)
        return await self._emit(now)

    async def _load(self, series: _Series, now: int) -> bool:
        try:
            bars = await self._fetch_closed(series, now, after_ns=None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            self._failed(series, exc, now)
            return False
        self._succeeded(series, now)
        series.history.extend(bars[-self.history_bars:])
        if bars:
            series.last_open_ns = bars[-1].open_ns
        series.loaded = True
        log.info("live bar feed %s: %s history loaded (%d bars of %s)", self.name, series.instrument, len(series.history),
                 self.timeframe)
        return True

    def _notify_ready(self, instruments: list[InstrumentId]) -> None:
        if self.on_ready is not None:
            try:
                self.on_ready(instruments)
            except Exception:  # noqa: BLE001 - a listener must not stop the feed
                log.exception("live bar feed %s: on_ready listener failed", self.name)

    def _succeeded(self, series: _Series, now: int) -> None:
        if series.failures:
            log.info("live bar feed %s: %s reachable again after %d failed requests", self.name, series.instrument,
                     series.failures)
        series.failures = 0
        series.last_error = ""
        series.known_ns = now

    def _failed(self, series: _Series, exc: BaseException, now: int) -> None:
        if not series.failures:
            series.failing_since_ns = now
        series.failures += 1
        series.last_error = f"{type(exc).__name__}: {_short(exc)}"
        wait = min(self.backoff_max_s, self.poll_s * 2 ** min(series.failures - 1, 20))
        wait = max(wait, self._retry_after_s())
        series.next_try_ns = now + int(wait * NS_PER_S)
        if series.failures == 1 or series.failures % 10 == 0:
            log.warning("live bar feed %s: %s: candles not fetched (%s); retry in %.1f s (failure %d)", self.name,
                        series.instrument, series.last_error, wait, series.failures)

    def _retry_after_s(self) -> float:
        """The exchange's ``Retry-After`` (seconds) of its last answer, capped at
        :data:`MAX_RETRY_AFTER_S`; 0 when it sent none."""
        return min(retry_after_s(getattr(self.exchange, "last_response_headers", None), 0.0), MAX_RETRY_AFTER_S)

    async def _fetch_closed(self, series: _Series, now: int, after_ns: int | None) -> list[Bar]:
        """Closed bars of ``series`` with ``open > after_ns`` (or the last ``history_bars`` when
        ``after_ns`` is None), oldest first, paging forward with ``since``. Never further back
        than ``history_bars`` bars before now."""
        window_start = now - (self.history_bars + 1) * self.tf_ns
        start_ns = window_start if after_ns is None else max(after_ns + self.tf_ns, window_start)
        cursor_ms = max(0, start_ns // NS_PER_MS)
        tf_ms = self.tf_ns // NS_PER_MS
        last = after_ns
        out: list[Bar] = []
        symbol = series.instrument.symbol
        max_pages = self.history_bars // max(1, self.page_limit - 1) + 2
        for _ in range(max_pages):
            expected = (now // NS_PER_MS - cursor_ms) // max(1, tf_ms) + 2
            limit = int(max(2, min(self.page_limit, expected)))
            rows = await self.exchange.fetch_ohlcv(symbol, self.timeframe, since=cursor_ms, limit=limit)
            self.requests += 1
            if not rows:
                break
            max_ts = None
            for row in sorted(rows, key=lambda r: int(r[0])):
                ts = int(row[0])
                max_ts = ts if max_ts is None else max(max_ts, ts)
                open_ns = ts * NS_PER_MS
                if last is not None and open_ns <= last:
                    continue  # known already (or the exchange ignored `since`)
                if open_ns + self.tf_ns > now:
                    continue  # still forming: taken once it has closed
                bar = self._to_bar(series, row, open_ns)
                last = open_ns
                if bar is not None:
                    out.append(bar)
            if max_ts is None or max_ts < cursor_ms:
                break  # the exchange ignored `since`: what it gave is all there is
            next_ms = max_ts + tf_ms
            if next_ms <= cursor_ms or (next_ms + tf_ms) * NS_PER_MS > now:
                break  # nothing closed can follow
            cursor_ms = next_ms
        return out

    def _to_bar(self, series: _Series, row: Sequence[Any], open_ns: int) -> Bar | None:
        values = [ccxt_decimal(v) for v in row[1:5]] if len(row) >= 5 else [None]
        volume = ccxt_decimal(row[5]) if len(row) > 5 else None
        if any(v is None or v <= 0 for v in values):
            series.bad_bars += 1
            log.warning("live bar feed %s: %s: malformed candle at %d skipped: %r", self.name, series.instrument,
                        open_ns, list(row[:6]))
            return None
        o, h, low, c = values
        return Bar(series.instrument, open_ns, open_ns + self.tf_ns, o, h, low, c,
                   volume if volume is not None and volume >= 0 else Decimal(0))

    async def _emit(self, now: int) -> int:
        """Emit pending bars that close by the horizon: the earliest "all known" time of the
        instruments failing for less than ``max_hold_s`` (else ``now``)."""
        horizon = now
        hold_ns = int(self.max_hold_s * NS_PER_S)
        for s in self._series.values():
            if s.loaded and s.failures and now - s.failing_since_ns <= hold_ns:
                horizon = min(horizon, s.known_ns)
        due: dict[int, list[Bar]] = {}
        for s in self._series.values():
            if not s.pending:
                continue
            keep = []
            for bar in s.pending:
                (due.setdefault(bar.close_ns, []) if bar.close_ns <= horizon else keep).append(bar)
            s.pending = keep
        emitted = 0
        for close_ns in sorted(due):
            bars = tuple(sorted(due[close_ns], key=lambda b: (b.instrument.symbol, b.instrument.venue)))
            if close_ns < self._last_emitted_close_ns:
                log.warning("live bar feed %s: late bars at %d for %s (after slices up to %d)", self.name, close_ns,
                            ", ".join(str(b.instrument) for b in bars), self._last_emitted_close_ns)
            for bar in bars:  # known from now on: warm-up and GetCandles see it (a strategy started
                self._series[bar.instrument].history.append(bar)  # before the slice is handled skips it)
            self._last_emitted_close_ns = max(self._last_emitted_close_ns, close_ns)
            slice_ = BarSlice(close_ns, bars)
            self.slices_emitted += 1
            self.bars_emitted += len(bars)
            emitted += len(bars)
            try:
                await self._deliver(slice_)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the engine refused or failed it; the feed goes on
                log.exception("live bar feed %s: slice at %d not handled", self.name, close_ns)
        return emitted


class LiveMarketData:
    """The live bar feeds of one appliance, looked up by instrument: what warm-up, marks and the
    GetCandles RPC read in live mode (the replay feed's reading interface)."""

    def __init__(self, timeframe: str) -> None:
        self.timeframe = timeframe
        self.feeds: list[LiveBarFeed] = []

    def add_feed(self, feed: LiveBarFeed) -> None:
        self.feeds.append(feed)

    def feed_of(self, instrument: InstrumentId) -> LiveBarFeed | None:
        for feed in self.feeds:
            if feed.covers(instrument):
                return feed
        return None

    def history(self, instrument: InstrumentId, before_or_at_ns: int, n: int) -> list[Bar]:
        """The last ``n`` bars of ``instrument`` closed by ``before_or_at_ns``; [] without a feed."""
        feed = self.feed_of(instrument)
        if feed is None or n <= 0:
            return []
        bars = feed.history(instrument, feed.history_bars)
        bars = [b for b in bars if b.close_ns <= before_or_at_ns]
        return bars[-n:]

    def candles(self, instrument: InstrumentId, start_ns: int | None = None, end_ns: int | None = None,
                limit: int = 1000) -> list[Bar]:
        """See :meth:`LiveBarFeed.candles`.

        Raises:
            PreconditionError: no live bar feed serves ``instrument``.
        """
        feed = self.feed_of(instrument)
        if feed is None:
            raise PreconditionError(f"no live bar feed for {instrument}: bars are fetched for the paper venue's "
                                    "symbols and for instruments of live venues listed in their symbols or traded "
                                    "by a strategy")
        return feed.candles(instrument, start_ns, end_ns, limit)

    async def stop(self) -> None:
        for feed in self.feeds:
            await feed.stop()


def _short(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
