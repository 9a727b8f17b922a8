"""A full trading flow through the SDK: a trend_momentum strategy on three instruments trades the
whole Bittrex replay; every figure the API reports is recomputed independently from the fills,
the instruments and the candles (all in exact Decimal, at a precision far above the server's).

Also: paging of ListOrders, page tokens that belong to another listing, and the order event
stream of a manual order that is submitted and canceled.
"""

from __future__ import annotations

import importlib.util
import queue
import threading
from collections import defaultdict
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_UP, Decimal, localcontext
from fractions import Fraction
from pathlib import Path

import grpc
import pytest

from lyra.v1 import admin_pb2, common_pb2, orders_pb2, strategies_pb2
from lyra_client.errors import InvalidArgument, LyraError

# The harness module, loaded under its own name (test modules must not import "conftest":
# several conftest.py files share that module name).
_spec = importlib.util.spec_from_file_location("lyra_integration_harness_tf", Path(__file__).with_name("conftest.py"))
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)

# Polling and paging tests make more calls per second than the API rate limit allows a token
# (auth.rate_limit_*); rate limiting is not what these tests are about.
NO_RATE_LIMIT = "[auth]\nrate_limit_rps = 1000000.0\nrate_limit_burst = 1000000\n"

INSTRUMENTS = ["ADA/BTC@paper", "ETH/BTC@paper", "LTC/BTC@paper"]
STARTING = {"BTC": Decimal("1")}  # [paper] starting_balances default, not overridden by the harness config
BUY, SELL = common_pb2.SIDE_BUY, common_pb2.SIDE_SELL
AVG_QUANTUM = Decimal("1e-18")
PREC = 120  # every independent computation below is exact at this precision


def D(text: str) -> Decimal:
    assert text != "", "empty decimal string from the API"
    return Decimal(text)


def base_quote(instrument: str) -> tuple[str, str]:
    symbol = instrument.partition("@")[0]
    base, quote = symbol.split("/")
    return base, quote


def expected_balances(fills) -> dict[str, Decimal]:
    """Starting balances + every fill (buy: +qty base, -qty*price quote; sell: the reverse) - fees."""
    balances: dict[str, Decimal] = defaultdict(Decimal, STARTING)
    with localcontext() as ctx:
        ctx.prec = PREC
        for f in fills:
            base, quote = base_quote(f.instrument)
            qty, price = D(f.qty), D(f.price)
            sign = 1 if f.side == BUY else -1
            assert f.side in (BUY, SELL)
            balances[base] += sign * qty
            balances[quote] -= sign * qty * price
            balances[f.fee_asset] -= D(f.fee)
    return dict(balances)


def average_cost(fills_oldest_first):
    """Own average-cost (WAC) book per instrument, as documented for positions: adding re-averages
    the entry price (rounded half-even to 18 decimals), reducing realizes
    closed * (price - avg) * direction; fees are kept apart.

    Returns instrument -> dict(qty, avg, realized, fees, realized_exact) where realized_exact uses
    the exact (Fraction) average instead of the rounded one.
    """
    books: dict[str, dict] = {}
    with localcontext() as ctx:
        ctx.prec = PREC
        for f in fills_oldest_first:
            b = books.setdefault(f.instrument, dict(qty=Decimal(0), avg=Decimal(0), realized=Decimal(0), fees=Decimal(0),
                                                    avg_exact=Fraction(0), realized_exact=Fraction(0), closed=Decimal(0)))
            q, a, p = b["qty"], b["avg"], D(f.price)
            d = D(f.qty) * (1 if f.side == BUY else -1)
            if q == 0 or (q > 0) == (d > 0):
                new_q = q + d
                b["avg"] = ((a * abs(q) + p * abs(d)) / abs(new_q)).quantize(AVG_QUANTUM, rounding=ROUND_HALF_EVEN)
                b["avg_exact"] = (b["avg_exact"] * Fraction(abs(q)) + Fraction(p) * Fraction(abs(d))) / Fraction(abs(new_q))
            else:
                closed = min(abs(d), abs(q))
                direction = 1 if q > 0 else -1
                b["realized"] += closed * (p - a) * direction
                b["realized_exact"] += Fraction(closed) * (Fraction(p) - b["avg_exact"]) * direction
                b["closed"] += closed
                new_q = q + d
                if new_q == 0:
                    b["avg"], b["avg_exact"] = Decimal(0), Fraction(0)
                elif (new_q > 0) != (q > 0):
                    b["avg"], b["avg_exact"] = p, Fraction(p)
            b["qty"] = new_q
            b["fees"] += D(f.fee) if f.fee_asset == base_quote(f.instrument)[1] else Decimal(0)
    return books


def last_closes(client) -> dict[str, Decimal]:
    """Last close of each instrument known at the replay position, read through GetCandles."""
    closes = {}
    for instrument in INSTRUMENTS:
        candles = client.get_candles(instrument, limit=1).candles
        assert len(candles) == 1, f"no candle of {instrument} up to the replay position"
        closes[instrument] = D(candles[-1].close)
    return closes


def nav_at(balances: dict[str, Decimal], closes: dict[str, Decimal]) -> Decimal:
    """Independent NAV in BTC: every balance valued at the last close of its BTC pair."""
    price_of = {base_quote(i)[0]: c for i, c in closes.items()}
    with localcontext() as ctx:
        ctx.prec = PREC
        total = Decimal(0)
        for asset, amount in balances.items():
            if asset == "BTC":
                total += amount
            elif amount:
                total += amount * price_of[asset]
        return total


def snapshot(client) -> dict:
    """Balances, PnL, positions and closes read back to back (the replay must be paused)."""
    return dict(
        balances={b.asset: D(b.total) for b in client.list_balances().balances},
        pnl=client.get_pnl(),
        positions={p.instrument: p for p in client.list_positions(include_flat=True).positions},
        closes=last_closes(client),
        fills=list(client.iter_fills(page_size=1000)),
    )


@pytest.fixture(scope="module")
def traded(tmp_path_factory):
    """One appliance that ran the whole replay with trend_momentum on three instruments.

    On the way, the replay is paused once while the account holds a position (so that NAV and
    unrealized PnL are checked with non-zero base balances) and a snapshot is taken.
    """
    tmp = tmp_path_factory.mktemp("trading_flow")
    running = harness.RunningAppliance(harness.write_config(tmp, extra=NO_RATE_LIMIT))
    try:
        for role in ("admin", "trader", "viewer"):
            running.add_user(role, role)
        trader = running.client("trader", harness.PASSWORDS["trader"])
        admin = running.client("admin", harness.PASSWORDS["admin"])
        created = trader.create_strategy("trend_momentum", INSTRUMENTS, {}, strategy_id="tm-flow")
        assert list(created.instruments) == INSTRUMENTS
        started = trader.start_strategy("tm-flow")
        assert started.status == strategies_pb2.STRATEGY_STATUS_RUNNING
        # the harness runs with start = "manual": nothing moves until an admin starts the replay
        assert admin.get_replay_progress().slices_done == 0
        admin.start_replay()

        mid = None
        while mid is None:  # pause while a base asset is held; resume and retry if it was sold meanwhile
            progress = admin.get_replay_progress()
            if progress.state == admin_pb2.REPLAY_STATE_FINISHED:  # (then the tests that need ``mid`` fail)
                break
            if progress.slices_done < 300:
                continue
            if not any(b.asset != "BTC" and D(b.total) > 0 for b in trader.list_balances().balances):
                continue
            admin.pause_replay()
            running.call(lambda: None)  # the slice in flight (if any) is handled
            snap = snapshot(trader)
            if any(a != "BTC" and v > 0 for a, v in snap["balances"].items()):
                mid = snap
                mid["progress"] = admin.get_replay_progress()
            else:
                admin.start_replay()
        if admin.get_replay_progress().state == admin_pb2.REPLAY_STATE_PAUSED:
            admin.start_replay()
        running.wait_replay_finished()
        final = snapshot(trader)
        yield dict(running=running, trader=trader, admin=admin, mid=mid, final=final)
    finally:
        running.stop()


def test_replay_finished_and_traded_all_instruments(traded):
    progress = traded["admin"].get_replay_progress()
    assert progress.state == admin_pb2.REPLAY_STATE_FINISHED
    assert progress.slices_done == progress.slices_total > 0
    fills = traded["final"]["fills"]
    assert fills, "the strategy traded nothing over 20 days of 5m bars"
    assert {f.instrument for f in fills} == set(INSTRUMENTS)
    assert {f.side for f in fills} == {BUY, SELL}


def test_each_order_agrees_with_its_fills(traded):
    trader = traded["trader"]
    orders = list(trader.iter_orders(page_size=1000))
    fills = traded["final"]["fills"]
    instruments = {i.instrument: i for i in trader.iter_instruments()}
    by_order = defaultdict(list)
    for f in fills:
        by_order[f.client_order_id].append(f)
    order_ids = {o.client_order_id for o in orders}
    assert set(by_order) <= order_ids, "fills of orders that ListOrders does not list"
    assert len({f.fill_id for f in fills}) == len(fills)
    with localcontext() as ctx:
        ctx.prec = PREC
        for o in orders:
            own = by_order.get(o.client_order_id, [])
            qty = sum((D(f.qty) for f in own), Decimal(0))
            assert qty == D(o.filled_qty), o.client_order_id
            assert sum((D(f.fee) for f in own), Decimal(0)) == D(o.fees), o.client_order_id
            assert all(f.side == o.side and f.instrument == o.instrument for f in own)
            if own:
                vwap = sum((D(f.qty) * D(f.price) for f in own), Decimal(0)) / qty
                assert abs(vwap - D(o.avg_fill_price)) <= Decimal("1e-18"), (o.client_order_id, vwap, o.avg_fill_price)
            else:
                assert D(o.avg_fill_price) == 0
            assert (o.status == orders_pb2.ORDER_STATUS_FILLED) == (qty == D(o.qty) and qty > 0), o
            assert qty <= D(o.qty)
        # the fee of each fill is qty * price * fee_bps / 10000 of its liquidity side, in the quote asset
        for f in fills:
            inst = instruments[f.instrument]
            bps = D(inst.maker_fee_bps if f.liquidity == orders_pb2.LIQUIDITY_MAKER else inst.taker_fee_bps)
            assert D(f.fee) == D(f.qty) * D(f.price) * bps / 10000, f
            assert f.fee_asset == inst.quote


def test_balances_equal_start_plus_fills_minus_fees(traded):
    for name in ("mid", "final"):
        snap = traded[name]
        if snap is None:
            continue
        expected = expected_balances(snap["fills"])
        reported = snap["balances"]
        for asset in set(expected) | set(reported):
            assert reported.get(asset, Decimal(0)) == expected.get(asset, Decimal(0)), (name, asset)
    assert traded["mid"] is not None, "never managed to pause the replay while a position was open"


def test_balances_reserved_and_free(traded):
    """reserved = what open orders hold (buys: leaves * (limit or last close) * (1 + taker fee)), free = total - reserved."""
    trader = traded["trader"]
    closes = traded["final"]["closes"]
    open_orders = list(trader.iter_orders(open_only=True))
    instruments = {i.instrument: i for i in trader.iter_instruments()}
    expected = defaultdict(Decimal)
    with localcontext() as ctx:
        ctx.prec = PREC
        for o in open_orders:
            base, quote = base_quote(o.instrument)
            leaves = D(o.qty) - D(o.filled_qty)
            if o.side == BUY:
                price = D(o.limit_price) if o.limit_price else closes[o.instrument]
                expected[quote] += leaves * price * (1 + D(instruments[o.instrument].taker_fee_bps) / 10000)
            else:
                expected[base] += leaves
        for b in trader.list_balances().balances:
            assert D(b.reserved) == expected.get(b.asset, Decimal(0)), b
            assert D(b.free) == D(b.total) - D(b.reserved), b


def test_positions_realized_pnl_recomputed_with_average_cost(traded):
    for name in ("mid", "final"):
        snap = traded[name]
        assert snap is not None
        oldest_first = list(reversed(snap["fills"]))  # ListFills is newest first
        times = [f.time.ToNanoseconds() for f in oldest_first]
        assert times == sorted(times)
        books = average_cost(oldest_first)
        assert set(books) <= set(INSTRUMENTS)
        assert set(snap["positions"]) == set(books), "a position for each traded instrument (include_flat)"
        for instrument, book in books.items():
            pos = snap["positions"][instrument]
            assert D(pos.qty) == book["qty"], (name, instrument)
            assert D(pos.avg_price) == book["avg"], (name, instrument)
            assert D(pos.realized_pnl) == book["realized"], (name, instrument)
            assert D(pos.fees) == book["fees"], (name, instrument)
            # the 18-decimal rounding of the average moves realized PnL by at most closed_qty * 1e-18
            assert abs(Fraction(D(pos.realized_pnl)) - book["realized_exact"]) <= Fraction(book["closed"]) * Fraction(1, 10**18)
            mark = snap["closes"][instrument]
            assert D(pos.mark_price) == mark
            assert D(pos.unrealized_pnl) == book["qty"] * (mark - book["avg"])
            # the base balance is the position (the account starts with BTC only)
            assert snap["balances"].get(base_quote(instrument)[0], Decimal(0)) == book["qty"]


def test_pnl_nav_is_balances_at_last_closes(traded):
    for name in ("mid", "final"):
        snap = traded[name]
        assert snap is not None
        pnl = snap["pnl"]
        assert pnl.nav_currency == "BTC"
        nav = nav_at(snap["balances"], snap["closes"])
        assert D(pnl.nav) == nav, name
        assert D(pnl.starting_nav) == Decimal("1")
        books = average_cost(list(reversed(snap["fills"])))
        realized = sum((b["realized"] for b in books.values()), Decimal(0))
        fees = sum((b["fees"] for b in books.values()), Decimal(0))
        unrealized = sum((b["qty"] * (snap["closes"][i] - b["avg"]) for i, b in books.items()), Decimal(0))
        assert D(pnl.realized_pnl) == realized
        assert D(pnl.fees) == fees
        assert D(pnl.unrealized_pnl) == unrealized
        assert D(pnl.net_pnl) == realized + unrealized - fees
        # NAV moved by exactly the net PnL, up to the 18-decimal rounding of average prices
        held = sum((abs(b["qty"]) for b in books.values()), Decimal(0))
        closed = sum((b["closed"] for b in books.values()), Decimal(0))
        assert abs((nav - 1) - D(pnl.net_pnl)) <= (held + closed) * Decimal("1e-18")
    mid = traded["mid"]
    assert any(D(p.qty) != 0 for p in mid["positions"].values()), "mid-run snapshot without an open position"
    assert D(mid["pnl"].nav) != D(mid["balances"]["BTC"]), "mid-run NAV should include base assets"


def test_list_orders_pages_of_seven_cover_every_order_once_newest_first(traded):
    trader, running = traded["trader"], traded["running"]
    # independent source: the journal's order-creation events (newest first below)
    entries = running.call(lambda: list(running.app.journal.iter_all()))
    created = [e.aggregate_id for e in entries if e.aggregate == "order" and e.type in ("OrderSubmitted", "OrderDenied")]
    pages, token, seen_tokens = [], "", set()
    while True:
        page = trader.list_orders(page_size=7, page_token=token)
        assert len(page.orders) <= 7
        pages.append(list(page.orders))
        if len(pages) == 2:  # an order created while paging must not shift the pages
            trader.submit_order("ADA/BTC@paper", "buy", "100", limit_price="0.00001", client_order_id="while-paging")
        token = page.next_page_token
        if not token:
            break
        assert token not in seen_tokens
        seen_tokens.add(token)
        assert len(page.orders) == 7, "a page before the last one must be full"
    walked = [o.client_order_id for p in pages for o in p]
    assert "while-paging" not in walked
    assert trader.list_orders(page_size=1).orders[0].client_order_id == "while-paging"
    assert len(created) == len(set(created))
    assert walked == list(reversed(created))
    assert len(pages) == -(-len(created) // 7)
    times = [o.create_time.ToNanoseconds() for p in pages for o in p]
    assert times == sorted(times, reverse=True)


def test_fills_page_token_is_refused_by_list_orders(traded):
    trader = traded["trader"]
    fills_page = trader.list_fills(page_size=1)
    assert fills_page.next_page_token
    with pytest.raises(InvalidArgument) as err:
        trader.list_orders(page_size=7, page_token=fills_page.next_page_token)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in err.value.message
    # and a ListOrders token continues ListOrders but not ListFills
    orders_page = trader.list_orders(page_size=1)
    assert orders_page.next_page_token
    with pytest.raises(InvalidArgument):
        trader.list_fills(page_size=1, page_token=orders_page.next_page_token)


def test_list_fills_pages_of_seven_cover_every_fill_once(traded):
    trader = traded["trader"]
    walked, token = [], ""
    while True:
        page = trader.list_fills(page_size=7, page_token=token)
        walked += [f.fill_id for f in page.fills]
        token = page.next_page_token
        if not token:
            break
        assert len(page.fills) == 7
    assert walked == [f.fill_id for f in traded["final"]["fills"]]
    assert len(set(walked)) == len(walked) > 7


def test_list_balances_filters_by_venue(traded):
    trader = traded["trader"]
    paper = trader.list_balances("paper").balances
    assert paper and all(b.venue == "paper" for b in paper)
    try:
        other = trader.list_balances("binance").balances
    except LyraError as err:  # refusing an unknown venue is fine too
        assert err.code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
        return
    assert all(b.venue == "binance" for b in other), [(b.asset, b.venue) for b in other]


def test_stream_order_events_submit_accept_cancel(appliance):
    trader = appliance.client("trader", harness.PASSWORDS["trader"])
    watcher = appliance.client("viewer", harness.PASSWORDS["viewer"])  # orders.read is enough
    events: queue.Queue = queue.Queue()
    stream = watcher.stream_order_events(instrument="ETH/BTC@paper")

    def pump():
        try:
            for event in stream:
                events.put(event)
        except Exception as exc:  # noqa: BLE001 - the stream ends with an error when its channel closes
            events.put(exc)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    try:
        # the stream is subscribed once it delivers an event: submit probes until one comes back
        probe_ids = []
        first = None
        for k in range(15):  # max_open_orders is 20: the probes stay open
            probe = trader.submit_order("ETH/BTC@paper", "buy", "0.05", limit_price="0.05", client_order_id=f"probe-{k}")
            probe_ids.append(probe.client_order_id)
            try:
                first = events.get(timeout=0.5)
                break
            except queue.Empty:
                continue
        assert first is not None and not isinstance(first, Exception), first
        assert first.order.client_order_id in probe_ids

        decoy = trader.submit_order("ADA/BTC@paper", "buy", "1000", limit_price="0.00001", client_order_id="decoy-ada")
        cid = "stream-me-1"
        order = trader.submit_order("ETH/BTC@paper", "buy", "0.1", limit_price="0.05", client_order_id=cid)
        assert order.status == orders_pb2.ORDER_STATUS_PENDING_SUBMIT
        appliance.call(lambda: None)  # the venue's acceptance is handled
        assert trader.get_order(cid).status == orders_pb2.ORDER_STATUS_OPEN
        trader.cancel_order(decoy.client_order_id)
        trader.cancel_order(cid)
        appliance.call(lambda: None)  # the venue's cancel reports are handled
        assert trader.get_order(cid).status == orders_pb2.ORDER_STATUS_CANCELED

        received = [first]
        while not received or received[-1].order.client_order_id != cid or \
                received[-1].type != orders_pb2.ORDER_EVENT_TYPE_CANCELED:
            event = events.get(timeout=10)
            assert not isinstance(event, Exception), event
            received.append(event)
    finally:
        watcher.close()  # closing the channel ends the stream (the generator lives in the pump thread)
        thread.join(5)
    assert all(e.order.instrument == "ETH/BTC@paper" for e in received), "the instrument filter let other orders through"
    all_seqs = [e.seq for e in received]
    assert all_seqs == sorted(all_seqs) and len(set(all_seqs)) == len(all_seqs)
    mine = [e for e in received if e.order.client_order_id == cid]
    types = [e.type for e in mine]
    main = [t for t in types if t != orders_pb2.ORDER_EVENT_TYPE_UPDATED]  # UPDATED = cancel requested
    assert main == [orders_pb2.ORDER_EVENT_TYPE_SUBMITTED, orders_pb2.ORDER_EVENT_TYPE_ACCEPTED,
                    orders_pb2.ORDER_EVENT_TYPE_CANCELED], types
    assert [e.order.status for e in mine if e.type != orders_pb2.ORDER_EVENT_TYPE_UPDATED] == [
        orders_pb2.ORDER_STATUS_PENDING_SUBMIT, orders_pb2.ORDER_STATUS_OPEN, orders_pb2.ORDER_STATUS_CANCELED]
    assert all(e.order.qty == "0.1" and e.order.limit_price == "0.05" for e in mine)


# -- one order filled in many parts, against the candle fill model ---------------------------------

BIG_QTY, BIG_LIMIT = Decimal("1600"), Decimal("0.0171")
SLIPPAGE_BPS, MAX_PARTICIPATION = Decimal("5"), Decimal("0.1")  # [paper] defaults (the harness keeps them)


def ltc_rows() -> list[dict]:
    import csv

    with open(harness.shared_data() / "candles" / "bittrex_LTC-BTC_5m.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def simulate_buy_limit(rows, accepted_ns: int, qty: Decimal, limit: Decimal, tick: Decimal, step: Decimal,
                       maker_bps: Decimal, taker_bps: Decimal) -> list[tuple]:
    """The documented CandleFillModel, written from its rules: only bars opening at or after the
    acceptance trade; on the first of them a marketable limit buy (open <= limit) takes at
    open * (1 + slippage) rounded UP to the tick, capped at the limit; afterwards it rests and fills
    at the limit when a bar trades through it (low < limit); each bar fills at most
    volume * max_participation rounded DOWN to the lot step; fee = qty * price * bps / 10000."""
    fills, leaves, first = [], qty, True
    with localcontext() as ctx:
        ctx.prec = PREC
        for row in rows:
            open_ns = int(row["timestamp_ms"]) * 1_000_000
            if open_ns < accepted_ns:
                continue
            o, low, volume = Decimal(row["open"]), Decimal(row["low"]), Decimal(row["volume"])
            if first and o <= limit:
                taker = (o * (1 + SLIPPAGE_BPS / 10000) / tick).to_integral_value(rounding=ROUND_UP) * tick
                price, liquidity, bps = min(taker, limit), orders_pb2.LIQUIDITY_TAKER, taker_bps
            elif low < limit:
                price, liquidity, bps = limit, orders_pb2.LIQUIDITY_MAKER, maker_bps
            else:
                first = False
                continue
            first = False
            cap = (volume * MAX_PARTICIPATION / step).to_integral_value(rounding=ROUND_DOWN) * step if volume else None
            q = leaves if cap is None else min(leaves, cap)
            if q <= 0:
                continue
            fills.append((q, price, liquidity, q * price * bps / 10000, open_ns + 5 * 60 * 10**9))
            leaves -= q
            if leaves == 0:
                break
    return fills


@pytest.fixture(scope="module")
def many_parts(tmp_path_factory):
    """A 1600 LTC buy limit at 0.0171 placed before the replay starts (50 BTC account, limits
    raised by an admin): the 10 % participation cap spreads it over many bars."""
    tmp = tmp_path_factory.mktemp("many_parts")
    running = harness.RunningAppliance(harness.write_config(
        tmp, symbols=("LTC/BTC",), extra='[paper.starting_balances]\nBTC = "50"\n' + NO_RATE_LIMIT))
    try:
        for role in ("admin", "trader"):
            running.add_user(role, role)
        trader = running.client("trader", harness.PASSWORDS["trader"])
        admin = running.client("admin", harness.PASSWORDS["admin"])
        admin.update_risk_limits(max_order_notional="100", max_position_notional="100")
        submitted = trader.submit_order("LTC/BTC@paper", "buy", str(BIG_QTY), limit_price=str(BIG_LIMIT),
                                        client_order_id="many-parts")
        admin.start_replay()
        running.wait_replay_finished()
        yield dict(
            submitted=submitted,
            order=trader.get_order("many-parts"),
            fills=list(reversed(list(trader.iter_fills(client_order_id="many-parts", page_size=1000)))),
            instrument=next(i for i in trader.iter_instruments() if i.instrument == "LTC/BTC@paper"),
            balances={b.asset: D(b.total) for b in trader.list_balances().balances},
            position=trader.list_positions("LTC/BTC@paper").positions[0],
        )
    finally:
        running.stop()


def test_many_part_order_fills_follow_the_candle_fill_model(many_parts):
    inst, order, fills = many_parts["instrument"], many_parts["order"], many_parts["fills"]
    expected = simulate_buy_limit(
        ltc_rows(), many_parts["submitted"].create_time.ToNanoseconds(), BIG_QTY, BIG_LIMIT,
        D(inst.price_tick), D(inst.qty_step), D(inst.maker_fee_bps), D(inst.taker_fee_bps))
    got = [(D(f.qty), D(f.price), f.liquidity, D(f.fee), f.time.ToNanoseconds()) for f in fills]
    assert len(got) >= 10
    assert got == expected
    assert order.status == orders_pb2.ORDER_STATUS_FILLED
    assert D(order.filled_qty) == BIG_QTY
    assert D(order.fees) == sum((e[3] for e in expected), Decimal(0))
    assert [f.fill_id for f in fills] == [f"{order.venue_order_id}-{k}" for k in range(1, len(fills) + 1)]
    with localcontext() as ctx:
        ctx.prec = PREC
        cost = sum((e[0] * e[1] + e[3] for e in expected), Decimal(0))
    assert many_parts["balances"] == {"BTC": Decimal(50) - cost, "LTC": BIG_QTY}
    assert D(many_parts["position"].qty) == BIG_QTY


def test_many_part_order_avg_fill_price_is_the_rounded_vwap(many_parts):
    order, fills = many_parts["order"], many_parts["fills"]
    with localcontext() as ctx:
        ctx.prec = PREC
        qty = sum((D(f.qty) for f in fills), Decimal(0))
        vwap = sum((D(f.qty) * D(f.price) for f in fills), Decimal(0)) / qty
    assert abs(D(order.avg_fill_price) - vwap) <= Decimal("1e-18"), (order.avg_fill_price, vwap)
    assert D(order.avg_fill_price) == vwap.quantize(AVG_QUANTUM, rounding=ROUND_HALF_EVEN)
