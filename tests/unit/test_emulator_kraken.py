"""Unmodified ccxt (async) against the emulator's Kraken spot dialect."""

from __future__ import annotations

import asyncio
import base64
from decimal import Decimal

import aiohttp
import ccxt
import pytest

from tests.emulator import ExchangeEmulator, kraken_client
from tests.emulator.kraken import DUPLICATE_CL_ORD_ID
from tests.emulator.shapes import load_fixture, shape_mismatches

KEY = "lyra-kraken-key"
SECRET = base64.b64encode(bytes(range(64))).decode()  # Kraken secrets are base64
BALANCES = {"USDT": "10000", "BTC": "1", "ETH": "5", "ADA": "1000"}
TRIANGLE = "arbitrage/triangular_binance_2021-04"


@pytest.fixture
async def emu():
    async with ExchangeEmulator(("kraken",), accounts={KEY: (SECRET, BALANCES)},
                                kraken_counter_max=1_000_000, kraken_decay_per_s=100_000) as e:
        yield e


@pytest.fixture
async def ex(emu):
    client = kraken_client(emu, KEY, SECRET)
    yield client
    await client.close()


def D(x: object) -> Decimal:
    return Decimal(str(x))


# ---------------------------------------------------------------------------- markets / balance
async def test_load_markets_gives_configured_precision_and_limits(ex, emu):
    assert all(u.startswith(emu.url_of("kraken") + "/") or u == emu.url_of("kraken") for u in ex.urls["api"].values())
    markets = await ex.load_markets()
    assert {"ADA/BTC", "ETH/BTC", "BTC/USDT", "ETH/USDT"} <= set(markets)
    btc = markets["BTC/USDT"]
    assert btc["id"] == "XBTUSDT" and btc["base"] == "BTC"  # XXBT -> BTC through Assets' altname
    assert btc["precision"] == {"amount": 1e-8, "price": 0.1}
    assert btc["limits"]["amount"]["min"] == 0.00005 and btc["limits"]["cost"]["min"] == 0.5
    eth_btc = markets["ETH/BTC"]
    assert eth_btc["id"] == "XETHXXBT" and eth_btc["precision"]["price"] == 0.00001
    assert markets["ADA/BTC"]["limits"]["amount"]["min"] == 5
    assert markets["BTC/USDT"]["taker"] == 0.001


async def test_fetch_balance_uses_balance_ex(ex, emu):
    bal = await ex.fetch_balance()
    assert bal["total"]["BTC"] == 1 and bal["total"]["USDT"] == 10000 and bal["used"]["ETH"] == 0
    assert emu.requests_to("/0/private/BalanceEx")
    await ex.create_order("ETH/USDT", "limit", "sell", 1, 3500)
    bal = await ex.fetch_balance()
    assert bal["used"]["ETH"] == 1 and bal["free"]["ETH"] == 4


# ---------------------------------------------------------------------------- orders
async def test_market_order_with_client_order_id(ex, emu):
    await ex.load_markets()
    created = await ex.create_order("BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "lyra-k-1"})
    assert created["id"] and created["info"]["descr"]["order"] == "buy 0.01000000 XBTUSDT @ market"
    add = emu.requests_to("/0/private/AddOrder")[-1]
    assert add.processed and add.error is None
    got = await ex.fetch_order(created["id"])
    assert got["status"] == "closed" and got["clientOrderId"] == "lyra-k-1"
    assert got["filled"] == 0.01 and got["average"] == 60000
    assert got["fee"]["currency"] == "USDT" and float(got["fee"]["cost"]) == pytest.approx(0.6)
    bal = emu.balances("kraken", KEY)
    assert bal["USDT"][0] == D("10000") - D("600") - D("0.6")  # fee in quote (fciq)
    assert bal["BTC"][0] == D("1.01")


async def test_limit_order_lookup_by_id_userref_and_client_id_then_cancel(ex, emu):
    await ex.load_markets()
    by_ref = await ex.create_order("ETH/USDT", "limit", "buy", 0.5, 2500, params={"userref": 42})
    by_cid = await ex.create_order("ETH/USDT", "limit", "buy", 0.5, 2400, params={"clientOrderId": "cid-7"})
    assert (await ex.fetch_order(by_ref["id"]))["status"] == "open"
    assert (await ex.fetch_order(by_ref["id"], params={"userref": 42}))["id"] == by_ref["id"]
    assert [o["id"] for o in await ex.fetch_open_orders(params={"userref": 42})] == [by_ref["id"]]
    found = await ex.fetch_open_orders(params={"clientOrderId": "cid-7"})
    assert [o["id"] for o in found] == [by_cid["id"]] and found[0]["clientOrderId"] == "cid-7"
    assert len(await ex.fetch_open_orders("ETH/USDT")) == 2
    await ex.cancel_order(None, params={"clientOrderId": "cid-7"})
    await ex.cancel_order(by_ref["id"])
    assert await ex.fetch_open_orders() == []
    closed = await ex.fetch_closed_orders(params={"clientOrderId": "cid-7"})
    assert [(o["id"], o["status"]) for o in closed] == [(by_cid["id"], "canceled")]
    assert (await ex.fetch_balance())["used"]["USDT"] == 0
    with pytest.raises(ccxt.OrderNotFound, match="Unknown order"):  # ccxt turns EOrder:Unknown order into it
        await ex.cancel_order(by_ref["id"])
    with pytest.raises(ccxt.InvalidOrder, match="EOrder:Invalid order"):
        await ex.fetch_order("OAAAAA-BBBBB-CCCCCC")


async def test_resting_limit_fills_when_mark_crosses(ex, emu):
    await ex.load_markets()
    o = await ex.create_order("BTC/USDT", "limit", "sell", 0.02, 61000)
    emu.set_mark("kraken", "BTC/USDT", 61500)
    got = await ex.fetch_order(o["id"])
    assert got["status"] == "closed" and got["average"] == 61000
    trades = await ex.fetch_my_trades("BTC/USDT")
    assert len(trades) == 1 and trades[0]["order"] == o["id"] and trades[0]["takerOrMaker"] == "maker"
    assert trades[0]["fee"]["cost"] == pytest.approx(1.22)


async def test_duplicate_cl_ord_id_and_order_errors(ex, emu):
    await ex.load_markets()
    await ex.create_order("ETH/USDT", "limit", "buy", 0.1, 2500, params={"clientOrderId": "dup-k"})
    with pytest.raises(ccxt.InvalidOrder, match="cl_ord_id already in use"):
        await ex.create_order("ETH/USDT", "limit", "buy", 0.1, 2500, params={"clientOrderId": "dup-k"})
    assert emu.requests_to("/0/private/AddOrder")[-1].error == DUPLICATE_CL_ORD_ID
    assert len(emu.orders("kraken", KEY)) == 1
    with pytest.raises(ccxt.InsufficientFunds):
        await ex.create_order("BTC/USDT", "market", "buy", 1)
    with pytest.raises(ccxt.InvalidOrder, match="Order minimum not met"):
        await ex.create_order("ADA/USDT", "limit", "buy", 1, 0.5)
    with pytest.raises(ccxt.ExchangeError, match="Invalid arguments:ordertype") as err:  # no stop orders here
        await ex.create_order("BTC/USDT", "market", "sell", 0.01, params={"stopLossPrice": 50000})
    assert type(err.value) is ccxt.ExchangeError
    assert len(emu.orders("kraken", KEY)) == 1


# ---------------------------------------------------------------------------- OHLC
async def test_fetch_ohlcv_since_and_the_720_candle_window(ex, emu, shared_data):
    emu.load_candles("kraken", "BTC/USDT", shared_data / TRIANGLE / "binance_BTC-USDT_1m.csv.gz", limit=1500)
    rows = emu.engine("kraken").candles["BTC/USDT"]
    await ex.load_markets()
    recent = rows[-720].open_ms
    page1 = await ex.fetch_ohlcv("BTC/USDT", "1m", since=recent, limit=300)
    assert [r[0] for r in page1] == [c.open_ms for c in rows[-720:-420]]
    page2 = await ex.fetch_ohlcv("BTC/USDT", "1m", since=page1[-1][0] + 60_000, limit=300)
    assert page2[0][0] == page1[-1][0] + 60_000 and len(page2) == 300
    assert page1[0][4] == float(rows[-720].close)
    old = await ex.fetch_ohlcv("BTC/USDT", "1m", since=rows[0].open_ms)  # older data: not reachable
    assert len(old) == 720 and old[0][0] == recent
    raw = await ex.public_get_ohlc({"pair": "XBTUSDT", "interval": 5})
    assert len(raw["result"]["XBTUSDT"]) <= 720 and isinstance(raw["result"]["last"], int)


# ---------------------------------------------------------------------------- auth / nonce
async def test_bad_signature_and_unknown_key(emu):
    wrong = kraken_client(emu, KEY, base64.b64encode(b"x" * 64).decode())
    try:
        await wrong.load_markets()
        with pytest.raises(ccxt.ExchangeError, match="EAPI:Invalid signature") as err:
            await wrong.fetch_balance()
        # ccxt's kraken table has no entry for "EAPI:Invalid signature": plain ExchangeError
        assert type(err.value) is ccxt.ExchangeError
    finally:
        await wrong.close()
    unknown = kraken_client(emu, "nobody", SECRET)
    try:
        with pytest.raises(ccxt.AuthenticationError, match="EAPI:Invalid key"):
            await unknown.fetch_balance()
    finally:
        await unknown.close()


async def test_replayed_or_stale_nonce_is_refused(ex, emu):
    await ex.fetch_balance()
    # the very same signed request sent again
    async with aiohttp.ClientSession() as session:
        async with session.post(emu.url_of("kraken") + "/0/private/BalanceEx", data=ex.last_request_body,
                                headers=ex.last_request_headers) as resp:
            assert await resp.json() == {"error": ["EAPI:Invalid nonce"]}
    # a second client on the same key whose clock (nonce) is behind
    lagging = kraken_client(emu, KEY, SECRET, options={"timeDifference": 60_000})
    try:
        with pytest.raises(ccxt.InvalidNonce, match="EAPI:Invalid nonce"):
            await lagging.fetch_balance()
    finally:
        await lagging.close()
    assert (await ex.fetch_balance())["total"]["BTC"] == 1


async def test_clock_skew_shows_in_server_time(ex, emu):
    emu.set_clock_skew(-3_600_000, venue="kraken")
    t = await ex.fetch_time()
    assert abs(t - (ex.milliseconds() - 3_600_000)) < 2_000


# ---------------------------------------------------------------------------- rate limits
async def test_api_counter_limit_and_order_calls_exempt(emu):
    emu.configure_kraken_limits(counter_max=3, decay_per_s=0.001)
    client = kraken_client(emu, KEY, SECRET, enableRateLimit=False)
    try:
        for _ in range(3):
            await client.fetch_balance()
        with pytest.raises(ccxt.DDoSProtection, match="EAPI:Rate limit exceeded") as err:
            await client.fetch_balance()
        assert type(err.value) is ccxt.DDoSProtection  # exact-match table entry
        o = await client.create_order("ETH/USDT", "limit", "buy", 0.1, 2000)  # AddOrder: own limit
        assert o["id"]
    finally:
        await client.close()
    counters = [r.kraken_counter for r in emu.requests if r.path == "/0/private/BalanceEx"]
    assert max(counters) <= 3


async def test_paced_client_stays_under_the_counter(emu):
    emu.configure_kraken_limits(counter_max=4, decay_per_s=25)
    client = kraken_client(emu, KEY, SECRET)  # rateLimit derived: one private call per 40 ms
    try:
        await client.load_markets()
        for _ in range(8):
            await client.fetch_balance()
        await client.fetch_my_trades()  # TradesHistory counts 2
        await client.fetch_open_orders()
    finally:
        await client.close()
    assert all(r.error is None for r in emu.requests)
    assert max(r.kraken_counter or 0 for r in emu.requests) <= 4


async def test_injected_5xx_and_429(ex, emu):
    await ex.load_markets()
    emu.fail_next("/0/private/BalanceEx", status=520)
    with pytest.raises(ccxt.ExchangeNotAvailable, match="520"):
        await ex.fetch_balance()
    emu.rate_limit_next("/0/private/BalanceEx", status=429)
    with pytest.raises(ccxt.DDoSProtection):
        await ex.fetch_balance()
    assert (await ex.fetch_balance())["total"]["USDT"] == 10000


# ---------------------------------------------------------------------------- lost responses
async def test_timeout_after_accept_leaves_exactly_one_order(emu):
    client = kraken_client(emu, KEY, SECRET, timeout=300)
    try:
        await client.load_markets()
        emu.delay_next("/0/private/AddOrder", 1.0, when="after")
        with pytest.raises(ccxt.RequestTimeout):
            await client.create_order("BTC/USDT", "limit", "buy", 0.01, 55000, params={"clientOrderId": "lost-k"})
        assert len([o for o in emu.orders("kraken", KEY) if o.client_order_id == "lost-k"]) == 1
        found = await client.fetch_open_orders(params={"clientOrderId": "lost-k"})
        assert len(found) == 1 and found[0]["clientOrderId"] == "lost-k"
    finally:
        await client.close()


async def test_timeout_before_processing_places_nothing(emu):
    client = kraken_client(emu, KEY, SECRET, timeout=200)
    try:
        await client.load_markets()
        emu.delay_next("/0/private/AddOrder", 0.5, when="before")
        with pytest.raises(ccxt.RequestTimeout):
            await client.create_order("BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "never-k"})
        await asyncio.sleep(0.6)
    finally:
        await client.close()
    assert emu.orders("kraken") == []


# ---------------------------------------------------------------------------- trades faults
async def test_trades_history_reorder_and_overlap(ex, emu):
    await ex.load_markets()
    for _ in range(3):
        await ex.create_order("ETH/USDT", "market", "buy", 0.1)
    dialect = emu.dialect("kraken")
    fills = emu.engine("kraken").fills
    ids = [dialect.trade_id(f) for f in fills]
    raw = await ex.private_post_tradeshistory()
    assert list(raw["result"]["trades"]) == ids[::-1] and raw["result"]["count"] == 3  # newest first
    emu.mangle_trades_next("kraken", "reorder")
    raw = await ex.private_post_tradeshistory()
    assert list(raw["result"]["trades"]) == ids
    fills[0].time_ms -= 10_000
    fills[1].time_ms -= 10_000
    start = (fills[2].time_ms - 1) / 1000
    assert list((await ex.private_post_tradeshistory({"start": start}))["result"]["trades"]) == ids[2:]
    emu.mangle_trades_next("kraken", "overlap")
    overlapped = await ex.private_post_tradeshistory({"start": start})
    assert set(overlapped["result"]["trades"]) == set(ids)


# ---------------------------------------------------------------------------- captured shapes
async def test_payload_shapes_match_captured_kraken_responses(ex, emu, shared_data):
    await ex.load_markets()
    created = await ex.create_order("BTC/USDT", "market", "buy", 0.01)
    fx = load_fixture(shared_data, "kraken", "createOrder")
    assert shape_mismatches(fx["httpResponse"]["result"], created["info"]) == []

    limit = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 50000)
    got = await ex.fetch_order(limit["id"])
    fx = load_fixture(shared_data, "kraken", "fetchOrder", "fetch spot limit order")
    captured = next(iter(fx["httpResponse"]["result"].values()))
    assert shape_mismatches(captured, {k: v for k, v in got["info"].items() if k != "id"}) == []

    closed = await ex.fetch_order(created["id"])
    fx = load_fixture(shared_data, "kraken", "fetchOrder", "closed market order")
    captured = next(iter(fx["httpResponse"]["result"].values()))
    assert shape_mismatches(captured, {k: v for k, v in closed["info"].items() if k != "id"}) == []

    opened = await ex.fetch_open_orders()
    fx = load_fixture(shared_data, "kraken", "fetchOpenOrders", "open take-profit market order")
    captured = next(iter(fx["httpResponse"]["result"]["open"].values()))
    assert shape_mismatches(captured, {k: v for k, v in opened[0]["info"].items() if k != "id"}) == []

    ticker = await ex.public_get_ticker({"pair": "XBTUSDT"})
    fx = load_fixture(shared_data, "kraken", "fetchTicker")
    assert shape_mismatches(fx["httpResponse"], ticker) == []

    emu.load_candles("kraken", "BTC/USDT", [[1706626800000, 1, 2, 0.5, 1.5, 10, 3],
                                            [1706630400000, 1.5, 2, 1, 1.8, 12, 4]], timeframe="1h")
    ohlc = await ex.public_get_ohlc({"pair": "XBTUSDT", "interval": 60})
    fx = load_fixture(shared_data, "kraken", "fetchOHLCV")
    assert shape_mismatches({"error": [], "result": {"XBTUSDT": fx["httpResponse"]["result"]["XBTUSDT"]}},
                            {"error": [], "result": {"XBTUSDT": ohlc["result"]["XBTUSDT"]}}) == []
    assert len(ohlc["result"]["XBTUSDT"][0]) == 8 and ohlc["result"]["last"] == 1706626800
