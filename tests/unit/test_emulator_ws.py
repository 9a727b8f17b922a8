"""Unmodified ccxt.pro (4.5.90) against the emulator's Binance WebSocket API user data stream.

ccxt.pro's spot ``watch_orders`` / ``watch_my_trades`` subscribe on ``/ws-api/v3`` with
``userDataStream.subscribe.signature`` (no listenKey); the emulator pushes ``executionReport``
events from its engine. Numbers are checked against the order and fee arithmetic, not against the
emulator's own output.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time

import aiohttp
import ccxt
import pytest

from tests.emulator import ExchangeEmulator, exchange_client

KEY = "lyra-ws-test-key"
SECRET = "lyra-ws-test-secret-0123456789"
OTHER = "lyra-ws-other-key"
BALANCES = {"USDT": "10000", "BTC": "1"}
WS_PATH = "/ws-api/v3"


@pytest.fixture
async def emu():
    async with ExchangeEmulator(("binance",), accounts={KEY: (SECRET, BALANCES), OTHER: ("other-secret", BALANCES)},
                                binance_weight_limit=1_000_000) as e:
        yield e


@pytest.fixture
async def ex(emu):
    client = exchange_client(emu, "binance", KEY, SECRET, pro=True)
    await client.load_markets()
    yield client
    await client.close()


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def collect(watch, done, timeout: float = 5.0) -> list:
    """Call ``watch()`` repeatedly (ccxt returns only new updates) until ``done(items)``."""
    items: list = []
    deadline = time.monotonic() + timeout
    while not done(items):
        items.extend(await asyncio.wait_for(watch(), max(0.01, deadline - time.monotonic())))
    return items


async def subscribed(emu, n: int = 1) -> None:
    await until(lambda: len(emu.ws_subscriptions("binance", KEY, active=True)) >= n)


# ---------------------------------------------------------------------------- protocol
async def test_subscribe_signature_protocol_and_event_envelope(emu):
    """The raw protocol, signed independently of ccxt: params sorted by name as k=v&..., hex HMAC."""
    url = emu.url_of("binance").replace("http://", "ws://") + WS_PATH
    ts = int(time.time() * 1000)
    payload = f"apiKey={KEY}&recvWindow=5000&timestamp={ts}"
    signature = hmac.new(SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest()
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.send_str(json.dumps({"id": "sub-1", "method": "userDataStream.subscribe.signature",
                                      "params": {"apiKey": KEY, "timestamp": ts, "recvWindow": 5000,
                                                 "signature": signature}}))
        ack = json.loads((await ws.receive(timeout=5)).data)
        assert ack["id"] == "sub-1" and ack["status"] == 200 and ack["result"] == {"subscriptionId": 0}
        assert ack["rateLimits"][0]["rateLimitType"] == "REQUEST_WEIGHT"
        assert ack["rateLimits"][0]["count"] == 2 + 2  # connecting costs 2, subscribing 2
        order = emu.engine("binance").place(KEY, "BTC/USDT", "BUY", "LIMIT", qty=emu.engine("binance").instrument(
            "BTC/USDT").step_size * 100, price=emu.engine("binance").instrument("BTC/USDT").mark - 1000)
        first = json.loads((await ws.receive(timeout=5)).data)
        second = json.loads((await ws.receive(timeout=5)).data)
    assert first["subscriptionId"] == 0 and set(first) == {"subscriptionId", "event"}
    report = first["event"]
    assert (report["e"], report["x"], report["X"], report["i"]) == ("executionReport", "NEW", "NEW", order.seq)
    assert (report["s"], report["S"], report["o"], report["f"]) == ("BTCUSDT", "BUY", "LIMIT", "GTC")
    assert (report["q"], report["p"], report["z"], report["t"]) == ("0.00100000", "59000.00000000", "0.00000000", -1)
    position = second["event"]
    assert position["e"] == "outboundAccountPosition"
    # 0.001 BTC at 59000 locks 59 USDT
    assert {b["a"]: (b["f"], b["l"]) for b in position["B"]}["USDT"] == ("9941.00000000", "59.00000000")


async def test_an_unknown_method_is_refused_with_a_binance_error(emu):
    url = emu.url_of("binance").replace("http://", "ws://") + WS_PATH
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.send_str(json.dumps({"id": 7, "method": "order.teleport"}))
        reply = json.loads((await ws.receive(timeout=5)).data)
        await ws.send_str(json.dumps({"id": 8, "method": "time"}))
        clock = json.loads((await ws.receive(timeout=5)).data)
    assert reply["id"] == 7 and reply["status"] == 400 and reply["error"]["code"] == -1020
    assert clock["status"] == 200 and abs(clock["result"]["serverTime"] - time.time() * 1000) < 5_000


# ---------------------------------------------------------------------------- ccxt.pro
async def test_watch_orders_reports_new_partial_and_filled_with_exact_numbers(ex, emu):
    watch = asyncio.create_task(ex.watch_orders())
    await subscribed(emu)
    await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 59000, params={"clientOrderId": "ly-ws-0001"})
    new, = await asyncio.wait_for(watch, 5)
    assert (new["status"], new["clientOrderId"], new["amount"], new["price"], new["filled"]) == (
        "open", "ly-ws-0001", 0.01, 59000, 0)
    assert new["info"]["x"] == "NEW"
    on_exchange, = emu.orders("binance", KEY)
    assert new["id"] == str(on_exchange.seq)

    emu.fill_order("binance", on_exchange, "0.004")
    partial, = await collect(ex.watch_orders, lambda items: items)
    assert (partial["status"], partial["filled"], partial["cost"]) == ("open", 0.004, 0.004 * 59000)
    assert (partial["info"]["x"], partial["info"]["X"], partial["info"]["l"]) == ("TRADE", "PARTIALLY_FILLED",
                                                                                 "0.00400000")
    emu.fill_order("binance", on_exchange)
    filled, = await collect(ex.watch_orders, lambda items: items)
    assert (filled["status"], filled["filled"], filled["cost"]) == ("closed", 0.01, pytest.approx(0.01 * 59000))
    assert (filled["info"]["X"], filled["info"]["l"], filled["info"]["z"]) == ("FILLED", "0.00600000", "0.01000000")
    assert filled["clientOrderId"] == "ly-ws-0001"


async def test_watch_my_trades_gets_each_fill_once_with_fee(ex, emu):
    watch = asyncio.create_task(ex.watch_my_trades())
    await subscribed(emu)
    await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 59000)
    on_exchange, = emu.orders("binance", KEY)
    emu.fill_order("binance", on_exchange, "0.004")
    emu.fill_order("binance", on_exchange)
    trades = list(await asyncio.wait_for(watch, 5))
    trades += await collect(ex.watch_my_trades, lambda items: len(trades) + len(items) >= 2)
    assert [t["id"] for t in trades] == [str(f.id) for f in on_exchange.fills]
    assert [(t["amount"], t["price"], t["order"], t["takerOrMaker"], t["side"]) for t in trades] == [
        (0.004, 59000, str(on_exchange.seq), "maker", "buy"), (0.006, 59000, str(on_exchange.seq), "maker", "buy")]
    # 10 bps, a buyer pays in the base asset
    assert [t["fee"]["currency"] for t in trades] == ["BTC", "BTC"]
    assert [t["fee"]["cost"] for t in trades] == [pytest.approx(0.004 * 0.001), pytest.approx(0.006 * 0.001)]


async def test_a_cancel_is_pushed_with_the_original_client_order_id(ex, emu):
    watch = asyncio.create_task(ex.watch_orders())
    await subscribed(emu)
    order = await ex.create_order("BTC/USDT", "limit", "sell", 0.02, 70000, params={"clientOrderId": "ly-ws-c1"})
    await asyncio.wait_for(watch, 5)
    await ex.cancel_order(order["id"], "BTC/USDT")
    canceled, = await collect(ex.watch_orders, lambda items: items)
    assert (canceled["status"], canceled["clientOrderId"], canceled["info"]["x"]) == ("canceled", "ly-ws-c1",
                                                                                    "CANCELED")


async def test_only_the_subscribed_account_gets_events(ex, emu):
    watch = asyncio.create_task(ex.watch_orders())
    await subscribed(emu)
    engine = emu.engine("binance")
    engine.place(OTHER, "BTC/USDT", "BUY", "LIMIT", qty=engine.instrument("BTC/USDT").step_size * 100,
                 price=engine.instrument("BTC/USDT").mark - 1000)
    await asyncio.sleep(0.2)
    assert not watch.done()
    mine = engine.place(KEY, "BTC/USDT", "BUY", "LIMIT", qty=engine.instrument("BTC/USDT").step_size * 100,
                        price=engine.instrument("BTC/USDT").mark - 1000)
    pushed, = await asyncio.wait_for(watch, 5)
    assert pushed["id"] == str(mine.seq)


@pytest.mark.parametrize("secret, key, code, status", [("wrong-secret", KEY, -1022, 400),
                                                         (SECRET, "no-such-key", -2015, 401)])
async def test_a_bad_signature_or_key_is_refused_as_binance_does(emu, secret, key, code, status):
    client = exchange_client(emu, "binance", key, secret, pro=True)
    try:
        await client.load_markets()
        # ccxt 4.5.90 maps the error to AuthenticationError (handle_ws_error), but then deletes the
        # 'spot' subscription twice (handle_ws_error, then ensure_user_data_stream_ws_subscribe_signature's
        # except): what surfaces is a KeyError whose context is the AuthenticationError
        with pytest.raises(KeyError) as raised:
            await asyncio.wait_for(client.watch_orders(), 5)
        assert raised.value.args == ("spot",)
        assert type(raised.value.__context__) is ccxt.AuthenticationError
        assert str(code) in str(raised.value.__context__)
    finally:
        await client.close()
    refused, = [r for r in emu.requests if r.method == "WS"]
    assert (refused.query, refused.status, refused.error) == ("userDataStream.subscribe.signature", status, code)
    assert not emu.ws_subscriptions("binance")


async def test_drop_websockets_makes_the_pending_watch_raise_network_error_then_it_resubscribes(ex, emu):
    watch = asyncio.create_task(ex.watch_orders())
    await subscribed(emu)
    assert emu.drop_websockets("binance") == 1
    with pytest.raises(ccxt.NetworkError) as raised:
        await asyncio.wait_for(watch, 5)
    # exactly NetworkError (ccxt's on_close), not a subclass such as RequestTimeout / ExchangeNotAvailable
    assert type(raised.value) is ccxt.NetworkError
    assert "Connection closed by remote server, closing code 1006" in str(raised.value)
    first, = emu.ws_sessions("binance")
    assert first.close_reason == "dropped" and first.record.fault == "ws_drop"
    assert not emu.ws_subscriptions("binance", active=True)

    again = asyncio.create_task(ex.watch_orders())
    await subscribed(emu)
    sessions = emu.ws_sessions("binance")
    assert len(sessions) == 2 and sessions[1].is_open
    assert [s.session for s in emu.ws_subscriptions("binance", KEY)] == [first.id, sessions[1].id]
    await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 59000)
    pushed, = await asyncio.wait_for(again, 5)
    assert pushed["info"]["x"] == "NEW"


async def test_refused_upgrades_raise_network_error_and_are_logged(ex, emu):
    emu.refuse_websockets("binance", 2)
    for _ in range(2):
        with pytest.raises(ccxt.NetworkError) as raised:
            await asyncio.wait_for(ex.watch_orders(), 5)
        assert type(raised.value) is ccxt.NetworkError  # ccxt wraps the failed handshake
    refused = [r for r in emu.requests_to(WS_PATH, method="GET")]
    assert [(r.status, r.fault) for r in refused] == [(503, "status:503")] * 2
    watch = asyncio.create_task(ex.watch_orders())
    await subscribed(emu)  # the third attempt is accepted
    assert emu.requests_to(WS_PATH, method="GET")[-1].status == 101
    watch.cancel()


async def test_stopping_the_emulator_closes_open_websockets():
    emu = ExchangeEmulator(("binance",), accounts={KEY: (SECRET, BALANCES)})
    await emu.start()
    client = exchange_client(emu, "binance", KEY, SECRET, pro=True)
    try:
        await client.load_markets()
        watch = asyncio.create_task(client.watch_orders())
        await subscribed(emu)
        await emu.stop()
        with pytest.raises(ccxt.NetworkError):
            await asyncio.wait_for(watch, 5)
        session, = emu.ws_sessions("binance")
        assert session.close_reason == "server_stopped" and not emu.ws_subscriptions("binance", active=True)
    finally:
        await client.close()
