"""VaultService: thin translation between vault.proto and :class:`appliance.security.vault.Vault`.

Every call runs on the engine (``await app.engine.call(...)``, the single writer). No RPC ever
returns a secret: responses carry metadata only (:class:`~appliance.security.vault.CredentialInfo`,
:class:`~appliance.security.vault.VaultStatus`); ``Vault.reveal`` is never called here.

String sizes are checked before anything else (INVALID_ARGUMENT naming the field), so an
oversized passphrase never reaches Argon2id. Wrong passphrases are run through
:func:`~appliance.security.vault.commit_failed_attempts` so that their count commits even though
the call fails.
"""

from __future__ import annotations

import logging

from appliance.model.errors import LyraError, ValidationError
from appliance.security.vault import (
    MAX_LABEL_LENGTH,
    MAX_PASSPHRASE_LENGTH,
    MAX_SECRET_LENGTH,
    SECRET_FIELDS,
    CredentialInfo,
    Vault,
    VaultState,
    VaultStatus,
    commit_failed_attempts,
)
from appliance.server import convert as cv
from appliance.server.interceptors import current_principal_or_none
from lyra.v1 import vault_pb2, vault_pb2_grpc

log = logging.getLogger("lyra.vault")

_STATE = {
    VaultState.UNINITIALIZED: vault_pb2.VAULT_STATE_UNINITIALIZED,
    VaultState.SEALED: vault_pb2.VAULT_STATE_SEALED,
    VaultState.UNSEALED: vault_pb2.VAULT_STATE_UNSEALED,
}
_MAX_ID_LENGTH = 128
_MAX_VENUE_LENGTH = 64


def _actor() -> str:
    principal = current_principal_or_none()
    return principal.username if principal is not None else "system"


def _check_size(field: str, value: str, limit: int) -> str:
    """INVALID_ARGUMENT naming ``field`` if ``value`` is longer than ``limit`` characters (never shows it)."""
    if len(value) > limit:
        raise ValidationError(field, f"must be at most {limit} characters")
    return value


def _secrets(message: vault_pb2.CredentialSecrets) -> dict[str, str]:
    return {name: _check_size(f"secrets.{name}", getattr(message, name), MAX_SECRET_LENGTH) for name in SECRET_FIELDS}


def status_to_pb(status: VaultStatus) -> vault_pb2.VaultStatus:
    pb = vault_pb2.VaultStatus(state=_STATE[status.state], data_key_version=status.data_key_version, kdf=status.kdf,
                               credentials=status.credentials, stale_credentials=status.stale_credentials)
    if status.unsealed_since_ns is not None:
        pb.unsealed_since.CopyFrom(cv.ts(status.unsealed_since_ns))
    return pb


def credential_to_pb(info: CredentialInfo) -> vault_pb2.Credential:
    return vault_pb2.Credential(
        credential_id=info.credential_id, venue=info.venue, label=info.label, create_time=cv.ts(info.created_ns),
        rotate_time=cv.ts(info.rotated_ns), fingerprint=info.fingerprint, version=info.version,
        rotation_pending=info.rotation_pending, pending_fingerprint=info.pending_fingerprint,
        age_days=info.age_days, stale=info.stale, fields=list(info.fields),
    )


class VaultServicer(vault_pb2_grpc.VaultServiceServicer):
    def __init__(self, app) -> None:
        self.app = app
        self.vault: Vault = app.vault

    async def _call(self, fn, *args, **kwargs):
        return await self.app.engine.call(fn, *args, **kwargs)

    # -- vault -------------------------------------------------------------------------------
    async def GetVaultStatus(self, request, context):
        return status_to_pb(await self._call(self.vault.status))

    async def InitializeVault(self, request, context):
        passphrase = _check_size("passphrase", request.passphrase, MAX_PASSPHRASE_LENGTH)
        return status_to_pb(await self._call(self.vault.initialize, passphrase, actor=_actor()))

    async def UnsealVault(self, request, context):
        passphrase = _check_size("passphrase", request.passphrase, MAX_PASSPHRASE_LENGTH)
        attempt = await self._call(commit_failed_attempts, self.vault.unseal, passphrase, actor=_actor())
        return status_to_pb(attempt.result())

    async def SealVault(self, request, context):
        return status_to_pb(await self._call(self.vault.seal, actor=_actor()))

    async def ChangeVaultPassphrase(self, request, context):
        current = _check_size("current_passphrase", request.current_passphrase, MAX_PASSPHRASE_LENGTH)
        new = _check_size("new_passphrase", request.new_passphrase, MAX_PASSPHRASE_LENGTH)
        attempt = await self._call(commit_failed_attempts, self.vault.change_passphrase, current, new, actor=_actor())
        return status_to_pb(attempt.result())

    async def RotateDataKey(self, request, context):
        return status_to_pb(await self._call(self.vault.rotate_data_key, actor=_actor()))

    # -- credentials -------------------------------------------------------------------------
    async def CreateCredential(self, request, context):
        venue = _check_size("venue", request.venue, _MAX_VENUE_LENGTH)
        label = _check_size("label", request.label, MAX_LABEL_LENGTH)
        secrets = _secrets(request.secrets)
        return credential_to_pb(await self._call(self.vault.create_credential, venue, label, secrets, actor=_actor()))

    async def ListCredentials(self, request, context):
        venue = _check_size("venue", request.venue, _MAX_VENUE_LENGTH)
        infos = await self._call(self.vault.list_credentials, venue)
        return vault_pb2.ListCredentialsResponse(credentials=[credential_to_pb(i) for i in infos])

    async def GetCredential(self, request, context):
        credential_id = _check_size("credential_id", request.credential_id, _MAX_ID_LENGTH)
        return credential_to_pb(await self._call(self.vault.get_credential, credential_id))

    async def RotateCredential(self, request, context):
        credential_id = _check_size("credential_id", request.credential_id, _MAX_ID_LENGTH)
        secrets = _secrets(request.secrets)
        return credential_to_pb(await self._call(self.vault.rotate_credential, credential_id, secrets, actor=_actor()))

    async def ConfirmCredentialRotation(self, request, context):
        credential_id = _check_size("credential_id", request.credential_id, _MAX_ID_LENGTH)
        return credential_to_pb(await self._call(self.vault.confirm_rotation, credential_id, actor=_actor()))

    async def AbortCredentialRotation(self, request, context):
        credential_id = _check_size("credential_id", request.credential_id, _MAX_ID_LENGTH)
        return credential_to_pb(await self._call(self.vault.abort_rotation, credential_id, actor=_actor()))

    async def DeleteCredential(self, request, context):
        credential_id = _check_size("credential_id", request.credential_id, _MAX_ID_LENGTH)
        await self._call(self.vault.delete_credential, credential_id, actor=_actor())
        return vault_pb2.DeleteCredentialResponse()


def _unseal_at_start(app, vault: Vault, key_file) -> None:
    """Unattended boot: unseal from ``key_file``; log the outcome (never a secret); stay sealed on failure."""
    if vault.state is not VaultState.SEALED:
        if vault.state is VaultState.UNINITIALIZED:
            log.warning("vault.key_file is set (%s) but the vault is not initialized yet; nothing to unseal", key_file)
        return
    try:
        app.engine.execute_now(vault.unseal_with_key_file, key_file)
    except LyraError as exc:  # messages of vault errors never contain a secret
        log.error("vault stays sealed: unseal from key file %s failed: %s", key_file, exc)
    else:
        log.info("vault unsealed from key file %s", key_file)


def register(server, app) -> None:
    """Build ``app.vault`` (unless set already), unseal it from ``vault.key_file`` when configured,
    and add the VaultService servicer to ``server``."""
    vault = getattr(app, "vault", None)
    if vault is None:
        vault = Vault(app.db, app.journal, app.wall_clock, max_age_days=app.config.vault.credential_max_age_days,
                      unseal_max_failures=app.config.vault.unseal_max_failures)
        app.vault = vault
    if app.config.vault.key_file is not None:
        _unseal_at_start(app, vault, app.config.vault.key_file)
    vault_pb2_grpc.add_VaultServiceServicer_to_server(VaultServicer(app), server)
