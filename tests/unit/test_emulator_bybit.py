"""Unmodified ccxt (async) against the emulator's Bybit v5 spot dialect."""

from __future__ import annotations

import hashlib
import hmac
import time
from decimal import Decimal

import aiohttp
import ccxt
import pytest

from tests.emulator import ExchangeEmulator, exchange_client

KEY = "lyra-bybit-test-key"
SECRET = "lyra-bybit-test-secret-not-real"
BALANCES = {"USDT": "10000", "BTC": "1", "ETH": "5"}
FEE = Decimal("0.001")


def D(x: object) -> Decimal:
    return Decimal(str(x))


@pytest.fixture
async def emu():
    async with ExchangeEmulator(("bybit",), accounts={KEY: (SECRET, BALANCES)}) as e:
        yield e


@pytest.fixture
async def ex(emu):
    client = exchange_client(emu, "bybit", KEY, SECRET)
    yield client
    await client.close()


async def signed_get(emu, path: str, query: str, *, key: str = KEY, secret: str = SECRET,
                     ts: int | None = None, recv: str = "5000") -> tuple[int, dict, dict]:
    """A GET signed by hand the way Bybit documents it (independent of ccxt)."""
    ts_s = str(ts if ts is not None else int(time.time() * 1000))
    sign = hmac.new(secret.encode(), (ts_s + key + recv + query).encode(), hashlib.sha256).hexdigest()
    headers = {"X-BAPI-API-KEY": key, "X-BAPI-TIMESTAMP": ts_s, "X-BAPI-RECV-WINDOW": recv, "X-BAPI-SIGN": sign}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{emu.url_of('bybit')}{path}?{query}", headers=headers) as resp:
            return resp.status, await resp.json(content_type=None), dict(resp.headers)


# ---------------------------------------------------------------------------- markets / balance
async def test_load_markets_spot_only_with_bybit_filters(ex, emu):
    assert all(u.startswith(emu.url_of("bybit")) for u in ex.urls["api"].values())
    markets = await ex.load_markets()
    assert set(markets) == {"BTC/USDT", "ETH/USDT", "ETH/BTC"}
    btc = markets["BTC/USDT"]
    assert btc["id"] == "BTCUSDT" and btc["spot"] is True and btc["margin"] is False
    assert btc["precision"] == {"amount": 0.000001, "price": 0.01}
    assert btc["limits"]["amount"]["min"] == 0.000048 and btc["limits"]["cost"]["min"] == 1.0
    assert markets["ETH/BTC"]["precision"]["price"] == 0.000001
    paths = {r.path for r in emu.requests}
    # UTA is configured: no /v5/user/query-api or /v5/account/info probes; spot instruments only
    assert "/v5/user/query-api" not in paths and "/v5/account/info" not in paths
    assert all("category=spot" in r.query for r in emu.requests_to("/v5/market/instruments-info"))


async def test_fetch_balance_and_server_time(ex, emu):
    bal = await ex.fetch_balance()
    assert bal["total"]["USDT"] == 10000 and bal["free"]["BTC"] == 1 and bal["used"]["ETH"] == 0
    assert "accountType=UNIFIED" in emu.requests_to("/v5/account/wallet-balance")[-1].query
    assert abs(await ex.fetch_time() - time.time() * 1000) < 5_000


# ---------------------------------------------------------------------------- order life cycle
async def test_limit_order_life_cycle_with_locked_funds(ex, emu):
    await ex.load_markets()
    o = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 59000, params={"clientOrderId": "lyra-lim-1"})
    assert o["clientOrderId"] == "lyra-lim-1" and len(o["id"]) == 19 and o["id"].isdigit()
    bal = await ex.fetch_balance()
    assert (D(bal["used"]["USDT"]), D(bal["free"]["USDT"])) == (D("590"), D("10000") - D("590"))
    by_link = await ex.fetch_open_orders("BTC/USDT", params={"orderLinkId": "lyra-lim-1"})
    assert [x["id"] for x in by_link] == [o["id"]] and by_link[0]["status"] == "open"
    assert by_link[0]["amount"] == 0.01 and by_link[0]["price"] == 59000 and by_link[0]["remaining"] == 0.01
    got = await ex.fetch_order(o["id"], "BTC/USDT", params={"acknowledged": True})
    assert got["clientOrderId"] == "lyra-lim-1"

    emu.set_mark("bybit", "BTC/USDT", 59500)  # not crossed
    assert len(await ex.fetch_open_orders("BTC/USDT")) == 1
    emu.set_mark("bybit", "BTC/USDT", 58900)  # crossed: fills at its limit as maker
    assert await ex.fetch_open_orders("BTC/USDT") == []
    closed = await ex.fetch_closed_orders("BTC/USDT", params={"orderLinkId": "lyra-lim-1"})
    assert [(c["id"], c["status"], c["filled"], c["average"]) for c in closed] == [(o["id"], "closed", 0.01, 59000)]
    assert closed[0]["fee"] == {"cost": 0.00001, "currency": "BTC"}
    trades = await ex.fetch_my_trades("BTC/USDT")
    assert len(trades) == 1
    t = trades[0]
    assert (t["order"], t["side"], t["takerOrMaker"], t["price"], t["amount"]) == (o["id"], "buy", "maker", 59000, 0.01)
    assert t["fee"]["currency"] == "BTC" and D(t["fee"]["cost"]) == D("0.01") * FEE  # buyer pays in base
    assert await ex.fetch_order_trades(o["id"], "BTC/USDT") == trades
    bal = emu.balances("bybit", KEY)
    assert bal["USDT"] == (D("10000") - D("590"), D(0))
    assert bal["BTC"] == (D("1") + D("0.01") - D("0.01") * FEE, D(0))


async def test_market_orders_buy_in_quote_sell_in_base(ex, emu):
    await ex.load_markets()
    buy = await ex.create_order("ETH/USDT", "market", "buy", None, None, params={"cost": 300})
    sent = emu.orders("bybit", KEY)[-1]
    assert sent.extra["market_unit"] == "quoteCoin" and sent.qty == D("0.1")  # 300 USDT / 3000
    placed = (await ex.fetch_closed_orders("ETH/USDT"))[0]
    assert placed["id"] == buy["id"] and placed["cost"] == 300 and placed["filled"] == 0.1
    assert (placed["info"]["qty"], placed["info"]["marketUnit"]) == ("300", "quoteCoin")  # qty is in USDT
    sell = await ex.create_order("ETH/USDT", "market", "sell", 0.05)
    assert emu.orders("bybit", KEY)[-1].extra["market_unit"] == "baseCoin"
    bal = emu.balances("bybit", KEY)
    assert bal["ETH"][0] == D("5") + D("0.1") * (1 - FEE) - D("0.05")
    assert bal["USDT"][0] == D("10000") - D("300") + D("150") * (1 - FEE)
    assert sell["id"] != buy["id"]


async def test_ioc_expires_and_post_only_that_would_take_is_cancelled(ex, emu):
    await ex.load_markets()
    ioc = await ex.create_order("BTC/USDT", "limit", "buy", 0.001, 50000, params={"timeInForce": "IOC"})
    po = await ex.create_order("BTC/USDT", "limit", "buy", 0.001, 61000, params={"postOnly": True})
    assert [o.extra["tif"] for o in emu.orders("bybit", KEY)] == ["IOC", "PostOnly"]
    history = {o["id"]: o for o in await ex.fetch_canceled_orders("BTC/USDT")}
    assert history[ioc["id"]]["status"] == "canceled" and history[ioc["id"]]["info"]["cancelType"] == "CancelByIOC"
    assert history[po["id"]]["info"]["rejectReason"] == "EC_PostOnlyWillTakeLiquidity"
    assert history[po["id"]]["timeInForce"] == "PO" and history[po["id"]]["filled"] == 0
    assert emu.balances("bybit", KEY)["USDT"] == (D("10000"), D(0))


async def test_partial_fill_then_cancel_is_partially_filled_canceled(ex, emu):
    await ex.load_markets()
    o = await ex.create_order("ETH/USDT", "limit", "sell", 1, 3100)
    emu.fill_order("bybit", emu.orders("bybit", KEY)[0], qty="0.4")
    got = (await ex.fetch_open_orders("ETH/USDT"))[0]
    assert (got["status"], got["filled"], got["remaining"]) == ("open", 0.4, 0.6)
    assert emu.balances("bybit", KEY)["ETH"] == (D("4"), D("0.6"))
    cancelled = await ex.cancel_order(o["id"], "ETH/USDT")
    assert cancelled["id"] == o["id"]
    hist = await ex.fetch_canceled_and_closed_orders("ETH/USDT")
    assert hist[0]["info"]["orderStatus"] == "PartiallyFilledCanceled" and hist[0]["status"] == "closed"
    assert emu.balances("bybit", KEY)["ETH"] == (D("4.6"), D(0))


# ---------------------------------------------------------------------------- errors
async def test_cancel_and_fetch_unknown_orders(ex, emu):
    await ex.load_markets()
    o = await ex.create_order("ETH/BTC", "limit", "buy", 1, 0.04)
    assert (await ex.fetch_balance())["used"]["BTC"] == 0.04
    await ex.cancel_order(o["id"], "ETH/BTC")
    with pytest.raises(ccxt.OrderNotFound, match="170213"):
        await ex.cancel_order(o["id"], "ETH/BTC")
    with pytest.raises(ccxt.OrderNotFound, match="170213"):
        await ex.cancel_order("2088690093937400000", "ETH/BTC")
    with pytest.raises(ccxt.OrderNotFound):
        await ex.fetch_open_order("2088690093937400000", "ETH/BTC")
    with pytest.raises(ccxt.OrderNotFound):
        await ex.fetch_order("2088690093937400000", "ETH/BTC", params={"acknowledged": True})
    assert emu.requests_to("/v5/order/cancel")[-1].error == 170213


async def test_order_link_id_is_never_reusable(ex, emu):
    await ex.load_markets()
    first = await ex.create_order("ETH/USDT", "limit", "buy", 0.1, 2500, params={"clientOrderId": "dup-1"})
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate clientOrderId"):
        await ex.create_order("ETH/USDT", "limit", "buy", 0.1, 2500, params={"clientOrderId": "dup-1"})
    await ex.cancel_order(first["id"], "ETH/USDT")
    with pytest.raises(ccxt.InvalidOrder, match="170141"):  # Dedup.ALWAYS: closed orders protect too
        await ex.create_order("ETH/USDT", "limit", "buy", 0.1, 2500, params={"clientOrderId": "dup-1"})
    assert len([o for o in emu.orders("bybit", KEY) if o.client_order_id == "dup-1"]) == 1


@pytest.mark.parametrize("amount, price, code, exc", [
    (0.00001, 59000, 170136, ccxt.InvalidOrder),      # below minOrderQty 0.000048
    (0.0000485, 59000, 170137, ccxt.InvalidOrder),    # finer than basePrecision 0.000001
    (100, 59000, 170135, ccxt.InvalidOrder),          # above maxOrderQty
    (0.0001, 5000, 170140, ccxt.InvalidOrder),        # 0.5 USDT < minOrderAmt 1
    (1, 59000, 170131, ccxt.InsufficientFunds),       # 59000 USDT > 10000 free
])
async def test_filter_and_funds_errors(ex, emu, amount, price, code, exc):
    await ex.load_markets()
    with pytest.raises(exc, match=str(code)):
        # raw request so ccxt's own precision rounding does not hide the filter
        await ex.privatePostV5OrderCreate({"category": "spot", "symbol": "BTCUSDT", "side": "Buy",
                                           "orderType": "Limit", "qty": str(amount), "price": str(price)})
    assert emu.orders("bybit", KEY) == []


async def test_price_off_tick_is_refused(ex, emu):
    await ex.load_markets()
    with pytest.raises(ccxt.InvalidOrder, match="170134"):
        await ex.privatePostV5OrderCreate({"category": "spot", "symbol": "BTCUSDT", "side": "Buy",
                                           "orderType": "Limit", "qty": "0.01", "price": "59000.005"})


# ---------------------------------------------------------------------------- authentication
async def test_bad_signature_and_unknown_key_are_authentication_errors(emu):
    bad = exchange_client(emu, "bybit", KEY, "wrong-secret")
    unknown = exchange_client(emu, "bybit", "no-such-key", SECRET)
    try:
        with pytest.raises(ccxt.AuthenticationError, match="10004"):
            await bad.fetch_balance()
        with pytest.raises(ccxt.AuthenticationError, match="10003"):
            await unknown.fetch_balance()
    finally:
        await bad.close()
        await unknown.close()
    private = [r for r in emu.requests if r.path.startswith(("/v5/account", "/v5/asset"))]
    assert [(r.status, r.error) for r in private] == [(401, 10004), (401, 10003)]


async def test_signature_covers_query_and_timestamp_window(emu):
    status, body, headers = await signed_get(emu, "/v5/account/wallet-balance", "accountType=UNIFIED")
    assert status == 200 and body["retCode"] == 0 and headers["X-Bapi-Limit"] == "50"
    coins = {c["coin"]: c for c in body["result"]["list"][0]["coin"]}
    assert coins["USDT"]["walletBalance"] == "10000" and coins["USDT"]["locked"] == "0"
    now = int(time.time() * 1000)
    status, body, _ = await signed_get(emu, "/v5/account/wallet-balance", "accountType=UNIFIED", ts=now - 6000)
    assert (status, body["retCode"]) == (200, 10002)
    status, body, _ = await signed_get(emu, "/v5/account/wallet-balance", "accountType=UNIFIED", ts=now - 6000,
                                       recv="10000")
    assert body["retCode"] == 0  # a wider recv_window admits it
    status, body, _ = await signed_get(emu, "/v5/account/wallet-balance", "accountType=UNIFIED", ts=now + 3000)
    assert body["retCode"] == 10002  # ahead of the server by more than 1 s


async def test_clock_skew_is_invalid_nonce(ex, emu):
    await ex.load_markets()
    emu.set_clock_skew(-10_000)  # the exchange runs 10 s behind: our timestamp is "in the future"
    with pytest.raises(ccxt.InvalidNonce, match="10002"):
        await ex.fetch_balance()
    emu.set_clock_skew(10_000)
    with pytest.raises(ccxt.InvalidNonce, match="recv_window"):
        await ex.fetch_balance()


# ---------------------------------------------------------------------------- rate limits and faults
async def test_per_uid_endpoint_limit_gives_10006_rate_limit_exceeded(emu):
    emu.dialect("bybit").configure(limits={"/v5/order/realtime": 3})
    ex = exchange_client(emu, "bybit", KEY, SECRET, enableRateLimit=False)
    try:
        await ex.load_markets()
        for _ in range(3):
            await ex.fetch_open_orders("BTC/USDT")
        with pytest.raises(ccxt.RateLimitExceeded, match="Too many visits"):
            await ex.fetch_open_orders("BTC/USDT")
    finally:
        await ex.close()
    refused = emu.requests_to("/v5/order/realtime")[-1]
    assert refused.status == 200 and refused.error == 10006 and not refused.processed
    status, body, headers = await signed_get(emu, "/v5/order/realtime", "category=spot")
    assert body["retCode"] == 10006 and headers["X-Bapi-Limit"] == "3" and headers["X-Bapi-Limit-Status"] == "0"
    assert int(headers["X-Bapi-Limit-Reset-Timestamp"]) > int(time.time() * 1000) - 50


async def test_ip_limit_gives_403_rate_limit_exceeded(emu):
    emu.dialect("bybit").configure(ip_limit=2, ip_ban_s=30)
    ex = exchange_client(emu, "bybit", enableRateLimit=False)
    try:
        await ex.fetch_time()
        await ex.fetch_time()
        with pytest.raises(ccxt.RateLimitExceeded, match="access too frequent"):
            await ex.fetch_time()
        with pytest.raises(ccxt.RateLimitExceeded):  # banned for ip_ban_s
            await ex.fetch_time()
    finally:
        await ex.close()


async def test_injected_429_and_5xx(ex, emu):
    await ex.load_markets()
    emu.rate_limit_next("/v5/order/create", status=429)
    with pytest.raises(ccxt.RateLimitExceeded, match="10006"):
        await ex.create_order("BTC/USDT", "limit", "buy", 0.001, 50000)
    assert emu.orders("bybit", KEY) == []
    emu.fail_next("/v5/account/wallet-balance", status=502)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await ex.fetch_balance()
    emu.fail_next("/v5/account/wallet-balance", status=504)
    with pytest.raises(ccxt.RequestTimeout):
        await ex.fetch_balance()


async def test_mangled_executions(ex, emu):
    await ex.load_markets()
    await ex.create_order("BTC/USDT", "market", "sell", 0.001)
    await ex.create_order("BTC/USDT", "market", "sell", 0.002)
    emu.mangle_trades_next("bybit", "duplicate")
    dup = await ex.fetch_my_trades("BTC/USDT")
    assert len(dup) == 4 and len({t["id"] for t in dup}) == 2
    plain = await ex.fetch_my_trades("BTC/USDT")
    assert sorted(t["amount"] for t in plain) == [0.001, 0.002]
    since = max(t["timestamp"] for t in plain) + 1
    raw = {"category": "spot", "symbol": "BTCUSDT", "startTime": since}
    assert (await ex.privateGetV5ExecutionList(raw))["result"]["list"] == []
    emu.mangle_trades_next("bybit", "overlap")  # the startTime filter is ignored once
    assert len((await ex.privateGetV5ExecutionList(raw))["result"]["list"]) == 2
    emu.mangle_trades_next("bybit", "reorder")
    reordered = (await ex.privateGetV5ExecutionList({"category": "spot", "symbol": "BTCUSDT"}))["result"]["list"]
    assert [x["execQty"] for x in reordered] == ["0.001", "0.002"]  # Bybit sends newest first


# ---------------------------------------------------------------------------- market data
async def test_ticker_book_and_ohlcv_from_engine_candles(ex, emu):
    await ex.load_markets()
    t0 = 1_700_000_100_000  # a multiple of 5 minutes
    rows = [(t0 + i * 60_000, 100 + i, 101 + i, 99 + i, 100.5 + i, 10) for i in range(10)]
    emu.load_candles("bybit", "ETH/USDT", rows)
    ohlcv = await ex.fetch_ohlcv("ETH/USDT", "1m", since=t0, limit=5)
    assert [c[0] for c in ohlcv] == [t0 + i * 60_000 for i in range(5, 10)]  # newest 5 of the range
    ohlcv = await ex.fetch_ohlcv("ETH/USDT", "1m", since=t0, limit=5, params={"until": t0 + 4 * 60_000})
    assert [c[1] for c in ohlcv] == [100, 101, 102, 103, 104]
    five = await ex.fetch_ohlcv("ETH/USDT", "5m", since=t0 - 40_000)
    assert five[0][1:5] == [100, 105, 99, 104.5] and five[0][5] == 50
    emu.set_mark("bybit", "ETH/USDT", 3000)
    ticker = await ex.fetch_ticker("ETH/USDT")
    assert (ticker["last"], ticker["bid"], ticker["ask"]) == (3000, 2999.99, 3000.01)
    tickers = await ex.fetch_tickers()
    assert set(tickers) == {"BTC/USDT", "ETH/USDT", "ETH/BTC"}
    book = await ex.fetch_order_book("BTC/USDT", 5)
    assert book["bids"][0][0] == 59999.99 and book["asks"][0][0] == 60000.01 and len(book["bids"]) == 5
