"""Candle datasets: discover CSV files of OHLCV bars in a folder and load them into numpy arrays.

File names follow the shared-data convention ``{exchange}_{BASE-QUOTE}_{timeframe}.csv`` (or
``.csv.gz``), e.g. ``bittrex_ADA-BTC_5m.csv``. A ``spot`` qualifier is accepted
(``binance_BTC-USDT_spot_1h.csv.gz``). Everything else is skipped: perpetuals, swaps and futures
(``BTC-USDT-PERP``, ``BTC-USDT-SWAP``, ``BTC-PERP``, ``BTC-0625``, any symbol that is not exactly
``BASE-QUOTE``, exchange names containing ``futures``/``swap``/``perp``), mark-price candles
(``_mark_``), funding and trade files.

Columns: ``timestamp_ms,open,high,low,close,volume`` (extra columns such as Kraken's ``trades``
are ignored). ``timestamp_ms`` is the bar OPEN time, UTC milliseconds. Prices are quote per 1 base;
volume is in base units; an empty volume cell means "not available" and is read as 0.

Exact decimals. Prices are kept as float64 arrays (the kernels need them) and turned back into
``Decimal`` with ``Decimal(repr(x))``: Python's ``repr`` is the shortest text that round-trips a
float, so any number written with at most 15 significant digits (DBL_DIG, the shared data's
convention) comes back as exactly the decimal of the file (``"0.0000533"`` -> ``Decimal("0.0000533")``).
Columns holding a longer number are detected at load and their raw text is kept
(:attr:`CandleSeries.exact_text`), so :meth:`CandleSeries.bar` is exact in every case.

Price decimals (used to infer the price tick) are computed from the file TEXT at load time: the
largest number of digits after the decimal point among open/high/low/close, capped at 10.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from appliance.marketdata.bar import Bar
from appliance.model.errors import PreconditionError, ValidationError
from appliance.model.instrument import InstrumentId

NS_PER_MS = 1_000_000
MAX_PRICE_DECIMALS = 10
REQUIRED_COLUMNS = ("timestamp_ms", "open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close")
VALUE_COLUMNS = ("open", "high", "low", "close", "volume")

_TF_UNITS_NS = {
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3_600 * 1_000_000_000,
    "d": 86_400 * 1_000_000_000,
    "w": 7 * 86_400 * 1_000_000_000,
}
_TF_RE = re.compile(r"^([1-9][0-9]*)([smhdw])$")
_ASSET_RE = re.compile(r"^[A-Za-z0-9]+$")
_DERIVATIVE_SUFFIXES = frozenset({"PERP", "PERPETUAL", "SWAP", "FUTURES"})
_DERIVATIVE_VENUE_MARKERS = ("futures", "swap", "perp")
_HINT = (
    "set LYRA_DATASET or `[paper] dataset` in the config to a folder of candle CSVs "
    "named {exchange}_{BASE-QUOTE}_{timeframe}.csv[.gz] (such as ../shared/data/candles); "
    "or download candles with `lyractl data fetch --exchange binance --symbols BTC/USDT --timeframe 5m --since 2024-01-01` (into <data_dir>/datasets)"
)


class DatasetNotFound(PreconditionError):
    """No usable candle file: the folder is missing, or nothing in it matches the filters.

    The message names the folder, the filters and how to get data.
    """


def timeframe_to_ns(timeframe: str) -> int:
    """Length of a timeframe such as ``"5m"``, ``"1h"``, ``"1d"`` in nanoseconds.

    Units: s, m (minutes), h, d, w. Months are not supported (not a fixed length).

    Raises:
        ValidationError: unknown timeframe text (field ``timeframe``).
    """
    match = _TF_RE.match(timeframe.strip())
    if not match:
        raise ValidationError("timeframe", f"{timeframe!r} is not a timeframe like 1m, 5m, 1h, 1d")
    return int(match.group(1)) * _TF_UNITS_NS[match.group(2)]


@dataclass(frozen=True, slots=True)
class CandleFile:
    """One candle file found by :func:`discover`.

    Attributes:
        path: absolute path of the ``.csv`` / ``.csv.gz`` file.
        exchange: lower-case exchange name from the file name (``"bittrex"``).
        symbol: ccxt symbol ``"BASE/QUOTE"`` (``"ADA/BTC"``).
        base, quote: asset codes (upper case).
        timeframe: text as in the file name (``"5m"``).
        timeframe_ns: bar length in ns.
    """

    path: Path
    exchange: str
    symbol: str
    base: str
    quote: str
    timeframe: str
    timeframe_ns: int


def parse_file_name(path: Path) -> CandleFile | None:
    """Parse a candle file name; ``None`` when it is not a spot candle file (perp, mark, trades ...)."""
    name = path.name
    if name.endswith(".csv.gz"):
        stem = name[: -len(".csv.gz")]
    elif name.endswith(".csv"):
        stem = name[: -len(".csv")]
    else:
        return None
    parts = stem.split("_")
    if len(parts) == 4 and parts[2].lower() == "spot":
        parts = [parts[0], parts[1], parts[3]]
    if len(parts) != 3:
        return None
    exchange, pair, timeframe = parts
    if not exchange or not _TF_RE.match(timeframe):
        return None
    if any(marker in exchange.lower() for marker in _DERIVATIVE_VENUE_MARKERS):
        return None  # binance-futures_..., huobi-dm-swap_...
    assets = pair.split("-")
    if len(assets) != 2 or not all(_ASSET_RE.match(a) for a in assets):
        return None  # BTC-USDT-PERP, BTC-USDT-SWAP, XBTUSD ... are not spot pairs
    base, quote = (a.upper() for a in assets)
    if base in _DERIVATIVE_SUFFIXES or quote in _DERIVATIVE_SUFFIXES or quote.isdigit():
        return None  # BTC-PERP (FTX), BTC-0625 (dated future)
    return CandleFile(
        path=path.resolve(),
        exchange=exchange.lower(),
        symbol=f"{base}/{quote}",
        base=base,
        quote=quote,
        timeframe=timeframe,
        timeframe_ns=timeframe_to_ns(timeframe),
    )


def _norm_symbol(text: str) -> str:
    return text.strip().upper().replace("-", "/")


def discover(
    dataset_dir: Path | str,
    timeframe: str | None = None,
    exchanges: Sequence[str] | None = None,
    symbols: Sequence[str] | None = None,
) -> list[CandleFile]:
    """Find spot candle files directly inside ``dataset_dir`` (not recursive).

    Args:
        dataset_dir: folder of candle files.
        timeframe: keep only this timeframe (``"5m"``); ``None`` = all.
        exchanges: keep only these exchanges (case-insensitive); ``None`` = all.
        symbols: keep only these symbols (``"ADA/BTC"``; ``"ADA-BTC"`` also accepted); ``None`` = all.

    Returns:
        Matching files sorted by (exchange, symbol, timeframe length).

    Raises:
        DatasetNotFound: the folder does not exist, or no file matches the filters.
        ValidationError: ``timeframe`` is malformed, or two files hold the same
            exchange/symbol/timeframe (e.g. ``x.csv`` and ``x.csv.gz``).
    """
    folder = Path(dataset_dir).expanduser()
    filters = (
        f"timeframe={timeframe or 'any'}, exchanges={list(exchanges) if exchanges else 'any'}, "
        f"symbols={list(symbols) if symbols else 'any'}"
    )
    shown = str(folder) if folder.is_absolute() else f"{folder} ({folder.resolve()})"
    if not folder.is_dir():
        raise DatasetNotFound(f"candle dataset folder {shown} does not exist (filters: {filters}); {_HINT}")
    if timeframe is not None:
        timeframe_to_ns(timeframe)  # validate
    want_exchanges = {e.strip().lower() for e in exchanges} if exchanges else None
    want_symbols = {_norm_symbol(s) for s in symbols} if symbols else None

    found: dict[tuple[str, str, int], CandleFile] = {}
    seen_any = 0
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        parsed = parse_file_name(path)
        if parsed is None:
            continue
        seen_any += 1
        if timeframe is not None and parsed.timeframe != timeframe.strip():
            continue
        if want_exchanges is not None and parsed.exchange not in want_exchanges:
            continue
        if want_symbols is not None and parsed.symbol not in want_symbols:
            continue
        key = (parsed.exchange, parsed.symbol, parsed.timeframe_ns)
        if key in found:
            raise ValidationError(
                "dataset",
                f"{found[key].path.name} and {path.name} in {folder} hold the same "
                f"{parsed.exchange} {parsed.symbol} {parsed.timeframe} candles; keep one",
            )
        found[key] = parsed
    if not found:
        what = "no spot candle files" if not seen_any else f"none of its {seen_any} spot candle files match"
        raise DatasetNotFound(f"candle dataset folder {shown}: {what} (filters: {filters}); {_HINT}")
    return [found[k] for k in sorted(found)]


@dataclass(frozen=True, eq=False)
class CandleSeries:
    """The candles of one file as numpy arrays (index i = the i-th bar, oldest first).

    Attributes:
        file: where they came from.
        open_ms: bar open times, int64 UTC ms, strictly increasing.
        open_ns, close_ns: int64 ns; ``close_ns = open_ns + file.timeframe_ns`` (when the bar is known).
        open, high, low, close: float64 prices (quote per base).
        volume: float64 base units (0 where the file had none).
        price_decimals: most digits after the decimal point among the price texts (<= 10).
        exact_text: raw text of any column that has a number with more than 15 significant
            digits (normally empty); :meth:`bar` uses it so decimals stay exact.
    """

    file: CandleFile
    open_ms: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    price_decimals: int
    open_ns: np.ndarray = field(repr=False)
    close_ns: np.ndarray = field(repr=False)
    exact_text: dict[str, Sequence[str]] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return int(self.open_ms.shape[0])

    def decimal(self, column: str, i: int) -> Decimal:
        """Exact Decimal of ``column`` (``"open"`` ... ``"volume"``) at row ``i`` as written in the file."""
        raw = self.exact_text.get(column)
        if raw is not None:
            text = raw[i] or "0"
            return Decimal(text)
        return float_to_decimal(float(getattr(self, column)[i]))

    def bar(self, i: int, instrument: InstrumentId) -> Bar:
        """Row ``i`` as a :class:`Bar` of ``instrument`` with exact Decimal prices.

        Raises:
            IndexError: ``i`` out of range.
        """
        if self.exact_text:
            o, h, l, c, v = (self.decimal(col, i) for col in VALUE_COLUMNS)
        else:
            o = float_to_decimal(float(self.open[i]))
            h = float_to_decimal(float(self.high[i]))
            l = float_to_decimal(float(self.low[i]))  # noqa: E741
            c = float_to_decimal(float(self.close[i]))
            v = float_to_decimal(float(self.volume[i]))
        open_ns = int(self.open_ns[i])
        return Bar(instrument, open_ns, int(self.close_ns[i]), o, h, l, c, v)

    def bars(self, instrument: InstrumentId, start: int = 0, stop: int | None = None) -> list[Bar]:
        """Rows ``start:stop`` as Bars (see :meth:`bar`)."""
        stop = len(self) if stop is None else stop
        return [self.bar(i, instrument) for i in range(start, stop)]


def float_to_decimal(value: float) -> Decimal:
    """Decimal of a float via its shortest round-trip text (exact for <= 15 significant digits).

    ``46319.0`` becomes ``Decimal("46319")`` (the ``.0`` that ``repr`` adds is dropped).
    """
    text = repr(value)
    if text.endswith(".0"):
        text = text[:-2]
    return Decimal(text)


def price_decimals(series: CandleSeries) -> int:
    """Most digits after the decimal point among the file's price texts (open/high/low/close), <= 10.

    Computed from the file text when the series was loaded; the price tick is ``10**-price_decimals``.
    """
    return series.price_decimals


def _text_decimals(text: str) -> int:
    text = text.strip()
    if "e" in text or "E" in text:
        exponent = Decimal(text).as_tuple().exponent
        return max(0, -exponent) if isinstance(exponent, int) else 0
    dot = text.find(".")
    return 0 if dot < 0 else len(text) - dot - 1


_FRACTION_RE = re.compile(r"\.([0-9]+)")


def _column_decimals(texts: Sequence[str]) -> int:
    """Most digits after the decimal point in a column of number texts."""
    joined = ",".join(texts)
    if "e" in joined or "E" in joined:  # exponent notation: exact but slower path
        return max(_text_decimals(t) for t in set(texts))
    return max(map(len, _FRACTION_RE.findall(joined)), default=0)


def _significant_digits(text: str) -> int:
    text = text.strip()
    if "e" in text or "E" in text:
        return len(Decimal(text).as_tuple().digits)
    return len(text.lstrip("+-").replace(".", "").lstrip("0"))


def _line_of_row(path: Path, row: int) -> int:
    """Physical line number (header = line 1) of data row ``row`` (0-based, blank lines skipped)."""
    with _open_text(path) as handle:
        reader = csv.reader(handle)
        next(reader, None)
        k = -1
        for r in reader:
            if len(r) <= 1 and not "".join(r).strip():
                continue
            k += 1
            if k == row:
                return reader.line_num
    return -1


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, "r", encoding="utf-8", newline="")


def load(file: CandleFile | Path | str) -> CandleSeries:
    """Load and validate one candle file.

    Args:
        file: a :class:`CandleFile` from :func:`discover`, or a path whose name follows the convention.

    Returns:
        A :class:`CandleSeries`.

    Raises:
        ValidationError: the name is not a spot candle file name (field ``path``), or a row is bad:
            ``field`` is ``"{file name}:line {n}"`` (n counts the header as line 1) and ``reason``
            says what is wrong (missing column, not a number, not finite, price <= 0, volume < 0,
            high below max(open, close), low above min(open, close), timestamp not after the
            previous one), or the file has no data rows (field = file name).
        OSError: the file cannot be read.
    """
    if not isinstance(file, CandleFile):
        parsed = parse_file_name(Path(file))
        if parsed is None:
            raise ValidationError("path", f"{Path(file).name} is not named {{exchange}}_{{BASE-QUOTE}}_{{timeframe}}.csv[.gz]")
        file = parsed
    name = file.path.name
    with _open_text(file.path) as handle:
        text = handle.read()
    rows = list(csv.reader(text.splitlines()))
    del text
    if not rows:
        raise ValidationError(f"{name}:line 1", "file is empty (no header)")
    header = rows[0]
    columns = [h.strip().lower() for h in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ValidationError(f"{name}:line 1", f"header lacks column(s) {', '.join(missing)}; got {header}")
    index = [columns.index(c) for c in REQUIRED_COLUMNS]
    width = max(index) + 1
    data = rows[1:]
    if data and min(map(len, data)) <= 1:
        data = [r for r in data if not (len(r) <= 1 and not "".join(r).strip())]  # drop blank lines
    if not data:
        raise ValidationError(name, "has no candle rows")

    def bad(i: int, reason: str) -> ValidationError:
        return ValidationError(f"{name}:line {_line_of_row(file.path, i)}", reason)

    if min(map(len, data)) < width:
        i = next(k for k, r in enumerate(data) if len(r) < width)
        raise bad(i, f"has {len(data[i])} fields, expected {len(columns)}")
    transposed = list(zip(*data))  # C-speed transpose; every row has >= width fields
    cols = [transposed[j] for j in index]
    ts_text, *value_text = cols
    try:
        open_ms = np.array(ts_text, dtype=np.int64)
    except (ValueError, OverflowError):
        for i, text in enumerate(ts_text):
            try:
                value = int(text)
            except ValueError:
                raise bad(i, f"timestamp_ms {text!r} is not an integer (UTC milliseconds)") from None
            if not -(2**63) <= value < 2**63:
                raise bad(i, f"timestamp_ms {text} is out of range") from None
        raise
    arrays: dict[str, np.ndarray] = {}
    for col, texts in zip(VALUE_COLUMNS, value_text):
        if col == "volume" and "" in texts:
            texts = [t.strip() or "0" for t in texts]
        try:
            arrays[col] = np.array(texts, dtype=np.float64)
        except ValueError:
            for i, text in enumerate(texts):
                try:
                    float(text)
                except ValueError:
                    raise bad(i, f"{col} {text!r} is not a number") from None
            raise
    o, h, l, c, v = (arrays[col] for col in VALUE_COLUMNS)  # noqa: E741

    # Validation: vectorized masks; the earliest offending row is reported with its first reason.
    checks: list[tuple[np.ndarray, object]] = []
    for col in VALUE_COLUMNS:
        checks.append(
            (~np.isfinite(arrays[col]), lambda i, col=col: f"{col} {value_text[VALUE_COLUMNS.index(col)][i]!r} is not finite")
        )
    for col in PRICE_COLUMNS:
        checks.append((arrays[col] <= 0, lambda i, col=col: f"{col} {value_text[VALUE_COLUMNS.index(col)][i]} must be > 0"))
    checks.append((v < 0, lambda i: f"volume {value_text[4][i]} must be >= 0"))
    checks.append(
        (h < np.maximum(o, c), lambda i: f"high {value_text[1][i]} is below max(open {value_text[0][i]}, close {value_text[3][i]})")
    )
    checks.append(
        (l > np.minimum(o, c), lambda i: f"low {value_text[2][i]} is above min(open {value_text[0][i]}, close {value_text[3][i]})")
    )
    checks.append((open_ms < 0, lambda i: f"timestamp_ms {ts_text[i]} is before 1970"))
    not_increasing = np.zeros(len(open_ms), dtype=bool)
    not_increasing[1:] = np.diff(open_ms) <= 0
    checks.append(
        (not_increasing, lambda i: f"timestamp_ms {ts_text[i]} is not after the previous row's {ts_text[i - 1]}")
    )
    first_bad = min((int(np.argmax(mask)) for mask, _ in checks if mask.any()), default=None)
    if first_bad is not None:
        for mask, reason in checks:
            if mask[first_bad]:
                raise bad(first_bad, reason(first_bad))  # type: ignore[operator]

    decimals = max(_column_decimals(value_text[VALUE_COLUMNS.index(col)]) for col in PRICE_COLUMNS)
    exact_text: dict[str, Sequence[str]] = {}
    for col, texts in zip(VALUE_COLUMNS, value_text):
        if max(map(len, texts)) > 15 and any(_significant_digits(t) > 15 for t in texts if len(t) > 15):
            exact_text[col] = texts

    open_ns = open_ms * NS_PER_MS
    return CandleSeries(
        file=file,
        open_ms=open_ms,
        open=o,
        high=h,
        low=l,
        close=c,
        volume=v,
        price_decimals=min(decimals, MAX_PRICE_DECIMALS),
        open_ns=open_ns,
        close_ns=open_ns + file.timeframe_ns,
        exact_text=exact_text,
    )


def load_all(files: Iterable[CandleFile]) -> list[CandleSeries]:
    """Load several files (see :func:`load`), in the given order."""
    return [load(f) for f in files]
