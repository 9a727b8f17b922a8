"""PaperVenue: acceptance, matching on later bars only, exact fees, restart, idempotency, cancel."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest

from appliance.engine.clock import SimClock
from appliance.marketdata.bar import Bar
from appliance.marketdata.candles import discover, load, load_all
from appliance.marketdata.replay import ReplayFeed
from appliance.model.errors import PreconditionError, ValidationError
from appliance.model.fill import Liquidity
from appliance.model.instrument import Instrument, InstrumentId
from appliance.model.order import Order, OrderSide, OrderStatus, OrderType
from appliance.store.db import Database
from appliance.venues.base import OrderAccepted, OrderCanceled, OrderFilled, OrderRejected, VenueOrderState
from appliance.venues.paper import CandleFillModel, PaperVenue, instruments_from_dataset

TF = 300 * 10**9
T = 1_515_560_400 * 10**9
ADA_ID = InstrumentId("paper", "ADA/BTC")
DASH_ID = InstrumentId("paper", "DASH/BTC")
ADA = Instrument(
    id=ADA_ID,
    base="ADA",
    quote="BTC",
    price_tick=D("0.00000001"),
    qty_step=D("1"),
    min_qty=D("1"),
    min_notional=D("0.0005"),
    maker_fee_bps=D("10"),
    taker_fee_bps=D("25"),
)
DASH = Instrument(DASH_ID, "DASH", "BTC", D("0.00000001"), D("0.001"), taker_fee_bps=D("25"))
BUY, SELL = OrderSide.BUY, OrderSide.SELL
MKT, LMT = OrderType.MARKET, OrderType.LIMIT


class Harness:
    def __init__(self, path: Path, clock: SimClock, model: CandleFillModel | None = None) -> None:
        self.path = path
        self.clock = clock
        self.model = model or CandleFillModel(slippage_bps=D("10"), max_participation=D("0.1"))
        self.db = Database(path)
        self.reports: list = []
        self.venue = self.make()

    def make(self) -> PaperVenue:
        venue = PaperVenue("paper", [ADA, DASH], self.model, self.db, self.clock)
        venue.set_report_sink(self.reports.append)
        return venue

    def restart(self) -> None:
        """A new process: new connection, new venue, same database file."""
        self.db.close()
        self.db = Database(self.path)
        self.venue = self.make()

    def on_bar(self, bar: Bar) -> list:
        with self.db.transaction():  # as the engine does: inside its transaction
            return self.venue.on_bar(bar)


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path / "lyra.db", SimClock(T))


def order(cid: str, side=BUY, type_=MKT, qty="1000", limit: str | None = None, inst=ADA_ID) -> Order:
    return Order(
        client_order_id=cid,
        instrument=inst,
        side=side,
        type=type_,
        qty=D(qty),
        limit_price=D(limit) if limit is not None else None,
        status=OrderStatus.PENDING_SUBMIT,
        created_ns=T,
        updated_ns=T,
    )


def bar(o: str, h: str, l: str, c: str, v: str, open_ns: int = T, inst=ADA_ID) -> Bar:  # noqa: E741
    return Bar(inst, open_ns, open_ns + TF, D(o), D(h), D(l), D(c), D(v))


def fills(reports: list) -> list:
    return [r.fill for r in reports if isinstance(r, OrderFilled)]


# -- submit ---------------------------------------------------------------------------------
def test_submit_is_accepted_with_unique_venue_ids(h: Harness) -> None:
    h.venue.submit(order("c1", type_=LMT, limit="0.00005000"))
    h.clock.advance_to(T + 7)
    h.venue.submit(order("c2", type_=LMT, limit="0.00005001"))
    assert h.reports == [OrderAccepted("c1", "paper-1", T), OrderAccepted("c2", "paper-2", T + 7)]
    assert h.db.query("SELECT client_order_id, venue_order_id, status, filled_qty, accepted_ns FROM paper_orders") == [
        ("c1", "paper-1", "new", "0", T),
        ("c2", "paper-2", "new", "0", T + 7),
    ]
    assert h.venue.lookup("c1") == VenueOrderState("c1", "paper-1", "open", D(0))
    assert h.venue.lookup("nope") is None
    assert [o.venue_order_id for o in h.venue.open_orders()] == ["paper-1", "paper-2"]


def test_market_order_fills_on_the_next_real_bar_with_exact_fee(shared_data: Path, h: Harness) -> None:
    ada = load(shared_data / "candles" / "bittrex_ADA-BTC_5m.csv")
    feed = ReplayFeed([(ADA_ID, ada)])
    slices = feed.slices()
    decision = next(slices)  # row 0: 1515560100000,0.0000533,0.0000533,0.00005288,0.0000529,431401.97869504
    h.clock.advance_to(decision.close_ns)
    h.venue.submit(order("c1", qty="1000"))
    assert h.reports == [OrderAccepted("c1", "paper-1", decision.close_ns)]
    assert h.on_bar(decision.bars[0]) == []  # the bar that triggered the decision never fills it
    nxt = next(slices)  # row 1: 1515560400000,0.0000529,0.00005294,0.00005269,0.0000527,311565.65458338
    h.clock.advance_to(nxt.close_ns)
    [report] = h.on_bar(nxt.bars[0])
    f = report.fill
    # 0.0000529 * 1.001 = 0.0000529529 -> tick up -> 0.00005296; cap 31156.565... > 1000
    assert (f.fill_id, f.client_order_id, f.side, f.qty, f.price) == ("paper-1-1", "c1", BUY, D("1000"), D("0.00005296"))
    # fee = 1000 * 0.00005296 * 25 / 10000 = 0.0001324 BTC
    assert (f.fee, f.fee_asset, f.liquidity, f.ts_ns) == (D("0.0001324"), "BTC", Liquidity.TAKER, nxt.close_ns)
    assert h.venue.lookup("c1") == VenueOrderState("c1", "paper-1", "filled", D("1000"))
    assert h.venue.open_orders() == []
    assert h.db.query("SELECT status, filled_qty, fill_count FROM paper_orders") == [("filled", "1000", 1)]
    assert h.on_bar(next(slices).bars[0]) == []


def test_limit_maker_fill_pays_maker_fee(h: Harness) -> None:
    h.venue.submit(order("c1", qty="1000", type_=LMT, limit="0.00005260"))
    assert h.on_bar(bar("0.00005300", "0.00005310", "0.00005270", "0.00005280", "500000")) == []  # no trade-through
    [f] = fills(h.on_bar(bar("0.00005280", "0.00005290", "0.00005250", "0.00005255", "500000", open_ns=T + TF)))
    # maker at the limit; fee = 1000 * 0.0000526 * 10 / 10000 = 0.0000526
    assert (f.qty, f.price, f.liquidity, f.fee) == (D("1000"), D("0.0000526"), Liquidity.MAKER, D("0.0000526"))


def test_partial_fills_then_complete(h: Harness) -> None:
    h.venue.submit(order("c1", qty="10000"))
    [f1] = fills(h.on_bar(bar("0.00005300", "0.00005310", "0.00005270", "0.00005280", "60000")))
    assert (f1.fill_id, f1.qty) == ("paper-1-1", D("6000"))  # 10 % of 60000
    assert h.venue.lookup("c1") == VenueOrderState("c1", "paper-1", "open", D("6000"))
    [f2] = fills(h.on_bar(bar("0.00005280", "0.00005290", "0.00005250", "0.00005255", "100000", open_ns=T + TF)))
    assert (f2.fill_id, f2.qty, f2.price) == ("paper-1-2", D("4000"), D("0.00005286"))  # 0.0000528*1.001 -> up
    assert h.venue.lookup("c1") == VenueOrderState("c1", "paper-1", "filled", D("10000"))


def test_orders_match_in_acceptance_order_and_by_instrument(h: Harness) -> None:
    h.venue.submit(order("c1", qty="1000"))
    h.venue.submit(order("c2", side=SELL, qty="2000"))
    h.venue.submit(order("d1", qty="1", inst=DASH_ID))
    got = fills(h.on_bar(bar("0.00005300", "0.00005310", "0.00005270", "0.00005280", "500000")))
    assert [(f.fill_id, f.side, f.price) for f in got] == [
        ("paper-1-1", BUY, D("0.00005306")),  # 0.000053 * 1.001 = 0.000053053 -> up
        ("paper-2-1", SELL, D("0.00005294")),  # 0.000053 * 0.999 = 0.000052947 -> down
    ]
    assert [o.client_order_id for o in h.venue.open_orders()] == ["d1"]
    assert h.on_bar(bar("0.07", "0.08", "0.06", "0.07", "0", inst=InstrumentId("other", "DASH/BTC"))) == []
    [d] = fills(h.on_bar(bar("0.07439998", "0.07601843", "0.07439842", "0.07553338", "131.43026526", inst=DASH_ID)))
    assert (d.fill_id, d.qty, d.price) == ("paper-3-1", D("1"), D("0.07447438"))  # 0.07439998*1.001=0.07447437998 -> up


# -- restart ------------------------------------------------------------------------------
def test_restart_keeps_resting_orders_lookups_and_ids(h: Harness) -> None:
    h.venue.submit(order("lim", qty="1000", type_=LMT, limit="0.00005260"))
    h.venue.submit(order("mkt", qty="10000"))
    got = fills(h.on_bar(bar("0.00005300", "0.00005310", "0.00005270", "0.00005280", "60000")))
    assert [(f.fill_id, f.qty) for f in got] == [("paper-2-1", D("6000"))]  # the limit rests (now "open")
    before = h.venue.open_orders()

    h.restart()
    assert h.venue.open_orders() == before
    assert h.venue.lookup("lim") == VenueOrderState("lim", "paper-1", "open", D(0))
    assert h.venue.lookup("mkt") == VenueOrderState("mkt", "paper-2", "open", D("6000"))
    # the next bar opens below the limit: the resting limit fills as MAKER at its price (it is no
    # longer "on arrival"), and the market order's fill ids continue at -2
    got = fills(h.on_bar(bar("0.00005250", "0.00005260", "0.00005240", "0.00005255", "100000", open_ns=T + TF)))
    assert [(f.fill_id, f.qty, f.price, f.liquidity) for f in got] == [
        ("paper-1-1", D("1000"), D("0.0000526"), Liquidity.MAKER),
        ("paper-2-2", D("4000"), D("0.00005256"), Liquidity.TAKER),  # 0.0000525*1.001=0.0000525525 -> up
    ]
    h.venue.submit(order("next", qty="1000"))
    assert h.reports[-1] == OrderAccepted("next", "paper-3", T)


def test_restart_before_first_bar_keeps_marketable_on_arrival(h: Harness) -> None:
    h.venue.submit(order("lim", qty="1000", type_=LMT, limit="0.00005260"))
    h.restart()
    [f] = fills(h.on_bar(bar("0.00005250", "0.00005260", "0.00005240", "0.00005255", "100000")))
    assert (f.price, f.liquidity) == (D("0.00005256"), Liquidity.TAKER)  # at the open + slippage, <= limit


def test_the_decision_bar_does_not_use_up_the_arrival(h: Harness) -> None:
    h.venue.submit(order("lim", qty="1000", type_=LMT, limit="0.00005260"))
    # a bar that opened before the acceptance is not eligible: it neither fills the order nor
    # counts as its first eligible bar, even though it traded through the limit
    assert h.on_bar(bar("0.00005300", "0.00005310", "0.00005100", "0.00005280", "100000", open_ns=T - TF)) == []
    assert h.db.scalar("SELECT status FROM paper_orders") == "new"
    [f] = fills(h.on_bar(bar("0.00005250", "0.00005260", "0.00005240", "0.00005255", "100000")))
    assert (f.price, f.liquidity) == (D("0.00005256"), Liquidity.TAKER)


# -- idempotency ----------------------------------------------------------------------------
def test_duplicate_submit_is_idempotent(h: Harness) -> None:
    o = order("c1", qty="1000")
    h.venue.submit(o)
    h.clock.advance_to(T + 5)
    h.venue.submit(o)
    assert h.reports == [OrderAccepted("c1", "paper-1", T), OrderAccepted("c1", "paper-1", T)]
    assert h.db.scalar("SELECT count(*) FROM paper_orders") == 1
    assert len(fills(h.on_bar(bar("0.00005300", "0.00005310", "0.00005270", "0.00005280", "500000", open_ns=T + TF)))) == 1
    h.restart()
    h.venue.submit(o)  # even after it filled and the process restarted
    assert h.reports[-1] == OrderAccepted("c1", "paper-1", T)
    assert h.db.scalar("SELECT count(*) FROM paper_orders") == 1
    h.venue.submit(order("c2"))
    assert h.reports[-1] == OrderAccepted("c2", "paper-2", T + 5)


# -- cancel -----------------------------------------------------------------------------------
def test_cancel_resting_order(h: Harness) -> None:
    o = order("c1", qty="1000", type_=LMT, limit="0.00005260")
    h.venue.submit(o)
    h.clock.advance_to(T + 3)
    h.venue.cancel(o)
    assert h.reports[-1] == OrderCanceled("c1", "canceled on request", T + 3)
    assert h.venue.lookup("c1") == VenueOrderState("c1", "paper-1", "canceled", D(0))
    assert h.venue.open_orders() == []
    assert h.on_bar(bar("0.00005250", "0.00005260", "0.00005100", "0.00005255", "100000", open_ns=T + TF)) == []
    n = len(h.reports)
    h.venue.cancel(o)  # already canceled: nothing reported
    h.venue.cancel(order("never-sent"))  # unknown: nothing reported
    assert len(h.reports) == n
    h.restart()
    assert h.venue.lookup("c1").status == "canceled" and h.venue.open_orders() == []


def test_cancel_after_fill_reports_nothing(h: Harness) -> None:
    o = order("c1", qty="1000")
    h.venue.submit(o)
    assert len(fills(h.on_bar(bar("0.00005300", "0.00005310", "0.00005270", "0.00005280", "500000")))) == 1
    n = len(h.reports)
    h.venue.cancel(o)
    assert len(h.reports) == n and h.venue.lookup("c1").status == "filled"


# -- rejects ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "o, reason",
    [
        (order("r1", inst=InstrumentId("paper", "DOGE/BTC")), "unknown instrument DOGE/BTC@paper"),
        (order("r2", inst=InstrumentId("binance", "ADA/BTC")), "is not on venue paper"),
        (order("r3", qty="1000.5"), "not a multiple of the lot step"),
        (order("r4", type_=LMT, limit="0.000052605"), "not a multiple of the tick"),
        (order("r5", type_=LMT), "needs a positive limit_price"),
        (order("r6", limit="0.00005260"), "market order must not carry a limit_price"),
        (order("r7", qty="5", type_=LMT, limit="0.00005260"), "below the minimum 0.0005"),
        (order("r8", qty="0"), "qty must be > 0"),
    ],
)
def test_rejections_name_the_reason_and_store_nothing(h: Harness, o: Order, reason: str) -> None:
    h.venue.submit(o)
    [report] = h.reports
    assert isinstance(report, OrderRejected) and report.client_order_id == o.client_order_id and report.ts_ns == T
    assert reason in report.reason
    assert h.db.scalar("SELECT count(*) FROM paper_orders") == 0
    assert h.venue.lookup(o.client_order_id) is None


def test_market_min_notional_uses_last_close(h: Harness) -> None:
    h.on_bar(bar("0.00005300", "0.00005310", "0.00005270", "0.00005280", "500000", open_ns=T - TF))
    h.venue.submit(order("small", qty="9"))  # 9 * 0.0000528 = 0.0004752 < 0.0005
    assert isinstance(h.reports[-1], OrderRejected) and "0.0004752" in h.reports[-1].reason
    h.venue.submit(order("ok", qty="10"))  # 0.000528
    assert h.reports[-1] == OrderAccepted("ok", "paper-1", T)


def test_sink_is_required(tmp_path: Path) -> None:
    venue = PaperVenue("paper", [ADA], CandleFillModel(), Database(tmp_path / "x.db"), SimClock(T))
    with pytest.raises(PreconditionError):
        venue.submit(order("c1"))


def test_instruments_must_belong_to_the_venue(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as err:
        PaperVenue("other", [ADA], CandleFillModel(), Database(tmp_path / "x.db"), SimClock(T))
    assert err.value.field == "instruments"


# -- rollback ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "volume, filled, with_resting",
    [("500000", "1000", True), ("6000", "600", True), ("6000", "600", False)],  # complete / partial fill
)
def test_engine_rollback_is_detected_and_fills_replayed(h: Harness, volume: str, filled: str, with_resting: bool) -> None:
    h.venue.submit(order("c1", qty="1000"))
    if with_resting:
        h.venue.submit(order("c2", qty="1000", type_=LMT, limit="0.00005000"))  # rests: new -> open on the bar
    b = bar("0.00005300", "0.00005310", "0.00005270", "0.00005280", volume)
    with pytest.raises(RuntimeError):
        with h.db.transaction():  # the engine's transaction around the slice
            [first] = fills(h.venue.on_bar(b))
            raise RuntimeError("a later handler failed")
    expected = [("c1", "new", D(0))] + ([("c2", "new", D(0))] if with_resting else [])
    assert h.db.query("SELECT client_order_id, status, filled_qty FROM paper_orders ORDER BY rowid") == [
        (c, s, str(q)) for c, s, q in expected
    ]
    # no explicit reload: the venue notices that memory is ahead of the table and reloads
    [again] = fills(h.on_bar(b))
    assert again == first and again.fill_id == "paper-1-1"  # the same fill, same deterministic id
    assert again.qty == D(filled)


def rolled_back_bar(h: Harness, b: Bar) -> list:
    with pytest.raises(RuntimeError):
        with h.db.transaction():
            got = fills(h.venue.on_bar(b))
            raise RuntimeError("rolled back")
    return got


def test_rollback_of_a_second_partial_fill_only_is_detected(h: Harness) -> None:
    h.venue.submit(order("c1", qty="1000"))
    assert [f.qty for f in fills(h.on_bar(bar("0.000053", "0.000054", "0.000052", "0.000053", "6000")))] == [D("600")]
    b2 = bar("0.000053", "0.000054", "0.000052", "0.000053", "3000", open_ns=T + TF)
    [lost] = rolled_back_bar(h, b2)  # status stays "open", only fill_count/filled_qty move
    [f] = fills(h.on_bar(b2))
    assert f == lost and (f.fill_id, f.qty) == ("paper-1-2", D("300"))


def test_rollback_of_a_completing_fill_only_is_detected(h: Harness) -> None:
    h.venue.submit(order("c1", qty="1000", type_=LMT, limit="0.00005000"))
    assert h.on_bar(bar("0.000053", "0.000054", "0.000052", "0.000053", "500000")) == []  # now "open", 0 fills
    b2 = bar("0.000051", "0.000051", "0.000049", "0.00005", "500000", open_ns=T + TF)
    [lost] = rolled_back_bar(h, b2)  # the order left the book in memory only
    [f] = fills(h.on_bar(b2))
    assert f == lost and (f.fill_id, f.price, f.liquidity) == ("paper-1-1", D("0.00005"), Liquidity.MAKER)


def test_rollback_of_a_status_change_only_is_detected(h: Harness) -> None:
    h.venue.submit(order("c2", qty="1000", type_=LMT, limit="0.00005000"))
    with pytest.raises(RuntimeError):
        with h.db.transaction():
            assert h.venue.on_bar(bar("0.00005300", "0.00005310", "0.00005270", "0.00005280", "500000")) == []
            raise RuntimeError("rolled back")
    # the order is "new" again in the table, so it is still marketable on arrival
    [f] = fills(h.on_bar(bar("0.00004990", "0.00005000", "0.00004980", "0.00004990", "500000")))
    assert (f.price, f.liquidity) == (D("0.00004995"), Liquidity.TAKER)  # 0.0000499*1.001=0.0000499499 -> up
    h.venue.reload()  # the explicit form still works
    assert h.venue.open_orders() == []


# -- instruments from a dataset -----------------------------------------------------------------
def test_instruments_from_dataset(shared_data: Path) -> None:
    files = discover(shared_data / "candles", timeframe="5m")
    bittrex = [f for f in files if f.exchange == "bittrex"]
    series = load_all(bittrex[:2])
    insts = instruments_from_dataset(
        [*series, bittrex[2]],
        "paper",
        qty_step=D("0.001"),
        min_notional_by_quote={"BTC": D("0.0005")},
        maker_fee_bps=D("10"),
        taker_fee_bps=D("25"),
    )
    assert [i.id for i in insts] == [InstrumentId("paper", s) for s in ("ADA/BTC", "DASH/BTC", "ETC/BTC")]
    ada = insts[0]
    assert (ada.base, ada.quote, ada.price_tick, ada.qty_step, ada.min_qty) == (
        "ADA", "BTC", D("0.00000001"), D("0.001"), D("0.001")
    )
    assert (ada.min_notional, ada.maker_fee_bps, ada.taker_fee_bps) == (D("0.0005"), D("10"), D("25"))
    xrp_eth = instruments_from_dataset([f for f in files if f.symbol == "XRP/ETH"], "paper", D("1"))
    assert xrp_eth[0].min_notional == 0 and xrp_eth[0].price_tick == D("0.00000001")
    # (file, series) pairs; the result keeps the input order (zip-able with the series)
    pairs = [(s.file, s) for s in reversed(series)]
    assert [i.id.symbol for i in instruments_from_dataset(pairs, "paper", D("1"))] == ["DASH/BTC", "ADA/BTC"]
    with pytest.raises(ValidationError) as err:
        instruments_from_dataset([series[0], series[0]], "paper", D("1"))
    assert err.value.field == "series"


def test_two_paper_venues_share_the_table(h: Harness) -> None:
    other_ada = Instrument(InstrumentId("paper-2", "ADA/BTC"), "ADA", "BTC", D("0.00000001"), D("1"))
    reports: list = []
    other = PaperVenue("paper-2", [other_ada], CandleFillModel(), h.db, h.clock)
    other.set_report_sink(reports.append)
    h.venue.submit(order("a1", type_=LMT, limit="0.00005000"))
    other.submit(order("b1", type_=LMT, limit="0.00005000", inst=other_ada.id))
    assert reports == [OrderAccepted("b1", "paper-2-1", T)]
    assert [o.client_order_id for o in h.venue.open_orders()] == ["a1"]
    assert [o.client_order_id for o in other.open_orders()] == ["b1"]
    assert h.venue.lookup("b1") is None and other.lookup("a1") is None
    reloads = []
    h.venue.reload = lambda: reloads.append(1)  # the other venue's rows must not look like drift
    h.venue.open_orders()
    h.on_bar(bar("0.000053", "0.000054", "0.000052", "0.000053", "500000"))
    assert reloads == []
    other.submit(order("a1", inst=other_ada.id))  # the id is taken on the shared table
    assert isinstance(reports[-1], OrderRejected) and "already used by order paper-1" in reports[-1].reason
