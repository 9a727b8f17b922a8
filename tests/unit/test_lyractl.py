"""Unit tests of the lyractl CLI (click CliRunner) against the in-process fake server of
test_sdk.py: token storage (0600), refresh persistence, --json output, exit codes."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from lyra_client.cli import cli


def _load_fakes():
    name = "_lyra_test_sdk_fakes"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("test_sdk.py"))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


fakes = _load_fakes()


@pytest.fixture
def fake():
    with fakes.FakeServer() as srv:
        yield srv


@pytest.fixture
def cfg(tmp_path, monkeypatch) -> Path:
    directory = tmp_path / "lyra-config"
    monkeypatch.setenv("LYRA_CONFIG_DIR", str(directory))
    for var in ("LYRA_TARGET", "LYRA_PASSWORD", "LYRA_USERNAME", "LYRA_CA_CERT", "LYRA_CLIENT_CERT",
                "LYRA_CLIENT_KEY", "LYRA_TOKEN", "LYRA_VAULT_PASSPHRASE", "LYRA_VAULT_NEW_PASSPHRASE"):
        monkeypatch.delenv(var, raising=False)
    return directory


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def login(fake, user: str = "alice", password: str | None = None, *extra: str):
    result = run("--target", fake.target, *extra, "login", "--username", user, "--password-stdin",
                 input=(password or fakes.USERS[user][0]) + "\n")
    assert result.exit_code == 0, result.stderr
    return result


def tokens(cfg: Path) -> dict:
    return json.loads((cfg / "tokens.json").read_text())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --------------------------------------------------------------------------- login / logout / tokens


def test_login_stores_tokens_0600_and_never_prints_secrets(fake, cfg):
    old_umask = os.umask(0)  # even with a permissive umask the file must be 0600
    try:
        result = login(fake)
    finally:
        os.umask(old_umask)
    path = cfg / "tokens.json"
    assert mode(path) == 0o600
    assert mode(cfg) == 0o700
    entry = tokens(cfg)["profiles"]["default"]
    assert entry["target"] == fake.target and entry["username"] == "alice" and entry["role"] == "trader"
    assert entry["access_token"] in fake.state.access and entry["refresh_token"] in fake.state.refresh
    shown = result.stdout + result.stderr
    for secret in ("pw-alice", entry["access_token"], entry["refresh_token"]):
        assert secret not in shown
    assert "alice" in result.stdout and "trader" in result.stdout
    assert not [p for p in cfg.iterdir() if p.name != "tokens.json"]  # no temp files left behind


def test_login_json_and_env_password(fake, cfg, monkeypatch):
    monkeypatch.setenv("LYRA_PASSWORD", "pw-rita")
    result = run("--target", fake.target, "--json", "--profile", "ops", "login", "-u", "rita")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc == {"username": "rita", "role": "risk_manager", "target": fake.target, "profile": "ops",
                   "access_expires_at": "2033-05-18T03:33:20Z"}
    assert "token" not in result.stdout
    assert set(tokens(cfg)["profiles"]) == {"ops"}


def test_login_bad_password_exit_3(fake, cfg):
    result = run("--target", fake.target, "login", "-u", "alice", "--password-stdin", input="nope\n")
    assert result.exit_code == 3
    assert result.stderr.startswith("error: UNAUTHENTICATED: invalid username or password")
    assert "nope" not in result.stderr + result.stdout
    assert not (cfg / "tokens.json").exists()


def test_commands_use_stored_target_and_bearer(fake, cfg):
    login(fake)
    result = run("--json", "status")  # no --target: the profile's target is used
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["mode"] == "replay" and doc["journal_seq"] == 42 and doc["replay"]["percent"] == 25.0
    access = tokens(cfg)["profiles"]["default"]["access_token"]
    assert fake.state.calls("GetStatus")[-1]["authorization"] == f"Bearer {access}"


def test_tokens_not_sent_to_another_target(fake, cfg):
    login(fake)
    with fakes.FakeServer() as other:
        result = run("--target", other.target, "status")
        assert result.exit_code == 3
        assert "authorization" not in other.state.calls("GetStatus")[0]


def test_refresh_rotates_and_persists_tokens(fake, cfg):
    login(fake)
    before = tokens(cfg)["profiles"]["default"]
    fake.state.expire_access_tokens()
    result = run("--json", "balances")
    assert result.exit_code == 0, result.stderr
    after = tokens(cfg)["profiles"]["default"]
    assert fake.state.refresh_calls == 1
    assert after["refresh_token"] != before["refresh_token"]
    assert after["refresh_token"] in fake.state.refresh  # the live (rotated) one was saved
    assert after["access_token"] in fake.state.access
    assert after["username"] == "alice" and after["target"] == fake.target
    assert mode(cfg / "tokens.json") == 0o600
    # A second command works with the persisted pair without refreshing again.
    assert run("balances").exit_code == 0
    assert fake.state.refresh_calls == 1


def test_logout_revokes_and_forgets(fake, cfg):
    login(fake)
    refresh = tokens(cfg)["profiles"]["default"]["refresh_token"]
    result = run("logout")
    assert result.exit_code == 0, result.stderr
    assert tokens(cfg)["profiles"] == {}
    assert refresh not in fake.state.refresh
    assert run("--target", fake.target, "status").exit_code == 3


# --------------------------------------------------------------------------- output


def test_json_balances_keep_decimal_strings(fake, cfg):
    login(fake)
    result = run("--json", "balances")
    doc = json.loads(result.stdout)
    btc = doc["balances"][0]
    assert btc == {"asset": "BTC", "total": "1.00000000", "reserved": "0.00012300", "free": "0.99987700",
                   "venue": "paper"}


def test_table_output(fake, cfg):
    login(fake)
    result = run("orders", "list")
    assert result.exit_code == 0, result.stderr
    assert "o-6" in result.stdout and "0.00003010" in result.stdout and "FILLED" in result.stdout
    pnl = run("pnl")
    assert pnl.exit_code == 0 and "1.00010000" in pnl.stdout and "ADA/BTC@paper" in pnl.stdout


def test_orders_list_paging_and_filters(fake, cfg):
    login(fake)
    all_orders = json.loads(run("--json", "orders", "list").stdout)["orders"]
    assert [o["client_order_id"] for o in all_orders] == [f"o-{i}" for i in range(7)]
    limited = json.loads(run("--json", "orders", "list", "--limit", "5").stdout)["orders"]
    assert len(limited) == 5
    opened = json.loads(run("--json", "orders", "list", "--open").stdout)["orders"]
    assert {o["status"] for o in opened} == {"OPEN"}
    by_status = json.loads(run("--json", "orders", "list", "--status", "filled,open").stdout)["orders"]
    assert len(by_status) == 7


def test_fills_follow_all_pages(fake, cfg):
    login(fake)
    doc = json.loads(run("--json", "fills").stdout)
    assert [f["fill_id"] for f in doc["fills"]] == [f"f-{i}" for i in range(5)]
    assert doc["fills"][0]["fee"] == "0.00000301" and doc["fills"][0]["liquidity"] == "TAKER"


def test_orders_submit_and_watch(fake, cfg):
    login(fake)
    result = run("--json", "orders", "submit", "ADA/BTC@paper", "buy", "100", "--price", "0.00003010",
                 "--id", "cli-1")
    assert result.exit_code == 0, result.stderr
    order = json.loads(result.stdout)
    assert order["client_order_id"] == "cli-1" and order["type"] == "LIMIT" and order["qty"] == "100"
    assert order["limit_price"] == "0.00003010" and order["status"] == "PENDING_SUBMIT"
    watch = run("--json", "orders", "watch", "--count", "2")
    assert watch.exit_code == 0, watch.stderr
    lines = [json.loads(line) for line in watch.stdout.splitlines()]
    assert [e["seq"] for e in lines] == [101, 102] and lines[0]["type"] == "ACCEPTED"


def test_risk_commands(fake, cfg):
    login(fake, "rita")
    result = run("--json", "risk", "limits", "--set", "max_order_notional=0.02", "--set", "max_open_orders=10")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["max_order_notional"] == "0.02" and doc["max_open_orders"] == 10
    assert fake.state.last_update_mask == ["max_order_notional", "max_open_orders"]
    engaged = json.loads(run("--json", "risk", "kill-switch", "engage", "--reason", "drill").stdout)
    assert engaged["kill_switch_engaged"] is True and engaged["trading_state"] == "HALTED"
    assert engaged["kill_switch_reason"] == "drill"


# --------------------------------------------------------------------------- exit codes


def test_not_logged_in_exit_3(fake, cfg):
    result = run("--target", fake.target, "balances")
    assert result.exit_code == 3
    assert result.stderr.startswith("error: UNAUTHENTICATED: ")
    assert "lyractl login" in result.stderr
    assert result.stdout == ""


def test_permission_denied_exit_3(fake, cfg):
    login(fake, "victor")
    result = run("orders", "submit", "ADA/BTC@paper", "buy", "1")
    assert result.exit_code == 3
    assert result.stderr.strip() == "error: PERMISSION_DENIED: role viewer may not call SubmitOrder"


def test_risk_rejection_exit_4_names_rule(fake, cfg):
    login(fake)
    result = run("orders", "submit", "ADA/BTC@paper", "buy", "5000", "--type", "limit", "--price", "0.00003")
    assert result.exit_code == 4
    assert result.stderr.startswith("error: FAILED_PRECONDITION: order notional exceeds")
    assert "reject rule: max_order_notional" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_not_found_exit_4(fake, cfg):
    login(fake)
    result = run("orders", "get", "nope")
    assert result.exit_code == 4 and result.stderr.startswith("error: NOT_FOUND: ")


def test_unavailable_exit_5(cfg):
    result = run("--target", fakes.unused_target(), "--timeout", "3", "status")
    assert result.exit_code == 5
    assert result.stderr.startswith("error: UNAVAILABLE: ")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["orders", "submit", "ADA/BTC@paper", "hold", "1"],
        ["orders", "submit", "ADA/BTC@paper", "buy", "abc"],
        ["orders", "submit", "ADA/BTC@paper", "buy", "1", "--type", "limit"],
        ["orders", "submit", "ADA/BTC@paper", "buy", "1", "--type", "market", "--price", "1"],
        ["orders", "list", "--status", "sleeping"],
        ["risk", "limits", "--set", "max_leverage=3"],
        ["risk", "limits", "--set", "max_order_notional"],
        ["risk", "kill-switch", "engage"],
        ["strategy", "create", "ema_cross", "--instrument", "ADA/BTC@paper", "--param", "fast"],
        ["no-such-command"],
    ],
)
def test_usage_errors_exit_2(fake, cfg, args):
    login(fake)
    result = run(*args)
    assert result.exit_code == 2, (args, result.stderr)
    assert fake.state.calls("SubmitOrder") == [] and fake.state.calls("UpdateRiskLimits") == []


def test_help_documents_exit_codes(cfg):
    result = run("--help")
    assert result.exit_code == 0
    for line in ("2  usage error", "3  not authenticated", "4  other server error", "5  server unavailable"):
        assert line in result.stdout


def test_logout_with_expired_access_token_still_revokes(fake, cfg):
    login(fake)
    fake.state.expire_access_tokens()
    result = run("logout")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert fake.state.refresh_calls == 1  # refreshed once to get a valid access token
    assert fake.state.refresh == {}  # the rotated session was revoked too
    assert tokens(cfg)["profiles"] == {}
