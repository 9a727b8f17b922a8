"""Restart and resume: a replay interrupted twice by a graceful stop (once while an order is
working at the venue, once while a position is held) must end exactly where one uninterrupted
run of the same configuration ends -- same fills, same orders, same balances and positions.
This is the determinism check of the appliance.

After each restart: everything recorded before the stop is still there unchanged (orders,
fills, balances, positions, journal), the strategy is RUNNING again, and the replay continues
from the recorded slice (no slice skipped or handled twice).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
from pathlib import Path

import pytest

from lyra.v1 import admin_pb2, strategies_pb2
from lyra_client.convert import to_dict

_spec = importlib.util.spec_from_file_location("lyra_integration_harness_rr", Path(__file__).with_name("conftest.py"))
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)

# Polling and paging tests make more calls per second than the API rate limit allows a token
# (auth.rate_limit_*); rate limiting is not what these tests are about.
NO_RATE_LIMIT = "[auth]\nrate_limit_rps = 1000000.0\nrate_limit_burst = 1000000\n"
PW = harness.PASSWORDS
INSTRUMENTS = ["ADA/BTC@paper", "ETH/BTC@paper", "LTC/BTC@paper"]
STRATEGY = "tm-restart"


class DataHome:
    """Appliances started one after another on one config (one data dir); each stopped once."""

    def __init__(self, tmp: Path) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.config_path = harness.write_config(tmp, extra=NO_RATE_LIMIT)
        self.running: list = []

    def start(self):
        running = harness.RunningAppliance(self.config_path)
        self.running.append(running)
        return running

    def stop(self, running) -> None:
        self.running.remove(running)
        running.stop()


@pytest.fixture
def homes(tmp_path):
    made: list[DataHome] = []

    def make(name: str) -> DataHome:
        home = DataHome(tmp_path / name)
        made.append(home)
        return home

    yield make
    for home in made:
        for running in list(home.running):
            home.stop(running)


def clients(running):
    return running.client("trader", PW["trader"]), running.client("admin", PW["admin"])


def start_trading(running):
    for role in ("admin", "trader"):
        running.add_user(role, role)
    trader, admin = clients(running)
    trader.create_strategy("trend_momentum", INSTRUMENTS, {}, strategy_id=STRATEGY)
    assert trader.start_strategy(STRATEGY).status == strategies_pb2.STRATEGY_STATUS_RUNNING
    admin.start_replay()
    return trader, admin


def barrier(running) -> None:
    running.call(lambda: None)


def pause_when(running, trader, admin, min_slices: int, wanted, attempts: int = 400):
    """Pause the replay (PauseReplay) at some point after ``min_slices`` where ``wanted(trader)``
    holds; falls back to the last pause if it never does. Returns the paused progress."""
    while admin.get_replay_progress().slices_done < min_slices:
        assert admin.get_replay_progress().state == admin_pb2.REPLAY_STATE_RUNNING
    for _ in range(attempts):
        paused = admin.pause_replay()
        assert paused.state == admin_pb2.REPLAY_STATE_PAUSED, "the replay finished before a suitable pause point"
        barrier(running)  # the slice in flight, if any, and its venue reports are handled
        if wanted(trader) or paused.slices_done > min_slices + 1500:
            break
        admin.start_replay()
    barrier(running)
    progress = admin.get_replay_progress()
    assert progress.state == admin_pb2.REPLAY_STATE_PAUSED
    assert progress.slices_done < progress.slices_total, "the replay finished before it could be paused"
    return progress


def record(running, trader, admin) -> dict:
    """Everything observable of the account, as plain data."""
    journal = running.call(lambda: [(e.seq, e.ts_ns, e.type, e.aggregate, e.aggregate_id, e.payload)
                                    for e in running.app.journal.iter_all()])
    progress = admin.get_replay_progress()
    return dict(
        orders=[to_dict(o) for o in trader.iter_orders(page_size=1000)],
        fills=[to_dict(f) for f in trader.iter_fills(page_size=1000)],
        balances=[to_dict(b) for b in trader.list_balances().balances],
        positions=[to_dict(p) for p in trader.list_positions(include_flat=True).positions],
        pnl={k: v for k, v in to_dict(trader.get_pnl()).items()},
        slices_done=progress.slices_done,
        slices_total=progress.slices_total,
        current_ns=progress.current_time.ToNanoseconds(),
        journal=journal,
        strategy=to_dict(trader.get_strategy(STRATEGY)),
    )


def check_restored(before: dict, running, trader, admin) -> None:
    after = record(running, trader, admin)
    assert after["orders"] == before["orders"]
    assert after["fills"] == before["fills"]
    assert after["balances"] == before["balances"]
    assert after["positions"] == before["positions"]
    assert after["pnl"] == before["pnl"]
    assert after["slices_done"] == before["slices_done"]
    assert after["current_ns"] == before["current_ns"]
    assert after["journal"][: len(before["journal"])] == before["journal"], "journal rows changed across a restart"
    assert after["strategy"]["status"] == "RUNNING"
    assert {k: v for k, v in after["strategy"].items() if k not in ("update_time",)} == \
        {k: v for k, v in before["strategy"].items() if k not in ("update_time",)}
    status = admin.get_status()
    assert status.clock_time.ToNanoseconds() == before["current_ns"], "the clock did not resume at the cursor"
    assert admin.get_replay_progress().state in (admin_pb2.REPLAY_STATE_WAITING, admin_pb2.REPLAY_STATE_PAUSED)
    # GetCandles knows nothing past the cursor after the restart
    for instrument in INSTRUMENTS:
        last = trader.get_candles(instrument, limit=1).candles
        assert last and last[-1].close_time.ToNanoseconds() <= before["current_ns"]


def comparable_orders(orders: list[dict]) -> list[tuple]:
    """Orders without their random client order ids, keyed by what the venue and clock decided."""
    return sorted(tuple(sorted((k, str(v)) for k, v in o.items() if k != "client_order_id")) for o in orders)


def comparable_fills(fills: list[dict]) -> list[tuple]:
    return sorted(tuple(sorted((k, str(v)) for k, v in f.items() if k != "client_order_id")) for f in fills)


def has_open_order(trader) -> bool:
    return any(True for _ in trader.iter_orders(open_only=True))


def holds_position(trader) -> bool:
    return any(b.asset != "BTC" and b.total != "0" for b in trader.list_balances().balances) and not has_open_order(trader)


def strategy_states(rec: dict) -> list[tuple]:
    """The strategy's persisted states in journal order, with client order ids (random) replaced by
    what identifies the order across runs: its venue order id (or its creation time if rejected)."""
    ids = {}
    for o in rec["orders"]:
        ids[o["client_order_id"]] = o["venue_order_id"] or f"rejected@{o['create_time']}"
    out = []
    for seq, ts_ns, type_, aggregate, aggregate_id, payload in rec["journal"]:
        if type_ == "StrategyStateSaved" and aggregate_id == STRATEGY:
            text = json.dumps(payload["state"], sort_keys=True)
            text = re.sub(r"ly-[0-9a-f]{20}", lambda m: ids.get(m.group(0), "UNKNOWN-ORDER"), text)
            out.append((ts_ns, text))
    return out


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """The reference: the same configuration run once, start to finish, without interruption."""
    home = DataHome(tmp_path_factory.mktemp("uninterrupted"))
    running = home.start()
    try:
        trader, admin = start_trading(running)
        running.wait_replay_finished()
        rec = record(running, trader, admin)
    finally:
        home.stop(running)
    assert rec["slices_done"] == rec["slices_total"]
    return rec


def assert_same_result(final: dict, base: dict) -> None:
    assert final["slices_done"] == base["slices_done"] == final["slices_total"]
    assert len(final["fills"]) == len(base["fills"])
    assert comparable_fills(final["fills"]) == comparable_fills(base["fills"])
    assert len(final["orders"]) == len(base["orders"])
    assert comparable_orders(final["orders"]) == comparable_orders(base["orders"])
    assert final["balances"] == base["balances"]
    assert final["positions"] == base["positions"]
    assert {k: v for k, v in final["pnl"].items() if k != "as_of"} == {k: v for k, v in base["pnl"].items() if k != "as_of"}
    assert "FILLED" in {o["status"] for o in final["orders"]}


def test_interrupted_replay_resumes_and_equals_an_uninterrupted_run(homes, baseline):
    home = homes("interrupted")
    running = home.start()
    trader, admin = start_trading(running)

    seen_open_order = seen_position = False
    for min_slices, wanted in ((1000, has_open_order), (3000, holds_position)):
        progress = pause_when(running, trader, admin, min_slices, wanted)
        seen_open_order |= has_open_order(trader)
        seen_position |= holds_position(trader)
        before = record(running, trader, admin)
        assert before["fills"], "no trading before the pause"
        assert before["slices_done"] == progress.slices_done >= min_slices

        home.stop(running)  # graceful
        running = home.start()
        assert any(STRATEGY in note for note in running.recovery_notes), running.recovery_notes
        trader, admin = clients(running)
        check_restored(before, running, trader, admin)

        admin.start_replay()
    assert seen_open_order, "never paused while an order was working (restart with an order in flight untested)"
    assert seen_position, "never paused while a position was held"

    running.wait_replay_finished()
    final = record(running, trader, admin)
    assert final["slices_done"] == final["slices_total"], "slices skipped or handled twice"
    assert admin.get_replay_progress().state == admin_pb2.REPLAY_STATE_FINISHED

    # the journal: every fill once, in time order; every fill row has its journal event
    filled = [e for e in final["journal"] if e[2] == "OrderFilled"]
    fill_ids = [e[5]["fill_id"] for e in filled]
    assert len(fill_ids) == len(set(fill_ids)), "a fill was journaled twice"
    assert [e[1] for e in filled] == sorted(e[1] for e in filled), "fills out of time order"
    assert sorted(fill_ids) == sorted(f["fill_id"] for f in final["fills"])
    seqs = [e[0] for e in final["journal"]]
    assert seqs == sorted(set(seqs))
    fill_times = [f["time"] for f in reversed(final["fills"])]
    assert fill_times == sorted(fill_times)

    # the same configuration, never interrupted, in another data dir
    assert_same_result(final, baseline)


# -- a restart at a deterministic point ------------------------------------------------------------

def first_close_ns() -> int:
    """Close time of the first bar of the dataset (read from the CSV itself)."""
    path = harness.shared_data() / "candles" / "bittrex_ADA-BTC_5m.csv"
    with open(path) as handle:
        handle.readline()
        first_open_ms = int(handle.readline().split(",")[0])
    return (first_open_ms + 5 * 60_000) * 1_000_000


def in_position_state_after(ts_ns: int):
    def predicate(entry) -> bool:
        return (entry.type == "StrategyStateSaved" and entry.ts_ns >= ts_ns
                and any(pos.get("entry") for pos in entry.payload["state"]["positions"].values()))
    return predicate


def pause_inside_engine(running, admin, predicate) -> None:
    """Start the replay and pause it from inside the engine message whose journal entry matches
    ``predicate``: the replay then stops right after that slice, the same slice on every run."""
    fired = asyncio.Event()

    def listener(entry) -> None:
        if not fired.is_set() and predicate(entry):
            fired.set()
            running.app.replay.pause()

    running.call(lambda: running.app.journal.subscribe(listener))
    admin.start_replay()

    async def wait() -> None:
        await asyncio.wait_for(fired.wait(), 60)

    running.run(wait)
    barrier(running)
    assert admin.get_replay_progress().state == admin_pb2.REPLAY_STATE_PAUSED
    admin.pause_replay()  # the operator's pause, persisted: the restart must stay paused too


@pytest.fixture(scope="module")
def restarted_in_position(tmp_path_factory):
    """A run stopped (gracefully) right after the slice where the strategy first saves an open
    position after bar 1500, restarted on the same data dir, and run to the end."""
    home = DataHome(tmp_path_factory.mktemp("restarted_in_position"))
    running = home.start()
    try:
        for role in ("admin", "trader"):
            running.add_user(role, role)
        trader, admin = clients(running)
        trader.create_strategy("trend_momentum", INSTRUMENTS, {}, strategy_id=STRATEGY)
        trader.start_strategy(STRATEGY)
        pause_inside_engine(running, admin, in_position_state_after(first_close_ns() + 1500 * 300 * 10**9))
        before = record(running, trader, admin)
        home.stop(running)
        running = home.start()
        trader, admin = clients(running)
        check_restored(before, running, trader, admin)
        admin.start_replay()
        running.wait_replay_finished()
        final = record(running, trader, admin)
    finally:
        for r in list(home.running):
            home.stop(r)
    return dict(before=before, final=final)


def test_restart_while_in_position_gives_the_same_fills(restarted_in_position, baseline):
    before = restarted_in_position["before"]
    assert any(p["qty"] != "0" for p in before["positions"]), "not in a position at the restart"
    assert 1500 <= before["slices_done"] < before["slices_total"]
    assert_same_result(restarted_in_position["final"], baseline)


def test_strategy_state_after_restart_equals_the_uninterrupted_run(restarted_in_position, baseline):
    final_states = strategy_states(restarted_in_position["final"])
    base_states = strategy_states(baseline)
    assert final_states, "the strategy never saved its state"
    assert final_states == base_states
