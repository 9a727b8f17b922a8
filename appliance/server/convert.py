"""Translation between protobuf messages and the domain model. No business logic here."""

from __future__ import annotations

import base64
from decimal import Decimal

from google.protobuf.timestamp_pb2 import Timestamp

from appliance.model.errors import ValidationError
from appliance.model.fill import Fill, Liquidity
from appliance.model.instrument import Instrument
from appliance.model.money import dec_str
from appliance.model.order import Order, OrderSide, OrderStatus, OrderType
from lyra.v1 import common_pb2, marketdata_pb2, orders_pb2

SIDE_TO_PB = {OrderSide.BUY: common_pb2.SIDE_BUY, OrderSide.SELL: common_pb2.SIDE_SELL}
SIDE_FROM_PB = {v: k for k, v in SIDE_TO_PB.items()}
TYPE_TO_PB = {OrderType.MARKET: orders_pb2.ORDER_TYPE_MARKET, OrderType.LIMIT: orders_pb2.ORDER_TYPE_LIMIT}
TYPE_FROM_PB = {v: k for k, v in TYPE_TO_PB.items()}
STATUS_TO_PB = {s: orders_pb2.OrderStatus.Value(f"ORDER_STATUS_{s.value}") for s in OrderStatus}
STATUS_FROM_PB = {v: k for k, v in STATUS_TO_PB.items()}
LIQ_TO_PB = {Liquidity.MAKER: orders_pb2.LIQUIDITY_MAKER, Liquidity.TAKER: orders_pb2.LIQUIDITY_TAKER}


def ts(ns: int) -> Timestamp:
    """ns since epoch -> protobuf Timestamp."""
    stamp = Timestamp()
    stamp.FromNanoseconds(int(ns))
    return stamp


def ts_ns(stamp: Timestamp, present: bool) -> int | None:
    return stamp.ToNanoseconds() if present else None


def opt_dec(value: Decimal | None) -> str:
    return dec_str(value) if value is not None else ""


def order_to_pb(o: Order) -> orders_pb2.Order:
    return orders_pb2.Order(
        client_order_id=o.client_order_id, venue_order_id=o.venue_order_id, instrument=str(o.instrument),
        side=SIDE_TO_PB[o.side], type=TYPE_TO_PB[o.type], qty=dec_str(o.qty), limit_price=opt_dec(o.limit_price),
        status=STATUS_TO_PB[o.status], filled_qty=dec_str(o.filled_qty), avg_fill_price=dec_str(o.avg_fill_price),
        fees=dec_str(o.fees), fee_asset=o.fee_asset, strategy_id=o.strategy_id, reject_rule=o.reject_rule,
        reason=o.reason, create_time=ts(o.created_ns), update_time=ts(o.updated_ns),
    )


def fill_to_pb(f: Fill) -> orders_pb2.Fill:
    return orders_pb2.Fill(
        fill_id=f.fill_id, client_order_id=f.client_order_id, instrument=str(f.instrument), side=SIDE_TO_PB[f.side],
        qty=dec_str(f.qty), price=dec_str(f.price), fee=dec_str(f.fee), fee_asset=f.fee_asset,
        liquidity=LIQ_TO_PB[f.liquidity], time=ts(f.ts_ns),
    )


def instrument_to_pb(i: Instrument) -> marketdata_pb2.Instrument:
    return marketdata_pb2.Instrument(
        instrument=str(i.id), venue=i.id.venue, symbol=i.id.symbol, base=i.base, quote=i.quote,
        price_tick=dec_str(i.price_tick), qty_step=dec_str(i.qty_step), min_qty=dec_str(i.min_qty),
        min_notional=dec_str(i.min_notional), maker_fee_bps=dec_str(i.maker_fee_bps), taker_fee_bps=dec_str(i.taker_fee_bps),
    )


def enum_in(value: int, mapping: dict, field: str):
    """Map a protobuf enum value, refusing UNSPECIFIED and unknown numbers with a named field."""
    if value not in mapping:
        raise ValidationError(field, "is required" if value == 0 else f"unknown value {value}")
    return mapping[value]


def page_size(value: int, default: int = 100, maximum: int = 1000) -> int:
    """AIP-158 page size: 0 means the default; negative is an error; above the maximum is clamped."""
    if value < 0:
        raise ValidationError("page_size", "must be >= 0")
    return min(value or default, maximum)


def encode_page_token(kind: str, seq: int) -> str:
    return "" if not seq else base64.urlsafe_b64encode(f"{kind}:{seq}".encode()).decode()


def decode_page_token(kind: str, token: str) -> int:
    """Page token -> the seq to continue after (0 for the first page).

    Raises:
        ValidationError: a token that this server did not issue for this listing.
    """
    if not token:
        return 0
    try:
        prefix, _, seq = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if prefix != kind:
            raise ValueError
        return int(seq)
    except (ValueError, UnicodeDecodeError):
        raise ValidationError("page_token", "is not a token returned by this listing") from None
