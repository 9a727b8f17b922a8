"""Unmodified ccxt (async) against the emulator's Bitstamp API v2 spot dialect."""

from __future__ import annotations

import hashlib
import hmac
from decimal import Decimal

import aiohttp
import ccxt
import pytest

from appliance.venues.ccxt.client_ids import Dedup, LookupMethod, client_id_spec
from tests.emulator import ExchangeEmulator, exchange_client
from tests.emulator.bitstamp import RATE_LIMITED

KEY = "lyra-bitstamp-key"
SECRET = "lyra-bitstamp-secret-not-real"
BALANCES = {"USDT": "10000", "BTC": "1", "ETH": "5"}
V = "bitstamp"


def D(x: object) -> Decimal:
    return Decimal(str(x))


@pytest.fixture
async def emu():
    async with ExchangeEmulator((V,), accounts={KEY: (SECRET, BALANCES)}) as e:
        yield e


def client(emu, key=KEY, secret=SECRET, **kw):
    kw.setdefault("enableRateLimit", False)
    return exchange_client(emu, V, key, secret, **kw)


@pytest.fixture
async def ex(emu):
    c = client(emu)
    yield c
    await c.close()


async def send(ex, signed: dict, headers: dict | None = None) -> tuple[int, dict, dict]:
    async with aiohttp.ClientSession() as s:
        async with s.request("POST", signed["url"], data=signed["body"],
                             headers=headers or signed["headers"]) as r:
            return r.status, await r.json(content_type=None), dict(r.headers)


# ---------------------------------------------------------------------------- markets / balance
async def test_load_markets_precision_and_limits(ex, emu):
    assert all(u.startswith(emu.url_of(V)) for u in ex.urls["api"].values())
    markets = await ex.load_markets()
    assert set(markets) == {"BTC/USDT", "ETH/USDT", "ETH/BTC"}
    btc = markets["BTC/USDT"]
    assert btc["id"] == "btcusdt" and btc["precision"] == {"amount": 1e-8, "price": 1}
    assert btc["limits"]["cost"]["min"] == 10 and markets["ETH/BTC"]["limits"]["cost"]["min"] == 0.0002
    assert markets["ETH/USDT"]["precision"]["price"] == 0.1
    assert [r.path for r in emu.requests] == ["/api/v2/markets/"]  # currencies come from the same answer


async def test_order_lifecycle_with_balances(ex, emu):
    await ex.load_markets()
    o = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 50000, params={"clientOrderId": "ly-bs-1"})
    assert o["clientOrderId"] == "ly-bs-1" and o["side"] == "buy" and o["price"] == 50000
    cost = D("0.01") * 50000
    locked = cost * D("1.001")  # fees are paid in quote: the buy holds cost + fee
    bal = await ex.fetch_balance()
    assert (D(bal["USDT"]["free"]), D(bal["USDT"]["used"])) == (D("10000") - locked, locked)
    placed = emu.orders(V, KEY)[0]
    emu.fill_order(V, placed, "0.004")
    opened, = await ex.fetch_open_orders("BTC/USDT")
    assert opened["info"]["amount"] == "0.00600000" and opened["info"]["amount_at_create"] == "0.01000000"
    emu.fill_order(V, placed)
    by_cid = await ex.fetch_order(None, "BTC/USDT", params={"clientOrderId": "ly-bs-1"})
    assert (by_cid["id"], by_cid["status"], by_cid["filled"]) == (o["id"], "closed", 0.01)
    assert len(by_cid["trades"]) == 2 and by_cid["info"]["amount_remaining"] == "0.00000000"
    fee = cost * D("0.001")
    got = emu.balances(V, KEY)
    assert got["USDT"] == (D("10000") - cost - fee, 0) and got["BTC"] == (D("1.01"), 0)
    trades = await ex.fetch_my_trades("BTC/USDT")
    assert sorted(t["amount"] for t in trades) == [0.004, 0.006]
    assert {t["order"] for t in trades} == {o["id"]} and {t["side"] for t in trades} == {"buy"}
    assert sum(D(str(t["fee"]["cost"])) for t in trades) == fee and trades[0]["fee"]["currency"] == "USDT"


async def test_market_sell_and_trade_signs(ex, emu):
    await ex.load_markets()
    o = await ex.create_order("ETH/USDT", "market", "sell", 0.5)
    assert emu.requests_to("/api/v2/sell/market/ethusdt/")[-1].status == 200
    got = await ex.fetch_order(o["id"], "ETH/USDT")
    assert got["status"] == "closed" and got["side"] == "sell"
    trade, = await ex.fetch_my_trades()  # without a symbol: the market is read from the keys
    assert trade["symbol"] == "ETH/USDT" and trade["side"] == "sell" and trade["amount"] == 0.5
    assert trade["info"]["eth"] == "-0.50000000" and trade["info"]["usdt"] == "1500.00000000"
    assert emu.balances(V, KEY)["USDT"] == (D("10000") + D("1500") - D("1.5"), 0)


async def test_ioc_and_maker_or_cancel(ex, emu):
    await ex.load_markets()
    ioc = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 50000, params={"ioc_order": True})
    moc = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 61000, params={"moc_order": True})
    assert (await ex.fetch_order(ioc["id"]))["status"] == "canceled"
    assert (await ex.fetch_order(moc["id"]))["status"] == "canceled"  # would have taken
    with pytest.raises(ccxt.ExchangeError, match="Only one of optional parameters"):
        await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 50000, params={"ioc_order": True, "fok_order": True})
    assert emu.balances(V, KEY)["USDT"] == (D("10000"), 0)


# ---------------------------------------------------------------------------- look-ups / cancel
async def test_cancel_unknown_orders_and_duplicate_client_ids(ex, emu):
    await ex.load_markets()
    spec = client_id_spec(V)
    assert spec.lookup is LookupMethod.FETCH_ORDER and spec.dedup is Dedup.NONE
    first = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 40000, params={"clientOrderId": "same"})
    second = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 41000, params={"clientOrderId": "same"})
    assert len(emu.orders(V, KEY)) == 2  # not refused
    assert (await ex.fetch_order(None, params={"clientOrderId": "same"}))["id"] == second["id"]  # the newest
    canceled = await ex.cancel_order(first["id"])
    assert canceled["id"] == first["id"] and canceled["status"] is None  # Bitstamp's answer has no status
    assert (await ex.fetch_order(first["id"]))["status"] == "canceled"
    with pytest.raises(ccxt.OrderNotFound, match="Order not found"):
        await ex.cancel_order(first["id"])
    with pytest.raises(ccxt.OrderNotFound):
        await ex.fetch_order("123")
    with pytest.raises(ccxt.OrderNotFound):
        await ex.fetch_order(None, params={"clientOrderId": "never-sent"})
    assert [o["id"] for o in await ex.fetch_open_orders("BTC/USDT")] == [second["id"]]
    await ex.cancel_all_orders()
    assert await ex.fetch_open_orders() == []


# ---------------------------------------------------------------------------- order errors
async def test_order_errors_and_ccxt_classes(ex, emu):
    await ex.load_markets()
    with pytest.raises(ccxt.InsufficientFunds, match="Check your account balance"):
        await ex.create_order("BTC/USDT", "limit", "buy", 1, 50000)
    with pytest.raises(ccxt.InvalidOrder, match="Minimum order size is 10 USDT"):
        await ex.create_order("BTC/USDT", "limit", "buy", 0.0001, 50000)
    with pytest.raises(ccxt.ExchangeError) as err:  # the reason sits under "price", which ccxt does not read
        await ex.private_post_buy_pair({"pair": "btcusdt", "amount": "0.01", "price": "50000.5"})
    assert type(err.value) is ccxt.ExchangeError and "no more than 0 decimal places" in str(err.value)
    body = (await send(ex, ex.sign("buy/{pair}/", ["private"], "POST",
                                   {"pair": "btcusdt", "amount": "0.01", "price": "50000.5"})))[1]
    assert body == {"status": "error", "response_code": "400.007",
                    "reason": {"price": ["Ensure that there are no more than 0 decimal places."], "__all__": [""]}}
    assert emu.orders(V, KEY) == []


# ---------------------------------------------------------------------------- authentication
async def test_auth_failures_and_their_ccxt_classes(emu, ex):
    wrong = client(emu, secret="not-the-secret")
    unknown = client(emu, key="nobody")
    try:
        with pytest.raises(ccxt.AuthenticationError, match="invalid signature"):  # API0005, special-cased
            await wrong.fetch_balance()
        with pytest.raises(ccxt.AuthenticationError, match="API key not found"):
            await unknown.fetch_balance()
    finally:
        await wrong.close()
        await unknown.close()
    assert [r.error for r in emu.requests if r.path == "/api/v2/account_balances/"] == ["API0005", "API0003"]
    await ex.fetch_balance()
    status, body, _ = await send(ex, {"url": ex.last_request_url, "body": ex.last_request_body},
                                 ex.last_request_headers)  # the very same request again
    assert (status, body) == (403, {"status": "error", "reason": "Invalid nonce", "code": "API0004"})
    with pytest.raises(ccxt.InvalidNonce):
        await _replay(ex)
    emu.set_clock_skew(200_000, venue=V)  # our clock ahead: the client's timestamp is 200 s old
    with pytest.raises(ccxt.ExchangeError, match="out of boundaries") as err:
        await ex.fetch_balance()
    assert type(err.value) is ccxt.ExchangeError
    emu.set_clock_skew(0, venue=V)
    assert (await ex.fetch_balance())["total"]["BTC"] == 1


async def _replay(ex) -> None:
    """A second request that reuses the previous nonce, through ccxt's own error handling."""
    used = ex.last_request_headers["X-Auth-Nonce"]
    ex.uuid = lambda: used
    try:
        await ex.fetch_balance()
    finally:
        del ex.uuid


async def test_response_signature_and_empty_body_rules(ex, emu):
    signed = ex.sign("account_balances/", ["private"], "POST", {})
    assert signed["body"] == "foo=bar"  # ccxt never posts an empty body (API0020 otherwise)
    h = signed["headers"]
    async with aiohttp.ClientSession() as s:
        async with s.post(signed["url"], data=signed["body"], headers=h) as r:
            raw = await r.read()
            message = (h["X-Auth-Nonce"] + h["X-Auth-Timestamp"] + r.headers["Content-Type"].split(";")[0]).encode()
            assert r.headers["X-Server-Auth-Signature"] == hmac.new(SECRET.encode(), message + raw,
                                                                     hashlib.sha256).hexdigest()
        # an empty body must come without a Content-Type (checked after the signature)
        empty = dict(signed, body="")
        x = ex.sign("account_balances/", ["private"], "POST", {})["headers"]
        prehash = (x["X-Auth"] + "POST" + signed["url"] + x["Content-Type"] + x["X-Auth-Nonce"]
                   + x["X-Auth-Timestamp"] + "v2")
        x["X-Auth-Signature"] = hmac.new(SECRET.encode(), prehash.encode(), hashlib.sha256).hexdigest()
        assert (await send(ex, empty, x))[:2] == (403, {"status": "error", "code": "API0020",
                                                        "reason": "Content-Type header should not be present"})


# ---------------------------------------------------------------------------- rate limits / faults
async def test_rate_limit_and_injected_faults(ex, emu):
    await ex.load_markets()
    emu.dialect(V).configure(limits=((3, 60.0),))
    for _ in range(3):
        await ex.fetch_balance()
    with pytest.raises(ccxt.ExchangeError, match="exceeded rate limit") as err:
        await ex.fetch_balance()
    assert type(err.value) is ccxt.ExchangeError  # status "error" is handled before the 429
    last = emu.requests[-1]
    assert (last.status, last.error, last.processed) == (429, "400.002", False)
    emu.dialect(V).configure(limits=((400, 1.0), (10_000, 600.0)))
    emu.rate_limit_next("/api/v2/buy/btcusdt/")
    with pytest.raises(ccxt.ExchangeError, match="exceeded rate limit"):
        await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 50000)
    assert emu.orders(V, KEY) == [] and emu.requests[-1].status == 429
    emu.fail_next("/api/v2/account_balances/", status=503)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await ex.fetch_balance()
    emu.fail_next("/api/v2/account_balances/", status=504)
    with pytest.raises(ccxt.RequestTimeout):
        await ex.fetch_balance()
    assert RATE_LIMITED["response_code"] == "400.002"


async def test_paced_client_stays_under_the_limit(emu):
    emu.dialect(V).configure(limits=((20, 1.0),))
    paced = exchange_client(emu, V, KEY, SECRET)  # rateLimit derived: 50 ms
    try:
        await paced.load_markets()
        for _ in range(29):
            await paced.fetch_ticker("BTC/USDT")
    finally:
        await paced.close()
    assert len(emu.requests) == 30 and all(r.status == 200 for r in emu.requests)


# ---------------------------------------------------------------------------- lost responses
async def test_timeout_after_accept_then_found_by_client_id(emu):
    c = client(emu, timeout=300)
    try:
        await c.load_markets()
        emu.delay_next("/api/v2/buy/btcusdt/", 1.0, when="after")
        with pytest.raises(ccxt.RequestTimeout):
            await c.create_order("BTC/USDT", "limit", "buy", 0.01, 55000, params={"clientOrderId": "lost-bs"})
        found = await c.fetch_order(None, "BTC/USDT", params={"clientOrderId": "lost-bs"})
        assert found["status"] == "open" and len(emu.orders(V, KEY)) == 1
    finally:
        await c.close()


# ---------------------------------------------------------------------------- market data
async def test_ohlcv_ticker_book(ex, emu):
    rows = [[1_700_000_100_000 + i * 60_000, 100 + i, 110 + i, 90 + i, 105 + i, 2 + i] for i in range(30)]
    emu.load_candles(V, "ETH/USDT", rows)
    await ex.load_markets()
    newest = await ex.fetch_ohlcv("ETH/USDT", "1m", limit=5)
    assert [r[0] for r in newest] == [row[0] for row in rows[-5:]]
    assert newest[-1] == [rows[-1][0], 129, 139, 119, 134, 31]
    page = await ex.fetch_ohlcv("ETH/USDT", "1m", since=rows[3][0], limit=4)
    assert [r[0] for r in page] == [row[0] for row in rows[3:7]]
    five = await ex.fetch_ohlcv("ETH/USDT", "5m", since=rows[0][0], limit=2)
    assert five[0][1:6] == [100, 114, 90, 109, 2 + 3 + 4 + 5 + 6]
    t = await ex.fetch_ticker("BTC/USDT")
    assert (t["bid"], t["ask"], t["last"]) == (59999, 60001, 60000)
    tickers = await ex.fetch_tickers(["ETH/BTC", "BTC/USDT"])
    assert set(tickers) == {"ETH/BTC", "BTC/USDT"} and tickers["ETH/BTC"]["bid"] == 0.04999
    emu.set_mark(V, "ETH/USDT", 3000)  # load_candles moved it to the first open
    book = await ex.fetch_order_book("ETH/USDT", 5)
    assert book["bids"][0] == [2999.9, 1] and book["asks"][0] == [3000.1, 1]
    assert len(book["bids"]) == 100  # Bitstamp sends the whole book and ccxt does not cut it to the limit


async def test_user_transactions_paging_and_faults(ex, emu):
    await ex.load_markets()
    for _ in range(3):
        await ex.create_order("ETH/USDT", "market", "buy", 0.1)
    ids = [f.id for f in emu.engine(V).fills]
    raw = await ex.private_post_user_transactions_pair({"pair": "ethusdt"})
    assert [t["id"] for t in raw] == ids[::-1]
    assert [t["id"] for t in await ex.private_post_user_transactions({"limit": 2, "offset": 1})] == ids[1::-1]
    emu.mangle_trades_next(V, "reorder")
    assert [t["id"] for t in await ex.private_post_user_transactions_pair({"pair": "ethusdt"})] == ids
    emu.mangle_trades_next(V, "duplicate")
    assert len(await ex.fetch_my_trades("ETH/USDT")) == 6
    fills = emu.engine(V).fills
    fills[0].time_ms -= 10_000
    fills[1].time_ms -= 10_000
    since_s = fills[2].time_ms // 1000
    assert [t["id"] for t in await ex.private_post_user_transactions({"since_timestamp": since_s})] == [ids[2]]
    emu.mangle_trades_next(V, "overlap")
    assert len(await ex.private_post_user_transactions({"since_timestamp": since_s})) == 3
