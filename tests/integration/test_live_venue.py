"""Live mode end to end in-process: lyrad's composition with a CCXT venue talking to the exchange
emulator (real ccxt, real Binance dialect with signature checks), credentials from the vault."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from tests.emulator import EmulatorThread, binance_client
from lyra.v1 import admin_pb2, orders_pb2

API_KEY = "live-test-api-key-0001"
SECRET = "live-test-secret-0001-abcdefghijklmnop"


def wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def emulator():
    emu = EmulatorThread(dialects=("binance",), accounts={API_KEY: (SECRET, {"USDT": 10_000, "BTC": 1})}).start()
    emu.set_mark("binance", "BTC/USDT", 60_000)
    yield emu
    emu.stop()


def factory_for(emu):
    def factory(exchange_id: str, config: dict):
        return binance_client(emu, config.get("apiKey"), config.get("secret"), timeout=config.get("timeout", 3000))
    return factory


def test_live_venue_connects_after_the_vault_and_trades_exactly_once(appliance_factory, emulator):
    running = appliance_factory(exchange_factory=factory_for(emulator), extra="""
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
symbols = ["BTC/USDT"]
""")
    assert any("waiting for the vault" in n for n in running.venue_notes)
    running.add_user("admin", "admin")
    admin = running.client("admin", "admin-password-123")
    admin.initialize_vault("a long vault passphrase")
    admin.create_credential("binance", "main", API_KEY, SECRET)

    def connected():
        venues = {v.name: v for v in admin._admin.ListVenues(admin_pb2.ListVenuesRequest(),
                                                              metadata=admin._metadata(admin._bearer())).venues}
        return venues.get("binance") if venues.get("binance") and venues["binance"].health == admin_pb2.VENUE_HEALTH_CONNECTED else None

    venue = wait_for(connected, what="binance to connect")
    assert venue.kind == "ccxt" and venue.instruments >= 1
    # the first balance snapshot became the venue account's starting balances
    balances = wait_for(lambda: {b.asset: Decimal(b.total) for b in admin.list_balances("binance").balances}, what="balances")
    assert balances["USDT"] == Decimal(10_000) and balances["BTC"] == Decimal(1)

    # an order whose acknowledgement is lost after the exchange accepted it: looked up, never sent twice
    emulator.delay_next("/api/v3/order", 5.0, when="after", method="POST")
    order = admin.submit_order("BTC/USDT@binance", "buy", "0.01", order_type="limit", limit_price="61000")
    done = wait_for(lambda: (o := admin.get_order(order.client_order_id)).status == orders_pb2.ORDER_STATUS_FILLED and o,
                    timeout=60, what="the order to fill")
    on_exchange = [o for o in emulator.orders("binance") if o.client_order_id == order.client_order_id]
    assert len(on_exchange) == 1, on_exchange
    fills = list(admin.iter_fills(client_order_id=order.client_order_id))
    assert sum(Decimal(f.qty) for f in fills) == Decimal("0.01") == Decimal(done.filled_qty)
    # Lyra's books agree with the exchange's
    lyra = {b.asset: Decimal(b.total) for b in admin.list_balances("binance").balances}
    exchange = {a: Decimal(str(free)) + Decimal(str(locked)) for a, (free, locked) in emulator.balances("binance", API_KEY).items()}
    assert lyra["USDT"] == exchange["USDT"] and lyra["BTC"] == exchange["BTC"], (lyra, exchange)
