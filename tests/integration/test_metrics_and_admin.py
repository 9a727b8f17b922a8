"""Prometheus metrics, the admin RPCs and market data, checked against independent sources:
ListOrders/ListFills for the order and fill metrics, the candle CSV files for replay progress,
clock and candles, and the migration folder for the schema version.
"""

from __future__ import annotations

import csv
import importlib.metadata
import importlib.util
import re
import urllib.request
from collections import Counter
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

import appliance as appliance_pkg
from lyra.v1 import admin_pb2, orders_pb2
from lyra_client.convert import enum_short_name
from lyra_client.errors import FailedPrecondition, PermissionDenied

_spec = importlib.util.spec_from_file_location("lyra_integration_harness_ma", Path(__file__).with_name("conftest.py"))
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)

# Polling and paging tests make more calls per second than the API rate limit allows a token
# (auth.rate_limit_*); rate limiting is not what these tests are about.
NO_RATE_LIMIT = "[auth]\nrate_limit_rps = 1000000.0\nrate_limit_burst = 1000000\n"
PW = harness.PASSWORDS
INSTRUMENTS = ["ADA/BTC@paper", "ETH/BTC@paper", "LTC/BTC@paper"]
FIVE_MIN_NS = 5 * 60 * 10**9
MIGRATIONS = Path(appliance_pkg.__file__).resolve().parent / "store" / "migrations"


# -- independent sources -----------------------------------------------------------------------------

def csv_rows(instrument: str) -> list[dict]:
    """The candle rows of an instrument exactly as written in the shared CSV (text kept)."""
    base, quote = instrument.partition("@")[0].split("/")
    path = harness.shared_data() / "candles" / f"bittrex_{base}-{quote}_5m.csv"
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["open_ns"] = int(row["timestamp_ms"]) * 1_000_000
        row["close_ns"] = row["open_ns"] + FIVE_MIN_NS
    return rows


CSV = {i: csv_rows(i) for i in INSTRUMENTS}
SLICE_CLOSES = sorted({r["close_ns"] for rows in CSV.values() for r in rows})  # one slice per distinct close time


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def metric(samples, name: str, **labels) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def metric_sum(samples, name: str, **labels) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def candle_texts(candle) -> tuple:
    return (candle.open_time.ToNanoseconds(), candle.close_time.ToNanoseconds(),
            candle.open, candle.high, candle.low, candle.close, candle.volume)


def row_texts(row) -> tuple:
    return (row["open_ns"], row["close_ns"], row["open"], row["high"], row["low"], row["close"], row["volume"])


def market_view(admin, trader) -> dict:
    """Status, progress and every candle known, read back to back (the replay must be paused)."""
    return dict(
        status=admin.get_status(),
        progress=admin.get_replay_progress(),
        candles={i: list(trader.get_candles(i, limit=10_000).candles) for i in INSTRUMENTS},
        candles_future_end={i: list(trader.get_candles(i, end_time=SLICE_CLOSES[-1] + 10**12, limit=10_000).candles)
                            for i in INSTRUMENTS},
        candles_from_start={i: list(trader.get_candles(i, start_time=SLICE_CLOSES[0] - FIVE_MIN_NS, limit=10_000).candles)
                            for i in INSTRUMENTS},
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One appliance: trend_momentum over the whole replay, paused once part-way; then one order
    denied by max_order_notional and one SubmitOrder denied to a viewer; then a scrape."""
    running = harness.RunningAppliance(harness.write_config(tmp_path_factory.mktemp("metrics"), extra=NO_RATE_LIMIT))
    try:
        for role in ("admin", "trader", "viewer"):
            running.add_user(role, role)
        trader = running.client("trader", PW["trader"])
        admin = running.client("admin", PW["admin"])
        viewer = running.client("viewer", PW["viewer"])
        before = market_view(admin, trader)
        before_scrape = scrape(running.metrics_port)
        trader.create_strategy("trend_momentum", INSTRUMENTS, {}, strategy_id="tm-metrics")
        trader.start_strategy("tm-metrics")
        admin.start_replay()
        while admin.get_replay_progress().slices_done < 2000:
            pass
        admin.pause_replay()
        running.call(lambda: None)
        mid = market_view(admin, trader)
        admin.start_replay()
        running.wait_replay_finished()
        final = market_view(admin, trader)

        admin.update_risk_limits(max_order_notional="0.001")
        with pytest.raises(FailedPrecondition) as denied:
            trader.submit_order("ADA/BTC@paper", "buy", "1000", limit_price="0.00005", client_order_id="too-big")
        assert denied.value.reject_rule == "max_order_notional"
        with pytest.raises(PermissionDenied) as forbidden:
            viewer.submit_order("ADA/BTC@paper", "buy", "100", limit_price="0.00001")
        assert forbidden.value.code == grpc.StatusCode.PERMISSION_DENIED
        running.call(lambda: None)
        yield dict(running=running, trader=trader, admin=admin, viewer=viewer, before=before, mid=mid, final=final,
                   before_scrape=before_scrape, scrape=scrape(running.metrics_port),
                   orders=list(trader.iter_orders(page_size=1000)), fills=list(trader.iter_fills(page_size=1000)))
    finally:
        running.stop()


# -- metrics ---------------------------------------------------------------------------------------

def test_order_state_gauges_equal_list_orders(run):
    counts = Counter(enum_short_name(orders_pb2.OrderStatus.DESCRIPTOR, o.status) for o in run["orders"])
    assert counts["FILLED"] > 0
    for state in ("PENDING_SUBMIT", "OPEN", "PARTIALLY_FILLED", "FILLED", "CANCELED", "REJECTED", "EXPIRED"):
        assert metric(run["scrape"], "lyra_orders", state=state) == counts.get(state, 0), state
    assert metric(run["scrape"], "lyra_orders", state="FILLED") == counts["FILLED"]


def test_fills_counter_sums_to_the_fills(run):
    fills = run["fills"]
    assert fills
    assert metric_sum(run["scrape"], "lyra_fills_total") == len(fills)
    by_liquidity = Counter("maker" if f.liquidity == orders_pb2.LIQUIDITY_MAKER else "taker" for f in fills)
    for liquidity, n in by_liquidity.items():
        assert metric(run["scrape"], "lyra_fills_total", venue="paper", liquidity=liquidity) == n
    assert metric_sum(run["before_scrape"], "lyra_fills_total") == 0


def test_rejection_counter_counts_the_provoked_rejection(run):
    rejected = [o for o in run["orders"] if o.reject_rule == "max_order_notional"]
    assert [o.client_order_id for o in rejected] == ["too-big"]
    assert metric(run["scrape"], "lyra_order_rejections_total", rule="max_order_notional") == 1
    total_rejected = sum(1 for o in run["orders"] if o.status == orders_pb2.ORDER_STATUS_REJECTED)
    assert metric_sum(run["scrape"], "lyra_order_rejections_total") == total_rejected


def test_rpc_latency_has_series_per_method_and_code(run):
    s = run["scrape"]
    submit = "/lyra.v1.OrderService/SubmitOrder"
    assert metric(s, "lyra_rpc_latency_seconds_count", method=submit, code="PERMISSION_DENIED") == 1
    assert metric(s, "lyra_rpc_latency_seconds_count", method=submit, code="FAILED_PRECONDITION") == 1
    assert metric(s, "lyra_rpc_latency_seconds_count", method="/lyra.v1.AuthService/Login", code="OK") == 3
    assert metric(s, "lyra_rpc_latency_seconds_count", method="/lyra.v1.StrategyService/StartStrategy", code="OK") == 1
    # the histogram is consistent: +Inf bucket == count, sum > 0
    assert metric(s, "lyra_rpc_latency_seconds_bucket", method=submit, code="PERMISSION_DENIED", le="+Inf") == 1
    assert metric(s, "lyra_rpc_latency_seconds_sum", method=submit, code="PERMISSION_DENIED") > 0


def test_replay_nav_and_kill_switch_gauges(run):
    s = run["scrape"]
    assert metric(s, "lyra_replay_progress_ratio") == 1.0
    assert metric(s, "lyra_replay_market_time_seconds") == SLICE_CLOSES[-1] / 1e9
    assert metric(s, "lyra_replay_lag_seconds") == 0.0
    assert metric(s, "lyra_risk_kill_switch_engaged") == 0
    nav = Decimal(run["trader"].get_pnl().nav)
    assert metric(s, "lyra_portfolio_nav", currency="BTC") == pytest.approx(float(nav), rel=1e-12)
    assert metric(s, "lyra_engine_messages_total") >= len(SLICE_CLOSES)


def test_metrics_endpoint_is_loopback_only(run):
    from appliance.telemetry.metrics import serve

    assert run["running"].metrics_server.server_address[0] == "127.0.0.1"
    with pytest.raises(ValueError):
        serve(run["running"].app.metrics, "0.0.0.0:0")


# -- admin -----------------------------------------------------------------------------------------

def test_version_and_schema_version(run):
    version = run["admin"].get_version()
    assert version.version == appliance_pkg.__version__ == importlib.metadata.version("lyra")
    migrations = [p for p in MIGRATIONS.iterdir() if re.fullmatch(r"\d{4}_[a-z0-9_]+\.sql", p.name)]
    assert migrations
    assert version.schema_version == len(migrations)
    assert run["viewer"].get_version() == version  # admin.read: every role
    with pytest.raises(PermissionDenied) as err:  # admin.write: admins only
        run["viewer"].start_replay()
    assert err.value.code == grpc.StatusCode.PERMISSION_DENIED


def test_status_before_the_replay(run):
    status, progress = run["before"]["status"], run["before"]["progress"]
    assert status.state == admin_pb2.SERVER_STATE_RUNNING
    assert status.mode == "replay"
    assert status.version == appliance_pkg.__version__
    assert status.uptime_seconds > 0
    assert status.journal_seq > 0  # users and starting balances are journaled
    assert progress.state == admin_pb2.REPLAY_STATE_WAITING
    assert progress.slices_done == 0 and progress.percent == 0
    assert progress.slices_total == len(SLICE_CLOSES) == 5760
    assert status.replay == progress
    assert status.clock_time.ToNanoseconds() < SLICE_CLOSES[0], "the clock starts before the first bar closes"
    assert all(c == [] for c in run["before"]["candles"].values()), "candles served before the replay reached them"
    assert all(c == [] for c in run["before"]["candles_future_end"].values())


@pytest.mark.parametrize("when", ["mid", "final"])
def test_status_and_progress_follow_the_dataset(run, when):
    status, progress = run[when]["status"], run[when]["progress"]
    done = progress.slices_done
    assert progress.slices_total == len(SLICE_CLOSES)
    if when == "mid":
        assert progress.state == admin_pb2.REPLAY_STATE_PAUSED
        assert 2000 <= done < len(SLICE_CLOSES)
    else:
        assert progress.state == admin_pb2.REPLAY_STATE_FINISHED
        assert done == len(SLICE_CLOSES)
    assert progress.percent == round(100.0 * done / len(SLICE_CLOSES), 3)
    assert progress.current_time.ToNanoseconds() == SLICE_CLOSES[done - 1]
    assert status.clock_time.ToNanoseconds() == SLICE_CLOSES[done - 1]
    assert status.replay.slices_done == done
    assert status.journal_seq > run["before"]["status"].journal_seq
    assert status.uptime_seconds > run["before"]["status"].uptime_seconds
    if when == "final":
        assert status.journal_seq >= run["mid"]["status"].journal_seq
        assert run["running"].call(run["running"].app.journal.last_seq) >= status.journal_seq


# -- market data -------------------------------------------------------------------------------------

@pytest.mark.parametrize("when", ["mid", "final"])
def test_get_candles_has_no_look_ahead_and_exact_decimals(run, when):
    clock = run[when]["status"].clock_time.ToNanoseconds()
    for instrument in INSTRUMENTS:
        expected = [row_texts(r) for r in CSV[instrument] if r["close_ns"] <= clock]
        for view in ("candles", "candles_future_end", "candles_from_start"):
            candles = run[when][view][instrument]
            assert all(c.close_time.ToNanoseconds() <= clock for c in candles), (view, instrument)
            # every bar closed by the clock, with the exact decimal text of the CSV
            assert [candle_texts(c) for c in candles] == expected, (view, instrument)
    if when == "mid":
        assert any(r["close_ns"] > clock for r in CSV["ADA/BTC@paper"]), "nothing left to look ahead to"


def test_get_candles_paging_and_exact_rows(run):
    trader = run["trader"]
    rows = CSV["ETH/BTC@paper"]
    # a page from a start time: the first rows from there, exact text
    k = 1234
    page = trader.get_candles("ETH/BTC@paper", start_time=rows[k]["open_ns"], limit=3).candles
    assert [candle_texts(c) for c in page] == [row_texts(r) for r in rows[k:k + 3]]
    assert page[0].volume == rows[k]["volume"] and page[0].close == rows[k]["close"]
    # without a start time: the LAST rows up to the clock
    last = trader.get_candles("LTC/BTC@paper", limit=2).candles
    assert [candle_texts(c) for c in last] == [row_texts(r) for r in CSV["LTC/BTC@paper"][-2:]]
    assert trader.get_candles("LTC/BTC@paper", limit=2).interval == "5m"


def test_gauges_are_seeded_from_the_database_after_a_restart(tmp_path):
    """Order-state gauges and the kill-switch gauge describe the stored state, not only what the
    running process saw: after a restart they still equal ListOrders / GetRiskStatus."""
    config = harness.write_config(tmp_path, extra=NO_RATE_LIMIT)
    first = harness.RunningAppliance(config)
    try:
        for role in ("admin", "trader"):
            first.add_user(role, role)
        trader = first.client("trader", PW["trader"])
        for k in range(4):
            trader.submit_order("ADA/BTC@paper", "buy", "1000", limit_price="0.00001", client_order_id=f"rest-{k}")
        first.call(lambda: None)
        trader.cancel_order("rest-0")
        first.call(lambda: None)
        with pytest.raises(FailedPrecondition):  # no mark before the replay: a market order cannot be valued
            trader.submit_order("ADA/BTC@paper", "buy", "1000", client_order_id="no-price")
        before = scrape(first.metrics_port)
        assert metric(before, "lyra_orders", state="OPEN") == 3
        assert metric(before, "lyra_orders", state="CANCELED") == 1
        assert metric(before, "lyra_orders", state="REJECTED") == 1
        trader.engage_kill_switch("before restart")
        first.call(lambda: None)
    finally:
        first.stop()
    second = harness.RunningAppliance(config)
    try:
        trader = second.client("trader", PW["trader"])
        orders = list(trader.iter_orders())
        counts = Counter(enum_short_name(orders_pb2.OrderStatus.DESCRIPTOR, o.status) for o in orders)
        assert counts == {"CANCELED": 4, "REJECTED": 1}
        samples = scrape(second.metrics_port)
        for state in ("PENDING_SUBMIT", "OPEN", "PARTIALLY_FILLED", "FILLED", "CANCELED", "REJECTED", "EXPIRED"):
            assert metric(samples, "lyra_orders", state=state) == counts.get(state, 0), state
        assert metric(samples, "lyra_risk_kill_switch_engaged") == 1
        assert trader.get_risk_status().kill_switch_engaged is True
    finally:
        second.stop()
