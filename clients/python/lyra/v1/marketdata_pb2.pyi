import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Instrument(_message.Message):
    __slots__ = ("instrument", "venue", "symbol", "base", "quote", "price_tick", "qty_step", "min_qty", "min_notional", "maker_fee_bps", "taker_fee_bps")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    VENUE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    BASE_FIELD_NUMBER: _ClassVar[int]
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    PRICE_TICK_FIELD_NUMBER: _ClassVar[int]
    QTY_STEP_FIELD_NUMBER: _ClassVar[int]
    MIN_QTY_FIELD_NUMBER: _ClassVar[int]
    MIN_NOTIONAL_FIELD_NUMBER: _ClassVar[int]
    MAKER_FEE_BPS_FIELD_NUMBER: _ClassVar[int]
    TAKER_FEE_BPS_FIELD_NUMBER: _ClassVar[int]
    instrument: str
    venue: str
    symbol: str
    base: str
    quote: str
    price_tick: str
    qty_step: str
    min_qty: str
    min_notional: str
    maker_fee_bps: str
    taker_fee_bps: str
    def __init__(self, instrument: _Optional[str] = ..., venue: _Optional[str] = ..., symbol: _Optional[str] = ..., base: _Optional[str] = ..., quote: _Optional[str] = ..., price_tick: _Optional[str] = ..., qty_step: _Optional[str] = ..., min_qty: _Optional[str] = ..., min_notional: _Optional[str] = ..., maker_fee_bps: _Optional[str] = ..., taker_fee_bps: _Optional[str] = ...) -> None: ...

class ListInstrumentsRequest(_message.Message):
    __slots__ = ("venue", "page_size", "page_token")
    VENUE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    venue: str
    page_size: int
    page_token: str
    def __init__(self, venue: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListInstrumentsResponse(_message.Message):
    __slots__ = ("instruments", "next_page_token")
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    instruments: _containers.RepeatedCompositeFieldContainer[Instrument]
    next_page_token: str
    def __init__(self, instruments: _Optional[_Iterable[_Union[Instrument, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Candle(_message.Message):
    __slots__ = ("open_time", "close_time", "open", "high", "low", "close", "volume")
    OPEN_TIME_FIELD_NUMBER: _ClassVar[int]
    CLOSE_TIME_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    LOW_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    open_time: _timestamp_pb2.Timestamp
    close_time: _timestamp_pb2.Timestamp
    open: str
    high: str
    low: str
    close: str
    volume: str
    def __init__(self, open_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., close_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., open: _Optional[str] = ..., high: _Optional[str] = ..., low: _Optional[str] = ..., close: _Optional[str] = ..., volume: _Optional[str] = ...) -> None: ...

class GetCandlesRequest(_message.Message):
    __slots__ = ("instrument", "start_time", "end_time", "limit", "interval")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    instrument: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    limit: int
    interval: str
    def __init__(self, instrument: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., limit: _Optional[int] = ..., interval: _Optional[str] = ...) -> None: ...

class GetCandlesResponse(_message.Message):
    __slots__ = ("candles", "interval")
    CANDLES_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    candles: _containers.RepeatedCompositeFieldContainer[Candle]
    interval: str
    def __init__(self, candles: _Optional[_Iterable[_Union[Candle, _Mapping]]] = ..., interval: _Optional[str] = ...) -> None: ...

class FetchCandlesRequest(_message.Message):
    __slots__ = ("exchange", "symbols", "timeframe", "since", "until", "dataset_dir")
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    TIMEFRAME_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    DATASET_DIR_FIELD_NUMBER: _ClassVar[int]
    exchange: str
    symbols: _containers.RepeatedScalarFieldContainer[str]
    timeframe: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    dataset_dir: str
    def __init__(self, exchange: _Optional[str] = ..., symbols: _Optional[_Iterable[str]] = ..., timeframe: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., dataset_dir: _Optional[str] = ...) -> None: ...

class CandleGap(_message.Message):
    __slots__ = ("start_time", "end_time", "missing_bars")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    MISSING_BARS_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    missing_bars: int
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., missing_bars: _Optional[int] = ...) -> None: ...

class CandleFile(_message.Message):
    __slots__ = ("name", "path", "exchange", "symbol", "timeframe", "bars", "first_time", "last_time", "size_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    TIMEFRAME_FIELD_NUMBER: _ClassVar[int]
    BARS_FIELD_NUMBER: _ClassVar[int]
    FIRST_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_TIME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    path: str
    exchange: str
    symbol: str
    timeframe: str
    bars: int
    first_time: _timestamp_pb2.Timestamp
    last_time: _timestamp_pb2.Timestamp
    size_bytes: int
    def __init__(self, name: _Optional[str] = ..., path: _Optional[str] = ..., exchange: _Optional[str] = ..., symbol: _Optional[str] = ..., timeframe: _Optional[str] = ..., bars: _Optional[int] = ..., first_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class FetchCandlesResult(_message.Message):
    __slots__ = ("symbol", "file", "bars_written", "resumed_after", "gap_count", "missing_bars", "gaps", "repaired", "dropped_invalid_bars", "requests", "error")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    BARS_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    RESUMED_AFTER_FIELD_NUMBER: _ClassVar[int]
    GAP_COUNT_FIELD_NUMBER: _ClassVar[int]
    MISSING_BARS_FIELD_NUMBER: _ClassVar[int]
    GAPS_FIELD_NUMBER: _ClassVar[int]
    REPAIRED_FIELD_NUMBER: _ClassVar[int]
    DROPPED_INVALID_BARS_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    file: CandleFile
    bars_written: int
    resumed_after: _timestamp_pb2.Timestamp
    gap_count: int
    missing_bars: int
    gaps: _containers.RepeatedCompositeFieldContainer[CandleGap]
    repaired: bool
    dropped_invalid_bars: int
    requests: int
    error: str
    def __init__(self, symbol: _Optional[str] = ..., file: _Optional[_Union[CandleFile, _Mapping]] = ..., bars_written: _Optional[int] = ..., resumed_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., gap_count: _Optional[int] = ..., missing_bars: _Optional[int] = ..., gaps: _Optional[_Iterable[_Union[CandleGap, _Mapping]]] = ..., repaired: _Optional[bool] = ..., dropped_invalid_bars: _Optional[int] = ..., requests: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class FetchCandlesProgress(_message.Message):
    __slots__ = ("symbol", "bars_written", "expected_bars", "last_time", "done", "results", "dataset_dir", "files")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    BARS_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_BARS_FIELD_NUMBER: _ClassVar[int]
    LAST_TIME_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    DATASET_DIR_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    bars_written: int
    expected_bars: int
    last_time: _timestamp_pb2.Timestamp
    done: bool
    results: _containers.RepeatedCompositeFieldContainer[FetchCandlesResult]
    dataset_dir: str
    files: _containers.RepeatedCompositeFieldContainer[CandleFile]
    def __init__(self, symbol: _Optional[str] = ..., bars_written: _Optional[int] = ..., expected_bars: _Optional[int] = ..., last_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., done: _Optional[bool] = ..., results: _Optional[_Iterable[_Union[FetchCandlesResult, _Mapping]]] = ..., dataset_dir: _Optional[str] = ..., files: _Optional[_Iterable[_Union[CandleFile, _Mapping]]] = ...) -> None: ...
