"""MarketDataService."""

from __future__ import annotations

from appliance.model.errors import ValidationError
from appliance.model.instrument import InstrumentId
from appliance.model.money import dec_str
from appliance.server import convert as cv
from lyra.v1 import marketdata_pb2, marketdata_pb2_grpc


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
        bars = self.app.feed.candles(iid, start_ns=start, end_ns=end, limit=request.limit or 1000)
        return marketdata_pb2.GetCandlesResponse(interval=self.app.config.paper.timeframe, candles=[
            marketdata_pb2.Candle(open_time=cv.ts(b.open_ns), close_time=cv.ts(b.close_ns), open=dec_str(b.open),
                                  high=dec_str(b.high), low=dec_str(b.low), close=dec_str(b.close), volume=dec_str(b.volume))
            for b in bars])
