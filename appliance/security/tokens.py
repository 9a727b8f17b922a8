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
import secrets
from dataclasses import dataclass, field

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance.engine.clock import NS_PER_SECOND, Clock
from appliance.model.errors import LyraError
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
    ``"bad claim <name>"``, ``"token expired"``, ``"token issued in the future"``, and from
    :meth:`AuthService.authenticate`: ``"session revoked"``, ``"session expired"``,
    ``"user disabled"``.
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


def load_or_create_signing_key(db: Database, clock: Clock) -> SigningKey:
    """The newest Ed25519 signing key in ``signing_keys``, creating one on first boot.

    NOTE: the private key is stored as an unencrypted PKCS#8 PEM in the database for now. It
    moves into the encrypted vault (XChaCha20-Poly1305 under the vault data key) in the vault
    issue; this function is then the one place to change.

    Args:
        db: the database (the insert runs in its own transaction, or the caller's).
        clock: time for ``created_ns``.

    Returns:
        :class:`SigningKey`.

    Raises:
        ValueError: the stored PEM is not an Ed25519 private key.
    """
    row = db.query_one("SELECT key_id, private_key_pem, created_ns FROM signing_keys ORDER BY created_ns DESC, rowid DESC LIMIT 1")
    if row is not None:
        key = serialization.load_pem_private_key(row[1].encode("ascii"), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"signing key {row[0]} is not an Ed25519 private key")
        return SigningKey(row[0], key, row[2])
    key = Ed25519PrivateKey.generate()
    key_id = key_id_for(key.public_key())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    created_ns = clock.now_ns()
    with db.transaction():
        db.execute("INSERT INTO signing_keys(key_id, private_key_pem, created_ns) VALUES (?,?,?)", (key_id, pem, created_ns))
    return SigningKey(key_id, key, created_ns)
