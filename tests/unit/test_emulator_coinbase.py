"""Unmodified ccxt (async) against the emulator's Coinbase Advanced Trade dialect (CDP JWT keys)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import aiohttp
import ccxt
import pytest

from tests.emulator import ExchangeEmulator, exchange_client
from tests.emulator.coinbase import V3, CoinbaseDialect

KEY = "organizations/lyra-test-org/apiKeys/lyra-test-key"
SECRET = CoinbaseDialect.test_secret("lyra-coinbase-unit-test")
BALANCES = {"USDT": "10000", "BTC": "1", "ETH": "5"}


@pytest.fixture
async def emu():
    async with ExchangeEmulator(("coinbase",), accounts={KEY: (SECRET, BALANCES)},
                                dialect_options={"coinbase": {"private_per_s": 1000, "public_per_s": 1000}}) as e:
        yield e


@pytest.fixture
async def ex(emu):
    client = exchange_client(emu, "coinbase", KEY, SECRET)
    yield client
    await client.close()


def D(x: object) -> Decimal:
    return Decimal(str(x))


def test_test_secret_is_a_p256_pem_and_deterministic():
    assert SECRET.startswith("-----BEGIN EC PRIVATE KEY-----")
    assert SECRET == CoinbaseDialect.test_secret("lyra-coinbase-unit-test") != CoinbaseDialect.test_secret("x")


# ---------------------------------------------------------------------------- markets / balance
async def test_load_markets_spot_products_with_increments(ex, emu):
    assert all(u.startswith(emu.url_of("coinbase")) for u in ex.urls["api"].values())
    markets = await ex.load_markets()
    assert set(markets) == {"BTC/USDT", "ETH/USDT", "ETH/BTC", "BTC/USD"}
    btc = markets["BTC/USDT"]
    assert btc["id"] == "BTC-USDT" and btc["spot"] is True
    assert btc["precision"] == {"amount": 1e-8, "price": 0.01}
    assert btc["limits"]["amount"] == {"min": 1e-8, "max": 3400} and btc["limits"]["cost"]["min"] == 1
    assert markets["ETH/BTC"]["precision"]["price"] == 0.00001
    assert btc["taker"] == 0.001  # from transaction_summary's fee tier (the emulator's fee rate)
    paths = [r.path for r in emu.requests]
    # ccxt's fetch_currencies (v2) always runs; futures are asked for and come back empty
    assert {"/v2/currencies", "/v2/currencies/crypto", "/v2/exchange-rates", f"{V3}/transaction_summary"} <= set(paths)
    assert [r.query for r in emu.requests_to(f"{V3}/market/products")].count("product_type=FUTURE") == 1


async def test_order_life_cycle_balances_by_arithmetic(ex, emu):
    await ex.load_markets()
    created = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 50000, {"client_order_id": "lyra-cb-1"})
    placed, = emu.orders("coinbase", KEY)
    assert placed.client_order_id == "lyra-cb-1" and created["clientOrderId"] == "lyra-cb-1"
    sent = emu.requests_to(f"{V3}/orders", method="POST")[-1]
    assert sent.processed and sent.status == 200
    # a buy holds cost + fee in quote: 0.01 * 50000 * 1.001
    hold = D("0.01") * 50000 * D("1.001")
    bal = await ex.fetch_balance()
    assert (D(bal["free"]["USDT"]), D(bal["used"]["USDT"])) == (10000 - hold, hold)
    got = await ex.fetch_order(created["id"], "BTC/USDT")
    assert (got["status"], got["type"], got["timeInForce"], got["price"], got["amount"]) == ("open", "limit", "GTC",
                                                                                          50000, 0.01)
    assert [o["id"] for o in await ex.fetch_open_orders("BTC/USDT")] == [created["id"]]

    emu.fill_order("coinbase", placed, "0.004")
    half = await ex.fetch_order(created["id"])
    assert (half["status"], half["filled"]) == ("open", 0.004)
    emu.fill_order("coinbase", placed)
    done = await ex.fetch_order(created["id"])
    assert (done["status"], done["filled"], done["average"]) == ("closed", 0.01, 50000)
    assert [o["id"] for o in await ex.fetch_closed_orders("BTC/USDT")] == [created["id"]]
    trades = await ex.fetch_my_trades("BTC/USDT")
    assert sorted(t["amount"] for t in trades) == [0.004, 0.006]
    assert {t["order"] for t in trades} == {created["id"]} and {t["takerOrMaker"] for t in trades} == {"maker"}
    assert sum(D(t["fee"]["cost"]) for t in trades) == D("0.5")  # 500 * 0.001, in USDT
    bal = await ex.fetch_balance()
    assert D(bal["total"]["USDT"]) == 10000 - D("500.5") and D(bal["used"]["USDT"]) == 0
    assert D(bal["total"]["BTC"]) == D("1.01")

    # a market sell fills at the mark (60000), fee in quote
    sold = await ex.create_order("BTC/USDT", "market", "sell", 0.01, None, {"client_order_id": "lyra-cb-2"})
    got = await ex.fetch_order(sold["id"])
    assert (got["status"], got["filled"], got["average"]) == ("closed", 0.01, 60000)
    bal = await ex.fetch_balance()
    assert D(bal["total"]["USDT"]) == 10000 - D("500.5") + 600 - D("0.6") and D(bal["total"]["BTC"]) == 1


async def test_cancel_and_unknown_orders(ex, emu):
    await ex.load_markets()
    created = await ex.create_order("ETH/USDT", "limit", "sell", 1, 3500, {"client_order_id": "lyra-cb-c"})
    assert (await ex.fetch_balance())["used"]["ETH"] == 1
    await ex.cancel_order(created["id"])
    got = await ex.fetch_order(created["id"])
    assert got["status"] == "canceled"
    assert (await ex.fetch_balance())["used"]["ETH"] == 0
    # Coinbase's batch_cancel answers success:false, which ccxt turns into BadRequest
    with pytest.raises(ccxt.BadRequest):
        await ex.cancel_order(created["id"])
    assert emu.requests_to(f"{V3}/orders/batch_cancel")[-1].error == "UNKNOWN_CANCEL_ORDER"
    # an unknown order id: {"error": "unknown", ...}; ccxt's broad rule never matches it
    with pytest.raises(ccxt.ExchangeError) as info:
        await ex.fetch_order("00000000-0000-4000-8000-000000000000")
    assert type(info.value) is ccxt.ExchangeError
    assert emu.requests[-1].status == 404


async def test_duplicate_client_order_id_returns_the_existing_order(ex, emu):
    await ex.load_markets()
    first = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 50000, {"client_order_id": "lyra-dup"})
    again = await ex.create_order("BTC/USDT", "limit", "buy", 0.02, 51000, {"client_order_id": "lyra-dup"})
    assert again["id"] == first["id"] and len(emu.orders("coinbase", KEY)) == 1
    emu.fill_order("coinbase", emu.orders("coinbase", KEY)[0])
    later = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 50000, {"client_order_id": "lyra-dup"})
    assert later["id"] == first["id"] and len(emu.orders("coinbase", KEY)) == 1  # also once filled


async def test_order_errors_map_to_ccxt_exceptions(ex, emu):
    await ex.load_markets()
    with pytest.raises(ccxt.InsufficientFunds):  # preview_failure_reason PREVIEW_INSUFFICIENT_FUND
        await ex.create_order("BTC/USDT", "limit", "buy", 1, 50000, {"client_order_id": "lyra-nf"})
    assert emu.requests[-1].error == "INSUFFICIENT_FUND" and emu.requests[-1].status == 200
    # below quote_min_size (1 USDT): ccxt has no entry for it -> plain ExchangeError
    with pytest.raises(ccxt.ExchangeError) as info:
        await ex.create_order("BTC/USDT", "limit", "buy", 0.00001, 50000, {"client_order_id": "lyra-small"})
    assert type(info.value) is ccxt.ExchangeError and emu.requests[-1].error == "INVALID_LIMIT_PRICE"
    # post-only that would take
    with pytest.raises(ccxt.ExchangeError) as info:
        await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 61000, {"client_order_id": "lyra-po", "postOnly": True})
    assert type(info.value) is ccxt.ExchangeError and emu.requests[-1].error == "INVALID_LIMIT_PRICE_POST_ONLY"
    assert emu.orders("coinbase", KEY) == []


async def test_ioc_limit_expires_unfilled_and_market_buy_by_cost(ex, emu):
    await ex.load_markets()
    ioc = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 59000, {"client_order_id": "lyra-ioc",
                                                                          "timeInForce": "IOC"})
    got = await ex.fetch_order(ioc["id"])
    assert (got["status"], got["filled"], got["timeInForce"]) == ("canceled", 0, "IOC")
    buy = await ex.create_market_buy_order_with_cost("BTC/USDT", 600, {"client_order_id": "lyra-cost"})
    got = await ex.fetch_order(buy["id"])
    assert (got["status"], got["filled"]) == ("closed", 0.01)  # 600 / 60000


async def test_market_data_ticker_book_ohlcv_time(ex, emu):
    emu.set_mark("coinbase", "BTC/USDT", 61000)
    t = await ex.fetch_ticker("BTC/USDT")
    assert (t["last"], t["bid"], t["ask"]) == (61000, 60999.99, 61000.01)
    book = await ex.fetch_order_book("BTC/USDT", 3)
    assert book["bids"] == [[60999.99, 1], [60999.98, 1], [60999.97, 1]] and book["asks"][0] == [61000.01, 1]
    start = (emu.engine("coinbase").now_ms() // 60_000 - 10) * 60_000
    rows = [(start + i * 60_000, 100 + i, 110 + i, 90 + i, 105 + i, 2) for i in range(10)]
    emu.load_candles("coinbase", "ETH/USDT", rows, set_mark=False)
    candles = await ex.fetch_ohlcv("ETH/USDT", "1m", since=start)
    assert candles == [[r[0], r[1], r[2], r[3], r[4], r[5]] for r in rows]
    five = await ex.fetch_ohlcv("ETH/USDT", "5m", since=start - start % 300_000)
    assert all(c[0] % 300_000 == 0 for c in five) and sum(c[5] for c in five) == 20
    emu.set_clock_skew(5_000)
    assert abs(await ex.fetch_time() - emu.engine("coinbase").now_ms()) < 2_000


# ---------------------------------------------------------------------------- authentication
async def test_jwt_from_another_key_or_unknown_key_is_unauthorized(emu):
    wrong = exchange_client(emu, "coinbase", KEY, CoinbaseDialect.test_secret("someone else"))
    unknown = exchange_client(emu, "coinbase", "organizations/x/apiKeys/unknown", SECRET)
    try:
        for client in (wrong, unknown):
            with pytest.raises(ccxt.AuthenticationError):
                await client.fetch_balance(params={"v3": True})
            last = emu.requests[-1]
            assert last.status == 401 and str(last.error).startswith("401:")
        assert {str(r.error) for r in emu.requests if r.status == 401} >= {"401:signature", "401:unknown key"}
    finally:
        await wrong.close()
        await unknown.close()


async def test_expired_jwt_and_token_for_another_uri(ex, emu):
    await ex.load_markets()
    emu.set_clock_skew(121_000)  # the exchange is past the token's 120 s lifetime
    with pytest.raises(ccxt.AuthenticationError):
        await ex.fetch_balance()
    assert emu.requests[-1].error == "401:expired"
    emu.set_clock_skew(0)
    # a valid token for GET /accounts replayed against /transaction_summary
    signed = ex.sign("brokerage/accounts", ["v3", "private"], "GET", {})
    async with aiohttp.ClientSession() as http:
        async with http.get(emu.url_of("coinbase") + f"{V3}/transaction_summary", headers=signed["headers"]) as r:
            assert (r.status, await r.text()) == (401, "Unauthorized\n")
        async with http.get(signed["url"], headers=signed["headers"]) as r:
            assert r.status == 200 and "accounts" in await r.json()


# ---------------------------------------------------------------------------- limits and faults
async def test_private_rate_limit_per_second_gives_rate_limit_exceeded(emu):
    emu.dialect("coinbase").configure(private_per_s=3)
    client = exchange_client(emu, "coinbase", KEY, SECRET, pace=False, enableRateLimit=False)
    try:
        await client.load_markets()
        emu.dialect("coinbase").configure(private_per_s=3)  # fresh window after load_markets
        results = await asyncio.gather(*(client.fetch_balance() for _ in range(8)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, Exception)]
        assert errors and all(type(e) is ccxt.RateLimitExceeded for e in errors)
        refused = [r for r in emu.requests_to(f"{V3}/accounts") if r.status == 429]
        assert refused and all(r.error == "rate_limit_exceeded" and not r.processed for r in refused)
    finally:
        await client.close()


async def test_paced_client_stays_under_the_private_limit(emu):
    emu.dialect("coinbase").configure(private_per_s=20, public_per_s=20)
    client = exchange_client(emu, "coinbase", KEY, SECRET, headroom=1.2)
    try:
        await client.load_markets()
        for _ in range(30):
            await client.fetch_open_orders("BTC/USDT")
        assert not [r for r in emu.requests if r.status == 429]
    finally:
        await client.close()


async def test_injected_429_and_5xx(ex, emu):
    await ex.load_markets()
    emu.rate_limit_next(f"{V3}/orders", method="POST", retry_after=1)
    with pytest.raises(ccxt.RateLimitExceeded):
        await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 50000, {"client_order_id": "lyra-429"})
    assert emu.orders("coinbase", KEY) == []
    emu.fail_next(f"{V3}/accounts", status=503)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await ex.fetch_balance()
    emu.fail_next(f"{V3}/accounts", status=504)
    with pytest.raises(ccxt.RequestTimeout):
        await ex.fetch_balance()


async def test_connection_dropped_after_accept_leaves_one_order_found_by_client_id(ex, emu):
    await ex.load_markets()
    emu.disconnect_next(f"{V3}/orders", method="POST", when="after")
    with pytest.raises(ccxt.NetworkError):
        await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 50000, {"client_order_id": "lyra-drop"})
    found = [o for o in await ex.fetch_open_orders("BTC/USDT") if o["clientOrderId"] == "lyra-drop"]
    assert len(found) == 1 and len(emu.orders("coinbase", KEY)) == 1


async def test_fills_mangled_duplicate_reorder_overlap(ex, emu):
    await ex.load_markets()
    for i in range(3):
        await ex.create_order("BTC/USDT", "market", "sell", 0.01, None, {"client_order_id": f"lyra-m{i}"})
    plain = await ex.fetch_my_trades("BTC/USDT")
    assert len(plain) == 3
    emu.mangle_trades_next("coinbase", "duplicate")
    assert len(await ex.fetch_my_trades("BTC/USDT")) == 6
    emu.mangle_trades_next("coinbase", "reorder")
    raw = await ex.v3PrivateGetBrokerageOrdersHistoricalFills({"product_id": "BTC-USDT"})
    times = [f["trade_time"] for f in raw["fills"]]
    assert times == sorted(times)  # newest first unless reordered
    future = emu.engine("coinbase").now_ms() + 60_000
    assert await ex.fetch_my_trades("BTC/USDT", since=future) == []
    emu.mangle_trades_next("coinbase", "overlap")
    raw = await ex.v3PrivateGetBrokerageOrdersHistoricalFills({"product_id": "BTC-USDT",
                                                               "start_sequence_timestamp": ex.iso8601(future)})
    assert len(raw["fills"]) == 3  # the start filter was ignored
