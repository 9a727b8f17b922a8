"""Lyra's CcxtVenue with ccxt.pro streams against the emulator's Binance WebSocket API.

``watch_orders`` / ``watch_my_trades`` run unmodified against the emulated user data stream
(``/ws-api/v3``, ``userDataStream.subscribe.signature``, ``executionReport`` events). Polling
intervals are long unless polling is what is being tested, so a fast report can only come from
the stream (or, after a reconnect, from the reconciliation it triggers):

* a fill is reported once, through the stream, before any REST trade query;
* after a dropped websocket the venue goes DEGRADED, reconnects with backoff, resubscribes (a new
  subscription on a new connection) and reports the fill that happened while it was down once;
* with upgrades refused repeatedly it falls back to polling (CONNECTED again: polling is a
  healthy fallback), still reports fills, and returns to the stream once upgrades are accepted.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

from appliance.engine.clock import LiveClock
from appliance.security.vault import CredentialSecrets
from appliance.venues.base import OrderAccepted, OrderFilled, VenueHealth, VenueHealthChanged
from appliance.venues.ccxt import CcxtVenue
from tests.emulator import ExchangeEmulator, exchange_client
from tests.integration.ccxt_helpers import OPTIONS, make_order, of, until

KEY = "lyra-stream-test-key"
SECRET = "lyra-stream-test-secret-only"
NAME = "binance-ws"
MY_TRADES = "/api/v3/myTrades"
#: Streams on; polling (and the periodic reconciliation) too slow to explain a report in a test.
STREAMS = {**OPTIONS, "use_streams": True, "poll_interval_s": 60.0, "stream_poll_interval_s": 60.0,
           "stream_settle_s": 0.3, "stream_max_failures": 3, "stream_retry_s": 1.0,
           "auto_reconcile_min_gap_s": 0.0}


def emulator() -> ExchangeEmulator:
    return ExchangeEmulator(("binance",), accounts={KEY: (SECRET, {"USDT": "100000", "BTC": "2"})},
                            binance_weight_limit=1_000_000)


def venue_for(emu: ExchangeEmulator, **options) -> tuple[CcxtVenue, list, LiveClock, list]:
    """The venue, its reports, its clock, and for each OrderFilled the number of REST myTrades
    requests the emulator had answered when it was reported."""
    clock, reports, trade_polls_at_fill = LiveClock(), [], []

    def sink(report) -> None:
        reports.append(report)
        if isinstance(report, OrderFilled):
            trade_polls_at_fill.append(len(emu.requests_to(MY_TRADES)))

    venue = CcxtVenue(
        NAME, "binance", CredentialSecrets(KEY, SECRET), clock,
        exchange_factory=lambda exchange_id, config: exchange_client(
            emu, "binance", config["apiKey"], config["secret"], pro=True, timeout=config["timeout"]),
        options={**STREAMS, **options},
    )
    venue.set_report_sink(sink)
    return venue, reports, clock, trade_polls_at_fill


def healths(reports: list) -> list[VenueHealth]:
    return [r.health for r in of(reports, VenueHealthChanged)]


def streams_live(venue: CcxtVenue) -> bool:
    return venue.status()["streams"] == {"watch_orders": "live", "watch_my_trades": "live"}


async def started(venue: CcxtVenue, emu: ExchangeEmulator, subscriptions: int = 1) -> None:
    await venue.start()
    await until(lambda: len(emu.ws_subscriptions("binance", KEY, active=True)) == subscriptions and streams_live(venue))


async def accepted(venue: CcxtVenue, reports: list, clock: LiveClock, emu: ExchangeEmulator, cid: str):
    venue.submit(make_order(clock, cid, NAME, qty="0.01", price="59000"))
    await until(lambda: any(r.client_order_id == cid for r in of(reports, OrderAccepted)))
    return next(o for o in emu.orders("binance", KEY) if o.is_open)


async def test_a_fill_is_reported_once_through_the_stream():
    async with emulator() as emu:
        venue, reports, clock, trade_polls_at_fill = venue_for(emu)
        await started(venue, emu)
        try:
            order = await accepted(venue, reports, clock, emu, "ly-ws-fill-0001")
            # the order stream wakes a REST poll; holding open-orders back keeps it from racing the trade stream
            emu.delay_next("/api/v3/openOrders", 1.0, when="before", n=5)
            polls_before = len(emu.requests_to(MY_TRADES))
            emu.fill_order("binance", order)
            await until(lambda: of(reports, OrderFilled), timeout=2.0)
            fill = of(reports, OrderFilled)[0].fill
            assert (fill.client_order_id, fill.qty, fill.price) == ("ly-ws-fill-0001", Decimal("0.01"),
                                                                    Decimal("59000"))
            assert fill.fill_id == f"{NAME}-{order.fills[0].id}"
            assert trade_polls_at_fill == [polls_before]  # no REST trade query could have reported it
            await asyncio.sleep(1.5)  # the woken poll sees the same trade: still one fill
            assert len(of(reports, OrderFilled)) == 1
            assert len(emu.ws_subscriptions("binance", KEY)) == 1
        finally:
            await venue.stop()


async def test_after_a_dropped_websocket_the_venue_resubscribes_and_reports_the_missed_fill_once():
    async with emulator() as emu:
        venue, reports, clock, _ = venue_for(emu)
        await started(venue, emu)
        try:
            order = await accepted(venue, reports, clock, emu, "ly-ws-drop-0001")
            first, = emu.ws_subscriptions("binance", KEY)
            dropped_at = time.monotonic()
            assert emu.drop_websockets("binance") == 1
            emu.fill_order("binance", order)  # while nobody is subscribed: never pushed
            await until(lambda: VenueHealth.DEGRADED in healths(reports))
            await until(lambda: len(emu.ws_subscriptions("binance", KEY, active=True)) == 1 and streams_live(venue))
            old, new = emu.ws_subscriptions("binance", KEY)
            assert old is first and not old.active and new.session != first.session
            assert new.at - dropped_at >= STREAMS["backoff_base_s"] * 0.8  # backoff(0): base +-20 %
            await until(lambda: of(reports, OrderFilled))
            await until(lambda: venue.stats["reconciliations"] >= 1)  # scheduled by the resubscription
            await asyncio.sleep(0.5)
            fills = of(reports, OrderFilled)
            assert len(fills) == 1 and fills[0].fill.fill_id == f"{NAME}-{order.fills[0].id}"
            assert fills[0].fill.qty == Decimal("0.01")
            assert venue.health() is VenueHealth.CONNECTED and not venue.status()["conditions"]
            assert healths(reports)[-1] is VenueHealth.CONNECTED
        finally:
            await venue.stop()


async def test_refused_websockets_fall_back_to_polling_then_streams_return():
    async with emulator() as emu:
        # polling is the fallback under test: fast; while streams are live it slows to 60 s
        venue, reports, clock, trade_polls_at_fill = venue_for(emu, poll_interval_s=0.1, stream_retry_s=2.0)
        await started(venue, emu)
        try:
            order = await accepted(venue, reports, clock, emu, "ly-ws-poll-0001")
            emu.refuse_websockets("binance", 1_000)
            emu.drop_websockets("binance")
            failed: set[str] = set()  # the two loops fail (and retry) out of phase

            def both_failed() -> bool:
                failed.update(m for m, s in venue.status()["streams"].items() if s.startswith("failed: polling only"))
                return failed == {"watch_orders", "watch_my_trades"}

            await until(both_failed)
            refused = [r for r in emu.requests_to("/ws-api/v3", method="GET") if r.status == 503]
            assert len(refused) >= STREAMS["stream_max_failures"] - 1  # the drop was the first failure
            seen = healths(reports)
            assert VenueHealth.DEGRADED in seen  # while reconnecting
            # falling back to polling clears the stream condition: polling only is healthy
            assert VenueHealth.CONNECTED in seen[seen.index(VenueHealth.DEGRADED):]

            polls_before = len(emu.requests_to(MY_TRADES))
            emu.fill_order("binance", order, "0.004")
            await until(lambda: of(reports, OrderFilled), timeout=3.0)
            assert trade_polls_at_fill[0] > polls_before  # reported by polling
            assert of(reports, OrderFilled)[0].fill.qty == Decimal("0.004")

            emu.clear_faults()  # upgrades accepted again: the stream returns after stream_retry_s
            await until(lambda: len(emu.ws_subscriptions("binance", KEY, active=True)) == 1 and streams_live(venue),
                        timeout=8.0)
            assert len(emu.ws_subscriptions("binance", KEY)) == 2
            await asyncio.sleep(0.3)  # let the last fallback poll cycle end; polling now waits 60 s
            polls_before = len(emu.requests_to(MY_TRADES))
            emu.fill_order("binance", order)
            await until(lambda: len(of(reports, OrderFilled)) == 2, timeout=2.0)
            assert trade_polls_at_fill[1] == polls_before  # through the stream again
            assert [r.fill.qty for r in of(reports, OrderFilled)] == [Decimal("0.004"), Decimal("0.006")]
        finally:
            await venue.stop()
