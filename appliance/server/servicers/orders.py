"""OrderService."""

from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator

from appliance.model.errors import RiskRejection, ValidationError
from appliance.model.instrument import InstrumentId
from appliance.model.money import parse_decimal
from appliance.execution.oms import OrderRequest
from appliance.model.order import OrderStatus
from appliance.server import convert as cv
from appliance.store.journal import JournalEntry
from lyra.v1 import orders_pb2, orders_pb2_grpc

log = logging.getLogger("lyra.server")

_EVENT_TYPES = {
    "OrderSubmitted": orders_pb2.ORDER_EVENT_TYPE_SUBMITTED,
    "OrderDenied": orders_pb2.ORDER_EVENT_TYPE_REJECTED,
    "OrderAccepted": orders_pb2.ORDER_EVENT_TYPE_ACCEPTED,
    "OrderRejected": orders_pb2.ORDER_EVENT_TYPE_REJECTED,
    "OrderFilled": orders_pb2.ORDER_EVENT_TYPE_FILLED,
    "OrderCanceled": orders_pb2.ORDER_EVENT_TYPE_CANCELED,
    "OrderExpired": orders_pb2.ORDER_EVENT_TYPE_EXPIRED,
    "CancelRequested": orders_pb2.ORDER_EVENT_TYPE_UPDATED,
}
_STREAM_QUEUE = 10_000


class OrderServicer(orders_pb2_grpc.OrderServiceServicer):
    def __init__(self, app) -> None:
        self.app = app
        self.oms = app.oms
        self._subscribers: set[asyncio.Queue] = set()
        app.journal.subscribe(self._on_journal)

    def _instrument(self, text: str, field: str = "instrument") -> InstrumentId:
        return InstrumentId.parse(text, default_venue=self.app.config.paper.venue, field=field)

    async def SubmitOrder(self, request, context):
        side = cv.enum_in(request.side, cv.SIDE_FROM_PB, "side")
        type_ = cv.enum_in(request.type, cv.TYPE_FROM_PB, "type")
        order_request = OrderRequest(
            instrument=self._instrument(request.instrument),
            side=side, type=type_,
            qty=parse_decimal(request.qty, "qty", positive=True),
            limit_price=parse_decimal(request.limit_price, "limit_price", positive=True) if request.limit_price else None,
            client_order_id=request.client_order_id,
            strategy_id=request.strategy_id or "manual",
        )
        order = await self.app.engine.call(self.oms.submit, order_request)
        if order.status is OrderStatus.REJECTED and order.reject_rule:
            # recorded (and journaled) as REJECTED; the caller learns why with a precise status
            raise RiskRejection(order.reject_rule, f"{order.reason} (order {order.client_order_id} recorded as REJECTED)")
        return cv.order_to_pb(order)

    async def CancelOrder(self, request, context):
        if not request.client_order_id:
            raise ValidationError("client_order_id", "is required")
        return cv.order_to_pb(await self.app.engine.call(self.oms.cancel, request.client_order_id))

    async def GetOrder(self, request, context):
        if not request.client_order_id:
            raise ValidationError("client_order_id", "is required")
        return cv.order_to_pb(await self.app.engine.call(self.oms.get, request.client_order_id))

    async def ListOrders(self, request, context):
        after = cv.decode_page_token("orders", request.page_token)
        statuses = [cv.enum_in(s, cv.STATUS_FROM_PB, "statuses") for s in request.statuses]
        orders, last = await self.app.engine.call(
            self.oms.list, before_seq=after, limit=cv.page_size(request.page_size), statuses=statuses,
            instrument=self._instrument(request.instrument) if request.instrument else None,
            strategy_id=request.strategy_id, open_only=request.open_only,
        )
        return orders_pb2.ListOrdersResponse(orders=[cv.order_to_pb(o) for o in orders],
                                             next_page_token=cv.encode_page_token("orders", last))

    async def ListFills(self, request, context):
        after = cv.decode_page_token("fills", request.page_token)
        fills, last = await self.app.engine.call(
            self.oms.list_fills, before_seq=after, limit=cv.page_size(request.page_size),
            client_order_id=request.client_order_id,
            instrument=self._instrument(request.instrument) if request.instrument else None,
        )
        return orders_pb2.ListFillsResponse(fills=[cv.fill_to_pb(f) for f in fills],
                                            next_page_token=cv.encode_page_token("fills", last))

    async def StreamOrderEvents(self, request, context) -> AsyncIterator[orders_pb2.OrderEvent]:
        instrument = str(self._instrument(request.instrument)) if request.instrument else ""
        queue: asyncio.Queue = asyncio.Queue(maxsize=_STREAM_QUEUE)
        self._subscribers.add(queue)
        try:
            while True:
                event = await queue.get()
                if event is None:
                    return  # overflowed: the client was too slow; it reconnects and lists
                order = event.order
                if instrument and order.instrument != instrument:
                    continue
                if request.strategy_id and order.strategy_id != request.strategy_id:
                    continue
                if request.client_order_id and order.client_order_id != request.client_order_id:
                    continue
                yield event
        finally:
            self._subscribers.discard(queue)

    def _on_journal(self, entry: JournalEntry) -> None:
        """Post-commit: turn order journal entries into stream events."""
        if entry.aggregate != "order" or not self._subscribers:
            return
        event_type = _EVENT_TYPES.get(entry.type)
        if event_type is None:
            return
        try:
            order = self.oms.get(entry.aggregate_id)
        except Exception:  # noqa: BLE001 - a stream must never break the engine
            log.exception("cannot build order event for %s", entry.aggregate_id)
            return
        event = orders_pb2.OrderEvent(seq=entry.seq, type=event_type, order=cv.order_to_pb(order), time=cv.ts(entry.ts_ns))
        if entry.type == "OrderFilled":
            p = entry.payload
            event.fill.CopyFrom(orders_pb2.Fill(
                fill_id=p["fill_id"], client_order_id=entry.aggregate_id, instrument=p["instrument"],
                side=cv.SIDE_TO_PB[cv.OrderSide(p["side"])], qty=p["qty"], price=p["price"], fee=p["fee"],
                fee_asset=p["fee_asset"], liquidity=cv.LIQ_TO_PB[cv.Liquidity(p["liquidity"])], time=cv.ts(entry.ts_ns),
            ))
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self._subscribers.discard(queue)
                queue._queue.clear()  # type: ignore[attr-defined]
                queue.put_nowait(None)
