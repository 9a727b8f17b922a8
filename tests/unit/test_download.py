"""CandleDownloader against a ccxt-shaped fake exchange serving real Binance XRP/ETH 5m candles
(the shared data pack): pagination, exact numbers, resume after an interruption or a torn
write, prepending an earlier range, forming bar, validation errors and retries."""

from __future__ import annotations

import asyncio
import csv
from decimal import Decimal
from pathlib import Path

import ccxt.async_support as ccxt
import pytest

from appliance.marketdata import candles
from appliance.marketdata.download import (
    CandleDownloader,
    Gap,
    format_number,
    list_dataset,
    resolve_dataset_dir,
    to_utc_ms,
)
from appliance.model.errors import PreconditionError, ValidationError

TF_MS = 300_000
SOURCE = "binance_XRP-ETH_5m.csv"


class FakeClock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def now_ns(self) -> int:
        return self.now_ms * 1_000_000


class FakeExchange:
    """The parts of a ccxt async exchange the downloader uses, with Binance's klines semantics:
    ``fetch_ohlcv(since, limit)`` returns up to ``limit`` bars with open >= since, oldest first,
    including the bar still forming at ``clock`` time; numbers are floats as ccxt parses them."""

    id = "binance"
    rateLimit = 50

    def __init__(self, rows: dict[str, list[list]], clock: FakeClock, *, max_limit: int = 1000) -> None:
        self.rows = rows
        self.clock = clock
        self.max_limit = max_limit
        self.enableRateLimit = True
        self.timeframes = {"1m": "1m", "5m": "5m", "1h": "1h", "1M": "1M"}
        self.markets = {s: {"symbol": s, "spot": True} for s in rows}
        self.markets["BTC/USDT:USDT"] = {"symbol": "BTC/USDT:USDT", "spot": False, "swap": True}
        self.calls: list[tuple[str, int | None, int | None]] = []
        self.fail: dict[int, BaseException] = {}  # call number (1-based) -> exception raised instead
        self.block_at: int | None = None  # call number that waits forever (to be cancelled)
        self.blocked = asyncio.Event()

    async def load_markets(self, reload: bool = False):
        return self.markets

    async def fetch_ohlcv(self, symbol, timeframe="1m", since=None, limit=None, params={}):
        self.calls.append((symbol, since, limit))
        n = len(self.calls)
        if n in self.fail:
            raise self.fail.pop(n)
        if self.block_at == n:
            self.blocked.set()
            await asyncio.Event().wait()
        assert timeframe == "5m"
        limit = min(limit or 500, self.max_limit)
        now = self.clock.now_ms
        bars = [b for b in self.rows[symbol] if (since is None or b[0] >= since) and b[0] <= now]
        return [list(b) for b in bars[:limit]]

    async def close(self):
        pass


def _source_rows(shared_data: Path) -> tuple[str, list[list]]:
    path = shared_data / "candles" / SOURCE
    text = path.read_text()
    rows = [[int(r[0]), *(float(x) for x in r[1:])] for r in list(csv.reader(text.splitlines()))[1:]]
    return text, rows


@pytest.fixture
def source(shared_data):
    return _source_rows(shared_data)


def _setup(source, tmp_path, *, now_ms: int | None = None, page_limit: int = 100, **kwargs):
    text, rows = source
    last = rows[-1][0]
    clock = FakeClock(now_ms if now_ms is not None else last + TF_MS)  # last bar just closed
    exchange = FakeExchange({"XRP/ETH": rows}, clock)
    downloader = CandleDownloader(exchange, tmp_path / "ds", clock=clock, page_limit=page_limit,
                                  sleep=kwargs.pop("sleep", _no_sleep), **kwargs)
    return text, rows, clock, exchange, downloader


async def _no_sleep(seconds: float) -> None:
    return None


FIRST = "2019-10-11"  # the source's first bar: 2019-10-11T00:00Z


async def test_full_download_is_byte_identical_to_the_source_and_paginates(source, tmp_path):
    text, rows, clock, exchange, dl = _setup(source, tmp_path)
    progress = []
    [result] = await dl.fetch(["XRP/ETH"], "5m", FIRST, on_progress=lambda *a: progress.append(a))
    path = tmp_path / "ds" / "binance_XRP-ETH_5m.csv"
    assert result.path == path.resolve()
    assert path.read_text() == text  # same numbers, same formatting as the shared pack
    assert result.bars_written == result.bars_total == len(rows) == 706
    assert (result.first_ts_ms, result.last_ts_ms) == (rows[0][0], rows[-1][0])
    # 706 bars in pages of 100: 8 calls, each continuing after the previous page's last bar
    assert len(exchange.calls) == result.requests == 8
    assert [c[1] for c in exchange.calls[:2]] == [rows[0][0], rows[99][0] + TF_MS]
    assert all(c[2] == 100 for c in exchange.calls)
    # the source's six one-bar holes are kept and reported
    assert result.gap_count == 6 and result.missing_bars == 6
    assert result.gaps[0] == Gap(1570837800000 + TF_MS, 1570838400000, 1)
    assert result.resumed_after_ms is None and not result.repaired and not result.error
    # progress: a start call, one per page, one at the end; counts never go down
    assert progress[0] == ("XRP/ETH", 0, 712, None)
    assert progress[-1] == ("XRP/ETH", 706, 712, rows[-1][0])
    assert [p[1] for p in progress] == sorted(p[1] for p in progress)
    assert len(progress) == 1 + 8 + 1


async def test_numbers_round_trip_exactly_through_candles_load(source, tmp_path):
    text, rows, clock, exchange, dl = _setup(source, tmp_path)
    await dl.fetch(["XRP/ETH"], "5m", FIRST)
    series = candles.load(tmp_path / "ds" / "binance_XRP-ETH_5m.csv")
    raw = list(csv.reader(text.splitlines()))[1:]
    for i in (0, 1, 350, 705):
        for j, col in enumerate(candles.VALUE_COLUMNS, start=1):
            assert series.decimal(col, i) == Decimal(raw[i][j])
    assert series.price_decimals == 8


def test_format_number_has_no_float_noise_and_no_exponent():
    assert format_number(0.09946999000000001) == "0.09946999"
    assert format_number(3.01e-05) == "0.0000301"
    assert format_number(1e-08) == "0.00000001"
    assert format_number(46319.0) == "46319"
    assert format_number(3478) == "3478"
    assert format_number(1e21) == "1000000000000000000000"
    assert format_number(0.1 + 0.2) == "0.3"
    assert format_number(123456789.12345679) == "123456789.123457"  # 15 significant digits
    assert format_number("0.00001000") == "0.00001"
    assert format_number(None) == ""
    with pytest.raises(ValueError):
        format_number(float("nan"))


async def test_tricky_numbers_written_then_loaded_are_exact(tmp_path):
    t0 = 1_700_000_000_000 - 1_700_000_000_000 % TF_MS
    bars = [
        [t0, 0.09946999000000001, 0.1 + 0.2, 0.0994, 0.1, 12.5],
        [t0 + TF_MS, 3.01e-05, 3.02e-05, 2.99e-05, 3e-05, 1e-08],
        [t0 + 2 * TF_MS, 46319.0, 46320.12345678901, 46300.0, 46310.5, None],
    ]
    clock = FakeClock(t0 + 3 * TF_MS)
    ex = FakeExchange({"BTC/USDT": bars}, clock)
    [res] = await CandleDownloader(ex, tmp_path, clock=clock).fetch(["BTC/USDT"], "5m", t0)
    lines = res.path.read_text().splitlines()
    assert lines[1:] == [
        f"{t0},0.09946999,0.3,0.0994,0.1,12.5",
        f"{t0 + TF_MS},0.0000301,0.0000302,0.0000299,0.00003,0.00000001",
        f"{t0 + 2 * TF_MS},46319,46320.123456789,46300,46310.5,",
    ]
    s = candles.load(res.path)
    assert s.decimal("high", 0) == Decimal("0.3") and s.decimal("open", 1) == Decimal("0.0000301")
    assert s.decimal("high", 2) == Decimal("46320.123456789") and s.decimal("volume", 2) == 0


async def test_forming_last_bar_is_dropped_and_written_by_the_next_run(source, tmp_path):
    text, rows, clock, exchange, dl = _setup(source, tmp_path, now_ms=source[1][-1][0] + TF_MS - 1)
    [r1] = await dl.fetch(["XRP/ETH"], "5m", FIRST)
    assert r1.bars_written == 705 and r1.last_ts_ms == rows[-2][0]
    path = tmp_path / "ds" / "binance_XRP-ETH_5m.csv"
    assert text.startswith(path.read_text()) and path.read_text() != text
    clock.now_ms += 1  # the last bar closes
    [r2] = await dl.fetch(["XRP/ETH"], "5m", FIRST)
    assert r2.bars_written == 1 and r2.resumed_after_ms == rows[-2][0] and r2.bars_total == 706
    assert path.read_text() == text
    # up to date: nothing to fetch, no request
    calls = len(exchange.calls)
    [r3] = await dl.fetch(["XRP/ETH"], "5m", FIRST)
    assert r3.bars_written == 0 and r3.bars_total == 706 and len(exchange.calls) == calls


async def test_until_bounds_open_times_exclusively(source, tmp_path):
    text, rows, clock, exchange, dl = _setup(source, tmp_path)
    [r] = await dl.fetch(["XRP/ETH"], "5m", rows[10][0], rows[20][0])
    assert r.bars_written == 10 and (r.first_ts_ms, r.last_ts_ms) == (rows[10][0], rows[19][0])


async def test_resume_after_cancellation_gives_the_same_file(source, tmp_path):
    text, rows, clock, exchange, dl = _setup(source, tmp_path)
    exchange.block_at = 4
    task = asyncio.create_task(dl.fetch(["XRP/ETH"], "5m", FIRST))
    await asyncio.wait_for(exchange.blocked.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    path = tmp_path / "ds" / "binance_XRP-ETH_5m.csv"
    assert len(path.read_text().splitlines()) == 1 + 300  # three whole pages
    [r] = await dl.fetch(["XRP/ETH"], "5m", FIRST)
    assert r.resumed_after_ms == rows[299][0] and r.bars_written == 406 and r.bars_total == 706
    assert exchange.calls[4][1] == rows[299][0] + TF_MS  # continued after the last row
    assert path.read_text() == text


async def test_exchange_error_is_reported_per_symbol_and_resume_completes(source, tmp_path):
    text, rows, clock, exchange, dl = _setup(source, tmp_path)
    exchange.fail[3] = ccxt.ExchangeError("binance {\"code\":-1003,\"msg\":\"boom\"}")
    [r] = await dl.fetch(["XRP/ETH"], "5m", FIRST)
    assert "ExchangeError" in r.error and "boom" in r.error and r.bars_written == 200
    [r] = await dl.fetch(["XRP/ETH"], "5m", FIRST)
    assert not r.error and r.bars_total == 706
    assert (tmp_path / "ds" / "binance_XRP-ETH_5m.csv").read_text() == text


@pytest.mark.parametrize("tail", [b"1570965300000,0.0014", b"\x00\x00\x00\x00", b"garbage,,\n", b"1570965300000,0.1,0.2\n\x00\x00"])
async def test_torn_last_line_is_repaired_on_resume(source, tmp_path, tail):
    text, rows, clock, exchange, dl = _setup(source, tmp_path)
    await dl.fetch(["XRP/ETH"], "5m", FIRST)
    path = tmp_path / "ds" / "binance_XRP-ETH_5m.csv"
    lines = text.splitlines(keepends=True)
    path.write_bytes("".join(lines[:-3]).encode() + tail)  # a crash while appending the last page
    [r] = await dl.fetch(["XRP/ETH"], "5m", FIRST)
    assert r.repaired and r.resumed_after_ms == rows[-4][0] and r.bars_written == 3
    assert path.read_text() == text


async def test_earlier_since_prepends_the_missing_head(source, tmp_path):
    text, rows, clock, exchange, dl = _setup(source, tmp_path)
    await dl.fetch(["XRP/ETH"], "5m", rows[400][0])
    path = tmp_path / "ds" / "binance_XRP-ETH_5m.csv"
    assert path.read_text().splitlines()[1].startswith(str(rows[400][0]))
    [r] = await dl.fetch(["XRP/ETH"], "5m", FIRST)
    assert r.bars_written == 400 and r.first_ts_ms == rows[0][0] and r.bars_total == 706
    assert path.read_text() == text
    assert not list(path.parent.glob(".*"))  # no side file left behind


async def test_interrupted_prepend_leaves_the_file_as_it_was(source, tmp_path):
    text, rows, clock, exchange, dl = _setup(source, tmp_path)
    await dl.fetch(["XRP/ETH"], "5m", rows[400][0])
    path = tmp_path / "ds" / "binance_XRP-ETH_5m.csv"
    before = path.read_bytes()
    exchange.fail[len(exchange.calls) + 2] = ccxt.ExchangeNotAvailable("maintenance")
    dl.max_retries = 0
    [r] = await dl.fetch(["XRP/ETH"], "5m", FIRST)
    assert r.error and r.bars_written == 0 and path.read_bytes() == before
    assert not list(path.parent.glob(".*"))
    dl.max_retries = 5
    await dl.fetch(["XRP/ETH"], "5m", FIRST)
    assert path.read_text() == text


async def test_network_errors_are_retried_with_backoff(source, tmp_path):
    waits = []

    async def sleep(seconds):
        waits.append(seconds)

    text, rows, clock, exchange, dl = _setup(source, tmp_path, sleep=sleep)
    exchange.fail[2] = ccxt.RequestTimeout("timeout")
    exchange.fail[3] = ccxt.RateLimitExceeded("429")
    [r] = await dl.fetch(["XRP/ETH"], "5m", FIRST)
    assert waits == [1.0, 2.0] and not r.error
    assert (tmp_path / "ds" / "binance_XRP-ETH_5m.csv").read_text() == text


async def test_rate_limit_answers_honour_retry_after(source, tmp_path):
    waits = []

    async def sleep(seconds):
        waits.append(seconds)

    text, rows, clock, exchange, dl = _setup(source, tmp_path, sleep=sleep)
    exchange.last_response_headers = {"Content-Type": "application/json", "Retry-After": "7"}
    exchange.fail[1] = ccxt.RateLimitExceeded("binance 429 Too Many Requests")
    exchange.fail[2] = ccxt.DDoSProtection("binance 418 banned")
    exchange.fail[3] = ccxt.RequestTimeout("timeout")  # not a rate-limit answer: plain back-off
    [r] = await dl.fetch(["XRP/ETH"], "5m", FIRST)
    assert waits == [7.0, 7.0, 4.0] and not r.error


async def test_network_errors_give_up_after_max_retries(source, tmp_path):
    text, rows, clock, exchange, dl = _setup(source, tmp_path, max_retries=2)
    for n in (1, 2, 3):
        exchange.fail[n] = ccxt.NetworkError("down")
    [r] = await dl.fetch(["XRP/ETH"], "5m", FIRST)
    assert "failed 3 times" in r.error and r.bars_written == 0


async def test_rate_limiter_is_switched_on(source, tmp_path):
    text, rows, clock, exchange, _ = _setup(source, tmp_path)
    exchange.enableRateLimit = False
    CandleDownloader(exchange, tmp_path, clock=clock)
    assert exchange.enableRateLimit is True


@pytest.mark.parametrize(
    ("symbols", "timeframe", "field", "needle"),
    [
        (["DOGE/XYZ"], "5m", "symbols", "DOGE/XYZ"),
        (["XRP/ETH", "NOPE/ETH"], "5m", "symbols", "NOPE/ETH"),
        (["BTC/USDT:USDT"], "5m", "symbols", "not a spot market"),
        (["XRP/ETH", "xrp-eth"], "5m", "symbols", "twice"),
        ([], "5m", "symbols", "at least one"),
        (["XRP/ETH"], "3m", "timeframe", "'3m' is not offered by binance"),
        (["XRP/ETH"], "1M", "timeframe", "1M"),
    ],
)
async def test_validation_errors_name_the_field_and_value(source, tmp_path, symbols, timeframe, field, needle):
    text, rows, clock, exchange, dl = _setup(source, tmp_path)
    with pytest.raises(ValidationError) as err:
        await dl.fetch(symbols, timeframe, FIRST)
    assert err.value.field == field and needle in str(err.value)
    assert exchange.calls == []  # nothing fetched before everything is valid


async def test_symbol_spelling_is_normalised(source, tmp_path):
    text, rows, clock, exchange, dl = _setup(source, tmp_path)
    [r] = await dl.fetch(["xrp-eth"], "5m", FIRST, "2019-10-11T01:00:00Z")
    assert r.symbol == "XRP/ETH" and r.bars_written == 12


@pytest.mark.parametrize(
    ("since", "until", "field"),
    [("yesterday", None, "since"), ("2019-13-01", None, "since"), (FIRST, "2019-10-10", "until"),
     (FIRST, FIRST, "until"), ("2030-01-01", None, "since"), ("1969-12-31", None, "since")],
)
async def test_since_and_until_errors(source, tmp_path, since, until, field):
    text, rows, clock, exchange, dl = _setup(source, tmp_path)
    with pytest.raises(ValidationError) as err:
        await dl.fetch(["XRP/ETH"], "5m", since, until)
    assert err.value.field == field


def test_to_utc_ms_accepts_dates_and_iso_times():
    assert to_utc_ms("2024-01-01", "since") == 1704067200000
    assert to_utc_ms("2024-01-01T00:05", "since") == 1704067500000
    assert to_utc_ms("2024-01-01T00:05:00Z", "since") == 1704067500000
    assert to_utc_ms("2024-01-01 02:05:00+02:00", "since") == 1704067500000
    assert to_utc_ms(1704067200000, "since") == 1704067200000


async def test_refuses_foreign_or_compressed_files(source, tmp_path):
    text, rows, clock, exchange, dl = _setup(source, tmp_path)
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "binance_XRP-ETH_5m.csv").write_text("time,o,h,l,c,v\n1,2,3,4,5,6\n")
    with pytest.raises(PreconditionError, match="first line"):
        await dl.fetch(["XRP/ETH"], "5m", FIRST)
    (folder / "binance_XRP-ETH_5m.csv").unlink()
    (folder / "binance_XRP-ETH_5m.csv.gz").write_bytes(b"")
    with pytest.raises(PreconditionError, match="gunzip"):
        await dl.fetch(["XRP/ETH"], "5m", FIRST)


async def test_a_second_concurrent_download_of_the_same_file_is_refused(source, tmp_path):
    text, rows, clock, exchange, dl = _setup(source, tmp_path)
    exchange.block_at = 1
    task = asyncio.create_task(dl.fetch(["XRP/ETH"], "5m", FIRST))
    await asyncio.wait_for(exchange.blocked.wait(), 5)
    with pytest.raises(PreconditionError, match="another request"):
        await dl.fetch(["XRP/ETH"], "5m", FIRST)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_invalid_bars_are_dropped_not_written(tmp_path):
    t0 = 1_700_000_000_000 - 1_700_000_000_000 % TF_MS
    bars = [
        [t0, 1.0, 2.0, 0.5, 1.5, 10.0],
        [t0 + TF_MS, 0.0, 0.0, 0.0, 0.0, 0.0],  # no trades, zero prices
        [t0 + 2 * TF_MS, 1.0, 0.9, 0.5, 1.5, 10.0],  # high below close
        [t0 + 3 * TF_MS, 1.0, 2.0, 0.5, 1.5, None],
    ]
    clock = FakeClock(t0 + 4 * TF_MS)
    [r] = await CandleDownloader(FakeExchange({"BTC/USDT": bars}, clock), tmp_path, clock=clock).fetch(
        ["BTC/USDT"], "5m", t0)
    assert r.bars_written == 2 and r.dropped_invalid == 2 and r.gap_count == 1 and r.missing_bars == 2
    assert len(candles.load(r.path)) == 2


def test_resolve_dataset_dir_stays_inside_datasets(tmp_path):
    base = (tmp_path / "datasets").resolve()
    assert resolve_dataset_dir(tmp_path) == base
    assert resolve_dataset_dir(tmp_path, "binance") == base / "binance"
    assert resolve_dataset_dir(tmp_path, str(base / "x")) == base / "x"
    for bad in ("..", "../../etc", "/etc", "a/../../b"):
        with pytest.raises(ValidationError) as err:
            resolve_dataset_dir(tmp_path, bad)
        assert err.value.field == "dataset_dir"


async def test_list_dataset(source, tmp_path, shared_data):
    text, rows, clock, exchange, dl = _setup(source, tmp_path)
    await dl.fetch(["XRP/ETH"], "5m", FIRST)
    (tmp_path / "ds" / "notes.txt").write_text("x")
    (tmp_path / "ds" / "binance_BTC-USDT-PERP_1h.csv").write_text("timestamp_ms\n")
    (tmp_path / "ds" / "ftx_BTC-PERP_1m.csv.gz").write_bytes((shared_data / "candles" / "ftx_BTC-PERP_1m.csv.gz").read_bytes())
    [info] = list_dataset(tmp_path / "ds")
    assert (info.exchange, info.symbol, info.timeframe, info.bars) == ("binance", "XRP/ETH", "5m", 706)
    assert (info.first_ts_ms, info.last_ts_ms) == (rows[0][0], rows[-1][0])
    assert info.size_bytes == len(text.encode())
    assert list_dataset(tmp_path / "missing") == []


async def test_public_exchange_has_no_credentials_and_the_rate_limiter_on():
    from appliance.marketdata.download import check_exchange_id, public_exchange

    ex = public_exchange(" Binance ", {"enableRateLimit": False, "apiKey": "k", "secret": "s", "timeout": 5000})
    try:
        assert ex.id == "binance" and ex.enableRateLimit is True and ex.timeout == 5000
        assert not ex.apiKey and not ex.secret
    finally:
        await ex.close()
    for bad in ("", "nosuchexchange"):
        with pytest.raises(ValidationError) as err:
            check_exchange_id(bad)
        assert err.value.field == "exchange"
