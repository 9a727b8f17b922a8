"""FetchCandles end to end: the real appliance and gRPC server, the SDK and lyractl, with
``app.exchange_factory`` pointing real ccxt (public access, no API key) at the exchange
emulator, which serves real candles from the shared data pack as Binance klines."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from appliance.marketdata import candles
from lyra_client.errors import FailedPrecondition, InvalidArgument, PermissionDenied

PASSWORDS = {role: f"{role}-password-123" for role in ("admin", "trader", "viewer")}  # as conftest.py
KLINES = "/api/v3/klines"
FIRST = "2018-01-01"
FILES = {"XRP/ETH": "binance_XRP-ETH_5m.csv", "ETH/BTC": "binance_ETH-BTC_5m.csv"}


def _emulator_package():
    try:
        import emulator  # tests/ is on sys.path (rootdir conftest)
    except ImportError:  # pragma: no cover - depends on how pytest was started
        from tests import emulator
    return emulator


@pytest.fixture
def exchange(shared_data):
    """The emulator (Binance spot REST dialect on 127.0.0.1) serving real 5m candles: XRP/ETH
    (Binance, 706 bars with six one-bar holes) and ETH/BTC (the pack's Bittrex series, 5760 bars).

    Yields ``(make, emulator, texts)``: ``make(exchange_id, config)`` is the
    ``app.exchange_factory`` (a fresh ccxt client per call, kept in ``make.made``); ``texts``
    maps symbol -> the source CSV text.
    """
    emu_pkg = _emulator_package()
    sources = {"XRP/ETH": shared_data / "candles" / "binance_XRP-ETH_5m.csv",
               "ETH/BTC": shared_data / "candles" / "bittrex_ETH-BTC_5m.csv"}
    with emu_pkg.EmulatorThread(dialects=("binance",)) as emu:
        emu.engine("binance").add_instrument(emu_pkg.Instrument(
            "XRP/ETH", "XRP", "ETH", "XRPETH", tick_size="0.00000001", step_size="1", min_qty="1",
            max_qty="9000000", min_notional="0.01", mark="0.0014"))
        for symbol, path in sources.items():
            emu.load_candles("binance", symbol, path, timeframe="5m")

        def make(exchange_id: str, config: dict):
            assert exchange_id == "binance" and config["enableRateLimit"] is True
            assert not {"apiKey", "secret"} & set(config)  # lyrad asks for a public client
            ex = emu_pkg.binance_client(emu, config.get("apiKey"), config.get("secret"))
            make.made.append(ex)
            return ex

        make.made = []
        yield make, emu, {s: p.read_text() for s, p in sources.items()}


@pytest.fixture
def running(appliance, exchange):
    appliance.app.exchange_factory = exchange[0]
    return appliance


def _datasets(running) -> Path:
    return (running.config.storage.data_dir / "datasets").resolve()


def _ms(text: str, row: int) -> int:
    return int(text.splitlines()[row].split(",")[0])


def test_fetch_streams_progress_writes_the_files_and_resumes(running, exchange):
    make, emu, texts = exchange
    client = running.client("trader", PASSWORDS["trader"])
    messages = list(client.fetch_candles("binance", "XRP/ETH,ETH/BTC".split(","), "5m", FIRST))
    final = messages[-1]
    assert final.done and not any(m.done for m in messages[:-1])
    symbols = [m.symbol for m in messages[:-1]]
    assert symbols == sorted(symbols, key=["XRP/ETH", "ETH/BTC"].index)  # one symbol after the other
    last = {m.symbol: m for m in messages[:-1]}
    assert last["XRP/ETH"].bars_written == 706 and last["ETH/BTC"].bars_written == 5760

    assert [r.symbol for r in final.results] == ["XRP/ETH", "ETH/BTC"]
    for result in final.results:
        path = _datasets(running) / FILES[result.symbol]
        text = texts[result.symbol]
        assert Path(result.file.path) == path and not result.error
        assert path.read_text() == text  # same bars, same number text as the shared pack
        assert result.bars_written == result.file.bars == len(text.splitlines()) - 1
        assert result.file.first_time.ToMilliseconds() == _ms(text, 1)
        assert result.file.last_time.ToMilliseconds() == _ms(text, -1)
        assert not result.HasField("resumed_after")
        assert len(candles.load(path)) == result.file.bars
    xrp, eth = final.results
    assert (xrp.gap_count, xrp.missing_bars, len(xrp.gaps)) == (6, 6, 6) and eth.gap_count == 0
    assert eth.requests == 7  # 5760 bars in pages of 1000, then an empty page
    assert final.dataset_dir == str(_datasets(running))
    assert sorted(f.name for f in final.files) == sorted(FILES.values())

    # public access only, within the exchange's limits, every client closed afterwards
    assert all(r.api_key is None for r in emu.requests)
    assert not [r for r in emu.requests if r.status in (418, 429)]
    assert all(ex.session is None for ex in make.made)

    # again: each file resumes after its last bar, nothing new, files unchanged
    again = list(client.fetch_candles("binance", ["XRP/ETH", "ETH/BTC"], "5m", FIRST))[-1]
    for result in again.results:
        assert result.bars_written == 0
        assert result.resumed_after.ToMilliseconds() == _ms(texts[result.symbol], -1)
        assert (_datasets(running) / FILES[result.symbol]).read_text() == texts[result.symbol]

    listing = client.list_candle_files()
    assert listing.done and not listing.results
    assert [(f.symbol, f.timeframe, f.bars) for f in listing.files] == [("ETH/BTC", "5m", 5760), ("XRP/ETH", "5m", 706)]


def test_exchange_errors_are_retried(running, exchange):
    make, emu, texts = exchange
    emu.fail_next(KLINES, status=503)
    emu.rate_limit_next(KLINES, retry_after=1)
    client = running.client("trader", PASSWORDS["trader"])
    [result] = list(client.fetch_candles("binance", ["ETH/BTC"], "5m", FIRST))[-1].results
    assert not result.error and result.bars_written == 5760
    assert [r.status for r in emu.requests_to(KLINES)][:3] == [503, 429, 200]
    assert (_datasets(running) / FILES["ETH/BTC"]).read_text() == texts["ETH/BTC"]


def test_cancelled_download_keeps_whole_pages_and_resumes(running, exchange):
    """Closing the stream cancels the download on the appliance; the server stays responsive
    while it waits on the exchange; the next call continues the file to the same bytes."""
    make, emu, texts = exchange
    client = running.client("trader", PASSWORDS["trader"])
    stream = client.fetch_candles("binance", ["ETH/BTC"], "5m", FIRST)
    for message in stream:
        if message.bars_written >= 2000:
            emu.delay_next(KLINES, 2.0, when="before", n=2)
            break
    started = time.monotonic()
    assert client.get_status()  # answered while the download waits on the exchange
    assert time.monotonic() - started < 1.5
    stream.close()
    path = _datasets(running) / FILES["ETH/BTC"]
    deadline = time.monotonic() + 15
    while True:  # the cancellation reaches the appliance asynchronously
        try:
            final = list(client.fetch_candles("binance", ["ETH/BTC"], "5m", FIRST))[-1]
            break
        except FailedPrecondition as err:
            assert "another request" in err.message
            assert time.monotonic() < deadline
            time.sleep(0.2)
    [result] = final.results
    assert result.resumed_after.ToMilliseconds() >= _ms(texts["ETH/BTC"], 2000)
    assert result.file.bars == 5760 and 0 < result.bars_written < 5760
    assert path.read_text() == texts["ETH/BTC"]


def test_fetch_into_a_sub_folder_with_until(running):
    client = running.client("admin", PASSWORDS["admin"])
    final = list(client.fetch_candles("binance", ["XRP/ETH"], "5m", "2019-10-11T00:00:00Z",
                                      "2019-10-11T01:00:00Z", dataset_dir="binance-2019"))[-1]
    [result] = final.results
    assert result.bars_written == 12
    assert Path(result.file.path).parent == _datasets(running) / "binance-2019"
    assert list(client.list_candle_files().files) == []  # the top folder holds nothing
    assert len(client.list_candle_files("binance-2019").files) == 1


def test_fetch_errors_name_the_field(running):
    client = running.client("trader", PASSWORDS["trader"])
    cases = [
        (("binance", ["DOGE/XYZ"], "5m", FIRST), {}, "symbols", "DOGE/XYZ"),
        (("binance", ["XRP/ETH"], "7m", FIRST), {}, "timeframe", "7m"),
        (("nosuchexchange", ["XRP/ETH"], "5m", FIRST), {}, "exchange", "nosuchexchange"),
        (("binance", ["XRP/ETH"], "5m", FIRST), {"dataset_dir": "../../etc"}, "dataset_dir", "outside"),
        (("binance", ["XRP/ETH"], "5m", FIRST, "2017-01-01"), {}, "until", "not after"),
    ]
    for args, kwargs, field, needle in cases:
        with pytest.raises(InvalidArgument) as err:
            list(client.fetch_candles(*args, **kwargs))
        assert err.value.message.startswith(f"{field}:") and needle in err.value.message, err.value.message
    with pytest.raises(ValueError, match="since"):
        client.fetch_candles("binance", ["XRP/ETH"], "5m", "last tuesday")
    assert not list(_datasets(running).iterdir())


def test_viewer_may_not_fetch_nor_list(running):
    viewer = running.client("viewer", PASSWORDS["viewer"])
    with pytest.raises(PermissionDenied):
        list(viewer.fetch_candles("binance", ["XRP/ETH"], "5m", FIRST))
    with pytest.raises(PermissionDenied):  # listing goes through the same RPC
        viewer.list_candle_files()


def _lyractl(tmp_path, monkeypatch, running, *args: str, input: str | None = None):
    from lyra_client.cli import cli

    monkeypatch.setenv("LYRA_CONFIG_DIR", str(tmp_path / "lyractl"))
    for var in ("LYRA_TARGET", "LYRA_TOKEN", "LYRA_CA_CERT", "LYRA_CLIENT_CERT", "LYRA_CLIENT_KEY"):
        monkeypatch.delenv(var, raising=False)
    return CliRunner().invoke(cli, ["--target", running.target, *args], input=input, catch_exceptions=False)


def test_lyractl_data_fetch_and_list(running, exchange, tmp_path, monkeypatch):
    make, emu, texts = exchange
    login = _lyractl(tmp_path, monkeypatch, running, "login", "--username", "trader", "--password-stdin",
                     input=PASSWORDS["trader"] + "\n")
    assert login.exit_code == 0, login.output

    # human output: a progress bar per symbol and a summary table
    out = _lyractl(tmp_path, monkeypatch, running, "data", "fetch", "--exchange", "binance", "--symbols",
                   "XRP/ETH,ETH/BTC", "--timeframe", "5m", "--since", FIRST, "--until", "2019-10-12")
    assert out.exit_code == 0, out.output
    for name in FILES.values():
        assert name in out.output
    assert "2019-10-11T00:00:00Z" in out.output and "2019-10-11T23:50:00Z" in out.output
    assert "287" in out.output and "5760" in out.output  # XRP/ETH bars before 2019-10-12 (no 23:55 bar)

    # --json: one document per line, the last one final; XRP/ETH resumes after 23:50
    out = _lyractl(tmp_path, monkeypatch, running, "--json", "data", "fetch", "--exchange", "binance",
                   "--symbols", "XRP/ETH", "--timeframe", "5m", "--since", FIRST)
    assert out.exit_code == 0, out.output
    docs = [json.loads(line) for line in out.output.splitlines()]
    assert docs[-1]["done"] is True and not any(d["done"] for d in docs[:-1])
    [result] = docs[-1]["results"]
    assert result["resumed_after"] == "2019-10-11T23:50:00Z"
    assert result["file"]["bars"] == 706 and result["file"]["last_time"] == "2019-10-13T11:15:00Z"
    assert result["gap_count"] == 6  # the 23:55 hole between the two runs' bars counts too
    assert (_datasets(running) / FILES["XRP/ETH"]).read_text() == texts["XRP/ETH"]

    out = _lyractl(tmp_path, monkeypatch, running, "--json", "data", "list")
    assert out.exit_code == 0, out.output
    listing = json.loads(out.output)
    assert listing["dataset_dir"] == str(_datasets(running))
    assert [(f["name"], f["bars"]) for f in listing["files"]] == [
        ("binance_ETH-BTC_5m.csv", 5760), ("binance_XRP-ETH_5m.csv", 706)]

    out = _lyractl(tmp_path, monkeypatch, running, "data", "list")
    assert out.exit_code == 0 and "binance_XRP-ETH_5m.csv" in out.output and "706" in out.output

    out = _lyractl(tmp_path, monkeypatch, running, "data", "fetch", "--exchange", "binance", "--symbols", "NOPE/ETH",
                   "--timeframe", "5m", "--since", FIRST)
    assert out.exit_code == 4 and "symbols: unknown symbol 'NOPE/ETH'" in out.stderr
