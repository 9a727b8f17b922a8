"""The README's "real market data" path with real lyrad and lyractl processes, the exchange
reached through ``[exchange_urls]`` (here: the exchange emulator speaking Binance's REST dialect
on 127.0.0.1, exactly where a user's lyrad would reach api.binance.com).

* ``lyractl data fetch`` downloads real candles (the shared pack's Binance XRP/ETH 5m bars, served
  as klines) into the dataset store, byte for byte;
* ``[paper] market_data = "live"``: the paper venue lists the exchange's instrument, takes live
  1-second bars as they close, and fills an operator's limit order when a bar crosses it; no
  order ever reaches the exchange (a dry run);
* ``kill -9`` and a restart: the order stays filled with its one fill, bars keep coming, and
  ``lyrad verify`` finds the books consistent.
"""

from __future__ import annotations

import signal
import time
from decimal import Decimal
from pathlib import Path

import pytest

from tests.e2e.lyrad_box import Box, wait_for
from tests.emulator import EmulatorThread, Instrument
from tests.emulator.bars import TF_MS, Prices

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "paper-live-admin-password"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture
def emulator(shared_data):
    emu = EmulatorThread(dialects=("binance",)).start()
    emu.engine("binance").add_instrument(Instrument(
        "XRP/ETH", "XRP", "ETH", "XRPETH", tick_size="0.00000001", step_size="1", min_qty="1",
        max_qty="9000000", min_notional="0.01", mark="0.0014"))
    emu.load_candles("binance", "XRP/ETH", shared_data / "candles" / "binance_XRP-ETH_5m.csv", timeframe="5m")
    yield emu
    emu.stop()


def write_config(tmp: Path, base_url: str) -> Path:
    config = tmp / "lyra.toml"
    config.write_text(f"""
[server]
listen = "127.0.0.1:0"
[metrics]
listen = "127.0.0.1:0"
[storage]
data_dir = "{tmp / 'data'}"
[exchange_urls]
binance = "{base_url}"
[paper]
market_data = "live"
live_exchange = "binance"
symbols = ["BTC/USDT"]
timeframe = "1s"
live_poll_s = 0.2
live_history_bars = 120
[paper.starting_balances]
USDT = "10000"
[portfolio]
nav_currency = "USDT"
[risk]
max_order_notional = "5000"
max_position_notional = "20000"
daily_loss_limit = "5000"
[auth]
totp_required_roles = []
""")
    return config


def _open_ms(bar: dict) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(bar["open_time"].replace("Z", "+00:00")).timestamp() * 1000)


def test_download_and_paper_trade_live_data_through_exchange_urls_and_survive_kill9(tmp_path, shared_data, emulator):
    t0 = now_ms() // TF_MS * TF_MS
    prices = Prices(t0 - 300_000, t0 + 900_000, Decimal("60000"), Decimal("1"), Decimal("20"), turn_ms=t0 + 10**9)
    emulator.load_candles("binance", "BTC/USDT", prices.rows, timeframe="1s")
    box = Box(tmp_path, write_config(tmp_path, emulator.url_of("binance")), ADMIN_PASSWORD)
    box.init()
    proc = box.start()
    try:
        # real candles downloaded through [exchange_urls], the same bytes as the exchange's
        box.lyractl("data", "fetch", "--exchange", "binance", "--symbols", "XRP/ETH", "--timeframe", "5m",
                    "--since", "2019-10-11", timeout=120)
        source = (shared_data / "candles" / "binance_XRP-ETH_5m.csv").read_text()
        assert (tmp_path / "data" / "datasets" / "binance_XRP-ETH_5m.csv").read_text() == source

        # the paper venue trades the exchange's instrument on its live bars
        listed = wait_for(lambda: box.json("instruments")["instruments"], 30, "the paper-live instrument")
        assert [i["instrument"] for i in listed] == ["BTC/USDT@paper"]
        first_bar = wait_for(lambda: box.json("candles", "BTC/USDT@paper", "--limit", "1")["candles"], 30, "live bars")
        mark = Decimal(first_bar[-1]["close"])
        limit_price = mark - 3  # the market falls 1 a bar: crossed within a few bars
        submitted = box.json("orders", "submit", "BTC/USDT@paper", "buy", "0.01", "--type", "limit",
                             "--price", str(limit_price))
        cid = submitted["client_order_id"]
        order = wait_for(lambda: (o := box.json("orders", "get", cid))["status"] == "FILLED" and o, 30,
                         "the limit order to fill on a live bar")
        (fill,) = box.json("fills", "--order", cid)["fills"]
        assert Decimal(fill["qty"]) == Decimal("0.01") == Decimal(order["filled_qty"])
        assert Decimal(fill["price"]) <= limit_price
        assert emulator.orders("binance") == []  # a dry run: nothing reached the exchange
        assert not [r for r in emulator.requests if r.api_key]  # public data only
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    assert box.lyrad("verify").returncode == 0
    killed_at = now_ms()
    proc = box.start()
    try:
        order = box.json("orders", "get", cid)
        assert order["status"] == "FILLED"
        assert box.json("fills", "--order", cid)["fills"] == [fill]
        wait_for(lambda: _open_ms(box.json("candles", "BTC/USDT@paper", "--limit", "1")["candles"][-1]) >= killed_at,
                 30, "live bars after the restart")
        balances = {b["asset"]: Decimal(b["total"]) for b in box.json("balances")["balances"] if b["venue"] == "paper"}
        cost = Decimal(fill["qty"]) * Decimal(fill["price"])
        assert balances["BTC"] == Decimal("0.01")
        assert balances["USDT"] == Decimal("10000") - cost - Decimal(fill["fee"])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert box.lyrad("verify").returncode == 0
