"""The aiohttp server that hosts the emulated venues, its control API and a thread wrapper.

One :class:`ExchangeEmulator` serves every dialect it was built with, each on its own
ephemeral port of ``127.0.0.1`` (:meth:`ExchangeEmulator.url_of`). Each dialect owns an :class:`~tests.emulator.engine.Engine` (its own accounts,
books and ids: two exchanges, not one).

Control API (plain Python, no HTTP; thread-safe):

* accounts and prices: :meth:`add_account`, :meth:`set_mark`, :meth:`load_candles`,
  :meth:`step`, :meth:`fill_order`, :meth:`engine`;
* faults: :meth:`fail_next` (5xx or any status), :meth:`rate_limit_next` (429 / 418),
  :meth:`delay_next` (before or after processing), :meth:`disconnect_next`,
  :meth:`mangle_trades_next` (duplicate / reorder / overlap fills), :meth:`set_clock_skew`,
  :meth:`drop_websockets`, :meth:`refuse_websockets`;
* rate limits: :meth:`configure_binance_limits`, :meth:`configure_kraken_limits`;
* observation: :attr:`requests` (every request, see
  :class:`~tests.emulator.faults.RequestRecord`), :meth:`requests_to`,
  :meth:`max_used_weight`, :meth:`orders`, :meth:`balances`, :meth:`ws_sessions`,
  :meth:`ws_subscriptions`.
"""

from __future__ import annotations

import asyncio
import importlib
import threading
import time
from typing import TYPE_CHECKING, Any, Iterable

from aiohttp import web

from .dialect import RECORD, TRADES_FAULT
from .engine import Engine, EngineError, Order
from .faults import Fault, FaultPlan, RequestRecord

if TYPE_CHECKING:  # pragma: no cover
    from .dialect import Dialect


#: Every dialect the emulator knows: name -> "module:Class" under ``tests.emulator`` (imported
#: when first used, so a dialect module only costs when a test asks for it).
DIALECTS: dict[str, str] = {
    "binance": "binance:BinanceDialect",
    "kraken": "kraken:KrakenDialect",
    "okx": "okx:OkxDialect",
    "bybit": "bybit:BybitDialect",
    "gate": "gate:GateDialect",
    "kucoin": "kucoin:KucoinDialect",
    "coinbase": "coinbase:CoinbaseDialect",
    "bitfinex": "bitfinex:BitfinexDialect",
    "bitstamp": "bitstamp:BitstampDialect",
    "gemini": "gemini:GeminiDialect",
}


def dialect_class(name: str) -> "type[Dialect]":
    """The :class:`~tests.emulator.dialect.Dialect` subclass registered as ``name``.

    Raises:
        ValueError: ``name`` is not in :data:`DIALECTS`.
    """
    if name not in DIALECTS:
        raise ValueError(f"unknown dialect {name!r} (known: {', '.join(DIALECTS)})")
    module, _, cls = DIALECTS[name].partition(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), cls)


class ExchangeEmulator:
    """Local exchange server speaking real exchange REST dialects.

    Each dialect listens on its own ephemeral port of ``host`` (exchanges' paths overlap:
    Binance, OKX, KuCoin, Gate and Coinbase all live under ``/api/``); :meth:`url_of` gives
    a dialect's base URL, :attr:`url` the first dialect's.

    Parameters
    ----------
    dialects:
        Names from :data:`DIALECTS`.
    accounts:
        ``{api_key: (secret, {asset_code: amount})}`` or ``(secret, balances, passphrase)``
        created on every dialect. Kraken secrets must be base64 (as Kraken issues them);
        asset codes are unified (``BTC``, ``USDT`` ...), a dialect maps them to its ids.
    fee_rate:
        Fee on every fill (default 10 bps).
    dialect_options:
        ``{name: {keyword: value}}`` passed to that dialect's constructor (rate limits ...).
    binance_weight_limit, binance_window_s, binance_ban_after, binance_ban_s:
        Binance REQUEST_WEIGHT limit per window, the window, how many 429s within a ban
        period lead to a 418 ban, and the ban's length.
    kraken_counter_max, kraken_decay_per_s:
        Kraken's private API counter ceiling and decay (Starter tier: 15 and 0.33/s).
    """

    def __init__(
        self,
        dialects: Iterable[str] = ("binance", "kraken"),
        *,
        accounts: dict[str, tuple] | None = None,
        fee_rate: object = "0.001",
        dialect_options: dict[str, dict[str, Any]] | None = None,
        binance_weight_limit: int = 6000,
        binance_window_s: float = 60.0,
        binance_ban_after: int = 3,
        binance_ban_s: float = 120.0,
        kraken_counter_max: float = 15.0,
        kraken_decay_per_s: float = 0.33,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        options: dict[str, dict[str, Any]] = {
            "binance": dict(weight_limit=binance_weight_limit, window_s=binance_window_s,
                            ban_after=binance_ban_after, ban_s=binance_ban_s),
            "kraken": dict(counter_max=kraken_counter_max, decay_per_s=kraken_decay_per_s),
        }
        for name, opts in (dialect_options or {}).items():
            options.setdefault(name, {}).update(opts)
        self.host, self.port = host, port
        self.requests: list[RequestRecord] = []
        self.faults = FaultPlan()
        self.dialects: dict[str, Dialect] = {}
        for name in dialects:
            self.dialects[name] = dialect_class(name)(self, fee_rate=fee_rate, **options.get(name, {}))
        for key, account in (accounts or {}).items():
            secret, balances, *rest = account
            self.add_account(key, secret, balances, password=rest[0] if rest else None)
        self._runners: list[web.AppRunner] = []
        self._inflight: set[asyncio.Task] = set()
        self.urls: dict[str, str] = {}

    @property
    def url(self) -> str:
        """Base URL of the first dialect ("" before :meth:`start`)."""
        return next(iter(self.urls.values()), "")

    def url_of(self, venue: str) -> str:
        """Base URL (``http://127.0.0.1:PORT``) the ``venue`` dialect listens on."""
        if venue not in self.urls:
            raise KeyError(f"dialect {venue!r} is not served (or the emulator is not started)")
        return self.urls[venue]

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> "ExchangeEmulator":
        for index, (name, dialect) in enumerate(self.dialects.items()):
            app = web.Application(middlewares=[self._middleware_for(dialect)], client_max_size=1 << 20)
            for method, path, handler in dialect.routes():
                app.router.add_route(method, path, handler)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, handle_signals=False)
            await runner.setup()
            self._runners.append(runner)
            site = web.TCPSite(runner, self.host, self.port if index == 0 else 0)
            await site.start()
            server = site._server  # noqa: SLF001 - the only way to learn the ephemeral port
            sock = server.sockets[0]  # type: ignore[union-attr]
            self.urls[name] = f"http://{self.host}:{sock.getsockname()[1]}"
        return self

    async def stop(self) -> None:
        for task in list(self._inflight):
            task.cancel()
        for dialect in self.dialects.values():
            await dialect.close()
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()

    async def __aenter__(self) -> "ExchangeEmulator":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ control: state
    def dialect(self, venue: str) -> "Dialect":
        return self.dialects[venue]

    def engine(self, venue: str) -> Engine:
        return self.dialects[venue].engine

    def add_account(self, api_key: str, secret: str, balances: dict[str, object] | None = None,
                    venue: str | None = None, password: str | None = None) -> None:
        """Create an account (on one venue or all) with unified asset codes; ``password`` is the
        API passphrase of exchanges that have one (OKX, KuCoin)."""
        for name, d in self.dialects.items():
            if venue is None or venue == name:
                d.add_account(api_key, secret, balances or {}, password=password)

    def set_mark(self, venue: str, symbol: str, price: object) -> None:
        """Move the mark price of ``symbol`` (unified, e.g. ``BTC/USDT``); crossing limits fill."""
        self.engine(venue).set_mark(symbol, price)

    def load_candles(self, venue: str, symbol: str, source: Any, *, timeframe: str = "1m",
                     limit: int | None = None, set_mark: bool = True) -> int:
        """Load candles (shared-data CSV path or rows) served by klines/OHLC and used by :meth:`step`."""
        return self.engine(venue).load_candles(symbol, source, timeframe_ms=timeframe_ms(timeframe),
                                               limit=limit, set_mark=set_mark)

    def step(self, venue: str, n: int = 1, symbols: Iterable[str] | None = None) -> None:
        """Advance loaded candles by ``n`` bars: mark -> close, resting orders cross on high/low."""
        self.engine(venue).step(n, symbols)

    def orders(self, venue: str, api_key: str | None = None, symbol: str | None = None) -> list[Order]:
        eng = self.engine(venue)
        with eng.lock:
            return [o for o in eng.orders.values()
                    if (api_key is None or o.account == api_key) and (symbol is None or o.symbol == symbol)]

    def balances(self, venue: str, api_key: str) -> dict[str, tuple[Any, Any]]:
        """``{unified_code: (free, locked)}``."""
        return self.dialects[venue].unified_balances(api_key)

    def fill_order(self, venue: str, order: Order, qty: object | None = None, price: object | None = None) -> Order:
        """Fill (part of) a resting order at ``price`` (default its limit), as a counterparty would."""
        return self.engine(venue).fill_order(order, qty, price)

    def set_clock_skew(self, ms: int, venue: str | None = None) -> None:
        """Shift the venue clock by ``ms`` (positive: the exchange runs ahead of the client)."""
        for name, d in self.dialects.items():
            if venue is None or venue == name:
                d.engine.clock.skew_ms = ms

    # ------------------------------------------------------------------ control: faults
    def fail_next(self, path: str, n: int = 1, *, status: int = 500, body: str | None = None,
                  headers: dict | None = None, venue: str | None = None, method: str | None = None) -> Fault:
        """The next ``n`` requests to ``path`` get ``status`` (default body: the venue's own for it)."""
        return self.faults.add(Fault("status", venue, path, method, n, status=status, body=body,
                                     headers=dict(headers or {})))

    def rate_limit_next(self, path: str, n: int = 1, *, status: int = 429, venue: str | None = None,
                        method: str | None = None, retry_after: int = 60) -> Fault:
        """Force Binance-style 429 (or 418 ban) responses with the exchange's body and Retry-After."""
        return self.faults.add(Fault("status", venue, path, method, n, status=status, body=None,
                                     headers={"Retry-After": str(retry_after)}))

    def delay_next(self, path: str, seconds: float, *, when: str = "after", n: int = 1,
                   venue: str | None = None, method: str | None = None) -> Fault:
        """Delay the next ``n`` requests to ``path`` by ``seconds``.

        ``when="before"``: the delay happens before processing, and if the client has gone by
        then (its timeout fired) the request is dropped unprocessed (no order placed).
        ``when="after"``: the request is processed at once (order placed) and the response is
        held back: the "accepted, then the client never hears" case.
        """
        if when not in ("before", "after"):
            raise ValueError("when must be 'before' or 'after'")
        return self.faults.add(Fault("delay", venue, path, method, n, seconds=seconds, when=when))

    def disconnect_next(self, path: str, *, when: str = "after", n: int = 1, venue: str | None = None,
                        method: str | None = None) -> Fault:
        """Close the connection without a response, before or after processing the request."""
        return self.faults.add(Fault("disconnect", venue, path, method, n, when=when))

    def mangle_trades_next(self, venue: str, mode: str = "duplicate", n: int = 1) -> Fault:
        """Corrupt the next ``n`` myTrades / TradesHistory responses.

        ``duplicate``: every fill appears twice (same id); ``reorder``: reversed order;
        ``overlap``: the ``startTime``/``start``/``fromId`` filter is ignored so fills the
        client already has come back again (what a lagging paginated read looks like).
        """
        if mode not in ("duplicate", "reorder", "overlap"):
            raise ValueError(mode)
        return self.faults.add(Fault("trades", venue, self.dialects[venue].my_trades_path, None, n, mode=mode))

    def clear_faults(self) -> None:
        self.faults.clear()

    # ------------------------------------------------------------------ control: websockets
    def _ws_hub(self, venue: str) -> Any:
        hub = self.dialects[venue].ws
        if hub is None:
            raise ValueError(f"dialect {venue!r} serves no websockets")
        return hub

    def drop_websockets(self, venue: str) -> int:
        """Abort every open websocket of ``venue`` as a network drop would (the TCP connection
        goes, no close frame); returns how many. Their upgrade requests get ``fault="ws_drop"``."""
        return self._ws_hub(venue).drop_all()

    def refuse_websockets(self, venue: str, n: int = 1, *, status: int = 503) -> list[Fault]:
        """The next ``n`` websocket upgrade attempts on ``venue`` (on each of its websocket paths)
        get HTTP ``status`` instead of 101; logged like any status fault."""
        self._ws_hub(venue)
        return [self.faults.add(Fault("status", venue, path, "GET", n, status=status, body=None))
                for path in self.dialects[venue].ws_paths]

    def ws_sessions(self, venue: str) -> list[Any]:
        """Every websocket connection of ``venue`` so far (:class:`~tests.emulator.ws.WsSession`:
        open/close times, close reason, subscriptions)."""
        return list(self._ws_hub(venue).sessions)

    def ws_subscriptions(self, venue: str, api_key: str | None = None, *,
                         active: bool | None = None) -> list[Any]:
        """Account subscriptions accepted on ``venue``'s websockets, oldest first
        (:class:`~tests.emulator.ws.WsSubscription`); a resubscription after a drop is a new entry."""
        return self._ws_hub(venue).subscriptions(api_key, active=active)

    # ------------------------------------------------------------------ control: limits
    def configure_binance_limits(self, *, weight_limit: int | None = None, window_s: float | None = None,
                                 ban_after: int | None = None, ban_s: float | None = None) -> None:
        self.dialects["binance"].configure(weight_limit=weight_limit, window_s=window_s,  # type: ignore[attr-defined]
                                           ban_after=ban_after, ban_s=ban_s)

    def configure_kraken_limits(self, *, counter_max: float | None = None,
                                decay_per_s: float | None = None) -> None:
        self.dialects["kraken"].configure(counter_max=counter_max, decay_per_s=decay_per_s)  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ observation
    def requests_to(self, path: str, venue: str | None = None, method: str | None = None) -> list[RequestRecord]:
        return [r for r in list(self.requests)
                if r.path == path and (venue is None or r.venue == venue)
                and (method is None or r.method == method.upper())]

    def max_used_weight(self) -> int:
        """Highest X-MBX-USED-WEIGHT the Binance dialect reported."""
        return max((r.used_weight or 0 for r in list(self.requests) if r.venue == "binance"), default=0)

    def clear_requests(self) -> None:
        self.requests.clear()

    # ------------------------------------------------------------------ plumbing
    def _middleware_for(self, dialect: "Dialect") -> Any:
        @web.middleware
        async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
            task = asyncio.current_task()
            if task is not None:
                self._inflight.add(task)
            try:
                return await self._serve(request, handler, dialect)
            finally:
                if task is not None:
                    self._inflight.discard(task)

        return middleware

    async def _serve(self, request: web.Request, handler: Any, dialect: "Dialect") -> web.StreamResponse:
        rec = RequestRecord(
            at=time.monotonic(), server_ms=0, venue=dialect.name,
            method=request.method, path=request.path, query=request.rel_url.raw_query_string,
        )
        self.requests.append(rec)
        rec.server_ms = dialect.engine.now_ms()
        request[RECORD] = rec
        fault = self.faults.take(dialect.name, request.method, request.path, ("status", "delay", "disconnect"))
        trades_fault = self.faults.take(dialect.name, request.method, request.path, ("trades",))
        if trades_fault is not None:
            request[TRADES_FAULT] = trades_fault
            rec.fault = trades_fault.describe()
        if fault is not None:
            rec.fault = fault.describe()
            if fault.kind == "status":
                resp = dialect.fault_response(fault, rec)
                rec.status = resp.status
                return resp
            if fault.when == "before":
                if fault.kind == "delay":
                    await asyncio.sleep(fault.seconds)
                if fault.kind == "disconnect" or _client_gone(request):
                    rec.status = 499
                    _drop(request)
                    return web.Response(status=499)
        resp = await dialect.admit(request, rec)
        if resp is None:
            rec.processed = True
            try:
                resp = await handler(request)
            except web.HTTPException as exc:  # unknown route / method under a venue prefix
                rec.processed = False
                rec.status = exc.status
                raise
        dialect.decorate(request, resp, rec)
        rec.status = resp.status
        if fault is not None and fault.when == "after":
            if fault.kind == "delay":
                await asyncio.sleep(fault.seconds)
            else:
                _drop(request)
        return resp


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _drop(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort() if hasattr(transport, "abort") else transport.close()


_TF_UNITS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def timeframe_ms(tf: str) -> int:
    """``"5m"`` -> 300000 (also ``1M`` = 30 days is not supported)."""
    return int(tf[:-1]) * _TF_UNITS[tf[-1]]


class EmulatorThread:
    """Runs an :class:`ExchangeEmulator` on its own event loop in a daemon thread.

    For synchronous tests or when the code under test owns the main loop. Attribute access
    falls through to the emulator, so the whole control API is available here; ``url`` is
    set once :meth:`start` returns.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.emulator = ExchangeEmulator(*args, **kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return self.emulator.url

    def start(self, timeout: float = 10.0) -> "EmulatorThread":
        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.emulator.start())
            except BaseException as exc:  # pragma: no cover - surfaced by start()
                self._error = exc
                self._started.set()
                return
            self._started.set()
            loop.run_forever()
            loop.run_until_complete(self.emulator.stop())
            loop.close()

        self._thread = threading.Thread(target=run, name="exchange-emulator", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError("emulator did not start")
        if self._error is not None:
            raise self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
            self._loop = None

    def __enter__(self) -> "EmulatorThread":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.emulator, name)


__all__ = ["EmulatorThread", "EngineError", "ExchangeEmulator", "timeframe_ms"]
