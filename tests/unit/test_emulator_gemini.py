"""Unmodified ccxt (async) against the emulator's Gemini spot dialect."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import ccxt
import pytest

from tests.emulator import ExchangeEmulator, exchange_client
from tests.emulator.gemini import GeminiDialect

KEY = "account-lyraGeminiTestKey01"  # ccxt refuses keys without "account" (master keys)
SECRET = GeminiDialect.test_secret("lyra-gemini-unit-test")
BALANCES = {"USDT": "10000", "BTC": "1", "ETH": "5"}


@pytest.fixture
async def emu():
    async with ExchangeEmulator(("gemini",), accounts={KEY: (SECRET, BALANCES)},
                                dialect_options={"gemini": {"public_per_min": 100_000, "private_per_min": 100_000}}) as e:
        yield e


@pytest.fixture
async def ex(emu):
    client = exchange_client(emu, "gemini", KEY, SECRET)
    yield client
    await client.close()


def D(x: object) -> Decimal:
    return Decimal(str(x))


def test_test_secret_is_base58_and_deterministic():
    assert len(SECRET) == 28 and not set(SECRET) & set("0OIl+/=")
    assert SECRET == GeminiDialect.test_secret("lyra-gemini-unit-test") != GeminiDialect.test_secret("x")


# ---------------------------------------------------------------------------- markets / balance
async def test_load_markets_from_symbol_details(ex, emu):
    assert all(u.startswith(emu.url_of("gemini")) for u in ex.urls["api"].values())
    markets = await ex.load_markets()
    assert set(markets) == {"BTC/USDT", "ETH/USDT", "ETH/BTC", "BTC/USD", "ETH/USD"}
    btc = markets["BTC/USDT"]
    assert btc["id"] == "btcusdt" and btc["spot"] is True
    assert btc["precision"] == {"price": 0.01, "amount": 1e-8} and btc["limits"]["amount"]["min"] == 0.00001
    assert markets["ETH/BTC"]["precision"] == {"price": 0.00001, "amount": 0.000001}
    paths = [r.path for r in emu.requests]
    assert paths[0] == "/v1/symbols" and len(emu.requests_to("/v1/symbols/details/ethbtc")) == 1
    assert all(p.startswith("/v1/symbols") for p in paths)  # no scraping of the web pages


async def test_order_life_cycle_balances_by_arithmetic(ex, emu):
    await ex.load_markets()
    created = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 50000, {"clientOrderId": "lyra-gm-1"})
    placed, = emu.orders("gemini", KEY)
    assert placed.client_order_id == "lyra-gm-1" and created["clientOrderId"] == "lyra-gm-1"
    assert created["id"] == str(placed.seq) and created["status"] == "open"
    hold = D("0.01") * 50000 * D("1.001")  # cost + fee held in quote
    bal = await ex.fetch_balance()
    assert (D(bal["free"]["USDT"]), D(bal["used"]["USDT"]), D(bal["total"]["USDT"])) == (10000 - hold, hold, 10000)
    assert [o["id"] for o in await ex.fetch_open_orders("BTC/USDT")] == [created["id"]]
    assert await ex.fetch_open_orders("ETH/USDT") == []

    emu.fill_order("gemini", placed, "0.004")
    half = await ex.fetch_order(created["id"])
    assert (half["status"], half["filled"], half["remaining"]) == ("open", 0.004, 0.006)
    emu.fill_order("gemini", placed)
    done = await ex.fetch_order(created["id"])
    assert (done["status"], done["filled"], done["average"]) == ("closed", 0.01, 50000)
    assert await ex.fetch_open_orders() == []
    trades = await ex.fetch_my_trades("BTC/USDT")
    assert sorted(t["amount"] for t in trades) == [0.004, 0.006] and {t["order"] for t in trades} == {created["id"]}
    assert sum(D(t["fee"]["cost"]) for t in trades) == D("0.5") and trades[0]["fee"]["currency"] == "USDT"
    bal = await ex.fetch_balance()
    assert D(bal["total"]["USDT"]) == 10000 - D("500.5") and D(bal["total"]["BTC"]) == D("1.01")

    # a marketable limit fills at the mark (the engine's taker price), fee in quote
    sold = await ex.create_order("BTC/USDT", "limit", "sell", 0.01, 59000, {"clientOrderId": "lyra-gm-2"})
    assert (sold["status"], sold["filled"], sold["average"]) == ("closed", 0.01, 60000)
    bal = await ex.fetch_balance()
    assert D(bal["total"]["USDT"]) == 10000 - D("500.5") + 600 - D("0.6") and D(bal["total"]["BTC"]) == 1


async def test_cancel_and_unknown_orders(ex, emu):
    await ex.load_markets()
    created = await ex.create_order("ETH/USDT", "limit", "sell", 1, 3500)
    assert (await ex.fetch_balance())["used"]["ETH"] == 1
    canceled = await ex.cancel_order(created["id"])
    assert canceled["status"] == "canceled" and canceled["info"]["reason"] == "Requested"
    assert (await ex.fetch_balance())["used"]["ETH"] == 0
    with pytest.raises(ccxt.OrderNotFound):
        await ex.fetch_order("1")
    assert emu.requests[-1].status == 404 and emu.requests[-1].error == "OrderNotFound"
    with pytest.raises(ccxt.OrderNotFound):
        await ex.cancel_order("12345")


async def test_duplicate_client_order_id_is_not_checked(ex, emu):
    await ex.load_markets()
    a = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 50000, {"clientOrderId": "lyra-same"})
    b = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 50000, {"clientOrderId": "lyra-same"})
    assert a["id"] != b["id"] and [o.client_order_id for o in emu.orders("gemini", KEY)] == ["lyra-same"] * 2


async def test_order_errors_map_to_ccxt_exceptions(ex, emu):
    await ex.load_markets()
    with pytest.raises(ccxt.InsufficientFunds):
        await ex.create_order("BTC/USDT", "limit", "buy", 1, 50000)
    assert (emu.requests[-1].status, emu.requests[-1].error) == (406, "InsufficientFunds")
    with pytest.raises(ccxt.InvalidOrder):  # below min_order_size 0.00001
        await ex.create_order("BTC/USDT", "limit", "buy", 0.000001, 50000)
    assert emu.requests[-1].error == "InvalidQuantity"
    raw = {"symbol": "btcusdt", "amount": "0.01", "price": "50000.001", "side": "buy", "type": "exchange limit"}
    with pytest.raises(ccxt.InvalidOrder):  # a price off the 0.01 tick, sent raw past ccxt's rounding
        await ex.privatePostV1OrderNew(raw)
    assert emu.requests[-1].error == "InvalidPrice"
    with pytest.raises(ccxt.BadRequest):
        await ex.privatePostV1OrderNew({**raw, "symbol": "dogeusdt", "price": "50000"})
    assert emu.orders("gemini", KEY) == []


async def test_maker_or_cancel_and_ioc_options(ex, emu):
    await ex.load_markets()
    po = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 61000, {"postOnly": True})
    assert (po["status"], po["postOnly"], po["filled"]) == ("canceled", True, 0)
    assert po["info"]["reason"] == "MakerOrCancelWouldTake"
    ioc = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 59000, {"timeInForce": "IOC"})
    assert (ioc["status"], ioc["timeInForce"]) == ("canceled", "IOC")
    assert (await ex.fetch_balance())["used"]["USDT"] == 0


async def test_market_data_ticker_book_ohlcv(ex, emu):
    emu.set_mark("gemini", "BTC/USDT", 61000)
    t = await ex.fetch_ticker("BTC/USDT")
    assert (t["last"], t["bid"], t["ask"]) == (61000, 60999.99, 61000.01)
    book = await ex.fetch_order_book("BTC/USDT", 2)
    assert book["bids"] == [[60999.99, 1], [60999.98, 1]] and book["asks"] == [[61000.01, 1], [61000.02, 1]]
    tickers = await ex.fetch_tickers()
    assert tickers["ETH/BTC"]["last"] == 0.05
    start = 1_700_000_000_000 - 1_700_000_000_000 % 300_000
    rows = [(start + i * 60_000, 100 + i, 110 + i, 90 + i, 105 + i, 2) for i in range(10)]
    emu.load_candles("gemini", "ETH/USDT", rows, set_mark=False)
    assert await ex.fetch_ohlcv("ETH/USDT", "1m") == [list(r) for r in rows]
    five = await ex.fetch_ohlcv("ETH/USDT", "5m")
    assert [c[0] for c in five] == [start, start + 300_000] and [c[5] for c in five] == [10, 10]


# ---------------------------------------------------------------------------- authentication
async def test_bad_signature_unknown_key_and_master_key(emu):
    wrong = exchange_client(emu, "gemini", KEY, GeminiDialect.test_secret("someone else"))
    unknown = exchange_client(emu, "gemini", "account-unknown", SECRET)
    master = exchange_client(emu, "gemini", "master-lyra", SECRET)
    try:
        with pytest.raises(ccxt.AuthenticationError):
            await wrong.privatePostV1Balances()
        assert (emu.requests[-1].status, emu.requests[-1].error) == (400, "InvalidSignature")
        with pytest.raises(ccxt.AuthenticationError):
            await unknown.privatePostV1Balances()
        assert emu.requests[-1].error == "InvalidApiKey"
        sent = len(emu.requests)
        with pytest.raises(ccxt.AuthenticationError):  # ccxt itself refuses master keys
            await master.privatePostV1Balances()
        assert len(emu.requests) == sent
    finally:
        for c in (wrong, unknown, master):
            await c.close()


async def test_replayed_or_stale_nonce_is_refused(ex, emu):
    await ex.fetch_balance()
    ex.options["lastNonce"] = ex.milliseconds() + 10_000_000  # the next nonce is far ahead of the clock
    with pytest.raises(ccxt.InvalidNonce):
        await ex.fetch_balance()
    assert (emu.requests[-1].status, emu.requests[-1].error) == (400, "InvalidNonce")
    ex.options["lastNonce"] = 0
    emu.set_clock_skew(31_000)  # the exchange is 31 s ahead: every timestamp nonce is stale
    with pytest.raises(ccxt.InvalidNonce):
        await ex.fetch_balance()
    emu.set_clock_skew(0)
    dialect = emu.dialect("gemini")
    dialect._nonces[KEY] = ex.milliseconds() + 20_000  # a nonce from the near future was used already
    with pytest.raises(ccxt.InvalidNonce):
        await ex.fetch_balance()
    dialect._nonces[KEY] = 0
    assert (await ex.fetch_balance())["total"]["BTC"] == 1


# ---------------------------------------------------------------------------- limits and faults
async def test_private_rate_limit_gives_rate_limit_exceeded(emu):
    emu.dialect("gemini").configure(private_per_min=60, burst=0)
    client = exchange_client(emu, "gemini", KEY, SECRET, pace=False, enableRateLimit=False)
    try:
        results = await asyncio.gather(*(client.privatePostV1Balances() for _ in range(6)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, Exception)]
        # one passes, the rest exceed the 1/s rate with no queue (InvalidNonce may hit a request
        # that overtook another on the wire)
        assert len(errors) >= 5 and any(type(e) is ccxt.RateLimitExceeded for e in errors)
        refused = [r for r in emu.requests_to("/v1/balances") if r.status == 429]
        assert refused and all(r.error == "RateLimit" and not r.processed for r in refused)
    finally:
        await client.close()


async def test_requests_over_the_rate_are_queued_up_to_the_burst(emu):
    emu.dialect("gemini").configure(private_per_min=600, burst=5)  # 10/s, 5 held back
    client = exchange_client(emu, "gemini", KEY, SECRET, pace=False, enableRateLimit=False)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(6):  # back to back: the 2nd..6th wait for the 10/s rate, none refused
            await client.privatePostV1Balances()
        assert loop.time() - started >= 0.3
        assert not [r for r in emu.requests if r.status == 429]
    finally:
        await client.close()


async def test_injected_429_and_5xx(ex, emu):
    await ex.load_markets()
    emu.rate_limit_next("/v1/order/new", retry_after=1)
    with pytest.raises(ccxt.RateLimitExceeded):
        await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 50000)
    assert emu.orders("gemini", KEY) == []
    emu.fail_next("/v1/balances", status=502)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await ex.fetch_balance()
    emu.fail_next("/v1/balances", status=503)
    with pytest.raises(ccxt.OnMaintenance):
        await ex.fetch_balance()


async def test_connection_dropped_after_accept_leaves_one_open_order(ex, emu):
    await ex.load_markets()
    emu.disconnect_next("/v1/order/new", when="after")
    with pytest.raises(ccxt.NetworkError):
        await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 50000, {"clientOrderId": "lyra-drop"})
    found = [o for o in await ex.fetch_open_orders("BTC/USDT") if o["clientOrderId"] == "lyra-drop"]
    assert len(found) == 1 and len(emu.orders("gemini", KEY)) == 1


async def test_mytrades_timestamp_limit_and_mangling(ex, emu):
    await ex.load_markets()
    for _ in range(3):
        await ex.create_order("BTC/USDT", "limit", "sell", 0.01, 59000)
    assert len(await ex.fetch_my_trades("BTC/USDT")) == 3
    assert len(await ex.fetch_my_trades("BTC/USDT", limit=2)) == 2
    future = emu.engine("gemini").now_ms() + 60_000
    assert await ex.fetch_my_trades("BTC/USDT", since=future) == []
    emu.mangle_trades_next("gemini", "overlap")
    assert len(await ex.privatePostV1Mytrades({"symbol": "btcusdt", "timestamp": future // 1000})) == 3
    emu.mangle_trades_next("gemini", "duplicate")
    assert len(await ex.fetch_my_trades("BTC/USDT")) == 6
    emu.mangle_trades_next("gemini", "reorder")
    raw = await ex.privatePostV1Mytrades({"symbol": "btcusdt"})
    assert [t["tid"] for t in raw] == sorted(t["tid"] for t in raw)  # newest first unless reordered
