"""Offline exchange emulator: real Binance / Kraken spot REST dialects on 127.0.0.1.

Usage (async)::

    async with ExchangeEmulator(accounts={"k": (secret, {"USDT": 10_000})}) as emu:
        ex = binance_client(emu, "k", secret)
        await ex.load_markets()
        ...
        await ex.close()

or ``EmulatorThread(...)`` for a server on its own thread/loop (same control API).
See ``server.ExchangeEmulator`` for the control surface.
"""

from __future__ import annotations

import os
from pathlib import Path

from .clients import binance_client, exchange_client, kraken_client, localize_urls
from .engine import Account, Candle, Engine, EngineError, Fill, Instrument, Order
from .faults import Fault, RequestRecord
from .server import DIALECTS, EmulatorThread, ExchangeEmulator, dialect_class, timeframe_ms


def shared_data_dir() -> Path:
    """``$LYRA_SHARED_DATA`` or ``<repo>/../shared/data`` (the real market data pack)."""
    repo = Path(__file__).resolve().parents[2]
    return Path(os.environ.get("LYRA_SHARED_DATA", str(repo.parent / "shared" / "data"))).resolve()


__all__ = [
    "Account", "Candle", "DIALECTS", "EmulatorThread", "Engine", "EngineError", "ExchangeEmulator", "Fault", "Fill",
    "Instrument", "Order", "RequestRecord", "binance_client", "dialect_class", "exchange_client", "kraken_client",
    "localize_urls", "shared_data_dir", "timeframe_ms",
]
