import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Balance(_message.Message):
    __slots__ = ("asset", "total", "reserved", "free", "venue")
    ASSET_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    FREE_FIELD_NUMBER: _ClassVar[int]
    VENUE_FIELD_NUMBER: _ClassVar[int]
    asset: str
    total: str
    reserved: str
    free: str
    venue: str
    def __init__(self, asset: _Optional[str] = ..., total: _Optional[str] = ..., reserved: _Optional[str] = ..., free: _Optional[str] = ..., venue: _Optional[str] = ...) -> None: ...

class ListBalancesRequest(_message.Message):
    __slots__ = ("venue",)
    VENUE_FIELD_NUMBER: _ClassVar[int]
    venue: str
    def __init__(self, venue: _Optional[str] = ...) -> None: ...

class ListBalancesResponse(_message.Message):
    __slots__ = ("balances",)
    BALANCES_FIELD_NUMBER: _ClassVar[int]
    balances: _containers.RepeatedCompositeFieldContainer[Balance]
    def __init__(self, balances: _Optional[_Iterable[_Union[Balance, _Mapping]]] = ...) -> None: ...

class Position(_message.Message):
    __slots__ = ("instrument", "qty", "avg_price", "mark_price", "unrealized_pnl", "realized_pnl", "fees", "notional", "currency")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    AVG_PRICE_FIELD_NUMBER: _ClassVar[int]
    MARK_PRICE_FIELD_NUMBER: _ClassVar[int]
    UNREALIZED_PNL_FIELD_NUMBER: _ClassVar[int]
    REALIZED_PNL_FIELD_NUMBER: _ClassVar[int]
    FEES_FIELD_NUMBER: _ClassVar[int]
    NOTIONAL_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    instrument: str
    qty: str
    avg_price: str
    mark_price: str
    unrealized_pnl: str
    realized_pnl: str
    fees: str
    notional: str
    currency: str
    def __init__(self, instrument: _Optional[str] = ..., qty: _Optional[str] = ..., avg_price: _Optional[str] = ..., mark_price: _Optional[str] = ..., unrealized_pnl: _Optional[str] = ..., realized_pnl: _Optional[str] = ..., fees: _Optional[str] = ..., notional: _Optional[str] = ..., currency: _Optional[str] = ...) -> None: ...

class ListPositionsRequest(_message.Message):
    __slots__ = ("instrument", "include_flat")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_FLAT_FIELD_NUMBER: _ClassVar[int]
    instrument: str
    include_flat: bool
    def __init__(self, instrument: _Optional[str] = ..., include_flat: _Optional[bool] = ...) -> None: ...

class ListPositionsResponse(_message.Message):
    __slots__ = ("positions",)
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    positions: _containers.RepeatedCompositeFieldContainer[Position]
    def __init__(self, positions: _Optional[_Iterable[_Union[Position, _Mapping]]] = ...) -> None: ...

class GetPnlRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InstrumentPnl(_message.Message):
    __slots__ = ("instrument", "realized_pnl", "unrealized_pnl", "fees", "net_pnl")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    REALIZED_PNL_FIELD_NUMBER: _ClassVar[int]
    UNREALIZED_PNL_FIELD_NUMBER: _ClassVar[int]
    FEES_FIELD_NUMBER: _ClassVar[int]
    NET_PNL_FIELD_NUMBER: _ClassVar[int]
    instrument: str
    realized_pnl: str
    unrealized_pnl: str
    fees: str
    net_pnl: str
    def __init__(self, instrument: _Optional[str] = ..., realized_pnl: _Optional[str] = ..., unrealized_pnl: _Optional[str] = ..., fees: _Optional[str] = ..., net_pnl: _Optional[str] = ...) -> None: ...

class Pnl(_message.Message):
    __slots__ = ("nav_currency", "nav", "starting_nav", "realized_pnl", "unrealized_pnl", "fees", "instruments", "as_of", "net_pnl")
    NAV_CURRENCY_FIELD_NUMBER: _ClassVar[int]
    NAV_FIELD_NUMBER: _ClassVar[int]
    STARTING_NAV_FIELD_NUMBER: _ClassVar[int]
    REALIZED_PNL_FIELD_NUMBER: _ClassVar[int]
    UNREALIZED_PNL_FIELD_NUMBER: _ClassVar[int]
    FEES_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    NET_PNL_FIELD_NUMBER: _ClassVar[int]
    nav_currency: str
    nav: str
    starting_nav: str
    realized_pnl: str
    unrealized_pnl: str
    fees: str
    instruments: _containers.RepeatedCompositeFieldContainer[InstrumentPnl]
    as_of: _timestamp_pb2.Timestamp
    net_pnl: str
    def __init__(self, nav_currency: _Optional[str] = ..., nav: _Optional[str] = ..., starting_nav: _Optional[str] = ..., realized_pnl: _Optional[str] = ..., unrealized_pnl: _Optional[str] = ..., fees: _Optional[str] = ..., instruments: _Optional[_Iterable[_Union[InstrumentPnl, _Mapping]]] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., net_pnl: _Optional[str] = ...) -> None: ...
