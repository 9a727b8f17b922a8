"""Lyra's CcxtVenue, with unmodified ccxt, against every emulated exchange dialect.

The same scenarios run on each of the ten supported exchanges (``tests/emulator``: each dialect
serves the exchange's real REST paths and response shapes and verifies requests signed the way
the exchange signs them), so what ``appliance.venues.ccxt.client_ids`` says about each exchange's
client order id field and look-up is exercised through ccxt's real request builders and parsers:

* markets load into instruments with the exchange's tick and step sizes;
* two limit orders are accepted carrying Lyra's client id in the exchange's own field; a fill
  made by a counterparty is reported once with its quantity and price; a cancel is reported;
* an order placed on the exchange by someone else is reported as unknown and left alone;
* the balances reported equal the exchange's own (free + locked), fees included;
* an order accepted while the connection drops is found by its client id and exists once;
* a 429 answer on the order path is retried, and the order exists once.
"""

from __future__ import annotations

import asyncio
import functools
from decimal import Decimal

import pytest

from appliance.engine.clock import LiveClock
from appliance.model.order import OrderSide
from appliance.security.vault import CredentialSecrets
from appliance.venues.base import (
    BalanceSnapshot, OrderAccepted, OrderCanceled, OrderFilled, OrderRejected, UnknownVenueOrder,
)
from appliance.venues.ccxt import CcxtVenue
from appliance.venues.ccxt.client_ids import client_id_spec, venue_client_id
from tests.emulator import DIALECTS, ExchangeEmulator, dialect_class, exchange_client
from tests.integration.ccxt_helpers import OPTIONS, make_order, of, until

KEY = "account-lyra-dialect-test-key"  # ccxt gemini refuses keys without "account" (master keys)
PASSWORD = "lyra-test-passphrase"
EXCHANGES = tuple(DIALECTS)


@functools.cache
def credentials(exchange: str) -> tuple[str, str, str | None]:
    """Test credentials in the form the exchange issues them (base64 secrets for Kraken ...)."""
    cls = dialect_class(exchange)
    return KEY, cls.test_secret(f"lyra-{exchange}-secret-for-tests-only"), PASSWORD if cls.needs_password else None


def venue_for(emu: ExchangeEmulator, exchange: str) -> tuple[CcxtVenue, list, LiveClock]:
    key, secret, password = credentials(exchange)
    clock, reports = LiveClock(), []
    _, budget = dialect_class(exchange).relaxed_limits()
    venue = CcxtVenue(
        f"{exchange}-test", exchange, CredentialSecrets(key, secret, password or ""), clock,
        exchange_factory=lambda exchange_id, config: exchange_client(
            emu, exchange, config["apiKey"], config["secret"], password=config.get("password"),
            timeout=config["timeout"]),
        budget=budget, options=OPTIONS,
    )
    venue.set_report_sink(reports.append)
    return venue, reports, clock


def emulator_for(exchange: str) -> ExchangeEmulator:
    key, secret, password = credentials(exchange)
    cls = dialect_class(exchange)
    quote = cls.test_symbol.split("/")[1]
    options, _ = cls.relaxed_limits()
    return ExchangeEmulator((exchange,), accounts={key: (secret, {quote: "100000", "BTC": "2"}, password)},
                            dialect_options={exchange: options})


@pytest.mark.parametrize("exchange", EXCHANGES)
async def test_orders_fills_cancels_unknown_orders_and_balances(exchange):
    symbol = dialect_class(exchange).test_symbol
    name = f"{exchange}-test"
    async with emulator_for(exchange) as emu:
        venue, reports, clock = venue_for(emu, exchange)
        await venue.start()
        try:
            listed = emu.engine(exchange).instrument(symbol)
            instrument = next(i for i in venue.instruments() if i.id.symbol == symbol)
            assert (instrument.price_tick, instrument.qty_step) == (listed.tick_size, listed.step_size)

            buy = make_order(clock, f"ly-{exchange[:4]}-buy-0001", name, symbol, qty="0.01", price="50000")
            sell = make_order(clock, f"ly-{exchange[:4]}-sell-001", name, symbol, side=OrderSide.SELL,
                              qty="0.02", price="70000")
            venue.submit(buy)
            venue.submit(sell)
            await until(lambda: len(of(reports, OrderAccepted)) == 2)
            spec = client_id_spec(exchange)
            placed = {o.client_order_id: o for o in emu.orders(exchange, KEY)}
            assert set(placed) == {venue_client_id(spec, buy.client_order_id),
                                   venue_client_id(spec, sell.client_order_id)}
            accepted = {r.client_order_id: r.venue_order_id for r in of(reports, OrderAccepted)}
            assert set(accepted) == {buy.client_order_id, sell.client_order_id}

            on_exchange = placed[venue_client_id(spec, buy.client_order_id)]
            emu.fill_order(exchange, on_exchange)
            await until(lambda: of(reports, OrderFilled))
            fill = of(reports, OrderFilled)[0].fill
            assert (fill.client_order_id, fill.qty, fill.price) == (buy.client_order_id, Decimal("0.01"),
                                                                    Decimal("50000"))

            venue.cancel(sell)
            await until(lambda: of(reports, OrderCanceled))
            assert of(reports, OrderCanceled)[0].client_order_id == sell.client_order_id
            assert not [o for o in emu.orders(exchange, KEY) if o.is_open]

            foreign = emu.engine(exchange).place(KEY, symbol, "BUY", "LIMIT", qty=Decimal("0.001"),
                                                 price=Decimal("40000"))
            summary = await venue.reconcile_now(None)
            unknown, = of(reports, UnknownVenueOrder)
            assert unknown.symbol == symbol and unknown.qty == Decimal("0.001")
            assert summary["unknown"] == [unknown.venue_order_id]
            assert foreign.is_open  # reported, never touched

            exchange_totals = {asset: free + locked for asset, (free, locked) in emu.balances(exchange, KEY).items()
                               if free + locked}
            assert of(reports, BalanceSnapshot)[-1].balances == exchange_totals
            assert len(of(reports, OrderFilled)) == 1
        finally:
            await venue.stop()


@pytest.mark.parametrize("exchange", EXCHANGES)
async def test_an_order_accepted_while_the_connection_drops_exists_once(exchange):
    cls = dialect_class(exchange)
    async with emulator_for(exchange) as emu:
        venue, reports, clock = venue_for(emu, exchange)
        await venue.start()
        try:
            emu.disconnect_next(cls.create_order_path, when="after", method=cls.create_order_method)
            order = make_order(clock, f"ly-{exchange[:4]}-drop-0001", f"{exchange}-test", cls.test_symbol)
            venue.submit(order)
            await until(lambda: of(reports, OrderAccepted), timeout=30)
            spec = client_id_spec(exchange)
            on_exchange = [o for o in emu.orders(exchange, KEY)
                           if o.client_order_id == venue_client_id(spec, order.client_order_id)]
            assert len(on_exchange) == 1 and len(emu.orders(exchange, KEY)) == 1
            assert of(reports, OrderAccepted)[0].venue_order_id
            created = emu.requests_to(cls.create_order_path, method=cls.create_order_method)
            assert created and created[0].processed  # the first send did place it
        finally:
            await venue.stop()


@pytest.mark.parametrize("exchange", EXCHANGES)
async def test_a_rate_limited_order_is_retried_and_exists_once(exchange):
    cls = dialect_class(exchange)
    async with emulator_for(exchange) as emu:
        venue, reports, clock = venue_for(emu, exchange)
        await venue.start()
        try:
            emu.rate_limit_next(cls.create_order_path, status=429, method=cls.create_order_method, retry_after=1)
            order = make_order(clock, f"ly-{exchange[:4]}-429-00001", f"{exchange}-test", cls.test_symbol)
            venue.submit(order)
            await until(lambda: of(reports, OrderAccepted), timeout=30)
            statuses = [r.status for r in emu.requests_to(cls.create_order_path, method=cls.create_order_method)]
            assert statuses[0] == 429 and statuses.count(200) == 1
            assert len(emu.orders(exchange, KEY)) == 1
        finally:
            await venue.stop()


BURST = 30


@pytest.mark.parametrize("exchange", EXCHANGES)
async def test_a_burst_of_operator_orders_gets_no_rate_limit_refusal(exchange):
    """30 orders at once, with the venue asked to poll every 10 ms, against the emulator enforcing
    the exchange's documented limits (not the relaxed test limits), on the venue's default budget
    and ccxt's limiter: every order accepted, not one request refused for a rate limit (the
    dialect's own tests show its limiter refuses what exceeds; `test_budget_tables_never_exceed_
    the_documented_limits` checks each budget against the documented numbers)."""
    cls = dialect_class(exchange)
    key, secret, password = credentials(exchange)
    quote = cls.test_symbol.split("/")[1]
    async with ExchangeEmulator((exchange,), accounts={key: (secret, {quote: "1000000", "BTC": "10"}, password)}) as emu:
        clock, reports = LiveClock(), []
        venue = CcxtVenue(
            f"{exchange}-test", exchange, CredentialSecrets(key, secret, password or ""), clock,
            exchange_factory=lambda exchange_id, config: exchange_client(
                emu, exchange, config["apiKey"], config["secret"], password=config.get("password"),
                timeout=config["timeout"]),
            options={**OPTIONS, "poll_interval_s": 0.01, "request_timeout_ms": 10_000},
        )
        venue.set_report_sink(reports.append)
        await venue.start()
        try:
            for i in range(BURST):
                venue.submit(make_order(clock, f"ly-{exchange[:4]}-burst-{i:04d}", f"{exchange}-test", cls.test_symbol,
                                        qty="0.001", price=str(50000 - i)))
            await until(lambda: len(of(reports, OrderAccepted)) == BURST, timeout=120)
            await asyncio.sleep(3)  # polling goes on at the budget's pace
            dialect = emu.dialect(exchange)
            assert [(r.method, r.path, r.status, r.error) for r in list(emu.requests) if dialect.rate_limited(r)] == []
            assert len(emu.orders(exchange, KEY)) == BURST
        finally:
            await venue.stop()


@pytest.mark.parametrize("exchange, words", [
    ("gemini", "gemini takes no market orders"),
    ("coinbase", "coinbase sizes market buys in the quote currency"),
])
async def test_a_market_order_the_exchange_cannot_take_as_meant_is_rejected_unsent(exchange, words):
    cls = dialect_class(exchange)
    async with emulator_for(exchange) as emu:
        venue, reports, clock = venue_for(emu, exchange)
        await venue.start()
        try:
            venue.submit(make_order(clock, f"ly-{exchange[:4]}-mkt-00001", f"{exchange}-test", cls.test_symbol,
                                    price=None))
            await until(lambda: of(reports, OrderRejected))
            (rejected,) = of(reports, OrderRejected)
            assert rejected.reason.startswith("unsupported: ") and words in rejected.reason
            assert emu.requests_to(cls.create_order_path, method=cls.create_order_method) == []
            assert emu.orders(exchange, KEY) == []
        finally:
            await venue.stop()


FILLS = 250


@pytest.mark.parametrize("exchange", EXCHANGES)
async def test_more_fills_between_two_polls_than_one_page_are_all_reported_once(exchange):
    """250 partial fills land between two polls: more than one page of own trades on every
    exchange (pages of 50 to 1000, newest first on some), all reported, each once."""
    cls = dialect_class(exchange)
    async with emulator_for(exchange) as emu:
        venue, reports, clock = venue_for(emu, exchange)
        venue.options.poll_interval_s = 3.0
        await venue.start()
        try:
            order = make_order(clock, f"ly-{exchange[:4]}-many-00001", f"{exchange}-test", cls.test_symbol,
                               qty="0.3", price="50000")
            venue.submit(order)
            await until(lambda: of(reports, OrderAccepted))
            (placed,) = emu.orders(exchange, KEY)
            for _ in range(FILLS):
                emu.fill_order(exchange, placed, qty=Decimal("0.001"))
                await asyncio.sleep(0.003)  # distinct timestamps: exchanges page by time
            await until(lambda: len(of(reports, OrderFilled)) >= FILLS, timeout=60)
            await asyncio.sleep(0.5)
            fills = [r.fill for r in of(reports, OrderFilled)]
            assert len(fills) == FILLS and len({f.fill_id for f in fills}) == FILLS
            assert sum(f.qty for f in fills) == Decimal("0.25")
        finally:
            await venue.stop()


@pytest.mark.parametrize("exchange", ["okx", "kraken"])
async def test_newest_first_exchanges_page_back_to_the_cursor_whatever_the_page_limit(exchange):
    """With one page per poll allowed, newest-first exchanges (OKX by end time, Kraken by offset)
    still page back to the cursor at once: the unread part is the older one, which a later poll
    from a cursor past it would never see."""
    cls = dialect_class(exchange)
    async with emulator_for(exchange) as emu:
        venue, reports, clock = venue_for(emu, exchange)
        venue.options.poll_interval_s = 3.0
        venue.options.max_trade_pages = 1
        await venue.start()
        try:
            venue.submit(make_order(clock, f"ly-{exchange[:4]}-page-00001", f"{exchange}-test", cls.test_symbol,
                                    qty="0.3", price="50000"))
            await until(lambda: of(reports, OrderAccepted))
            (placed,) = emu.orders(exchange, KEY)
            for _ in range(FILLS):
                emu.fill_order(exchange, placed, qty=Decimal("0.001"))
                await asyncio.sleep(0.003)
            await until(lambda: len(of(reports, OrderFilled)) >= FILLS, timeout=60)
            fills = [r.fill for r in of(reports, OrderFilled)]
            assert len({f.fill_id for f in fills}) == len(fills) == FILLS
        finally:
            await venue.stop()
