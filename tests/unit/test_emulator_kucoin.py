"""Unmodified ccxt (async) against the emulator's KuCoin spot (HF) dialect."""

from __future__ import annotations

import base64
import hashlib
import hmac
from decimal import Decimal

import ccxt
import pytest

from appliance.venues.ccxt.client_ids import Dedup, client_id_spec
from tests.emulator import ExchangeEmulator, exchange_client
from tests.emulator.kucoin import KucoinDialect

KEY = "lyra-kucoin-test-key"
SECRET = KucoinDialect.test_secret("lyra-kucoin-unit")
PASSWORD = "lyra-kucoin-passphrase"
BALANCES = {"USDT": "10000", "BTC": "1", "ETH": "5"}


@pytest.fixture
async def emu():
    async with ExchangeEmulator(("kucoin",), accounts={KEY: (SECRET, BALANCES, PASSWORD)},
                                dialect_options={"kucoin": {"pool_scale": 50}}) as e:
        yield e


@pytest.fixture
async def ex(emu):
    client = exchange_client(emu, "kucoin", KEY, SECRET, password=PASSWORD)
    yield client
    await client.close()


def D(x: object) -> Decimal:
    return Decimal(str(x))


async def test_every_url_is_local_and_markets_have_kucoin_increments(ex, emu):
    assert all(u == emu.url_of("kucoin") for k, u in ex.urls["api"].items()
               if k in ("public", "private", "uta", "utaPrivate"))
    markets = await ex.load_markets()
    assert set(markets) == {"BTC/USDT", "ETH/USDT", "ETH/BTC"}
    btc = markets["BTC/USDT"]
    assert btc["id"] == "BTC-USDT" and btc["precision"] == {"amount": 1e-8, "price": 0.1}
    assert btc["limits"]["amount"]["min"] == 0.00001 and btc["limits"]["cost"]["min"] == 0.1
    assert btc["taker"] == 0.001 and not btc["margin"]
    assert ex.options["hf"] is True  # from /api/v1/hf/accounts/opened


async def test_order_life_cycle_locks_and_releases_funds(ex, emu):
    await ex.load_markets()
    o = await ex.create_order("BTC/USDT", "limit", "buy", 0.05, 50000, {"clientOrderId": "lyra-k1"})
    assert emu.requests_to("/api/v1/hf/orders", method="POST")[-1].processed
    assert emu.requests_to("/api/ua/v1/account/mode")  # ccxt checks for a unified account
    placed = emu.orders("kucoin", KEY)[0]
    assert (placed.client_order_id, placed.qty, placed.price) == ("lyra-k1", D("0.05"), D("50000"))
    lock = D("0.05") * 50000 * D("1.001")  # KuCoin charges fees in quote: a buy holds cost + fee
    bal = await ex.fetch_balance()
    assert (D(bal["USDT"]["free"]), D(bal["USDT"]["used"])) == (D("10000") - lock, lock)
    by_id = await ex.fetch_order(o["id"], "BTC/USDT")
    by_cid = await ex.fetch_order(None, "BTC/USDT", {"clientOrderId": "lyra-k1"})
    assert by_id["id"] == by_cid["id"] == o["id"] and by_cid["clientOrderId"] == "lyra-k1"
    assert (by_id["status"], by_id["amount"], by_id["price"]) == ("open", 0.05, 50000)
    assert [x["id"] for x in await ex.fetch_open_orders("BTC/USDT")] == [o["id"]]
    emu.fill_order("kucoin", placed, "0.02")
    part = await ex.fetch_order(o["id"], "BTC/USDT")
    assert (part["status"], part["filled"], part["cost"]) == ("open", 0.02, 1000)
    await ex.cancel_order(o["id"], "BTC/USDT")
    assert (await ex.fetch_order(o["id"], "BTC/USDT"))["status"] == "canceled"
    fee = D("1000") * D("0.001")
    assert emu.balances("kucoin", KEY)["USDT"] == (D("10000") - 1000 - fee, 0)
    assert emu.balances("kucoin", KEY)["BTC"] == (D("1.02"), 0)
    trades = await ex.fetch_order_trades(o["id"], "BTC/USDT")
    assert [(t["amount"], t["price"], t["takerOrMaker"], t["fee"]["cost"]) for t in trades] == [
        (0.02, 50000, "maker", float(fee))]
    closed = await ex.fetch_closed_orders("BTC/USDT")
    assert [c["id"] for c in closed] == [o["id"]]


async def test_market_orders_by_size_and_funds_and_ioc(ex, emu):
    await ex.load_markets()
    sell = await ex.create_order("ETH/USDT", "market", "sell", 1)
    got = await ex.fetch_order(sell["id"], "ETH/USDT")
    assert (got["status"], got["filled"], got["average"]) == ("closed", 1, 3000)
    buy = await ex.create_order("ETH/USDT", "market", "buy", None, params={"cost": 600})
    got = await ex.fetch_order(buy["id"], "ETH/USDT")
    assert (got["status"], got["filled"]) == ("closed", 0.2)
    assert emu.balances("kucoin", KEY)["USDT"][0] == D("10000") + 3000 - 3 - 600 - D("0.6")
    ioc = await ex.create_order("ETH/USDT", "limit", "buy", 1, 2000, {"timeInForce": "IOC"})
    assert (await ex.fetch_order(ioc["id"], "ETH/USDT"))["status"] == "canceled"
    assert emu.balances("kucoin", KEY)["USDT"][1] == 0


ERRORS = [
    ("insufficient balance", lambda ex: ex.create_order("BTC/USDT", "limit", "buy", 1, 50000),
     ccxt.InsufficientFunds, "200004"),
    ("below baseMinSize", lambda ex: ex.create_order("ETH/USDT", "limit", "buy", 0.00005, 2000),
     ccxt.InvalidOrder, "400100"),
    ("price increment", lambda ex: ex.create_order("BTC/USDT", "limit", "buy", 0.01, 50000,
                                                  {"price": "50000.05"}), ccxt.BadRequest, "400100"),
    ("fetch unknown order", lambda ex: ex.fetch_order("6711b8a2e4c3a0000000ffff", "BTC/USDT"),
     ccxt.OrderNotFound, "400100"),
    ("cancel unknown order", lambda ex: ex.cancel_order("6711b8a2e4c3a0000000ffff", "BTC/USDT"),
     ccxt.OrderNotFound, "400100"),
]


@pytest.mark.parametrize("what,call,exc,code", ERRORS, ids=[e[0] for e in ERRORS])
async def test_error_mapping(ex, emu, what, call, exc, code):
    await ex.load_markets()
    with pytest.raises(exc) as err:
        await call(ex)
    assert type(err.value) is exc
    assert emu.requests[-1].error == code
    assert emu.orders("kucoin", KEY) == []


async def test_duplicate_client_oid_is_not_refused(ex, emu):
    assert client_id_spec("kucoin").dedup is Dedup.NONE
    await ex.load_markets()
    first = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 50000, {"clientOrderId": "same"})
    second = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 49000, {"clientOrderId": "same"})
    assert first["id"] != second["id"] and len(emu.orders("kucoin", KEY)) == 2
    found = await ex.fetch_order(None, "BTC/USDT", {"clientOrderId": "same"})
    assert found["id"] == second["id"]  # the newest one


@pytest.mark.parametrize("case,exc,code", [
    ("bad signature", ccxt.AuthenticationError, "400005"),
    ("unknown key", ccxt.AuthenticationError, "400003"),
    ("wrong passphrase", ccxt.AuthenticationError, "400004"),
    ("stale timestamp", ccxt.InvalidNonce, "400002"),
])
async def test_authentication_failures(emu, case, exc, code):
    key, secret, password = KEY, SECRET, PASSWORD
    if case == "bad signature":
        secret = KucoinDialect.test_secret("another")
    elif case == "unknown key":
        key = "nobody"
    elif case == "wrong passphrase":
        password = "wrong"
    else:
        emu.set_clock_skew(6_000)  # KuCoin: more than 5 s from server time
    client = exchange_client(emu, "kucoin", key, secret, password=password,
                             options={"hf": True, "uta": False})
    if case == "bad signature":  # the v2 passphrase header is an HMAC with the secret: send the right one
        good = base64.b64encode(hmac.new(SECRET.encode(), PASSWORD.encode(), hashlib.sha256).digest()).decode()
        sign = client.sign

        def bad_sign(*args, **kwargs):
            req = sign(*args, **kwargs)
            if req["headers"] and "KC-API-PASSPHRASE" in req["headers"]:
                req["headers"]["KC-API-PASSPHRASE"] = good
            return req
        client.sign = bad_sign
    try:
        with pytest.raises(exc):
            await client.fetch_balance()
        rec = [r for r in emu.requests if r.status == 401][-1]
        assert rec.error == code
    finally:
        await client.close()


async def test_documented_pool_limit_gives_429000_with_gw_headers(emu):
    client = exchange_client(emu, "kucoin", KEY, SECRET, password=PASSWORD, pace=False, enableRateLimit=False)
    try:
        await client.load_markets()
        await client.fetch_balance()  # ccxt learns the account mode once
        emu.dialect("kucoin").configure(pool_scale=0.01)  # a 40-weight spot pool
        for _ in range(20):  # GET active orders weighs 2
            await client.fetch_open_orders("BTC/USDT")
        with pytest.raises(ccxt.RateLimitExceeded):
            await client.fetch_open_orders("BTC/USDT")
        last = emu.requests_to("/api/v1/hf/orders/active")[-1]
        assert (last.status, last.error, last.processed) == (429, "429000", False)
        emu.rate_limit_next("/api/v1/hf/orders", method="POST")
        emu.dialect("kucoin").configure(pool_scale=1)
        with pytest.raises(ccxt.RateLimitExceeded):
            await client.create_order("BTC/USDT", "limit", "buy", 0.01, 50000)
        assert emu.orders("kucoin", KEY) == []
        await client.fetch_open_orders("BTC/USDT")
        headers = client.last_response_headers
        assert (headers["gw-ratelimit-limit"], headers["gw-ratelimit-remaining"]) == ("4000", "3998")
    finally:
        await client.close()


async def test_public_market_data(ex, emu):
    rows = [(1_700_000_000_000 + i * 60_000, 100 + i, 110 + i, 90 + i, 105 + i, 2) for i in range(5)]
    emu.load_candles("kucoin", "BTC/USDT", rows)
    ohlcv = await ex.fetch_ohlcv("BTC/USDT", "1m", since=rows[1][0], limit=3)
    assert ohlcv == [[r[0], r[1], r[2], r[3], r[4], r[5]] for r in rows[1:4]]
    emu.set_mark("kucoin", "BTC/USDT", 61000)
    t = await ex.fetch_ticker("BTC/USDT")
    assert (t["last"], t["bid"], t["ask"]) == (61000, 60999.9, 61000.1)
    assert set(await ex.fetch_tickers()) == {"BTC/USDT", "ETH/USDT", "ETH/BTC"}
    book = await ex.fetch_order_book("ETH/BTC", 20)
    assert book["bids"][0][0] == 0.04999 and len(book["asks"]) == 20
    assert abs(await ex.fetch_time() - emu.engine("kucoin").now_ms()) < 5_000
