"""Benchmark: end-to-end replay throughput of the appliance on the real Bittrex 5m candles.

Builds an Appliance (temp data folder), starts Trend Momentum on 8 instruments and replays
January 2018 at max speed; every slice is one engine message in one SQLite transaction (fills,
orders, positions, journal, replay cursor).

Run: ``.venv/bin/python benchmarks/bench_replay.py``. Prints figures next to their targets.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from appliance.app import Appliance  # noqa: E402
from appliance.config import load_config  # noqa: E402

SYMBOLS = ["ADA/BTC", "DASH/BTC", "ETC/BTC", "ETH/BTC", "LTC/BTC", "NXT/BTC", "TRX/BTC", "XLM/BTC"]
TARGET_SLICES_PER_S = 1000.0


async def run(config) -> tuple[float, int, int]:
    app = Appliance(config)
    app.recover()
    app.engine.start()
    await app.engine.call(app.strategies.create, "trend_momentum", [f"{s}@paper" for s in SYMBOLS], {}, "bench")
    started = time.perf_counter()
    await app.engine.call(app.strategies.start, "bench")
    await app.replay.finished.wait()
    elapsed = time.perf_counter() - started
    fills = app.db.scalar("SELECT COUNT(*) FROM fills")
    slices = app.replay.progress().slices_done
    await app.engine.stop()
    app.close()
    return elapsed, slices, fills


def main() -> None:
    shared = Path(os.environ.get("LYRA_SHARED_DATA", REPO.parent / "shared" / "data"))
    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(tmp) / "lyra.toml"
        config_path.write_text(
            f'[storage]\ndata_dir = "{tmp}/data"\n[paper]\ndataset = "{shared / "candles"}"\n'
            f'symbols = {SYMBOLS!r}\nstart = "first_strategy"\n'.replace("'", '"'))
        config = load_config(config_path, env={})
        elapsed, slices, fills = asyncio.run(run(config))
    rate = slices / elapsed
    print(f"replay_slices_per_s          {rate:10.0f}   target >= {TARGET_SLICES_PER_S:.0f}")
    print(f"replay_bars_per_s            {rate * len(SYMBOLS):10.0f}   (8 instruments per slice)")
    print(f"replay_wall_s                {elapsed:10.2f}   ({slices} slices, {fills} fills)")


if __name__ == "__main__":
    main()
