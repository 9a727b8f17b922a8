"""MarketDataService."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from appliance.engine.clock import LiveClock
from appliance.marketdata.download import (
    CandleDownloader,
    CandleFileInfo,
    DownloadResult,
    PUBLIC_EXCHANGE_CONFIG,
    check_exchange_id,
    list_dataset,
    resolve_dataset_dir,
)
from appliance.model.errors import PreconditionError, ValidationError
from appliance.model.instrument import InstrumentId
from appliance.model.money import dec_str
from appliance.server import convert as cv
from appliance.venues.ccxt.options import spot_options
from lyra.v1 import marketdata_pb2, marketdata_pb2_grpc

log = logging.getLogger(__name__)
NS_PER_MS = 1_000_000


class MarketDataServicer(marketdata_pb2_grpc.MarketDataServiceServicer):
    def __init__(self, app) -> None:
        self.app = app

    async def ListInstruments(self, request, context):
        items = sorted(self.app.instruments.values(), key=lambda i: str(i.id))
        if request.venue:
            items = [i for i in items if i.id.venue == request.venue]
        after = cv.decode_page_token("instruments", request.page_token)
        size = cv.page_size(request.page_size)
        page = items[after: after + size]
        more = after + size < len(items)
        return marketdata_pb2.ListInstrumentsResponse(
            instruments=[cv.instrument_to_pb(i) for i in page],
            next_page_token=cv.encode_page_token("instruments", after + size) if more else "")

    async def GetCandles(self, request, context):
        if not request.instrument:
            raise ValidationError("instrument", "is required")
        iid = InstrumentId.parse(request.instrument, self.app.config.paper.venue)
        if iid not in self.app.instruments:
            raise ValidationError("instrument", f"unknown instrument {iid}")
        if request.limit < 0 or request.limit > 10_000:
            raise ValidationError("limit", "must be between 0 and 10000 (0 = 1000)")
        if request.interval and request.interval != self.app.config.paper.timeframe:
            raise ValidationError("interval", f"only the dataset's timeframe {self.app.config.paper.timeframe} is available")
        start = cv.ts_ns(request.start_time, request.HasField("start_time"))
        end = cv.ts_ns(request.end_time, request.HasField("end_time"))
        # replayed data only: nothing past the replay position (no look-ahead through the API)
        now = self.app.clock.now_ns()
        end = min(end, now) if end is not None else now
        if self.app.feed is None:
            raise PreconditionError("GetCandles serves the replay dataset; in live mode use `lyractl data fetch`")
        bars = self.app.feed.candles(iid, start_ns=start, end_ns=end, limit=request.limit or 1000)
        return marketdata_pb2.GetCandlesResponse(interval=self.app.config.paper.timeframe, candles=[
            marketdata_pb2.Candle(open_time=cv.ts(b.open_ns), close_time=cv.ts(b.close_ns), open=dec_str(b.open),
                                  high=dec_str(b.high), low=dec_str(b.low), close=dec_str(b.close), volume=dec_str(b.volume))
            for b in bars])

    async def FetchCandles(self, request, context):
        """Download candles into the dataset folder, streaming progress (see marketdata.proto).

        The exchange comes from ``app.public_exchange_factory()`` (ccxt without credentials,
        routed through ``[exchange_urls]``; tests may override it); ``config`` is
        :data:`PUBLIC_EXCHANGE_CONFIG` (rate limiter on, no credentials) with the exchange's spot
        options. A fresh exchange per call, closed when the call ends. The download runs on the server's event loop as async
        I/O (file writes in worker threads); it never touches the database nor the engine.
        """
        folder = await asyncio.to_thread(
            resolve_dataset_dir, self.app.config.storage.data_dir, request.dataset_dir.strip())
        results: list[DownloadResult] = []
        if request.symbols:
            if not request.exchange.strip():
                raise ValidationError("exchange", "is required (a ccxt exchange id such as binance)")
            if not request.timeframe.strip():
                raise ValidationError("timeframe", "is required (e.g. 1m, 5m, 1h)")
            if not request.HasField("since"):
                raise ValidationError("since", "is required (open time of the first bar wanted)")
            since_ms = request.since.ToNanoseconds() // NS_PER_MS
            until_ms = request.until.ToNanoseconds() // NS_PER_MS if request.HasField("until") else None
            exchange_id = check_exchange_id(request.exchange)
            # never with credentials; routed through [exchange_urls] (tests: the emulator)
            exchange = self.app.public_exchange_factory()(
                exchange_id, {**PUBLIC_EXCHANGE_CONFIG, "options": spot_options(exchange_id)})
            queue: asyncio.Queue = asyncio.Queue()
            task = None
            try:
                downloader = CandleDownloader(exchange, folder, clock=getattr(self.app, "wall_clock", None) or LiveClock())
                task = asyncio.create_task(downloader.fetch(
                    list(request.symbols), request.timeframe.strip(), since_ms, until_ms,
                    on_progress=lambda *args: queue.put_nowait(args)))
                task.add_done_callback(lambda _t: queue.put_nowait(None))
                while (item := await queue.get()) is not None:
                    symbol, written, expected, last_ms = item
                    msg = marketdata_pb2.FetchCandlesProgress(symbol=symbol, bars_written=written, expected_bars=expected)
                    if last_ms is not None:
                        msg.last_time.CopyFrom(cv.ts(last_ms * NS_PER_MS))
                    yield msg
                results = task.result()
            finally:
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                close = getattr(exchange, "close", None)
                if close is not None:
                    try:
                        await close()
                    except Exception:  # noqa: BLE001 - closing a session must not hide the outcome
                        log.warning("closing the %s exchange session failed", exchange_id, exc_info=True)
        files = await asyncio.to_thread(list_dataset, folder)
        yield marketdata_pb2.FetchCandlesProgress(
            done=True, dataset_dir=str(folder), results=[_result_to_pb(r) for r in results],
            files=[_file_to_pb(f) for f in files])


def _ms_ts(ms: int | None):
    return cv.ts(ms * NS_PER_MS) if ms is not None else None


def _file_to_pb(info: CandleFileInfo) -> marketdata_pb2.CandleFile:
    return marketdata_pb2.CandleFile(
        name=info.path.name, path=str(info.path), exchange=info.exchange, symbol=info.symbol,
        timeframe=info.timeframe, bars=info.bars, first_time=_ms_ts(info.first_ts_ms),
        last_time=_ms_ts(info.last_ts_ms), size_bytes=info.size_bytes)


def _result_to_pb(r: DownloadResult) -> marketdata_pb2.FetchCandlesResult:
    try:
        size = r.path.stat().st_size
    except OSError:
        size = 0
    file = marketdata_pb2.CandleFile(
        name=r.path.name, path=str(r.path), exchange=r.exchange, symbol=r.symbol, timeframe=r.timeframe,
        bars=r.bars_total, first_time=_ms_ts(r.first_ts_ms), last_time=_ms_ts(r.last_ts_ms), size_bytes=size)
    return marketdata_pb2.FetchCandlesResult(
        symbol=r.symbol, file=file, bars_written=r.bars_written, resumed_after=_ms_ts(r.resumed_after_ms),
        gap_count=r.gap_count, missing_bars=r.missing_bars,
        gaps=[marketdata_pb2.CandleGap(start_time=_ms_ts(g.start_ms), end_time=_ms_ts(g.end_ms),
                                       missing_bars=g.missing_bars) for g in r.gaps],
        repaired=r.repaired, dropped_invalid_bars=r.dropped_invalid, requests=r.requests, error=r.error)
