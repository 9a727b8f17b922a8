"""Sign-in, sessions, refresh-token rotation, TOTP second factor; turning a bearer token into a
Principal.

* **Login** checks the password (Argon2id) and, for a user with TOTP enrolled, a TOTP code
  (RFC 6238, :mod:`appliance.security.totp`) or a one-time recovery code; then opens a
  *session*: a row in ``sessions`` with an opaque refresh token (``secrets.token_urlsafe(32)``,
  256 bits) of which only the SHA-256 is stored. It returns a :class:`TokenPair`: a short-lived
  access JWT (see :mod:`appliance.security.tokens`) plus the refresh token. A wrong username, a
  wrong password and a wrong second factor raise the *same* :class:`AuthenticationFailed`, and an
  unknown username is verified against a dummy hash so both take the same time. An enrolled
  user without a code gets :class:`MfaRequired` (UNAUTHENTICATED + ``lyra-mfa: required``).
* **Throttling**: every login (and every re-authentication with the current password) goes
  through :class:`~appliance.security.ratelimit.LoginThrottle`: backoff then lockout per
  username and per peer host, counters persisted; refused attempts raise
  :class:`~appliance.model.errors.RateLimitedError` before the password is looked at.
* **MFA enrollment required**: a user whose role is in ``totp_required_roles`` and who has not
  enrolled gets a session marked ``mfa_pending`` (``TokenPair.mfa_pending``); the interceptor
  lets such a session call only :data:`~appliance.security.permissions.MFA_PENDING_ALLOWED_METHODS`.
  Confirming enrollment clears the mark on that session.
* **Refresh** rotates: the session keeps its id, its current hash is replaced by the new token's
  and the spent hash moves to ``session_refresh_history``. Presenting a spent token again is
  *reuse* (a stolen token raced its owner): the whole session is revoked (committed) and
  :class:`AuthenticationFailed` raised.
* **Session lifetime**: a session ends when the first of these is reached: its sliding expiry
  (``refresh_ttl_s`` after the last refresh), its absolute lifetime (``max_session_s`` =
  ``auth.absolute_lifetime_s`` after login), or ``idle_timeout_s`` without any call (access-token
  use or refresh). Use is tracked exactly in memory and written to ``sessions.last_used_ns`` at
  most once a minute, so after a restart the idle clock may be up to a minute early.
* **authenticate** verifies the JWT *and* reads the session and user, so logout, revocation,
  disabling and role changes take effect at once rather than when the token expires. Tokens
  starting with ``lyst_`` are service-account tokens (:class:`~appliance.security.tokens.ServiceTokenStore`).

TOTP secrets are stored encrypted under the auth key (:mod:`appliance.security.authkey`):
database snapshots leave the box, the auth key file does not.

Journal events (aggregate ``"session"``, aggregate id = session id), never with a token or hash:

================  ==========================================================
SessionCreated    {session_id, user_id, username, expires_ns, mfa_pending, second_factor}
                  second_factor: none | totp | recovery_code
SessionRefreshed  {session_id, user_id, expires_ns}
SessionRevoked    {session_id, user_id, reason}
                  reason: logout | refresh_reuse | idle_timeout | admin
================  ==========================================================

and (aggregate ``"user"``): ``UserTotpEnrollmentStarted`` {user_id, username},
``UserTotpEnrolled`` {user_id, username}, ``UserTotpReset`` {user_id, username, sessions_revoked},
``RecoveryCodeUsed`` {user_id, username, remaining}.

Threading: call from the engine's loop thread. Methods that must *commit a failure* before
raising (login, refresh-token reuse, wrong current password, idle timeout) must run outside an
engine message (whose transaction a raised error rolls back): the servicers call them directly
on the loop thread, which is safe because engine messages never await (no interleaving).
``*_async`` variants run Argon2 (~50-100 ms, releases the GIL) in a worker thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Iterable

from appliance.engine.clock import NS_PER_SECOND, Clock
from appliance.model.errors import LyraError, NotFoundError, PreconditionError, ValidationError
from appliance.security import totp
from appliance.security.authkey import ephemeral_auth_key, keyed_hash, open_sealed, seal
from appliance.security.passwords import PasswordCheck, generate_password, hash_password, verify_password
from appliance.security.permissions import ROLE_PERMISSIONS, ServiceTokenForbidden, has_permission
from appliance.security.ratelimit import USER_SCOPE, LockoutPolicy, LoginAttempt, LoginThrottle
from appliance.security.tokens import LAST_USED_WRITE_INTERVAL_NS, InvalidToken, ServiceTokenStore, TokenSigner, is_service_token
from appliance.security.users import (
    ADMIN_ROLE,
    MAX_PASSWORD_LENGTH,
    USERNAME_PATTERN,
    User,
    UserStore,
    unit_of_work,
    validate_password,
)
from appliance.store.db import Database
from appliance.store.journal import Journal

DEFAULT_REFRESH_TTL_S = 7 * 24 * 3600
DEFAULT_MAX_SESSION_S = 30 * 24 * 3600
DEFAULT_IDLE_TIMEOUT_S = 3600
MAX_REFRESH_TOKEN_LENGTH = 256
TOTP_PENDING_TTL_S = 15 * 60
"""A started TOTP enrollment must be confirmed within 15 minutes."""

LOGIN_FAILED_MESSAGE = "invalid username or password"
MFA_REQUIRED_MESSAGE = "a TOTP code is required for this account: send totp_code (or a recovery_code)"
REFRESH_FAILED_MESSAGE = "refresh token is invalid, expired or revoked"
REFRESH_REUSED_MESSAGE = "refresh token was already used; the session has been revoked, sign in again"
SESSION_IDLE_MESSAGE = "session ended after a period without use; sign in again"
WRONG_CURRENT_PASSWORD_MESSAGE = "the current password is incorrect"
MFA_METADATA_KEY = "lyra-mfa"
MFA_METADATA_REQUIRED = "required"

USER_KIND = "user"
SERVICE_KIND = "service"

_TOTP_AD = "lyra-auth:totp:"
_TOTP_PENDING_AD = "lyra-auth:totp-pending:"
_RECOVERY_LABEL = "lyra-auth:recovery-code:"


class AuthenticationFailed(LyraError):
    """Credentials or a refresh token were not accepted (maps to UNAUTHENTICATED).

    The message is safe to show and deliberately does not say whether the username, the
    password or the second factor was wrong.
    """


class MfaRequired(AuthenticationFailed):
    """The password was right but the account has TOTP enrolled and no code was sent.

    The AuthService servicer answers UNAUTHENTICATED with trailing metadata
    ``lyra-mfa: required`` so that clients prompt for a code and retry.
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
        mfa_pending: the session may only enroll TOTP until enrollment is confirmed.
    """

    access: str = field(repr=False)
    refresh: str = field(repr=False)
    access_expires_ns: int
    role: str
    username: str
    session_id: str = ""
    refresh_expires_ns: int = 0
    mfa_pending: bool = False


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of an RPC.

    Attributes:
        user_id, username, role: the user as it is *now* in the database. For a service token:
            user_id ``""``, username ``"service:<token name>"``, role the token's role.
        session_id: the session of the access token, or the service token's id.
        kind: ``"user"`` (access JWT of a session) or ``"service"`` (service-account token).
        mfa_pending: the session must enroll TOTP before anything else.
    """

    user_id: str
    username: str
    role: str
    session_id: str
    kind: str = USER_KIND
    mfa_pending: bool = False

    @property
    def credential_id(self) -> str:
        """The session id or service-token id: what the API rate limit and the audit log key on."""
        return self.session_id

    @property
    def permissions(self) -> frozenset[str]:
        return ROLE_PERMISSIONS.get(self.role, frozenset())

    def has(self, permission: str) -> bool:
        return has_permission(self.role, permission)


@dataclass(frozen=True, slots=True)
class TotpEnrollment:
    """:meth:`AuthService.begin_totp_enrollment` answer; both fields are the secret (not in repr)."""

    otpauth_uri: str = field(repr=False)
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A session as administrators see it (no token, no hash).

    Attributes:
        session_id, user_id, username: whose.
        created_ns: login time; last_used_ns: last call (exact while this process runs).
        expires_ns: when it ends if unused from now on (min of sliding expiry, absolute
            lifetime and idle timeout), ns since the epoch.
        revoked: ended (logout, revocation, reuse, idle timeout).
        peer: client address at login.
        mfa_pending: limited to TOTP enrollment.
    """

    session_id: str
    user_id: str
    username: str
    created_ns: int
    last_used_ns: int
    expires_ns: int
    revoked: bool
    peer: str
    mfa_pending: bool


def hash_refresh_token(token: str) -> str:
    """SHA-256 hex of a refresh token (what ``sessions`` stores). The token has 256 bits of
    entropy, so a fast unsalted hash is enough: the stored value cannot be brute-forced."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _require_user_principal(principal: Principal, what: str) -> None:
    """Raises ServiceTokenForbidden: ``principal`` is a service token."""
    if principal.kind != USER_KIND:
        raise ServiceTokenForbidden(what)


class AuthService:
    """Login, refresh, logout, TOTP, sessions and bearer-token authentication.

    Args:
        db: the database.
        journal: session events are journaled in the same transaction.
        users: the account store (its ``password_params`` are used for verification too).
        signer: issues and verifies access tokens.
        clock: time source for sessions, TOTP and the login throttle.
        refresh_ttl_s: sliding lifetime of a session/refresh token in seconds (7 days).
        max_session_s: absolute lifetime of a session after login (``auth.absolute_lifetime_s``).
        idle_timeout_s: a session unused this long ends (``auth.idle_timeout_s``); None disables.
        totp_required_roles: roles whose sessions are ``mfa_pending`` until TOTP is enrolled.
        lockout: login backoff/lockout parameters.
        auth_key: 32-byte key encrypting TOTP secrets and keying recovery-code hashes
            (:func:`~appliance.security.authkey.load_or_create_auth_key`); None draws a random
            in-memory key (tests only: enrolled TOTP would not survive a restart).
        service_tokens: the service-token store (default: one on the same database).

    Raises:
        ValueError: a non-positive lifetime, or an unknown role in ``totp_required_roles``.
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
        idle_timeout_s: int | None = DEFAULT_IDLE_TIMEOUT_S,
        totp_required_roles: Iterable[str] = (),
        lockout: LockoutPolicy = LockoutPolicy(),
        auth_key: bytes | None = None,
        service_tokens: ServiceTokenStore | None = None,
    ) -> None:
        if refresh_ttl_s < 1 or max_session_s < 1 or (idle_timeout_s is not None and idle_timeout_s < 1):
            raise ValueError("refresh_ttl_s, max_session_s and idle_timeout_s must be >= 1")
        required = frozenset(totp_required_roles)
        unknown = required - set(ROLE_PERMISSIONS)
        if unknown:
            raise ValueError(f"totp_required_roles: unknown role(s) {sorted(unknown)}")
        self.db = db
        self.journal = journal
        self.users = users
        self.signer = signer
        self.clock = clock
        self.refresh_ttl_ns = int(refresh_ttl_s) * NS_PER_SECOND
        self.max_session_ns = int(max_session_s) * NS_PER_SECOND
        self.idle_timeout_ns = None if idle_timeout_s is None else int(idle_timeout_s) * NS_PER_SECOND
        self.totp_required_roles = required
        self.throttle = LoginThrottle(db, clock, lockout)
        self.service_tokens = service_tokens or ServiceTokenStore(db, journal, clock)
        self._auth_key = auth_key if auth_key is not None else ephemeral_auth_key()
        self._last_used: dict[str, int] = {}  # session id -> exact last use (ns); persisted lazily
        # Verified against when the username is unknown, so timing does not reveal it.
        self._dummy_hash = hash_password(secrets.token_urlsafe(24), params=users.password_params)

    # == login ===============================================================================
    def login(self, username: str, password: str, *, totp_code: str = "", recovery_code: str = "", peer: str = "") -> TokenPair:
        """Check credentials (and the second factor) and open a session.

        Args:
            username: ``[a-z0-9_.-]{3,64}``.
            password: up to 1024 characters.
            totp_code: six digits, required when the user has TOTP enrolled.
            recovery_code: instead of ``totp_code``: an unused recovery code.
            peer: client host (for per-peer throttling and the session record), "" unknown.

        Returns:
            :class:`TokenPair` (``mfa_pending`` set when the role requires TOTP and the user has
            not enrolled).

        Raises:
            ValidationError: a field is missing, too long or malformed (nothing counted).
            RateLimitedError: the username or peer is in backoff/lockout (password not checked).
            MfaRequired: the password is right, TOTP is enrolled and no code was sent.
            AuthenticationFailed: unknown user, wrong password, disabled user, wrong or reused
                code (one message; the failure is counted and committed).
        """
        attempt, user, password_hash = self._login_begin(username, password, totp_code, recovery_code, peer)
        with attempt:
            check = verify_password(password_hash, password, params=self.users.password_params)
            return self._login_finish(attempt, user, password, check, totp_code, recovery_code, peer)

    async def login_async(
        self, username: str, password: str, *, totp_code: str = "", recovery_code: str = "", peer: str = ""
    ) -> TokenPair:
        """:meth:`login` with the Argon2 verification in a worker thread (for grpc.aio handlers).

        Raises:
            As :meth:`login`.
        """
        attempt, user, password_hash = self._login_begin(username, password, totp_code, recovery_code, peer)
        with attempt:
            check = await asyncio.to_thread(verify_password, password_hash, password, params=self.users.password_params)
            return self._login_finish(attempt, user, password, check, totp_code, recovery_code, peer)

    @staticmethod
    def _validate_login(username: object, password: object, totp_code: object, recovery_code: object) -> None:
        if not isinstance(username, str) or not username:
            raise ValidationError("username", "is required")
        if not USERNAME_PATTERN.fullmatch(username):
            raise ValidationError("username", "must be 3 to 64 characters of a-z, 0-9, '_', '.', '-'")
        _check_password_field(password, "password")
        if not isinstance(totp_code, str) or not isinstance(recovery_code, str):
            raise ValidationError("totp_code", "must be a string")
        if totp_code and recovery_code:
            raise ValidationError("recovery_code", "send either totp_code or recovery_code, not both")
        if totp_code and not totp.is_code_format(totp_code):
            raise ValidationError("totp_code", f"must be {totp.DIGITS} digits")
        if recovery_code and totp.normalize_recovery_code(recovery_code) is None:
            raise ValidationError("recovery_code", "must look like xxxx-xxxx-xxxx-xxxx")

    def _login_begin(
        self, username: str, password: str, totp_code: str, recovery_code: str, peer: str
    ) -> tuple[LoginAttempt, User | None, str]:
        self._validate_login(username, password, totp_code, recovery_code)
        attempt = self.throttle.begin(username, peer or "")
        user = self.users.find_by_username(username)
        password_hash = self.users.password_hash(user.user_id) if user is not None else None
        if user is None or password_hash is None:
            return attempt, None, self._dummy_hash
        return attempt, user, password_hash

    def _login_finish(
        self, attempt: LoginAttempt, user: User | None, password: str, check: PasswordCheck,
        totp_code: str, recovery_code: str, peer: str,
    ) -> TokenPair:
        if user is None or not check.ok:
            attempt.failed()
            raise AuthenticationFailed(LOGIN_FAILED_MESSAGE)
        user = self.users.find_by_username(user.username)  # re-read: login_async awaited in between
        if user is None or user.disabled:
            attempt.failed()
            raise AuthenticationFailed(LOGIN_FAILED_MESSAGE)
        now = self.clock.now_ns()
        second_factor = "none"
        totp_step: int | None = None
        recovery_hash: str | None = None
        if user.totp_enrolled:
            if not totp_code and not recovery_code:
                attempt.abandon()  # right password: not a failure, not a success either
                raise MfaRequired(MFA_REQUIRED_MESSAGE)
            if totp_code:
                totp_step = self._match_totp(user, totp_code, now)
                second_factor = "totp"
                ok = totp_step is not None
            else:
                recovery_hash = self._match_recovery_code(user, recovery_code)
                second_factor = "recovery_code"
                ok = recovery_hash is not None
            if not ok:
                attempt.failed()
                raise AuthenticationFailed(LOGIN_FAILED_MESSAGE)
        if check.needs_rehash:
            self.users.replace_hash_after_login(user.user_id, hash_password(password, params=self.users.password_params))
        mfa_pending = user.role in self.totp_required_roles and not user.totp_enrolled
        session_id = str(uuid.uuid4())
        refresh = secrets.token_urlsafe(32)
        expires_ns = now + min(self.refresh_ttl_ns, self.max_session_ns)
        with unit_of_work(self.db, self.journal):
            if totp_step is not None:
                self.db.execute("UPDATE users SET totp_last_step = ? WHERE user_id = ?", (totp_step, user.user_id))
            if recovery_hash is not None:
                self.db.execute("UPDATE recovery_codes SET used_ns = ? WHERE user_id = ? AND code_hash = ?", (now, user.user_id, recovery_hash))
                remaining = self.db.scalar("SELECT COUNT(*) FROM recovery_codes WHERE user_id = ? AND used_ns IS NULL", (user.user_id,))
                self.journal.append(now, "RecoveryCodeUsed", "user", user.user_id,
                                    {"user_id": user.user_id, "username": user.username, "remaining": int(remaining)})
            self.db.execute(
                "INSERT INTO sessions(session_id, user_id, refresh_hash, created_ns, expires_ns, revoked, last_refresh_ns, "
                "last_used_ns, mfa_pending, peer) VALUES (?,?,?,?,?,0,?,?,?,?)",
                (session_id, user.user_id, hash_refresh_token(refresh), now, expires_ns, now, now, int(mfa_pending), peer or ""),
            )
            self.journal.append(
                now, "SessionCreated", "session", session_id,
                {"session_id": session_id, "user_id": user.user_id, "username": user.username, "expires_ns": expires_ns,
                 "mfa_pending": mfa_pending, "second_factor": second_factor},
            )
        attempt.succeeded()
        self._last_used[session_id] = now
        access = self.signer.issue(user_id=user.user_id, username=user.username, role=user.role, session_id=session_id)
        return TokenPair(access.token, refresh, access.expires_ns, user.role, user.username, session_id, expires_ns, mfa_pending)

    # == second factor =========================================================================
    def _totp_secret(self, user_id: str, blob: bytes, pending: bool = False) -> str:
        ad = (_TOTP_PENDING_AD if pending else _TOTP_AD) + user_id
        what = f"{'pending ' if pending else ''}TOTP secret of user {user_id}"
        return open_sealed(self._auth_key, blob, ad.encode("utf-8"), what=what).decode("ascii")

    def _match_totp(self, user: User, code: str, now_ns: int) -> int | None:
        """The accepted time step for ``code`` (not yet stored), or None (wrong / reused)."""
        row = self.db.query_one("SELECT totp_secret_enc, totp_last_step FROM users WHERE user_id = ?", (user.user_id,))
        if row is None or row[0] is None:
            return None
        secret = self._totp_secret(user.user_id, row[0])
        return totp.match_step(secret, code, now_ns, row[1])

    def _recovery_hash(self, user_id: str, normalized: str) -> str:
        return keyed_hash(self._auth_key, _RECOVERY_LABEL + user_id, normalized)

    def _match_recovery_code(self, user: User, code: str) -> str | None:
        """The stored hash of an unused recovery code equal to ``code``, or None."""
        normalized = totp.normalize_recovery_code(code)
        if normalized is None:
            return None
        code_hash = self._recovery_hash(user.user_id, normalized)
        row = self.db.query_one(
            "SELECT code_hash FROM recovery_codes WHERE user_id = ? AND code_hash = ? AND used_ns IS NULL", (user.user_id, code_hash)
        )
        return row[0] if row else None

    async def begin_totp_enrollment_async(self, principal: Principal, password: str, *, peer: str = "") -> TotpEnrollment:
        """Start TOTP enrollment for the caller: a new secret, pending until confirmed.

        Calling it again replaces the pending secret. The secret is stored encrypted; the
        answer is the only time it is shown.

        Args:
            principal: the caller (a user session).
            password: the caller's current password (a stolen access token alone must not be
                able to add a second factor). Throttled like a login.
            peer: client host, for throttling.

        Returns:
            :class:`TotpEnrollment` (otpauth URI with issuer ``Lyra``, base32 secret).

        Raises:
            ServiceTokenForbidden: called with a service token (PERMISSION_DENIED).
            ValidationError: ``password`` missing or too long.
            PreconditionError: TOTP is already enrolled (an admin must ResetTotp first).
            RateLimitedError: too many wrong passwords recently.
            AuthenticationFailed: wrong password (counted).
        """
        _require_user_principal(principal, "BeginTotpEnrollment")
        _check_password_field(password, "password")
        user = self._user_of(principal)
        if user.totp_enrolled:
            raise PreconditionError("TOTP is already enrolled for this account; an admin must reset it (ResetTotp) first")
        await self._reauthenticate(user, password, peer, field="password")
        secret = totp.generate_secret()
        now = self.clock.now_ns()
        blob = seal(self._auth_key, secret.encode("ascii"), (_TOTP_PENDING_AD + user.user_id).encode("utf-8"))
        with unit_of_work(self.db, self.journal):
            self.db.execute("UPDATE users SET totp_pending_enc = ?, totp_pending_ns = ? WHERE user_id = ?", (blob, now, user.user_id))
            self.journal.append(now, "UserTotpEnrollmentStarted", "user", user.user_id, {"user_id": user.user_id, "username": user.username})
        return TotpEnrollment(totp.provisioning_uri(secret, user.username), secret)

    def confirm_totp_enrollment(self, principal: Principal, code: str) -> list[str]:
        """Activate the pending secret with a current code; clears ``mfa_pending`` on the
        caller's session and issues ten recovery codes (replacing any older ones).

        Safe inside an engine message: every error is raised before anything is written.

        Args:
            principal: the caller (a user session).
            code: six digits from the authenticator app.

        Returns:
            The ten recovery codes (shown once; stored as HMAC-SHA-256 under the auth key).

        Raises:
            ServiceTokenForbidden: called with a service token (PERMISSION_DENIED).
            ValidationError: ``totp_code`` malformed, or not valid for the pending secret now.
            PreconditionError: no enrollment in progress, it expired (15 min), or TOTP is
                already active.
        """
        _require_user_principal(principal, "ConfirmTotpEnrollment")
        if not totp.is_code_format(code):
            raise ValidationError("totp_code", f"must be {totp.DIGITS} digits")
        user = self._user_of(principal)
        row = self.db.query_one("SELECT totp_pending_enc, totp_pending_ns FROM users WHERE user_id = ?", (user.user_id,))
        if user.totp_enrolled:
            raise PreconditionError("TOTP is already enrolled for this account")
        if row is None or row[0] is None:
            raise PreconditionError("no TOTP enrollment in progress: call BeginTotpEnrollment first")
        now = self.clock.now_ns()
        if now - int(row[1] or 0) > TOTP_PENDING_TTL_S * NS_PER_SECOND:
            raise PreconditionError("the TOTP enrollment expired (15 minutes); call BeginTotpEnrollment again")
        secret = self._totp_secret(user.user_id, row[0], pending=True)
        step = totp.match_step(secret, code, now, None)
        if step is None:
            raise ValidationError("totp_code", "does not match the new secret (check the authenticator app and its clock)")
        codes = totp.generate_recovery_codes()
        active = seal(self._auth_key, secret.encode("ascii"), (_TOTP_AD + user.user_id).encode("utf-8"))
        with unit_of_work(self.db, self.journal):
            self.db.execute(
                "UPDATE users SET totp_secret_enc = ?, totp_enrolled_ns = ?, totp_last_step = ?, totp_pending_enc = NULL, "
                "totp_pending_ns = NULL, updated_ns = ? WHERE user_id = ?",
                (active, now, step, now, user.user_id),
            )
            self.db.execute("DELETE FROM recovery_codes WHERE user_id = ?", (user.user_id,))
            for c in codes:
                self.db.execute("INSERT INTO recovery_codes(user_id, code_hash, created_ns) VALUES (?,?,?)",
                                (user.user_id, self._recovery_hash(user.user_id, totp.normalize_recovery_code(c) or ""), now))
            self.db.execute("UPDATE sessions SET mfa_pending = 0 WHERE session_id = ? AND user_id = ?", (principal.session_id, user.user_id))
            self.journal.append(now, "UserTotpEnrolled", "user", user.user_id, {"user_id": user.user_id, "username": user.username})
        return codes

    def reset_totp(self, username: str) -> User:
        """Remove a user's TOTP (active and pending) and recovery codes and revoke its sessions
        (admin action; the user enrolls again at the next login). Idempotent.

        Raises:
            NotFoundError: no such user.
        """
        user = self.users.get_by_username(username)
        now = self.clock.now_ns()
        with unit_of_work(self.db, self.journal):
            self.db.execute(
                "UPDATE users SET totp_secret_enc = NULL, totp_enrolled_ns = NULL, totp_last_step = NULL, "
                "totp_pending_enc = NULL, totp_pending_ns = NULL, updated_ns = ? WHERE user_id = ?",
                (now, user.user_id),
            )
            self.db.execute("DELETE FROM recovery_codes WHERE user_id = ?", (user.user_id,))
            revoked = self.users._revoke_sessions(user.user_id, "totp_reset", now)
            self.journal.append(now, "UserTotpReset", "user", user.user_id,
                                {"user_id": user.user_id, "username": user.username, "sessions_revoked": revoked})
        return self.users.get(user.user_id)

    def recovery_codes_left(self, user_id: str) -> int:
        """Unused recovery codes of a user."""
        return int(self.db.scalar("SELECT COUNT(*) FROM recovery_codes WHERE user_id = ? AND used_ns IS NULL", (user_id,)))

    # == own password ==========================================================================
    async def change_password_async(self, principal: Principal, current_password: str, new_password: str, *, peer: str = "") -> User:
        """Change the caller's password; revokes the caller's *other* sessions.

        Args:
            principal: the caller (a user session).
            current_password: checked (throttled like a login).
            new_password: 12..1024 characters, different from the current one.
            peer: client host, for throttling.

        Raises:
            ServiceTokenForbidden: called with a service token (PERMISSION_DENIED).
            ValidationError: ``current_password`` / ``new_password`` missing or breaking the policy.
            RateLimitedError: too many wrong passwords recently.
            AuthenticationFailed: wrong current password (counted).
        """
        _require_user_principal(principal, "ChangePassword")
        _check_password_field(current_password, "current_password")
        try:
            validate_password(new_password)
        except ValidationError as exc:
            raise ValidationError("new_password", exc.reason) from None
        if new_password == current_password:
            raise ValidationError("new_password", "must differ from the current password")
        user = self._user_of(principal)
        await self._reauthenticate(user, current_password, peer)
        new_hash = await asyncio.to_thread(hash_password, new_password, params=self.users.password_params)
        return self.users.set_password(user.username, new_password, password_hash=new_hash, keep_session=principal.session_id, by="self")

    async def _reauthenticate(self, user: User, password: str, peer: str, field: str = "current_password") -> None:
        """Check ``user``'s password for a sensitive self-service action, throttled as a login.

        A wrong password is INVALID_ARGUMENT (the caller IS authenticated; the argument is wrong),
        not UNAUTHENTICATED, so that clients do not take it for an expired token and retry.

        Raises:
            RateLimitedError, ValidationError (naming ``field``).
        """
        with self.throttle.begin(user.username, peer or "") as attempt:
            stored = self.users.password_hash(user.user_id) or self._dummy_hash
            check = await asyncio.to_thread(verify_password, stored, password, params=self.users.password_params)
            if not check.ok:
                attempt.failed()
                raise ValidationError(field, WRONG_CURRENT_PASSWORD_MESSAGE)
            attempt.succeeded()

    def _user_of(self, principal: Principal) -> User:
        try:
            user = self.users.get(principal.user_id)
        except NotFoundError:
            raise AuthenticationFailed("this call is not authenticated") from None
        if user.disabled:
            raise AuthenticationFailed("this call is not authenticated")
        return user

    # == refresh ===============================================================================
    def refresh(self, refresh_token: str) -> TokenPair:
        """Rotate ``refresh_token``: a new pair for the same session; the old token is spent.

        Raises:
            AuthenticationFailed: unknown, expired or revoked token, disabled user; a spent
                token (reuse) or an idle session, in which case the session is revoked first
                (committed unless the caller holds a transaction).
        """
        if not isinstance(refresh_token, str) or not refresh_token or len(refresh_token) > MAX_REFRESH_TOKEN_LENGTH:
            raise AuthenticationFailed(REFRESH_FAILED_MESSAGE)
        token_hash = hash_refresh_token(refresh_token)
        now = self.clock.now_ns()
        row = self.db.query_one(
            "SELECT s.session_id, s.user_id, s.created_ns, s.expires_ns, s.revoked, u.username, u.role, u.disabled, "
            "s.last_used_ns, s.mfa_pending FROM sessions s JOIN users u ON u.user_id = s.user_id WHERE s.refresh_hash = ?",
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

        session_id, user_id, created_ns, expires_ns, revoked, username, role, disabled, last_used_ns, mfa_pending = row
        if revoked or disabled or now >= expires_ns or now >= created_ns + self.max_session_ns:
            raise AuthenticationFailed(REFRESH_FAILED_MESSAGE)
        if self._idle(session_id, last_used_ns, created_ns, now):
            with unit_of_work(self.db, self.journal):
                self._revoke(session_id, user_id, "idle_timeout", now)
            raise AuthenticationFailed(SESSION_IDLE_MESSAGE)
        new_refresh = secrets.token_urlsafe(32)
        new_expires_ns = min(now + self.refresh_ttl_ns, created_ns + self.max_session_ns)
        with unit_of_work(self.db, self.journal):
            self.db.execute(
                "INSERT INTO session_refresh_history(refresh_hash, session_id, rotated_ns) VALUES (?,?,?)",
                (token_hash, session_id, now),
            )
            self.db.execute(
                "UPDATE sessions SET refresh_hash = ?, expires_ns = ?, last_refresh_ns = ?, last_used_ns = ? WHERE session_id = ?",
                (hash_refresh_token(new_refresh), new_expires_ns, now, now, session_id),
            )
            self.journal.append(
                now, "SessionRefreshed", "session", session_id,
                {"session_id": session_id, "user_id": user_id, "expires_ns": new_expires_ns},
            )
        self._last_used[session_id] = now
        access = self.signer.issue(user_id=user_id, username=username, role=role, session_id=session_id)
        return TokenPair(access.token, new_refresh, access.expires_ns, role, username, session_id, new_expires_ns, bool(mfa_pending))

    # == logout / revocation ===================================================================
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
        self._last_used.pop(session_id, None)
        self.journal.append(now_ns, "SessionRevoked", "session", session_id, {"session_id": session_id, "user_id": user_id, "reason": reason})

    # == sessions (admin) ======================================================================
    def _session_info(self, row: tuple) -> SessionInfo:
        session_id, user_id, username, created_ns, expires_ns, revoked, last_used_ns, peer, mfa_pending = row
        last_used = max(self._last_used.get(session_id, 0), last_used_ns or created_ns)
        ends = min(expires_ns, created_ns + self.max_session_ns)
        if self.idle_timeout_ns is not None:
            ends = min(ends, last_used + self.idle_timeout_ns)
        return SessionInfo(session_id, user_id, username, created_ns, last_used, ends, bool(revoked), peer or "", bool(mfa_pending))

    _SESSION_SELECT = (
        "SELECT s.session_id, s.user_id, u.username, s.created_ns, s.expires_ns, s.revoked, s.last_used_ns, s.peer, s.mfa_pending "
        "FROM sessions s JOIN users u ON u.user_id = s.user_id"
    )

    def list_sessions(self, username: str = "", include_revoked: bool = False) -> list[SessionInfo]:
        """Sessions, newest first; live ones only unless ``include_revoked`` (sessions past their
        expiry count as ended and are listed only with ``include_revoked`` too).

        Args:
            username: only this user's sessions ("" = all users).

        Raises:
            ValidationError: ``username`` malformed.
            NotFoundError: no such user.
        """
        params: list = []
        where = []
        if username:
            if not USERNAME_PATTERN.fullmatch(username):
                raise ValidationError("username", "must be 3 to 64 characters of a-z, 0-9, '_', '.', '-'")
            user = self.users.get_by_username(username)
            where.append("s.user_id = ?")
            params.append(user.user_id)
        if not include_revoked:
            where.append("s.revoked = 0")
        sql = self._SESSION_SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY s.created_ns DESC, s.session_id"
        now = self.clock.now_ns()
        sessions = [self._session_info(r) for r in self.db.query(sql, tuple(params))]
        return sessions if include_revoked else [s for s in sessions if s.expires_ns > now]

    def get_session(self, session_id: str) -> SessionInfo:
        """Raises NotFoundError: no session with that id."""
        row = self.db.query_one(self._SESSION_SELECT + " WHERE s.session_id = ?", (session_id,)) if isinstance(session_id, str) else None
        if row is None:
            raise NotFoundError(f"session {session_id!r} not found" if len(str(session_id)) <= 64 else "session not found")
        return self._session_info(row)

    def revoke_session_by_admin(self, session_id: str) -> SessionInfo:
        """Revoke a session (effective on its next call); idempotent.

        Raises:
            ValidationError: ``session_id`` empty.
            NotFoundError: no such session.
        """
        if not session_id:
            raise ValidationError("session_id", "is required")
        self.get_session(session_id)
        self.revoke_session(session_id, "admin")
        return self.get_session(session_id)

    def locked_until_ns(self, username: str) -> int:
        """When the username's login block ends (0 = not blocked)."""
        return self.throttle.blocked_until_ns(USER_SCOPE, username)

    def reset_login_failures(self, username: str) -> None:
        """Forget a username's failed logins (after an admin password reset)."""
        self.throttle.reset_user(username)

    # == authentication of RPCs ================================================================
    def _idle(self, session_id: str, last_used_ns: int | None, created_ns: int, now_ns: int) -> bool:
        if self.idle_timeout_ns is None:
            return False
        last = max(self._last_used.get(session_id, 0), last_used_ns or created_ns)
        return now_ns - last >= self.idle_timeout_ns

    def _touch(self, session_id: str, stored_last_used_ns: int | None, now_ns: int) -> None:
        self._last_used[session_id] = now_ns
        if now_ns - (stored_last_used_ns or 0) >= LAST_USED_WRITE_INTERVAL_NS:
            with self.db.transaction():
                self.db.execute("UPDATE sessions SET last_used_ns = ? WHERE session_id = ?", (now_ns, session_id))
        if len(self._last_used) > 10_000 and self.idle_timeout_ns is not None:
            cutoff = now_ns - self.idle_timeout_ns
            for sid, used in list(self._last_used.items()):
                if used < cutoff:
                    del self._last_used[sid]

    def authenticate(self, access_token: str) -> Principal:
        """Verify a bearer token: an access JWT whose session and user are still valid, or a
        service-account token (``lyst_...``).

        Notes the use of the session (idle timeout; at most one write a minute); ends a session
        idle for ``idle_timeout_s`` (committed).

        Returns:
            :class:`Principal` with the user's *current* username and role (kind ``"user"``,
            ``mfa_pending`` from the session), or kind ``"service"`` for a service token.

        Raises:
            InvalidToken: the JWT is invalid or expired (see :class:`InvalidToken` reasons), or
                ``"session revoked"``, ``"session expired"``, ``"session idle timeout"``,
                ``"user disabled"``; service-token reasons from
                :meth:`~appliance.security.tokens.ServiceTokenStore.verify`.
        """
        if is_service_token(access_token):
            info = self.service_tokens.verify(access_token)
            return Principal("", f"service:{info.name}", info.role, info.token_id, SERVICE_KIND, False)
        claims = self.signer.verify(access_token)
        row = self.db.query_one(
            "SELECT s.revoked, s.expires_ns, u.username, u.role, u.disabled, s.created_ns, s.last_used_ns, s.mfa_pending "
            "FROM sessions s JOIN users u ON u.user_id = s.user_id WHERE s.session_id = ? AND s.user_id = ?",
            (claims.sid, claims.sub),
        )
        if row is None or row[0]:
            raise InvalidToken("session revoked")
        revoked, expires_ns, username, role, disabled, created_ns, last_used_ns, mfa_pending = row
        if disabled:
            raise InvalidToken("user disabled")
        now = self.clock.now_ns()
        if now >= expires_ns or now >= created_ns + self.max_session_ns:
            raise InvalidToken("session expired")
        if self._idle(claims.sid, last_used_ns, created_ns, now):
            with unit_of_work(self.db, self.journal):
                self._revoke(claims.sid, claims.sub, "idle_timeout", now)
            raise InvalidToken("session idle timeout")
        self._touch(claims.sid, last_used_ns, now)
        return Principal(claims.sub, username, role, claims.sid, USER_KIND, bool(mfa_pending))

    # == provisioning ==========================================================================
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


def _check_password_field(value: object, field_name: str) -> None:
    """Presence and length of a password field (no policy: old passwords may predate it).

    Raises:
        ValidationError: missing, not a string, or longer than 1024 characters.
    """
    if not isinstance(value, str) or not value:
        raise ValidationError(field_name, "is required")
    if len(value) > MAX_PASSWORD_LENGTH:
        raise ValidationError(field_name, f"must be at most {MAX_PASSWORD_LENGTH} characters")
