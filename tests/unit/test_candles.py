"""Candle dataset discovery and loading, on the real shared data pack."""

from __future__ import annotations

import csv
import gzip
import re
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from appliance.marketdata import candles
from appliance.marketdata.candles import CandleFile, DatasetNotFound, discover, load, price_decimals
from appliance.model.errors import PreconditionError, ValidationError
from appliance.model.instrument import InstrumentId

BITTREX_5M = ["ADA/BTC", "DASH/BTC", "ETC/BTC", "ETH/BTC", "LTC/BTC", "NXT/BTC", "TRX/BTC", "XLM/BTC"]


@pytest.fixture(scope="module")
def candles_dir(shared_data: Path) -> Path:
    return shared_data / "candles"


def read_rows(path: Path) -> list[dict[str, str]]:
    """Independent reader: the csv module over the raw file."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", newline="") as handle:
        return list(csv.DictReader(handle))


# -- discovery ----------------------------------------------------------------------------
def test_discover_bittrex_5m(candles_dir: Path) -> None:
    files = discover(candles_dir, timeframe="5m", exchanges=["bittrex"])
    assert [f.symbol for f in files] == BITTREX_5M
    ada = files[0]
    assert ada.path == (candles_dir / "bittrex_ADA-BTC_5m.csv").resolve()
    assert (ada.exchange, ada.base, ada.quote, ada.timeframe) == ("bittrex", "ADA", "BTC", "5m")
    assert ada.timeframe_ns == 300 * 10**9


def test_discover_all_skips_perpetuals(candles_dir: Path) -> None:
    files = discover(candles_dir)
    names = {f.path.name for f in files}
    on_disk = {p.name for p in candles_dir.iterdir() if p.name.endswith((".csv", ".csv.gz"))}
    assert "ftx_BTC-PERP_1m.csv.gz" in on_disk
    assert names == on_disk - {"ftx_BTC-PERP_1m.csv.gz"}
    assert all("PERP" not in f.symbol for f in files)


def test_discover_filters(candles_dir: Path) -> None:
    files = discover(candles_dir, symbols=["ETC/BTC", "xrp-eth"])
    assert sorted((f.exchange, f.symbol, f.timeframe) for f in files) == [
        ("binance", "XRP/ETH", "1m"),
        ("binance", "XRP/ETH", "5m"),
        ("bittrex", "ETC/BTC", "1m"),
        ("bittrex", "ETC/BTC", "5m"),
    ]
    only = discover(candles_dir, timeframe="30m")
    assert [(f.exchange, f.symbol) for f in only] == [("bittrex", "ETH/BTC")]
    assert [f.symbol for f in discover(candles_dir, exchanges=["BINANCE"], timeframe="1m")] == ["XRP/ETH"]


def test_discover_spot_qualifier_and_non_candle_files(shared_data: Path) -> None:
    # This folder holds perp, mark-price and funding files beside one spot file.
    files = discover(shared_data / "funding" / "binance_BTC_2019-2026")
    assert [(f.exchange, f.symbol, f.timeframe, f.path.name) for f in files] == [
        ("binance", "BTC/USDT", "1h", "binance_BTC-USDT_spot_1h.csv.gz")
    ]


def test_discover_name_rules(tmp_path: Path) -> None:
    header = "timestamp_ms,open,high,low,close,volume\n"
    for name in [
        "x_BTC-USDT_1h.csv",
        "x_ETH-USDT_spot_5m.csv.gz",
        "x_BTC-USDT-PERP_1m.csv",
        "x_BTC-USDT-SWAP_1h.csv",
        "x_BTC-USDT_mark_1h.csv",
        "x_BTC-USDT_funding_8h.csv",
        "x_XRP-ETH_trades.csv",
        "x_XBTUSD_1m.csv",
        "ftx_BTC-PERP_1m.csv",
        "x_BTC-0625_1h.csv",
        "binance-futures_BTC-USDT_1h.csv",
        "x_BTC-USDT_1M.csv",
        "notes.txt",
    ]:
        (tmp_path / name).write_text(header)
    assert [f.path.name for f in discover(tmp_path)] == ["x_BTC-USDT_1h.csv", "x_ETH-USDT_spot_5m.csv.gz"]


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DatasetNotFound) as err:
        discover(missing, timeframe="5m", exchanges=["bittrex"], symbols=["ADA/BTC"])
    assert isinstance(err.value, PreconditionError)
    text = str(err.value)
    assert str(missing) in text
    assert "timeframe=5m" in text and "bittrex" in text and "ADA/BTC" in text
    assert "LYRA_DATASET" in text and "[paper] dataset" in text and "lyractl data fetch" in text


def test_no_matching_file_is_a_clear_error(candles_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFound) as err:
        discover(candles_dir, timeframe="4h")
    assert str(candles_dir) in str(err.value) and "timeframe=4h" in str(err.value)
    with pytest.raises(DatasetNotFound, match="no spot candle files"):
        discover(tmp_path)


def test_same_series_twice_is_refused(tmp_path: Path) -> None:
    for name in ("x_BTC-USDT_1h.csv", "x_BTC-USDT_spot_1h.csv"):
        (tmp_path / name).write_text("timestamp_ms,open,high,low,close,volume\n")
    with pytest.raises(ValidationError) as err:
        discover(tmp_path)
    assert "x_BTC-USDT_1h.csv" in err.value.reason and "x_BTC-USDT_spot_1h.csv" in err.value.reason


def test_bad_timeframe_filter() -> None:
    with pytest.raises(ValidationError) as err:
        candles.timeframe_to_ns("5x")
    assert err.value.field == "timeframe"
    assert candles.timeframe_to_ns("1h") == 3_600 * 10**9
    assert candles.timeframe_to_ns("1d") == 86_400 * 10**9


# -- loading ------------------------------------------------------------------------------
def test_load_matches_independent_reader(candles_dir: Path) -> None:
    series = load(candles_dir / "bittrex_ADA-BTC_5m.csv")
    rows = read_rows(series.file.path)
    assert len(series) == len(rows) == 5720
    assert series.open_ms.dtype == np.int64 and series.close.dtype == np.float64
    assert series.open_ms.tolist() == [int(r["timestamp_ms"]) for r in rows]
    assert series.open_ns[0] == 1515560100000 * 10**6
    assert (series.close_ns - series.open_ns == 300 * 10**9).all()
    assert series.high.tolist() == [float(r["high"]) for r in rows]
    assert series.volume.tolist() == [float(r["volume"]) for r in rows]


def _decimals_in_text(rows: list[dict[str, str]]) -> int:
    best = 0
    for r in rows:
        for col in ("open", "high", "low", "close"):
            text = r[col]
            if "." in text:
                best = max(best, len(text) - text.index(".") - 1)
    return min(best, 10)


@pytest.mark.parametrize(
    "relative",
    [f"candles/bittrex_{s.replace('/', '-')}_5m.csv" for s in BITTREX_5M]
    + [
        "candles/binance_XRP-ETH_1m.csv",
        "candles/bittrex_ETH-BTC_30m.csv",
        "arbitrage/triangular_binance_2021-04/binance_BTC-USDT_1m.csv.gz",
        "funding/binance_BTC_2019-2026/binance_BTC-USDT_spot_1h.csv.gz",
    ],
)
def test_exact_decimal_round_trip_on_real_files(shared_data: Path, relative: str) -> None:
    path = shared_data / relative
    series = load(path)
    rows = read_rows(path)
    assert len(series) == len(rows)
    instrument = InstrumentId("paper", series.file.symbol)
    mismatches = []
    for i, row in enumerate(rows):
        bar = series.bar(i, instrument)
        got = (bar.open, bar.high, bar.low, bar.close, bar.volume)
        want = tuple(Decimal(row[c] or "0") for c in ("open", "high", "low", "close", "volume"))
        if got != want:
            mismatches.append((i, got, want))
    assert mismatches == []
    assert series.exact_text == {}  # the pack writes <= 15 significant digits
    assert price_decimals(series) == _decimals_in_text(rows)


def test_exact_decimal_examples(candles_dir: Path) -> None:
    series = load(candles_dir / "bittrex_ADA-BTC_5m.csv")
    bar = series.bar(0, InstrumentId("paper", "ADA/BTC"))
    # first row: 1515560100000,0.0000533,0.0000533,0.00005288,0.0000529,431401.97869504
    assert bar.open == Decimal("0.0000533") and str(bar.open) == "0.0000533"
    assert bar.low == Decimal("0.00005288")
    assert bar.volume == Decimal("431401.97869504")
    assert (bar.open_ns, bar.close_ns) == (1515560100000 * 10**6, 1515560400000 * 10**6)
    assert price_decimals(series) == 8


def test_long_numbers_keep_their_text(tmp_path: Path) -> None:
    path = tmp_path / "x_AAA-BBB_1m.csv"
    path.write_text(
        "timestamp_ms,open,high,low,close,volume\n"
        "60000,0.12345678901234567,0.2,0.1,0.15,12345678.123456789012\n"
    )
    series = load(path)
    bar = series.bar(0, InstrumentId("paper", "AAA/BBB"))
    assert bar.open == Decimal("0.12345678901234567")
    assert bar.volume == Decimal("12345678.123456789012")
    assert bar.high == Decimal("0.2")
    assert price_decimals(series) == 10  # 17 decimals in the text, capped at 10


def test_empty_volume_is_zero_and_extra_columns_ignored(tmp_path: Path) -> None:
    path = tmp_path / "kraken_BCH-EUR_1m.csv"
    path.write_text(
        "timestamp_ms,open,high,low,close,volume,trades\n"
        "1672531200000,100.5,101,100,100.75,,3\n"
        "1672531260000,100.75,100.75,100.75,100.75,0.25,1\n"
    )
    series = load(path)
    assert series.volume.tolist() == [0.0, 0.25]
    first = series.bar(0, InstrumentId("paper", "BCH/EUR"))
    assert first.volume == 0
    assert (str(first.open), str(first.high), str(first.low)) == ("100.5", "101", "100")  # no float ".0"
    assert price_decimals(series) == 2


def test_gz_file_loads(shared_data: Path) -> None:
    path = shared_data / "arbitrage/triangular_binance_2021-04/binance_ETH-BTC_1m.csv.gz"
    series = load(path)
    assert len(series) == len(read_rows(path)) == 42912
    assert series.file.timeframe_ns == 60 * 10**9


HEADER = "timestamp_ms,open,high,low,close,volume\n"
GOOD = ["60000,1.0,1.2,0.9,1.1,10\n", "120000,1.1,1.3,1.0,1.2,11\n"]


@pytest.mark.parametrize(
    "bad_line, reason",
    [
        ("180000,1.2,1.1,1.0,1.15,5\n", r"high 1\.1 is below max\(open 1\.2, close 1\.15\)"),
        ("180000,1.2,1.3,1.25,1.22,5\n", r"low 1\.25 is above min\(open 1\.2, close 1\.22\)"),
        ("120000,1.2,1.3,1.1,1.2,5\n", r"timestamp_ms 120000 is not after the previous row's 120000"),
        ("180000,abc,1.3,1.1,1.2,5\n", r"open 'abc' is not a number"),
        ("180000,,1.3,1.1,1.2,5\n", r"open '' is not a number"),
        ("180000,0,1.3,0,1.2,5\n", r"open 0 must be > 0"),
        ("180000,1.2,1.3,1.1,1.2,-5\n", r"volume -5 must be >= 0"),
        ("180000,1.2,inf,1.1,1.2,5\n", r"high 'inf' is not finite"),
        ("18e4,1.2,1.3,1.1,1.2,5\n", r"timestamp_ms '18e4' is not an integer"),
        ("180000,1.2,1.3\n", r"has 3 fields, expected 6"),
    ],
)
def test_malformed_row_names_file_and_line(tmp_path: Path, bad_line: str, reason: str) -> None:
    path = tmp_path / "bad_AAA-BBB_1m.csv"
    # header = line 1, GOOD rows = lines 2-3, a blank line 4, the bad row = line 5, then a good one
    path.write_text(HEADER + "".join(GOOD) + "\n" + bad_line + "240000,1.2,1.3,1.1,1.2,5\n")
    with pytest.raises(ValidationError) as err:
        load(path)
    assert err.value.field == "bad_AAA-BBB_1m.csv:line 5"
    assert re.search(reason, err.value.reason), err.value.reason


def test_first_bad_row_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "bad_AAA-BBB_1m.csv"
    path.write_text(HEADER + GOOD[0] + "120000,1.1,1.0,1.0,1.05,1\n" + "60000,1.1,1.3,1.0,1.2,1\n")
    with pytest.raises(ValidationError) as err:
        load(path)
    assert err.value.field == "bad_AAA-BBB_1m.csv:line 3"


def test_bad_header_and_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "bad_AAA-BBB_1m.csv"
    path.write_text("time,open,high,low,close\n1,1,1,1,1\n")
    with pytest.raises(ValidationError) as err:
        load(path)
    assert err.value.field == "bad_AAA-BBB_1m.csv:line 1"
    assert "timestamp_ms" in err.value.reason and "volume" in err.value.reason
    path.write_text(HEADER)
    with pytest.raises(ValidationError, match="no candle rows"):
        load(path)


def test_load_refuses_a_name_off_convention(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text(HEADER + GOOD[0])
    with pytest.raises(ValidationError) as err:
        load(path)
    assert err.value.field == "path"


def test_load_accepts_candle_file(candles_dir: Path) -> None:
    f = discover(candles_dir, timeframe="30m")[0]
    assert isinstance(f, CandleFile)
    series = load(f)
    assert series.file is f and len(series) == 1920
