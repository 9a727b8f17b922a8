"""ReplayFeed: merge order, slicing, resume, windows and the async driver."""

from __future__ import annotations

import asyncio
import csv
import itertools
from decimal import Decimal
from pathlib import Path

import pytest

from appliance.marketdata import replay
from appliance.marketdata.bar import BarSlice
from appliance.marketdata.candles import discover, load, load_all
from appliance.marketdata.replay import ReplayFeed
from appliance.model.errors import NotFoundError, PreconditionError, ValidationError
from appliance.model.instrument import InstrumentId

MS = 1_000_000
FIVE_MIN_NS = 300 * 10**9
ADA = InstrumentId("paper", "ADA/BTC")


@pytest.fixture(scope="module")
def bittrex_files(shared_data: Path):
    return discover(shared_data / "candles", timeframe="5m", exchanges=["bittrex"])


@pytest.fixture(scope="module")
def feed(bittrex_files) -> ReplayFeed:
    return ReplayFeed.from_candles(load_all(bittrex_files), "paper")


def raw_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def expected_slices(files) -> list[tuple[int, list[str]]]:
    """Independent merge: sort every (close_ns, symbol) with Python's sorted, group by close."""
    pairs = []
    for f in files:
        for row in raw_rows(f.path):
            pairs.append((int(row["timestamp_ms"]) * MS + f.timeframe_ns, f.symbol))
    pairs.sort()
    return [(close, [sym for _, sym in group]) for close, group in itertools.groupby(pairs, key=lambda p: p[0])]


def test_merge_order_and_grouping_match_independent_sort(feed: ReplayFeed, bittrex_files) -> None:
    expected = expected_slices(bittrex_files)
    rows = {
        (f.symbol, int(r["timestamp_ms"]) * MS): r for f in bittrex_files for r in raw_rows(f.path)
    }
    got = []
    for s in feed.slices():
        got.append((s.close_ns, [b.instrument.symbol for b in s.bars]))
        for b in s.bars:
            assert b.close_ns == s.close_ns and b.open_ns == s.close_ns - FIVE_MIN_NS
            r = rows[(b.instrument.symbol, b.open_ns)]
            assert (b.open, b.high, b.low, b.close, b.volume) == tuple(
                Decimal(r[c]) for c in ("open", "high", "low", "close", "volume")
            )
    assert got == expected
    assert feed.total_slices == len(expected)
    assert feed.total_bars == sum(len(syms) for _, syms in expected) == 46031  # 5720+5758+5759+5760+5760+5760+5754+5760 rows
    assert feed.first_close_ns == expected[0][0] == 1515560400000 * MS
    assert feed.last_close_ns == expected[-1][0]
    # some slices are incomplete (ADA/BTC has a 2 h 50 min hole on 2018-01-15)
    assert any(len(syms) < 8 for _, syms in expected)


def test_mixed_timeframes_merge(shared_data: Path) -> None:
    files = [
        *discover(shared_data / "candles", timeframe="30m", symbols=["ETH/BTC"]),
        *discover(shared_data / "candles", timeframe="5m", symbols=["ADA/BTC"], exchanges=["bittrex"]),
    ]
    f = ReplayFeed.from_candles(load_all(files), "paper")
    expected = expected_slices(files)
    assert [(s.close_ns, [b.instrument.symbol for b in s.bars]) for s in f.slices()] == expected
    assert any(len(syms) == 2 for _, syms in expected)  # the two series overlap on 2018-01-10..12


def test_resume_after_ns(feed: ReplayFeed, bittrex_files) -> None:
    closes = [c for c, _ in expected_slices(bittrex_files)]
    cursor = closes[100]
    resumed = feed.slices(after_ns=cursor)
    assert next(resumed).close_ns == closes[101]
    assert next(resumed).close_ns == closes[102]
    assert next(feed.slices(after_ns=cursor - 1)).close_ns == closes[100]
    assert feed.count_after(cursor) == len(closes) - 101
    assert feed.count_after(0) == len(closes)
    assert feed.count_after(closes[-1]) == 0
    assert list(feed.slices(after_ns=closes[-1])) == []


def test_history_window(feed: ReplayFeed, bittrex_files) -> None:
    ada_rows = raw_rows(next(f for f in bittrex_files if f.symbol == "ADA/BTC").path)
    closes = [int(r["timestamp_ms"]) * MS + FIVE_MIN_NS for r in ada_rows]
    t = closes[500]
    bars = feed.history(ADA, t, 5)
    assert [b.close_ns for b in bars] == closes[496:501]
    assert [b.close for b in bars] == [Decimal(r["close"]) for r in ada_rows[496:501]]
    assert [b.close_ns for b in feed.history(ADA, t - 1, 5)] == closes[495:500]  # bar 500 not closed yet
    assert feed.history(ADA, closes[0] - 1, 10) == []
    assert [b.close_ns for b in feed.history(ADA, closes[2], 10)] == closes[:3]
    assert feed.history(ADA, t, 0) == []
    # across the ADA/BTC hole of 2018-01-15: history counts bars, not clock slots
    gap = next(i for i in range(1, len(closes)) if closes[i] - closes[i - 1] > 3600 * 10**9)
    assert [b.close_ns for b in feed.history(ADA, closes[gap], 3)] == closes[gap - 2 : gap + 1]
    with pytest.raises(NotFoundError):
        feed.history(InstrumentId("paper", "DOGE/BTC"), t, 5)


def test_candles_window(feed: ReplayFeed, bittrex_files) -> None:
    ada_rows = raw_rows(next(f for f in bittrex_files if f.symbol == "ADA/BTC").path)
    opens = [int(r["timestamp_ms"]) * MS for r in ada_rows]
    start, end = opens[10], opens[20] + FIVE_MIN_NS  # bars 10..20 inclusive
    assert [b.open_ns for b in feed.candles(ADA, start, end)] == opens[10:21]
    assert [b.open_ns for b in feed.candles(ADA, start, end, limit=3)] == opens[10:13]  # first 3 from start
    assert [b.open_ns for b in feed.candles(ADA, None, end, limit=3)] == opens[18:21]  # last 3 up to end
    assert [b.open_ns for b in feed.candles(ADA, start + 1, end - 1)] == opens[11:20]  # partial bars excluded
    assert [b.open_ns for b in feed.candles(ADA, limit=2)] == opens[-2:]
    assert feed.candles(ADA, end, start) == []
    with pytest.raises(ValidationError) as err:
        feed.candles(ADA, limit=0)
    assert err.value.field == "limit"


def test_duplicate_instrument_refused(bittrex_files) -> None:
    ada = load(bittrex_files[0])
    with pytest.raises(ValidationError) as err:
        ReplayFeed([(ADA, ada), (ADA, ada)])
    assert err.value.field == "series"


def test_empty_feed() -> None:
    f = ReplayFeed([])
    assert (f.total_slices, f.first_close_ns, f.last_close_ns, list(f.slices())) == (0, None, None, [])


# -- driver -------------------------------------------------------------------------------
def write_series(tmp_path: Path, symbol: str, opens_s: list[int], tf: str = "1m"):
    path = tmp_path / f"test_{symbol.replace('/', '-')}_{tf}.csv"
    lines = ["timestamp_ms,open,high,low,close,volume"]
    lines += [f"{t * 1000},1.0,1.5,0.5,1.2,10" for t in opens_s]
    path.write_text("\n".join(lines) + "\n")
    return load(path)


@pytest.fixture
def small_feed(tmp_path: Path) -> ReplayFeed:
    a = write_series(tmp_path, "AAA/BTC", [0, 60, 120, 180, 240, 540])
    b = write_series(tmp_path, "BBB/BTC", [60, 180, 600])
    return ReplayFeed.from_candles([b, a], "paper")


async def test_run_fast_delivers_everything_in_order(small_feed: ReplayFeed) -> None:
    seen: list[BarSlice] = []
    progress: list[tuple[int, int, int]] = []

    async def deliver(s: BarSlice) -> None:
        seen.append(s)

    n = await small_feed.run(deliver, after_ns=0, speed=None, on_progress=lambda *p: progress.append(p))
    closes = [c * 10**9 for c in (60, 120, 180, 240, 300, 600, 660)]
    assert n == 7 == small_feed.total_slices
    assert [s.close_ns for s in seen] == closes
    assert [[b.instrument.symbol for b in s.bars] for s in seen][1] == ["AAA/BTC", "BBB/BTC"]
    assert progress == [(k + 1, 7, c) for k, c in enumerate(closes)]
    assert small_feed.is_finished and not small_feed.is_running
    assert small_feed.progress == replay.ReplayProgress(7, 7, closes[-1])


async def test_run_resumes_after_cursor(small_feed: ReplayFeed) -> None:
    seen: list[int] = []

    async def deliver(s: BarSlice) -> None:
        seen.append(s.close_ns)

    progress: list[tuple[int, int, int]] = []
    n = await small_feed.run(deliver, after_ns=240 * 10**9, speed=0, on_progress=lambda *p: progress.append(p))
    assert n == 3 and seen == [300 * 10**9, 600 * 10**9, 660 * 10**9]
    assert progress[0] == (5, 7, 300 * 10**9)  # counted from the start of the feed


async def test_run_paced_waits_close_delta_over_speed(small_feed: ReplayFeed, monkeypatch) -> None:
    waits: list[float] = []

    async def fake_sleep(delay: float) -> None:
        waits.append(delay)

    monkeypatch.setattr(replay, "_wall_sleep", fake_sleep)

    async def deliver(s: BarSlice) -> None:
        return None

    await small_feed.run(deliver, after_ns=0, speed=60)
    # close deltas 60,60,60,60,300,60 s at 60x -> 1,1,1,1,5,1 s of wall time (minus handling time)
    assert len(waits) == 6
    for got, want in zip(waits, [1, 1, 1, 1, 5, 1]):
        assert want - 0.05 < got <= want


async def test_pause_and_resume(small_feed: ReplayFeed) -> None:
    seen: list[int] = []

    async def deliver(s: BarSlice) -> None:
        seen.append(s.close_ns)
        if len(seen) == 3:
            small_feed.pause()

    task = asyncio.create_task(small_feed.run(deliver, after_ns=0))
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(seen) == 3 and small_feed.is_paused and small_feed.is_running and not small_feed.is_finished
    assert small_feed.progress.delivered == 3
    small_feed.resume()
    assert await task == 7
    assert len(seen) == 7 and small_feed.is_finished


async def test_cancel_propagates_cleanly(small_feed: ReplayFeed) -> None:
    gate = asyncio.Event()
    seen: list[int] = []

    async def deliver(s: BarSlice) -> None:
        seen.append(s.close_ns)
        if len(seen) == 2:
            await gate.wait()  # never set

    task = asyncio.create_task(small_feed.run(deliver, after_ns=0))
    for _ in range(20):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert small_feed.progress.delivered == 1  # the interrupted slice is not counted
    assert not small_feed.is_running and not small_feed.is_finished
    # it can run again afterwards, resuming from the cursor
    seen.clear()
    gate.set()
    assert await small_feed.run(lambda s: asyncio.sleep(0), after_ns=small_feed.progress.last_close_ns) == 6


async def test_run_rejects_bad_speed_and_double_run(small_feed: ReplayFeed) -> None:
    with pytest.raises(ValidationError) as err:
        await small_feed.run(lambda s: asyncio.sleep(0), speed=-1)
    assert err.value.field == "speed"
    small_feed.pause()
    task = asyncio.create_task(small_feed.run(lambda s: asyncio.sleep(0)))
    await asyncio.sleep(0)
    with pytest.raises(PreconditionError):
        await small_feed.run(lambda s: asyncio.sleep(0))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
