"""Candle download: fetch OHLCV bars from an exchange's public API into the dataset folder.

The files are exactly what :func:`appliance.marketdata.candles.load` reads (and therefore what
the paper venue replays): ``<dataset_dir>/{exchange}_{BASE-QUOTE}_{timeframe}.csv`` with the
header ``timestamp_ms,open,high,low,close,volume``; ``timestamp_ms`` is the bar OPEN time in UTC
milliseconds, prices are quote per 1 base, volume is in base units (an empty cell = the exchange
gave none). Numbers are written the way the shared data pack writes them: the exchange's value
with at most 15 significant digits, positional notation, no trailing zeros (``0.0000301``,
``3478``), so :func:`candles.load` turns them back into exactly that decimal.

Safe defaults, in the manner of Freqtrade's ``download-data``:

* **Resumable.** An existing file is continued after its last bar; rows are never duplicated or
  reordered (each bar written has an open time after the previous row's). A ``since`` earlier
  than the file's first bar fetches the missing head and rewrites the file once (temp file +
  rename), then continues after its last bar.
* **Only complete bars.** A bar is written once it has closed (``open + timeframe <= now``); the
  still-forming last bar is dropped and fetched by the next run.
* **Crash safe.** A new file appears complete (header written to a temp file, fsync'd, renamed).
  Each page is appended with one ``write`` and fsync'd. On resume the file's tail is checked and
  a torn (partial or unparsable) last line is cut off before anything is appended.
* **Validated up front.** Symbols are checked against ``load_markets`` (spot markets only: the
  file name convention and the paper venue are spot), the timeframe against
  ``exchange.timeframes``; every error names the field and the value.
* **Polite.** Pages are requested one after the other through ccxt, whose rate limiter
  (``enableRateLimit``; switched on if it was off) spaces the calls by ``exchange.rateLimit`` ms.
  Network errors are retried with exponential back-off.
* **Gaps are kept.** Bars the exchange does not have (outages, no trades) are not invented; each
  result lists the gaps found among the bars of the file it wrote.

Nothing here touches the database; file I/O (small appends, tail checks) runs in worker threads
so the engine's event loop is never blocked by a slow disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import inspect
import math
import os
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence

from appliance.engine.clock import LiveClock
from appliance.marketdata.candles import REQUIRED_COLUMNS, parse_file_name, timeframe_to_ns
from appliance.venues.ccxt.errors import retry_after_s
from appliance.model.errors import PreconditionError, ValidationError

NS_PER_MS = 1_000_000
HEADER = ",".join(REQUIRED_COLUMNS)
_HEADER_LINE = (HEADER + "\n").encode("ascii")
SIGNIFICANT_DIGITS = 15
DATASETS_SUBDIR = "datasets"
#: How much of a file's end is read to find (and, if torn, repair) its last line.
_TAIL_BYTES = 64 * 1024
#: Longest wait honoured from an exchange's Retry-After header (a 429 / 418 answer).
MAX_RETRY_AFTER_S = 300.0
#: Gaps kept in each result (the count and missing-bar total are always complete).
MAX_GAPS_LISTED = 1000

ProgressCallback = Callable[[str, int, int, "int | None"], "Awaitable[object] | object"]
"""``on_progress(symbol, bars_written, expected_total_bars, last_ts_ms)``; see :meth:`CandleDownloader.fetch`."""


class DownloadError(PreconditionError):
    """The exchange failed (after retries) or answered in a way that cannot be stored.

    Maps to FAILED_PRECONDITION. The file keeps every complete page written before the failure,
    so running the same download again resumes where it stopped.
    """


# --------------------------------------------------------------------------- small helpers


def to_utc_ms(value: int | str | _dt.datetime | _dt.date, field: str) -> int:
    """A time as int UTC milliseconds since the epoch.

    Accepts int milliseconds, an aware or naive (= UTC) ``datetime``, a ``date`` (midnight UTC),
    or text: ``"2024-01-01"``, ``"2024-01-01T12:30"``, ``"2024-01-01 12:30:00Z"``,
    ``"2024-01-01T12:30:00+02:00"`` (naive text = UTC).

    Raises:
        ValidationError: anything else, or a time before 1970 (``field`` names the argument).
    """
    if isinstance(value, bool):
        raise ValidationError(field, f"expected a time, got {value!r}")
    if isinstance(value, int):
        ms = value
    elif isinstance(value, _dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=_dt.timezone.utc)
        ms = int(round(aware.timestamp() * 1000))
    elif isinstance(value, _dt.date):
        ms = int(_dt.datetime(value.year, value.month, value.day, tzinfo=_dt.timezone.utc).timestamp() * 1000)
    elif isinstance(value, str):
        text = value.strip()
        try:
            parsed = _dt.datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "zZ" and text else text)
        except ValueError:
            raise ValidationError(
                field, f"{value!r} is not a date or ISO 8601 time (e.g. 2024-01-01 or 2024-01-01T12:00:00Z; UTC)"
            ) from None
        return to_utc_ms(parsed, field)
    else:
        raise ValidationError(field, f"expected a time, got {type(value).__name__}")
    if ms < 0:
        raise ValidationError(field, f"{value!r} is before 1970")
    return ms


def ms_to_iso(ms: int | None) -> str:
    """``2024-01-01T00:05:00Z`` for int UTC ms; ``""`` for None."""
    if ms is None:
        return ""
    t = _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{ms % 1000:03d}Z" if ms % 1000 else "Z")


def format_number(value: Any) -> str:
    """A ccxt number as candle-file text: at most 15 significant digits, positional notation.

    ``3.01e-05`` -> ``"0.0000301"``, ``3478.0`` -> ``"3478"``, ``0.09946999000000001`` ->
    ``"0.09946999"``; ``None`` -> ``""`` (not available). Python's ``repr`` is the shortest text
    that round-trips a float, so a value the exchange sent with <= 15 significant digits is
    written exactly as the exchange sent it.

    Raises:
        ValueError: not a finite number.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (str, Decimal)):
        number = Decimal(str(value).strip())
        if not number.is_finite():
            raise ValueError(f"{value!r} is not finite")
        as_float = float(number)
    else:
        as_float = float(value)
    if not math.isfinite(as_float):
        raise ValueError(f"{value!r} is not finite")
    number = Decimal(repr(as_float))
    if len(number.as_tuple().digits) > SIGNIFICANT_DIGITS:
        number = Decimal(format(as_float, f".{SIGNIFICANT_DIGITS}g"))
    text = format(number, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def file_name(exchange_id: str, symbol: str, timeframe: str) -> str:
    """``binance_BTC-USDT_5m.csv`` for (``"binance"``, ``"BTC/USDT"``, ``"5m"``)."""
    return f"{exchange_id}_{symbol.replace('/', '-')}_{timeframe}.csv"


def resolve_dataset_dir(data_dir: Path | str, requested: str = "") -> Path:
    """The folder to download into: ``<data_dir>/datasets`` or a folder inside it.

    Args:
        data_dir: the appliance's ``storage.data_dir``.
        requested: ``""`` = ``<data_dir>/datasets``; a relative path is taken relative to it; an
            absolute path must lie inside it (after resolving symlinks).

    Returns:
        The resolved absolute folder (created if missing).

    Raises:
        ValidationError: ``requested`` lies outside ``<data_dir>/datasets`` (field ``dataset_dir``).
    """
    base = (Path(data_dir).expanduser() / DATASETS_SUBDIR)
    base.mkdir(parents=True, exist_ok=True)
    base = base.resolve()
    if not requested:
        return base
    wanted = Path(requested).expanduser()
    wanted = (wanted if wanted.is_absolute() else base / wanted).resolve()
    if wanted != base and base not in wanted.parents:
        raise ValidationError("dataset_dir", f"{requested!r} is outside the dataset folder {base}")
    wanted.mkdir(parents=True, exist_ok=True)
    return wanted


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Gap:
    """Bars missing between two rows of a file.

    Attributes:
        start_ms: open time (UTC ms) of the first missing bar (= previous row + timeframe).
        end_ms: open time of the next row present (exclusive end of the gap).
        missing_bars: ``(end_ms - start_ms) // timeframe``.
    """

    start_ms: int
    end_ms: int
    missing_bars: int


@dataclass(frozen=True, slots=True)
class DownloadResult:
    """What one symbol's download did.

    Attributes:
        exchange, symbol, timeframe: what was fetched (ccxt id and symbol, e.g. ``"5m"``).
        path: the candle file (absolute).
        bars_written: rows added by this run.
        bars_total: rows in the file afterwards.
        first_ts_ms, last_ts_ms: open times (UTC ms) of the file's first and last row (None if empty).
        resumed_after_ms: last row of the file before this run (None: a new file).
        gaps: gaps next to the rows written by this run (also between them and the rows already
            there), at most :data:`MAX_GAPS_LISTED`; ``gap_count``/``missing_bars`` count all.
        gap_count: number of gaps.
        missing_bars: bars missing in those gaps.
        repaired: a torn last line was cut off before resuming.
        dropped_invalid: bars the exchange sent that :func:`candles.load` would refuse (price <= 0,
            high below open/close, ...), left out.
        requests: ``fetch_ohlcv`` calls made (retries not counted).
        error: why the download of this symbol stopped early (empty = it completed). The file keeps
            the bars written before; running again resumes.
    """

    exchange: str
    symbol: str
    timeframe: str
    path: Path
    bars_written: int = 0
    bars_total: int = 0
    first_ts_ms: int | None = None
    last_ts_ms: int | None = None
    resumed_after_ms: int | None = None
    gaps: tuple[Gap, ...] = ()
    gap_count: int = 0
    missing_bars: int = 0
    repaired: bool = False
    dropped_invalid: int = 0
    requests: int = 0
    error: str = ""


@dataclass(frozen=True, slots=True)
class CandleFileInfo:
    """One candle file of a dataset folder (see :func:`list_dataset`).

    Attributes:
        path: absolute path; exchange, symbol (``"BTC/USDT"``), timeframe: from the file name.
        bars: data rows; first_ts_ms, last_ts_ms: open times (UTC ms) of the first and last row.
        size_bytes: file size on disk.
    """

    path: Path
    exchange: str
    symbol: str
    timeframe: str
    bars: int
    first_ts_ms: int | None
    last_ts_ms: int | None
    size_bytes: int


# --------------------------------------------------------------------------- file primitives


def _parse_row(line: bytes) -> int | None:
    """Open time of a data line written in our format, or None if the line is not valid."""
    try:
        text = line.decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    parts = text.split(",")
    if len(parts) != len(REQUIRED_COLUMNS):
        return None
    try:
        ts = int(parts[0])
        values = [float(p) for p in parts[1:5]]
        if parts[5]:
            float(parts[5])
    except ValueError:
        return None
    if ts < 0 or not all(math.isfinite(v) and v > 0 for v in values):
        return None
    return ts


@dataclass(slots=True)
class _FileState:
    exists: bool
    rows: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    repaired: bool = False


def _count_lines(path: Path) -> int:
    count = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            count += chunk.count(b"\n")
    return count


def _check_header(path: Path) -> None:
    """Refuse early a file that exists with another header (see :func:`_open_for_check`)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(_HEADER_LINE))
    except FileNotFoundError:
        return
    if head and not (_HEADER_LINE.startswith(head) if len(head) < len(_HEADER_LINE) else head == _HEADER_LINE):
        raise PreconditionError(
            f"{path.name}: its first line is not {HEADER!r}; refusing to append to a file in "
            "another format (move it away or convert it)"
        )


def _open_for_check(path: Path) -> _FileState:
    """Inspect (and repair) an existing candle file before appending to it.

    Checks the header, cuts off a torn tail (bytes after the last newline, NUL padding, or
    unparsable last lines), and returns the row count and first/last open times.

    Raises:
        PreconditionError: the header is not exactly ``timestamp_ms,open,high,low,close,volume``
            (another format: refuse to append), or more than the last 64 KiB are unreadable.
    """
    if not path.exists():
        return _FileState(exists=False)
    with open(path, "r+b") as fh:
        head = fh.read(len(_HEADER_LINE))
        size = fh.seek(0, os.SEEK_END)
        if size == 0 or (size < len(_HEADER_LINE) and _HEADER_LINE.startswith(head)):
            # created but the header never made it (should not happen: new files are renamed in)
            fh.seek(0)
            fh.truncate(0)
            fh.write(_HEADER_LINE)
            fh.flush()
            os.fsync(fh.fileno())
            return _FileState(exists=True, repaired=size > 0)
        if head != _HEADER_LINE:
            raise PreconditionError(
                f"{path.name}: its first line is not {HEADER!r}; refusing to append to a file in "
                "another format (move it away or convert it)"
            )
        start = max(len(_HEADER_LINE), size - _TAIL_BYTES)
        fh.seek(start)
        tail = fh.read()
        # keep only whole lines: cut everything after the last newline
        keep = tail.rfind(b"\n") + 1  # 0 when the tail holds no newline
        if start > len(_HEADER_LINE) and keep == 0:
            raise PreconditionError(f"{path.name}: the last {_TAIL_BYTES} bytes hold no line; file is damaged")
        last_ts = None
        while keep > 0:
            begin = tail.rfind(b"\n", 0, keep - 1) + 1
            if begin == 0 and start > len(_HEADER_LINE):
                break  # line started before the tail window: keep it, we only need its end
            last_ts = _parse_row(tail[begin:keep])
            if last_ts is not None:
                break
            keep = begin  # unparsable last line (torn write, NUL padding): drop it
        if last_ts is None and start > len(_HEADER_LINE):
            raise PreconditionError(f"{path.name}: no valid row in its last {_TAIL_BYTES} bytes; file is damaged")
        new_size = start + keep
        repaired = new_size != size
        if repaired:
            fh.truncate(new_size)
            fh.flush()
            os.fsync(fh.fileno())
    rows = _count_lines(path) - 1
    first_ts = None
    if rows > 0:
        with open(path, "rb") as fh:
            fh.readline()
            first_ts = _parse_row(fh.readline())
    return _FileState(exists=True, rows=rows, first_ts=first_ts, last_ts=last_ts, repaired=repaired)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _create_file(path: Path) -> None:
    """Create ``path`` holding only the header, atomically (temp file + fsync + rename)."""
    tmp = path.with_name(f".{path.name}.new")
    with open(tmp, "wb") as fh:
        fh.write(_HEADER_LINE)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _append(path: Path, data: bytes) -> None:
    """Append whole lines with one write, then fsync."""
    with open(path, "ab") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _prepend_tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.head")


def _start_prepend(path: Path) -> None:
    with open(_prepend_tmp_path(path), "wb") as fh:
        fh.write(_HEADER_LINE)


def _finish_prepend(path: Path) -> None:
    """Append the existing file's rows to the head file, fsync, and rename it over the file."""
    tmp = _prepend_tmp_path(path)
    with open(tmp, "ab") as out, open(path, "rb") as src:
        src.readline()  # header
        while chunk := src.read(1 << 20):
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _remove_stale(path: Path) -> None:
    for stale in (path.with_name(f".{path.name}.new"), _prepend_tmp_path(path)):
        try:
            stale.unlink()
        except FileNotFoundError:
            pass


def _summarize(path: Path) -> tuple[int, int | None, int | None]:
    """(rows, first open ms, last open ms) of a candle file (``.csv`` or ``.csv.gz``)."""
    import gzip

    opener = gzip.open if path.name.endswith(".gz") else open
    rows = 0
    first = last = None
    last_line = b""
    with opener(path, "rb") as fh:
        fh.readline()
        for line in fh:
            if not line.strip():
                continue
            if rows == 0:
                first = _first_field_int(line)
            rows += 1
            last_line = line
    if rows:
        last = _first_field_int(last_line)
    return rows, first, last


def _first_field_int(line: bytes) -> int | None:
    try:
        return int(line.split(b",", 1)[0])
    except ValueError:
        return None


def list_dataset(dataset_dir: Path | str) -> list[CandleFileInfo]:
    """Spot candle files directly inside ``dataset_dir`` (the files :func:`candles.discover` would
    consider), sorted by name, with their row count and first/last open times.

    Reads every file once (blocking: call it in a worker thread from async code). A missing
    folder gives an empty list; an unreadable file is listed with 0 bars.
    """
    folder = Path(dataset_dir)
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        parsed = parse_file_name(path)
        if parsed is None:
            continue
        try:
            rows, first, last = _summarize(path)
            size = path.stat().st_size
        except (OSError, EOFError):
            rows, first, last, size = 0, None, None, 0
        out.append(CandleFileInfo(parsed.path, parsed.exchange, parsed.symbol, parsed.timeframe, rows, first, last, size))
    return out


# --------------------------------------------------------------------------- the downloader

_busy_lock = threading.Lock()
_busy: set[Path] = set()


class _Claim:
    """Exclusive use of one file by one download (a second concurrent download is refused)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> "_Claim":
        with _busy_lock:
            if self.path in _busy:
                raise PreconditionError(f"{self.path.name} is being downloaded by another request; try again later")
            _busy.add(self.path)
        return self

    def __exit__(self, *exc: object) -> None:
        with _busy_lock:
            _busy.discard(self.path)


@dataclass(slots=True)
class _Run:
    """Per-symbol bookkeeping."""

    symbol: str
    tf_ms: int
    written: int = 0
    expected: int = 0
    last_ts: int | None = None
    requests: int = 0
    dropped: int = 0
    gaps: list[Gap] = field(default_factory=list)
    gap_count: int = 0
    missing: int = 0
    first_new: int | None = None  # first row appended after the existing ones

    def note_gap(self, prev: int | None, ts: int) -> None:
        if prev is None or ts - prev <= self.tf_ms:
            return
        missing = (ts - prev) // self.tf_ms - 1
        if missing <= 0:
            return  # an off-grid bar, not a missing one
        self.gap_count += 1
        self.missing += missing
        if len(self.gaps) < MAX_GAPS_LISTED:
            self.gaps.append(Gap(prev + self.tf_ms, ts, missing))


class CandleDownloader:
    """Downloads candles of one exchange into one dataset folder.

    Args:
        exchange: a ``ccxt.async_support`` exchange (public access is enough). Its
            ``enableRateLimit`` is switched on if it was off. The caller closes it.
        dataset_dir: folder the ``.csv`` files are written to (created if missing).
        clock: ``now_ns()`` source deciding which bars are complete (default: wall clock).
        page_limit: bars asked for per ``fetch_ohlcv`` call (the exchange may return fewer).
        max_retries: attempts after the first for a network error / rate-limit answer.
        retry_delay_s: first back-off wait; doubled on each further retry. After a rate-limit
            answer (429/418) the exchange's ``Retry-After`` is waited if longer (<= 300 s).
        sleep: ``await sleep(seconds)`` for back-off waits (tests pass a fake).

    Raises:
        ValidationError: ``page_limit`` < 1 (field ``page_limit``).
    """

    def __init__(
        self,
        exchange: Any,
        dataset_dir: Path | str,
        *,
        clock: Any = None,
        page_limit: int = 1000,
        max_retries: int = 5,
        retry_delay_s: float = 1.0,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if page_limit < 1:
            raise ValidationError("page_limit", f"must be >= 1, got {page_limit}")
        self.exchange = exchange
        self.dataset_dir = Path(dataset_dir)
        self.clock = clock if clock is not None else LiveClock()
        self.page_limit = page_limit
        self.max_retries = max_retries
        self.retry_delay_s = retry_delay_s
        self._sleep = sleep
        if getattr(exchange, "enableRateLimit", True) is False:
            exchange.enableRateLimit = True

    @property
    def exchange_id(self) -> str:
        return str(getattr(self.exchange, "id", "") or "exchange")

    def _now_ms(self) -> int:
        return int(self.clock.now_ns()) // NS_PER_MS

    # -- network ----------------------------------------------------------------------------
    def _retry_after_s(self) -> float:
        """The exchange's ``Retry-After`` (seconds) of its last answer, capped at
        :data:`MAX_RETRY_AFTER_S`; 0 when it sent none."""
        return min(retry_after_s(getattr(self.exchange, "last_response_headers", None), 0.0), MAX_RETRY_AFTER_S)

    async def _retrying(self, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        import ccxt.async_support as ccxt

        delay = self.retry_delay_s
        for attempt in range(self.max_retries + 1):
            try:
                return await call()
            except ccxt.NetworkError as exc:  # timeouts, 5xx, DDoS protection, rate limit (429/418)
                if attempt >= self.max_retries:
                    raise DownloadError(
                        f"{self.exchange_id}: {what} failed {attempt + 1} times: "
                        f"{type(exc).__name__}: {_short(exc)}"
                    ) from None
                wait = delay
                if isinstance(exc, (ccxt.RateLimitExceeded, ccxt.DDoSProtection)):
                    wait = max(wait, self._retry_after_s())
                await self._sleep(wait)
                delay *= 2
            except ccxt.BadSymbol as exc:
                raise ValidationError("symbols", f"{self.exchange_id}: {_short(exc)}") from None
            except ccxt.BaseError as exc:
                raise DownloadError(f"{self.exchange_id}: {what}: {type(exc).__name__}: {_short(exc)}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def validate(self, symbols: Sequence[str], timeframe: str) -> tuple[list[str], int]:
        """Check symbols and timeframe against the exchange; returns (ccxt symbols, timeframe ms).

        ``"btc-usdt"`` is accepted for ``"BTC/USDT"`` when the exchange has no symbol spelled so.

        Raises:
            ValidationError: no symbols, an unknown or non-spot symbol, a symbol that cannot be a
                candle file name, a repeated symbol (field ``symbols``); a timeframe the exchange does
                not offer or that has no fixed length (``1M``) (field ``timeframe``).
            DownloadError: ``load_markets`` failed.
        """
        if isinstance(symbols, str):
            symbols = [symbols]
        if not symbols:
            raise ValidationError("symbols", "at least one symbol is required")
        offered = getattr(self.exchange, "timeframes", None) or {}
        if offered and timeframe not in offered:
            raise ValidationError(
                "timeframe", f"{timeframe!r} is not offered by {self.exchange_id} (choose from {', '.join(offered)})"
            )
        tf_ms = timeframe_to_ns(timeframe) // NS_PER_MS
        markets = await self._retrying("load_markets", self.exchange.load_markets)
        out: list[str] = []
        for raw in symbols:
            symbol = str(raw).strip()
            if symbol not in markets:
                alt = symbol.upper().replace("-", "/")
                if alt in markets:
                    symbol = alt
                else:
                    raise ValidationError("symbols", f"unknown symbol {raw!r} on {self.exchange_id}")
            market = markets[symbol] or {}
            if market.get("spot") is False or ":" in symbol:
                raise ValidationError(
                    "symbols", f"{symbol} on {self.exchange_id} is not a spot market; only spot candles are downloaded"
                )
            parsed = parse_file_name(Path(file_name(self.exchange_id, symbol, timeframe)))
            if parsed is None or parsed.symbol != symbol:
                raise ValidationError(
                    "symbols", f"{symbol} cannot be stored as a candle file {{exchange}}_{{BASE-QUOTE}}_{{timeframe}}.csv"
                )
            if symbol in out:
                raise ValidationError("symbols", f"{symbol} is given twice")
            out.append(symbol)
        return out, tf_ms

    # -- public API -------------------------------------------------------------------------
    async def fetch(
        self,
        symbols: Sequence[str],
        timeframe: str,
        since_ms: int | str | _dt.datetime,
        until_ms: int | str | _dt.datetime | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> list[DownloadResult]:
        """Download complete bars with ``since_ms <= open < until_ms`` for each symbol, in order.

        Args:
            symbols: ccxt spot symbols (``"BTC/USDT"``).
            timeframe: one of ``exchange.timeframes`` with a fixed length (``"1m"``, ``"5m"``, ``"1h"``).
            since_ms: open time of the first bar wanted: int UTC ms, datetime (naive = UTC) or text
                (``"2024-01-01"``, ISO 8601). An existing file is continued after its last bar; if
                ``since_ms`` is before its first bar the missing head is fetched too.
            until_ms: exclusive bound on open times, same forms; None = up to the last complete bar.
                Bars still forming at the clock's now are never written.
            on_progress: called as ``on_progress(symbol, bars_written, expected_total_bars,
                last_ts_ms)`` once when a symbol starts, after every page and once when it ends;
                ``bars_written`` counts rows added by this run, ``expected_total_bars`` is the
                number of bar slots in the time range still to fetch (an upper bound: gaps make
                the final count lower), ``last_ts_ms`` is the open time of the last row of the file
                (None while it is empty). May return an awaitable, which is awaited.

        Returns:
            One :class:`DownloadResult` per symbol, in the order given. A symbol whose download
            failed after retries has ``error`` set; the others are still downloaded.

        Raises:
            ValidationError: bad symbols/timeframe (see :meth:`validate`); ``since_ms``/``until_ms``
                unparsable or before 1970, ``until_ms`` not after ``since_ms``, ``since_ms`` in the
                future (field ``since`` / ``until``). Raised before anything is fetched or written.
            PreconditionError: a file in the way: another download is writing it, it exists only
                compressed (``.csv.gz``), its header is of another format (these are checked for
                every symbol before the first download), or its last 64 KiB are unreadable.
            DownloadError: ``load_markets`` failed.
            asyncio.CancelledError: propagates; every page written so far stays in the file.
        """
        since = to_utc_ms(since_ms, "since")
        until = to_utc_ms(until_ms, "until") if until_ms is not None else None
        if until is not None and until <= since:
            raise ValidationError("until", f"{ms_to_iso(until)} is not after since {ms_to_iso(since)}")
        if since > self._now_ms():
            raise ValidationError("since", f"{ms_to_iso(since)} is in the future")
        symbols, tf_ms = await self.validate(symbols, timeframe)
        self.dataset_dir.mkdir(parents=True, exist_ok=True)
        for symbol in symbols:
            gz = self._path(symbol, timeframe).with_name(file_name(self.exchange_id, symbol, timeframe) + ".gz")
            if gz.exists():
                raise PreconditionError(
                    f"{gz.name} exists in {self.dataset_dir}: a compressed file is not extended; "
                    "decompress it (gunzip) to continue it, or move it away"
                )
            await _in_thread(_check_header, self._path(symbol, timeframe))
        results = []
        for symbol in symbols:
            results.append(await self._fetch_symbol(symbol, timeframe, tf_ms, since, until, on_progress))
        return results

    def _path(self, symbol: str, timeframe: str) -> Path:
        return (self.dataset_dir / file_name(self.exchange_id, symbol, timeframe)).resolve()

    async def _fetch_symbol(
        self, symbol: str, timeframe: str, tf_ms: int, since: int, until: int | None,
        on_progress: ProgressCallback | None,
    ) -> DownloadResult:
        path = self._path(symbol, timeframe)
        with _Claim(path):
            await _in_thread(_remove_stale, path)
            state = await _in_thread(_open_for_check, path)
            now = self._now_ms()
            # bars with open < end are complete (open + tf <= now) and inside the range
            end = now - tf_ms + 1
            if until is not None:
                end = min(end, until)
            run = _Run(symbol, tf_ms, last_ts=state.last_ts)
            head_range = None
            if state.first_ts is not None and since < state.first_ts:
                head_range = (since, min(state.first_ts, end))
            tail_start = since if state.last_ts is None else max(since, state.last_ts + tf_ms)
            run.expected = _slots(tail_start, end, tf_ms) + (_slots(*head_range, tf_ms) if head_range else 0)
            error = ""
            await _call(on_progress, symbol, 0, run.expected, run.last_ts)
            try:
                if not state.exists:
                    await _in_thread(_create_file, path)
                if head_range and head_range[0] < head_range[1]:
                    new_first = await self._fetch_head(path, timeframe, head_range, state.first_ts, run, on_progress)
                    if new_first is not None:
                        state.first_ts = new_first
                await self._fetch_tail(path, timeframe, tail_start, end, run, on_progress)
            except DownloadError as exc:
                error = str(exc)
            rows = state.rows + run.written
            await _call(on_progress, symbol, run.written, run.expected, run.last_ts)
            first = state.first_ts if state.first_ts is not None else run.first_new
            return DownloadResult(
                exchange=self.exchange_id, symbol=symbol, timeframe=timeframe, path=path,
                bars_written=run.written, bars_total=rows, first_ts_ms=first if rows else None,
                last_ts_ms=run.last_ts if rows else None, resumed_after_ms=state.last_ts,
                gaps=tuple(sorted(run.gaps, key=lambda g: g.start_ms)), gap_count=run.gap_count,
                missing_bars=run.missing, repaired=state.repaired, dropped_invalid=run.dropped,
                requests=run.requests, error=error,
            )

    async def _pages(
        self, symbol: str, timeframe: str, start: int, end: int, after: int | None, run: _Run
    ) -> AsyncIterator[list[tuple[int, bytes]]]:
        """Yield lists of ``(ts, line)`` for complete bars with ``start <= ts < end`` and
        ``ts > after``, strictly increasing across pages."""
        cursor = start
        last = after
        while cursor < end:
            page = await self._retrying(
                f"fetch_ohlcv {symbol} {timeframe} since {ms_to_iso(cursor)}",
                lambda c=cursor: self.exchange.fetch_ohlcv(symbol, timeframe, since=c, limit=self.page_limit),
            )
            run.requests += 1
            if not page:
                return  # nothing at or after cursor: the exchange has no more bars
            rows: list[tuple[int, bytes]] = []
            max_ts = None
            for bar in sorted(page, key=lambda b: int(b[0])):
                ts = int(bar[0])
                max_ts = ts
                if ts < cursor or ts >= end or (last is not None and ts <= last):
                    continue
                line = _line(ts, bar)
                if line is None:
                    run.dropped += 1
                    continue
                rows.append((ts, line))
                last = ts
            yield rows
            if max_ts is None or max_ts < cursor:
                return  # the exchange ignored `since`: stop rather than loop
            cursor = max_ts + run.tf_ms

    async def _fetch_tail(
        self, path: Path, timeframe: str, start: int, end: int, run: _Run, on_progress: ProgressCallback | None
    ) -> None:
        async for rows in self._pages(run.symbol, timeframe, start, end, run.last_ts, run):
            if rows:
                prev = run.last_ts
                for ts, _ in rows:
                    run.note_gap(prev, ts)
                    prev = ts
                await _in_thread(_append, path, b"".join(line for _, line in rows))
                if run.first_new is None:
                    run.first_new = rows[0][0]
                run.written += len(rows)
                run.last_ts = rows[-1][0]
            await _call(on_progress, run.symbol, run.written, run.expected, run.last_ts)

    async def _fetch_head(
        self, path: Path, timeframe: str, head: tuple[int, int], first_existing: int, run: _Run,
        on_progress: ProgressCallback | None,
    ) -> int | None:
        """Bars before the file's first row: written to a side file, which then takes the existing
        rows and replaces the file in one rename (an interruption leaves the file as it was).

        Returns the open time of the new first row, or None if nothing was prepended.
        """
        saved = (list(run.gaps), run.gap_count, run.missing)
        await _in_thread(_start_prepend, path)
        prev = first = None
        written = 0
        try:
            async for rows in self._pages(run.symbol, timeframe, head[0], head[1], None, run):
                if rows:
                    for ts, _ in rows:
                        run.note_gap(prev, ts)
                        prev = ts
                    await _in_thread(_append, _prepend_tmp_path(path), b"".join(line for _, line in rows))
                    if first is None:
                        first = rows[0][0]
                    written += len(rows)
                await _call(on_progress, run.symbol, run.written + written, run.expected, run.last_ts)
            if written:
                run.note_gap(prev, first_existing)
                await _in_thread(_finish_prepend, path)
        except BaseException:
            run.gaps, run.gap_count, run.missing = saved
            await _in_thread(_remove_stale, path)
            raise
        if not written:
            await _in_thread(_remove_stale, path)
            return None
        run.written += written
        return first


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _slots(start: int, end: int, tf_ms: int) -> int:
    """Bar slots with ``start <= open < end`` on the timeframe grid starting at ``start``."""
    return max(0, -(-(end - start) // tf_ms))


def _line(ts: int, bar: Sequence[Any]) -> bytes | None:
    """The CSV line of a ccxt OHLCV bar ``[ts, open, high, low, close, volume]``, or None when
    :func:`candles.load` would refuse it (missing/non-positive price, negative volume, high below
    max(open, close), low above min(open, close))."""
    if len(bar) < 5:
        return None
    try:
        texts = [format_number(v) for v in bar[1:5]]
        volume = format_number(bar[5]) if len(bar) > 5 else ""
    except (ValueError, ArithmeticError, TypeError):
        return None
    if "" in texts:
        return None
    o, h, low, c = (float(t) for t in texts)
    if min(o, h, low, c) <= 0 or h < max(o, c) or low > min(o, c):
        return None
    if volume and float(volume) < 0:
        return None
    return f"{ts},{texts[0]},{texts[1]},{texts[2]},{texts[3]},{volume}\n".encode("ascii")


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run blocking file I/O in a worker thread. If the caller is cancelled meanwhile, wait for
    the thread to finish before re-raising, so a cancelled download never still writes to a file
    after it has released its claim on it."""
    future = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await future
        raise


async def _call(callback: ProgressCallback | None, *args: Any) -> None:
    if callback is None:
        return
    result = callback(*args)
    if inspect.isawaitable(result):
        await result


#: ccxt constructor config of a download's exchange: public access (no credential keys), the
#: rate limiter on, a per-request timeout (ms).
PUBLIC_EXCHANGE_CONFIG: dict[str, Any] = {"enableRateLimit": True, "timeout": 30_000}


def check_exchange_id(exchange_id: str) -> str:
    """The normalised (stripped, lower-case) ccxt exchange id.

    Raises:
        ValidationError: empty, or ccxt has no exchange of that id (field ``exchange``).
    """
    import ccxt.async_support as ccxt

    exchange_id = (exchange_id or "").strip().lower()
    if not exchange_id:
        raise ValidationError("exchange", "is required (a ccxt exchange id such as binance)")
    if exchange_id not in ccxt.exchanges:
        raise ValidationError("exchange", f"unknown exchange {exchange_id!r} (not a ccxt exchange id)")
    return exchange_id


def public_exchange(exchange_id: str, config: dict[str, Any] | None = None) -> Any:
    """A ``ccxt.async_support`` exchange for downloads: the default exchange factory of the
    FetchCandles RPC, with the same signature as the appliance's ``exchange_factory``
    (``factory(exchange_id, config)``).

    Args:
        exchange_id: ccxt id, e.g. ``"binance"``.
        config: ccxt constructor config; default :data:`PUBLIC_EXCHANGE_CONFIG`. Credential keys
            (``apiKey``, ``secret``, ``password``, ``uid``, ``privateKey``) are removed: a
            download uses public endpoints only.

    Raises:
        ValidationError: unknown exchange id (field ``exchange``).
    """
    import ccxt.async_support as ccxt

    exchange_id = check_exchange_id(exchange_id)
    cfg = {k: v for k, v in (config or PUBLIC_EXCHANGE_CONFIG).items() if k not in _CREDENTIAL_KEYS}
    cfg["enableRateLimit"] = True
    return getattr(ccxt, exchange_id)(cfg)


_CREDENTIAL_KEYS = frozenset({"apiKey", "secret", "password", "uid", "privateKey", "walletAddress", "token"})
