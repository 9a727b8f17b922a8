"""LiveBarFeed against a fake ccxt exchange on a fake clock: closed bars only, each once, in time
order across symbols, gaps kept, a rolling history window, backoff on errors."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import ccxt.async_support as ccxt
import pytest

from appliance.marketdata.bar import BarSlice
from appliance.marketdata.live import LiveBarFeed, LiveMarketData, ccxt_decimal, default_poll_s
from appliance.model.errors import NotFoundError, PreconditionError, ValidationError
from appliance.model.instrument import InstrumentId

MIN_NS = 60 * 1_000_000_000
MIN_MS = 60_000
T0 = 1_700_000_040_000  # a minute boundary (ms)
BTC = InstrumentId("paper", "BTC/USDT")
ETH = InstrumentId("paper", "ETH/USDT")


class FakeClock:
    def __init__(self, now_ms: int) -> None:
        self.now = now_ms * 1_000_000

    def now_ns(self) -> int:
        return self.now

    def set_ms(self, ms: int) -> None:
        self.now = ms * 1_000_000

    def set_timer(self, at_ns, callback):  # pragma: no cover - not used
        raise NotImplementedError

    def cancel_timer(self, timer_id):  # pragma: no cover
        raise NotImplementedError


class FakeExchange:
    """fetch_ohlcv over per-symbol rows; like an exchange, it has no bar that has not opened yet
    (the last one it returns may be forming). ``ignore_since`` mimics exchanges that answer with
    the latest bars whatever ``since`` says."""

    def __init__(self, clock: FakeClock, max_limit: int = 1000) -> None:
        self.clock = clock
        self.rows: dict[str, list[list]] = {}
        self.calls: list[tuple[str, int | None, int | None]] = []
        self.failures: dict[str, list[BaseException]] = {}
        self.max_limit = max_limit
        self.ignore_since = False
        self.enableRateLimit = False
        self.closed = False
        self.last_response_headers: dict = {}

    def add(self, symbol: str, open_ms: int, o, h, low, c, v=1.0) -> None:
        self.rows.setdefault(symbol, []).append([open_ms, o, h, low, c, v])
        self.rows[symbol].sort(key=lambda r: r[0])

    def series(self, symbol: str, start_ms: int, n: int, price: float = 100.0, step_ms: int = MIN_MS) -> None:
        for k in range(n):
            p = price + k
            self.add(symbol, start_ms + k * step_ms, p, p + 0.5, p - 0.5, p + 0.25, 2.0)

    def fail(self, symbol: str, *errors: BaseException) -> None:
        self.failures.setdefault(symbol, []).extend(errors)

    async def fetch_ohlcv(self, symbol, timeframe="1m", since=None, limit=None):
        self.calls.append((symbol, since, limit))
        queue = self.failures.get(symbol)
        if queue:
            raise queue.pop(0)
        now_ms = self.clock.now // 1_000_000
        rows = [list(r) for r in self.rows.get(symbol, []) if r[0] <= now_ms]
        limit = min(limit or 500, self.max_limit)
        if since is not None and not self.ignore_since:
            rows = [r for r in rows if r[0] >= since]
            return rows[:limit]
        return rows[-limit:]

    async def close(self) -> None:
        self.closed = True


class Sink:
    def __init__(self) -> None:
        self.slices: list[BarSlice] = []

    async def __call__(self, slice_: BarSlice) -> None:
        self.slices.append(slice_)

    def keys(self):
        return [(s.close_ns // 1_000_000, tuple(b.instrument.symbol for b in s.bars)) for s in self.slices]


def make(clock, exchange, instruments=(BTC,), **kwargs):
    sink = Sink()
    kwargs.setdefault("poll_s", 5.0)
    feed = LiveBarFeed(lambda: exchange, clock, "1m", instruments=instruments, deliver=sink, **kwargs)
    return feed, sink


def run(coro):
    return asyncio.run(coro)


# -- numbers, defaults ----------------------------------------------------------------------------------
def test_ccxt_numbers_become_exact_decimals():
    assert ccxt_decimal(0.1) == Decimal("0.1")
    assert str(ccxt_decimal(3.01e-05)) == "0.0000301"
    assert ccxt_decimal(0.09946999000000001) == Decimal("0.09946999000000001")
    assert ccxt_decimal(61000) == Decimal(61000)
    assert ccxt_decimal("0.00012") == Decimal("0.00012")
    assert ccxt_decimal(None) is None and ccxt_decimal(float("nan")) is None and ccxt_decimal(True) is None


def test_default_poll_interval_is_a_tenth_of_the_timeframe_within_2_and_60_s():
    assert default_poll_s(MIN_NS) == 6.0
    assert default_poll_s(5 * MIN_NS) == 30.0
    assert default_poll_s(60 * MIN_NS) == 60.0
    assert default_poll_s(1_000_000_000) == 2.0


def test_bad_arguments_are_refused():
    clock = FakeClock(T0)
    with pytest.raises(ValidationError):
        LiveBarFeed(lambda: None, clock, "5x")
    with pytest.raises(ValidationError):
        LiveBarFeed(lambda: None, clock, "1m", history_bars=0)
    with pytest.raises(ValidationError):
        LiveBarFeed(lambda: None, clock, "1m", poll_s=0)


# -- start: history -------------------------------------------------------------------------------------
def test_history_holds_the_last_closed_bars_with_exact_decimals():
    clock = FakeClock(T0 + 10 * MIN_MS + 30_000)  # bar opening at T0+10m is still forming
    ex = FakeExchange(clock)
    ex.series("BTC/USDT", T0, 11)
    ex.add("BTC/USDT", T0 - MIN_MS, 0.1, 0.3, 0.0001, 3.01e-05, 12.5)
    feed, sink = make(clock, ex, history_bars=5)
    assert run(feed.load_history()) == [BTC]
    assert ex.enableRateLimit is True  # ccxt's limiter on
    bars = feed.history(BTC, 100)
    assert [b.open_ns // 1_000_000 for b in bars] == [T0 + k * MIN_MS for k in range(5, 10)]
    assert all(b.close_ns == b.open_ns + MIN_NS for b in bars)
    assert bars[-1].close == Decimal("109.25") and bars[-1].high == Decimal("109.5") and bars[-1].volume == Decimal(2)
    assert feed.history(BTC, 2) == bars[-2:] and feed.history(BTC, 0) == []
    assert feed.ready(BTC) and not sink.slices  # history is not emitted

    feed2, _ = make(clock, ex, history_bars=50)
    run(feed2.load_history())
    first = feed2.history(BTC, 100)[0]
    assert (first.open, first.high, first.low, first.close, first.volume) == (
        Decimal("0.1"), Decimal("0.3"), Decimal("0.0001"), Decimal("0.0000301"), Decimal("12.5"))


def test_history_pages_forward_when_the_exchange_limits_a_page():
    clock = FakeClock(T0 + 50 * MIN_MS + 1)
    ex = FakeExchange(clock, max_limit=7)
    ex.series("BTC/USDT", T0, 51)
    feed, _ = make(clock, ex, history_bars=30, page_limit=7)
    run(feed.load_history())
    bars = feed.history(BTC, 100)
    assert len(bars) == 30 and bars[-1].open_ns // 1_000_000 == T0 + 49 * MIN_MS
    opens = [b.open_ns for b in bars]
    assert opens == sorted(set(opens))
    assert len(ex.calls) >= 5 and all(limit <= 7 for _, _, limit in ex.calls)


def test_an_exchange_that_ignores_since_gives_no_duplicates():
    clock = FakeClock(T0 + 20 * MIN_MS + 1)
    ex = FakeExchange(clock)
    ex.ignore_since = True
    ex.series("BTC/USDT", T0, 21)
    feed, sink = make(clock, ex, history_bars=10)
    run(feed.load_history())
    for minute in (21, 22, 23):
        ex.series("BTC/USDT", T0 + minute * MIN_MS, 1, price=200.0 + minute)
        clock.set_ms(T0 + (minute + 1) * MIN_MS + 1)
        run(feed.poll_once())
        run(feed.poll_once())  # asked again: nothing new
    assert [s.close_ns // 1_000_000 for s in sink.slices] == [T0 + k * MIN_MS for k in (21, 22, 23, 24)]


# -- polling ------------------------------------------------------------------------------------------------
def test_a_bar_is_emitted_once_it_has_closed_and_never_twice():
    clock = FakeClock(T0 + 5 * MIN_MS + 10_000)
    ex = FakeExchange(clock)
    ex.series("BTC/USDT", T0, 6)  # bars T0 .. T0+5m; the last is forming
    feed, sink = make(clock, ex)
    run(feed.load_history())
    assert feed.history(BTC, 100)[-1].open_ns // 1_000_000 == T0 + 4 * MIN_MS
    assert run(feed.poll_once()) == 0  # the forming bar is not taken
    clock.set_ms(T0 + 6 * MIN_MS - 1)
    assert run(feed.poll_once()) == 0  # 1 ms before its close: still forming
    clock.set_ms(T0 + 6 * MIN_MS)  # open + timeframe <= now: closed
    assert run(feed.poll_once()) == 1
    assert sink.keys() == [(T0 + 6 * MIN_MS, ("BTC/USDT",))]
    bar = sink.slices[0].bars[0]
    assert bar.open_ns // 1_000_000 == T0 + 5 * MIN_MS and bar.close == Decimal("105.25")
    assert feed.history(BTC, 1) == [bar]
    for _ in range(3):  # the exchange keeps returning it: never again
        assert run(feed.poll_once()) == 0
    assert len(sink.slices) == 1


def test_slices_group_bars_by_close_time_in_time_order_across_symbols():
    clock = FakeClock(T0 + 2 * MIN_MS + 1)
    ex = FakeExchange(clock)
    ex.series("BTC/USDT", T0, 2)
    ex.series("ETH/USDT", T0, 2, price=10.0)
    feed, sink = make(clock, ex, instruments=(ETH, BTC))
    run(feed.load_history())
    # three more closed bars each, appearing at once (e.g. after a slow poll)
    ex.series("BTC/USDT", T0 + 2 * MIN_MS, 3)
    ex.series("ETH/USDT", T0 + 2 * MIN_MS, 3, price=20.0)
    clock.set_ms(T0 + 5 * MIN_MS + 1)
    assert run(feed.poll_once()) == 6
    assert sink.keys() == [(T0 + k * MIN_MS, ("BTC/USDT", "ETH/USDT")) for k in (3, 4, 5)]


def test_gaps_are_not_invented():
    clock = FakeClock(T0 + 2 * MIN_MS + 1)
    ex = FakeExchange(clock)
    ex.series("BTC/USDT", T0, 2)
    ex.series("ETH/USDT", T0, 2, price=10.0)
    feed, sink = make(clock, ex, instruments=(BTC, ETH))
    run(feed.load_history())
    ex.series("BTC/USDT", T0 + 2 * MIN_MS, 3)
    ex.add("ETH/USDT", T0 + 4 * MIN_MS, 11.0, 11.0, 11.0, 11.0)  # no ETH bars at +2m, +3m (no trades)
    clock.set_ms(T0 + 5 * MIN_MS + 1)
    run(feed.poll_once())
    assert sink.keys() == [(T0 + 3 * MIN_MS, ("BTC/USDT",)), (T0 + 4 * MIN_MS, ("BTC/USDT",)),
                           (T0 + 5 * MIN_MS, ("BTC/USDT", "ETH/USDT"))]
    eth = feed.history(ETH, 10)
    assert [b.open_ns // 1_000_000 for b in eth] == [T0, T0 + MIN_MS, T0 + 4 * MIN_MS]


def test_malformed_candles_are_skipped_once():
    clock = FakeClock(T0 + 2 * MIN_MS + 1)
    ex = FakeExchange(clock)
    ex.series("BTC/USDT", T0, 2)
    feed, sink = make(clock, ex)
    run(feed.load_history())
    ex.add("BTC/USDT", T0 + 2 * MIN_MS, None, 1.0, 1.0, 1.0)
    ex.add("BTC/USDT", T0 + 3 * MIN_MS, 5.0, 6.0, 4.0, 5.5, None)  # no volume figure: 0
    clock.set_ms(T0 + 4 * MIN_MS + 1)
    assert run(feed.poll_once()) == 1
    assert run(feed.poll_once()) == 0
    bar = sink.slices[0].bars[0]
    assert bar.open_ns // 1_000_000 == T0 + 3 * MIN_MS and bar.volume == 0


def test_the_history_window_rolls():
    clock = FakeClock(T0 + 3 * MIN_MS + 1)
    ex = FakeExchange(clock)
    ex.series("BTC/USDT", T0, 3)
    feed, sink = make(clock, ex, history_bars=4)
    run(feed.load_history())
    assert len(feed.history(BTC, 10)) == 3
    for k in range(3, 8):
        ex.series("BTC/USDT", T0 + k * MIN_MS, 1, price=100.0 + k)
        clock.set_ms(T0 + (k + 1) * MIN_MS + 1)
        run(feed.poll_once())
    bars = feed.history(BTC, 10)
    assert [b.open_ns // 1_000_000 for b in bars] == [T0 + k * MIN_MS for k in range(4, 8)]
    assert [s.bars[0] for s in sink.slices][-4:] == bars
    # candles(): the window's semantics of ReplayFeed.candles
    assert feed.candles(BTC, limit=2) == bars[-2:]
    assert feed.candles(BTC, start_ns=bars[1].open_ns, limit=2) == bars[1:3]
    assert feed.candles(BTC, end_ns=bars[2].close_ns) == bars[:3]
    with pytest.raises(NotFoundError):
        feed.history(ETH, 1)


def test_polls_after_an_outage_catch_up_in_order_within_the_history_window():
    clock = FakeClock(T0 + 2 * MIN_MS + 1)
    ex = FakeExchange(clock)
    ex.series("BTC/USDT", T0, 2)
    feed, sink = make(clock, ex, history_bars=5)
    run(feed.load_history())
    ex.series("BTC/USDT", T0 + 2 * MIN_MS, 20)
    clock.set_ms(T0 + 22 * MIN_MS + 1)
    run(feed.poll_once())
    closes = [s.close_ns // 1_000_000 for s in sink.slices]
    # at most history_bars back: the oldest missed bars are a gap
    assert closes == [T0 + k * MIN_MS for k in range(18, 23)]


# -- errors ----------------------------------------------------------------------------------------------
def test_errors_back_off_per_instrument_and_the_feed_goes_on():
    clock = FakeClock(T0 + 2 * MIN_MS + 1)
    ex = FakeExchange(clock)
    ex.series("BTC/USDT", T0, 2)
    feed, sink = make(clock, ex, poll_s=5.0, backoff_max_s=30.0)
    run(feed.load_history())
    ex.fail("BTC/USDT", *(ccxt.NetworkError("connection reset") for _ in range(5)))
    waits = []
    for _ in range(5):
        start = clock.now
        run(feed.poll_once())
        series = feed._series[BTC]
        waits.append((series.next_try_ns - start) / 1e9)
        clock.now = series.next_try_ns  # skip to the retry time
    assert waits == [5.0, 10.0, 20.0, 30.0, 30.0]
    status = feed.status()[0]
    assert status.failures == 5 and "NetworkError" in status.last_error
    # within the backoff the instrument is not asked again
    calls = len(ex.calls)
    clock.now -= 1
    run(feed.poll_once())
    assert len(ex.calls) == calls
    # it recovers: the bars missed meanwhile come in order
    ex.series("BTC/USDT", T0 + 2 * MIN_MS, 3)
    clock.set_ms(T0 + 10 * MIN_MS)
    run(feed.poll_once())
    assert [s.close_ns // 1_000_000 for s in sink.slices] == [T0 + 3 * MIN_MS, T0 + 4 * MIN_MS, T0 + 5 * MIN_MS]
    assert feed.status()[0].failures == 0


def test_retry_after_of_a_rate_limited_answer_is_honoured():
    clock = FakeClock(T0 + 2 * MIN_MS + 1)
    ex = FakeExchange(clock)
    ex.series("BTC/USDT", T0, 2)
    feed, _ = make(clock, ex, poll_s=5.0)
    run(feed.load_history())
    ex.fail("BTC/USDT", ccxt.DDoSProtection("429"))
    ex.last_response_headers = {"Retry-After": "42"}
    run(feed.poll_once())
    assert (feed._series[BTC].next_try_ns - clock.now) / 1e9 == 42.0


def test_a_failing_instrument_holds_the_others_back_only_for_a_while():
    clock = FakeClock(T0 + 2 * MIN_MS + 1)
    ex = FakeExchange(clock)
    ex.series("BTC/USDT", T0, 2)
    ex.series("ETH/USDT", T0, 2, price=10.0)
    feed, sink = make(clock, ex, instruments=(BTC, ETH), poll_s=5.0, max_hold_s=15.0)
    run(feed.load_history())
    ex.series("BTC/USDT", T0 + 2 * MIN_MS, 1)
    ex.series("ETH/USDT", T0 + 2 * MIN_MS, 1, price=12.0)
    ex.fail("ETH/USDT", ccxt.RequestTimeout("timeout"))
    clock.set_ms(T0 + 3 * MIN_MS + 1)
    assert run(feed.poll_once()) == 0  # BTC's bar waits for ETH's
    clock.now = feed._series[ETH].next_try_ns
    assert run(feed.poll_once()) == 2  # ETH is back: one slice, both bars
    assert sink.keys() == [(T0 + 3 * MIN_MS, ("BTC/USDT", "ETH/USDT"))]

    # ETH down for longer than max_hold_s: BTC goes on alone; ETH's bars follow when it is back
    ex.series("BTC/USDT", T0 + 3 * MIN_MS, 2)
    ex.series("ETH/USDT", T0 + 3 * MIN_MS, 2, price=13.0)
    ex.fail("ETH/USDT", *(ccxt.ExchangeNotAvailable("503") for _ in range(3)))
    clock.set_ms(T0 + 5 * MIN_MS + 1)
    assert run(feed.poll_once()) == 0
    clock.set_ms(T0 + 5 * MIN_MS + 20_001)  # beyond the hold; ETH still failing
    clock.now = max(clock.now, feed._series[ETH].next_try_ns)
    run(feed.poll_once())
    assert sink.keys()[1:] == [(T0 + 4 * MIN_MS, ("BTC/USDT",)), (T0 + 5 * MIN_MS, ("BTC/USDT",))]
    clock.set_ms(T0 + 6 * MIN_MS)
    clock.now = max(clock.now, feed._series[ETH].next_try_ns)
    ex.failures["ETH/USDT"] = []
    run(feed.poll_once())
    eth = [b for s in sink.slices for b in s.bars if b.instrument == ETH]
    assert [b.close_ns // 1_000_000 for b in eth] == [T0 + 3 * MIN_MS, T0 + 4 * MIN_MS, T0 + 5 * MIN_MS]
    assert sink.keys()[-2:] == [(T0 + 4 * MIN_MS, ("ETH/USDT",)), (T0 + 5 * MIN_MS, ("ETH/USDT",))]  # late, in order
    all_bars = [(b.instrument, b.open_ns) for s in sink.slices for b in s.bars]
    assert len(all_bars) == len(set(all_bars))  # never a bar twice


def test_a_history_that_fails_at_start_is_loaded_by_a_later_round():
    clock = FakeClock(T0 + 3 * MIN_MS + 1)
    ex = FakeExchange(clock)
    ex.series("BTC/USDT", T0, 3)
    ready = []
    feed, sink = make(clock, ex, on_ready=ready.extend)
    ex.fail("BTC/USDT", ccxt.NetworkError("down"))
    assert run(feed.load_history()) == []
    assert not feed.ready(BTC) and ready == []
    clock.now = feed._series[BTC].next_try_ns
    run(feed.poll_once())
    assert feed.ready(BTC) and ready == [BTC] and len(feed.history(BTC, 10)) == 3 and not sink.slices


def test_instruments_added_later_are_loaded_then_polled():
    clock = FakeClock(T0 + 2 * MIN_MS + 1)
    ex = FakeExchange(clock)
    ex.series("BTC/USDT", T0, 2)
    ex.series("ETH/USDT", T0, 2, price=10.0)
    feed, sink = make(clock, ex)
    run(feed.load_history())
    assert feed.add([ETH, BTC]) == [ETH] and not feed.ready(ETH)
    run(feed.poll_once())
    assert feed.ready(ETH) and len(feed.history(ETH, 5)) == 2


# -- scheduling ---------------------------------------------------------------------------------------------
def test_rounds_wait_for_the_next_close_and_never_come_faster_than_poll_s():
    clock = FakeClock(T0 + 2 * MIN_MS + 1_000)
    ex = FakeExchange(clock)
    ex.series("BTC/USDT", T0, 2)
    feed, sink = make(clock, ex, poll_s=5.0, settle_s=1.0)
    run(feed.load_history())  # last closed bar opens at T0+1m; the next closes at T0+3m
    run(feed.poll_once())
    assert feed.next_delay_s() == pytest.approx(60.0)  # T0+3m + 1 s settle - now
    clock.set_ms(T0 + 3 * MIN_MS + 1_000)
    run(feed.poll_once())  # the bar is not there yet (exchange lag): ask again after poll_s
    assert not sink.slices
    assert feed.next_delay_s() == pytest.approx(5.0)
    ex.series("BTC/USDT", T0 + 2 * MIN_MS, 1)
    clock.set_ms(T0 + 3 * MIN_MS + 6_000)
    run(feed.poll_once())
    assert len(sink.slices) == 1
    assert feed.next_delay_s() == pytest.approx(55.0)  # next close T0+4m, + 1 s


def test_the_polling_task_delivers_with_its_own_pace():
    async def scenario():
        clock = FakeClock(T0 + 2 * MIN_MS + 1)
        ex = FakeExchange(clock)
        ex.series("BTC/USDT", T0, 8)
        sleeps = []

        async def sleep(seconds):
            sleeps.append(seconds)
            clock.now += int(seconds * 1e9) + 1
            await asyncio.sleep(0)

        feed, sink = make(clock, ex, poll_s=5.0, sleep=sleep)
        await feed.load_history()
        feed.start_polling()
        while len(sink.slices) < 5:
            await asyncio.sleep(0)
        await feed.stop()
        assert ex.closed and not feed.is_running
        assert [s.close_ns // 1_000_000 for s in sink.slices] == [T0 + k * MIN_MS for k in range(3, 8)]
        assert all(s >= 5.0 for s in sleeps)

    run(scenario())


def test_a_failing_deliver_does_not_stop_the_feed():
    clock = FakeClock(T0 + 2 * MIN_MS + 1)
    ex = FakeExchange(clock)
    ex.series("BTC/USDT", T0, 4)
    got = []

    async def deliver(slice_):
        got.append(slice_)
        if len(got) == 1:
            raise PreconditionError("refused")

    feed = LiveBarFeed(lambda: ex, clock, "1m", instruments=[BTC], deliver=deliver, poll_s=5.0)
    run(feed.load_history())
    clock.set_ms(T0 + 4 * MIN_MS + 1)
    assert run(feed.poll_once()) == 2 and len(got) == 2


def test_polling_needs_a_deliver_callback():
    feed = LiveBarFeed(lambda: FakeExchange(FakeClock(T0)), FakeClock(T0), "1m")
    with pytest.raises(PreconditionError):
        run(feed.poll_once())


def test_market_data_looks_feeds_up_by_instrument():
    clock = FakeClock(T0 + 3 * MIN_MS + 1)
    ex = FakeExchange(clock)
    ex.series("BTC/USDT", T0, 3)
    feed, _ = make(clock, ex)
    run(feed.load_history())
    market = LiveMarketData("1m")
    market.add_feed(feed)
    assert market.feed_of(BTC) is feed and market.feed_of(ETH) is None
    assert len(market.history(BTC, clock.now, 10)) == 3
    assert len(market.history(BTC, T0 * 1_000_000 + 2 * MIN_NS, 10)) == 2  # closed by then
    assert market.history(ETH, clock.now, 10) == []
    with pytest.raises(PreconditionError, match="ETH/USDT@paper"):
        market.candles(ETH)
    assert market.candles(BTC, limit=1) == feed.history(BTC, 1)


# -- configuration ---------------------------------------------------------------------------------------
def test_paper_market_data_live_is_live_mode_and_needs_symbols(tmp_path):
    from appliance.config import ConfigError, load_config

    def config(text):
        path = tmp_path / "lyra.toml"
        path.write_text(text)
        return load_config(path, env={})

    replay = config("")
    assert replay.paper.market_data == "replay" and not replay.live and not replay.paper_live
    live = config('[paper]\nmarket_data = "live"\nlive_exchange = "kraken"\nsymbols = ["BTC/USD"]\ntimeframe = "1h"\n'
                  'live_poll_s = 5\nlive_history_bars = 500\n')
    assert live.live and live.paper_live and live.paper.live_exchange == "kraken"
    assert (live.paper.live_poll_s, live.paper.live_history_bars, live.paper.timeframe) == (5.0, 500, "1h")
    with pytest.raises(ConfigError, match="lyra.toml: paper: .*symbols"):
        config('[paper]\nmarket_data = "live"\n')
    with pytest.raises(ConfigError, match="paper: .*ccxt symbols"):
        config('[paper]\nmarket_data = "live"\nsymbols = ["BTCUSDT"]\n')
    with pytest.raises(ConfigError, match="paper.market_data"):
        config('[paper]\nmarket_data = "stream"\n')
    with pytest.raises(ConfigError, match="paper.timeframe"):
        config('[paper]\ntimeframe = "5 minutes"\n')
