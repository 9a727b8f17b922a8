"""OMS submit/report paths and every risk rule, with a recording venue double."""

from decimal import Decimal as D

import pytest

from appliance.engine.clock import SimClock, NS_PER_DAY
from appliance.engine.engine import Engine
from appliance.execution.oms import OrderManager, OrderRequest
from appliance.model.errors import AlreadyExistsError, NotFoundError, PreconditionError, ValidationError
from appliance.model.fill import Fill, Liquidity
from appliance.model.instrument import Instrument, InstrumentId
from appliance.model.order import OrderSide, OrderStatus, OrderType
from appliance.model.position import recompute_from_fills
from appliance.portfolio.service import Portfolio
from appliance.risk.engine import RiskEngine, RiskLimits, TradingState
from appliance.store.db import Database
from appliance.store.journal import Journal
from appliance.venues.base import (
    OrderAccepted, OrderCanceled, OrderFilled, OrderRejected, VenueHealth, VenueOrderState, reconcile_by_lookup,
)

IID = InstrumentId("paper", "ETH/BTC")
INST = Instrument(IID, "ETH", "BTC", D("0.000001"), D("0.001"), min_qty=D("0.001"), min_notional=D("0.0005"),
                  maker_fee_bps=D("10"), taker_fee_bps=D("20"))


class RecordingVenue:
    name = "paper"

    def __init__(self):
        self.sent, self.canceled, self.known = [], [], {}

    def instruments(self):
        return [INST]

    def set_report_sink(self, sink):
        self.sink = sink

    def submit(self, order):
        self.sent.append(order.client_order_id)
        self.known[order.client_order_id] = VenueOrderState(order.client_order_id, "v-" + order.client_order_id, "open", D(0))

    def cancel(self, order):
        self.canceled.append(order.client_order_id)

    def lookup(self, client_order_id):
        return self.known.get(client_order_id)

    def reconcile(self, orders):
        reconcile_by_lookup(orders, self.lookup, self.sink, 99)

    def health(self):
        return VenueHealth.CONNECTED


class World:
    def __init__(self, path, limits=RiskLimits()):
        self.db = Database(path)
        self.journal = Journal(self.db)
        self.clock = SimClock(10 * NS_PER_DAY)
        self.engine = Engine(self.db, self.journal)
        self.venue = RecordingVenue()
        self.venue.set_report_sink(self.engine.post)
        instruments = {IID: INST}
        self.portfolio = Portfolio(self.db, self.journal, self.clock, instruments, "BTC")
        self.oms = OrderManager(self.db, self.journal, self.clock, self.engine, {"paper": self.venue}, instruments, self.portfolio)
        self.portfolio.reserved = self.oms.reserved
        self.risk = RiskEngine(self.db, self.journal, self.clock, self.portfolio, limits, self.oms.open_order_count,
                               lambda reason: self.oms.cancel_all(reason))
        self.oms.risk_check = self.risk.check
        for report_type in (OrderAccepted, OrderCanceled, OrderFilled, OrderRejected):
            self.engine.register(report_type, self.oms.on_report)
        self.do(lambda: self.portfolio.initialized("paper") or self.portfolio.initialize("paper", {"BTC": D("1")}))
        self.portfolio.update_mark(IID, D("0.05"))

    def do(self, fn, *args):
        return self.engine.execute_now(fn, *args)

    def submit(self, side=OrderSide.BUY, qty="1", type_=OrderType.MARKET, price=None, cid=""):
        return self.do(self.oms.submit, OrderRequest(IID, side, type_, D(qty), D(price) if price else None, cid))

    def fill(self, order, qty, price, n=1):
        fee = D(qty) * D(price) * D("0.002")
        f = Fill(f"{order.client_order_id}-{n}", order.client_order_id, IID, order.side, D(qty), D(price), fee, "BTC",
                 Liquidity.TAKER, self.clock.now_ns())
        self.do(self.oms.on_report, OrderFilled(f))
        return f


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path / "lyra.db")
    yield w
    w.db.close()


def test_submit_records_pending_before_sending(world):
    sent_while_pending = []
    original = world.venue.submit

    def check(order):
        row = world.db.query_one("SELECT status FROM orders WHERE client_order_id=?", (order.client_order_id,))
        sent_while_pending.append(row[0])
        original(order)

    world.venue.submit = check
    order = world.submit(qty="1.23456")
    assert order.status is OrderStatus.PENDING_SUBMIT and order.qty == D("1.234")  # rounded down to the lot step
    assert sent_while_pending == ["PENDING_SUBMIT"]  # committed before it left
    world.do(world.oms.on_report, OrderAccepted(order.client_order_id, "v1", 5))
    assert world.oms.get(order.client_order_id).status is OrderStatus.OPEN
    types = [e.type for e in world.journal.read()]
    assert types[-2:] == ["OrderSubmitted", "OrderAccepted"]


@pytest.mark.parametrize("kwargs,field", [
    (dict(qty="0"), "qty"), (dict(qty="-1"), "qty"), (dict(qty="0.0004"), "qty"),
    (dict(type_=OrderType.LIMIT), "limit_price"), (dict(price="0.05"), "limit_price"),
    (dict(qty="0.001"), "qty"),  # 0.001 * 0.05 = 0.00005 < min_notional 0.0005
    (dict(cid="bad id!"), "client_order_id"), (dict(cid="x" * 37), "client_order_id"),
])
def test_bad_input_names_the_field_and_records_nothing(world, kwargs, field):
    before = world.journal.last_seq()
    with pytest.raises(ValidationError) as err:
        world.submit(**kwargs)
    assert err.value.field == field
    assert world.journal.last_seq() == before and world.venue.sent == []
    assert world.db.scalar("SELECT COUNT(*) FROM orders") == 0


def test_duplicate_client_order_id_refused(world):
    world.submit(cid="mine-1")
    with pytest.raises(AlreadyExistsError, match="already used"):
        world.submit(cid="mine-1")


def test_fills_update_portfolio_exactly_once_and_recompute(world):
    order = world.submit(qty="2")
    world.do(world.oms.on_report, OrderAccepted(order.client_order_id, "v1", 5))
    f1 = world.fill(order, "0.5", "0.05", 1)
    world.fill(order, "0.5", "0.05", 1)  # duplicate fill id: ignored
    f2 = world.fill(order, "1.5", "0.051", 2)
    o = world.oms.get(order.client_order_id)
    assert o.status is OrderStatus.FILLED and o.filled_qty == D("2")
    balances, positions = recompute_from_fills({("paper", "BTC"): D("1")}, [f1, f2], {IID: ("ETH", "BTC")})
    assert world.portfolio.balances == balances
    assert world.portfolio.positions[IID] == positions[IID]
    assert world.db.scalar("SELECT COUNT(*) FROM fills") == 2
    # a restart rebuilds the same portfolio from the database
    again = Portfolio(world.db, world.journal, world.clock, {IID: INST}, "BTC")
    assert again.balances == balances and again.positions == world.portfolio.positions


def test_limit_rules_each_name_their_rule(tmp_path):
    w = World(tmp_path / "a.db", RiskLimits(max_order_notional=D("0.1"), max_position_notional=D("0.15"), max_open_orders=2))
    assert w.submit(qty="3").reject_rule == "max_order_notional"       # 3 * 0.05 = 0.15 > 0.1
    o1 = w.submit(qty="1.9")                                            # 0.095 ok
    w.do(w.oms.on_report, OrderAccepted(o1.client_order_id, "v1", 1))
    w.fill(o1, "1.9", "0.05")
    rejected = w.submit(qty="1.5")                                      # position 3.4*0.05 = 0.17 > 0.15
    assert rejected.status is OrderStatus.REJECTED and rejected.reject_rule == "max_position_notional"
    assert w.submit(side=OrderSide.SELL, qty="1").status is OrderStatus.PENDING_SUBMIT  # reducing passes
    w.submit(qty="0.5")
    assert w.submit(qty="0.1").reject_rule == "max_open_orders"
    assert w.submit(side=OrderSide.SELL, qty="5").reject_rule in ("insufficient_balance", "max_open_orders")
    denied = w.db.query("SELECT reject_rule FROM orders WHERE status='REJECTED' ORDER BY seq")
    listed, _ = w.oms.list(statuses=[OrderStatus.REJECTED])
    assert [o.reject_rule for o in listed] == [r[0] for r in reversed(denied)]  # newest first
    assert [r[0] for r in denied] == ["max_order_notional", "max_position_notional", "max_open_orders",
                                      denied[-1][0]]
    assert "OrderDenied" in [e.type for e in w.journal.read()]
    w.db.close()


def test_insufficient_balance_counts_reserved_and_fees(world):
    # 1 BTC: a buy of 19.9 ETH at 0.05 = 0.995 BTC + 0.2% fee = 0.99699 fits; a second one does not
    assert world.submit(qty="19.9").status is OrderStatus.PENDING_SUBMIT
    assert world.submit(qty="0.1").reject_rule == "insufficient_balance"
    assert world.submit(side=OrderSide.SELL, qty="1").reject_rule == "insufficient_balance"  # no ETH: no shorting


def test_kill_switch_cancels_blocks_survives_restart(tmp_path):
    w = World(tmp_path / "k.db")
    order = w.submit(qty="1")
    w.do(w.risk.engage_kill_switch, "test halt", "alice")
    assert w.venue.canceled == [order.client_order_id]
    assert w.risk.trading_state is TradingState.HALTED
    assert w.submit(qty="1").reject_rule == "kill_switch"
    w.db.close()
    w2 = World(tmp_path / "k.db")
    assert w2.risk.kill_switch_engaged and w2.submit(qty="1").reject_rule == "kill_switch"
    with pytest.raises(ValidationError):
        w2.do(w2.risk.release_kill_switch, "", "admin")
    w2.do(w2.risk.release_kill_switch, "all clear", "admin")
    assert w2.submit(qty="1").status is OrderStatus.PENDING_SUBMIT
    with pytest.raises(PreconditionError):
        w2.do(w2.risk.release_kill_switch, "again", "admin")
    w2.db.close()


def test_daily_loss_breaker_trips_reduces_only_and_resets_next_utc_day(tmp_path):
    w = World(tmp_path / "d.db", RiskLimits(daily_loss_limit=D("0.02")))
    o = w.submit(qty="10")
    w.do(w.oms.on_report, OrderAccepted(o.client_order_id, "v", 1))
    w.fill(o, "10", "0.05")
    w.do(w.risk.on_valuation)  # day starts: NAV ~ 0.999
    start_nav = w.portfolio.nav()
    w.portfolio.update_mark(IID, D("0.047"))  # 10 ETH lose 0.03 BTC > 0.02
    w.do(w.risk.on_valuation)
    assert w.risk.trading_state is TradingState.REDUCING
    assert w.risk.status().daily_pnl == w.portfolio.nav() - start_nav
    assert w.submit(qty="1").reject_rule == "daily_loss_limit"
    assert w.submit(side=OrderSide.SELL, qty="1").status is OrderStatus.PENDING_SUBMIT
    w.clock.advance_to(w.clock.now_ns() + NS_PER_DAY)
    w.do(w.risk.on_valuation)
    assert w.risk.trading_state is TradingState.ACTIVE
    w.db.close()


def test_update_limits_validates_all_before_applying(world):
    with pytest.raises(ValidationError) as err:
        world.do(world.risk.update_limits, {"max_open_orders": "3", "daily_loss_limit": "-1"}, "admin")
    assert err.value.field == "limits.daily_loss_limit"
    assert world.risk.limits == RiskLimits()
    world.do(world.risk.update_limits, {"max_open_orders": "3"}, "admin")
    assert world.risk.limits.max_open_orders == 3
    assert world.db.scalar("SELECT value FROM risk_limits WHERE name='max_open_orders'") == "3"


def test_reconcile_after_crash(tmp_path):
    w = World(tmp_path / "r.db")
    sent = w.submit(qty="1")          # reached the venue
    w.venue.known.pop("nothing", None)
    lost = w.submit(qty="1")          # never reached it
    del w.venue.known[lost.client_order_id]
    notes = w.do(w.oms.reconcile)
    assert notes == ["reconciling 2 open orders with venue paper"]
    assert w.engine.drain() == 2  # the venue's answers come back as reports, handled in order
    assert w.oms.get(sent.client_order_id).status is OrderStatus.OPEN
    lost_now = w.oms.get(lost.client_order_id)
    assert lost_now.status is OrderStatus.REJECTED and lost_now.reject_rule == "lost_before_send"
    w.db.close()


def test_cancel_unknown_and_terminal(world):
    with pytest.raises(NotFoundError):
        world.do(world.oms.cancel, "nope")
    order = world.submit(qty="1")
    world.do(world.oms.on_report, OrderCanceled(order.client_order_id, "by test", 3))
    with pytest.raises(PreconditionError):
        world.do(world.oms.cancel, order.client_order_id)
