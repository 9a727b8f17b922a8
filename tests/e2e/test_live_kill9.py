"""Live trading survives a crash between send and acknowledgement (real lyrad processes, real
ccxt, the exchange emulator speaking Binance's REST dialect).

lyrad sends an order; the exchange accepts and fills it but its answer is held back; lyrad is
killed with SIGKILL while it waits. After a restart and an unseal, reconciliation finds the
order by its client order id: exactly one order exists on the exchange, and Lyra has it once,
with its fills imported once.
"""

from __future__ import annotations

import json
import signal
from decimal import Decimal
from pathlib import Path

import pytest

from tests.e2e.lyrad_box import Box as LyradBox, wait_for
from tests.emulator import EmulatorThread

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "live-kill9-admin-password"
PASSPHRASE = "live kill9 vault passphrase"
API_KEY = "kill9-api-key-0001"
SECRET = "kill9-secret-0001-abcdefghijklmn"


@pytest.fixture
def emulator():
    emu = EmulatorThread(dialects=("binance",), accounts={API_KEY: (SECRET, {"USDT": 10_000, "BTC": 1})}).start()
    emu.set_mark("binance", "BTC/USDT", 60_000)
    yield emu
    emu.stop()


def write_config(tmp: Path, emulator, shared_data: Path) -> Path:
    config = tmp / "lyra.toml"
    config.write_text(f"""
[server]
listen = "127.0.0.1:0"
[metrics]
listen = "127.0.0.1:0"
[storage]
data_dir = "{tmp / 'data'}"
[paper]
dataset = "{shared_data / 'candles'}"
[portfolio]
nav_currency = "USDT"
[risk]
max_order_notional = "5000"
max_position_notional = "20000"
daily_loss_limit = "1000"
[auth]
totp_required_roles = []
[exchange_urls]
binance = "{emulator.url_of('binance')}"

[[venues]]
name = "binance"
exchange = "binance"
credential = "binance/main"
poll_interval_s = 0.5
symbols = ["BTC/USDT"]
ccxt_options = {{fetchCurrencies = false, defaultType = "spot", fetchMargins = false, fetchMarkets = {{types = ["spot"]}}}}
""")
    return config


class Box(LyradBox):
    def venue_connected(self):
        from lyra_client.client import LyraClient

        with LyraClient(self.target) as client:
            client.login("admin", ADMIN_PASSWORD)
            venues = client._call(client._admin.ListVenues, __import__("lyra.v1.admin_pb2", fromlist=["x"]).ListVenuesRequest()).venues
        return any(v.name == "binance" and v.health == 1 for v in venues)


def test_kill9_between_send_and_ack_leaves_exactly_one_order(tmp_path, shared_data, emulator):
    box = Box(tmp_path, write_config(tmp_path, emulator, shared_data), ADMIN_PASSWORD)
    box.init()
    proc = box.start()
    try:
        box.lyractl("vault", "init", "--passphrase-stdin", stdin=PASSPHRASE + "\n")
        box.lyractl("vault", "credentials", "add", "--venue", "binance", "--label", "main", "--from-stdin",
                    stdin=json.dumps({"api_key": API_KEY, "secret": SECRET}))
        wait_for(box.venue_connected, 60, "the binance venue to connect")
        wait_for(lambda: any(b["asset"] == "USDT" and b["venue"] == "binance" for b in box.json("balances")["balances"]),
                 30, "the venue's first balance snapshot")
        # the exchange takes and fills the order, but its answer never reaches lyrad (nor does its
        # user data stream: the websocket is down and stays down)
        emulator.refuse_websockets("binance", 1000)
        emulator.drop_websockets("binance")
        emulator.delay_next("/api/v3/order", 60.0, when="after", method="POST")
        box.lyractl("orders", "submit", "BTC/USDT@binance", "buy", "0.01", "--type", "limit", "--price", "61000")
        sent = wait_for(lambda: [o for o in emulator.orders("binance")], 30, "the order to reach the exchange")
        client_order_id = sent[0].client_order_id
        order = box.json("orders", "get", client_order_id)
        assert order["status"] == "PENDING_SUBMIT"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    assert box.lyrad("verify").returncode == 0
    emulator.clear_faults()  # the websocket comes back with the restart
    proc = box.start()
    try:
        box.lyractl("vault", "unseal", "--passphrase-stdin", stdin=PASSPHRASE + "\n")
        wait_for(box.venue_connected, 60, "the binance venue to reconnect")
        order = wait_for(lambda: (o := box.json("orders", "get", client_order_id))["status"] == "FILLED" and o, 60,
                         "reconciliation to find the order and import its fill")
        fills = box.json("fills", "--order", client_order_id)["fills"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    on_exchange = [o for o in emulator.orders("binance") if o.client_order_id == client_order_id]
    assert len(on_exchange) == 1 and len(emulator.orders("binance")) == 1
    assert sum(Decimal(f["qty"]) for f in fills) == Decimal("0.01") == Decimal(order["filled_qty"])
    assert len({f["fill_id"] for f in fills}) == len(fills)
    assert box.lyrad("verify").returncode == 0
