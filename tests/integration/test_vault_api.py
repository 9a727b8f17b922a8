"""The vault API end to end on a real server: initialize, store a credential (metadata only comes
back), seal (FAILED_PRECONDITION with the clear message), wrong passphrases (INVALID_ARGUMENT, then
RESOURCE_EXHAUSTED even for the right one), RBAC (a viewer cannot unseal), a restart boots sealed,
and a configured key file unseals at boot."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from pathlib import Path

import grpc
import pytest

from appliance.security.crypto import ARGON2ID_TEST_ONLY_FAST
from appliance.security.vault import SEALED_MESSAGE
from lyra.v1 import vault_pb2, vault_pb2_grpc

_spec = importlib.util.spec_from_file_location("lyra_integration_harness_vault", Path(__file__).with_name("conftest.py"))
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)

PW = harness.PASSWORDS
VAULT_PASSPHRASE = "integration vault passphrase"
WRONG_PASSPHRASE = "not the vault passphrase!"
SECRETS = {"api_key": "INTEG-BINANCE-APIKEY-5f4e3d2c1b", "secret": "INTEG-BINANCE-SECRET-0a9b8c7d6e"}
MAX_FAILURES = 3


class VaultClient:
    """Raw VaultService stub with a user's access token (the SDK has no vault methods yet)."""

    def __init__(self, running, username: str) -> None:
        self.sdk = running.client(username, PW[username])
        self.channel = grpc.insecure_channel(running.target)
        self.stub = vault_pb2_grpc.VaultServiceStub(self.channel)

    def __getattr__(self, rpc: str):
        method = getattr(self.stub, rpc)

        def call(request):
            return method(request, metadata=[("authorization", f"Bearer {self.sdk.access_token}")], timeout=30)
        return call

    def close(self) -> None:
        self.channel.close()
        self.sdk.close()


def _fast_kdf(running) -> None:
    """Tests only: cheap Argon2id for new passphrase wraps (like the harness' password params)."""
    running.call(setattr, running.app.vault, "kdf_params", ARGON2ID_TEST_ONLY_FAST)


@pytest.fixture
def vault_appliance(appliance_factory):
    running = appliance_factory(extra=f"[vault]\nunseal_max_failures = {MAX_FAILURES}\n")
    for role in ("admin", "viewer"):
        running.add_user(role, role)
    _fast_kdf(running)
    return running


def _code(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value


def _assert_no_secret(message, *extra: str) -> None:
    blob = message.SerializeToString()
    for value in (*SECRETS.values(), VAULT_PASSPHRASE, *extra):
        assert value.encode() not in blob


def test_vault_lifecycle_over_the_api(vault_appliance, caplog):
    caplog.set_level(logging.INFO)
    admin = VaultClient(vault_appliance, "admin")
    viewer = VaultClient(vault_appliance, "viewer")
    try:
        status = admin.GetVaultStatus(vault_pb2.GetVaultStatusRequest())
        assert status.state == vault_pb2.VAULT_STATE_UNINITIALIZED

        err = _code(lambda: admin.InitializeVault(vault_pb2.InitializeVaultRequest(passphrase="x" * 1025)))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith("passphrase:")

        status = admin.InitializeVault(vault_pb2.InitializeVaultRequest(passphrase=VAULT_PASSPHRASE))
        assert status.state == vault_pb2.VAULT_STATE_UNSEALED
        assert (status.data_key_version, status.kdf) == (1, "argon2id t=1 m=64KiB p=1")
        assert status.HasField("unsealed_since")

        created = admin.CreateCredential(vault_pb2.CreateCredentialRequest(
            venue="binance", label="main", secrets=vault_pb2.CredentialSecrets(**SECRETS)))
        assert created.venue == "binance" and created.label == "main" and created.version == 1
        assert created.fingerprint == hashlib.sha256(SECRETS["api_key"].encode()).hexdigest()[:12]
        assert list(created.fields) == ["api_key", "secret"] and not created.stale and created.age_days == 0
        _assert_no_secret(created)
        listed = admin.ListCredentials(vault_pb2.ListCredentialsRequest())
        assert [c.credential_id for c in listed.credentials] == [created.credential_id]
        _assert_no_secret(listed)
        _assert_no_secret(admin.GetCredential(vault_pb2.GetCredentialRequest(credential_id=created.credential_id)))

        err = _code(lambda: admin.CreateCredential(vault_pb2.CreateCredentialRequest(
            venue="binance", label="big", secrets=vault_pb2.CredentialSecrets(api_key="k", secret="s" * 4097))))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith("secrets.secret:")

        # a viewer may not unseal or seal
        err = _code(lambda: viewer.UnsealVault(vault_pb2.UnsealVaultRequest(passphrase=VAULT_PASSPHRASE)))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        err = _code(lambda: viewer.SealVault(vault_pb2.SealVaultRequest()))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED

        assert admin.SealVault(vault_pb2.SealVaultRequest()).state == vault_pb2.VAULT_STATE_SEALED
        err = _code(lambda: admin.CreateCredential(vault_pb2.CreateCredentialRequest(
            venue="okx", label="main", secrets=vault_pb2.CredentialSecrets(api_key="k" * 12, secret="s" * 12))))
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and err.details() == SEALED_MESSAGE
        # metadata stays readable while sealed
        assert len(admin.ListCredentials(vault_pb2.ListCredentialsRequest()).credentials) == 1

        for attempt in range(1, MAX_FAILURES + 1):
            err = _code(lambda: admin.UnsealVault(vault_pb2.UnsealVaultRequest(passphrase=WRONG_PASSPHRASE)))
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, attempt
            assert err.details() == "passphrase: does not unseal the vault"
        err = _code(lambda: admin.UnsealVault(vault_pb2.UnsealVaultRequest(passphrase=VAULT_PASSPHRASE)))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # even the right passphrase, for now
        retry_after = dict(err.trailing_metadata() or ()).get("lyra-retry-after-s")
        assert retry_after is not None and 0 < float(retry_after) <= 30
        assert admin.GetVaultStatus(vault_pb2.GetVaultStatusRequest()).state == vault_pb2.VAULT_STATE_SEALED

        # the failures were committed (journal) and nothing logged a secret
        types = vault_appliance.call(lambda: [e.type for e in vault_appliance.app.journal.iter_all()])
        assert types.count("VaultUnsealFailed") == MAX_FAILURES
        for record in caplog.records:
            text = record.getMessage()
            assert all(v not in text for v in (*SECRETS.values(), VAULT_PASSPHRASE, WRONG_PASSPHRASE))
        # nor did anything (vault, journal, audit log ...) write one to the database or its WAL
        db_path = vault_appliance.config.db_path
        for path in (db_path, db_path.with_name(db_path.name + "-wal")):
            if path.exists():
                blob = path.read_bytes()
                assert all(v.encode() not in blob for v in (*SECRETS.values(), VAULT_PASSPHRASE, WRONG_PASSPHRASE))
    finally:
        admin.close()
        viewer.close()


class DataHome:
    """Appliances started one after another on the same data dir, each stopped exactly once."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.running: list = []

    def start(self, extra: str = ""):
        running = harness.RunningAppliance(harness.write_config(self.tmp, extra=extra))
        self.running.append(running)
        _fast_kdf(running)
        return running

    def stop(self, running) -> None:
        self.running.remove(running)
        running.stop()


@pytest.fixture
def home(tmp_path):
    h = DataHome(tmp_path)
    yield h
    for running in list(h.running):
        h.stop(running)


def test_restart_boots_sealed_and_a_key_file_unseals_at_boot(home, tmp_path):
    first = home.start()
    first.add_user("admin", "admin")
    admin = VaultClient(first, "admin")
    admin.InitializeVault(vault_pb2.InitializeVaultRequest(passphrase=VAULT_PASSPHRASE))
    created = admin.CreateCredential(vault_pb2.CreateCredentialRequest(
        venue="binance", label="main", secrets=vault_pb2.CredentialSecrets(**SECRETS)))
    key_file = tmp_path / "vault.key"
    first.call(first.app.vault.create_key_file, key_file)
    admin.close()
    home.stop(first)

    # no key file configured: the appliance boots sealed; the passphrase unseals it
    second = home.start()
    admin = VaultClient(second, "admin")
    assert admin.GetVaultStatus(vault_pb2.GetVaultStatusRequest()).state == vault_pb2.VAULT_STATE_SEALED
    status = admin.UnsealVault(vault_pb2.UnsealVaultRequest(passphrase=VAULT_PASSPHRASE))
    assert status.state == vault_pb2.VAULT_STATE_UNSEALED and status.credentials == 1
    admin.close()
    home.stop(second)

    # key file configured: unsealed at boot, secrets readable by the appliance itself
    third = home.start(extra=f'[vault]\nkey_file = "{key_file}"\n')
    admin = VaultClient(third, "admin")
    assert admin.GetVaultStatus(vault_pb2.GetVaultStatusRequest()).state == vault_pb2.VAULT_STATE_UNSEALED
    revealed = third.call(third.app.vault.reveal, created.credential_id)
    assert revealed.secret == SECRETS["secret"]
    admin.close()
