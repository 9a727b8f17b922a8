"""[exchange_urls]: routing a ccxt exchange's requests to another base URL (relay / emulator)."""

from __future__ import annotations

import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro
import pytest

from appliance.config import LyraConfig
from appliance.venues.ccxt.urls import check_base_url, rebase_urls, route_exchange


def test_rebase_keeps_paths_and_queries_and_maps_websockets_to_the_same_host():
    urls = {"public": "https://api.binance.com/api/v3", "ws": {"spot": "wss://stream.binance.com:9443/ws"},
            "tmpl": "https://{hostname}/x?y=1", "n": 3}
    out = rebase_urls(urls, "http://127.0.0.1:8123")
    assert out == {"public": "http://127.0.0.1:8123/api/v3", "ws": {"spot": "ws://127.0.0.1:8123/ws"},
                   "tmpl": "http://127.0.0.1:8123/x?y=1", "n": 3}
    assert rebase_urls(urls, "https://relay.example:8443")["ws"]["spot"] == "wss://relay.example:8443/ws"
    assert urls["public"] == "https://api.binance.com/api/v3"  # a copy: the input is untouched


@pytest.mark.parametrize("exchange_id", ["binance", "okx", "bybit", "gate", "kucoin", "coinbase", "bitfinex",
                                         "bitstamp", "gemini", "kraken"])
def test_every_api_url_of_a_routed_exchange_is_on_the_base(exchange_id):
    for module in (ccxt_async, ccxt_pro):
        exchange = route_exchange(getattr(module, exchange_id)(), "http://127.0.0.1:9")

        def leaves(value):
            if isinstance(value, dict):
                for v in value.values():
                    yield from leaves(v)
            elif isinstance(value, str) and "://" in value:
                yield value

        found = list(leaves(exchange.urls["api"]))
        assert found and all(u.startswith(("http://127.0.0.1:9/", "ws://127.0.0.1:9/")) or
                             u in ("http://127.0.0.1:9", "ws://127.0.0.1:9") for u in found), found


@pytest.mark.parametrize("value, words", [
    ("ftp://127.0.0.1", "http(s)://host"),
    ("http://127.0.0.1:8080/api", "no path"),
    ("https://user:pw@relay.example", "no path, query or credentials"),
    ("http://relay.example:8080", "plain http is allowed only to a loopback host"),
    ("http://10.0.0.5", "plain http is allowed only to a loopback host"),
])
def test_bad_base_urls_are_refused_with_the_field_named(value, words):
    with pytest.raises(ValueError) as info:
        check_base_url("exchange_urls.binance", value)
    assert "exchange_urls.binance" in str(info.value) and words in str(info.value)


def test_config_accepts_loopback_http_and_https_and_names_a_bad_exchange_id():
    config = LyraConfig.model_validate({"exchange_urls": {"binance": "http://127.0.0.1:8080/",
                                                          "okx": "https://relay.example"}})
    assert config.exchange_urls == {"binance": "http://127.0.0.1:8080", "okx": "https://relay.example"}
    with pytest.raises(ValueError, match="not a ccxt exchange id"):
        LyraConfig.model_validate({"exchange_urls": {"Bin ance": "http://127.0.0.1:1"}})
    with pytest.raises(ValueError, match="loopback"):
        LyraConfig.model_validate({"exchange_urls": {"binance": "http://192.168.1.2"}})


def test_a_venues_urls_override_single_api_keys_after_the_base():
    exchange = route_exchange(ccxt_async.binance(), "http://127.0.0.1:9", {"public": "https://relay.example/api/v3"})
    assert exchange.urls["api"]["public"] == "https://relay.example/api/v3"
    assert exchange.urls["api"]["private"] == "http://127.0.0.1:9/api/v3"
