"""Sign-in, sessions and refresh-token rotation; turning an access token into a Principal.

* **Login** checks the password (Argon2id) and opens a *session*: a row in ``sessions`` with an
  opaque refresh token (``secrets.token_urlsafe(32)``, 256 bits) of which only the SHA-256 is
  stored. It returns a :class:`TokenPair`: a short-lived access JWT (see
  :mod:`appliance.security.tokens`) plus the refresh token. A wrong username and a wrong
  password raise the *same* :class:`AuthenticationFailed`, and an unknown username is verified
  against a dummy hash so both take the same time.
* **Refresh** rotates: the session keeps its id, its current hash is replaced by the new
  token's and the spent hash moves to ``session_refresh_history``. Presenting a spent token
  again is *reuse* (a stolen token raced its owner): the whole session is revoked, so the
  token the legitimate rotation returned stops working too. Rotation is strict: a client that
  retries a refresh whose answer it lost also revokes its session and must sign in again.
* Sessions slide: each refresh extends ``expires_ns`` by ``refresh_ttl_s`` (7 days), capped at
  ``max_session_s`` (30 days) after login.
* **authenticate** verifies the JWT *and* reads the session and user, so logout, revocation,
  disabling and role changes take effect at once rather than when the token expires. The role
  in the returned :class:`Principal` is the user's current role.

Journal events (aggregate ``"session"``, aggregate id = session id), never with a token or hash:

================  ==========================================================
SessionCreated    {session_id, user_id, username, expires_ns}
SessionRefreshed  {session_id, user_id, expires_ns}
SessionRevoked    {session_id, user_id, reason}  reason: logout | refresh_reuse | admin
================  ==========================================================

Threading: call from the engine's thread/loop (single writer). :meth:`AuthService.login_async`
runs the Argon2 verification (~50-100 ms, releases the GIL) in a worker thread so the event
loop is not blocked, and does its database work on the calling thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import uuid
from dataclasses import dataclass, field

from appliance.engine.clock import NS_PER_SECOND, Clock
from appliance.model.errors import LyraError, PreconditionError
from appliance.security.passwords import PasswordCheck, generate_password, hash_password, verify_password
from appliance.security.permissions import ROLE_PERMISSIONS, has_permission
from appliance.security.tokens import InvalidToken, TokenSigner
from appliance.security.users import ADMIN_ROLE, MAX_PASSWORD_LENGTH, User, UserStore, unit_of_work
from appliance.store.db import Database
from appliance.store.journal import Journal

DEFAULT_REFRESH_TTL_S = 7 * 24 * 3600
DEFAULT_MAX_SESSION_S = 30 * 24 * 3600
MAX_REFRESH_TOKEN_LENGTH = 256

LOGIN_FAILED_MESSAGE = "invalid username or password"
REFRESH_FAILED_MESSAGE = "refresh token is invalid, expired or revoked"
REFRESH_REUSED_MESSAGE = "refresh token was already used; the session has been revoked, sign in again"


class AuthenticationFailed(LyraError):
    """Credentials or a refresh token were not accepted (maps to UNAUTHENTICATED).

    The message is safe to show and deliberately does not say whether the username or the
    password was wrong.
    """


@dataclass(frozen=True, slots=True)
class TokenPair:
    """The answer to login and refresh. Tokens are bearer secrets: not in repr.

    Attributes:
        access: access JWT, for ``authorization: Bearer <access>``.
        refresh: opaque single-use refresh token.
        access_expires_ns: when ``access`` expires, ns since the epoch.
        role: the user's role.
        username: the user's name.
        session_id: the session both tokens belong to.
        refresh_expires_ns: when the session (and ``refresh``) expires unless refreshed.
    """

    access: str = field(repr=False)
    refresh: str = field(repr=False)
    access_expires_ns: int
    role: str
    username: str
    session_id: str = ""
    refresh_expires_ns: int = 0


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of an RPC.

    Attributes:
        user_id, username, role: the user as it is *now* in the database.
        session_id: the session of the access token.
    """

    user_id: str
    username: str
    role: str
    session_id: str

    @property
    def permissions(self) -> frozenset[str]:
        return ROLE_PERMISSIONS.get(self.role, frozenset())

    def has(self, permission: str) -> bool:
        return has_permission(self.role, permission)


def hash_refresh_token(token: str) -> str:
    """SHA-256 hex of a refresh token (what ``sessions`` stores). The token has 256 bits of
    entropy, so a fast unsalted hash is enough: the stored value cannot be brute-forced."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class AuthService:
    """Login, refresh, logout and access-token authentication.

    Args:
        db: the database.
        journal: session events are journaled in the same transaction.
        users: the account store (its ``password_params`` are used for verification too).
        signer: issues and verifies access tokens.
        clock: time source for sessions (the signer has its own, normally the same).
        refresh_ttl_s: idle lifetime of a session/refresh token in seconds (7 days).
        max_session_s: absolute lifetime of a session after login (30 days).

    Raises:
        ValueError: a non-positive lifetime.
    """

    def __init__(
        self,
        db: Database,
        journal: Journal,
        users: UserStore,
        signer: TokenSigner,
        clock: Clock,
        refresh_ttl_s: int = DEFAULT_REFRESH_TTL_S,
        *,
        max_session_s: int = DEFAULT_MAX_SESSION_S,
    ) -> None:
        if refresh_ttl_s < 1 or max_session_s < 1:
            raise ValueError("refresh_ttl_s and max_session_s must be >= 1")
        self.db = db
        self.journal = journal
        self.users = users
        self.signer = signer
        self.clock = clock
        self.refresh_ttl_ns = int(refresh_ttl_s) * NS_PER_SECOND
        self.max_session_ns = int(max_session_s) * NS_PER_SECOND
        # Verified against when the username is unknown, so timing does not reveal it.
        self._dummy_hash = hash_password(secrets.token_urlsafe(24), params=users.password_params)

    # -- login ----------------------------------------------------------------------------
    def login(self, username: str, password: str) -> TokenPair:
        """Check credentials and open a session.

        Returns:
            :class:`TokenPair`.

        Raises:
            AuthenticationFailed: unknown user, wrong password or disabled user (one message).
        """
        user, password_hash = self._login_lookup(username, password)
        check = verify_password(password_hash, password if isinstance(password, str) else "", params=self.users.password_params)
        return self._login_finish(user, password, check)

    async def login_async(self, username: str, password: str) -> TokenPair:
        """:meth:`login` with the Argon2 verification in a worker thread (for grpc.aio handlers).

        Raises:
            AuthenticationFailed: as :meth:`login`.
        """
        user, password_hash = self._login_lookup(username, password)
        check = await asyncio.to_thread(
            verify_password, password_hash, password if isinstance(password, str) else "", params=self.users.password_params
        )
        return self._login_finish(user, password, check)

    def _login_lookup(self, username: str, password: str) -> tuple[User | None, str]:
        user = self.users.find_by_username(username) if isinstance(username, str) and len(username) <= 64 else None
        password_hash = self.users.password_hash(user.user_id) if user is not None else None
        if user is None or password_hash is None or not isinstance(password, str) or len(password) > MAX_PASSWORD_LENGTH:
            return None, self._dummy_hash
        return user, password_hash

    def _login_finish(self, user: User | None, password: str, check: PasswordCheck) -> TokenPair:
        if user is None or not check.ok:
            raise AuthenticationFailed(LOGIN_FAILED_MESSAGE)
        user = self.users.find_by_username(user.username)  # re-read: login_async awaited in between
        if user is None or user.disabled:
            raise AuthenticationFailed(LOGIN_FAILED_MESSAGE)
        if check.needs_rehash:
            self.users.replace_hash_after_login(user.user_id, hash_password(password, params=self.users.password_params))
        now = self.clock.now_ns()
        session_id = str(uuid.uuid4())
        refresh = secrets.token_urlsafe(32)
        expires_ns = now + min(self.refresh_ttl_ns, self.max_session_ns)
        with unit_of_work(self.db, self.journal):
            self.db.execute(
                "INSERT INTO sessions(session_id, user_id, refresh_hash, created_ns, expires_ns, revoked, last_refresh_ns) VALUES (?,?,?,?,?,0,?)",
                (session_id, user.user_id, hash_refresh_token(refresh), now, expires_ns, now),
            )
            self.journal.append(
                now, "SessionCreated", "session", session_id,
                {"session_id": session_id, "user_id": user.user_id, "username": user.username, "expires_ns": expires_ns},
            )
        access = self.signer.issue(user_id=user.user_id, username=user.username, role=user.role, session_id=session_id)
        return TokenPair(access.token, refresh, access.expires_ns, user.role, user.username, session_id, expires_ns)

    # -- refresh --------------------------------------------------------------------------
    def refresh(self, refresh_token: str) -> TokenPair:
        """Rotate ``refresh_token``: a new pair for the same session; the old token is spent.

        Raises:
            AuthenticationFailed: unknown, expired or revoked token, disabled user; or a spent
                token (reuse), in which case the session is revoked first (committed).
        """
        if not isinstance(refresh_token, str) or not refresh_token or len(refresh_token) > MAX_REFRESH_TOKEN_LENGTH:
            raise AuthenticationFailed(REFRESH_FAILED_MESSAGE)
        token_hash = hash_refresh_token(refresh_token)
        now = self.clock.now_ns()
        row = self.db.query_one(
            "SELECT s.session_id, s.user_id, s.created_ns, s.expires_ns, s.revoked, u.username, u.role, u.disabled "
            "FROM sessions s JOIN users u ON u.user_id = s.user_id WHERE s.refresh_hash = ?",
            (token_hash,),
        )
        if row is None:
            spent = self.db.query_one(
                "SELECT h.session_id, s.user_id, s.revoked FROM session_refresh_history h "
                "JOIN sessions s ON s.session_id = h.session_id WHERE h.refresh_hash = ?",
                (token_hash,),
            )
            if spent is None:
                raise AuthenticationFailed(REFRESH_FAILED_MESSAGE)
            session_id, user_id, revoked = spent
            if revoked:
                raise AuthenticationFailed(REFRESH_FAILED_MESSAGE)
            with unit_of_work(self.db, self.journal):
                self._revoke(session_id, user_id, "refresh_reuse", now)
            raise AuthenticationFailed(REFRESH_REUSED_MESSAGE)

        session_id, user_id, created_ns, expires_ns, revoked, username, role, disabled = row
        if revoked or disabled or now >= expires_ns:
            raise AuthenticationFailed(REFRESH_FAILED_MESSAGE)
        new_refresh = secrets.token_urlsafe(32)
        new_expires_ns = min(now + self.refresh_ttl_ns, created_ns + self.max_session_ns)
        with unit_of_work(self.db, self.journal):
            self.db.execute(
                "INSERT INTO session_refresh_history(refresh_hash, session_id, rotated_ns) VALUES (?,?,?)",
                (token_hash, session_id, now),
            )
            self.db.execute(
                "UPDATE sessions SET refresh_hash = ?, expires_ns = ?, last_refresh_ns = ? WHERE session_id = ?",
                (hash_refresh_token(new_refresh), new_expires_ns, now, session_id),
            )
            self.journal.append(
                now, "SessionRefreshed", "session", session_id,
                {"session_id": session_id, "user_id": user_id, "expires_ns": new_expires_ns},
            )
        access = self.signer.issue(user_id=user_id, username=username, role=role, session_id=session_id)
        return TokenPair(access.token, new_refresh, access.expires_ns, role, username, session_id, new_expires_ns)

    # -- logout / revocation --------------------------------------------------------------
    def logout(self, refresh_token: str, *, user_id: str | None = None) -> bool:
        """Revoke the session ``refresh_token`` (current or spent) belongs to.

        Args:
            refresh_token: the session's refresh token.
            user_id: when given (the caller's principal), only a session of that user is revoked.

        Returns:
            True if a live session was revoked; False for an unknown token, a session already
            revoked, or one of another user (no error: logout is idempotent and says nothing
            about other users' sessions).
        """
        if not isinstance(refresh_token, str) or not refresh_token or len(refresh_token) > MAX_REFRESH_TOKEN_LENGTH:
            return False
        token_hash = hash_refresh_token(refresh_token)
        row = self.db.query_one("SELECT session_id, user_id, revoked FROM sessions WHERE refresh_hash = ?", (token_hash,))
        if row is None:
            row = self.db.query_one(
                "SELECT s.session_id, s.user_id, s.revoked FROM session_refresh_history h "
                "JOIN sessions s ON s.session_id = h.session_id WHERE h.refresh_hash = ?",
                (token_hash,),
            )
        if row is None or row[2] or (user_id is not None and row[1] != user_id):
            return False
        with unit_of_work(self.db, self.journal):
            self._revoke(row[0], row[1], "logout", self.clock.now_ns())
        return True

    def revoke_session(self, session_id: str, reason: str = "admin") -> bool:
        """Revoke a session by id (e.g. logout with only an access token, or an admin action).

        Returns:
            True if a live session was revoked.
        """
        row = self.db.query_one("SELECT user_id, revoked FROM sessions WHERE session_id = ?", (session_id,))
        if row is None or row[1]:
            return False
        with unit_of_work(self.db, self.journal):
            self._revoke(session_id, row[0], reason, self.clock.now_ns())
        return True

    def _revoke(self, session_id: str, user_id: str, reason: str, now_ns: int) -> None:
        self.db.execute(
            "UPDATE sessions SET revoked = 1, revoked_ns = ?, revoke_reason = ? WHERE session_id = ? AND revoked = 0",
            (now_ns, reason, session_id),
        )
        self.journal.append(now_ns, "SessionRevoked", "session", session_id, {"session_id": session_id, "user_id": user_id, "reason": reason})

    # -- authentication of RPCs -----------------------------------------------------------
    def authenticate(self, access_token: str) -> Principal:
        """Verify an access token and that its session and user are still valid.

        Returns:
            :class:`Principal` with the user's *current* username and role.

        Raises:
            InvalidToken: the JWT is invalid or expired (see :class:`InvalidToken` reasons), or
                ``"session revoked"``, ``"session expired"``, ``"user disabled"``.
        """
        claims = self.signer.verify(access_token)
        row = self.db.query_one(
            "SELECT s.revoked, s.expires_ns, u.username, u.role, u.disabled "
            "FROM sessions s JOIN users u ON u.user_id = s.user_id WHERE s.session_id = ? AND s.user_id = ?",
            (claims.sid, claims.sub),
        )
        if row is None or row[0]:
            raise InvalidToken("session revoked")
        revoked, expires_ns, username, role, disabled = row
        if disabled:
            raise InvalidToken("user disabled")
        if self.clock.now_ns() >= expires_ns:
            raise InvalidToken("session expired")
        return Principal(claims.sub, username, role, claims.sid)

    # -- provisioning ---------------------------------------------------------------------
    def ensure_admin(self, username: str, password: str | None = None) -> tuple[bool, str | None]:
        """Make sure the admin account ``username`` exists (``lyrad init``). Idempotent.

        Args:
            username: the admin's name.
            password: its password; None generates one (24 characters).

        Returns:
            ``(created, generated_password)``: ``(True, pw)`` when created with a generated
            password (show it once, never log it), ``(True, None)`` when created with the given
            one, ``(False, None)`` when an admin of that name existed (its password is left
            unchanged).

        Raises:
            ValidationError: bad username or password.
            PreconditionError: a user of that name exists with another role.
        """
        existing = self.users.find_by_username(username)
        if existing is not None:
            if existing.role != ADMIN_ROLE:
                raise PreconditionError(f"user {username!r} exists with role {existing.role!r}, not admin")
            return False, None
        generated = generate_password() if password is None else None
        self.users.create_user(username, generated if generated is not None else password, ADMIN_ROLE)
        return True, generated
