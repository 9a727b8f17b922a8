"""CcxtVenue against a fake ccxt exchange: submission (idempotent, lookup before re-send), error
mapping, health transitions, trade polling (duplicates / reordering), cancel, reconciliation,
streams, budget, and secrets."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

import ccxt.async_support as ccxt
import pytest

from appliance.engine.clock import SimClock
from appliance.model.errors import ValidationError
from appliance.model.fill import Liquidity
from appliance.model.instrument import InstrumentId
from appliance.model.order import Order, OrderSide, OrderStatus, OrderType
from appliance.security.vault import CredentialSecrets
from appliance.venues.base import (
    BalanceSnapshot, OrderAccepted, OrderCanceled, OrderFilled, OrderRejected, UnknownVenueOrder, VenueHealth,
    VenueHealthChanged, VenueUnavailable,
)
from appliance.venues.ccxt import BucketSpec, BudgetSpec, CcxtVenue, CcxtVenueOptions, RequestBudget
from test_ccxt_venue_fake import BASE_MS, FakeExchange, market

API_KEY = "APIKEY-0123456789abcdef"
SECRET = "SECRET-fedcba9876543210"
VENUE = "bin"

FAST = BudgetSpec("fast", (BucketSpec("requests", capacity=100_000, refill_per_s=1_000_000),))
FAST_OPTIONS = dict(
    poll_interval_s=0.01, stream_poll_interval_s=0.05, reconcile_interval_s=0, backoff_base_s=0.001,
    backoff_max_s=0.004, use_streams=False, rate_limit_default_s=0.02, ban_default_s=0.3, shutdown_grace_s=1,
    resend_guard_s=0,
)


def make_venue(fake: FakeExchange, *, budget=None, name: str = VENUE, **options) -> tuple[CcxtVenue, list]:
    reports: list = []
    venue = CcxtVenue(
        name, fake.id, CredentialSecrets(API_KEY, SECRET), SimClock(BASE_MS * 1_000_000),
        exchange_factory=lambda exchange_id, config: fake, budget=budget or FAST,
        options={**FAST_OPTIONS, **options},
    )
    venue.set_report_sink(reports.append)
    return venue, reports


def make_order(cid: str = "ly-1", *, side: OrderSide = OrderSide.BUY, qty: str = "0.5", price: str | None = "100",
               status: OrderStatus = OrderStatus.PENDING_SUBMIT, symbol: str = "BTC/USDT", venue: str = VENUE,
               venue_order_id: str = "", filled: str = "0") -> Order:
    return Order(
        client_order_id=cid, instrument=InstrumentId(venue, symbol), side=side,
        type=OrderType.LIMIT if price is not None else OrderType.MARKET, qty=Decimal(qty),
        limit_price=Decimal(price) if price is not None else None, status=status, created_ns=BASE_MS * 1_000_000,
        updated_ns=BASE_MS * 1_000_000, venue_order_id=venue_order_id, filled_qty=Decimal(filled),
    )


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.002)


def of(reports: list, kind: type) -> list:
    return [r for r in reports if isinstance(r, kind)]


def healths(reports: list) -> list[VenueHealth]:
    return [r.health for r in of(reports, VenueHealthChanged)]


@pytest.fixture
async def fake():
    return FakeExchange()


# -- start / instruments ----------------------------------------------------------------------

async def test_start_converts_markets_to_instruments_tick_size_and_decimal_places():
    ex = FakeExchange()
    ex.markets["XRP/BTC"] = market("XRP/BTC", tick=1e-08, step=1.0, min_amount=None, min_cost=0.0001,
                                   maker=0.0016, taker=0.0026)
    venue, reports = make_venue(ex)
    await venue.start()
    by = {i.id.symbol: i for i in venue.instruments()}
    xrp = by["XRP/BTC"]
    assert xrp.id == InstrumentId(VENUE, "XRP/BTC")
    assert (xrp.price_tick, xrp.qty_step, xrp.min_qty, xrp.min_notional) == (
        Decimal("1E-8"), Decimal("1"), Decimal("1"), Decimal("0.0001"))
    assert (xrp.maker_fee_bps, xrp.taker_fee_bps) == (Decimal("16"), Decimal("26"))
    assert by["BTC/USDT"].price_tick == Decimal("0.01") and by["BTC/USDT"].min_notional == Decimal("10")
    await venue.stop()
    assert ex.closed

    ex2 = FakeExchange()
    ex2.precisionMode = 2  # DECIMAL_PLACES
    ex2.markets = {"ADA/EUR": market("ADA/EUR", tick=6, step=8)}
    venue2, _ = make_venue(ex2)
    await venue2.start()
    ada = venue2.instruments()[0]
    assert (ada.price_tick, ada.qty_step) == (Decimal("0.000001"), Decimal("1E-8"))
    await venue2.stop()
    assert healths(reports) == [VenueHealth.CONNECTED, VenueHealth.DOWN]


async def test_start_fails_cleanly_when_markets_cannot_be_loaded():
    ex = FakeExchange()
    ex.fault("load_markets", ccxt.AuthenticationError(f"binance Invalid API-key {API_KEY}"))
    venue, _ = make_venue(ex)
    with pytest.raises(VenueUnavailable) as info:
        await venue.start()
    assert API_KEY not in str(info.value) and "AuthenticationError" in str(info.value)
    assert ex.closed


def test_options_are_validated_with_the_key_named():
    with pytest.raises(ValidationError) as info:
        CcxtVenueOptions.from_mapping({"poll_interval": 1})
    assert info.value.field == "options.poll_interval"
    with pytest.raises(ValidationError) as info:
        CcxtVenueOptions.from_mapping({"poll_interval_s": -1})
    assert info.value.field == "options.poll_interval_s"
    assert CcxtVenueOptions.from_mapping({"symbols": ["BTC/USDT"], "use_streams": False}).symbols == ("BTC/USDT",)


# -- submission ----------------------------------------------------------------------------------

async def test_submit_sends_client_id_and_reports_acceptance_then_fills(fake):
    venue, reports = make_venue(fake)
    await venue.start()
    venue.submit(make_order("ly-abc"))
    await until(lambda: of(reports, OrderAccepted))
    (_, _, args), = [c for c in fake.calls if c[1] == "create_order"]
    assert args[:5] == ("BTC/USDT", "limit", "buy", 0.5, 100.0)
    assert args[5] == {"clientOrderId": "ly-abc"}  # Binance: -> newClientOrderId
    vid = of(reports, OrderAccepted)[0].venue_order_id
    fake.fill(vid, 0.2, 100.0, maker=True, fee=0.02)
    fake.fill(vid, 0.3, 99.5, maker=False, fee=0.0003, fee_currency="BTC")
    await until(lambda: len(of(reports, OrderFilled)) == 2)
    f1, f2 = (r.fill for r in of(reports, OrderFilled))
    assert (f1.qty, f1.price, f1.fee, f1.fee_asset, f1.liquidity) == (
        Decimal("0.2"), Decimal("100.0"), Decimal("0.02"), "USDT", Liquidity.MAKER)
    assert (f2.qty, f2.fee, f2.fee_asset, f2.liquidity) == (Decimal("0.3"), Decimal("0.0003"), "BTC", Liquidity.TAKER)
    assert f1.fill_id == f"{VENUE}-{fake.trades[0]['id']}" and f1.client_order_id == "ly-abc"
    assert f1.ts_ns == fake.trades[0]["timestamp"] * 1_000_000
    await until(lambda: venue.status()["tracked_orders"] == 0)  # fully filled: no longer tracked
    await venue.stop()


@pytest.mark.parametrize("exc, words", [
    (ccxt.InsufficientFunds("binance Account has insufficient balance for requested action."), "insufficient"),
    (ccxt.InvalidOrder("binance Filter failure: LOT_SIZE"), "LOT_SIZE"),
    (ccxt.OrderImmediatelyFillable("binance Order would immediately match and take."), "immediately"),
    (ccxt.BadSymbol("binance Invalid symbol."), "Invalid symbol"),
    (ccxt.BadRequest("binance Precision is over the maximum"), "Precision"),
])
async def test_definitive_refusals_become_order_rejected_with_the_reason(fake, exc, words):
    venue, reports = make_venue(fake)
    await venue.start()
    fake.fault("create_order", exc)
    venue.submit(make_order())
    await until(lambda: of(reports, OrderRejected))
    rejected, = of(reports, OrderRejected)
    assert words in rejected.reason and type(exc).__name__ in rejected.reason
    assert fake.count("create_order") == 1 and fake.count("fetch_order") == 0  # no look-up, no re-send
    assert venue.health() is VenueHealth.CONNECTED
    await venue.stop()


async def test_timeout_after_acceptance_is_looked_up_never_resent(fake):
    venue, reports = make_venue(fake)
    await venue.start()
    fake.fault("create_order", ccxt.RequestTimeout("binance POST https://api.binance.com/api/v3/order timed out"),
               after=True)
    venue.submit(make_order("ly-t1"))
    await until(lambda: of(reports, OrderAccepted))
    await venue.wait_idle()
    assert fake.count("create_order") == 1
    assert len(fake.orders) == 1
    lookups = [args for _, m, args in fake.calls if m == "fetch_order"]
    assert lookups and lookups[0][2] == {"clientOrderId": "ly-t1"}  # by client id (-> origClientOrderId)
    assert of(reports, OrderAccepted)[0].venue_order_id == next(iter(fake.orders))
    assert not of(reports, OrderRejected)
    await venue.stop()


async def test_timeout_before_acceptance_resends_once_with_the_same_client_id(fake):
    venue, reports = make_venue(fake)
    await venue.start()
    fake.fault("create_order", ccxt.RequestTimeout("binance timed out"))
    venue.submit(make_order("ly-t2"))
    await until(lambda: of(reports, OrderAccepted))
    sends = [args[5] for _, m, args in fake.calls if m == "create_order"]
    assert sends == [{"clientOrderId": "ly-t2"}, {"clientOrderId": "ly-t2"}]
    # the re-send came only after "not found" was confirmed
    assert fake.count("fetch_order") >= 2
    assert len(fake.orders) == 1
    await venue.stop()


async def test_duplicate_refusal_on_resend_leads_to_a_lookup_and_acceptance(fake):
    venue, reports = make_venue(fake, lookup_attempts=2, not_found_confirmations=2)
    await venue.start()
    # the order reaches the exchange but stays invisible to the first look-ups (eventual consistency)
    fake.fault("create_order", ccxt.ExchangeNotAvailable("binance 503 Service Unavailable"), after=True)
    fake.fault("fetch_order", ccxt.OrderNotFound("binance Order does not exist."), times=2)
    venue.submit(make_order("ly-dup"))
    await until(lambda: of(reports, OrderAccepted))
    assert fake.count("create_order") == 2  # one re-send, refused as a duplicate
    assert len(fake.orders) == 1 and not of(reports, OrderRejected)
    await venue.stop()


async def test_unknown_outcome_twice_leaves_order_pending_and_venue_degraded(fake):
    venue, reports = make_venue(fake, lookup_attempts=2, down_after_failures=100)
    await venue.start()
    fake.fault("create_order", ccxt.RequestTimeout("binance timed out"), times=2)
    fake.fault("fetch_order", ccxt.NetworkError("binance connection reset"), times=2)  # 1st resolve: inconclusive
    venue.submit(make_order("ly-u"))
    await venue.wait_idle()
    # first resolve inconclusive -> no re-send at all
    assert fake.count("create_order") == 1
    assert not of(reports, OrderAccepted) and not of(reports, OrderRejected)
    assert venue.health() is VenueHealth.DEGRADED
    assert venue.status()["unresolved_orders"] == ["ly-u"]
    assert "unknown send outcome" in venue.status()["reason"]
    # reconciliation later proves it lost (it never reached the exchange)
    summary = await venue.reconcile_now(None, unknown=False, balances=False)
    assert summary["lost_before_send"] == ["ly-u"]
    assert of(reports, OrderRejected)[0].reason.startswith("lost_before_send")
    assert venue.health() is VenueHealth.CONNECTED
    await venue.stop()


async def test_resend_with_unknown_outcome_is_never_sent_a_third_time(fake):
    venue, reports = make_venue(fake, lookup_attempts=3, down_after_failures=100)
    await venue.start()
    fake.fault("create_order", ccxt.RequestTimeout("binance timed out"))  # 1st: not processed
    fake.fault("create_order", ccxt.RequestTimeout("binance timed out"), after=True)  # re-send: processed
    fake.fault("fetch_order", ccxt.OrderNotFound("binance Order does not exist."), times=2)  # 1st resolve: not found
    fake.fault("fetch_order", ccxt.NetworkError("binance reset"), times=3)  # 2nd resolve: inconclusive
    venue.submit(make_order("ly-3"))
    await venue.wait_idle()
    assert fake.count("create_order") == 2
    assert venue.status()["unresolved_orders"] == ["ly-3"] and venue.health() is VenueHealth.DEGRADED
    summary = await venue.reconcile_now(None, unknown=False, balances=False)
    assert summary["found"] == ["ly-3"] and of(reports, OrderAccepted)
    assert venue.status()["unresolved_orders"] == [] and venue.health() is VenueHealth.CONNECTED
    await venue.stop()


async def test_rate_limit_is_retried_with_backoff_and_reported_degraded(fake):
    venue, reports = make_venue(fake)
    await venue.start()
    fake.last_response_headers = {"Retry-After": "0.05"}
    fake.fault("create_order", ccxt.RateLimitExceeded("binance 429 Too Many Requests"))
    venue.submit(make_order("ly-rl"))
    await until(lambda: of(reports, OrderAccepted))
    assert fake.count("create_order") == 2
    assert VenueHealth.DEGRADED in healths(reports)
    assert venue.budget.rate_limited == 1
    await until(lambda: venue.health() is VenueHealth.CONNECTED)
    await venue.stop()


async def test_418_ban_backs_off_for_retry_after_and_is_down(fake):
    venue, reports = make_venue(fake)
    await venue.start()
    fake.last_response_headers = {"retry-after": "0.2"}
    fake.fault("create_order", ccxt.DDoSProtection("binance POST https://api.binance.com/api/v3/order 418 I'm a teapot"))
    venue.submit(make_order("ly-ban"))
    await until(lambda: of(reports, OrderRejected))
    assert venue.health() is VenueHealth.DOWN and "418" in venue.status()["reason"]
    assert venue.budget.bans == 1 and venue.budget.paused_for() > 0.05
    venue.submit(make_order("ly-ban2"))  # not sent while banned
    await until(lambda: len(of(reports, OrderRejected)) == 2)
    assert of(reports, OrderRejected)[1].reason.startswith("venue_down")
    assert fake.count("create_order") == 1
    await until(lambda: venue.health() is not VenueHealth.DOWN, timeout=3)
    await venue.stop()


async def test_authentication_error_is_down_with_a_clear_reason_and_no_secret(fake, caplog):
    caplog.set_level(logging.DEBUG)
    venue, reports = make_venue(fake)
    await venue.start()
    fake.fault("create_order", ccxt.AuthenticationError(
        f'binance POST https://api.binance.com/api/v3/order?apiKey={API_KEY}&signature=abcdef0123 '
        f'{{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}} secret={SECRET}'))
    venue.submit(make_order("ly-auth"))
    await until(lambda: of(reports, OrderRejected))
    assert venue.health() is VenueHealth.DOWN
    status = venue.status()
    assert "authentication refused" in status["reason"] and "Invalid API-key" in status["reason"]
    everything = repr(reports) + repr(status) + caplog.text
    assert API_KEY not in everything and SECRET not in everything and "abcdef0123" not in everything
    await venue.stop()


async def test_network_errors_make_the_venue_degraded_then_down_then_connected(fake):
    venue, reports = make_venue(fake, down_after_failures=3)
    await venue.start()
    fake.orders.clear()
    order = make_order("ly-n", status=OrderStatus.OPEN, venue_order_id="777")
    fake.orders["777"] = {"id": "777", "clientOrderId": "ly-n", "symbol": "BTC/USDT", "type": "limit", "side": "buy",
                          "amount": 0.5, "price": 100.0, "filled": 0.0, "remaining": 0.5, "status": "open",
                          "timestamp": BASE_MS}
    await venue.reconcile_now([order], unknown=False, balances=False)  # tracks it -> polled
    for _ in range(3):
        fake.fault("fetch_open_orders", ccxt.ExchangeNotAvailable("binance 502 Bad Gateway"))
    await until(lambda: VenueHealth.DOWN in healths(reports))
    await until(lambda: venue.health() is VenueHealth.CONNECTED)
    seq = healths(reports)
    assert seq[seq.index(VenueHealth.DOWN) - 1] is VenueHealth.DEGRADED
    assert seq[-1] is VenueHealth.CONNECTED
    assert "502" in (venue.status()["last_error"] or "")
    await venue.stop()


async def test_submit_while_down_is_rejected_without_sending(fake):
    venue, reports = make_venue(fake, down_after_failures=1)
    await venue.start()
    # the exchange is unreachable: every query fails
    fake.fault("fetch_balance", ccxt.NetworkError("binance unreachable"), times=1000)
    fake.fault("fetch_open_orders", ccxt.NetworkError("binance unreachable"), times=1000)
    await venue.reconcile_now([], unknown=False, balances=True)
    assert venue.health() is VenueHealth.DOWN
    venue.submit(make_order("ly-d"))
    await until(lambda: of(reports, OrderRejected))
    assert of(reports, OrderRejected)[0].reason.startswith("venue_down") and fake.count("create_order") == 0
    await venue.stop()


# -- trades ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("mangle", ["duplicate", "reverse"])
async def test_duplicated_and_reordered_trades_give_each_fill_once_in_time_order(fake, mangle):
    venue, reports = make_venue(fake)
    await venue.start()
    venue.submit(make_order("ly-m", qty="1.0"))
    await until(lambda: of(reports, OrderAccepted))
    vid = of(reports, OrderAccepted)[0].venue_order_id
    venue.options.poll_interval_s = 60  # the test drives polling
    await asyncio.sleep(0.05)
    fake.fill(vid, 0.1, 100.0, ts_ms=BASE_MS + 30)
    fake.fill(vid, 0.2, 100.0, ts_ms=BASE_MS + 10)
    fake.fill(vid, 0.3, 100.0, ts_ms=BASE_MS + 20)
    fake.mangle_trades = mangle
    await venue._settle_symbol("BTC/USDT", venue_priority())
    fake.mangle_trades = "duplicate"
    venue._dirty.add("BTC/USDT")
    await venue._settle_symbol("BTC/USDT", venue_priority())
    fills = [r.fill for r in of(reports, OrderFilled)]
    assert [f.qty for f in fills] == [Decimal("0.2"), Decimal("0.3"), Decimal("0.1")]
    assert [f.ts_ns for f in fills] == sorted(f.ts_ns for f in fills)
    assert len({f.fill_id for f in fills}) == 3
    assert venue.stats["duplicate_trades_dropped"] >= 3
    await venue.stop()


def venue_priority():
    from appliance.venues.ccxt.budget import Priority
    return Priority.POLL


async def test_late_trade_inside_the_overlap_is_reported_once(fake):
    venue, reports = make_venue(fake)
    await venue.start()
    venue.submit(make_order("ly-late", qty="1.0"))
    await until(lambda: of(reports, OrderAccepted))
    vid = of(reports, OrderAccepted)[0].venue_order_id
    fake.fill(vid, 0.4, 100.0, ts_ms=BASE_MS + 5_000)
    await until(lambda: len(of(reports, OrderFilled)) == 1)
    fake.fill(vid, 0.1, 100.0, ts_ms=BASE_MS + 4_000)  # published late with an earlier time
    await until(lambda: len(of(reports, OrderFilled)) == 2)
    await asyncio.sleep(0.05)
    assert len(of(reports, OrderFilled)) == 2
    await venue.stop()


# -- cancel ---------------------------------------------------------------------------------------

async def test_cancel_reports_fills_before_canceled(fake):
    venue, reports = make_venue(fake, poll_interval_s=60)
    await venue.start()
    order = make_order("ly-c", qty="1.0")
    venue.submit(order)
    await until(lambda: of(reports, OrderAccepted))
    vid = of(reports, OrderAccepted)[0].venue_order_id
    fake.fill(vid, 0.25, 100.0)
    venue.cancel(order)
    await until(lambda: of(reports, OrderCanceled))
    kinds = [type(r).__name__ for r in reports if isinstance(r, (OrderFilled, OrderCanceled))]
    assert kinds == ["OrderFilled", "OrderCanceled"]
    assert fake.orders[vid]["status"] == "canceled"
    await venue.stop()


async def test_cancel_of_an_order_that_filled_meanwhile_reports_the_fills_not_a_cancel(fake):
    venue, reports = make_venue(fake, poll_interval_s=60)
    await venue.start()
    order = make_order("ly-cf", qty="0.5")
    venue.submit(order)
    await until(lambda: of(reports, OrderAccepted))
    vid = of(reports, OrderAccepted)[0].venue_order_id
    fake.fill(vid, 0.5, 100.0)  # filled before the cancel arrives: cancel -> OrderNotFound
    venue.cancel(order)
    await venue.wait_idle()
    await until(lambda: of(reports, OrderFilled))
    assert not of(reports, OrderCanceled)
    assert fake.count("cancel_order") == 1
    await venue.stop()


async def test_cancel_retries_network_errors(fake):
    venue, reports = make_venue(fake, poll_interval_s=60)
    await venue.start()
    order = make_order("ly-cn")
    venue.submit(order)
    await until(lambda: of(reports, OrderAccepted))
    fake.fault("cancel_order", ccxt.RequestTimeout("binance timed out"))
    venue.cancel(order)
    await until(lambda: of(reports, OrderCanceled))
    assert fake.count("cancel_order") == 2
    await venue.stop()


# -- reconciliation ------------------------------------------------------------------------------

async def test_reconcile_reports_accepted_fills_canceled_lost_unknown_and_balances(fake):
    venue, reports = make_venue(fake, poll_interval_s=60)
    await venue.start()
    # 1. PENDING_SUBMIT in Lyra, accepted and partly filled on the exchange while Lyra was away
    a = fake.add_order("BTC/USDT", "buy", 1.0, 100.0, client_id="ly-a")
    fake.fill(a["id"], 0.4, 100.0)
    # 2. PENDING_SUBMIT in Lyra, never reached the exchange
    # 3. OPEN in Lyra, canceled on the exchange after a fill
    c = fake.add_order("ETH/USDT", "sell", 2.0, 2000.0, client_id="ly-c")
    fake.fill(c["id"], 0.5, 2000.0)
    c["status"] = "canceled"
    # 4. an order placed by hand on the exchange
    foreign = fake.add_order("ETH/USDT", "buy", 3.0, 1500.0, client_id="web_123")
    orders = [
        make_order("ly-a", qty="1.0"),
        make_order("ly-b"),
        make_order("ly-c", side=OrderSide.SELL, qty="2.0", price="2000", symbol="ETH/USDT", status=OrderStatus.OPEN,
                   venue_order_id=c["id"]),
        make_order("ly-x", symbol="BTC/USDT", venue="other-venue"),  # another venue's: ignored
    ]
    summary = await venue.reconcile_now(orders)
    assert summary["found"] == ["ly-a", "ly-c"] and summary["lost_before_send"] == ["ly-b"]
    accepted = of(reports, OrderAccepted)
    assert [(r.client_order_id, r.venue_order_id) for r in accepted] == [("ly-a", a["id"])]
    fills = [(r.fill.client_order_id, r.fill.qty) for r in of(reports, OrderFilled)]
    assert sorted(fills) == [("ly-a", Decimal("0.4")), ("ly-c", Decimal("0.5"))]
    lost, = of(reports, OrderRejected)
    assert lost.client_order_id == "ly-b" and lost.reason.startswith("lost_before_send")
    canceled, = of(reports, OrderCanceled)
    assert canceled.client_order_id == "ly-c"
    # the cancel comes after the order's fill
    idx = {id(r): i for i, r in enumerate(reports)}
    fill_c = next(r for r in of(reports, OrderFilled) if r.fill.client_order_id == "ly-c")
    assert idx[id(fill_c)] < idx[id(canceled)]
    unknown, = of(reports, UnknownVenueOrder)
    assert (unknown.venue_order_id, unknown.client_order_id, unknown.symbol, unknown.qty) == (
        foreign["id"], "web_123", "ETH/USDT", Decimal("3.0"))
    assert fake.orders[foreign["id"]]["status"] == "open" and fake.count("cancel_order") == 0  # never touched
    snapshot, = of(reports, BalanceSnapshot)
    assert snapshot.balances == {"BTC": Decimal("1.5"), "USDT": Decimal("10000.0")}
    # a second reconcile reports nothing new and no duplicate fill
    before = len(reports)
    await venue.reconcile_now(None, balances=False)
    assert not [r for r in reports[before:] if isinstance(r, (OrderFilled, UnknownVenueOrder, OrderAccepted))]
    await venue.stop()


async def test_a_failed_query_is_never_not_found(fake):
    venue, reports = make_venue(fake, down_after_failures=100)
    await venue.start()
    fake.fault("fetch_order", ccxt.RequestTimeout("binance GET /api/v3/order timed out"))
    fake.fault("fetch_open_orders", ccxt.ExchangeNotAvailable("binance 503"))
    fake.fault("fetch_balance", ccxt.ExchangeNotAvailable("binance 503"))
    summary = await venue.reconcile_now([make_order("ly-f")])
    assert summary["failed"] == ["ly-f"] and summary["lost_before_send"] == []
    assert not of(reports, OrderRejected) and not of(reports, OrderAccepted)
    assert not of(reports, BalanceSnapshot) and not of(reports, UnknownVenueOrder)
    assert of(reports, VenueHealthChanged)[-1].health is VenueHealth.DEGRADED
    # once the exchange answers, the same order is proven lost
    summary = await venue.reconcile_now(None)
    assert summary["lost_before_send"] == ["ly-f"]
    await venue.stop()


async def test_reconcile_with_scan_lookup_kraken_style():
    ex = FakeExchange("kraken")
    venue, reports = make_venue(ex, name="kr")
    await venue.start()
    long_id = "ly-0123456789abcdef0123"  # 23 chars: too long for Kraken's free text -> 32-hex digest
    vcid = venue.id_spec and __import__("appliance.venues.ccxt", fromlist=["venue_client_id"]).venue_client_id(
        venue.id_spec, long_id)
    assert len(vcid) == 32 and vcid != long_id
    placed = ex.add_order("BTC/USDT", "buy", 0.5, 100.0, client_id=vcid)
    placed["status"] = "closed"
    ex.fill(placed["id"], 0.5, 100.0)
    summary = await venue.reconcile_now([make_order(long_id, venue="kr")], balances=False)
    assert summary["found"] == [long_id]
    assert [r.fill.qty for r in of(reports, OrderFilled)] == [Decimal("0.5")]
    calls = [m for _, m, _ in ex.calls]
    assert "fetch_order" not in calls[:calls.index("fetch_my_trades")]  # looked up by lists, not fetch_order
    filtered = [args for _, m, args in ex.calls if m in ("fetch_open_orders", "fetch_closed_orders") and args[2]]
    assert filtered and all(args[2] == {"clientOrderId": vcid} for args in filtered)  # Kraken: -> cl_ord_id
    await venue.stop()


# -- streams ----------------------------------------------------------------------------------------

async def test_streams_reconnect_with_backoff_and_feed_fills_once():
    ex = FakeExchange(streams=True)
    ex.stream_faults["watch_orders"] = [ccxt.NetworkError("ws closed"), ccxt.NetworkError("ws closed")]
    venue, reports = make_venue(ex, use_streams=True, poll_interval_s=0.05, stream_poll_interval_s=60)
    await venue.start()
    venue.submit(make_order("ly-s", qty="1.0"))
    await until(lambda: of(reports, OrderAccepted))
    vid = of(reports, OrderAccepted)[0].venue_order_id
    trade = ex.fill(vid, 0.6, 100.0)
    await ex.stream_orders.put([ex._copy(ex.orders[vid])])
    await ex.stream_trades.put([dict(trade), dict(trade)])  # duplicated on the stream too
    await until(lambda: of(reports, OrderFilled))
    await until(lambda: venue.status()["streams"].get("watch_orders") == "live")
    await asyncio.sleep(0.1)  # polling may see the same trade: still one fill
    assert len(of(reports, OrderFilled)) == 1
    assert VenueHealth.DEGRADED in healths(reports)  # while reconnecting
    await until(lambda: venue.stats["reconciliations"] >= 1)  # reconcile after the reconnect
    await venue.stop()


# -- budget --------------------------------------------------------------------------------------------

async def test_a_burst_of_200_submits_with_polling_never_exceeds_the_budget():
    weights = {"create_order": 1, "cancel_order": 1, "fetch_order": 4, "fetch_open_orders": 6,
               "fetch_open_orders_all": 80, "fetch_my_trades": 20, "fetch_balance": 20, "load_markets": 20,
               "fetch_closed_orders": 20}
    limit, window = 600, 1.0
    spec = BudgetSpec("scaled-binance", (
        BucketSpec.from_window("request_weight", limit, window, weights),
        BucketSpec.from_window("orders", 100, 0.5, {"create_order": 1}, default_weight=0),
    ))
    ex = FakeExchange(weights=weights)
    venue, reports = make_venue(ex, budget=RequestBudget(spec), poll_interval_s=0.001)
    await venue.start()
    for i in range(200):
        venue.submit(make_order(f"ly-b{i:03d}", symbol="BTC/USDT" if i % 2 else "ETH/USDT"))
    await until(lambda: len(of(reports, OrderAccepted)) == 200, timeout=20)
    for vid in list(ex.orders)[:20]:
        ex.fill(vid, 0.1, 100.0)
    await asyncio.sleep(0.5)  # polling keeps going meanwhile
    await venue.stop()
    log = ex.weight_log
    assert ex.count("fetch_open_orders") > 0
    # any window of `window` seconds: weight <= limit (the bucket even keeps it <= 80 %)
    for i, (start, _, _) in enumerate(log):
        used = sum(w for t, w, _ in log[i:] if t < start + window)
        assert used <= limit * 0.8 + 1e-6, (start, used)
    orders = [t for t, _, kind in log if kind == "create_order"]
    for i, start in enumerate(orders):
        assert sum(1 for t in orders[i:] if t < start + 0.5) <= 80
    counters = venue.counters()
    assert counters["requests_by_kind"]["create_order"] == 200 and counters["waits"] > 0


async def test_budget_serves_orders_before_polls_and_keeps_a_reserve():
    from appliance.venues.ccxt.budget import Priority

    spec = BudgetSpec("t", (BucketSpec("w", capacity=10, refill_per_s=100, weights={"poll": 4, "order": 1}),))
    budget = RequestBudget(spec, order_reserve=0.3)
    served: list[str] = []

    async def take(kind: str, priority: Priority, tag: str) -> None:
        await budget.acquire(kind, priority)
        served.append(tag)

    polls = [asyncio.create_task(take("poll", Priority.POLL, f"p{i}")) for i in range(5)]
    await asyncio.sleep(0)
    orders = [asyncio.create_task(take("order", Priority.ORDER, f"o{i}")) for i in range(5)]
    await asyncio.gather(*polls, *orders)
    # the first poll took tokens immediately; the orders arrived while polls were queued and went first
    assert served[0] == "p0"
    assert served.index("o4") < served.index("p2")
    assert budget.counters()["requests_by_priority"] == {"poll": 5, "order": 5}


async def test_budget_pause_blocks_everyone_until_retry_after():
    from appliance.venues.ccxt.budget import Priority

    budget = RequestBudget(BudgetSpec("t", (BucketSpec("w", capacity=100, refill_per_s=1000),)))
    loop = asyncio.get_running_loop()
    budget.pause(0.15)
    started = loop.time()
    await budget.acquire("x", Priority.ORDER)
    assert loop.time() - started >= 0.14
    assert budget.counters()["rate_limited"] == 1


async def test_a_refused_resend_is_looked_up_before_it_counts_as_a_rejection(fake):
    # Kraken-style refusal of a client id in use, without the word "duplicate"
    fake.dup_message = 'kraken {"error":["EOrder:Insufficient funds"]}'
    venue, reports = make_venue(fake, lookup_attempts=2, not_found_confirmations=2)
    await venue.start()
    fake.fault("create_order", ccxt.ExchangeNotAvailable("binance 503"), after=True)
    fake.fault("fetch_order", ccxt.OrderNotFound("binance Order does not exist."), times=2)
    fake.fault("create_order", ccxt.InsufficientFunds("kraken EOrder:Insufficient funds"))  # the re-send
    venue.submit(make_order("ly-rf"))
    await venue.wait_idle()
    assert of(reports, OrderAccepted) and not of(reports, OrderRejected)
    assert fake.count("create_order") == 2 and len(fake.orders) == 1
    await venue.stop()


async def test_the_resend_waits_for_the_guard_so_a_late_first_request_cannot_land(fake):
    venue, reports = make_venue(fake, resend_guard_s=0.25)
    await venue.start()
    fake.fault("create_order", ccxt.RequestTimeout("binance timed out"))
    venue.submit(make_order("ly-g"))
    await until(lambda: of(reports, OrderAccepted))
    first, second = [t for t, m, _ in fake.calls if m == "create_order"]
    assert second - first >= 0.24
    await venue.stop()


def test_client_ids_fit_each_exchange_and_are_deterministic():
    from appliance.venues.ccxt import CLIENT_ID_SPECS, venue_client_id

    lyra_ids = ["ly-" + "0123456789abcdef0123", "manual_order-1", "A" * 36, "x"]
    for exchange_id, spec in CLIENT_ID_SPECS.items():
        seen = set()
        for cid in lyra_ids:
            vcid = venue_client_id(spec, cid)
            assert vcid == venue_client_id(spec, cid)
            assert len(vcid) <= spec.max_len and __import__("re").fullmatch(spec.pattern, vcid), (exchange_id, vcid)
            seen.add(vcid)
        assert len(seen) == len(lyra_ids), exchange_id
    assert venue_client_id(CLIENT_ID_SPECS["binance"], "ly-0123456789abcdef0123") == "ly-0123456789abcdef0123"
    assert venue_client_id(CLIENT_ID_SPECS["gate"], "ly-1").startswith("t-ly-1")
    assert venue_client_id(CLIENT_ID_SPECS["okx"], "ly-1").isalnum()
    assert venue_client_id(CLIENT_ID_SPECS["bitfinex"], "ly-1").isdigit()
    assert CLIENT_ID_SPECS["coinbase"].create_param == "client_order_id"  # ccxt ignores the unified one there
    assert not CLIENT_ID_SPECS["gemini"].definitive_not_found


@pytest.mark.parametrize("exc, kind", [
    (ccxt.InsufficientFunds("x"), "rejected"), (ccxt.InvalidOrder("Filter failure: PRICE_FILTER"), "rejected"),
    (ccxt.InvalidOrder('{"code":-2010,"msg":"Duplicate order sent."}'), "duplicate"),
    (ccxt.InvalidOrder("EOrder:Invalid order:cl_ord_id already in use"), "duplicate"),
    (ccxt.DuplicateOrderId("x"), "duplicate"), (ccxt.OrderNotFound("x"), "not_found"),
    (ccxt.AuthenticationError("x"), "auth"), (ccxt.PermissionDenied("x"), "auth"),
    (ccxt.RateLimitExceeded("429"), "rate_limited"), (ccxt.DDoSProtection("binance GET /x 418 I'm a teapot"), "banned"),
    (ccxt.DDoSProtection("EAPI:Rate limit exceeded"), "rate_limited"), (ccxt.InvalidNonce("x"), "nonce"),
    (ccxt.RequestTimeout("x"), "unknown"), (ccxt.ExchangeNotAvailable("502"), "unknown"),
    (ccxt.NetworkError("x"), "unknown"), (ccxt.BadResponse("x"), "unknown"), (ccxt.ExchangeError("x"), "unknown"),
    (ccxt.OperationFailed("-1000 unknown error"), "unknown"), (asyncio.TimeoutError(), "unknown"),
    (ccxt.CancelPending("x"), "cancel_pending"),
    # bodies ccxt leaves as a plain ExchangeError (seen against the emulated dialects)
    (ccxt.ExchangeError('bitfinex {"error":"ERR_RATE_LIMIT"}'), "rate_limited"),
    (ccxt.ExchangeError('bitstamp {"status":"error","reason":"Rate limit exceeded","code":"400.002"}'), "rate_limited"),
    (ccxt.ExchangeError('coinbase {"success": false, "error_response": {"error": "INVALID_LIMIT_PRICE_PRECISION"}}'),
     "rejected"),
    (ccxt.ExchangeError('coinbase {"error":"unknown","message":"order with this orderID was not found"}'), "not_found"),
    (ccxt.PermissionDenied('bitfinex ["error",10001,"Invalid order: minimum size for BTC/USDT is 0.0001"]'),
     "rejected"),
    (ccxt.PermissionDenied('bitfinex ["error",10001,"permission: denied"]'), "auth"),
    (ccxt.NetworkError("ratelimit"), "unknown"),  # only the generic ExchangeError is read for words
])
def test_ccxt_errors_are_classified(exc, kind):
    from appliance.venues.ccxt.errors import classify

    assert classify(exc).value == kind


def test_redactor_removes_credentials_signatures_and_key_headers():
    from appliance.venues.ccxt.errors import Redactor

    redact = Redactor([API_KEY, SECRET, "pw"])
    text = redact(f"GET https://x/api?symbol=BTC&apiKey={API_KEY}&signature=deadbeef {{'X-MBX-APIKEY': 'zz{API_KEY}'}} "
                  f"API-Sign: abc== {SECRET}")
    assert API_KEY not in text and SECRET not in text and "deadbeef" not in text and "abc==" not in text
    assert "symbol=BTC" in text


def test_budget_tables_never_exceed_the_documented_limits():
    from appliance.venues.ccxt import BUDGETS, budget_spec_for

    for spec in [*BUDGETS.values(), budget_spec_for("someexchange", 200)]:
        for bucket in spec.buckets:
            if bucket.decay_per_s:  # a decaying counter never passes its max if we add at most its decay
                assert bucket.capacity <= bucket.limit and bucket.refill_per_s <= bucket.decay_per_s
            else:  # most a bucket can hand out in any window of the documented length
                assert bucket.capacity + bucket.refill_per_s * bucket.window_s <= bucket.limit + 1e-9, (spec, bucket)
            assert bucket.capacity >= max([w for w in bucket.weights.values()] + [0])
    from appliance.venues.ccxt.client_ids import CLIENT_ID_SPECS

    assert set(BUDGETS) == set(CLIENT_ID_SPECS)  # every supported exchange has its documented limits
    assert all(spec.source for spec in BUDGETS.values())
    binance = BUDGETS["binance"].buckets[0]
    assert binance.limit == 6000 and binance.weight("fetch_open_orders_all") == 80
    budget = RequestBudget(BUDGETS["binance"])
    # polling 3 symbols (open orders 6 + trades 20 each) on half the refill: 78 / 32 per s
    assert budget.sustainable_interval_s({"fetch_open_orders": 3, "fetch_my_trades": 3}, 0.5) == pytest.approx(78 / 32)


async def test_a_stream_that_keeps_failing_falls_back_to_polling_and_is_retried_later():
    ex = FakeExchange(streams=True)
    ex.stream_faults["watch_my_trades"] = [ccxt.NetworkError("ws refused")] * 3
    venue, reports = make_venue(ex, use_streams=True, stream_max_failures=3, stream_retry_s=0.2,
                                poll_interval_s=0.01, stream_poll_interval_s=60)
    await venue.start()
    await until(lambda: venue.status()["streams"]["watch_my_trades"].startswith("failed: polling only"))
    assert "stream:watch_my_trades" not in venue.status()["conditions"]
    venue.submit(make_order("ly-p", qty="1.0"))  # polling still delivers
    await until(lambda: of(reports, OrderAccepted))
    ex.fill(of(reports, OrderAccepted)[0].venue_order_id, 1.0, 100.0)
    await until(lambda: of(reports, OrderFilled))
    await ex.stream_trades.put([])
    await until(lambda: venue.status()["streams"]["watch_my_trades"] == "live")
    await venue.stop()


async def test_reconcile_fetches_old_fills_per_order_where_the_exchange_can():
    ex = FakeExchange(order_trades=True)
    venue, reports = make_venue(ex, poll_interval_s=60)
    await venue.start()
    old = ex.add_order("BTC/USDT", "buy", 1.0, 100.0, client_id="ly-old")
    ex.fill(old["id"], 0.25, 100.0, ts_ms=BASE_MS - 3 * 86_400_000)  # days ago: beyond Binance's 24 h window
    ex.fill(old["id"], 0.25, 100.0)
    summary = await venue.reconcile_now([make_order("ly-old", qty="1.0", status=OrderStatus.PARTIALLY_FILLED,
                                                    venue_order_id=old["id"], filled="0.25")], balances=False)
    assert summary["found"] == ["ly-old"]
    assert [r.fill.qty for r in of(reports, OrderFilled)] == [Decimal("0.25"), Decimal("0.25")]  # OMS drops the known one
    assert [args for _, m, args in ex.calls if m == "fetch_order_trades"] == [(old["id"], "BTC/USDT")]
    assert ex.count("fetch_my_trades") == 0
    await venue.stop()


async def test_a_resubscribed_stream_on_a_quiet_account_turns_live_and_reconciles_without_a_message():
    # ccxt's watch_* returns only with data: after a reconnect on a quiet account nothing ever
    # arrives, yet the venue must leave DEGRADED and reconcile what it missed while down
    ex = FakeExchange(streams=True)
    ex.stream_faults["watch_orders"] = [ccxt.NetworkError("ws closed")]
    venue, reports = make_venue(ex, use_streams=True, stream_settle_s=0.05, poll_interval_s=60,
                                stream_poll_interval_s=60)
    await venue.start()
    await until(lambda: venue.status()["streams"] == {"watch_orders": "live", "watch_my_trades": "live"})
    await until(lambda: venue.stats["reconciliations"] == 1)  # after watch_orders' reconnect only
    assert VenueHealth.DEGRADED in healths(reports)
    assert venue.health() is VenueHealth.CONNECTED and not venue.status()["conditions"]
    await venue.stop()


def test_orphaned_exchange_errors_are_one_redacted_warning_and_others_go_to_the_default_handler(caplog):
    from appliance.venues.ccxt.errors import orphaned_exchange_error_handler

    class Loop:
        seen: list = []

        def default_exception_handler(self, context):
            self.seen.append(context)

    loop = Loop()
    exc = ccxt.NetworkError("binance GET https://api.binance.com/api/v3/order?symbol=X&signature=deadbeef01 failed")
    with caplog.at_level("WARNING", logger="lyra.venues.ccxt"):
        orphaned_exchange_error_handler(loop, {"message": "Future exception was never retrieved", "exception": exc})
    (record,) = [r for r in caplog.records if r.name == "lyra.venues.ccxt"]
    assert record.levelname == "WARNING" and "NetworkError" in record.getMessage()
    assert "deadbeef01" not in record.getMessage() and loop.seen == []
    other = {"message": "Task exception was never retrieved", "exception": ZeroDivisionError()}
    orphaned_exchange_error_handler(loop, other)
    assert loop.seen == [other]  # our own bugs stay loud
