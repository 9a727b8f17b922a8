"""Unmodified ccxt (async) against the emulator's Binance spot dialect."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import ccxt
import pytest

from tests.emulator import EmulatorThread, ExchangeEmulator, binance_client
from tests.emulator.shapes import load_fixture, shape_mismatches

KEY = "lyra-test-key"
SECRET = "lyra-test-secret-0123456789"
BALANCES = {"USDT": "10000", "BTC": "1", "ETH": "5", "ADA": "1000"}
TRIANGLE = "arbitrage/triangular_binance_2021-04"


@pytest.fixture
async def emu():
    async with ExchangeEmulator(("binance",), accounts={KEY: (SECRET, BALANCES)},
                                binance_weight_limit=1_000_000) as e:
        yield e


@pytest.fixture
async def ex(emu):
    client = binance_client(emu, KEY, SECRET)
    yield client
    await client.close()


def D(x: object) -> Decimal:
    return Decimal(str(x))


# ---------------------------------------------------------------------------- markets / balance
async def test_load_markets_gives_configured_precision_and_limits(ex, emu):
    assert all(u.startswith(emu.url + "/") for u in ex.urls["api"].values())  # nothing leaves 127.0.0.1
    markets = await ex.load_markets()
    assert {"ADA/BTC", "ETH/BTC", "BTC/USDT", "ETH/USDT"} <= set(markets)
    btc = markets["BTC/USDT"]
    assert btc["id"] == "BTCUSDT" and btc["spot"] is True
    assert btc["precision"]["price"] == 0.01 and btc["precision"]["amount"] == 0.00001
    assert btc["limits"]["amount"]["min"] == 0.00001 and btc["limits"]["cost"]["min"] == 5.0
    ada = markets["ADA/BTC"]
    assert ada["precision"]["price"] == 1e-8 and ada["precision"]["amount"] == 0.1
    assert ada["limits"]["cost"]["min"] == 0.0001


async def test_fetch_balance(ex):
    bal = await ex.fetch_balance()
    assert bal["total"]["USDT"] == 10000 and bal["free"]["BTC"] == 1 and bal["used"]["ETH"] == 0


# ---------------------------------------------------------------------------- orders
async def test_market_orders_fill_at_mark_with_10bps_fee(ex, emu):
    await ex.load_markets()
    buy = await ex.create_order("BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "lyra-mkt-1"})
    assert buy["status"] == "closed" and buy["clientOrderId"] == "lyra-mkt-1"
    assert buy["filled"] == 0.01 and buy["average"] == 60000
    assert buy["fee"] == {"currency": "BTC", "cost": 0.00001}  # buyer pays in base
    assert buy["trades"] and buy["trades"][0]["id"]
    emu.set_mark("binance", "BTC/USDT", 61000)
    sell = await ex.create_order("BTC/USDT", "market", "sell", 0.005)
    assert sell["fee"]["currency"] == "USDT" and sell["fee"]["cost"] == pytest.approx(0.305)
    bal = emu.balances("binance", KEY)
    assert bal["USDT"][0] == D("10000") - D("600") + D("305") - D("0.305")
    assert bal["BTC"][0] == D("1") + D("0.01") - D("0.00001") - D("0.005")


async def test_limit_order_rests_then_fills_when_mark_crosses(ex, emu):
    await ex.load_markets()
    o = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 59000, params={"clientOrderId": "lyra-lim-1"})
    assert o["status"] == "open" and o["price"] == 59000
    bal = await ex.fetch_balance()
    assert bal["used"]["USDT"] == 590
    by_id = await ex.fetch_order(o["id"], "BTC/USDT")
    by_cid = await ex.fetch_order(None, "BTC/USDT", params={"clientOrderId": "lyra-lim-1"})
    assert by_id["id"] == by_cid["id"] == o["id"] and by_cid["clientOrderId"] == "lyra-lim-1"
    assert [x["id"] for x in await ex.fetch_open_orders("BTC/USDT")] == [o["id"]]
    emu.set_mark("binance", "BTC/USDT", 59500)  # not crossed
    assert (await ex.fetch_order(o["id"], "BTC/USDT"))["status"] == "open"
    emu.set_mark("binance", "BTC/USDT", 58900)  # crossed: fills at its limit, as maker
    done = await ex.fetch_order(o["id"], "BTC/USDT")
    assert done["status"] == "closed" and done["filled"] == 0.01 and done["average"] == 59000
    trades = await ex.fetch_my_trades("BTC/USDT")
    assert len(trades) == 1 and trades[0]["order"] == o["id"] and trades[0]["takerOrMaker"] == "maker"
    assert await ex.fetch_open_orders("BTC/USDT") == []
    closed = await ex.fetch_closed_orders("BTC/USDT")
    assert [c["id"] for c in closed] == [o["id"]]
    assert (await ex.fetch_balance())["used"]["USDT"] == 0


async def test_partial_fill_through_control_api(ex, emu):
    await ex.load_markets()
    o = await ex.create_order("ETH/USDT", "limit", "sell", 1, 3100)
    order = emu.orders("binance", KEY)[0]
    emu.fill_order("binance", order, qty="0.4")
    got = await ex.fetch_order(o["id"], "ETH/USDT")
    assert got["status"] == "open" and got["filled"] == 0.4 and got["remaining"] == 0.6
    assert len(await ex.fetch_my_trades("ETH/USDT")) == 1


async def test_cancel_order_and_unknown_orders(ex, emu):
    await ex.load_markets()
    o = await ex.create_order("ETH/BTC", "limit", "buy", 1, 0.04)
    assert (await ex.fetch_balance())["used"]["BTC"] == 0.04
    cancelled = await ex.cancel_order(o["id"], "ETH/BTC")
    assert cancelled["status"] == "canceled"
    assert (await ex.fetch_balance())["used"]["BTC"] == 0
    with pytest.raises(ccxt.OrderNotFound, match="-2011"):
        await ex.cancel_order(o["id"], "ETH/BTC")
    with pytest.raises(ccxt.OrderNotFound, match="-2013"):
        await ex.fetch_order("999", "ETH/BTC")


async def test_duplicate_client_order_id_of_open_order_is_refused(ex, emu):
    await ex.load_markets()
    first = await ex.create_order("ETH/USDT", "limit", "buy", 0.1, 2500, params={"clientOrderId": "dup-1"})
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent"):
        await ex.create_order("ETH/USDT", "limit", "buy", 0.1, 2500, params={"clientOrderId": "dup-1"})
    assert len([o for o in emu.orders("binance", KEY) if o.client_order_id == "dup-1"]) == 1
    assert emu.requests_to("/api/v3/order", method="POST")[-1].error == -2010
    await ex.cancel_order(first["id"], "ETH/USDT")
    again = await ex.create_order("ETH/USDT", "limit", "buy", 0.1, 2500, params={"clientOrderId": "dup-1"})
    assert again["id"] != first["id"]  # reuse after the first is no longer open is allowed


async def test_filters_and_funds_errors_map_to_ccxt_exceptions(ex, emu):
    await ex.load_markets()
    with pytest.raises(ccxt.InvalidOrder, match="LOT_SIZE"):  # below minQty
        await ex.create_order("ADA/USDT", "limit", "buy", 0.5, 0.5)  # minQty 1, step 0.1
    with pytest.raises(ccxt.BadRequest, match="NOTIONAL") as notional:  # -1013 maps to BadRequest
        await ex.create_order("BTC/USDT", "limit", "buy", 0.00001, 50000)
    assert not isinstance(notional.value, ccxt.InvalidOrder)
    with pytest.raises(ccxt.InsufficientFunds):
        await ex.create_order("BTC/USDT", "market", "buy", 1)
    with pytest.raises(ccxt.OrderImmediatelyFillable):  # post-only that would take
        await ex.create_order("BTC/USDT", "limit", "buy", 0.001, 61000, params={"postOnly": True})
    with pytest.raises(ccxt.InvalidOrder, match="triggerPrice parameter is not allowed"):  # by ccxt itself
        await ex.create_order("BTC/USDT", "limit", "buy", 0.001, 50000, params={"triggerPrice": 55000})
    assert emu.orders("binance", KEY) == []


# ---------------------------------------------------------------------------- OHLCV
async def test_fetch_ohlcv_pagination_over_real_candles(ex, emu, shared_data):
    n = emu.load_candles("binance", "ETH/BTC", shared_data / TRIANGLE / "binance_ETH-BTC_1m.csv.gz", limit=2500)
    assert n == 2500
    rows = emu.engine("binance").candles["ETH/BTC"]
    t0 = rows[0].open_ms
    await ex.load_markets()
    page1 = await ex.fetch_ohlcv("ETH/BTC", "1m", since=t0, limit=1000)
    page2 = await ex.fetch_ohlcv("ETH/BTC", "1m", since=page1[-1][0] + 1, limit=1000)
    assert len(page1) == len(page2) == 1000 and page2[0][0] == rows[1000].open_ms
    assert page1[0] == [t0, float(rows[0].open), float(rows[0].high), float(rows[0].low), float(rows[0].close),
                        float(rows[0].volume)]
    allrows = await ex.fetch_ohlcv("ETH/BTC", "1m", since=t0, limit=2500,
                                   params={"paginate": True, "until": rows[-1].open_ms + 1})
    assert [r[0] for r in allrows] == [c.open_ms for c in rows]
    assert all("limit=1000" in r.query for r in emu.requests_to("/api/v3/klines")[2:])
    latest = await ex.fetch_ohlcv("ETH/BTC", "1m")  # no since: the most recent 500
    assert len(latest) == 500 and latest[-1][0] == rows[-1].open_ms
    five = await ex.fetch_ohlcv("ETH/BTC", "5m", since=t0, limit=3)
    agg = emu.engine("binance").aggregated_candles("ETH/BTC", 300_000)
    assert [r[0] for r in five] == [c.open_ms for c in agg if c.open_ms >= t0][:3]


async def test_candles_drive_the_mark_and_resting_orders(ex, emu, shared_data):
    emu.load_candles("binance", "ETH/BTC", shared_data / TRIANGLE / "binance_ETH-BTC_1m.csv.gz", limit=300)
    rows = emu.engine("binance").candles["ETH/BTC"]
    await ex.load_markets()
    # above the first open (the sell rests), on the 0.00001 tick so ccxt sends it unchanged
    target = max(c.high for c in rows[1:200]).quantize(Decimal("0.00001"), rounding="ROUND_DOWN")
    assert target > rows[0].open
    o = await ex.create_order("ETH/BTC", "limit", "sell", 0.1, float(target))
    assert o["status"] == "open"
    emu.step("binance", 200)
    assert emu.engine("binance").instruments["ETH/BTC"].mark == rows[199].close
    got = await ex.fetch_order(o["id"], "ETH/BTC")
    assert got["status"] == "closed" and got["average"] == float(target)


# ---------------------------------------------------------------------------- auth / clock
async def test_bad_signature_is_refused_with_binance_error(emu):
    bad = binance_client(emu, KEY, "not-the-secret")
    try:
        await bad.load_markets()  # public: fine
        with pytest.raises(ccxt.AuthenticationError, match="Signature for this request is not valid"):
            await bad.create_order("BTC/USDT", "market", "buy", 0.001)
    finally:
        await bad.close()
    rec = emu.requests_to("/api/v3/order")[-1]
    assert (rec.status, rec.error, rec.processed) == (400, -1022, True)
    assert emu.orders("binance") == []
    unknown = binance_client(emu, "nobody", SECRET)
    try:
        with pytest.raises(ccxt.AuthenticationError, match="-2015"):
            await unknown.fetch_balance()
    finally:
        await unknown.close()


async def test_clock_skew_outside_recv_window_then_time_sync(ex, emu):
    await ex.load_markets()
    emu.set_clock_skew(-5_000)  # venue 5 s behind: the client's timestamp is from the future
    with pytest.raises(ccxt.InvalidNonce, match="ahead of the server"):
        await ex.fetch_balance()
    emu.set_clock_skew(30_000)  # venue 30 s ahead: older than ccxt's 10 s recvWindow
    with pytest.raises(ccxt.InvalidNonce, match="outside of the recvWindow"):
        await ex.fetch_balance()
    await ex.load_time_difference()  # GET /api/v3/time
    assert abs(ex.options["timeDifference"] + 30_000) < 1_000
    assert (await ex.fetch_balance())["total"]["USDT"] == 10000


# ---------------------------------------------------------------------------- rate limits
async def test_paced_client_never_exceeds_the_weight_limit(emu):
    emu.configure_binance_limits(weight_limit=150, window_s=1.0)
    client = binance_client(emu, KEY, SECRET, headroom=1.25)  # ccxt paced at 120 weight/s
    try:
        await client.load_markets()  # 20
        for _ in range(3):
            await client.fetch_balance()  # 20 each
        for _ in range(10):
            await client.fetch_ticker("BTC/USDT")  # 2 each
        await client.fetch_open_orders("BTC/USDT")  # 6
        assert int(client.last_response_headers["X-MBX-USED-WEIGHT-1M"]) > 0
    finally:
        await client.close()
    assert all(r.status == 200 for r in emu.requests)
    assert 0 < emu.max_used_weight() <= 150


async def test_429_then_418_ban_map_to_ddos_protection(emu):
    emu.configure_binance_limits(weight_limit=5, window_s=60.0, ban_after=2, ban_s=30)
    client = binance_client(emu, KEY, SECRET, enableRateLimit=False)
    try:
        for _ in range(5):
            await client.fetch_time()
        with pytest.raises(ccxt.DDoSProtection) as first:
            await client.fetch_time()
        assert type(first.value) is ccxt.DDoSProtection  # binance.handle_errors, not RateLimitExceeded
        assert "429" in str(first.value) and "-1003" in str(first.value)
        assert int(client.last_response_headers["Retry-After"]) >= 1
        with pytest.raises(ccxt.DDoSProtection, match="418") as banned:
            await client.fetch_time()
        assert "IP banned until" in str(banned.value)
        assert client.last_response_headers["Retry-After"] == "30"
        with pytest.raises(ccxt.DDoSProtection, match="418"):  # still banned
            await client.fetch_time()
    finally:
        await client.close()
    assert [r.status for r in emu.requests] == [200] * 5 + [429, 418, 418]
    assert emu.max_used_weight() == 5


async def test_injected_429_and_5xx(ex, emu):
    await ex.load_markets()
    emu.rate_limit_next("/api/v3/account", status=429)
    with pytest.raises(ccxt.DDoSProtection, match="429"):
        await ex.fetch_balance()
    emu.fail_next("/api/v3/account", status=503)
    with pytest.raises(ccxt.ExchangeNotAvailable, match="503"):
        await ex.fetch_balance()
    emu.fail_next("/api/v3/account", status=504)
    with pytest.raises(ccxt.RequestTimeout, match="504"):  # ccxt maps a 504 to RequestTimeout
        await ex.fetch_balance()
    assert (await ex.fetch_balance())["total"]["USDT"] == 10000


# ---------------------------------------------------------------------------- lost responses
async def test_timeout_after_accept_leaves_exactly_one_order(emu):
    client = binance_client(emu, KEY, SECRET, timeout=300)
    try:
        await client.load_markets()
        emu.delay_next("/api/v3/order", 1.0, when="after", method="POST")
        with pytest.raises(ccxt.RequestTimeout):
            await client.create_order("BTC/USDT", "limit", "buy", 0.01, 55000, params={"clientOrderId": "lost-1"})
        placed = [o for o in emu.orders("binance", KEY) if o.client_order_id == "lost-1"]
        assert len(placed) == 1 and placed[0].is_open
        found = await client.fetch_order(None, "BTC/USDT", params={"clientOrderId": "lost-1"})
        assert found["id"] == str(placed[0].seq) and found["status"] == "open"
    finally:
        await client.close()


async def test_timeout_before_processing_places_nothing(emu):
    client = binance_client(emu, KEY, SECRET, timeout=200)
    try:
        await client.load_markets()
        emu.delay_next("/api/v3/order", 0.5, when="before", method="POST")
        with pytest.raises(ccxt.RequestTimeout):
            await client.create_order("BTC/USDT", "limit", "buy", 0.01, 55000, params={"clientOrderId": "never-1"})
        await asyncio.sleep(0.6)
    finally:
        await client.close()
    assert emu.orders("binance") == []
    rec = emu.requests_to("/api/v3/order", method="POST")[-1]
    assert rec.status == 499 and rec.processed is False


async def test_connection_dropped_after_accept(ex, emu):
    await ex.load_markets()
    emu.disconnect_next("/api/v3/order", when="after", method="POST")
    with pytest.raises(ccxt.NetworkError):
        await ex.create_order("BTC/USDT", "market", "buy", 0.001, params={"clientOrderId": "drop-1"})
    assert [o.client_order_id for o in emu.orders("binance", KEY)] == ["drop-1"]


# ---------------------------------------------------------------------------- my trades faults
async def test_my_trades_duplicate_reorder_overlap(ex, emu):
    await ex.load_markets()
    for _ in range(3):
        await ex.create_order("ETH/USDT", "market", "buy", 0.1)
    fills = emu.engine("binance").fills
    ids = [str(f.id) for f in fills]
    emu.mangle_trades_next("binance", "duplicate")
    dup = await ex.fetch_my_trades("ETH/USDT")
    assert sorted(t["id"] for t in dup) == sorted(ids * 2)  # ccxt does not de-duplicate
    emu.mangle_trades_next("binance", "reorder")
    raw = await ex.private_get_mytrades({"symbol": "ETHUSDT"})
    assert [str(t["id"]) for t in raw] == ids[::-1]
    since = fills[2].time_ms
    assert {t["id"] for t in await ex.fetch_my_trades("ETH/USDT", since=since)} <= set(ids)
    fills[0].time_ms -= 10_000
    fills[1].time_ms -= 10_000
    normal_since = fills[2].time_ms
    query = {"symbol": "ETHUSDT", "startTime": normal_since}
    assert [str(t["id"]) for t in await ex.private_get_mytrades(query)] == ids[2:]
    emu.mangle_trades_next("binance", "overlap", n=2)
    overlapped = await ex.private_get_mytrades(query)
    assert [str(t["id"]) for t in overlapped] == ids  # older fills came back despite startTime
    # ccxt filters by ``since`` on its side, so the overlap is invisible through fetch_my_trades
    assert [t["id"] for t in await ex.fetch_my_trades("ETH/USDT", since=normal_since)] == ids[2:]


# ---------------------------------------------------------------------------- captured shapes
async def test_payload_shapes_match_captured_binance_responses(ex, emu, shared_data):
    await ex.load_markets()
    bal = await ex.fetch_balance()
    assert shape_mismatches(load_fixture(shared_data, "binance", "fetchBalance", "Spot balance")["httpResponse"],
                            bal["info"]) == []

    created = await ex.create_order("BTC/USDT", "limit", "buy", 0.002, 50000,
                                    params={"selfTradePrevention": "expire_maker", "icebergAmount": 0.001})
    fx = load_fixture(shared_data, "binance", "createOrder")
    assert shape_mismatches(fx["httpResponse"], created["info"]) == []
    assert created["info"]["selfTradePreventionMode"] == "EXPIRE_MAKER" and created["info"]["icebergQty"] == "0.00100000"

    mkt = await ex.create_order("BTC/USDT", "market", "sell", 0.001)
    fetched = await ex.fetch_order(mkt["id"], "BTC/USDT")
    fx = load_fixture(shared_data, "binance", "fetchOrder")  # a closed MARKET order
    assert shape_mismatches(fx["httpResponse"], fetched["info"]) == []

    opened = await ex.fetch_open_orders("BTC/USDT")
    fx = load_fixture(shared_data, "binance", "fetchOpenOrders", "Fetch spot open orders")
    assert shape_mismatches(fx["httpResponse"], [o["info"] for o in opened]) == []

    orders = await ex.fetch_orders("BTC/USDT")
    fx = load_fixture(shared_data, "binance", "fetchOrders", "fetch spot orders")
    assert shape_mismatches(fx["httpResponse"], [o["info"] for o in orders]) == []

    trades = await ex.fetch_my_trades("BTC/USDT")
    fx = load_fixture(shared_data, "binance", "fetchMyTrades", "Spot private trade")
    assert shape_mismatches(fx["httpResponse"], [t["info"] for t in trades]) == []

    ticker = await ex.fetch_ticker("BTC/USDT")
    fx = load_fixture(shared_data, "binance", "fetchTicker")
    assert shape_mismatches(fx["httpResponse"], ticker["info"]) == []

    book = await ex.public_get_depth({"symbol": "BTCUSDT", "limit": 2})
    fx = load_fixture(shared_data, "binance", "fetchOrderBook", "spot orderbook")
    assert shape_mismatches(fx["httpResponse"], book) == []

    emu.load_candles("binance", "BTC/USDT", [[1706630400000, 1, 2, 0.5, 1.5, 10]], timeframe="1h")
    klines = await ex.public_get_klines({"symbol": "BTCUSDT", "interval": "1h"})
    fx = load_fixture(shared_data, "binance", "fetchOHLCV", "Spot OHLCV with since and limit")
    assert len(klines[0]) == len(fx["httpResponse"][0]) == 12
    assert shape_mismatches(fx["httpResponse"], klines) == []


# ---------------------------------------------------------------------------- thread wrapper
async def test_emulator_thread_serves_from_another_loop():
    th = EmulatorThread(("binance",), accounts={KEY: (SECRET, BALANCES)}, binance_weight_limit=1_000_000).start()
    client = binance_client(th, KEY, SECRET)
    try:
        assert th.url.startswith("http://127.0.0.1:")
        await client.load_markets()
        th.set_mark("binance", "ETH/USDT", 2000)  # control API from this thread
        o = await client.create_order("ETH/USDT", "market", "buy", 0.5)
        assert o["average"] == 2000
        assert th.balances("binance", KEY)["ETH"][0] == D("5.4995")
    finally:
        await client.close()
        th.stop()
