"""Point unmodified ccxt (async) exchange classes at an emulator.

Only ``exchange.urls`` (every API base URL of the dialect, so no request can leave 127.0.0.1)
and constructor config (``options``, ``rateLimit``, ``timeout`` ...) are touched; ccxt's
signing, parsing and error mapping run as shipped.
"""

from __future__ import annotations

from typing import Any

import ccxt.async_support as ccxt_async

from appliance.venues.ccxt.urls import rebase_urls


def localize_urls(urls: Any, base: str) -> Any:
    """Every URL of a (nested) ccxt ``urls`` map pointed at ``base`` (``http://127.0.0.1:PORT``;
    websocket URLs get ``ws://`` on the same port): Lyra's own :func:`rebase_urls`, the code that
    routes ``[exchange_urls]`` in a real lyrad."""
    return rebase_urls(urls, base)


def _merge(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(config)
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def exchange_client(emulator: Any, venue: str, api_key: str | None = None, secret: str | None = None, *,
                    password: str | None = None, pace: bool = True, headroom: float = 1.0,
                    pro: bool = False, **config: Any) -> Any:
    """A ``ccxt.async_support`` exchange of dialect ``venue`` talking to ``emulator``.

    ``emulator`` is an ``ExchangeEmulator`` / ``EmulatorThread`` (its ``url_of(venue)`` is used)
    or a base URL string (then nothing is paced). With ``pace`` (default) ccxt's ``rateLimit``
    follows the dialect's configured limits (:meth:`Dialect.pacing`); ``headroom`` > 1 paces
    below them (a leaky bucket at exactly the limit can still overrun a fixed window by one
    request). ``pro`` builds the ``ccxt.pro`` class (websocket ``watch_*`` methods; its ``ws``
    URLs are pointed at the emulator too). Extra keyword arguments are ccxt constructor config
    (``options`` is merged).

    Raises:
        ValueError: unknown dialect, or the emulator is not started.
        KeyError: the emulator does not serve ``venue``.
    """
    from .server import dialect_class

    cls = dialect_class(venue)
    if isinstance(emulator, str):
        base, dialect = emulator.rstrip("/"), None
    else:
        emu = getattr(emulator, "emulator", emulator)
        base, dialect = emu.url_of(venue), emu.dialects[venue]
    if not base:
        raise ValueError("emulator not started (no url)")
    cfg: dict[str, Any] = {
        "enableRateLimit": True,
        "timeout": 10_000,
        "timeout_on_exit": 0,  # the 250 ms grace on close() is for TLS; the emulator is plain HTTP
        "options": dict(cls.ccxt_options),
    }
    for key, value in (("apiKey", api_key), ("secret", secret), ("password", password)):
        if value is not None:
            cfg[key] = value
    if pace and dialect is not None:
        cfg.update(dialect.pacing(headroom))
    if pro:
        import ccxt.pro as ccxt_pro

        ex = getattr(ccxt_pro, cls.ccxt_id)(_merge(cfg, config))
    else:
        ex = getattr(ccxt_async, cls.ccxt_id)(_merge(cfg, config))
    for key in cls.url_keys:
        if key in ex.urls:
            ex.urls[key] = localize_urls(ex.urls[key], base)
    return ex


def binance_client(emulator: Any, api_key: str | None = None, secret: str | None = None, **kwargs: Any) -> Any:
    """:func:`exchange_client` for the Binance spot dialect (ccxt ``binance``, spot markets only)."""
    return exchange_client(emulator, "binance", api_key, secret, **kwargs)


def kraken_client(emulator: Any, api_key: str | None = None, secret: str | None = None, **kwargs: Any) -> Any:
    """:func:`exchange_client` for the Kraken spot dialect."""
    return exchange_client(emulator, "kraken", api_key, secret, **kwargs)


__all__ = ["binance_client", "exchange_client", "kraken_client", "localize_urls"]
