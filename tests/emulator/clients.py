"""Point unmodified ccxt (async) exchange classes at an emulator.

Only ``exchange.urls`` (every API base URL, so no request can leave 127.0.0.1) and
constructor config (``options``, ``rateLimit``, ``timeout`` ...) are touched; ccxt's signing,
parsing and error mapping run as shipped.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import ccxt.async_support as ccxt_async


def _base_url(target: Any) -> str:
    url = target if isinstance(target, str) else target.url
    if not url:
        raise ValueError("emulator not started (no url)")
    return url.rstrip("/")


def localize_urls(urls: Any, base: str) -> Any:
    """Replace scheme and host of every URL in a (nested) ccxt ``urls`` map with ``base``."""
    if isinstance(urls, dict):
        return {k: localize_urls(v, base) for k, v in urls.items()}
    if isinstance(urls, str) and urls.startswith(("http://", "https://")):
        parts = urlsplit(urls)
        return base + parts.path + (("?" + parts.query) if parts.query else "")
    return urls


def _merge(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(config)
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _emulator(target: Any) -> Any:
    return getattr(target, "emulator", target)


def binance_client(emulator: Any, api_key: str | None = None, secret: str | None = None, *,
                   pace: bool = True, headroom: float = 1.0, **config: Any) -> ccxt_async.binance:
    """A ``ccxt.async_support.binance`` (spot only) talking to ``emulator``.

    With ``pace`` (default) ``rateLimit`` is derived from the emulator's weight limit the way
    ccxt derives its own default from Binance's 6000/min: ccxt charges 0.2 cost units per
    weight, so ``rateLimit = headroom * window_ms / (0.2 * limit)`` (= 50 ms for the real limit;
    ``headroom`` > 1 paces below the limit, since a leaky bucket at exactly the limit can still
    overrun a fixed window by one request). Extra
    keyword arguments are ccxt constructor config (``options`` is merged).
    """
    base = _base_url(emulator)
    cfg: dict[str, Any] = {
        "enableRateLimit": True,
        "timeout": 10_000,
        "timeout_on_exit": 0,  # the 250 ms grace on close() is for TLS; the emulator is plain HTTP
        "options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "defaultType": "spot",
                    "fetchMargins": False},
    }
    if api_key is not None:
        cfg["apiKey"] = api_key
    if secret is not None:
        cfg["secret"] = secret
    emu = _emulator(emulator)
    dialect = getattr(emu, "dialects", {}).get("binance") if not isinstance(emulator, str) else None
    if pace and dialect is not None:
        cfg["rateLimit"] = headroom * dialect.window_s * 1000 / (0.2 * dialect.weight_limit)
    cfg = _merge(cfg, config)
    ex = ccxt_async.binance(cfg)
    for key in ("api", "test", "demo"):
        if key in ex.urls:
            ex.urls[key] = localize_urls(ex.urls[key], base)
    return ex


def kraken_client(emulator: Any, api_key: str | None = None, secret: str | None = None, *,
                  pace: bool = True, headroom: float = 1.0, **config: Any) -> ccxt_async.kraken:
    """A ``ccxt.async_support.kraken`` talking to ``emulator``.

    With ``pace`` ``rateLimit`` follows the emulator's counter decay the way ccxt's default
    (1000 ms, private calls cost 3) follows Kraken's 0.33/s: ``rateLimit = 1000 / (3 * decay)``.
    """
    base = _base_url(emulator)
    cfg: dict[str, Any] = {"enableRateLimit": True, "timeout": 10_000, "timeout_on_exit": 0}
    if api_key is not None:
        cfg["apiKey"] = api_key
    if secret is not None:
        cfg["secret"] = secret
    emu = _emulator(emulator)
    dialect = getattr(emu, "dialects", {}).get("kraken") if not isinstance(emulator, str) else None
    if pace and dialect is not None:
        cfg["rateLimit"] = headroom * 1000 / (3 * dialect.decay_per_s)
    cfg = _merge(cfg, config)
    ex = ccxt_async.kraken(cfg)
    ex.urls["api"] = localize_urls(ex.urls["api"], base)
    return ex


__all__ = ["binance_client", "kraken_client", "localize_urls"]
