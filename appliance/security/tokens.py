"""Access tokens: short-lived JWTs signed with Ed25519 (JWS ``alg`` ``EdDSA``).

Claims (all required on verify):

=====  =======  ===================================================
sub    str      user id
usr    str      username
role   str      role at issue time (authorization re-reads the user)
sid    str      session id (the refresh-token session it belongs to)
iat    int      issued at, seconds since the epoch (the Clock's time)
exp    int      expires at, seconds since the epoch
jti    str      random token id
iss    str      ``"lyra"``
aud    str      ``"lyra-api"``
=====  =======  ===================================================

The JOSE header carries ``kid`` (the signing key id). :meth:`TokenSigner.verify` pins
``algorithms=["EdDSA"]`` (so ``alg: none``, HS256 keyed with the public key and every other
algorithm are rejected), checks ``kid``, ``iss`` and ``aud``, and checks ``exp``/``iat`` against
the injected :class:`~appliance.engine.clock.Clock` with zero leeway: pyjwt's own wall-clock
checks are turned off.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance.engine.clock import NS_PER_SECOND, Clock
from appliance.model.errors import LyraError, NotFoundError, ValidationError
from appliance.store.db import Database

ALGORITHM = "EdDSA"
ISSUER = "lyra"
AUDIENCE = "lyra-api"
DEFAULT_ACCESS_TTL_S = 15 * 60
MAX_TOKEN_LENGTH = 8192
"""Longer strings are rejected before any parsing (our tokens are ~400 characters)."""

_REQUIRED_CLAIMS = ("sub", "usr", "role", "sid", "iat", "exp", "jti", "iss", "aud")
_STR_CLAIMS = ("sub", "usr", "role", "sid", "jti", "iss", "aud")
_INT_CLAIMS = ("iat", "exp")


class InvalidToken(LyraError):
    """An access token was rejected. ``reason`` is short and safe to show to the caller; it
    never contains the token.

    Reasons: ``"malformed token"``, ``"unsupported algorithm"``, ``"unknown signing key"``,
    ``"bad signature"``, ``"invalid token"``, ``"wrong issuer"``, ``"wrong audience"``, ``"missing claim <name>"``,
    ``"bad claim <name>"``, ``"token expired"``, ``"token issued in the future"``; from
    :meth:`AuthService.authenticate`: ``"session revoked"``, ``"session expired"``,
    ``"session idle timeout"``, ``"user disabled"``; for service tokens
    (:meth:`ServiceTokenStore.verify`): ``"malformed service token"``, ``"unknown service token"``,
    ``"service token revoked"``, ``"service token expired"``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Claims:
    """Verified claims of an access token (times in seconds since the epoch, as in JWT)."""

    sub: str
    usr: str
    role: str
    sid: str
    iat: int
    exp: int
    jti: str
    iss: str = ISSUER
    aud: str = AUDIENCE

    @property
    def user_id(self) -> str:
        return self.sub

    @property
    def expires_ns(self) -> int:
        """``exp`` in ns since the epoch."""
        return self.exp * NS_PER_SECOND

    def as_dict(self) -> dict[str, str | int]:
        return {name: getattr(self, name) for name in _REQUIRED_CLAIMS}


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A freshly issued token and its claims. ``token`` is a bearer secret: not in repr."""

    token: str = field(repr=False)
    claims: Claims

    @property
    def expires_ns(self) -> int:
        return self.claims.expires_ns


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An Ed25519 signing key and its id. The private key is not in repr."""

    key_id: str
    private_key: Ed25519PrivateKey = field(repr=False)
    created_ns: int = 0

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()


def key_id_for(public_key: Ed25519PublicKey) -> str:
    """A stable key id: base64url (no padding) of the first 12 bytes of SHA-256 of the raw
    32-byte public key (16 characters)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest()[:12]).decode("ascii").rstrip("=")


class TokenSigner:
    """Issues and verifies access tokens.

    Args:
        private_key: the Ed25519 signing key.
        key_id: put in (and required from) the JOSE header ``kid``.
        clock: the only source of time for ``iat``/``exp`` and for the expiry check.
        ttl_s: access-token lifetime in seconds (default 900 = 15 min).

    Raises:
        TypeError: ``private_key`` is not an Ed25519 private key.
        ValueError: ``ttl_s`` < 1 or ``key_id`` empty.
    """

    def __init__(self, private_key: Ed25519PrivateKey, key_id: str, clock: Clock, ttl_s: int = DEFAULT_ACCESS_TTL_S) -> None:
        if not isinstance(private_key, Ed25519PrivateKey):
            raise TypeError("private_key must be an Ed25519PrivateKey")
        if not key_id:
            raise ValueError("key_id must not be empty")
        if int(ttl_s) < 1:
            raise ValueError(f"ttl_s must be >= 1, not {ttl_s}")
        self._private_key = private_key
        self._public_key = private_key.public_key()
        self.key_id = key_id
        self.clock = clock
        self.ttl_s = int(ttl_s)

    @classmethod
    def from_signing_key(cls, key: SigningKey, clock: Clock, ttl_s: int = DEFAULT_ACCESS_TTL_S) -> "TokenSigner":
        return cls(key.private_key, key.key_id, clock, ttl_s)

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._public_key

    def __repr__(self) -> str:
        return f"TokenSigner(key_id={self.key_id!r}, ttl_s={self.ttl_s})"

    def issue(self, *, user_id: str, username: str, role: str, session_id: str) -> AccessToken:
        """Sign a new access token valid for ``ttl_s`` from the clock's now.

        Returns:
            :class:`AccessToken` (the compact JWS and its claims).
        """
        now_s = self.clock.now_ns() // NS_PER_SECOND
        claims = Claims(
            sub=user_id,
            usr=username,
            role=role,
            sid=session_id,
            iat=now_s,
            exp=now_s + self.ttl_s,
            jti=secrets.token_urlsafe(16),
        )
        token = jwt.encode(claims.as_dict(), self._private_key, algorithm=ALGORITHM, headers={"kid": self.key_id, "typ": "JWT"})
        return AccessToken(token, claims)

    def verify(self, token: str) -> Claims:
        """Verify signature, algorithm, key id, issuer, audience, claim types and expiry.

        Args:
            token: the compact JWS (without any ``Bearer`` prefix).

        Returns:
            The verified :class:`Claims`.

        Raises:
            InvalidToken: with a reason safe to show (never the token itself).
        """
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("malformed token") from None
        if header.get("alg") != ALGORITHM:
            raise InvalidToken("unsupported algorithm")
        if header.get("kid") != self.key_id:
            raise InvalidToken("unknown signing key")
        try:
            payload = jwt.decode(
                token,
                self._public_key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=0,
                options={
                    "verify_signature": True,
                    "verify_aud": True,
                    "verify_iss": True,
                    # Time is checked below against the injected Clock, never the wall clock.
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "require": list(_REQUIRED_CLAIMS),
                },
            )
        except jwt.InvalidAlgorithmError:
            raise InvalidToken("unsupported algorithm") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("bad signature") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("wrong audience") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("wrong issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"missing claim {exc.claim}") from None
        except jwt.DecodeError:
            raise InvalidToken("malformed token") from None
        except jwt.PyJWTError:
            raise InvalidToken("invalid token") from None

        if payload["iss"] != ISSUER:  # pyjwt checked; kept strict (exact string) on purpose
            raise InvalidToken("wrong issuer")
        if payload["aud"] != AUDIENCE:  # pyjwt also accepts a list containing the audience
            raise InvalidToken("wrong audience")
        for name in _STR_CLAIMS:
            if not isinstance(payload.get(name), str) or not payload[name]:
                raise InvalidToken(f"bad claim {name}")
        for name in _INT_CLAIMS:
            value = payload.get(name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidToken(f"bad claim {name}")

        now_ns = self.clock.now_ns()
        if now_ns >= payload["exp"] * NS_PER_SECOND:
            raise InvalidToken("token expired")
        if payload["iat"] * NS_PER_SECOND > now_ns:
            raise InvalidToken("token issued in the future")
        return Claims(**{name: payload[name] for name in _REQUIRED_CLAIMS})


SIGNING_KEY_AD_PREFIX = b"lyra-auth:signing-key:"


def _signing_key_ad(key_id: str) -> bytes:
    return SIGNING_KEY_AD_PREFIX + key_id.encode("utf-8")


def _pem_of(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _ed25519_from_pem(pem: bytes, key_id: str) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"signing key {key_id} is not an Ed25519 private key")
    return key


def load_or_create_signing_key(db: Database, clock: Clock, auth_key: bytes | None = None) -> SigningKey:
    """The newest Ed25519 signing key in ``signing_keys``, creating one on first boot.

    Storage: with ``auth_key`` the PKCS#8 PEM is encrypted (XChaCha20-Poly1305, associated data
    ``"lyra-auth:signing-key:<kid>"``, see :mod:`appliance.security.authkey`) into
    ``private_key_enc`` and ``private_key_pem`` is ``''``. A plaintext row left by schema <= 4 is
    encrypted in place at the first load with an auth key (``PRAGMA secure_delete`` is on for that
    update, so SQLite zeroes the old bytes in the page). Snapshots taken before that upgrade
    still hold the plaintext key: delete them, or rotate the key by deleting the row.
    ``auth_key=None`` keeps the key in plaintext: tests only.

    Args:
        db: the database (writes run in their own transaction, or the caller's).
        clock: time for ``created_ns``.
        auth_key: the 32-byte auth key (:func:`~appliance.security.authkey.load_or_create_auth_key`).

    Returns:
        :class:`SigningKey`.

    Raises:
        ValueError: the stored PEM is not an Ed25519 private key, or the stored key is
            encrypted and no ``auth_key`` was given.
        IntegrityError: the encrypted key does not decrypt (wrong auth.key or modified row).
    """
    from appliance.security.authkey import open_sealed, seal  # local: tokens stays importable without pynacl

    row = db.query_one(
        "SELECT key_id, private_key_pem, created_ns, private_key_enc FROM signing_keys ORDER BY created_ns DESC, rowid DESC LIMIT 1"
    )
    if row is not None:
        key_id, pem, created_ns, enc = row
        if enc is not None:
            if auth_key is None:
                raise ValueError(f"signing key {key_id} is encrypted; the auth key is needed to load it")
            plain = open_sealed(auth_key, enc, _signing_key_ad(key_id), what=f"signing key {key_id}")
            return SigningKey(key_id, _ed25519_from_pem(plain, key_id), created_ns)
        key = _ed25519_from_pem(pem.encode("ascii"), key_id)
        if auth_key is not None:  # migrate the plaintext row
            sealed = seal(auth_key, pem.encode("ascii"), _signing_key_ad(key_id))
            previous = db.scalar("PRAGMA secure_delete")
            db.execute("PRAGMA secure_delete = ON")
            try:
                with db.transaction():
                    db.execute("UPDATE signing_keys SET private_key_enc = ?, private_key_pem = '' WHERE key_id = ?", (sealed, key_id))
            finally:
                db.execute(f"PRAGMA secure_delete = {int(previous or 0)}")
        return SigningKey(key_id, key, created_ns)
    key = Ed25519PrivateKey.generate()
    key_id = key_id_for(key.public_key())
    pem_bytes = _pem_of(key)
    created_ns = clock.now_ns()
    with db.transaction():
        if auth_key is None:
            db.execute("INSERT INTO signing_keys(key_id, private_key_pem, created_ns) VALUES (?,?,?)", (key_id, pem_bytes.decode("ascii"), created_ns))
        else:
            db.execute(
                "INSERT INTO signing_keys(key_id, private_key_pem, created_ns, private_key_enc) VALUES (?,'',?,?)",
                (key_id, created_ns, seal(auth_key, pem_bytes, _signing_key_ad(key_id))),
            )
    return SigningKey(key_id, key, created_ns)


# == service-account API tokens ===============================================================
SERVICE_TOKEN_PREFIX = "lyst_"
MIN_SERVICE_TOKEN_TTL_S = 3600
MAX_SERVICE_TOKEN_TTL_S = 365 * 86_400
LAST_USED_WRITE_INTERVAL_NS = 60 * NS_PER_SECOND
"""``last_used_ns`` of sessions and service tokens is written at most once a minute."""

_SERVICE_TOKEN_RE = re.compile(r"lyst_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_SERVICE_TOKEN_NAME_RE = re.compile(r"[a-z0-9_.-]{3,64}")


def hash_service_secret(secret: str) -> str:
    """SHA-256 hex of a service token's secret part (256 random bits: a fast hash suffices)."""
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def is_service_token(token: object) -> bool:
    """True if ``token`` looks like a service token (``lyst_`` prefix), not a JWT."""
    return isinstance(token, str) and token.startswith(SERVICE_TOKEN_PREFIX)


@dataclass(frozen=True, slots=True)
class ServiceToken:
    """A service-account token's metadata (never its secret).

    Attributes:
        token_id: 16 hex characters, the public part of the token.
        name: ``[a-z0-9_.-]{3,64}``, unique among live tokens is NOT required.
        role: the role the token acts with.
        created_by: username of the admin who created it.
        created_ns, expires_ns, last_used_ns: ns since the epoch (last_used_ns 0 = never;
            written at most once a minute).
        revoked: revoked tokens stop working at once.
    """

    token_id: str
    name: str
    role: str
    created_by: str
    created_ns: int
    expires_ns: int
    revoked: bool
    last_used_ns: int = 0


@dataclass(frozen=True, slots=True)
class IssuedServiceToken:
    """:meth:`ServiceTokenStore.create`'s answer: ``token`` is shown once (not in repr)."""

    token: str = field(repr=False)
    info: ServiceToken


_ST_COLUMNS = "token_id, name, role, created_by, created_ns, expires_ns, revoked, last_used_ns"


def _service_token(row: tuple) -> ServiceToken:
    return ServiceToken(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]), row[7] or 0)


class ServiceTokenStore:
    """Service-account API tokens in ``service_tokens``.

    Token text: ``"lyst_<token_id>_<secret>"``, token_id = 16 hex characters (64 random bits,
    public, for lookup and listing), secret = ``secrets.token_urlsafe(32)`` (256 bits). Only
    SHA-256(secret) is stored; verification compares in constant time.

    Journal events (aggregate ``"service_token"``): ``ServiceTokenCreated`` {token_id, name, role,
    created_by, expires_ns}, ``ServiceTokenRevoked`` {token_id, name}. Never the token.

    Args:
        db, journal, clock: as everywhere.
    """

    def __init__(self, db: Database, journal, clock: Clock) -> None:
        self.db = db
        self.journal = journal
        self.clock = clock

    def create(self, name: str, role: str, ttl_s: int, created_by: str) -> IssuedServiceToken:
        """Create a token.

        Args:
            name: ``[a-z0-9_.-]{3,64}`` (what it is for, e.g. ``"grafana"``).
            role: one of the roles.
            ttl_s: lifetime in seconds, 3600 (1 h) .. 31 536 000 (365 days).
            created_by: the creating user's name (for the record).

        Raises:
            ValidationError: ``name``, ``role`` or ``ttl_seconds`` out of bounds.
        """
        from appliance.security.users import unit_of_work, validate_role

        if not isinstance(name, str) or not _SERVICE_TOKEN_NAME_RE.fullmatch(name):
            raise ValidationError("name", "must be 3 to 64 characters of a-z, 0-9, '_', '.', '-'")
        validate_role(role)
        if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or not MIN_SERVICE_TOKEN_TTL_S <= ttl_s <= MAX_SERVICE_TOKEN_TTL_S:
            raise ValidationError("ttl_seconds", f"must be between {MIN_SERVICE_TOKEN_TTL_S} (1 hour) and {MAX_SERVICE_TOKEN_TTL_S} (1 year)")
        now = self.clock.now_ns()
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        info = ServiceToken(token_id, name, role, created_by, now, now + ttl_s * NS_PER_SECOND, False, 0)
        with unit_of_work(self.db, self.journal):
            self.db.execute(
                "INSERT INTO service_tokens(token_id, name, role, secret_hash, created_by, created_ns, expires_ns, revoked) "
                "VALUES (?,?,?,?,?,?,?,0)",
                (token_id, name, role, hash_service_secret(secret), created_by, now, info.expires_ns),
            )
            self.journal.append(now, "ServiceTokenCreated", "service_token", token_id,
                                {"token_id": token_id, "name": name, "role": role, "created_by": created_by, "expires_ns": info.expires_ns})
        return IssuedServiceToken(f"{SERVICE_TOKEN_PREFIX}{token_id}_{secret}", info)

    def list(self, include_revoked: bool = False) -> list[ServiceToken]:
        """Tokens by creation time (revoked ones only with ``include_revoked``)."""
        where = "" if include_revoked else " WHERE revoked = 0"
        return [_service_token(r) for r in self.db.query(f"SELECT {_ST_COLUMNS} FROM service_tokens{where} ORDER BY created_ns, token_id")]

    def get(self, token_id: str) -> ServiceToken:
        """Raises NotFoundError: no token with that id."""
        row = self.db.query_one(f"SELECT {_ST_COLUMNS} FROM service_tokens WHERE token_id = ?", (token_id,))
        if row is None:
            raise NotFoundError(f"service token {token_id!r} not found")
        return _service_token(row)

    def revoke(self, token_id: str) -> ServiceToken:
        """Revoke a token (effective on its next call). Idempotent.

        Raises:
            NotFoundError: no token with that id.
        """
        from appliance.security.users import unit_of_work

        token = self.get(token_id)
        if token.revoked:
            return token
        now = self.clock.now_ns()
        with unit_of_work(self.db, self.journal):
            self.db.execute("UPDATE service_tokens SET revoked = 1, revoked_ns = ? WHERE token_id = ?", (now, token_id))
            self.journal.append(now, "ServiceTokenRevoked", "service_token", token_id, {"token_id": token_id, "name": token.name})
        return self.get(token_id)

    def verify(self, token: str) -> ServiceToken:
        """Check a presented service token and note its use (at most one write a minute).

        Raises:
            InvalidToken: ``"malformed service token"``, ``"unknown service token"`` (also for a
                wrong secret), ``"service token revoked"``, ``"service token expired"``.
        """
        match = _SERVICE_TOKEN_RE.fullmatch(token) if isinstance(token, str) and len(token) <= 128 else None
        if match is None:
            raise InvalidToken("malformed service token")
        token_id, secret = match.groups()
        row = self.db.query_one(f"SELECT {_ST_COLUMNS}, secret_hash FROM service_tokens WHERE token_id = ?", (token_id,))
        if row is None or not hmac.compare_digest(row[-1], hash_service_secret(secret)):
            raise InvalidToken("unknown service token")
        info = _service_token(row[:-1])
        if info.revoked:
            raise InvalidToken("service token revoked")
        now = self.clock.now_ns()
        if now >= info.expires_ns:
            raise InvalidToken("service token expired")
        if now - info.last_used_ns >= LAST_USED_WRITE_INTERVAL_NS:
            with self.db.transaction():
                self.db.execute("UPDATE service_tokens SET last_used_ns = ? WHERE token_id = ?", (now, token_id))
        return info
