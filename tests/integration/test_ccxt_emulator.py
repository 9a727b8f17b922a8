"""CcxtVenue with real ccxt against the exchange emulator (tests/emulator): Binance spot and Kraken
REST dialects with signature checks, rate limits and fault injection.

* an order accepted while the connection drops appears exactly once, with its fills (each once,
  even when the exchange duplicates or reorders trades);
* a send dropped before processing is re-sent once, with the same client id;
* a burst of operator submits (plus polling) never exceeds the emulator's Binance weight limit,
  checked from the emulator's own request log;
* Kraken: submit, fill, cancel, reconcile (unknown order, balances).
"""

from __future__ import annotations

import asyncio
import base64
import time
from decimal import Decimal

import pytest

from appliance.engine.clock import LiveClock
from appliance.model.order import OrderSide, OrderStatus
from appliance.security.vault import CredentialSecrets
from appliance.venues.base import (
    BalanceSnapshot, OrderAccepted, OrderCanceled, OrderFilled, OrderRejected, UnknownVenueOrder, VenueHealth,
)
from appliance.venues.ccxt import BucketSpec, BudgetSpec, CcxtVenue
from appliance.venues.ccxt.budget import BINANCE_WEIGHTS
from tests.emulator import ExchangeEmulator, binance_client, kraken_client
from tests.integration.ccxt_helpers import OPTIONS, make_order, of, until

KEY = "lyra-test-key-0001"
SECRET = "lyra-test-secret-0001"
KRAKEN_SECRET = base64.b64encode(b"lyra-kraken-secret-" * 4).decode()

def binance_venue(emu: ExchangeEmulator, *, budget=None, **options) -> tuple[CcxtVenue, list, LiveClock]:
    clock, reports = LiveClock(), []
    venue = CcxtVenue("binance", "binance", CredentialSecrets(KEY, SECRET), clock,
                      exchange_factory=lambda exchange_id, config: binance_client(
                          emu, config["apiKey"], config["secret"], pace=False, timeout=config["timeout"]),
                      budget=budget, options={**OPTIONS, **options})
    venue.set_report_sink(reports.append)
    return venue, reports, clock


@pytest.fixture
async def binance_emu():
    async with ExchangeEmulator(("binance",), accounts={KEY: (SECRET, {"USDT": "1000000", "BTC": "10"})}) as emu:
        yield emu


async def test_order_accepted_while_the_connection_drops_appears_once_with_its_fills(binance_emu):
    emu = binance_emu
    venue, reports, clock = binance_venue(emu)
    await venue.start()
    emu.disconnect_next("/api/v3/order", when="after", method="POST")  # accepted, then the client never hears
    venue.submit(make_order(clock, "ly-drop-1", "binance", qty="0.01", price="59000"))
    await until(lambda: of(reports, OrderAccepted))
    placed = emu.orders("binance", KEY)
    assert len(placed) == 1 and placed[0].client_order_id == "ly-drop-1"
    assert len(emu.requests_to("/api/v3/order", method="POST")) == 1  # found by look-up, not re-sent
    accepted, = of(reports, OrderAccepted)
    assert accepted.venue_order_id == str(placed[0].seq)

    emu.mangle_trades_next("binance", "duplicate", n=5)
    emu.fill_order("binance", placed[0], "0.004")
    await until(lambda: of(reports, OrderFilled))
    emu.mangle_trades_next("binance", "reorder", n=5)
    emu.fill_order("binance", placed[0], "0.006", "58999")
    await until(lambda: sum(r.fill.qty for r in of(reports, OrderFilled)) == Decimal("0.01"))
    await asyncio.sleep(0.5)  # more polls, more mangled answers: still two fills
    fills = [r.fill for r in of(reports, OrderFilled)]
    assert [f.qty for f in fills] == [Decimal("0.004"), Decimal("0.006")]
    engine_fills = emu.engine("binance").account_fills(KEY)
    assert sorted(f.fill_id for f in fills) == sorted(f"binance-{f.id}" for f in engine_fills)
    assert fills[0].fee_asset == "BTC" and fills[0].fee == Decimal("0.000004")  # Binance: fee in the asset received
    assert not of(reports, OrderRejected)
    await venue.stop()


async def test_market_order_whose_response_is_lost_is_reported_once_with_its_fill(binance_emu):
    emu = binance_emu
    venue, reports, clock = binance_venue(emu)
    await venue.start()
    emu.disconnect_next("/api/v3/order", when="after", method="POST")
    venue.submit(make_order(clock, "ly-drop-m", "binance", qty="0.002", price=None))
    await until(lambda: of(reports, OrderFilled))
    await asyncio.sleep(0.5)
    assert len(emu.orders("binance", KEY)) == 1
    assert len(of(reports, OrderAccepted)) == 1 and len(of(reports, OrderFilled)) == 1
    assert of(reports, OrderFilled)[0].fill.qty == Decimal("0.002")
    assert venue.status()["tracked_orders"] == 0
    await venue.stop()


async def test_a_send_dropped_before_processing_is_resent_once_with_the_same_client_id(binance_emu):
    emu = binance_emu
    venue, reports, clock = binance_venue(emu, request_timeout_ms=500, resend_guard_s=1.0)
    await venue.start()
    emu.delay_next("/api/v3/order", 1.5, when="before", method="POST")  # the client times out; dropped
    venue.submit(make_order(clock, "ly-lost-1", "binance"))
    await until(lambda: of(reports, OrderAccepted))
    await asyncio.sleep(1.5)  # the first request's delay is over: it must not have landed
    posts = emu.requests_to("/api/v3/order", method="POST")
    assert len(posts) == 2 and [r.processed for r in posts] == [False, True]
    placed = emu.orders("binance", KEY)
    assert [o.client_order_id for o in placed] == ["ly-lost-1"]
    lookups = emu.requests_to("/api/v3/order", method="GET")
    assert lookups and all("origClientOrderId=ly-lost-1" in r.query for r in lookups[:2])
    await venue.stop()


async def test_a_burst_of_operator_submits_never_exceeds_the_binance_weight_limit(binance_emu):
    emu = binance_emu
    limit, window = 300, 3.0
    emu.configure_binance_limits(weight_limit=limit, window_s=window, ban_after=1, ban_s=30)
    budget = BudgetSpec("emulated-binance", (BucketSpec.from_window("request_weight", limit, window, BINANCE_WEIGHTS),))
    venue, reports, clock = binance_venue(emu, budget=budget, poll_interval_s=0.01)
    await venue.start()
    emu.clear_requests()
    n = 150
    for i in range(n):
        symbol = ("BTC/USDT", "ETH/USDT", "ADA/USDT")[i % 3]
        price = {"BTC/USDT": "50000", "ETH/USDT": "2500", "ADA/USDT": "0.5"}[symbol]
        qty = {"BTC/USDT": "0.001", "ETH/USDT": "0.01", "ADA/USDT": "20"}[symbol]
        venue.submit(make_order(clock, f"ly-burst-{i:03d}", "binance", symbol, qty=qty, price=price))
    await until(lambda: len(of(reports, OrderAccepted)) == n, timeout=60)
    await venue.reconcile_now(None)  # reconciliation shares the budget too
    await asyncio.sleep(1.0)  # and polling keeps going
    await venue.stop()

    counted = [r for r in emu.requests if r.venue == "binance" and r.weight]
    assert not [r for r in emu.requests if r.status in (429, 418)], "the emulator refused requests"
    assert emu.max_used_weight() <= limit
    for i, first in enumerate(counted):  # any window, not only the emulator's fixed ones
        used = sum(r.weight for r in counted[i:] if r.at < first.at + window)
        assert used <= limit, (first.at, used)
    assert len(emu.orders("binance", KEY)) == n and not of(reports, OrderRejected)
    assert len(emu.requests_to("/api/v3/order", method="POST")) == n
    assert venue.counters()["waits"] > 0  # the budget, not luck, kept it under


async def test_orders_filled_while_lyra_was_away_are_reconciled_with_their_fills(binance_emu):
    emu = binance_emu
    venue, reports, clock = binance_venue(emu)
    await venue.start()
    order = make_order(clock, "ly-away-1", "binance", qty="0.01")
    venue.submit(order)
    await until(lambda: of(reports, OrderAccepted))
    vid = of(reports, OrderAccepted)[0].venue_order_id
    await venue.stop()
    placed = emu.orders("binance", KEY)[0]
    emu.fill_order("binance", placed, "0.003")
    emu.engine("binance").cancel(placed)
    lost = make_order(clock, "ly-never-sent", "binance")

    venue2, reports2, _ = binance_venue(emu)
    await venue2.start()
    open_order = make_order(clock, "ly-away-1", "binance", qty="0.01", status=OrderStatus.OPEN, venue_order_id=vid)
    summary = await venue2.reconcile_now([open_order, lost])
    assert summary["found"] == ["ly-away-1"] and summary["lost_before_send"] == ["ly-never-sent"]
    kinds = [type(r).__name__ for r in reports2 if not r.__class__.__name__.startswith("Venue")]
    assert kinds.index("OrderFilled") < kinds.index("OrderCanceled")
    assert [r.fill.qty for r in of(reports2, OrderFilled)] == [Decimal("0.003")]
    assert any(f"orderId={vid}" in r.query for r in emu.requests_to("/api/v3/myTrades"))  # per order, no 24 h window
    assert of(reports2, OrderRejected)[0].reason.startswith("lost_before_send")
    snapshot, = of(reports2, BalanceSnapshot)
    assert snapshot.balances["BTC"] == Decimal("10.003") - Decimal("0.000003")  # fee taken in BTC
    await venue2.stop()


async def test_kraken_basic_flow():
    accounts = {KEY: (KRAKEN_SECRET, {"USDT": "100000", "BTC": "2"})}
    async with ExchangeEmulator(("kraken",), accounts=accounts, kraken_counter_max=60, kraken_decay_per_s=5) as emu:
        clock, reports = LiveClock(), []
        venue = CcxtVenue(
            "kraken-main", "kraken", CredentialSecrets(KEY, KRAKEN_SECRET), clock,
            # pace: ccxt's own throttle (Kraken default: a private call every 3 s) follows the emulator's decay
            exchange_factory=lambda exchange_id, config: kraken_client(emu, config["apiKey"], config["secret"]),
            budget=BudgetSpec("emulated-kraken", (BucketSpec.from_decay("rest_counter", 60, 5),)),
            options=OPTIONS,
        )
        venue.set_report_sink(reports.append)
        await venue.start()
        try:
            await _kraken_flow(emu, venue, reports, clock)
        finally:
            await venue.stop()


async def _kraken_flow(emu: ExchangeEmulator, venue: CcxtVenue, reports: list, clock: LiveClock) -> None:
    btc = next(i for i in venue.instruments() if i.id.symbol == "BTC/USDT")
    assert btc.id.venue == "kraken-main" and btc.price_tick > 0 and btc.qty_step > 0

    buy = make_order(clock, "ly-kraken-buy-000001", "kraken-main", qty="0.01", price="50000")
    sell = make_order(clock, "ly-kraken-sell-00001", "kraken-main", side=OrderSide.SELL, qty="0.02", price="70000")
    venue.submit(buy)
    venue.submit(sell)
    await until(lambda: len(of(reports, OrderAccepted)) == 2)
    by_cid = {r.client_order_id: r.venue_order_id for r in of(reports, OrderAccepted)}
    placed = {o.client_order_id: o for o in emu.orders("kraken", KEY)}
    assert len(placed) == 2 and all(len(cl) == 32 for cl in placed)  # 18+ chars -> Kraken's 32-hex form

    buy_on_kraken = next(o for o in placed.values() if o.side == "BUY")
    emu.fill_order("kraken", buy_on_kraken)
    await until(lambda: of(reports, OrderFilled))
    fill = of(reports, OrderFilled)[0].fill
    assert (fill.client_order_id, fill.qty, fill.price) == ("ly-kraken-buy-000001", Decimal("0.01"), Decimal("50000"))
    assert fill.fill_id.startswith("kraken-main-T")

    venue.cancel(sell)
    await until(lambda: of(reports, OrderCanceled))
    assert of(reports, OrderCanceled)[0].client_order_id == "ly-kraken-sell-00001"
    assert not [o for o in emu.orders("kraken", KEY) if o.is_open]

    foreign = emu.engine("kraken").place(KEY, "BTC/USDT", "BUY", "LIMIT", qty=Decimal("0.001"), price=Decimal("40000"))
    summary = await venue.reconcile_now(None)
    unknown, = of(reports, UnknownVenueOrder)
    assert unknown.symbol == "BTC/USDT" and unknown.qty == Decimal("0.001") and summary["unknown"] == [unknown.venue_order_id]
    assert foreign.is_open  # reported, never touched
    assert of(reports, BalanceSnapshot)[0].balances["BTC"] == Decimal("2.01")
    assert venue.health() is VenueHealth.CONNECTED and by_cid


async def test_binance_429_is_retried_after_retry_after_and_418_bans_are_down_until_lifted(binance_emu):
    emu = binance_emu
    venue, reports, clock = binance_venue(emu)
    await venue.start()
    emu.rate_limit_next("/api/v3/order", status=429, method="POST", retry_after=1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    venue.submit(make_order(clock, "ly-429", "binance"))
    await until(lambda: of(reports, OrderAccepted))
    assert loop.time() - started >= 0.9  # waited for Retry-After
    assert [r.status for r in emu.requests_to("/api/v3/order", method="POST")] == [429, 200]
    assert VenueHealth.DEGRADED in [r.health for r in reports if hasattr(r, "health")]

    emu.rate_limit_next("/api/v3/order", status=418, method="POST", retry_after=2)
    venue.submit(make_order(clock, "ly-418", "binance"))
    await until(lambda: of(reports, OrderRejected))
    assert venue.health() is VenueHealth.DOWN and "418" in venue.status()["reason"]
    assert of(reports, OrderRejected)[0].client_order_id == "ly-418"
    assert venue.budget.paused_for() > 1.0
    resume, sent = time.monotonic() + venue.budget.paused_for(), len(emu.requests)
    await until(lambda: venue.health() is not VenueHealth.DOWN, timeout=10)
    await asyncio.sleep(0.3)
    assert all(r.at >= resume - 0.05 for r in emu.requests[sent:])  # nothing was sent during the ban
    await venue.stop()
