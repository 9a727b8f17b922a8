"""Operator accounts: creation with policy checks, lookup, role changes, disabling.

Password hashes stay inside this module and :mod:`appliance.security.auth`: :class:`User`
carries no hash, and journal payloads never carry a password or a hash.

Journal events (aggregate ``"user"``, aggregate id = user id):

====================  ==============================================================
UserCreated           {user_id, username, role}
UserDisabled          {user_id, username, sessions_revoked}
UserEnabled           {user_id, username}
UserRoleChanged       {user_id, username, old_role, new_role, sessions_revoked}
UserPasswordChanged   {user_id, username, sessions_revoked, by}  by: self | admin
UserPasswordRehashed  {user_id}  (Argon2 parameters upgraded at login)
UserTotpEnrolled      {user_id, username}          (see :mod:`appliance.security.auth`)
UserTotpReset         {user_id, username, sessions_revoked}
RecoveryCodeUsed      {user_id, username, remaining}
====================  ==============================================================
"""

from __future__ import annotations

import contextlib
import re
import uuid
from dataclasses import dataclass
from typing import Iterator

from appliance.engine.clock import Clock
from appliance.model.errors import AlreadyExistsError, NotFoundError, PreconditionError, ValidationError
from appliance.security.passwords import PRODUCTION, Argon2Params, hash_password
from appliance.security.permissions import ROLES
from appliance.store.db import Database
from appliance.store.journal import Journal

USERNAME_PATTERN = re.compile(r"[a-z0-9_.-]{3,64}")
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
"""Upper bound so a request cannot make us hash megabytes."""

ADMIN_ROLE = "admin"


@contextlib.contextmanager
def unit_of_work(db: Database, journal: Journal) -> Iterator[None]:
    """A transaction whose journal entries reach listeners only after it commits.

    When already inside a caller's transaction this is a savepoint and the outer owner
    delivers (or discards) the journal entries.
    """
    outermost = db.conn.getautocommit()
    try:
        with db.transaction():
            yield
    except BaseException:
        if outermost:
            journal.discard_uncommitted()
        raise
    if outermost:
        journal.flush_committed()


@dataclass(frozen=True, slots=True)
class User:
    """An account as the rest of the appliance sees it (no password hash).

    Attributes:
        user_id: opaque id (UUID4 string).
        username: matches ``[a-z0-9_.-]{3,64}``.
        role: one of :data:`~appliance.security.permissions.ROLES`.
        disabled: a disabled user cannot log in and its tokens stop working at once.
        created_ns: creation time, ns since the epoch.
        totp_enrolled: the user has an active TOTP second factor.
    """

    user_id: str
    username: str
    role: str
    disabled: bool
    created_ns: int
    totp_enrolled: bool = False


def validate_username(username: object) -> str:
    """Return ``username`` if it matches ``[a-z0-9_.-]{3,64}``.

    Raises:
        ValidationError: field ``username``.
    """
    if not isinstance(username, str) or not USERNAME_PATTERN.fullmatch(username):
        raise ValidationError("username", "must be 3 to 64 characters of a-z, 0-9, '_', '.', '-'")
    return username


def validate_role(role: object) -> str:
    """Return ``role`` if it is a known role.

    Raises:
        ValidationError: field ``role``.
    """
    if role not in ROLES:
        raise ValidationError("role", f"must be one of {', '.join(ROLES)}")
    return role  # type: ignore[return-value]


def validate_password(password: object) -> str:
    """Return ``password`` if it satisfies the policy (12 to 1024 characters).

    Raises:
        ValidationError: field ``password`` (the message never contains the password).
    """
    if not isinstance(password, str):
        raise ValidationError("password", "must be a string")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError("password", f"must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationError("password", f"must be at most {MAX_PASSWORD_LENGTH} characters")
    return password


_USER_COLUMNS = "user_id, username, role, disabled, created_ns, totp_secret_enc IS NOT NULL"


def _user(row: tuple) -> User:
    return User(row[0], row[1], row[2], bool(row[3]), row[4], bool(row[5]))


class UserStore:
    """Accounts in the ``users`` table.

    Args:
        db: the database.
        journal: every mutation is journaled in the same transaction.
        clock: time source.
        password_params: Argon2id parameters; leave the default outside tests
            (tests pass :data:`~appliance.security.passwords.TEST_ONLY_FAST`).
    """

    def __init__(self, db: Database, journal: Journal, clock: Clock, *, password_params: Argon2Params = PRODUCTION) -> None:
        self.db = db
        self.journal = journal
        self.clock = clock
        self.password_params = password_params

    # -- reads ----------------------------------------------------------------------------
    def find_by_username(self, username: str) -> User | None:
        """The user named ``username``, or None."""
        row = self.db.query_one(f"SELECT {_USER_COLUMNS} FROM users WHERE username = ?", (username,))
        return _user(row) if row else None

    def get_by_username(self, username: str) -> User:
        """The user named ``username``.

        Raises:
            NotFoundError: no such user.
        """
        user = self.find_by_username(username)
        if user is None:
            raise NotFoundError(f"user {username!r} not found")
        return user

    def get(self, user_id: str) -> User:
        """The user with id ``user_id``.

        Raises:
            NotFoundError: no such user.
        """
        row = self.db.query_one(f"SELECT {_USER_COLUMNS} FROM users WHERE user_id = ?", (user_id,))
        if row is None:
            raise NotFoundError(f"user id {user_id!r} not found")
        return _user(row)

    def list(self) -> list[User]:
        """All users, by username."""
        return [_user(r) for r in self.db.query(f"SELECT {_USER_COLUMNS} FROM users ORDER BY username")]

    def count_active_admins(self) -> int:
        return self.db.scalar("SELECT COUNT(*) FROM users WHERE role = ? AND disabled = 0", (ADMIN_ROLE,))

    def password_hash(self, user_id: str) -> str | None:
        """The stored hash, for :class:`~appliance.security.auth.AuthService` only. Never log it."""
        return self.db.scalar("SELECT password_hash FROM users WHERE user_id = ?", (user_id,))

    # -- writes ---------------------------------------------------------------------------
    def create_user(self, username: str, password: str, role: str, *, password_hash: str | None = None) -> User:
        """Create an enabled account.

        Args:
            username: ``[a-z0-9_.-]{3,64}``.
            password: 12 to 1024 characters.
            role: one of ROLES.
            password_hash: ``hash_password(password)`` computed by the caller (e.g. in a worker
                thread so that Argon2 does not stall the engine loop); None hashes here.

        Returns:
            The new :class:`User`.

        Raises:
            ValidationError: ``username``, ``role`` or ``password`` breaks the policy
                (checked in that order, before anything is written).
            AlreadyExistsError: the username is taken.
        """
        validate_username(username)
        validate_role(role)
        validate_password(password)
        if self.find_by_username(username) is not None:
            raise AlreadyExistsError(f"user {username!r} already exists")
        if password_hash is None:
            password_hash = hash_password(password, params=self.password_params)  # slow: outside the transaction
        user = User(str(uuid.uuid4()), username, role, False, self.clock.now_ns())
        with unit_of_work(self.db, self.journal):
            if self.find_by_username(username) is not None:
                raise AlreadyExistsError(f"user {username!r} already exists")
            self.db.execute(
                "INSERT INTO users(user_id, username, password_hash, role, disabled, created_ns, updated_ns) VALUES (?,?,?,?,0,?,?)",
                (user.user_id, username, password_hash, role, user.created_ns, user.created_ns),
            )
            self.journal.append(user.created_ns, "UserCreated", "user", user.user_id, {"user_id": user.user_id, "username": username, "role": role})
        return user

    def disable(self, username: str) -> User:
        """Disable an account and revoke all its sessions (its access tokens stop working at once).

        Idempotent: disabling a disabled user changes nothing and journals nothing.

        Raises:
            NotFoundError: no such user.
            PreconditionError: it is the last enabled admin (the appliance would be unmanageable).
        """
        user = self.get_by_username(username)
        if user.disabled:
            return user
        if user.role == ADMIN_ROLE and self.count_active_admins() <= 1:
            raise PreconditionError(f"cannot disable {username!r}: it is the last enabled admin")
        now = self.clock.now_ns()
        with unit_of_work(self.db, self.journal):
            self.db.execute("UPDATE users SET disabled = 1, updated_ns = ? WHERE user_id = ?", (now, user.user_id))
            revoked = self._revoke_sessions(user.user_id, "user_disabled", now)
            self.journal.append(now, "UserDisabled", "user", user.user_id, {"user_id": user.user_id, "username": username, "sessions_revoked": revoked})
        return self.get(user.user_id)

    def enable(self, username: str) -> User:
        """Re-enable an account (idempotent).

        Raises:
            NotFoundError: no such user.
        """
        user = self.get_by_username(username)
        if not user.disabled:
            return user
        now = self.clock.now_ns()
        with unit_of_work(self.db, self.journal):
            self.db.execute("UPDATE users SET disabled = 0, updated_ns = ? WHERE user_id = ?", (now, user.user_id))
            self.journal.append(now, "UserEnabled", "user", user.user_id, {"user_id": user.user_id, "username": username})
        return self.get(user.user_id)

    def set_role(self, username: str, role: str) -> User:
        """Change a user's role and revoke its sessions (so it signs in again with the new role).

        Raises:
            ValidationError: field ``role``.
            NotFoundError: no such user.
            PreconditionError: demoting the last enabled admin.
        """
        validate_role(role)
        user = self.get_by_username(username)
        if user.role == role:
            return user
        if user.role == ADMIN_ROLE and not user.disabled and self.count_active_admins() <= 1:
            raise PreconditionError(f"cannot change the role of {username!r}: it is the last enabled admin")
        now = self.clock.now_ns()
        with unit_of_work(self.db, self.journal):
            self.db.execute("UPDATE users SET role = ?, updated_ns = ? WHERE user_id = ?", (role, now, user.user_id))
            revoked = self._revoke_sessions(user.user_id, "role_changed", now)
            self.journal.append(
                now, "UserRoleChanged", "user", user.user_id,
                {"user_id": user.user_id, "username": username, "old_role": user.role, "new_role": role, "sessions_revoked": revoked},
            )
        return self.get(user.user_id)

    def set_password(
        self, username: str, password: str, *, password_hash: str | None = None, keep_session: str | None = None, by: str = "admin"
    ) -> User:
        """Replace a user's password and revoke its sessions.

        Args:
            username: the account.
            password: the new password (policy-checked).
            password_hash: its hash computed by the caller (worker thread), or None to hash here.
            keep_session: a session id NOT to revoke (the caller's own, for a self-service change).
            by: ``"self"`` or ``"admin"`` (journaled).

        Raises:
            ValidationError: field ``password`` (or ``new_password`` is the caller's business).
            NotFoundError: no such user.
        """
        validate_password(password)
        user = self.get_by_username(username)
        if password_hash is None:
            password_hash = hash_password(password, params=self.password_params)
        now = self.clock.now_ns()
        with unit_of_work(self.db, self.journal):
            self.db.execute("UPDATE users SET password_hash = ?, updated_ns = ? WHERE user_id = ?", (password_hash, now, user.user_id))
            revoked = self._revoke_sessions(user.user_id, "password_changed", now, keep_session=keep_session)
            self.journal.append(now, "UserPasswordChanged", "user", user.user_id,
                                {"user_id": user.user_id, "username": username, "sessions_revoked": revoked, "by": by})
        return self.get(user.user_id)

    def update(self, username: str, *, role: str | None = None, disabled: bool | None = None) -> User:
        """Change role and/or disabled in one transaction, revoking the user's sessions.

        Args:
            username: the account.
            role: new role, or None to keep it.
            disabled: new state, or None to keep it.

        Returns:
            The updated user (unchanged, and nothing journaled, if both already match).

        Raises:
            ValidationError: field ``role``.
            NotFoundError: no such user.
            PreconditionError: the change would leave no enabled admin.
        """
        if role is not None:
            validate_role(role)
        user = self.get_by_username(username)
        new_role = user.role if role is None else role
        new_disabled = user.disabled if disabled is None else bool(disabled)
        if (new_role, new_disabled) == (user.role, user.disabled):
            return user
        was_active_admin = user.role == ADMIN_ROLE and not user.disabled
        stays_active_admin = new_role == ADMIN_ROLE and not new_disabled
        if was_active_admin and not stays_active_admin and self.count_active_admins() <= 1:
            raise PreconditionError(f"cannot change {username!r}: it is the last enabled admin")
        now = self.clock.now_ns()
        with unit_of_work(self.db, self.journal):
            self.db.execute("UPDATE users SET role = ?, disabled = ?, updated_ns = ? WHERE user_id = ?",
                            (new_role, int(new_disabled), now, user.user_id))
            reason = "user_disabled" if new_disabled and not user.disabled else "role_changed"
            revoked = self._revoke_sessions(user.user_id, reason, now)
            if new_role != user.role:
                self.journal.append(now, "UserRoleChanged", "user", user.user_id, {
                    "user_id": user.user_id, "username": username, "old_role": user.role, "new_role": new_role,
                    "sessions_revoked": revoked})
            if new_disabled != user.disabled:
                event = "UserDisabled" if new_disabled else "UserEnabled"
                payload = {"user_id": user.user_id, "username": username}
                if new_disabled:
                    payload["sessions_revoked"] = revoked
                self.journal.append(now, event, "user", user.user_id, payload)
        return self.get(user.user_id)

    def replace_hash_after_login(self, user_id: str, password_hash: str) -> None:
        """Store a re-computed hash (parameter upgrade) without touching sessions."""
        now = self.clock.now_ns()
        with unit_of_work(self.db, self.journal):
            self.db.execute("UPDATE users SET password_hash = ?, updated_ns = ? WHERE user_id = ?", (password_hash, now, user_id))
            self.journal.append(now, "UserPasswordRehashed", "user", user_id, {"user_id": user_id})

    def _revoke_sessions(self, user_id: str, reason: str, now_ns: int, *, keep_session: str | None = None) -> int:
        """Revoke every live session of ``user_id`` but ``keep_session`` (inside the caller's
        transaction); returns how many."""
        keep = keep_session or ""
        count = self.db.scalar("SELECT COUNT(*) FROM sessions WHERE user_id = ? AND revoked = 0 AND session_id != ?", (user_id, keep))
        self.db.execute(
            "UPDATE sessions SET revoked = 1, revoked_ns = ?, revoke_reason = ? WHERE user_id = ? AND revoked = 0 AND session_id != ?",
            (now_ns, reason, user_id, keep),
        )
        return int(count)

    def revoke_sessions(self, user_id: str, reason: str, *, keep_session: str | None = None) -> int:
        """Revoke every live session of ``user_id`` (but ``keep_session``); returns how many."""
        now = self.clock.now_ns()
        with unit_of_work(self.db, self.journal):
            return self._revoke_sessions(user_id, reason, now, keep_session=keep_session)
