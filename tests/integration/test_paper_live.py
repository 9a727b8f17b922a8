"""Live market data end to end in-process: lyrad's composition with live bar feeds polling the
exchange emulator (real ccxt, Binance dialect) on the wall clock.

The emulator serves every candle loaded into it, future ones included, exactly as Binance's
klines endpoint would once they exist; the feed takes a bar only once it has closed on the wall
clock. 1-second bars keep the tests short.
"""

from __future__ import annotations

import time
from decimal import ROUND_CEILING, Decimal

import pytest
from lyra_client.errors import FailedPrecondition, NotFound

from tests.emulator import EmulatorThread, binance_client
from tests.emulator.bars import TF_MS, Prices
from lyra.v1 import common_pb2, orders_pb2

API_KEY = "paper-live-key-0001"
SECRET = "paper-live-secret-0001-abcdefghijk"
SLIPPAGE = Decimal("0.0005")  # [paper] slippage_bps = 5


def wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture
def emulator():
    emu = EmulatorThread(dialects=("binance",), accounts={API_KEY: (SECRET, {"USDT": 10_000, "BTC": 1})}).start()
    yield emu
    emu.stop()


def factory_for(emu):
    def factory(exchange_id: str, config: dict):
        assert "apiKey" not in config or exchange_id == "binance"
        return binance_client(emu, config.get("apiKey"), config.get("secret"), timeout=config.get("timeout", 5000))
    return factory


PAPER_LIVE = """
[paper]
market_data = "live"
live_exchange = "binance"
symbols = ["BTC/USDT"]
timeframe = "1s"
live_poll_s = 0.2
live_history_bars = 300
[paper.starting_balances]
USDT = "10000"
[portfolio]
nav_currency = "USDT"
[risk]
max_order_notional = "5000"
max_position_notional = "20000"
max_open_orders = 20
daily_loss_limit = "5000"
"""


def test_paper_venue_on_live_bars_fills_a_strategy_and_an_operator_with_the_candle_model(appliance_factory, emulator):
    t0 = now_ms() // TF_MS * TF_MS
    falling = Prices(t0 - 400_000, t0 + 600_000, Decimal("60000"), Decimal("1"), Decimal("20"), turn_ms=t0 + 10**9)
    emulator.load_candles("binance", "BTC/USDT", falling.rows, timeframe="1s")
    running = appliance_factory(exchange_factory=factory_for(emulator), extra=PAPER_LIVE)
    assert any("paper venue paper (live data from binance): 1 instruments" in n for n in running.venue_notes), \
        running.venue_notes
    app = running.app
    assert app.config.live and app.replay is None
    running.add_user("trader", "trader")
    trader = running.client("trader", "trader-password-123")

    # instruments from the exchange's markets (precision and limits), fees from [paper]
    (listed,) = trader.list_instruments().instruments
    assert listed.instrument == "BTC/USDT@paper"
    (instrument,) = app.instruments.values()
    assert instrument.price_tick == Decimal("0.01") and instrument.qty_step == Decimal("0.00001")
    assert instrument.min_notional == Decimal("5") and instrument.taker_fee_bps == Decimal("25")
    balances = {b.asset: Decimal(b.total) for b in trader.list_balances("paper").balances}
    assert balances == {"USDT": Decimal("10000")}

    # history: the last 300 closed bars, served by GetCandles; the mark is the last close
    candles = trader.get_candles("BTC/USDT@paper", limit=1000).candles
    assert 295 <= len(candles) <= 330
    last = candles[-1]
    last_open_ms = last.open_time.ToMilliseconds()
    assert Decimal(last.close) == falling.close_at(last_open_ms)
    assert last.close_time.ToMilliseconds() <= now_ms()

    # new bars arrive as the wall clock passes their close, each once, in order
    wait_for(lambda: trader.get_candles("BTC/USDT@paper", limit=1).candles[-1].open_time.ToMilliseconds()
             >= last_open_ms + 3 * TF_MS, 15, "live bars")
    more = trader.get_candles("BTC/USDT@paper", limit=1000).candles
    assert len(more) == 300  # the history window rolls
    opens = [c.open_time.ToMilliseconds() for c in more]
    assert opens == sorted(set(opens)) and all(b - a == TF_MS for a, b in zip(opens, opens[1:]))
    assert all(c.close_time.ToMilliseconds() <= now_ms() for c in more)  # never a forming bar

    # trend_momentum: warmed from the feed's history, it buys when the trend turns up
    trader.create_strategy("trend_momentum", ["BTC/USDT@paper"], {
        "fast_period": "3", "slow_period": "6", "adx_period": "3", "atr_period": "3", "adx_min": "0",
        "position_size_pct": "10"}, strategy_id="tm-live")
    trader.start_strategy("tm-live")
    record = app.strategies.get("tm-live")
    buffer = record.instance.buffers[instrument.id]
    assert len(buffer) >= 100  # warm-up from history (capacity 154)
    # the market turns up a little later (bars already delivered stay exactly as they were)
    turn = now_ms() // TF_MS * TF_MS + 2 * TF_MS
    rising = Prices(t0 - 400_000, t0 + 600_000, Decimal("60000"), Decimal("1"), Decimal("20"), turn_ms=turn)
    emulator.load_candles("binance", "BTC/USDT", rising.rows, timeframe="1s")

    def strategy_fill():
        fills = list(trader.iter_fills())
        return fills[0] if fills else None

    fill = wait_for(strategy_fill, 30, "the strategy's entry to fill")
    entry = trader.get_order(fill.client_order_id)
    assert entry.strategy_id == "tm-live" and entry.side == common_pb2.SIDE_BUY
    fill_open_ms = fill.time.ToMilliseconds() - TF_MS
    assert fill_open_ms >= turn  # the signal came from the rising bars
    expected = (rising.open_at(fill_open_ms) * (1 + SLIPPAGE)).quantize(Decimal("0.01"), rounding=ROUND_CEILING)
    assert Decimal(fill.price) == expected
    assert app.strategies.get("tm-live").status.value == "RUNNING"
    # then an operator's market order fills on the first bar opening after it, at the open + slippage
    order = trader.submit_order("BTC/USDT@paper", "buy", "0.01")
    done = wait_for(lambda: (o := trader.get_order(order.client_order_id)).status == orders_pb2.ORDER_STATUS_FILLED and o,
                    15, "the operator's order to fill")
    (op_fill,) = list(trader.iter_fills(client_order_id=order.client_order_id))
    fill_open_ms = op_fill.time.ToMilliseconds() - TF_MS
    assert fill_open_ms * 1_000_000 >= done.create_time.ToNanoseconds() - 1_000_000  # no look-ahead
    expected = (rising.open_at(fill_open_ms) * (1 + SLIPPAGE)).quantize(Decimal("0.01"), rounding=ROUND_CEILING)
    assert Decimal(op_fill.price) == expected
    assert Decimal(op_fill.fee) == Decimal("0.01") * expected * Decimal("25") / Decimal("10000")

    position = {p.instrument: Decimal(p.qty) for p in trader.list_positions().positions}
    assert position["BTC/USDT@paper"] == Decimal(fill.qty) + Decimal("0.01")
    # nothing left the appliance: the exchange saw no order
    assert emulator.orders("binance") == []

    # an order decided while a fresh bar is handled is accepted at that bar's close (as on a
    # SimClock in replay), so it may fill on the very next bar; on a late bar, at wall time
    from appliance.execution.oms import OrderRequest
    from appliance.model.order import OrderSide, OrderType

    seen = {}
    on_slice = app.strategies.on_slice

    def probe(slice_):
        on_slice(slice_)
        if not seen:
            seen["lag_ns"] = app.clock.now_ns() - slice_.close_ns
            seen["close_ns"] = slice_.close_ns
            seen["order"] = app.oms.submit(OrderRequest(instrument.id, OrderSide.BUY, OrderType.MARKET, Decimal("0.001"),
                                                        None, client_order_id="probe-1", strategy_id="manual"))

    running.call(lambda: setattr(app.strategies, "on_slice", probe))

    def probe_filled():
        try:
            order = trader.get_order("probe-1")
        except NotFound:
            return None
        return order if order.status == orders_pb2.ORDER_STATUS_FILLED else None

    probe_order = wait_for(probe_filled, 15, "the probe order to fill")
    running.call(lambda: setattr(app.strategies, "on_slice", on_slice))
    accepted_ns = running.call(lambda: app.db.scalar("SELECT accepted_ns FROM paper_orders WHERE client_order_id='probe-1'"))
    (probe_fill,) = list(trader.iter_fills(client_order_id="probe-1"))
    if seen["lag_ns"] <= TF_MS * 1_000_000:
        assert accepted_ns == seen["close_ns"]
        assert probe_fill.time.ToNanoseconds() == seen["close_ns"] + TF_MS * 1_000_000  # the next bar
    else:
        assert accepted_ns > seen["close_ns"]
    assert probe_order.create_time.ToNanoseconds() >= seen["close_ns"]
    assert running.call(lambda: app.slice_clock.held_ns) is None  # released after the sends


def test_paper_live_restart_resumes_the_running_strategy_from_fresh_history(appliance_factory, emulator, tmp_path):
    t0 = now_ms() // TF_MS * TF_MS
    prices = Prices(t0 - 400_000, t0 + 600_000, Decimal("60000"), Decimal("1"), Decimal("20"), turn_ms=t0 + 10**9)
    emulator.load_candles("binance", "BTC/USDT", prices.rows, timeframe="1s")
    first = appliance_factory(exchange_factory=factory_for(emulator), extra=PAPER_LIVE)
    first.add_user("trader", "trader")
    trader = first.client("trader", "trader-password-123")
    trader.create_strategy("trend_momentum", ["BTC/USDT@paper"], {"adx_min": "0"}, strategy_id="tm-restart")
    trader.start_strategy("tm-restart")
    first.stop()

    second = appliance_factory(exchange_factory=factory_for(emulator), extra=PAPER_LIVE)
    assert any("resumed strategies: tm-restart" in n for n in second.venue_notes), second.venue_notes
    record = second.app.strategies.get("tm-restart")
    assert record.instance is not None and len(record.instance.buffers[next(iter(record.instance.buffers))]) >= 295
    # first boot's balances are not applied twice
    assert not any("first boot" in n for n in second.venue_notes)


def test_live_venue_gets_bars_and_marks_and_strategies_need_a_feed(appliance_factory, emulator):
    t0 = now_ms() // TF_MS * TF_MS
    btc = Prices(t0 - 400_000, t0 + 600_000, Decimal("50000"), Decimal("1"), Decimal("1"), turn_ms=t0 + 10**9)
    emulator.load_candles("binance", "BTC/USDT", btc.rows, timeframe="1s")
    eth = Prices(t0 - 400_000, t0 + 600_000, Decimal("3000"), Decimal("0.5"), Decimal("0.5"), turn_ms=t0 + 10**9)
    emulator.load_candles("binance", "ETH/USDT", eth.rows, timeframe="1s")
    running = appliance_factory(exchange_factory=factory_for(emulator), extra="""
[paper]
timeframe = "1s"
live_poll_s = 0.2
live_history_bars = 200
[portfolio]
nav_currency = "USDT"
[risk]
max_order_notional = "5000"
max_position_notional = "20000"
daily_loss_limit = "1000"
[[venues]]
name = "binance"
exchange = "binance"
credential = "binance/main"
poll_interval_s = 0.2
""")
    running.add_user("admin", "admin")
    admin = running.client("admin", "admin-password-123")
    admin.initialize_vault("a long vault passphrase")
    admin.create_credential("binance", "main", API_KEY, SECRET)
    app = running.app
    btc_id = next(i for i in wait_for(lambda: [i for i in list(app.instruments) if str(i) == "BTC/USDT@binance"],
                                      30, "the venue to connect"))
    # no [[venues]] symbols: bars only for what strategies use; none yet
    feed = wait_for(lambda: app._venue_feeds.get("binance"), 30, "the venue's bar feed")
    assert feed.instruments == []
    with pytest.raises(FailedPrecondition, match="no live bar feed for BTC/USDT@binance"):
        admin.get_candles("BTC/USDT@binance")

    # a strategy on BTC/USDT subscribes the feed; it starts once the history is loaded
    admin.create_strategy("trend_momentum", ["BTC/USDT@binance"], {"adx_min": "0"}, strategy_id="tm-btc")

    def started():
        try:
            return admin.start_strategy("tm-btc")
        except FailedPrecondition as exc:
            assert "BTC/USDT@binance" in exc.message
            return None

    wait_for(started, 20, "tm-btc to start")
    assert len(app.strategies.get("tm-btc").instance.buffers[btc_id]) == 200

    # bars arrive; marks follow the bars' closes
    before = admin.get_candles("BTC/USDT@binance", limit=1000).candles[-1].close_time.ToMilliseconds()
    wait_for(lambda: admin.get_candles("BTC/USDT@binance", limit=1000).candles[-1].close_time.ToMilliseconds()
             >= before + 3 * TF_MS, 15, "new bars")

    def mark_is_a_recent_close():
        mark = running.call(lambda: app.portfolio.mark(btc_id))
        last = admin.get_candles("BTC/USDT@binance", limit=3).candles
        return mark is not None and mark in {Decimal(c.close) for c in last}

    wait_for(mark_is_a_recent_close, 20, "the mark to follow the bars")

    # an instrument whose bars cannot be fetched: a clear refusal naming it
    emulator.fail_next("/api/v3/klines", 100_000, status=503)
    admin.create_strategy("trend_momentum", ["ETH/USDT@binance"], {"adx_min": "0"}, strategy_id="tm-eth")
    time.sleep(0.5)
    with pytest.raises(FailedPrecondition) as err:
        admin.start_strategy("tm-eth")
    assert "ETH/USDT@binance" in err.value.message and "history" in err.value.message
    emulator.clear_faults()

    def eth_started():
        try:
            return admin.start_strategy("tm-eth")
        except FailedPrecondition:
            return None

    wait_for(eth_started, 30, "tm-eth to start once its bars can be fetched")
