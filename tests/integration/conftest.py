"""Integration harness: a real Appliance + grpc.aio server on an ephemeral port, in a thread with
its own event loop, called through the real SDK (which is synchronous)."""

from __future__ import annotations

import asyncio
import json
import os
import tomllib
import threading
from pathlib import Path

import pytest

from appliance.config import load_config
from appliance.security.passwords import TEST_ONLY_FAST

REPO = Path(__file__).resolve().parents[2]
PASSWORDS = {"admin": "admin-password-123", "trader": "trader-password-123", "viewer": "viewer-password-123"}


def shared_data() -> Path:
    path = Path(os.environ.get("LYRA_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()
    if not (path / "candles").is_dir():
        pytest.fail(f"shared market data not found at {path} (set LYRA_SHARED_DATA)")
    return path


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # inline table (e.g. the entries of [[venues]])
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))


def _toml(tables: dict, prefix: str = "") -> str:
    lines, nested = [], []
    for key, value in tables.items():
        if isinstance(value, dict) and not prefix.startswith("_inline"):
            nested.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    out = ([f"[{prefix}]"] if prefix and lines else []) + lines
    for key, value in nested:
        out.append(_toml(value, f"{prefix}.{key}" if prefix else key))
    return "\n".join(out)


def _merge(base: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def write_config(tmp: Path, symbols=("ADA/BTC", "ETH/BTC", "LTC/BTC"), start="manual", extra: str = "") -> Path:
    """A config for tests: temp data dir, the real Bittrex 5m candles, ephemeral ports.

    ``extra`` is TOML deep-merged over these defaults (so it may set keys of any table).
    """
    config = {
        "server": {"listen": "127.0.0.1:0"},
        "metrics": {"listen": "127.0.0.1:0"},
        "storage": {"data_dir": str(tmp / "data")},
        "paper": {"dataset": str(shared_data() / "candles"), "timeframe": "5m", "exchanges": ["bittrex"],
                  "symbols": list(symbols), "start": start},
        # Foundation tests log in without TOTP; MFA is tested on its own.
        # the per-token rate limit is tested on its own; these tests call as fast as they can
        "auth": {"totp_required_roles": [], "rate_limit_rps": 10000.0, "rate_limit_burst": 10000},
        "risk": {"max_order_notional": "0.5", "max_position_notional": "0.6", "max_open_orders": 20,
                 "daily_loss_limit": "0.5"},
    }
    _merge(config, tomllib.loads(extra))
    path = tmp / "lyra.toml"
    path.write_text(_toml(config) + "\n")
    return path


class RunningAppliance:
    """Runs Appliance + server in a background thread; ``call(fn)`` runs fn as an engine message."""

    def __init__(self, config_path: Path, exchange_factory=None) -> None:
        self.config = load_config(config_path, env={})
        self.exchange_factory = exchange_factory
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="appliance", daemon=True)
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError("appliance did not start")
        if self.error:
            raise self.error

    def _main(self) -> None:
        try:
            asyncio.run(self._amain())
        except BaseException as exc:  # surfaced to the test thread
            self.error = exc
            self._ready.set()

    async def _amain(self) -> None:
        from appliance.app import Appliance
        from appliance.server.app import start_server
        from appliance.telemetry.metrics import serve

        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.app = Appliance(self.config)
        self.app.exchange_factory = self.exchange_factory
        self.recovery_notes = self.app.recover()
        self.app.engine.start()
        self.server, self.port = await start_server(self.app, self.config.server.listen)
        self.metrics_server, self.metrics_port = serve(self.app.metrics, "127.0.0.1:0")
        self.app.auth.users.password_params = TEST_ONLY_FAST
        if self.app.replay_should_autostart():  # as `lyrad run` does after a restart
            self.app.replay.start()
        self.venue_notes = await self.app.start_live_venues()
        self._ready.set()
        await self._stop.wait()
        if self.app.replay is not None:
            await self.app.replay.stop()
        await self.app.stop_live_venues()
        await self.server.stop(grace=1)
        await self.app.engine.stop()
        self.metrics_server.shutdown()
        self.app.close()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def call(self, fn, *args):
        return asyncio.run_coroutine_threadsafe(self.app.engine.call(fn, *args), self.loop).result(30)

    def run(self, coro_fn):
        return asyncio.run_coroutine_threadsafe(coro_fn(), self.loop).result(120)

    def add_user(self, username: str, role: str) -> str:
        password = PASSWORDS.get(role, f"{role}-password-123")
        self.call(self.app.auth.users.create_user, username, password, role)
        return password

    def client(self, username: str | None = None, password: str | None = None):
        from lyra_client.client import LyraClient

        c = LyraClient(self.target, timeout=30)
        if username:
            c.login(username, password)
        return c

    def wait_replay_finished(self, timeout: float = 600) -> None:
        async def wait():
            await asyncio.wait_for(self.app.replay.finished.wait(), timeout)
            await self.app.engine.call(lambda: None)  # everything queued before is handled
        self.run(wait)

    def stop(self) -> None:
        """Stop gracefully (idempotent)."""
        if self._stop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@pytest.fixture
def appliance_factory(tmp_path):
    started: list[RunningAppliance] = []

    def start(exchange_factory=None, **kwargs) -> RunningAppliance:
        running = RunningAppliance(write_config(tmp_path, **kwargs), exchange_factory=exchange_factory)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def appliance(appliance_factory):
    """A started appliance with users admin, trader and viewer (passwords in PASSWORDS)."""
    running = appliance_factory()
    for role in ("admin", "trader", "viewer"):
        running.add_user(role, role)
    return running
