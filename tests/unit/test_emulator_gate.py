"""Unmodified ccxt (async) against the emulator's Gate.io v4 spot dialect."""

from __future__ import annotations

import hashlib
import hmac
import time
from decimal import Decimal

import aiohttp
import ccxt
import pytest

from tests.emulator import ExchangeEmulator, exchange_client

KEY = "lyra-gate-test-key"
SECRET = "lyra-gate-test-secret-not-real"
BALANCES = {"USDT": "10000", "BTC": "1", "ETH": "5"}
FEE = Decimal("0.001")


def D(x: object) -> Decimal:
    return Decimal(str(x))


@pytest.fixture
async def emu():
    async with ExchangeEmulator(("gate",), accounts={KEY: (SECRET, BALANCES)}) as e:
        yield e


@pytest.fixture
async def ex(emu):
    client = exchange_client(emu, "gate", KEY, SECRET)
    yield client
    await client.close()


async def signed(emu, method: str, path: str, query: str = "", body: str = "", *, key: str = KEY,
                 secret: str = SECRET, ts: int | None = None) -> tuple[int, object, dict]:
    """A request signed by hand the way Gate documents it (independent of ccxt)."""
    ts_s = str(ts if ts is not None else int(time.time()))
    payload = "\n".join([method, path, query, hashlib.sha512(body.encode()).hexdigest(), ts_s])
    sign = hmac.new(secret.encode(), payload.encode(), hashlib.sha512).hexdigest()
    headers = {"KEY": key, "Timestamp": ts_s, "SIGN": sign, "Content-Type": "application/json"}
    url = f"{emu.url_of('gate')}{path}" + (f"?{query}" if query else "")
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, data=body or None, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None), dict(resp.headers)


# ---------------------------------------------------------------------------- markets / balance
async def test_load_markets_spot_only_with_gate_precisions(ex, emu):
    assert all(u.startswith(emu.url_of("gate")) for u in ex.urls["api"]["private"].values())
    markets = await ex.load_markets()
    assert set(markets) == {"BTC/USDT", "ETH/USDT", "ETH/BTC"}
    btc = markets["BTC/USDT"]
    assert btc["id"] == "BTC_USDT" and btc["spot"] is True and btc["margin"] is False
    assert btc["precision"] == {"amount": 0.000001, "price": 0.1}  # from 6 and 1 decimal places
    assert btc["limits"]["amount"]["min"] == 0.000001 and btc["limits"]["cost"]["min"] == 3
    assert btc["taker"] == 0.001  # "fee" is a percentage on Gate
    assert markets["ETH/BTC"]["precision"]["price"] == 0.00001
    paths = {r.path for r in emu.requests}
    assert "/api/v4/account/detail" not in paths  # classic spot account configured: no unified probe
    assert {"/api/v4/spot/currency_pairs", "/api/v4/margin/currency_pairs", "/api/v4/spot/currencies"} <= paths


async def test_fetch_balance_and_server_time(ex, emu):
    bal = await ex.fetch_balance()
    assert bal["total"]["USDT"] == 10000 and bal["free"]["BTC"] == 1 and bal["used"]["ETH"] == 0
    assert "account=spot" not in emu.requests_to("/api/v4/spot/accounts")[-1].query
    assert abs(await ex.fetch_time() - time.time() * 1000) < 5_000


# ---------------------------------------------------------------------------- order life cycle
async def test_limit_order_life_cycle_with_locked_funds(ex, emu):
    await ex.load_markets()
    o = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 59000, params={"clientOrderId": "lyra-lim-1"})
    assert o["clientOrderId"] == "t-lyra-lim-1"  # ccxt adds Gate's mandatory "t-" prefix
    assert o["status"] == "open" and o["amount"] == 0.01 and o["price"] == 59000 and o["remaining"] == 0.01
    bal = await ex.fetch_balance()
    assert (D(bal["used"]["USDT"]), D(bal["free"]["USDT"])) == (D("590"), D("9410"))
    by_text = await ex.fetch_order(None, "BTC/USDT", params={"clientOrderId": "t-lyra-lim-1"})
    by_id = await ex.fetch_order(o["id"], "BTC/USDT")
    assert by_text["id"] == by_id["id"] == o["id"]
    assert emu.requests_to(f"/api/v4/spot/orders/t-lyra-lim-1")[-1].status == 200
    assert [x["id"] for x in await ex.fetch_open_orders("BTC/USDT")] == [o["id"]]

    emu.set_mark("gate", "BTC/USDT", 59500)  # not crossed
    assert (await ex.fetch_order(o["id"], "BTC/USDT"))["status"] == "open"
    emu.set_mark("gate", "BTC/USDT", 58900)  # crossed: fills at its limit, as maker
    done = await ex.fetch_order(o["id"], "BTC/USDT")
    assert (done["status"], done["filled"], done["average"]) == ("closed", 0.01, 59000)
    assert await ex.fetch_open_orders("BTC/USDT") == []
    assert [c["id"] for c in await ex.fetch_closed_orders("BTC/USDT")] == [o["id"]]
    trades = await ex.fetch_my_trades("BTC/USDT")
    assert len(trades) == 1
    t = trades[0]
    assert (t["order"], t["side"], t["takerOrMaker"], t["price"], t["amount"]) == (o["id"], "buy", "maker", 59000, 0.01)
    assert t["fee"] == {"currency": "BTC", "cost": float(D("0.01") * FEE)}  # buyer pays in base
    assert await ex.fetch_order_trades(o["id"], "BTC/USDT") == trades
    bal = emu.balances("gate", KEY)
    assert bal["USDT"] == (D("9410"), D(0)) and bal["BTC"] == (D("1") + D("0.01") * (1 - FEE), D(0))


async def test_text_lookup_only_shortly_after_the_order_finished(emu):
    async with ExchangeEmulator(("gate",), accounts={KEY: (SECRET, BALANCES)},
                                dialect_options={"gate": {"text_lookup_s": 0.2}}) as short:
        ex = exchange_client(short, "gate", KEY, SECRET)
        try:
            await ex.load_markets()
            o = await ex.create_order("ETH/USDT", "limit", "buy", 0.1, 2500, params={"clientOrderId": "t-short"})
            await ex.cancel_order(o["id"], "ETH/USDT")
            assert (await ex.fetch_order(None, "ETH/USDT", {"clientOrderId": "t-short"}))["status"] == "canceled"
            time.sleep(0.3)
            with pytest.raises(ccxt.OrderNotFound, match="ORDER_NOT_FOUND"):
                await ex.fetch_order(None, "ETH/USDT", {"clientOrderId": "t-short"})
            assert (await ex.fetch_order(o["id"], "ETH/USDT"))["status"] == "canceled"  # the id always works
        finally:
            await ex.close()


async def test_market_orders_buy_in_quote_sell_in_base(ex, emu):
    await ex.load_markets()
    buy = await ex.create_order("ETH/USDT", "market", "buy", None, None, params={"cost": 300})
    placed = emu.orders("gate", KEY)[-1]
    assert placed.quote_qty == D("300") and placed.qty == D("0.1")  # 300 USDT / 3000
    assert (buy["status"], buy["cost"], buy["amount"], buy["average"]) == ("closed", 300, 0.1, 3000)
    assert buy["info"]["amount"] == "300" and buy["info"]["time_in_force"] == "ioc"
    sell = await ex.create_order("ETH/USDT", "market", "sell", 0.05)
    assert sell["status"] == "closed" and sell["filled"] == 0.05
    bal = emu.balances("gate", KEY)
    assert bal["ETH"][0] == D("5") + D("0.1") * (1 - FEE) - D("0.05")
    assert bal["USDT"][0] == D("10000") - D("300") + D("150") * (1 - FEE)


async def test_ioc_expires_and_post_only_that_would_take_is_refused(ex, emu):
    await ex.load_markets()
    ioc = await ex.create_order("BTC/USDT", "limit", "buy", 0.001, 50000, params={"timeInForce": "IOC"})
    assert ioc["status"] == "canceled" and ioc["info"]["finish_as"] == "ioc" and ioc["filled"] == 0
    with pytest.raises(ccxt.OrderImmediatelyFillable, match="POC_FILL_IMMEDIATELY"):
        await ex.create_order("BTC/USDT", "limit", "buy", 0.001, 61000, params={"postOnly": True})
    po = await ex.create_order("BTC/USDT", "limit", "buy", 0.001, 50000, params={"postOnly": True})
    assert po["postOnly"] is True and po["status"] == "open"
    assert emu.balances("gate", KEY)["USDT"] == (D("9950"), D("50"))


async def test_partial_fill_then_cancel(ex, emu):
    await ex.load_markets()
    o = await ex.create_order("ETH/USDT", "limit", "sell", 1, 3100)
    emu.fill_order("gate", emu.orders("gate", KEY)[0], qty="0.4")
    got = await ex.fetch_order(o["id"], "ETH/USDT")
    assert (got["status"], got["filled"], got["remaining"]) == ("open", 0.4, 0.6)
    assert emu.balances("gate", KEY)["ETH"] == (D("4"), D("0.6"))
    cancelled = await ex.cancel_order(o["id"], "ETH/USDT")
    assert (cancelled["status"], cancelled["filled"], cancelled["remaining"]) == ("canceled", 0.4, 0.6)
    assert emu.balances("gate", KEY)["ETH"] == (D("4.6"), D(0))
    assert emu.balances("gate", KEY)["USDT"] == (D("10000") + D("1240") * (1 - FEE), D(0))


# ---------------------------------------------------------------------------- errors
async def test_cancel_and_fetch_unknown_orders(ex, emu):
    await ex.load_markets()
    o = await ex.create_order("ETH/BTC", "limit", "buy", 1, 0.04)
    assert (await ex.fetch_balance())["used"]["BTC"] == 0.04
    assert (await ex.cancel_order(o["id"], "ETH/BTC"))["status"] == "canceled"
    with pytest.raises(ccxt.OrderNotFound, match="ORDER_NOT_FOUND"):
        await ex.cancel_order(o["id"], "ETH/BTC")
    with pytest.raises(ccxt.OrderNotFound):
        await ex.fetch_order("999", "ETH/BTC")
    with pytest.raises(ccxt.OrderNotFound):
        await ex.fetch_order(None, "ETH/BTC", {"clientOrderId": "t-never-sent"})
    with pytest.raises(ccxt.OrderNotFound):  # an existing id under another pair
        await ex.fetch_order(o["id"], "BTC/USDT")
    assert emu.requests_to(f"/api/v4/spot/orders/{o['id']}", method="DELETE")[-1].status == 404


async def test_repeated_text_is_not_refused(ex, emu):
    """Dedup.NONE: Gate accepts a second order with the same text (client_ids.py)."""
    await ex.load_markets()
    a = await ex.create_order("ETH/USDT", "limit", "buy", 0.1, 2500, params={"clientOrderId": "t-dup"})
    b = await ex.create_order("ETH/USDT", "limit", "buy", 0.1, 2500, params={"clientOrderId": "t-dup"})
    assert a["id"] != b["id"] and len([o for o in emu.orders("gate", KEY) if o.client_order_id == "t-dup"]) == 2
    assert (await ex.fetch_order(None, "ETH/USDT", {"clientOrderId": "t-dup"}))["id"] == b["id"]  # the newest


@pytest.mark.parametrize("body, label, exc", [
    ('{"currency_pair":"BTC_USDT","side":"buy","amount":"0.0000005","price":"59000"}',
     "INVALID_PRECISION", ccxt.InvalidOrder),       # finer than amount_precision 6
    ('{"currency_pair":"BTC_USDT","side":"buy","amount":"0.001","price":"59000.05"}',
     "INVALID_PRECISION", ccxt.InvalidOrder),       # finer than precision 1 (tick 0.1)
    ('{"currency_pair":"BTC_USDT","side":"buy","amount":"0.00004","price":"59000"}',
     "INVALID_PARAM_VALUE", ccxt.BadRequest),       # 2.36 USDT < min_quote_amount 3
    ('{"currency_pair":"BTC_USDT","side":"buy","amount":"2000","price":"50000"}',
     "AMOUNT_TOO_MUCH", ccxt.InvalidOrder),         # above max_base_amount
    ('{"currency_pair":"BTC_USDT","side":"buy","amount":"1","price":"59000"}',
     "BALANCE_NOT_ENOUGH", ccxt.InsufficientFunds),  # 59000 USDT > 10000
    ('{"currency_pair":"XXX_USDT","side":"buy","amount":"1","price":"1"}',
     "INVALID_CURRENCY_PAIR", ccxt.BadSymbol),
    ('{"currency_pair":"BTC_USDT","side":"buy","amount":"0.01","price":"59000","text":"lyra-no-prefix"}',
     "INVALID_PARAM_VALUE", ccxt.BadRequest),       # text must start with t-
])
async def test_order_errors_map_to_ccxt_exceptions(ex, emu, body, label, exc):
    import json

    await ex.load_markets()
    with pytest.raises(exc, match=label):
        await ex.privateSpotPostOrders(json.loads(body))  # raw: ccxt's own rounding would hide the filter
    assert emu.orders("gate", KEY) == [] and emu.requests_to("/api/v4/spot/orders")[-1].status == 400


# ---------------------------------------------------------------------------- authentication
async def test_bad_signature_and_unknown_key_are_authentication_errors(emu):
    bad = exchange_client(emu, "gate", KEY, "wrong-secret")
    unknown = exchange_client(emu, "gate", "no-such-key", SECRET)
    try:
        with pytest.raises(ccxt.AuthenticationError, match="INVALID_SIGNATURE"):
            await bad.fetch_balance()
        with pytest.raises(ccxt.AuthenticationError, match="INVALID_KEY"):
            await unknown.fetch_balance()
    finally:
        await bad.close()
        await unknown.close()
    assert [(r.status, r.error) for r in emu.requests_to("/api/v4/spot/accounts")] == [
        (401, "INVALID_SIGNATURE"), (401, "INVALID_KEY")]


async def test_signature_covers_method_path_query_body_and_timestamp(emu):
    status, body, headers = await signed(emu, "GET", "/api/v4/spot/accounts", "currency=USDT")
    assert status == 200 and body == [{"currency": "USDT", "available": "10000", "locked": "0",
                                       "update_id": body[0]["update_id"], "refresh_time": body[0]["refresh_time"]}]
    assert headers["X-Gate-RateLimit-Limit"] == "200" and headers["X-Gate-RateLimit-Requests-Remain"] == "199"
    order = '{"currency_pair":"ETH_USDT","side":"buy","amount":"0.1","price":"2500","text":"t-by-hand"}'
    status, body, _ = await signed(emu, "POST", "/api/v4/spot/orders", body=order)
    assert status == 200 and body["text"] == "t-by-hand" and body["status"] == "open"
    status, body, _ = await signed(emu, "GET", "/api/v4/spot/accounts", ts=int(time.time()) - 61)
    assert (status, body["label"]) == (401, "REQUEST_EXPIRED")
    status, body, _ = await signed(emu, "GET", "/api/v4/spot/accounts", ts=int(time.time()) - 50)
    assert status == 200  # within Gate's 60 s


async def test_clock_skew_is_an_authentication_error(ex, emu):
    await ex.load_markets()
    emu.set_clock_skew(-120_000)
    with pytest.raises(ccxt.AuthenticationError, match="REQUEST_EXPIRED"):  # ccxt: not InvalidNonce
        await ex.fetch_balance()


# ---------------------------------------------------------------------------- rate limits and faults
async def test_order_placement_limit_is_per_pair_and_gives_429(emu):
    ex = exchange_client(emu, "gate", KEY, SECRET, enableRateLimit=False)
    try:
        await ex.load_markets()
        for i in range(10):
            await ex.create_order("ETH/USDT", "limit", "buy", 0.01, 2000 + i)
        with pytest.raises(ccxt.RateLimitExceeded, match="TOO_MANY_REQUESTS"):
            await ex.create_order("ETH/USDT", "limit", "buy", 0.01, 1990)
        await ex.create_order("BTC/USDT", "limit", "buy", 0.001, 50000)  # another pair: its own 10/s
    finally:
        await ex.close()
    refused = [r for r in emu.requests_to("/api/v4/spot/orders", method="POST") if r.status == 429]
    assert len(refused) == 1 and not refused[0].processed and emu.dialect("gate").rate_limited(refused[0])
    assert len(emu.orders("gate", KEY)) == 11


async def test_private_endpoint_limit_headers(emu):
    emu.dialect("gate").configure(limits={"private": (3, 10.0)})
    for remaining in ("2", "1", "0"):
        status, _, headers = await signed(emu, "GET", "/api/v4/spot/accounts")
        assert status == 200 and headers["X-Gate-RateLimit-Requests-Remain"] == remaining
    status, body, headers = await signed(emu, "GET", "/api/v4/spot/accounts")
    assert (status, body["label"], headers["X-Gate-RateLimit-Limit"]) == (429, "TOO_MANY_REQUESTS", "3")
    assert int(headers["X-Gate-RateLimit-Reset-Timestamp"]) > time.time() * 1000 + 9_000
    status, _, _ = await signed(emu, "GET", "/api/v4/spot/my_trades")
    assert status == 200  # limits are per endpoint


async def test_injected_429_and_5xx(ex, emu):
    await ex.load_markets()
    emu.rate_limit_next("/api/v4/spot/orders", status=429, method="POST")
    with pytest.raises(ccxt.RateLimitExceeded, match="TOO_MANY_REQUESTS"):
        await ex.create_order("BTC/USDT", "limit", "buy", 0.001, 50000)
    assert emu.orders("gate", KEY) == []
    emu.fail_next("/api/v4/spot/accounts", status=503)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await ex.fetch_balance()
    emu.fail_next("/api/v4/spot/accounts", status=504)
    with pytest.raises(ccxt.RequestTimeout):
        await ex.fetch_balance()


async def test_mangled_trades(ex, emu):
    await ex.load_markets()
    await ex.create_order("BTC/USDT", "market", "sell", 0.001)
    await ex.create_order("BTC/USDT", "market", "sell", 0.002)
    emu.mangle_trades_next("gate", "duplicate")
    dup = await ex.fetch_my_trades("BTC/USDT")
    assert len(dup) == 4 and len({t["id"] for t in dup}) == 2
    raw = {"currency_pair": "BTC_USDT", "from": int(time.time()) + 5}
    assert await ex.privateSpotGetMyTrades(raw) == []
    emu.mangle_trades_next("gate", "overlap")  # the from/to filter is ignored once
    assert len(await ex.privateSpotGetMyTrades(raw)) == 2
    emu.mangle_trades_next("gate", "reorder")
    reordered = await ex.privateSpotGetMyTrades({"currency_pair": "BTC_USDT"})
    assert [x["amount"] for x in reordered] == ["0.001", "0.002"]  # Gate sends newest first


# ---------------------------------------------------------------------------- market data
async def test_ticker_book_and_ohlcv_from_engine_candles(ex, emu):
    await ex.load_markets()
    t0 = 1_700_000_100_000  # a multiple of 5 minutes
    rows = [(t0 + i * 60_000, 100 + i, 101 + i, 99 + i, 100.5 + i, 10) for i in range(10)]
    emu.load_candles("gate", "ETH/USDT", rows)
    ohlcv = await ex.fetch_ohlcv("ETH/USDT", "1m", since=t0, limit=5)
    assert [c[0] for c in ohlcv] == [t0 + i * 60_000 for i in range(5)]
    assert ohlcv[0][1:] == [100, 101, 99, 100.5, 10]
    assert len(await ex.fetch_ohlcv("ETH/USDT", "1m", limit=3)) == 3
    five = await ex.fetch_ohlcv("ETH/USDT", "5m", since=t0)
    assert five[0][1:] == [100, 105, 99, 104.5, 50] and len(five) == 2
    emu.set_mark("gate", "ETH/USDT", 3000)
    ticker = await ex.fetch_ticker("ETH/USDT")
    assert (ticker["last"], ticker["bid"], ticker["ask"]) == (3000, 2999.99, 3000.01)
    assert set(await ex.fetch_tickers()) == {"BTC/USDT", "ETH/USDT", "ETH/BTC"}
    book = await ex.fetch_order_book("BTC/USDT", 5)
    assert book["bids"][0][0] == 59999.9 and book["asks"][0][0] == 60000.1 and len(book["bids"]) == 5
