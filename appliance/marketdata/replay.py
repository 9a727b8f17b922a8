"""ReplayFeed: historical candles delivered as the engine would have seen them live.

A bar is known only when it closes, so every bar is delivered at ``close_ns = open_ns +
timeframe``. Bars of all instruments are merged in time order; the bars that close at the same
nanosecond form one :class:`BarSlice` (one engine message, one transaction), ordered by
instrument symbol (then venue) so that a replay is deterministic.

The merge is done once with numpy (``lexsort`` over close time and instrument rank); lookups
(:meth:`ReplayFeed.slices` after a cursor, :meth:`ReplayFeed.history`,
:meth:`ReplayFeed.candles`) are ``np.searchsorted`` on sorted int64 arrays, never scans.
Bars are turned into exact-Decimal :class:`Bar` objects only when they are handed out.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Awaitable, Callable, Iterator, Sequence

import numpy as np

from appliance.marketdata.bar import Bar, BarSlice
from appliance.marketdata.candles import CandleSeries
from appliance.model.errors import NotFoundError, PreconditionError, ValidationError
from appliance.model.instrument import InstrumentId

Deliver = Callable[[BarSlice], Awaitable[object]]

# The one wall-clock wait of the replay driver (paced replays); a name of its own so tests can
# observe the requested waits without sleeping.
_wall_sleep = asyncio.sleep
ProgressCallback = Callable[[int, int, int], object]


@dataclass(frozen=True, slots=True)
class ReplayProgress:
    """Where a replay stands.

    Attributes:
        delivered: slices handled so far, counted from the start of the feed (a resumed run
            starts at ``count of slices with close_ns <= after_ns``).
        total: slices in the whole feed.
        last_close_ns: close time of the last slice handled (the resume cursor), 0 before any.
    """

    delivered: int
    total: int
    last_close_ns: int


class ReplayFeed:
    """Merged, time-ordered replay of several instruments' candles.

    Args:
        series: ``(instrument, candles)`` pairs; each instrument at most once. Series may have
            different timeframes (each bar closes at its own ``open_ns + timeframe``).

    Raises:
        ValidationError: an instrument appears twice (field ``series``).
    """

    def __init__(self, series: Sequence[tuple[InstrumentId, CandleSeries]]) -> None:
        seen: dict[InstrumentId, CandleSeries] = {}
        for instrument, candles in series:
            if instrument in seen:
                raise ValidationError(
                    "series",
                    f"instrument {instrument} is given twice ({seen[instrument].file.path.name} and "
                    f"{candles.file.path.name}); keep one file per symbol",
                )
            seen[instrument] = candles
        # Deterministic order inside a slice: by symbol, then venue.
        ordered = sorted(series, key=lambda pair: (pair[0].symbol, pair[0].venue))
        self._instruments: list[InstrumentId] = [inst for inst, _ in ordered]
        self._series: list[CandleSeries] = [s for _, s in ordered]
        self._index: dict[InstrumentId, int] = {inst: k for k, inst in enumerate(self._instruments)}

        if ordered:
            close = np.concatenate([s.close_ns for s in self._series]).astype(np.int64, copy=False)
            inst = np.concatenate([np.full(len(s), k, dtype=np.int32) for k, s in enumerate(self._series)])
            row = np.concatenate([np.arange(len(s), dtype=np.int64) for s in self._series])
        else:
            close = np.zeros(0, dtype=np.int64)
            inst = np.zeros(0, dtype=np.int32)
            row = np.zeros(0, dtype=np.int64)
        order = np.lexsort((inst, close))  # primary key close_ns, then instrument rank
        self._close = close[order]
        self._inst = inst[order]
        self._row = row[order]
        if len(self._close):
            starts = np.flatnonzero(np.concatenate(([True], np.diff(self._close) != 0)))
        else:
            starts = np.zeros(0, dtype=np.int64)
        self._slice_close: np.ndarray = self._close[starts]
        self._slice_start: np.ndarray = np.concatenate((starts, [len(self._close)])).astype(np.int64)

        self._resume_event = asyncio.Event()
        self._resume_event.set()
        self._running = False
        self._finished = False
        self._delivered = 0
        self._last_close_ns = 0

    @classmethod
    def from_candles(cls, series: Sequence[CandleSeries], venue: str) -> "ReplayFeed":
        """A feed of ``InstrumentId(venue, file symbol)`` for each series.

        Raises:
            ValidationError: two series have the same symbol (e.g. the same pair from two
                exchanges, or two timeframes) -- pick one per symbol.
        """
        return cls([(InstrumentId(venue, s.file.symbol), s) for s in series])

    # -- shape --------------------------------------------------------------------------------
    @property
    def instruments(self) -> list[InstrumentId]:
        """Instruments of the feed, in slice order (by symbol, then venue)."""
        return list(self._instruments)

    def series(self, instrument: InstrumentId) -> CandleSeries:
        """The candle arrays of ``instrument``.

        Raises:
            NotFoundError: not in this feed.
        """
        return self._series[self._k(instrument)]

    @property
    def total_slices(self) -> int:
        """Number of distinct close times (slices) in the feed."""
        return int(len(self._slice_close))

    @property
    def total_bars(self) -> int:
        return int(len(self._close))

    @property
    def first_close_ns(self) -> int | None:
        """Close time of the first slice; ``None`` for an empty feed."""
        return int(self._slice_close[0]) if self.total_slices else None

    @property
    def last_close_ns(self) -> int | None:
        """Close time of the last slice; ``None`` for an empty feed."""
        return int(self._slice_close[-1]) if self.total_slices else None

    def _first_slice_after(self, after_ns: int) -> int:
        return int(np.searchsorted(self._slice_close, after_ns, side="right"))

    def count_after(self, after_ns: int) -> int:
        """Number of slices with ``close_ns > after_ns`` (what a resumed run would deliver)."""
        return self.total_slices - self._first_slice_after(after_ns)

    # -- slices -------------------------------------------------------------------------------
    def slice_at(self, k: int) -> BarSlice:
        """The ``k``-th slice (0-based) with exact-Decimal bars.

        Raises:
            IndexError: ``k`` out of range.
        """
        if not 0 <= k < self.total_slices:
            raise IndexError(f"slice {k} out of range 0..{self.total_slices - 1}")
        lo, hi = int(self._slice_start[k]), int(self._slice_start[k + 1])
        bars = tuple(
            self._series[i].bar(r, self._instruments[i])
            for i, r in zip(self._inst[lo:hi].tolist(), self._row[lo:hi].tolist())
        )
        return BarSlice(close_ns=int(self._slice_close[k]), bars=bars)

    def slices(self, after_ns: int = 0) -> Iterator[BarSlice]:
        """Slices with ``close_ns > after_ns``, in time order (resume after the last handled slice)."""
        for k in range(self._first_slice_after(after_ns), self.total_slices):
            yield self.slice_at(k)

    # -- windows ------------------------------------------------------------------------------
    def _k(self, instrument: InstrumentId) -> int:
        k = self._index.get(instrument)
        if k is None:
            raise NotFoundError(f"instrument {instrument} is not in this replay feed")
        return k

    def history(self, instrument: InstrumentId, before_or_at_ns: int, n: int) -> list[Bar]:
        """The last ``n`` bars of ``instrument`` with ``close_ns <= before_or_at_ns``, oldest first.

        Used to warm strategies up: only bars already known at that time are returned.

        Raises:
            NotFoundError: the instrument is not in this feed.
        """
        k = self._k(instrument)
        if n <= 0:
            return []
        s = self._series[k]
        stop = int(np.searchsorted(s.close_ns, before_or_at_ns, side="right"))
        return s.bars(instrument, max(0, stop - n), stop)

    def candles(
        self,
        instrument: InstrumentId,
        start_ns: int | None = None,
        end_ns: int | None = None,
        limit: int = 1000,
    ) -> list[Bar]:
        """Bars of ``instrument`` lying inside ``[start_ns, end_ns]``: ``open_ns >= start_ns`` and
        ``close_ns <= end_ns`` (a bar not closed by ``end_ns`` is not known yet), oldest first.

        With ``start_ns`` the FIRST ``limit`` bars from it are returned (page forward, like
        ccxt ``fetch_ohlcv(since, limit)``); without it, the LAST ``limit`` bars up to ``end_ns``.

        Raises:
            NotFoundError: the instrument is not in this feed.
            ValidationError: ``limit`` < 1 (field ``limit``).
        """
        k = self._k(instrument)
        if limit < 1:
            raise ValidationError("limit", f"must be >= 1, got {limit}")
        s = self._series[k]
        lo = 0 if start_ns is None else int(np.searchsorted(s.open_ns, start_ns, side="left"))
        hi = len(s) if end_ns is None else int(np.searchsorted(s.close_ns, end_ns, side="right"))
        if hi <= lo:
            return []
        if start_ns is not None:
            hi = min(hi, lo + limit)
        else:
            lo = max(lo, hi - limit)
        return s.bars(instrument, lo, hi)

    # -- driver -------------------------------------------------------------------------------
    def pause(self) -> None:
        """Stop delivering after the slice in progress (if any); :meth:`resume` continues."""
        self._resume_event.clear()

    def resume(self) -> None:
        self._resume_event.set()

    @property
    def is_paused(self) -> bool:
        return not self._resume_event.is_set()

    @property
    def is_running(self) -> bool:
        return self._running

    @property
    def is_finished(self) -> bool:
        """True once :meth:`run` has delivered the last slice of the feed."""
        return self._finished

    @property
    def progress(self) -> ReplayProgress:
        return ReplayProgress(self._delivered, self.total_slices, self._last_close_ns)

    async def run(
        self,
        deliver: Deliver,
        *,
        after_ns: int = 0,
        speed: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> int:
        """Deliver every slice with ``close_ns > after_ns`` to ``deliver``, in order.

        Args:
            deliver: ``async deliver(slice)``; returns once the engine has handled the slice
                (committed). The next slice is not delivered before it returns.
            after_ns: resume cursor: close time of the last slice already handled (0 = start).
            speed: ``None`` or 0 = as fast as possible; ``N > 0`` = N times real time: between
                two slices the driver waits ``(close delta) / N`` seconds of wall time (measured
                with the event loop's monotonic clock, minus the time ``deliver`` took).
            on_progress: called after each delivered slice with
                ``(delivered, total, last_close_ns)`` (see :class:`ReplayProgress`).

        Returns:
            The number of slices delivered by this call.

        Raises:
            ValidationError: ``speed`` is negative (field ``speed``).
            PreconditionError: the feed is already running.
            asyncio.CancelledError: the task was cancelled; it propagates unchanged, and
                :attr:`progress` tells which slices were delivered.
            Whatever ``deliver`` raises (the failed slice does not count as delivered).
        """
        if speed is not None and speed < 0:
            raise ValidationError("speed", f"must be >= 0 (0 = as fast as possible), got {speed}")
        if self._running:
            raise PreconditionError("this replay feed is already running")
        loop = asyncio.get_running_loop()
        paused = self.is_paused
        self._resume_event = asyncio.Event()  # bound to this loop; keeps the paused state
        if not paused:
            self._resume_event.set()
        first = self._first_slice_after(after_ns)
        self._running = True
        self._finished = False
        self._delivered = first
        self._last_close_ns = int(self._slice_close[first - 1]) if first > 0 else 0
        delivered_now = 0
        prev_close: int | None = None
        prev_wall = 0.0
        try:
            for k in range(first, self.total_slices):
                await self._resume_event.wait()
                close_ns = int(self._slice_close[k])
                if speed and prev_close is not None:
                    due = prev_wall + (close_ns - prev_close) / 1e9 / speed
                    delay = due - loop.time()
                    if delay > 0:
                        await _wall_sleep(delay)
                    await self._resume_event.wait()  # paused during the wait
                await deliver(self.slice_at(k))
                prev_close, prev_wall = close_ns, loop.time()
                delivered_now += 1
                self._delivered = k + 1
                self._last_close_ns = close_ns
                if on_progress is not None:
                    on_progress(self._delivered, self.total_slices, close_ns)
            self._finished = True
        finally:
            self._running = False
        return delivered_now
