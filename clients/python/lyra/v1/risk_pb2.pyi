import datetime

from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TradingState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRADING_STATE_UNSPECIFIED: _ClassVar[TradingState]
    TRADING_STATE_ACTIVE: _ClassVar[TradingState]
    TRADING_STATE_REDUCING: _ClassVar[TradingState]
    TRADING_STATE_HALTED: _ClassVar[TradingState]
TRADING_STATE_UNSPECIFIED: TradingState
TRADING_STATE_ACTIVE: TradingState
TRADING_STATE_REDUCING: TradingState
TRADING_STATE_HALTED: TradingState

class RiskLimits(_message.Message):
    __slots__ = ("max_order_notional", "max_position_notional", "max_open_orders", "daily_loss_limit", "currency")
    MAX_ORDER_NOTIONAL_FIELD_NUMBER: _ClassVar[int]
    MAX_POSITION_NOTIONAL_FIELD_NUMBER: _ClassVar[int]
    MAX_OPEN_ORDERS_FIELD_NUMBER: _ClassVar[int]
    DAILY_LOSS_LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    max_order_notional: str
    max_position_notional: str
    max_open_orders: int
    daily_loss_limit: str
    currency: str
    def __init__(self, max_order_notional: _Optional[str] = ..., max_position_notional: _Optional[str] = ..., max_open_orders: _Optional[int] = ..., daily_loss_limit: _Optional[str] = ..., currency: _Optional[str] = ...) -> None: ...

class GetRiskLimitsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UpdateRiskLimitsRequest(_message.Message):
    __slots__ = ("limits", "update_mask")
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    limits: RiskLimits
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, limits: _Optional[_Union[RiskLimits, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class RiskStatus(_message.Message):
    __slots__ = ("trading_state", "kill_switch_engaged", "kill_switch_reason", "circuit_breaker_tripped", "circuit_breaker_reason", "daily_pnl", "day_start_nav", "currency", "update_time")
    TRADING_STATE_FIELD_NUMBER: _ClassVar[int]
    KILL_SWITCH_ENGAGED_FIELD_NUMBER: _ClassVar[int]
    KILL_SWITCH_REASON_FIELD_NUMBER: _ClassVar[int]
    CIRCUIT_BREAKER_TRIPPED_FIELD_NUMBER: _ClassVar[int]
    CIRCUIT_BREAKER_REASON_FIELD_NUMBER: _ClassVar[int]
    DAILY_PNL_FIELD_NUMBER: _ClassVar[int]
    DAY_START_NAV_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    trading_state: TradingState
    kill_switch_engaged: bool
    kill_switch_reason: str
    circuit_breaker_tripped: bool
    circuit_breaker_reason: str
    daily_pnl: str
    day_start_nav: str
    currency: str
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, trading_state: _Optional[_Union[TradingState, str]] = ..., kill_switch_engaged: _Optional[bool] = ..., kill_switch_reason: _Optional[str] = ..., circuit_breaker_tripped: _Optional[bool] = ..., circuit_breaker_reason: _Optional[str] = ..., daily_pnl: _Optional[str] = ..., day_start_nav: _Optional[str] = ..., currency: _Optional[str] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetRiskStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EngageKillSwitchRequest(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class ReleaseKillSwitchRequest(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class ResetCircuitBreakerRequest(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...
