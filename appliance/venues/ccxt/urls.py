"""Routing a ccxt exchange's requests to another base URL (a relay on the box, or the exchange
emulator in tests): ``[exchange_urls]`` in the firmware config and ``[[venues]] urls``.

ccxt keeps every endpoint of an exchange in its ``urls["api"]`` map (nested per API family, REST
and websocket alike); rebasing that map changes the scheme, host and port of each URL and keeps
its path, so the exchange's own paths, signing and parsing stay exactly as shipped.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, Callable
from urllib.parse import urlsplit

#: The ``urls`` keys that hold API endpoints (``test``/``demo``: the sandbox ones).
API_URL_KEYS = ("api", "test", "demo")


def check_base_url(field: str, value: str) -> str:
    """``value`` as a base URL (``scheme://host[:port]``, no path), or ValueError naming ``field``.

    Plain ``http`` is accepted only for a loopback host: signed requests carry the API key in
    their headers, and only TLS keeps them private on a network.

    Raises:
        ValueError: not http(s), a path/query/credentials in it, or http to a non-loopback host.
    """
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{field}: {value!r} is not an http(s)://host[:port] URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{field}: {value!r} must be scheme://host[:port] only (no path, query or credentials)")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ValueError(f"{field}: plain http is allowed only to a loopback host (API keys would travel "
                         f"in clear); use https://{parts.netloc}")
    return value.rstrip("/")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def rebase_urls(urls: Any, base: str) -> Any:
    """A copy of a (nested) ccxt ``urls`` map with every URL's scheme and host set to ``base``.

    ``http(s)://`` URLs get ``base``; ``ws(s)://`` URLs get the same host with ``ws://`` (for an
    ``http`` base) or ``wss://`` (for ``https``). Paths and queries are kept; other values
    (templates without a scheme, numbers) are left as they are.
    """
    if isinstance(urls, dict):
        return {k: rebase_urls(v, base) for k, v in urls.items()}
    if isinstance(urls, str) and urls.startswith(("http://", "https://", "ws://", "wss://")):
        target = urlsplit(base)
        parts = urlsplit(urls)
        if urls.startswith("http"):
            root = f"{target.scheme}://{target.netloc}"
        else:
            root = f"{'wss' if target.scheme == 'https' else 'ws'}://{target.netloc}"
        return root + parts.path + (("?" + parts.query) if parts.query else "")
    return urls


def route_exchange(exchange: Any, base_url: str | None = None, overrides: Mapping[str, str] | None = None) -> Any:
    """Point ``exchange`` (a ccxt instance) at ``base_url`` (every API URL rebased), then apply
    ``overrides`` (``urls["api"][key] = url`` for a flat api map). Returns ``exchange``."""
    if base_url:
        for key in API_URL_KEYS:
            if key in exchange.urls:
                exchange.urls[key] = rebase_urls(exchange.urls[key], base_url)
    if overrides:
        api = exchange.urls.get("api")
        if isinstance(api, dict):
            api.update(overrides)
    return exchange


def routed_factory(build: Callable[[str, dict], Any], base_urls: Mapping[str, str],
                   overrides: Mapping[str, str] | None = None) -> Callable[[str, dict], Any]:
    """An exchange factory (``factory(exchange_id, config)``) that builds with ``build`` and routes
    the result through :func:`route_exchange` with ``base_urls.get(exchange_id)`` and ``overrides``."""

    def factory(exchange_id: str, config: dict) -> Any:
        return route_exchange(build(exchange_id, config), base_urls.get(exchange_id), overrides)

    return factory


__all__ = ["API_URL_KEYS", "check_base_url", "rebase_urls", "route_exchange", "routed_factory"]
