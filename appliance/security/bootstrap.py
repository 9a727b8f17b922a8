"""Builds the authentication services from the database and the configuration (composition helper
shared by ``lyrad init`` and ``lyrad run``)."""

from __future__ import annotations

from appliance.config import LyraConfig
from appliance.engine.clock import LiveClock
from appliance.security.auth import AuthService
from appliance.security.tokens import TokenSigner, load_or_create_signing_key
from appliance.security.users import UserStore
from appliance.store.db import Database
from appliance.store.journal import Journal


def open_auth(db: Database, journal: Journal, config: LyraConfig, clock: LiveClock | None = None) -> AuthService:
    """An AuthService on ``db``; creates the token signing key on first use.

    Security uses wall-clock time (a LiveClock) even while the market replays on a SimClock:
    token expiry is about real time.
    """
    clock = clock or LiveClock()
    with db.transaction():
        key = load_or_create_signing_key(db, clock)
    journal.flush_committed()
    signer = TokenSigner.from_signing_key(key, clock, ttl_s=config.auth.access_token_ttl_s)
    users = UserStore(db, journal, clock)
    return AuthService(db, journal, users, signer, clock, refresh_ttl_s=config.auth.refresh_token_ttl_s)
