"""Unit tests of lyractl's security commands against the fake server of test_sdk.py: MFA
login, TOTP enrollment, secrets never taken from argv, the vault, users/sessions/service
tokens, the audit log, TLS/mTLS profiles and service tokens from LYRA_TOKEN."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from lyra_client.cli import _is_loopback, cli


def _load_fakes():
    """test_sdk.py's fakes, loaded once under the name test_lyractl.py uses."""
    name = "_lyra_test_sdk_fakes"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("test_sdk.py"))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


F = _load_fakes()
ENV_VARS = ("LYRA_TARGET", "LYRA_PASSWORD", "LYRA_USERNAME", "LYRA_CA_CERT", "LYRA_CLIENT_CERT", "LYRA_CLIENT_KEY",
            "LYRA_TOKEN", "LYRA_VAULT_PASSPHRASE", "LYRA_VAULT_NEW_PASSPHRASE")


@pytest.fixture
def fake():
    with F.FakeServer() as srv:
        yield srv


@pytest.fixture
def cfg(tmp_path, monkeypatch) -> Path:
    directory = tmp_path / "lyra-config"
    monkeypatch.setenv("LYRA_CONFIG_DIR", str(directory))
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    return directory


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return F.make_pki(tmp_path_factory.mktemp("pki"))


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def login(fake, user: str = "root", *extra: str, input: str | None = None):
    result = run("--target", fake.target, "login", "-u", user, "--password-stdin", *extra,
                 input=input if input is not None else F.USERS[user][0] + "\n")
    assert result.exit_code == 0, result.stderr
    return result


def tokens(cfg: Path) -> dict:
    return json.loads((cfg / "tokens.json").read_text())


def shown(result) -> str:
    return result.stdout + result.stderr


# --------------------------------------------------------------------------- MFA login


def test_login_prompts_for_totp_code_when_server_requires_it(fake, cfg):
    result = login(fake, "tom", input=f"pw-tom\n{F.TOTP_CODE}\n")
    assert "TOTP code:" in result.stderr
    sent = fake.state.requests_of("Login")
    assert [(r.totp_code, r.recovery_code) for r in sent] == [("", ""), (F.TOTP_CODE, "")]
    entry = tokens(cfg)["profiles"]["default"]
    assert entry["username"] == "tom" and entry["refresh_token"] in fake.state.refresh
    assert "pw-tom" not in shown(result) and entry["access_token"] not in shown(result)


def test_login_with_totp_option_does_not_prompt(fake, cfg):
    result = login(fake, "tom", "--totp", F.TOTP_CODE, input="pw-tom\n")
    assert "TOTP code" not in result.stderr
    assert [r.totp_code for r in fake.state.requests_of("Login")] == [F.TOTP_CODE]


def test_login_with_recovery_code(fake, cfg):
    login(fake, "tom", "--recovery-code", F.RECOVERY_CODES[0], input="pw-tom\n")
    assert fake.state.requests_of("Login")[-1].recovery_code == F.RECOVERY_CODES[0]
    # A recovery code typed at the prompt (not 6-8 digits) is sent as a recovery code.
    login(fake, "tom", input=f"pw-tom\n{F.RECOVERY_CODES[1]}\n")
    assert fake.state.requests_of("Login")[-1].recovery_code == F.RECOVERY_CODES[1]
    assert fake.state.requests_of("Login")[-1].totp_code == ""


def test_login_wrong_totp_exit_3(fake, cfg):
    result = run("--target", fake.target, "login", "-u", "tom", "--password-stdin", "--totp", "000000",
                 input="pw-tom\n")
    assert result.exit_code == 3
    assert result.stderr.startswith("error: UNAUTHENTICATED: ")
    assert "--totp CODE or --recovery-code CODE" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (cfg / "tokens.json").exists()


def test_login_mfa_without_code_on_closed_stdin_exit_3(fake, cfg):
    result = run("--target", fake.target, "login", "-u", "tom", "--password-stdin", input="pw-tom\n")
    assert result.exit_code == 3
    assert "a TOTP code is required" in result.stderr


def test_login_totp_and_recovery_code_together_is_usage_error(fake, cfg):
    result = run("--target", fake.target, "login", "-u", "tom", "--password-stdin", "--totp", "1",
                 "--recovery-code", "x", input="pw-tom\n")
    assert result.exit_code == 2
    assert fake.state.calls("Login") == []


def test_rate_limited_login_exit_4_with_retry_after(fake, cfg):
    fake.state.login_retry_after = "30"
    result = run("--target", fake.target, "login", "-u", "alice", "--password-stdin", input="pw-alice\n")
    assert result.exit_code == 4
    assert result.stderr.strip() == "error: RESOURCE_EXHAUSTED: too many failed logins (retry after 30 s)"


# --------------------------------------------------------------------------- TOTP enrollment


def test_enrollment_required_is_announced_and_hinted(fake, cfg):
    result = run("--target", fake.target, "--json", "login", "-u", "ada", "--password-stdin", input="pw-ada\n")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["mfa_enrollment_required"] is True
    assert "enrollment is required" in result.stderr and "lyractl totp enroll" in result.stderr
    assert tokens(cfg)["profiles"]["default"]["mfa_enrollment_required"] is True
    denied = run("users", "list")
    assert denied.exit_code == 3
    assert "PERMISSION_DENIED" in denied.stderr and "run `lyractl totp enroll`" in denied.stderr


def test_totp_enroll_shows_qr_and_recovery_codes_once(fake, cfg):
    login(fake, "ada")
    result = run("totp", "enroll", input=f"pw-ada\n{F.TOTP_CODE}\n")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert f"otpauth://totp/Lyra:ada?secret={F.TOTP_SECRET}" in out
    assert out.count(F.TOTP_SECRET) == 2  # in the URI and once for manual entry
    assert any(ch in out for ch in "█▀▄")  # the QR code
    qr_lines = [line for line in out.splitlines() if set(line) <= set("█▀▄ \xa0") and len(line) > 20]
    assert len(qr_lines) >= 10
    for code in F.RECOVERY_CODES:
        assert shown(result).count(code) == 1
    assert "shown only this once" in result.stderr
    assert "pw-ada" not in shown(result)
    req = fake.state.requests_of("ConfirmTotpEnrollment")[-1]
    assert req.totp_code == F.TOTP_CODE
    assert "mfa_enrollment_required" not in tokens(cfg)["profiles"]["default"]
    assert F.TOTP_SECRET not in (cfg / "tokens.json").read_text()
    assert run("users", "list").exit_code == 0  # the session is no longer restricted


def test_totp_enroll_retries_a_wrong_code(fake, cfg):
    login(fake, "ada")
    result = run("totp", "enroll", input=f"pw-ada\n000000\n{F.TOTP_CODE}\n")
    assert result.exit_code == 0, result.stderr
    assert "try again" in result.stderr
    assert [r.totp_code for r in fake.state.requests_of("ConfirmTotpEnrollment")] == ["000000", F.TOTP_CODE]


def test_totp_begin_and_confirm_json(fake, cfg, monkeypatch):
    login(fake, "alice")
    monkeypatch.setenv("LYRA_PASSWORD", "pw-alice")
    begun = run("--json", "totp", "begin")
    assert begun.exit_code == 0, begun.stderr
    uri = f"otpauth://totp/Lyra:alice?secret={F.TOTP_SECRET}&issuer=Lyra&digits=6&period=30"
    assert json.loads(begun.stdout) == {"otpauth_uri": uri, "secret": F.TOTP_SECRET}
    assert fake.state.requests_of("BeginTotpEnrollment")[-1].password == "pw-alice"
    confirmed = run("--json", "totp", "confirm", F.TOTP_CODE)
    assert confirmed.exit_code == 0, confirmed.stderr
    assert json.loads(confirmed.stdout) == {"recovery_codes": F.RECOVERY_CODES}


def test_totp_enroll_with_json_is_usage_error(fake, cfg):
    login(fake, "alice")
    result = run("--json", "totp", "enroll", input="pw-alice\n")
    assert result.exit_code == 2 and "totp begin" in result.stderr
    assert fake.state.requests_of("BeginTotpEnrollment") == []


# --------------------------------------------------------------------------- password


def test_password_change_from_stdin_and_prompt(fake, cfg):
    login(fake, "alice")
    result = run("password", "change", "--password-stdin", input="pw-alice\npw-alice-2\n")
    assert result.exit_code == 0, result.stderr
    req = fake.state.requests_of("ChangePassword")[-1]
    assert (req.current_password, req.new_password) == ("pw-alice", "pw-alice-2")
    prompted = run("password", "change", input="pw-alice-2\npw-alice-3\npw-alice-3\n")
    assert prompted.exit_code == 0, prompted.stderr
    assert "Repeat new password" in prompted.stderr
    assert fake.state.passwords["alice"] == "pw-alice-3"
    for secret in ("pw-alice-2", "pw-alice-3"):
        assert secret not in shown(result) + shown(prompted)
    assert run("password", "change", "pw-alice-3", "x").exit_code == 2


# --------------------------------------------------------------------------- secrets are never taken from argv


@pytest.mark.parametrize("args", [
    ["vault", "unseal", "hunter2-passphrase"],
    ["vault", "init", "hunter2-passphrase"],
    ["vault", "passphrase", "old-pass", "hunter2-passphrase"],
    ["vault", "credentials", "add", "--venue", "binance", "--label", "main", "AKIA", "hunter2-passphrase"],
    ["vault", "credentials", "rotate", "cred-1", "hunter2-passphrase"],
    ["users", "add", "zoe", "--role", "viewer", "hunter2-passphrase"],
    ["users", "reset-password", "alice", "hunter2-passphrase"],
    ["totp", "begin", "hunter2-passphrase"],
    ["login", "-u", "alice", "hunter2-passphrase"],
    ["vault", "unseal", "--passphrase", "hunter2-passphrase"],
    ["vault", "unseal", "--passphrase=hunter2-passphrase"],
])
def test_secrets_on_the_command_line_are_refused_unechoed(fake, cfg, args):
    login(fake)
    result = run(*args, input="")
    assert result.exit_code == 2, result.stderr
    assert "hunter2" not in shown(result)
    assert [m for m, _ in fake.state.requests if m != "Login"] == []


def test_vault_unseal_from_stdin_env_and_prompt(fake, cfg, monkeypatch):
    login(fake)
    result = run("--json", "vault", "unseal", "--passphrase-stdin", input=F.VAULT_PASSPHRASE + "\n")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["state"] == "UNSEALED"
    assert fake.state.requests_of("UnsealVault")[-1].passphrase == F.VAULT_PASSPHRASE
    prompted = run("vault", "unseal", input=F.VAULT_PASSPHRASE + "\n")
    assert prompted.exit_code == 0 and "Vault passphrase:" in prompted.stderr
    monkeypatch.setenv("LYRA_VAULT_PASSPHRASE", F.VAULT_PASSPHRASE)
    from_env = run("vault", "unseal")
    assert from_env.exit_code == 0 and "Vault passphrase" not in from_env.stderr
    assert len(fake.state.requests_of("UnsealVault")) == 3
    for r in (result, prompted, from_env):
        assert F.VAULT_PASSPHRASE not in shown(r)
    empty = run("vault", "unseal", "--passphrase-stdin", input="")
    monkeypatch.delenv("LYRA_VAULT_PASSPHRASE")
    assert empty.exit_code == 2 and "no vault passphrase on stdin" in empty.stderr


def test_vault_unseal_rate_limit_exit_4(fake, cfg):
    login(fake)
    for _ in range(3):
        wrong = run("vault", "unseal", "--passphrase-stdin", input="wrong\n")
        assert wrong.exit_code == 3
    limited = run("vault", "unseal", "--passphrase-stdin", input=F.VAULT_PASSPHRASE + "\n")
    assert limited.exit_code == 4
    assert limited.stderr.strip() == "error: RESOURCE_EXHAUSTED: too many wrong passphrases (retry after 30 s)"


def test_vault_init_passphrase_change_seal_rotate(fake, cfg):
    login(fake)
    fake.vault.state = F.vault_pb2.VAULT_STATE_UNINITIALIZED
    mismatch = run("vault", "init", input="first-pass\nother-pass\nfirst-pass\nfirst-pass\n")
    assert mismatch.exit_code == 0, mismatch.stderr  # click asks again after a mismatch
    assert fake.state.requests_of("InitializeVault")[-1].passphrase == "first-pass"
    assert "keep the passphrase safe" in mismatch.stderr
    changed = run("vault", "passphrase", "--passphrase-stdin", input="first-pass\nsecond-pass\n")
    assert changed.exit_code == 0, changed.stderr
    req = fake.state.requests_of("ChangeVaultPassphrase")[-1]
    assert (req.current_passphrase, req.new_passphrase) == ("first-pass", "second-pass")
    assert json.loads(run("--json", "vault", "rotate-key").stdout)["data_key_version"] == 2
    assert json.loads(run("--json", "vault", "seal").stdout)["state"] == "SEALED"
    status = run("--json", "vault", "status")
    assert json.loads(status.stdout)["kdf"].startswith("argon2id")
    for r in (mismatch, changed):
        assert "first-pass" not in shown(r) and "second-pass" not in shown(r)


# --------------------------------------------------------------------------- vault credentials


def test_credentials_add_from_stdin_json(fake, cfg):
    login(fake)
    run("vault", "unseal", "--passphrase-stdin", input=F.VAULT_PASSPHRASE + "\n")
    doc = {"apiKey": "AKIA-OKX-1", "secret": "S3CRET-OKX", "password": "OKX-PASS", "uid": ""}
    result = run("--json", "vault", "credentials", "add", "--venue", "okx", "--label", "main", "--from-stdin",
                 input=json.dumps(doc))
    assert result.exit_code == 0, result.stderr
    cred = json.loads(result.stdout)
    assert cred["venue"] == "okx" and cred["fields"] == ["api_key", "secret", "passphrase"]
    sent = fake.state.requests_of("CreateCredential")[-1]
    assert (sent.secrets.api_key, sent.secrets.secret, sent.secrets.passphrase) == ("AKIA-OKX-1", "S3CRET-OKX",
                                                                                      "OKX-PASS")
    for secret in ("AKIA-OKX-1", "S3CRET-OKX", "OKX-PASS"):
        assert secret not in shown(result)


def test_credentials_add_from_hidden_prompts(fake, cfg):
    login(fake)
    run("vault", "unseal", "--passphrase-stdin", input=F.VAULT_PASSPHRASE + "\n")
    result = run("vault", "credentials", "add", "--venue", "binance", "--label", "sub",
                 input="AKIA-BIN-2\nS3CRET-BIN\n\n\n")
    assert result.exit_code == 0, result.stderr
    assert "API secret:" in result.stderr
    sent = fake.state.requests_of("CreateCredential")[-1]
    assert (sent.secrets.api_key, sent.secrets.secret, sent.secrets.passphrase, sent.secrets.uid) == (
        "AKIA-BIN-2", "S3CRET-BIN", "", "")
    assert "AKIA-BIN-2" not in shown(result) and "S3CRET-BIN" not in shown(result)
    assert "cred-2" in result.stdout


@pytest.mark.parametrize("payload,message", [
    ('{"api_key": "AK-XYZ", "secret": "SEC-XYZ", "extra": 1}', "unknown key(s) extra"),
    ('{"api_key": "AK-XYZ"}', "secret: required"),
    ('{"api_key": "AK-XYZ", "secret": SEC-XYZ}', "not valid JSON"),
    ('["AK-XYZ", "SEC-XYZ"]', "expected a JSON object"),
])
def test_credentials_add_bad_stdin_is_usage_error_without_echo(fake, cfg, payload, message):
    login(fake)
    result = run("vault", "credentials", "add", "--venue", "binance", "--label", "x", "--from-stdin",
                 input=payload)
    assert result.exit_code == 2 and message in result.stderr
    assert "XYZ" not in shown(result)
    assert fake.state.requests_of("CreateCredential") == []


def test_credentials_lifecycle(fake, cfg):
    login(fake)
    listed = json.loads(run("--json", "vault", "credentials", "list", "--venue", "binance").stdout)
    assert [c["credential_id"] for c in listed["credentials"]] == ["cred-1"]
    assert fake.state.requests_of("ListCredentials")[-1].venue == "binance"
    rotated = run("--json", "vault", "credentials", "rotate", "cred-1", "--from-stdin",
                  input='{"api_key": "AK-NEW", "secret": "SEC-NEW"}')
    assert rotated.exit_code == 0, rotated.stderr
    assert json.loads(rotated.stdout)["rotation_pending"] is True
    assert fake.state.requests_of("RotateCredential")[-1].secrets.secret == "SEC-NEW"
    confirmed = json.loads(run("--json", "vault", "credentials", "confirm", "cred-1").stdout)
    assert confirmed["version"] == 2 and confirmed["rotation_pending"] is False
    assert run("vault", "credentials", "abort", "cred-1").exit_code == 0
    table = run("vault", "credentials", "list")
    assert "cred-1" in table.stdout and "binance" in table.stdout
    refused = run("vault", "credentials", "delete", "cred-1", input="n\n")
    assert refused.exit_code == 2 and fake.state.requests_of("DeleteCredential") == []
    deleted = run("vault", "credentials", "delete", "cred-1", "--yes")
    assert deleted.exit_code == 0, deleted.stderr
    assert fake.state.requests_of("DeleteCredential")[-1].credential_id == "cred-1"
    missing = run("vault", "credentials", "get", "cred-1")
    assert missing.exit_code == 4 and missing.stderr.startswith("error: NOT_FOUND")


def test_data_loss_exit_4(fake, cfg):
    login(fake)
    result = run("vault", "credentials", "get", "cred-tampered")
    assert result.exit_code == 4
    assert result.stderr.startswith("error: DATA_LOSS: credential cred-tampered failed authentication")
    assert "possible tampering" in result.stderr and len(result.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------- users, sessions, tokens


def test_users_commands(fake, cfg):
    login(fake)
    added = run("--json", "users", "add", "zoe", "--role", "analyst", "--password-stdin", input="pw-zoe-long\n")
    assert added.exit_code == 0, added.stderr
    assert json.loads(added.stdout)["role"] == "analyst"
    req = fake.state.requests_of("CreateUser")[-1]
    assert (req.username, req.password, req.role) == ("zoe", "pw-zoe-long", "analyst")
    prompted = run("users", "add", "yan", "--role", "VIEWER", input="pw-yan-long\npw-yan-long\n")
    assert prompted.exit_code == 0, prompted.stderr
    assert fake.state.requests_of("CreateUser")[-1].role == "viewer"
    assert "pw-zoe-long" not in shown(added) and "pw-yan-long" not in shown(prompted)
    assert run("users", "add", "bad", "--role", "superuser", input="x\n").exit_code == 2

    assert "tom" in run("users", "list").stdout
    assert json.loads(run("--json", "users", "get", "tom").stdout)["totp_enrolled"] is True
    set_role = json.loads(run("--json", "users", "set-role", "alice", "viewer").stdout)
    assert set_role["role"] == "viewer"
    assert list(fake.state.requests_of("UpdateUser")[-1].update_mask.paths) == ["role"]
    assert json.loads(run("--json", "users", "disable", "alice").stdout)["disabled"] is True
    req = fake.state.requests_of("UpdateUser")[-1]
    assert list(req.update_mask.paths) == ["disabled"] and req.disabled is True
    assert json.loads(run("--json", "users", "enable", "alice").stdout)["disabled"] is False
    assert fake.state.requests_of("UpdateUser")[-1].disabled is False
    reset = run("users", "reset-password", "alice", "--password-stdin", input="pw-alice-new\n")
    assert reset.exit_code == 0 and fake.state.requests_of("ResetPassword")[-1].new_password == "pw-alice-new"
    assert run("users", "reset-totp", "tom").exit_code == 0
    assert fake.state.requests_of("ResetTotp")[-1].username == "tom"


def test_users_commands_need_admin(fake, cfg):
    login(fake, "alice")
    result = run("users", "list")
    assert result.exit_code == 3 and result.stderr.startswith("error: PERMISSION_DENIED")


def test_sessions_commands(fake, cfg):
    login(fake)
    listed = json.loads(run("--json", "sessions", "list", "--user", "alice", "--all").stdout)
    assert listed["sessions"][0]["session_id"] == "s-1"
    req = fake.state.requests_of("ListSessions")[-1]
    assert (req.username, req.include_revoked) == ("alice", True)
    revoked = json.loads(run("--json", "sessions", "revoke", "s-1").stdout)
    assert revoked["revoked"] is True


def test_tokens_create_prints_token_once(fake, cfg):
    login(fake)
    result = run("tokens", "create", "--name", "ci", "--role", "trader", "--ttl", "30d")
    assert result.exit_code == 0, result.stderr
    req = fake.state.requests_of("CreateServiceToken")[-1]
    assert (req.name, req.role, req.ttl_seconds) == ("ci", "trader", 30 * 86400)
    token = next(t for t, (name, _) in fake.state.service_tokens.items() if name == "svc-ci")
    assert shown(result).count(token) == 1
    assert "shown only this once" in result.stderr
    assert token not in (cfg / "tokens.json").read_text()
    as_json = json.loads(run("--json", "tokens", "create", "--name", "ci2", "--role", "viewer", "--ttl", "12h").stdout)
    assert as_json["token"].startswith("lyst_") and as_json["service_token"]["name"] == "ci2"
    assert fake.state.requests_of("CreateServiceToken")[-1].ttl_seconds == 12 * 3600
    listed = run("--json", "tokens", "list", "--all")
    assert json.loads(listed.stdout)["service_tokens"][0]["token_id"] == "t1"
    assert "lyst_" not in listed.stdout
    assert json.loads(run("--json", "tokens", "revoke", "t1").stdout)["revoked"] is True


@pytest.mark.parametrize("ttl", ["0d", "30x", "forever", "-5"])
def test_tokens_bad_ttl_is_usage_error(fake, cfg, ttl):
    login(fake)
    result = run("tokens", "create", "--name", "ci", "--role", "trader", "--ttl", ttl)
    assert result.exit_code == 2
    assert fake.state.requests_of("CreateServiceToken") == []


# --------------------------------------------------------------------------- service tokens


def test_service_token_from_env_is_sent_as_bearer(fake, cfg, monkeypatch):
    login(fake, "alice")  # a profile session exists but must not be used
    session = tokens(cfg)["profiles"]["default"]["access_token"]
    monkeypatch.setenv("LYRA_TOKEN", F.SERVICE_TOKEN)
    result = run("--json", "whoami")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["principal_kind"] == "service" and doc["username"] == "svc-grafana"
    assert fake.state.calls("WhoAmI")[-1]["authorization"] == f"Bearer {F.SERVICE_TOKEN}"
    assert session not in str(fake.state.calls("WhoAmI"))
    assert F.SERVICE_TOKEN not in shown(result)
    del fake.state.service_tokens[F.SERVICE_TOKEN]
    rejected = run("status")
    assert rejected.exit_code == 3 and "service token rejected" in rejected.stderr
    assert F.SERVICE_TOKEN not in shown(rejected)
    assert fake.state.refresh_calls == 0
    assert tokens(cfg)["profiles"]["default"]["access_token"] == session  # profile untouched


def test_service_token_from_file(fake, cfg, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(F.SERVICE_TOKEN + "\n")
    token_file.chmod(0o600)
    result = run("--target", fake.target, "--token-file", str(token_file), "--json", "status")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert fake.state.calls("GetStatus")[-1]["authorization"] == f"Bearer {F.SERVICE_TOKEN}"
    token_file.chmod(0o644)
    loose = run("--target", fake.target, "--token-file", str(token_file), "status")
    assert loose.exit_code == 0 and "accessible by other users" in loose.stderr
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert run("--target", fake.target, "--token-file", str(empty), "status").exit_code == 2


# --------------------------------------------------------------------------- audit


def test_audit_verify_exit_codes(fake, cfg):
    login(fake)
    ok = run("audit", "verify")
    assert ok.exit_code == 0 and "intact" in ok.stdout and "7 records" in ok.stdout
    fake.state.audit_broken_at = 5
    broken = run("audit", "verify")
    assert broken.exit_code == 4
    assert broken.stderr.strip() == "error: audit chain broken at record seq 5: hash mismatch (5 records checked)"
    as_json = run("--json", "audit", "verify")
    assert as_json.exit_code == 4 and json.loads(as_json.stdout)["first_broken_seq"] == 5


def test_audit_list_filters(fake, cfg):
    login(fake)
    failures = json.loads(run("--json", "audit", "list", "--failures", "--user", "rita").stdout)["records"]
    assert [r["seq"] for r in failures] == [6]
    req = fake.state.requests_of("ListAuditRecords")[-1]
    assert req.failures_only is True and req.username == "rita"
    everything = json.loads(run("--json", "audit", "list", "--limit", "0").stdout)["records"]
    assert [r["seq"] for r in everything] == [7, 6, 5, 4, 3, 2, 1]
    table = run("audit", "list", "--limit", "2")
    assert "/lyra.v1.OrderService/SubmitOrder" in table.stdout


def test_audit_export_jsonl_oldest_first_mode_0600(fake, cfg, tmp_path):
    login(fake)
    out = tmp_path / "audit.jsonl"
    old_umask = os.umask(0)  # even with a permissive umask the export must be 0600
    try:
        result = run("--json", "audit", "export", "--out", str(out))
    finally:
        os.umask(old_umask)
    assert result.exit_code == 0, result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["seq"] for r in lines] == list(range(1, 8))
    assert lines[1]["prev_hash"] == lines[0]["hash"] and lines[0]["time"].endswith("Z")
    assert json.loads(result.stdout) == {"out": str(out), "records": 7, "first_seq": 1, "last_seq": 7,
                                         "chain_linked": True}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left
    again = run("audit", "export", "--out", str(out))
    assert again.exit_code == 2 and "--force" in again.stderr
    partial = run("audit", "export", "--out", str(out), "--force", "--after-seq", "5")
    assert partial.exit_code == 0
    assert [json.loads(line)["seq"] for line in out.read_text().splitlines()] == [6, 7]
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_audit_export_detects_broken_links(fake, cfg, tmp_path):
    login(fake)
    fake.state.audit[3].prev_hash = "00" * 32
    out = tmp_path / "audit.jsonl"
    result = run("audit", "export", "--out", str(out))
    assert result.exit_code == 4 and "seq 4" in result.stderr
    assert len(out.read_text().splitlines()) == 7  # the evidence is kept


# --------------------------------------------------------------------------- TLS profiles


def test_login_profile_persists_tls_paths_and_later_commands_use_them(cfg, pki, tmp_path, monkeypatch):
    with F.FakeServer(pki, require_client_cert=True) as srv:
        monkeypatch.chdir(pki["ca"].parent)  # relative paths are stored absolute
        result = run("login", "--target", srv.target, "--ca-cert", "ca.pem", "--client-cert", "client_cert.pem",
                     "--client-key", "client_key.pem", "--profile", "prod", "-u", "alice", "--password-stdin",
                     input="pw-alice\n")
        assert result.exit_code == 0, result.stderr
        monkeypatch.chdir(tmp_path)
        entry = tokens(cfg)["profiles"]["prod"]
        assert entry["target"] == srv.target
        assert entry["ca_cert"] == str(pki["ca"]) and entry["client_cert"] == str(pki["client_cert"])
        assert entry["client_key"] == str(pki["client_key"])
        raw = (cfg / "tokens.json").read_text()
        assert "PRIVATE KEY" not in raw and "BEGIN CERTIFICATE" not in raw

        status = run("--profile", "prod", "--json", "status")
        assert status.exit_code == 0, status.stderr
        assert json.loads(status.stdout)["journal_seq"] == 42
        assert srv.state.calls("GetStatus")[-1]["authorization"] == f"Bearer {entry['access_token']}"

        # The default profile has no TLS settings: plaintext to a TLS server fails (exit 5).
        plain = run("--target", srv.target, "--timeout", "2", "status")
        assert plain.exit_code == 5

        listed = run("--json", "--profile", "prod", "profiles")
        assert listed.exit_code == 0
        profile = json.loads(listed.stdout)["profiles"][0]
        assert profile["profile"] == "prod" and profile["active"] is True and profile["logged_in"] is True
        assert profile["client_key"] == str(pki["client_key"])
        for secret in (entry["access_token"], entry["refresh_token"]):
            assert secret not in listed.stdout
        assert "token" not in json.dumps(profile)
        table = run("profiles")
        assert "prod" in table.stdout and entry["refresh_token"] not in table.stdout


def test_tls_without_client_cert_fails_and_bad_paths_are_usage_errors(cfg, pki, tmp_path):
    with F.FakeServer(pki, require_client_cert=True) as srv:
        result = run("--target", srv.target, "--timeout", "2", "login", "--ca-cert", str(pki["ca"]), "-u", "alice",
                     "--password-stdin", input="pw-alice\n")
        assert result.exit_code == 5
        lone = run("login", "--target", srv.target, "--ca-cert", str(pki["ca"]), "--client-cert",
                   str(pki["client_cert"]), "-u", "alice", "--password-stdin", input="pw-alice\n")
        assert lone.exit_code == 2 and "--client-key" in lone.stderr
        missing = run("login", "--target", srv.target, "--ca-cert", str(tmp_path / "nope.pem"), "-u", "alice",
                      "--password-stdin", input="pw-alice\n")
        assert missing.exit_code == 2 and "cannot read" in missing.stderr
        assert srv.state.calls("Login") == []


def test_tls_server_only(cfg, pki):
    with F.FakeServer(pki) as srv:
        result = run("--target", srv.target, "--ca-cert", str(pki["ca"]), "login", "-u", "alice",
                     "--password-stdin", input="pw-alice\n")
        assert result.exit_code == 0, result.stderr
        assert tokens(cfg)["profiles"]["default"]["ca_cert"] == str(pki["ca"])
        assert run("whoami").exit_code == 0  # the stored target and CA are used


def test_is_loopback():
    for target in ("127.0.0.1:7443", "localhost:1", "[::1]:7443", "unix:/run/lyra.sock", "127.0.0.2:1"):
        assert _is_loopback(target), target
    for target in ("10.0.0.5:7443", "lyra.example:7443", "[2001:db8::1]:7443"):
        assert not _is_loopback(target), target
