"""Unmodified ccxt (async) against the emulator's OKX spot dialect."""

from __future__ import annotations

from decimal import Decimal

import ccxt
import pytest

from appliance.venues.ccxt.client_ids import Dedup, client_id_spec
from tests.emulator import ExchangeEmulator, exchange_client
from tests.emulator.okx import OkxDialect

KEY = "lyra-okx-test-key"
SECRET = OkxDialect.test_secret("lyra-okx-unit")
PASSWORD = "lyra-okx-passphrase"
BALANCES = {"USDT": "10000", "BTC": "1", "ETH": "5"}


@pytest.fixture
async def emu():
    async with ExchangeEmulator(("okx",), accounts={KEY: (SECRET, BALANCES, PASSWORD)},
                                dialect_options={"okx": {"limit_scale": 50}}) as e:
        yield e


@pytest.fixture
async def ex(emu):
    client = exchange_client(emu, "okx", KEY, SECRET, password=PASSWORD)
    yield client
    await client.close()


def D(x: object) -> Decimal:
    return Decimal(str(x))


async def test_every_url_is_local_and_markets_have_okx_precision(ex, emu):
    assert ex.urls["api"]["rest"] == emu.url_of("okx")
    markets = await ex.load_markets()
    assert set(markets) == {"BTC/USDT", "ETH/USDT", "ETH/BTC"}
    btc = markets["BTC/USDT"]
    assert btc["id"] == "BTC-USDT" and btc["spot"] and btc["active"]
    assert btc["precision"] == {"amount": 1e-8, "price": 0.1}
    assert btc["limits"]["amount"]["min"] == 0.00001
    assert markets["ETH/BTC"]["precision"]["price"] == 0.00001
    paths = {r.path for r in emu.requests}
    assert paths == {"/api/v5/public/instruments", "/api/v5/asset/currencies"}  # spot only


async def test_order_life_cycle_locks_and_releases_funds(ex, emu):
    await ex.load_markets()
    o = await ex.create_order("BTC/USDT", "limit", "buy", 0.05, 50000, {"clientOrderId": "lyraA1"})
    assert emu.requests_to("/api/v5/trade/batch-orders")[-1].processed  # ccxt's default create path
    placed = emu.orders("okx", KEY)[0]
    assert (placed.client_order_id, placed.qty, placed.price) == ("lyraA1", D("0.05"), D("50000"))
    bal = await ex.fetch_balance()
    assert bal["USDT"] == {"free": 10000 - 2500, "used": 2500, "total": 10000}
    by_id = await ex.fetch_order(o["id"], "BTC/USDT")
    by_cid = await ex.fetch_order(None, "BTC/USDT", {"clientOrderId": "lyraA1"})
    assert by_id["id"] == by_cid["id"] == o["id"] and by_cid["clientOrderId"] == "lyraA1"
    assert by_id["status"] == "open" and by_id["amount"] == 0.05 and by_id["price"] == 50000
    assert [x["id"] for x in await ex.fetch_open_orders("BTC/USDT")] == [o["id"]]
    # a counterparty takes 0.02, then the rest is cancelled
    emu.fill_order("okx", placed, "0.02")
    part = await ex.fetch_order(o["id"], "BTC/USDT")
    assert part["status"] == "open" and part["filled"] == 0.02 and part["average"] == 50000
    canceled = await ex.cancel_order(o["id"], "BTC/USDT")
    assert canceled["id"] == o["id"]
    assert (await ex.fetch_order(o["id"], "BTC/USDT"))["status"] == "canceled"
    free, locked = emu.balances("okx", KEY)["USDT"]
    assert (free, locked) == (D("10000") - D("0.02") * 50000, 0)
    fee = D("0.02") * D("0.001")  # OKX charges a buyer in the asset received
    assert emu.balances("okx", KEY)["BTC"] == (D("1") + D("0.02") - fee, 0)
    trades = await ex.fetch_order_trades(o["id"], "BTC/USDT")
    assert [(t["amount"], t["price"], t["takerOrMaker"]) for t in trades] == [(0.02, 50000, "maker")]
    assert trades[0]["fee"] == {"cost": float(fee), "currency": "BTC"}  # OKX's negative fee, un-negated


async def test_market_orders_ioc_and_post_only(ex, emu):
    await ex.load_markets()
    m = await ex.create_order("ETH/USDT", "market", "sell", 1)
    got = await ex.fetch_order(m["id"], "ETH/USDT")
    assert (got["status"], got["filled"], got["average"]) == ("closed", 1, 3000)
    assert got["fee"] == {"cost": 3.0, "currency": "USDT"}
    assert emu.balances("okx", KEY)["USDT"][0] == D("10000") + 3000 - 3
    ioc = await ex.create_order("ETH/USDT", "limit", "buy", 1, 2000, {"timeInForce": "IOC"})
    got = await ex.fetch_order(ioc["id"], "ETH/USDT")
    assert (got["status"], got["timeInForce"], got["filled"]) == ("canceled", "IOC", 0)
    po = await ex.create_order("ETH/USDT", "limit", "buy", 1, 3100, {"postOnly": True})
    got = await ex.fetch_order(po["id"], "ETH/USDT")  # OKX accepts, then cancels a crossing post-only
    assert got["status"] == "canceled" and got["postOnly"] and got["info"]["cancelSource"] == "31"
    assert emu.balances("okx", KEY)["USDT"][1] == 0
    closed = await ex.fetch_closed_orders("ETH/USDT")  # ccxt asks state=filled
    assert [c["id"] for c in closed] == [m["id"]]


ERRORS = [
    # (what, call, ccxt class, OKX code)
    ("insufficient balance", lambda ex: ex.create_order("BTC/USDT", "limit", "buy", 1, 50000),
     ccxt.InsufficientFunds, "51008"),
    ("below minSz", lambda ex: ex.create_order("ETH/USDT", "limit", "buy", 0.0005, 2000),
     ccxt.InvalidOrder, "51020"),
    ("price off tick", lambda ex: ex.create_order("BTC/USDT", "limit", "buy", 0.01, 50000.05,
                                                 {"px": "50000.05"}), ccxt.BadRequest, "51000"),
    ("fetch unknown order", lambda ex: ex.fetch_order("123", "BTC/USDT"), ccxt.OrderNotFound, "51603"),
    ("cancel unknown order", lambda ex: ex.cancel_order("123", "BTC/USDT"), ccxt.OrderNotFound, "51400"),
]


@pytest.mark.parametrize("what,call,exc,code", ERRORS, ids=[e[0] for e in ERRORS])
async def test_error_mapping(ex, emu, what, call, exc, code):
    await ex.load_markets()
    with pytest.raises(exc) as err:
        await call(ex)
    assert type(err.value) is exc
    assert emu.requests[-1].error == code
    assert not [o for o in emu.orders("okx", KEY) if o.is_open]


async def test_duplicate_client_id_refused_while_open_only(ex, emu):
    assert client_id_spec("okx").dedup is Dedup.OPEN
    await ex.load_markets()
    first = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 50000, {"clientOrderId": "dup1"})
    with pytest.raises(ccxt.InvalidOrder, match="Duplicated clOrdId"):
        await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 50000, {"clientOrderId": "dup1"})
    assert emu.requests[-1].error == "51016"
    await ex.cancel_order(first["id"], "BTC/USDT")
    again = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 50000, {"clientOrderId": "dup1"})
    assert again["id"] != first["id"] and len(emu.orders("okx", KEY)) == 2


@pytest.mark.parametrize("case,exc,code", [
    ("bad signature", ccxt.AuthenticationError, "50113"),
    ("unknown key", ccxt.AuthenticationError, "50111"),
    ("wrong passphrase", ccxt.AuthenticationError, "50105"),
    ("stale timestamp", ccxt.InvalidNonce, "50102"),
])
async def test_authentication_failures(emu, case, exc, code):
    key, secret, password = KEY, SECRET, PASSWORD
    if case == "bad signature":
        secret = OkxDialect.test_secret("another")
    elif case == "unknown key":
        key = "nobody"
    elif case == "wrong passphrase":
        password = "wrong"
    else:
        emu.set_clock_skew(31_000)  # OKX: "requests expire 30 seconds after the timestamp"
    client = exchange_client(emu, "okx", key, secret, password=password)
    try:
        with pytest.raises(exc):
            await client.fetch_balance(params={})
        rec = [r for r in emu.requests if r.path == "/api/v5/asset/currencies"][-1]
        assert (rec.status, rec.error) == (401, code)
    finally:
        await client.close()


async def test_documented_rate_limit_gives_429_50011(emu):
    emu.dialect("okx").configure(limit_scale=1)
    client = exchange_client(emu, "okx", KEY, SECRET, password=PASSWORD, pace=False, enableRateLimit=False)
    try:
        await client.load_markets()
        for _ in range(10):  # account/balance: 10 requests per 2 s
            await client.fetch_balance()
        with pytest.raises(ccxt.RateLimitExceeded):
            await client.fetch_balance()
        last = emu.requests_to("/api/v5/account/balance")[-1]
        assert (last.status, last.error, last.processed) == (429, "50011", False)
        emu.rate_limit_next("/api/v5/trade/batch-orders", method="POST")
        with pytest.raises(ccxt.RateLimitExceeded):  # injected 429 carries OKX's body
            await client.create_order("BTC/USDT", "limit", "buy", 0.01, 50000)
        assert emu.orders("okx", KEY) == []
    finally:
        await client.close()


async def test_public_market_data(ex, emu):
    rows = [(1_700_000_000_000 + i * 60_000, 100 + i, 110 + i, 90 + i, 105 + i, 2) for i in range(5)]
    emu.load_candles("okx", "BTC/USDT", rows)
    ohlcv = await ex.fetch_ohlcv("BTC/USDT", "1m", since=rows[1][0], limit=3)
    assert ohlcv == [[r[0], r[1], r[2], r[3], r[4], r[5]] for r in rows[1:4]]
    emu.set_mark("okx", "BTC/USDT", 61000)
    t = await ex.fetch_ticker("BTC/USDT")
    assert (t["last"], t["bid"], t["ask"]) == (61000, 60999.9, 61000.1)
    assert set(await ex.fetch_tickers()) == {"BTC/USDT", "ETH/USDT", "ETH/BTC"}
    book = await ex.fetch_order_book("ETH/BTC", 5)
    assert book["bids"][0][0] == 0.04999 and book["asks"][0][0] == 0.05001 and len(book["bids"]) == 5
    assert abs(await ex.fetch_time() - emu.engine("okx").now_ms()) < 5_000
