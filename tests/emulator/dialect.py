"""Base class of the exchange dialects."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable

from aiohttp import web

from .engine import Engine
from .faults import Fault, RequestRecord

if TYPE_CHECKING:  # pragma: no cover
    from .server import ExchangeEmulator
    from .ws import WsHub

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Per-request storage keys (typed keys avoid aiohttp's NotAppKeyWarning).
RECORD = web.RequestKey("emulator_record", RequestRecord)
TRADES_FAULT = web.RequestKey("emulator_trades_fault", Fault)
PARAMS = web.RequestKey("emulator_params", dict)
RAW_BODY = web.RequestKey("emulator_raw_body", str)


class Dialect:
    """One exchange's REST dialect on top of an :class:`Engine`.

    A subclass sets the class attributes below, builds its :class:`Engine` and returns its
    aiohttp routes from :meth:`routes`; it is registered by name in
    :data:`tests.emulator.server.DIALECTS` and served on a port of its own. The constructor is
    called as ``cls(emulator, fee_rate=..., **dialect_options[name])``.

    Attributes:
        name: the registry name (also ``RequestRecord.venue``).
        ccxt_id: the ``ccxt.async_support`` class the dialect answers.
        ccxt_options: ccxt ``options`` a client needs against this dialect (spot only ...).
        url_keys: keys of the ccxt ``urls`` map whose URLs are pointed at the emulator.
        my_trades_path: the path ``mangle_trades_next`` corrupts (own trades / fills).
        create_order_path, create_order_method: where an order is placed (fault injection in
            the venue tests: "accepted, then the connection drops").
        needs_password: the exchange's API keys carry a passphrase (OKX, KuCoin).
        test_symbol: the unified symbol the shared venue tests trade (listed with a mark of 60000).
        ws_paths: paths of the dialect's websocket upgrade requests (``refuse_websockets``
            faults them); a dialect that serves websockets also sets :attr:`ws`.
        ws: the dialect's :class:`~tests.emulator.ws.WsHub` (None: no websockets).
    """

    name = "?"
    ccxt_id = "?"
    ccxt_options: dict[str, Any] = {}
    url_keys: tuple[str, ...] = ("api",)
    my_trades_path = ""
    create_order_path = ""
    create_order_method = "POST"
    needs_password = False
    test_symbol = "BTC/USDT"
    ws_paths: tuple[str, ...] = ()
    ws: "WsHub | None" = None

    def __init__(self, emulator: "ExchangeEmulator", engine: Engine) -> None:
        self.emulator = emulator
        self.engine = engine

    def routes(self) -> list[tuple[str, str, Handler]]:
        raise NotImplementedError

    def pacing(self, headroom: float) -> dict[str, Any]:
        """ccxt constructor config that paces a client under this dialect's configured limits
        (``rateLimit`` ...); ``headroom`` > 1 paces below them. Default: ccxt's own pacing."""
        return {}

    def rate_limited(self, rec: RequestRecord) -> bool:
        """Whether the request was refused for a rate limit (the shared burst test asserts none
        are); a dialect that refuses with HTTP 200 and an error body (Kraken) overrides it."""
        return rec.status in (418, 429)

    @classmethod
    def test_secret(cls, seed: str) -> str:
        """An API secret in the form the exchange issues (base64 for Kraken, a PEM key for
        Coinbase CDP keys ...), derived from ``seed``; for tests only."""
        return seed

    @classmethod
    def relaxed_limits(cls) -> tuple[dict[str, Any], Any]:
        """``(dialect_options, BudgetSpec | None)`` for tests that are not about rate limits:
        emulator limits loose enough to poll fast, and the matching venue budget (None: the
        venue's default budget from the exchange's documented limits is fast enough)."""
        return {}, None

    async def close(self) -> None:
        """Release what the dialect holds (websocket connections ...) when the emulator stops."""
        if self.ws is not None:
            await self.ws.close_all()

    def add_account(self, api_key: str, secret: str, balances: dict[str, object],
                    password: str | None = None) -> None:
        self.engine.add_account(api_key, secret, {self.asset_id(k): v for k, v in balances.items()},
                                password=password or "")

    def asset_id(self, code: str) -> str:
        return code

    def asset_code(self, asset_id: str) -> str:
        return asset_id

    def unified_balances(self, api_key: str) -> dict[str, tuple[Any, Any]]:
        return {self.asset_code(a): v for a, v in self.engine.balances(api_key).items()}

    async def admit(self, request: web.Request, rec: RequestRecord) -> web.StreamResponse | None:
        """Rate-limit gate before the handler; a response here refuses the request."""
        return None

    def decorate(self, request: web.Request, response: web.StreamResponse, rec: RequestRecord) -> None:
        """Add per-response headers (rate-limit usage ...)."""

    def fault_response(self, fault: Fault, rec: RequestRecord) -> web.StreamResponse:
        """The response for an injected status fault (venue-specific default bodies)."""
        body = fault.body if fault.body is not None else default_error_page(fault.status)
        return web.Response(status=fault.status, text=body, headers=fault.headers,
                            content_type="text/html" if fault.body is None else "application/json")


_REASONS = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
            504: "Gateway Timeout", 520: "Web Server Returned an Unknown Error"}


def default_error_page(status: int) -> str:
    reason = _REASONS.get(status, "Error")
    return f"<html><head><title>{status} {reason}</title></head><body><h1>{status} {reason}</h1></body></html>"
