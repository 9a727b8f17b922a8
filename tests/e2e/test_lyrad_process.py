"""End to end with real processes: lyrad init/run, lyractl, kill -9 mid-run, restart, verify.

This is the Foundation's acceptance scenario on the real Bittrex 5m alt/BTC candles of
January 2018. It is deliberately one long test: each phase depends on the previous one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
SYMBOLS = ["ADA/BTC", "ETH/BTC", "LTC/BTC", "XLM/BTC", "TRX/BTC"]
ADMIN_PASSWORD = "e2e-admin-password-1"
VIEWER_PASSWORD = "e2e-viewer-password-1"


def write_config(tmp: Path, shared_data: Path) -> Path:
    config = tmp / "lyra.toml"
    config.write_text(f"""
[server]
listen = "127.0.0.1:0"
[metrics]
listen = "127.0.0.1:0"
[storage]
data_dir = "{tmp / 'data'}"
[paper]
dataset = "{shared_data / 'candles'}"
timeframe = "5m"
exchanges = ["bittrex"]
symbols = {json.dumps(SYMBOLS)}
start = "first_strategy"
[auth]
totp_required_roles = []
""")
    return config


class Env:
    def __init__(self, tmp: Path, config: Path) -> None:
        self.tmp = tmp
        self.env = {**os.environ, "LYRA_CONFIG": str(config), "LYRA_CONFIG_DIR": str(tmp / "cli")}
        self.env.pop("LYRA_HOME", None)
        self.env.pop("LYRA_DATASET", None)
        self.target = ""

    def lyrad(self, *args: str, stdin: str | None = None, extra_env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "lyrad"), *args], env={**self.env, **(extra_env or {})}, input=stdin,
                              capture_output=True, text=True, timeout=120)

    def lyractl(self, *args: str, password: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        env = dict(self.env)
        if password:
            env["LYRA_PASSWORD"] = password
        result = subprocess.run([str(BIN / "lyractl"), "--target", self.target, *args], env=env,
                                capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"lyractl {' '.join(args)} -> {result.returncode}: {result.stderr}")
        return result

    def json(self, *args: str):
        return json.loads(self.lyractl("--json", *args).stdout)

    def start(self, *extra: str) -> subprocess.Popen:
        run_file = self.tmp / "data" / "lyrad.json"
        run_file.unlink(missing_ok=True)
        log = open(self.tmp / "lyrad.log", "a")
        proc = subprocess.Popen([str(BIN / "lyrad"), "run", *extra], env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while not run_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"lyrad did not start: {(self.tmp / 'lyrad.log').read_text()[-3000:]}")
            time.sleep(0.1)
        self.target = json.loads(run_file.read_text())["grpc"]
        return proc

    def wait(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")

    def verify(self) -> None:
        result = self.lyrad("verify")
        assert result.returncode == 0, result.stdout + result.stderr


def recompute_balances(fills: list[dict], starting: dict[str, Decimal]) -> dict[str, Decimal]:
    """Independent of the appliance's code: balances from the starting balances and the fills."""
    balances = dict(starting)
    for f in fills:
        base, quote = f["instrument"].split("@")[0].split("/")
        qty, price, fee = Decimal(f["qty"]), Decimal(f["price"]), Decimal(f["fee"])
        sign = 1 if f["side"] == "BUY" else -1
        balances[base] = balances.get(base, Decimal(0)) + sign * qty
        balances[quote] = balances.get(quote, Decimal(0)) - sign * qty * price
        balances[f["fee_asset"]] = balances.get(f["fee_asset"], Decimal(0)) - fee
    return balances


def test_paper_trading_survives_kill_9(tmp_path, shared_data):
    env = Env(tmp_path, write_config(tmp_path, shared_data))

    # -- init: database, first admin, a viewer ---------------------------------------------------
    init = env.lyrad("init", extra_env={"LYRA_ADMIN_PASSWORD": ADMIN_PASSWORD})
    assert init.returncode == 0, init.stderr
    assert ADMIN_PASSWORD not in init.stdout + init.stderr
    added = env.lyrad("user", "add", "--username", "watcher", "--role", "viewer", "--password-stdin", stdin=VIEWER_PASSWORD + "\n")
    assert added.returncode == 0, added.stderr

    # -- run at a pace that leaves time to kill it mid-replay ----------------------------------------
    proc = env.start("--speed", "60000")
    try:
        # refused calls, with the right codes
        denied = env.lyractl("balances", check=False)
        assert denied.returncode == 3 and "UNAUTHENTICATED" in denied.stderr
        env.lyractl("--profile", "viewer", "login", "--username", "watcher", password=VIEWER_PASSWORD)
        viewer_submit = env.lyractl("--profile", "viewer", "orders", "submit", "ADA/BTC@paper", "buy", "1000",
                                    "--type", "limit", "--price", "0.00001", check=False)
        assert viewer_submit.returncode == 3 and "PERMISSION_DENIED" in viewer_submit.stderr

        env.lyractl("login", "--username", "admin", password=ADMIN_PASSWORD)
        token_file = tmp_path / "cli" / "tokens.json"
        assert token_file.stat().st_mode & 0o777 == 0o600
        env.lyractl("strategy", "create", "trend_momentum", "--id", "tm-e2e",
                    "--instrument", ",".join(f"{s}@paper" for s in SYMBOLS))
        env.lyractl("strategy", "start", "tm-e2e")
        env.wait(lambda: len(env.json("fills")["fills"]) >= 20, 120, "20 fills")
        progress = env.json("replay", "status")
        assert progress["state"] == "RUNNING", progress
        # what a client was told before the crash must survive it
        acknowledged = {f["fill_id"]: f for f in env.json("fills")["fills"]}
        acknowledged_orders = {o["client_order_id"] for o in env.json("orders", "list", "--limit", "0")["orders"]}
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    # -- after kill -9: the database is consistent on its own ------------------------------------------
    env.verify()

    # -- restart: recovery, the strategy resumes, the replay finishes --------------------------------------
    proc = env.start("--speed", "0")
    try:
        # the test binds an ephemeral port, so the saved tokens (tied to the old address) do not apply
        env.lyractl("login", "--username", "admin", password=ADMIN_PASSWORD)
        before = {f["fill_id"]: f for f in env.json("fills")["fills"]}
        assert len(before) >= len(acknowledged) >= 20
        assert all(before[i] == f for i, f in acknowledged.items()), "an acknowledged fill was lost or changed"
        assert env.json("strategy", "get", "tm-e2e")["status"] == "RUNNING"
        env.wait(lambda: env.json("replay", "status")["state"] == "FINISHED", 300, "replay to finish")
        fills = env.json("fills")["fills"]
        balances = {b["asset"]: Decimal(b["total"]) for b in env.json("balances")["balances"]}
        pnl = env.json("pnl")
        orders = env.json("orders", "list", "--limit", "0")["orders"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0

    # nothing lost, nothing doubled
    after = {f["fill_id"]: f for f in fills}
    assert len(after) == len(fills)
    assert all(after[i] == f for i, f in before.items()), "a fill made before the crash changed or vanished"
    assert len(after) > len(before)
    assert acknowledged_orders <= {o["client_order_id"] for o in orders}
    # balances equal the starting balances plus the fills minus fees, recomputed here independently
    assert balances == {a: v for a, v in recompute_balances(fills, {"BTC": Decimal(1)}).items() if a in balances}
    # every order's fills add up
    for order in orders:
        mine = [Decimal(f["qty"]) for f in fills if f["client_order_id"] == order["client_order_id"]]
        assert sum(mine, Decimal(0)) == Decimal(order["filled_qty"]), order["client_order_id"]
    assert Decimal(pnl["nav"]) > 0 and pnl["nav_currency"] == "BTC"
    env.verify()


def test_lyrad_without_dataset_says_how_to_get_one(tmp_path, shared_data):
    env = Env(tmp_path, write_config(tmp_path, shared_data))
    assert env.lyrad("init", extra_env={"LYRA_ADMIN_PASSWORD": ADMIN_PASSWORD}).returncode == 0
    missing = tmp_path / "no-such-folder"
    result = env.lyrad("run", extra_env={"LYRA_DATASET": str(missing)})
    assert result.returncode == 3
    assert str(missing) in result.stderr and "LYRA_DATASET" in result.stderr
