"""Shared pieces of the CcxtVenue-against-the-emulator tests."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from appliance.engine.clock import LiveClock
from appliance.model.instrument import InstrumentId
from appliance.model.order import Order, OrderSide, OrderStatus, OrderType

#: Fast polling and backoff so the tests run in seconds; streams off unless a test turns them on.
OPTIONS = dict(poll_interval_s=0.05, backoff_base_s=0.05, backoff_max_s=0.5, reconcile_interval_s=0,
               use_streams=False, request_timeout_ms=2_000, shutdown_grace_s=2)


def make_order(clock: LiveClock, cid: str, venue: str, symbol: str = "BTC/USDT", *, side: OrderSide = OrderSide.BUY,
               qty: str = "0.01", price: str | None = "59000", status: OrderStatus = OrderStatus.PENDING_SUBMIT,
               venue_order_id: str = "") -> Order:
    """A Lyra order as the OMS would hand it to a venue (PENDING_SUBMIT, limit unless ``price`` is None)."""
    now = clock.now_ns()
    return Order(cid, InstrumentId(venue, symbol), side, OrderType.LIMIT if price else OrderType.MARKET,
                 Decimal(qty), Decimal(price) if price else None, status, now, now, venue_order_id=venue_order_id)


async def until(predicate, timeout: float = 15.0) -> None:
    """Wait until ``predicate()`` is true; AssertionError after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def of(reports: list, kind: type) -> list:
    """The reports of one type, in order."""
    return [r for r in reports if isinstance(r, kind)]
