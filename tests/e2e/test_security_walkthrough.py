"""The Security issue's acceptance walkthrough with real processes, then a secret scan.

A new operator initializes the appliance with TLS, logs in remotely (TLS, CA pinned), enrolls
TOTP, initializes the vault, stores a Binance credential, seals and unseals it, logs in again
with a second factor, checks the audit chain and uses a service token — every step through
`lyrad` and `lyractl` as the README tells it. Then every file the appliance wrote, everything it
printed and its metrics are scanned for each known secret value: none may appear.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyotp
import pytest

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
ADMIN_PASSWORD = "walkthrough-admin-password-1"
VAULT_PASSPHRASE = "walkthrough vault passphrase 7"
API_KEY = "WALKTHROUGHapiKEY0123456789abcdefXYZ"
API_SECRET = "WALKTHROUGHsecret9876543210zyxwvuQRS"


class Operator:
    def __init__(self, tmp: Path, shared_data: Path) -> None:
        self.tmp = tmp
        self.config = tmp / "lyra.toml"
        self.config.write_text(f"""
[server]
listen = "0.0.0.0:0"
[server.tls]
enabled = true
[metrics]
listen = "127.0.0.1:0"
[storage]
data_dir = "{tmp / 'data'}"
[paper]
dataset = "{shared_data / 'candles'}"
symbols = ["ADA/BTC"]
[vault]
credential_max_age_days = 90
""")
        self.env = {**os.environ, "LYRA_CONFIG": str(self.config), "LYRA_CONFIG_DIR": str(tmp / "cli")}
        for name in ("LYRA_HOME", "LYRA_DATASET", "LYRA_TOKEN", "LYRA_PASSWORD", "LYRA_TARGET"):
            self.env.pop(name, None)
        self.outputs: list[str] = []  # everything printed, to scan
        self.one_time_displays: list[str] = []  # outputs that show a secret once, by design
        self.target = ""
        self.metrics = ""

    def lyrad(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run([str(BIN / "lyrad"), *args], env={**self.env, **(env or {})}, capture_output=True,
                                text=True, timeout=120)
        self.outputs.append(result.stdout + result.stderr)
        return result

    def lyractl(self, *args: str, stdin: str | None = None, env: dict | None = None, one_time: bool = False,
                check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([str(BIN / "lyractl"), *args], env={**self.env, **(env or {})}, input=stdin,
                                capture_output=True, text=True, timeout=60)
        (self.one_time_displays if one_time else self.outputs).append(result.stdout + result.stderr)
        if check and result.returncode != 0:
            raise AssertionError(f"lyractl {args[0]} -> {result.returncode}: {result.stderr}")
        return result

    def start(self) -> subprocess.Popen:
        run_file = self.tmp / "data" / "lyrad.json"
        self.log = open(self.tmp / "lyrad.log", "a")
        proc = subprocess.Popen([str(BIN / "lyrad"), "run"], env=self.env, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 60
        while not run_file.exists():
            assert proc.poll() is None and time.monotonic() < deadline, (self.tmp / "lyrad.log").read_text()[-3000:]
            time.sleep(0.1)
        info = json.loads(run_file.read_text())
        self.target = "127.0.0.1:" + info["grpc"].rpartition(":")[2]  # bound on 0.0.0.0, reached as a remote would
        self.metrics_url = f"http://{info['metrics']}/metrics"
        return proc


def code_for_next_step(secret: str) -> str:
    """A code for the next 30 s step (accepted within +-1 step; a used step is never accepted again)."""
    return pyotp.TOTP(secret).at(time.time() + 30)


def test_operator_walkthrough_and_secret_scan(tmp_path, shared_data):
    op = Operator(tmp_path, shared_data)
    init = op.lyrad("init", env={"LYRA_ADMIN_PASSWORD": ADMIN_PASSWORD})
    assert init.returncode == 0, init.stderr
    ca = tmp_path / "data" / "tls" / "ca.crt"
    assert ca.exists() and "SHA256" in init.stdout.upper().replace("-", "")
    assert (tmp_path / "data" / "tls" / "server.key").stat().st_mode & 0o777 == 0o600

    proc = op.start()
    try:
        # plaintext is refused by a TLS server; with the CA pinned, login works
        plain = op.lyractl("--target", op.target, "login", "--username", "admin", "--password-stdin",
                           stdin=ADMIN_PASSWORD + "\n", check=False)
        assert plain.returncode == 5, plain.stderr
        login = op.lyractl("login", "--target", op.target, "--ca-cert", str(ca), "--username", "admin",
                           "--password-stdin", stdin=ADMIN_PASSWORD + "\n")
        assert "totp enroll" in (login.stdout + login.stderr)  # admins must enroll a second factor first
        denied = op.lyractl("balances", check=False)
        assert denied.returncode == 3 and "TOTP" in denied.stderr

        begin = json.loads(op.lyractl("--json", "totp", "begin", "--password-stdin", stdin=ADMIN_PASSWORD + "\n",
                                      one_time=True).stdout)
        secret = begin["secret"]
        assert begin["otpauth_uri"].startswith("otpauth://totp/")
        confirm = json.loads(op.lyractl("--json", "totp", "confirm", pyotp.TOTP(secret).now(), one_time=True).stdout)
        recovery_codes = confirm["recovery_codes"]
        assert len(recovery_codes) == 10
        op.lyractl("balances")  # the session is now fully usable

        # the vault: initialize, store a Binance credential, seal, unseal
        op.lyractl("vault", "init", "--passphrase-stdin", stdin=VAULT_PASSPHRASE + "\n")
        created = json.loads(op.lyractl("--json", "vault", "credentials", "add", "--venue", "binance", "--label", "main",
                                        "--from-stdin", stdin=json.dumps({"api_key": API_KEY, "secret": API_SECRET})).stdout)
        listed = op.lyractl("--json", "vault", "credentials", "list").stdout
        assert "binance" in listed and created["fingerprint"] in listed
        op.lyractl("vault", "seal")
        sealed = op.lyractl("--json", "vault", "status").stdout
        assert "SEALED" in sealed
        wrong = op.lyractl("vault", "unseal", "--passphrase-stdin", stdin="not the passphrase at all\n", check=False)
        assert wrong.returncode == 4 and "INVALID_ARGUMENT" in wrong.stderr
        op.lyractl("vault", "unseal", "--passphrase-stdin", stdin=VAULT_PASSPHRASE + "\n")

        # a fresh login now needs the second factor
        op.lyractl("logout")
        no_code = op.lyractl("login", "--target", op.target, "--ca-cert", str(ca), "--username", "admin",
                             "--password-stdin", stdin=ADMIN_PASSWORD + "\n", check=False)
        assert no_code.returncode == 3
        op.lyractl("login", "--target", op.target, "--ca-cert", str(ca), "--username", "admin", "--password-stdin",
                   "--totp", code_for_next_step(secret), stdin=ADMIN_PASSWORD + "\n")
        assert json.loads(op.lyractl("--json", "whoami").stdout)["totp_enrolled"] is True

        # automation: a service token, shown once, used through LYRA_TOKEN
        token = json.loads(op.lyractl("--json", "tokens", "create", "--name", "grafana", "--role", "viewer",
                                      "--ttl", "1d", one_time=True).stdout)["token"]
        assert op.lyractl("--json", "balances", env={"LYRA_TOKEN": token}).returncode == 0

        verify = op.lyractl("audit", "verify")
        assert verify.returncode == 0
        audit = op.lyractl("--json", "audit", "list", "--limit", "0").stdout
        assert "/lyra.v1.VaultService/UnsealVault" in audit and "PERMISSION_DENIED" in audit
        op.metrics = urllib.request.urlopen(op.metrics_url, timeout=10).read().decode()
        assert "lyra_vault_credential_age_seconds" in op.metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        op.log.close()

    assert op.lyrad("verify").returncode == 0
    # -- the secret scan ------------------------------------------------------------------------
    cli_tokens = json.loads((tmp_path / "cli" / "tokens.json").read_text())
    session_tokens = [v for p in cli_tokens.get("profiles", cli_tokens).values() if isinstance(p, dict)
                      for k, v in p.items() if k in ("access_token", "refresh_token") and v]
    assert session_tokens, "the CLI's token store should hold the session tokens to scan for"
    # the scan does find a secret where one is shown on purpose (so an empty result means something)
    assert secret in "".join(op.one_time_displays) and token in "".join(op.one_time_displays)
    secrets = {"admin password": ADMIN_PASSWORD, "vault passphrase": VAULT_PASSPHRASE, "API key": API_KEY,
               "API secret": API_SECRET, "TOTP secret": secret, "service token": token,
               "service token secret": token.rsplit("_", 1)[-1]}
    secrets.update({f"recovery code {i}": c for i, c in enumerate(recovery_codes)})
    secrets.update({f"session token {i}": t for i, t in enumerate(session_tokens)})
    written = [p for p in (tmp_path / "data").rglob("*") if p.is_file()] + [tmp_path / "lyrad.log"]
    assert any(p.name == "lyra.db" for p in written)
    haystacks = {str(p): p.read_bytes() for p in written}
    haystacks.update({f"output {i}": o.encode() for i, o in enumerate(op.outputs)})
    haystacks["metrics"] = op.metrics.encode()
    leaks = [f"{what} in {where}" for what, value in secrets.items() for where, data in haystacks.items()
             if value.encode() in data]
    assert not leaks, leaks
