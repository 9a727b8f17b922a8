"""Unmodified ccxt (async) against the emulator's Bitfinex API v2 spot dialect."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import aiohttp
import ccxt
import pytest

from appliance.venues.ccxt.client_ids import Dedup, client_id_spec
from tests.emulator import ExchangeEmulator, exchange_client
from tests.emulator.bitfinex import RATE_LIMIT_BODY

KEY = "lyra-bitfinex-key"
SECRET = "lyra-bitfinex-secret-not-real"
BALANCES = {"USDT": "10000", "BTC": "1", "ETH": "5"}
V = "bitfinex"


def D(x: object) -> Decimal:
    return Decimal(str(x))


@pytest.fixture
async def emu():
    async with ExchangeEmulator((V,), accounts={KEY: (SECRET, BALANCES)},
                                dialect_options={V: {"rate_limit_per_min": 1_000_000}}) as e:
        yield e


def client(emu, key=KEY, secret=SECRET, **kw):
    kw.setdefault("enableRateLimit", False)  # ccxt's 675 ms per private call would make tests slow
    return exchange_client(emu, V, key, secret, **kw)


@pytest.fixture
async def ex(emu):
    c = client(emu)
    yield c
    await c.close()


async def raw_post(emu, ex, path: str, body: dict) -> tuple[int, object]:
    """A correctly signed private call outside ccxt (to see the exchange's own answer)."""
    signed = ex.sign(path.removeprefix("v2/"), ["private"], "POST", body)
    async with aiohttp.ClientSession() as s:
        async with s.post(signed["url"], data=signed["body"], headers=signed["headers"]) as r:
            return r.status, await r.json(content_type=None)


# ---------------------------------------------------------------------------- markets / balance
async def test_load_markets_ids_precision_and_limits(ex, emu):
    base = emu.url_of(V)
    assert all(u.startswith(base) for u in ex.urls["api"].values())
    markets = await ex.load_markets()
    assert set(markets) == {"BTC/USDT", "ETH/USDT", "ETH/BTC"}
    btc = markets["BTC/USDT"]
    assert (btc["id"], btc["baseId"], btc["quoteId"]) == ("tBTCUST", "BTC", "UST")  # UST -> USDT by ccxt
    assert btc["precision"] == {"amount": 8, "price": 5}  # decimals / significant digits
    assert btc["limits"]["amount"] == {"min": 0.00004, "max": 2000.0}
    assert markets["ETH/BTC"]["limits"]["amount"]["min"] == 0.0008
    assert "USDT" in ex.currencies and ex.currencies["USDT"]["id"] == "UST"
    conf = [r for r in emu.requests if r.path.startswith("/v2/conf/")]
    assert len(conf) == 2 and all(r.status == 200 for r in conf)  # markets + currencies


async def test_wallets_and_order_lifecycle_balances(ex, emu):
    await ex.load_markets()
    bal = await ex.fetch_balance()
    assert bal["USDT"] == {"free": 10000, "used": 0, "total": 10000}
    assert bal["info"][0][0] == "exchange"
    order = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 50000, params={"clientOrderId": "4242"})
    assert order["clientOrderId"] == "4242" and order["status"] == "open" and order["info"][13] == "ACTIVE"
    assert emu.orders(V, KEY)[0].client_order_id == "4242"
    bal = await ex.fetch_balance()
    assert (bal["USDT"]["free"], bal["USDT"]["used"]) == (9500, 500)  # 0.01 * 50000 locked
    placed = emu.orders(V, KEY)[0]
    emu.fill_order(V, placed, "0.004")
    partial = (await ex.fetch_open_orders("BTC/USDT"))[0]
    assert partial["status"] == "open" and partial["remaining"] == 0.006
    assert partial["info"][13] == "PARTIALLY FILLED @ 50000(0.004)"
    emu.fill_order(V, placed)
    assert await ex.fetch_open_orders("BTC/USDT") == []
    closed = await ex.fetch_closed_orders("BTC/USDT")
    assert [(o["id"], o["status"], o["average"]) for o in closed] == [(order["id"], "closed", 50000)]
    fee_btc = D("0.01") * D("0.001")  # fee in the currency received
    got = emu.balances(V, KEY)
    assert got["BTC"] == (D("1") + D("0.01") - fee_btc, 0)
    assert got["USDT"] == (D("9500"), 0)
    trades = await ex.fetch_my_trades("BTC/USDT")
    assert sorted(t["amount"] for t in trades) == [0.004, 0.006]
    assert {t["order"] for t in trades} == {order["id"]} and {t["takerOrMaker"] for t in trades} == {"maker"}
    assert sum(D(t["fee"]["cost"]) for t in trades) == fee_btc and trades[0]["fee"]["currency"] == "BTC"
    per_order = await ex.fetch_order_trades(order["id"], "BTC/USDT")
    assert {t["id"] for t in per_order} == {t["id"] for t in trades}


async def test_market_sell_pays_fee_in_quote(ex, emu):
    await ex.load_markets()
    o = await ex.create_order("ETH/USDT", "market", "sell", 0.5)
    assert o["info"][8] == "EXCHANGE MARKET" and o["status"] == "closed" and o["side"] == "sell"
    assert o["info"][7] == -0.5  # Bitfinex signs amounts: negative is a sell
    got = emu.balances(V, KEY)
    assert got["ETH"] == (D("4.5"), 0)
    assert got["USDT"] == (D("10000") + D("1500") - D("1.5"), 0)
    trade, = await ex.fetch_my_trades("ETH/USDT")
    assert trade["takerOrMaker"] == "taker" and trade["fee"] == {"cost": 1.5, "currency": "USDT"}


async def test_time_in_force_and_post_only_statuses(ex, emu):
    await ex.load_markets()
    ioc = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 50000, params={"timeInForce": "IOC"})
    post = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 61000, params={"postOnly": True})
    assert emu.requests_to("/v2/auth/w/order/submit")[-1].error is None
    closed = {o["id"]: o for o in await ex.fetch_closed_orders("BTC/USDT")}
    # ccxt looks up only the first word of the status: these two come back verbatim
    assert closed[ioc["id"]]["status"] == "IOC CANCELED" and closed[ioc["id"]]["timeInForce"] == "IOC"
    assert closed[post["id"]]["status"] == "POSTONLY CANCELED" and closed[post["id"]]["postOnly"] is True
    assert emu.balances(V, KEY)["USDT"] == (D("10000"), 0)


# ---------------------------------------------------------------------------- look-ups / cancel
async def test_fetch_order_sees_active_orders_only(ex, emu):
    await ex.load_markets()
    o = await ex.create_order("ETH/USDT", "limit", "buy", 0.1, 2500, params={"clientOrderId": 77})
    assert (await ex.fetch_order(o["id"], "ETH/USDT"))["status"] == "open"
    canceled = await ex.cancel_order(o["id"])
    assert canceled["id"] == o["id"] and canceled["status"] == "open"  # snapshot taken as it was queued
    gone = await ex.fetch_order(o["id"], "ETH/USDT")
    assert gone["id"] is None and gone["status"] is None  # auth/r/orders lists ACTIVE orders only
    assert not client_id_spec(V).fetch_by_venue_id  # so Lyra looks in orders/hist instead
    hist, = await ex.fetch_closed_orders("ETH/USDT", since=o["timestamp"] - 1000)
    assert (hist["id"], hist["status"], hist["clientOrderId"]) == (o["id"], "canceled", "77")
    with pytest.raises(ccxt.OrderNotFound, match="Order not found"):
        await ex.cancel_order(o["id"])
    with pytest.raises(ccxt.OrderNotFound, match="Order not found"):
        await ex.cancel_order("999")


async def test_cancel_by_cid_needs_cid_date_and_duplicates_are_accepted(ex, emu):
    await ex.load_markets()
    assert client_id_spec(V).dedup is Dedup.NONE
    first = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 40000, params={"clientOrderId": "555"})
    second = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 41000, params={"clientOrderId": "555"})
    assert first["id"] != second["id"] and len(emu.orders(V, KEY)) == 2  # not refused
    with pytest.raises(ccxt.InvalidOrder, match="cid_date"):
        await ex.cancel_order(None, params={"clientOrderId": "555"})
    day = first["datetime"][:10]
    await ex.cancel_order(None, params={"clientOrderId": "555", "cidDate": day})  # the newest
    assert [o["id"] for o in await ex.fetch_open_orders()] == [first["id"]]
    with pytest.raises(ccxt.OrderNotFound):
        await ex.cancel_order(None, params={"clientOrderId": "555", "cidDate": "2001-01-01"})
    listed = await ex.fetch_open_orders(params={"cid": 555, "cid_date": day})
    assert [o["id"] for o in listed] == [first["id"]]


# ---------------------------------------------------------------------------- order errors
@pytest.mark.parametrize("body, status, answer, exc", [
    ({"symbol": "tBTCUST", "type": "EXCHANGE LIMIT", "amount": "1", "price": "60000"}, 500,
     ["error", 10001, "Invalid order: not enough exchange balance for 1 BTCUST at 60000"], ccxt.InsufficientFunds),
    ({"symbol": "tBTCUST", "type": "EXCHANGE LIMIT", "amount": "0.00001", "price": "60000"}, 500,
     ["error", 10001, "Invalid order: minimum size for BTC/UST is 0.00004"], ccxt.PermissionDenied),
    ({"symbol": "tBTCUST", "type": "EXCHANGE LIMIT", "amount": "0.01", "price": "60000.5"}, 500,
     ["error", 10020, "price: invalid"], ccxt.BadRequest),
    ({"symbol": "tBTCUST", "type": "EXCHANGE LIMIT", "amount": "0.000000001", "price": "60000"}, 500,
     ["error", 10020, "amount: invalid"], ccxt.BadRequest),
    ({"symbol": "tXYZUST", "type": "EXCHANGE LIMIT", "amount": "1", "price": "1"}, 500,
     ["error", 10020, "symbol: invalid"], ccxt.BadSymbol),
    ({"symbol": "tBTCUST", "type": "LIMIT", "amount": "0.01", "price": "60000"}, 500,
     ["error", 10020, "type: invalid"], ccxt.BadRequest),
])
async def test_submit_errors_and_their_ccxt_classes(ex, emu, body, status, answer, exc):
    await ex.load_markets()
    assert await raw_post(emu, ex, "v2/auth/w/order/submit", body) == (status, answer)
    with pytest.raises(exc) as err:
        await ex.private_post_auth_w_order_submit(body)
    # exact classes: ccxt maps code 10001 to PermissionDenied (its "api_key: permission" entry)
    assert type(err.value) is exc
    assert emu.orders(V, KEY) == []


async def test_unified_create_order_errors(ex, emu):
    await ex.load_markets()
    with pytest.raises(ccxt.InsufficientFunds, match="not enough exchange balance"):
        await ex.create_order("BTC/USDT", "market", "buy", 1)
    with pytest.raises(ccxt.PermissionDenied, match="minimum size"):
        await ex.create_order("ETH/BTC", "limit", "sell", 0.0001, 0.05)
    assert emu.orders(V, KEY) == []


# ---------------------------------------------------------------------------- auth / nonce
async def test_bad_signature_and_unknown_key(emu):
    wrong = client(emu, secret="not-the-secret")
    unknown = client(emu, key="nobody")
    try:
        await wrong.load_markets()
        with pytest.raises(ccxt.AuthenticationError, match="apikey: digest invalid"):
            await wrong.fetch_balance()
        with pytest.raises(ccxt.AuthenticationError, match="apikey: invalid"):
            await unknown.fetch_balance()
    finally:
        await wrong.close()
        await unknown.close()
    assert [r.error for r in emu.requests if r.path == "/v2/auth/r/wallets"] == [10100, 10100]


async def test_replayed_or_smaller_nonce_is_refused(ex, emu):
    await ex.fetch_balance()
    async with aiohttp.ClientSession() as s:
        async with s.post(emu.url_of(V) + "/v2/auth/r/wallets", data=ex.last_request_body,
                          headers=ex.last_request_headers) as r:
            assert (r.status, await r.json()) == (500, ["error", 10114, "nonce: small"])
    lagging = client(emu)
    lagging.nonce = lambda: ex.milliseconds() - 60_000  # another process whose nonces run behind
    try:
        with pytest.raises(ccxt.InvalidNonce, match="nonce: small"):
            await lagging.fetch_balance()
    finally:
        await lagging.close()
    assert (await ex.fetch_balance())["total"]["BTC"] == 1


# ---------------------------------------------------------------------------- rate limits / faults
async def test_per_endpoint_rate_limit_blocks_that_endpoint(ex, emu):
    await ex.load_markets()
    emu.dialect(V).configure(rate_limit_per_min=3, window_s=0.3, ban_s=60)
    for _ in range(3):
        await ex.fetch_balance()
    with pytest.raises(ccxt.ExchangeError) as err:
        await ex.fetch_balance()
    # Bitfinex answers {"error": "ERR_RATE_LIMIT"}: a dict, which ccxt's handler turns into a
    # plain ExchangeError before it looks at the 429 status
    assert type(err.value) is ccxt.ExchangeError and "ERR_RATE_LIMIT" in str(err.value)
    last = emu.requests_to("/v2/auth/r/wallets")[-1]
    assert (last.status, last.processed) == (429, False)
    assert await ex.fetch_open_orders() == []  # another endpoint has its own count
    await asyncio.sleep(0.35)  # a new counting window ...
    with pytest.raises(ccxt.ExchangeError, match="ERR_RATE_LIMIT"):  # ... but blocked for ban_s
        await ex.fetch_balance()
    emu.dialect(V).lift_block()
    assert (await ex.fetch_balance())["total"]["USDT"] == 10000


async def test_injected_faults(ex, emu):
    await ex.load_markets()
    emu.rate_limit_next("/v2/auth/w/order/submit")
    async with aiohttp.ClientSession() as s:
        async with s.get(emu.url_of(V) + "/v2/platform/status") as r:
            assert await r.json() == [1]
    with pytest.raises(ccxt.ExchangeError, match="ERR_RATE_LIMIT"):
        await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 50000)
    assert json.loads(ex.last_http_response) == RATE_LIMIT_BODY
    emu.fail_next("/v2/auth/r/wallets", status=500)
    with pytest.raises(ccxt.ExchangeError, match=r"unknown error \(#10000\)"):
        await ex.fetch_balance()
    emu.fail_next("/v2/auth/r/wallets", status=503)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await ex.fetch_balance()
    emu.fail_next("/v2/auth/r/wallets", status=504)
    with pytest.raises(ccxt.RequestTimeout):
        await ex.fetch_balance()
    assert emu.orders(V, KEY) == []


async def test_paced_client_stays_under_the_limit(emu):
    emu.dialect(V).configure(rate_limit_per_min=120, window_s=1.0)  # 2 per second per endpoint
    paced = exchange_client(emu, V, KEY, SECRET)  # rateLimit derived from the configured limit
    try:
        for _ in range(6):
            await paced.fetch_balance()
    finally:
        await paced.close()
    assert all(r.status == 200 for r in emu.requests)


# ---------------------------------------------------------------------------- lost responses
async def test_timeout_after_accept_leaves_one_order_found_by_cid(emu):
    c = client(emu, timeout=300)
    try:
        await c.load_markets()
        emu.delay_next("/v2/auth/w/order/submit", 1.0, when="after")
        with pytest.raises(ccxt.RequestTimeout):
            await c.create_order("BTC/USDT", "limit", "buy", 0.01, 55000, params={"clientOrderId": "9001"})
        assert [o.client_order_id for o in emu.orders(V, KEY)] == ["9001"]
        found = [o for o in await c.fetch_open_orders("BTC/USDT") if o["clientOrderId"] == "9001"]
        assert len(found) == 1
    finally:
        await c.close()


# ---------------------------------------------------------------------------- market data
async def test_ohlcv_ticker_and_book(ex, emu):
    rows = [[1_700_000_100_000 + i * 60_000, 100 + i, 110 + i, 90 + i, 105 + i, 2 + i] for i in range(30)]
    emu.load_candles(V, "ETH/USDT", rows)
    await ex.load_markets()
    newest = await ex.fetch_ohlcv("ETH/USDT", "1m", limit=5)
    assert [r[0] for r in newest] == [row[0] for row in rows[-5:]]  # ccxt sorts ascending
    assert newest[-1] == [rows[-1][0], 129, 139, 119, 134, 31]  # O H L C V from Bitfinex's O C H L
    first = await ex.fetch_ohlcv("ETH/USDT", "1m", since=rows[3][0], limit=4)
    assert [r[0] for r in first] == [row[0] for row in rows[3:7]]
    five = await ex.fetch_ohlcv("ETH/USDT", "5m", since=rows[0][0], limit=2)
    assert five[0][1:6] == [100, 114, 90, 109, 2 + 3 + 4 + 5 + 6]
    raw = await ex.public_get_candles_trade_timeframe_symbol_hist({"timeframe": "1m", "symbol": "tETHUST"})
    assert raw[0][0] > raw[-1][0] and len(raw) == 30  # newest first, default limit 100
    emu.set_mark(V, "ETH/USDT", 3000)
    t = await ex.fetch_ticker("ETH/USDT")
    assert (t["bid"], t["ask"], t["last"]) == (2999.9, 3000.1, 3000)  # 5 significant digits
    book = await ex.fetch_order_book("BTC/USDT", 25)
    assert book["bids"][0] == [59999, 1] and book["asks"][0] == [60001, 1] and len(book["asks"]) == 25
    with pytest.raises(ccxt.BadRequest, match="len: invalid"):
        await ex.fetch_order_book("BTC/USDT", 10)
    tickers = await ex.fetch_tickers(["BTC/USDT", "ETH/BTC"])
    assert set(tickers) == {"BTC/USDT", "ETH/BTC"} and tickers["ETH/BTC"]["last"] == 0.05


async def test_trades_history_paging_and_faults(ex, emu):
    await ex.load_markets()
    for _ in range(3):
        await ex.create_order("ETH/USDT", "market", "buy", 0.1)
    ids = [f.id for f in emu.engine(V).fills]
    raw = await ex.private_post_auth_r_trades_symbol_hist({"symbol": "tETHUST"})
    assert [t[0] for t in raw] == ids[::-1]  # newest first
    assert [t[0] for t in await ex.private_post_auth_r_trades_hist({"limit": 2})] == ids[:0:-1]
    emu.mangle_trades_next(V, "reorder")
    assert [t[0] for t in await ex.private_post_auth_r_trades_symbol_hist({"symbol": "tETHUST"})] == ids
    emu.mangle_trades_next(V, "duplicate")
    assert len(await ex.fetch_my_trades("ETH/USDT")) == 6
    fills = emu.engine(V).fills
    start = fills[2].time_ms
    fills[0].time_ms -= 10_000
    fills[1].time_ms -= 10_000
    assert [t["id"] for t in await ex.fetch_my_trades("ETH/USDT", since=start)] == [str(ids[2])]
    emu.mangle_trades_next(V, "overlap")  # (ccxt filters by since itself: look at the raw answer)
    raw = await ex.private_post_auth_r_trades_symbol_hist({"symbol": "tETHUST", "start": start})
    assert sorted(t[0] for t in raw) == ids
