"""Builds the authentication services from the database and the configuration (composition helper
shared by ``lyrad init``, ``lyrad user add`` and ``lyrad run``)."""

from __future__ import annotations

from appliance.config import LyraConfig
from appliance.engine.clock import LiveClock
from appliance.security.auth import AuthService
from appliance.security.authkey import load_or_create_auth_key
from appliance.security.ratelimit import LockoutPolicy
from appliance.security.tokens import TokenSigner, load_or_create_signing_key
from appliance.security.users import UserStore
from appliance.store.db import Database
from appliance.store.journal import Journal


def open_auth(
    db: Database, journal: Journal, config: LyraConfig, clock: LiveClock | None = None, *, auth_key: bytes | None = None
) -> AuthService:
    """An AuthService on ``db`` configured from ``config.auth``.

    On first use this creates the auth key file ``<data_dir>/auth.key`` (mode 0600) and the
    token signing key (stored encrypted under the auth key; a plaintext key from an older
    schema is encrypted in place).

    Security uses wall-clock time (a LiveClock) even while the market replays on a SimClock:
    token expiry is about real time.

    Args:
        db, journal: the appliance database and its journal.
        config: ``auth.*`` and ``storage.data_dir`` are used.
        clock: defaults to a new LiveClock.
        auth_key: the 32-byte auth key; default: loaded from (or created in) the data folder.

    Raises:
        AuthKeyError: ``auth.key`` is group/world accessible or malformed.
        IntegrityError: the signing key does not decrypt with this auth key.
        ValueError: ``auth.totp_required_roles`` names an unknown role.
    """
    clock = clock or LiveClock()
    a = config.auth
    if auth_key is None:
        auth_key = load_or_create_auth_key(config.storage.data_dir)
    with db.transaction():
        key = load_or_create_signing_key(db, clock, auth_key)
    journal.flush_committed()
    signer = TokenSigner.from_signing_key(key, clock, ttl_s=a.access_token_ttl_s)
    users = UserStore(db, journal, clock)
    return AuthService(
        db, journal, users, signer, clock,
        refresh_ttl_s=a.refresh_token_ttl_s,
        max_session_s=a.absolute_lifetime_s,
        idle_timeout_s=a.idle_timeout_s,
        totp_required_roles=a.totp_required_roles,
        lockout=LockoutPolicy(threshold=a.lockout_threshold, max_failures=a.lockout_max, lockout_s=a.lockout_s),
        auth_key=auth_key,
    )
