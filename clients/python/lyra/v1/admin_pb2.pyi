import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ServerState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SERVER_STATE_UNSPECIFIED: _ClassVar[ServerState]
    SERVER_STATE_STARTING: _ClassVar[ServerState]
    SERVER_STATE_SEALED: _ClassVar[ServerState]
    SERVER_STATE_RUNNING: _ClassVar[ServerState]
    SERVER_STATE_DEGRADED: _ClassVar[ServerState]
    SERVER_STATE_STOPPING: _ClassVar[ServerState]

class ReplayState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REPLAY_STATE_UNSPECIFIED: _ClassVar[ReplayState]
    REPLAY_STATE_WAITING: _ClassVar[ReplayState]
    REPLAY_STATE_RUNNING: _ClassVar[ReplayState]
    REPLAY_STATE_PAUSED: _ClassVar[ReplayState]
    REPLAY_STATE_FINISHED: _ClassVar[ReplayState]

class VenueHealth(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VENUE_HEALTH_UNSPECIFIED: _ClassVar[VenueHealth]
    VENUE_HEALTH_CONNECTED: _ClassVar[VenueHealth]
    VENUE_HEALTH_DEGRADED: _ClassVar[VenueHealth]
    VENUE_HEALTH_DOWN: _ClassVar[VenueHealth]
SERVER_STATE_UNSPECIFIED: ServerState
SERVER_STATE_STARTING: ServerState
SERVER_STATE_SEALED: ServerState
SERVER_STATE_RUNNING: ServerState
SERVER_STATE_DEGRADED: ServerState
SERVER_STATE_STOPPING: ServerState
REPLAY_STATE_UNSPECIFIED: ReplayState
REPLAY_STATE_WAITING: ReplayState
REPLAY_STATE_RUNNING: ReplayState
REPLAY_STATE_PAUSED: ReplayState
REPLAY_STATE_FINISHED: ReplayState
VENUE_HEALTH_UNSPECIFIED: VenueHealth
VENUE_HEALTH_CONNECTED: VenueHealth
VENUE_HEALTH_DEGRADED: VenueHealth
VENUE_HEALTH_DOWN: VenueHealth

class GetVersionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetVersionResponse(_message.Message):
    __slots__ = ("version", "schema_version")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    version: str
    schema_version: int
    def __init__(self, version: _Optional[str] = ..., schema_version: _Optional[int] = ...) -> None: ...

class ReplayProgress(_message.Message):
    __slots__ = ("state", "slices_done", "slices_total", "percent", "current_time", "lag")
    STATE_FIELD_NUMBER: _ClassVar[int]
    SLICES_DONE_FIELD_NUMBER: _ClassVar[int]
    SLICES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    CURRENT_TIME_FIELD_NUMBER: _ClassVar[int]
    LAG_FIELD_NUMBER: _ClassVar[int]
    state: ReplayState
    slices_done: int
    slices_total: int
    percent: float
    current_time: _timestamp_pb2.Timestamp
    lag: _duration_pb2.Duration
    def __init__(self, state: _Optional[_Union[ReplayState, str]] = ..., slices_done: _Optional[int] = ..., slices_total: _Optional[int] = ..., percent: _Optional[float] = ..., current_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lag: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("state", "uptime_seconds", "mode", "clock_time", "journal_seq", "replay", "version")
    STATE_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    CLOCK_TIME_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_SEQ_FIELD_NUMBER: _ClassVar[int]
    REPLAY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    state: ServerState
    uptime_seconds: float
    mode: str
    clock_time: _timestamp_pb2.Timestamp
    journal_seq: int
    replay: ReplayProgress
    version: str
    def __init__(self, state: _Optional[_Union[ServerState, str]] = ..., uptime_seconds: _Optional[float] = ..., mode: _Optional[str] = ..., clock_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., journal_seq: _Optional[int] = ..., replay: _Optional[_Union[ReplayProgress, _Mapping]] = ..., version: _Optional[str] = ...) -> None: ...

class GetReplayProgressRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StartReplayRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PauseReplayRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VenueStatus(_message.Message):
    __slots__ = ("name", "kind", "exchange", "health", "reason", "instruments", "open_orders", "last_ok_time", "last_error", "requests_last_minute", "request_budget_per_minute")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    OPEN_ORDERS_FIELD_NUMBER: _ClassVar[int]
    LAST_OK_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_LAST_MINUTE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_BUDGET_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    exchange: str
    health: VenueHealth
    reason: str
    instruments: int
    open_orders: int
    last_ok_time: _timestamp_pb2.Timestamp
    last_error: str
    requests_last_minute: int
    request_budget_per_minute: int
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., exchange: _Optional[str] = ..., health: _Optional[_Union[VenueHealth, str]] = ..., reason: _Optional[str] = ..., instruments: _Optional[int] = ..., open_orders: _Optional[int] = ..., last_ok_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_error: _Optional[str] = ..., requests_last_minute: _Optional[int] = ..., request_budget_per_minute: _Optional[int] = ...) -> None: ...

class ListVenuesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListVenuesResponse(_message.Message):
    __slots__ = ("venues",)
    VENUES_FIELD_NUMBER: _ClassVar[int]
    venues: _containers.RepeatedCompositeFieldContainer[VenueStatus]
    def __init__(self, venues: _Optional[_Iterable[_Union[VenueStatus, _Mapping]]] = ...) -> None: ...
