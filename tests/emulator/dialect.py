"""Base class of the exchange dialects."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable

from aiohttp import web

from .engine import Engine
from .faults import Fault, RequestRecord

if TYPE_CHECKING:  # pragma: no cover
    from .server import ExchangeEmulator

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Per-request storage keys (typed keys avoid aiohttp's NotAppKeyWarning).
RECORD = web.RequestKey("emulator_record", RequestRecord)
TRADES_FAULT = web.RequestKey("emulator_trades_fault", Fault)
PARAMS = web.RequestKey("emulator_params", dict)
RAW_BODY = web.RequestKey("emulator_raw_body", str)


class Dialect:
    """One exchange's REST dialect on top of an :class:`Engine`."""

    name = "?"
    prefixes: tuple[str, ...] = ()

    def __init__(self, emulator: "ExchangeEmulator", engine: Engine) -> None:
        self.emulator = emulator
        self.engine = engine

    def routes(self) -> list[tuple[str, str, Handler]]:
        raise NotImplementedError

    def add_account(self, api_key: str, secret: str, balances: dict[str, object]) -> None:
        self.engine.add_account(api_key, secret, {self.asset_id(k): v for k, v in balances.items()})

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
