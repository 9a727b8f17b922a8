"""Ed25519 access tokens: issue, verify, expiry on the injected clock, forgeries rejected."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.engine.clock import NS_PER_SECOND, SimClock
from appliance.security.tokens import (
    AUDIENCE,
    ISSUER,
    InvalidToken,
    TokenSigner,
    key_id_for,
    load_or_create_signing_key,
)
from appliance.store.db import Database

T0_NS = 1_700_000_000 * NS_PER_SECOND


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _segment(obj: dict) -> str:
    return _b64(json.dumps(obj, separators=(",", ":")).encode())


@pytest.fixture()
def clock() -> SimClock:
    return SimClock(T0_NS)


@pytest.fixture()
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture()
def signer(key: Ed25519PrivateKey, clock: SimClock) -> TokenSigner:
    return TokenSigner(key, key_id_for(key.public_key()), clock, ttl_s=900)


def _issue(signer: TokenSigner) -> str:
    return signer.issue(user_id="u-1", username="alice", role="trader", session_id="s-1").token


def _claims(signer: TokenSigner, **overrides) -> dict:
    now_s = signer.clock.now_ns() // NS_PER_SECOND
    claims = {"sub": "u-1", "usr": "alice", "role": "trader", "sid": "s-1", "iat": now_s, "exp": now_s + 900, "jti": "j", "iss": ISSUER, "aud": AUDIENCE}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(key: Ed25519PrivateKey, kid: str, payload: dict) -> str:
    return jwt.encode(payload, key, algorithm="EdDSA", headers={"kid": kid})


def _reason(signer: TokenSigner, token: str) -> str:
    with pytest.raises(InvalidToken) as info:
        signer.verify(token)
    assert token not in str(info.value)
    return info.value.reason


# -- the happy path ------------------------------------------------------------------------
def test_issue_and_verify_roundtrip(signer: TokenSigner) -> None:
    issued = signer.issue(user_id="u-1", username="alice", role="trader", session_id="s-1")
    claims = signer.verify(issued.token)
    assert claims == issued.claims
    assert (claims.sub, claims.usr, claims.role, claims.sid, claims.iss, claims.aud) == ("u-1", "alice", "trader", "s-1", "lyra", "lyra-api")
    assert claims.iat == T0_NS // NS_PER_SECOND
    assert claims.exp == claims.iat + 900
    assert issued.expires_ns == claims.exp * NS_PER_SECOND
    header = jwt.get_unverified_header(issued.token)
    assert header["alg"] == "EdDSA" and header["kid"] == signer.key_id
    assert issued.token not in repr(issued)


def test_each_token_has_a_fresh_jti(signer: TokenSigner) -> None:
    assert signer.verify(_issue(signer)).jti != signer.verify(_issue(signer)).jti


def test_ttl_is_configurable(key: Ed25519PrivateKey, clock: SimClock) -> None:
    signer = TokenSigner(key, "k", clock, ttl_s=60)
    claims = signer.verify(_issue(signer))
    assert claims.exp - claims.iat == 60
    with pytest.raises(ValueError):
        TokenSigner(key, "k", clock, ttl_s=0)


# -- time comes from the Clock -------------------------------------------------------------
def test_expiry_is_checked_against_the_injected_clock(signer: TokenSigner, clock: SimClock) -> None:
    token = _issue(signer)
    exp_ns = signer.verify(token).expires_ns
    clock.advance_to(exp_ns - 1)
    assert signer.verify(token).sub == "u-1"
    clock.advance_to(exp_ns)
    assert _reason(signer, token) == "token expired"


def test_wall_clock_is_not_used(key: Ed25519PrivateKey) -> None:
    # Issued and verified in 2001 on a SimClock: long "expired" by the wall clock, valid here.
    clock = SimClock(1_000_000_000 * NS_PER_SECOND)
    signer = TokenSigner(key, "k", clock)
    assert signer.verify(_issue(signer)).usr == "alice"
    # And a token from the far future (by the wall clock) is judged by the SimClock as well.
    future = SimClock(4_000_000_000 * NS_PER_SECOND)
    late_signer = TokenSigner(key, "k", future)
    token = _issue(late_signer)
    assert late_signer.verify(token).usr == "alice"
    assert _reason(signer, token) == "token issued in the future"


# -- forgeries -----------------------------------------------------------------------------
def test_alg_none_is_rejected(signer: TokenSigner) -> None:
    payload = _segment(_claims(signer))
    for header in ({"alg": "none", "kid": signer.key_id}, {"alg": "none", "typ": "JWT"}, {"alg": "None", "kid": signer.key_id}):
        token = f"{_segment(header)}.{payload}."
        assert _reason(signer, token) == "unsupported algorithm"


@pytest.mark.parametrize("key_format", ["raw", "pem"])
def test_hs256_signed_with_the_public_key_is_rejected(signer: TokenSigner, key_format: str) -> None:
    public = signer.public_key
    if key_format == "raw":
        secret = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    else:
        secret = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = f"{_segment({'alg': 'HS256', 'typ': 'JWT', 'kid': signer.key_id})}.{_segment(_claims(signer))}"
    signature = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    token = f"{signing_input}.{_b64(signature)}"
    assert _reason(signer, token) == "unsupported algorithm"


def test_header_claiming_eddsa_but_hmac_signature_is_rejected(signer: TokenSigner) -> None:
    secret = signer.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    signing_input = f"{_segment({'alg': 'EdDSA', 'kid': signer.key_id})}.{_segment(_claims(signer))}"
    token = f"{signing_input}.{_b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"
    assert _reason(signer, token) in ("bad signature", "malformed token")


def test_other_asymmetric_algorithms_are_rejected(signer: TokenSigner) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    ec_key = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(_claims(signer), ec_key, algorithm="ES256", headers={"kid": signer.key_id})
    assert _reason(signer, token) == "unsupported algorithm"


def test_wrong_key_is_rejected(signer: TokenSigner) -> None:
    other = Ed25519PrivateKey.generate()
    token = _sign(other, signer.key_id, _claims(signer))  # even claiming our kid
    assert _reason(signer, token) == "bad signature"


def test_unknown_kid_is_rejected(signer: TokenSigner, key: Ed25519PrivateKey) -> None:
    assert _reason(signer, _sign(key, "someone-else", _claims(signer))) == "unknown signing key"
    assert _reason(signer, jwt.encode(_claims(signer), key, algorithm="EdDSA")) == "unknown signing key"


def test_wrong_audience_and_issuer_are_rejected(signer: TokenSigner, key: Ed25519PrivateKey) -> None:
    kid = signer.key_id
    assert _reason(signer, _sign(key, kid, _claims(signer, aud="other-api"))) == "wrong audience"
    assert _reason(signer, _sign(key, kid, _claims(signer, aud=["lyra-api", "other-api"]))) == "wrong audience"
    assert _reason(signer, _sign(key, kid, _claims(signer, iss="not-lyra"))) == "wrong issuer"


def test_tampered_payload_is_rejected(signer: TokenSigner) -> None:
    header, payload, signature = _issue(signer).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "admin"
    forged = f"{header}.{_segment(claims)}.{signature}"
    assert _reason(signer, forged) == "bad signature"
    # extending expiry is tampering too
    claims["role"], claims["exp"] = "trader", claims["exp"] + 86_400
    assert _reason(signer, f"{header}.{_segment(claims)}.{signature}") == "bad signature"


@pytest.mark.parametrize("claim", ["sub", "usr", "role", "sid", "iat", "exp", "jti", "iss", "aud"])
def test_every_claim_is_required(signer: TokenSigner, key: Ed25519PrivateKey, claim: str) -> None:
    token = _sign(key, signer.key_id, _claims(signer, **{claim: None}))
    assert _reason(signer, token) == f"missing claim {claim}"


@pytest.mark.parametrize(("claim", "value"), [("exp", "9999999999"), ("iat", 1.5), ("sub", 42), ("role", ""), ("exp", True)])
def test_claim_types_are_checked(signer: TokenSigner, key: Ed25519PrivateKey, claim: str, value: object) -> None:
    token = _sign(key, signer.key_id, _claims(signer, **{claim: value}))
    assert _reason(signer, token) in (f"bad claim {claim}", "invalid token")


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "x" * 10_000, "Bearer x.y.z"])
def test_garbage_is_malformed(signer: TokenSigner, garbage: str) -> None:
    with pytest.raises(InvalidToken) as info:
        signer.verify(garbage)
    assert info.value.reason in ("malformed token", "unsupported algorithm")


# -- key storage ---------------------------------------------------------------------------
def test_signing_key_is_created_once_and_persisted(tmp_path, clock: SimClock) -> None:
    db = Database(tmp_path / "lyra.db")
    first = load_or_create_signing_key(db, clock)
    again = load_or_create_signing_key(db, clock)
    assert first.key_id == again.key_id == key_id_for(first.public_key)
    assert db.scalar("SELECT COUNT(*) FROM signing_keys") == 1
    assert "PRIVATE KEY" not in repr(first)
    db.close()

    reopened = Database(tmp_path / "lyra.db")
    loaded = load_or_create_signing_key(reopened, clock)
    assert loaded.key_id == first.key_id
    # a token signed before the restart verifies after it
    token = TokenSigner.from_signing_key(first, clock).issue(user_id="u", username="bob", role="viewer", session_id="s").token
    assert TokenSigner.from_signing_key(loaded, clock).verify(token).usr == "bob"
    reopened.close()


def test_signing_key_is_stored_encrypted_under_the_auth_key(tmp_path, clock: SimClock) -> None:
    from appliance.model.errors import IntegrityError
    from appliance.security.authkey import ephemeral_auth_key

    auth_key = ephemeral_auth_key()
    db = Database(tmp_path / "lyra.db")
    key = load_or_create_signing_key(db, clock, auth_key)
    pem, enc = db.query_one("SELECT private_key_pem, private_key_enc FROM signing_keys")
    assert pem == "" and isinstance(enc, bytes) and b"PRIVATE KEY" not in enc
    raw = key.private_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    assert raw not in enc
    assert load_or_create_signing_key(db, clock, auth_key).key_id == key.key_id
    with pytest.raises(ValueError):
        load_or_create_signing_key(db, clock)  # encrypted and no key given
    with pytest.raises(IntegrityError):
        load_or_create_signing_key(db, clock, ephemeral_auth_key())  # another box's key
    db.close()


def test_a_plaintext_signing_key_is_encrypted_in_place_at_first_load(tmp_path, clock: SimClock) -> None:
    from appliance.security.authkey import ephemeral_auth_key

    db = Database(tmp_path / "lyra.db")
    legacy = load_or_create_signing_key(db, clock)  # as schema <= 4 stored it
    assert "PRIVATE KEY" in db.scalar("SELECT private_key_pem FROM signing_keys")
    token = TokenSigner.from_signing_key(legacy, clock).issue(user_id="u", username="bob", role="viewer", session_id="s").token
    auth_key = ephemeral_auth_key()
    migrated = load_or_create_signing_key(db, clock, auth_key)
    assert migrated.key_id == legacy.key_id
    assert db.query_one("SELECT private_key_pem, private_key_enc IS NOT NULL FROM signing_keys") == ("", 1)
    assert TokenSigner.from_signing_key(migrated, clock).verify(token).usr == "bob"  # tokens keep working
    assert load_or_create_signing_key(db, clock, auth_key).key_id == legacy.key_id
    db.close()


# -- service tokens ------------------------------------------------------------------------
def test_service_tokens_are_shown_once_and_stored_hashed(tmp_path, clock: SimClock) -> None:
    from appliance.model.errors import NotFoundError, ValidationError
    from appliance.security.tokens import ServiceTokenStore, hash_service_secret
    from appliance.store.journal import Journal

    db = Database(tmp_path / "lyra.db")
    journal = Journal(db)
    store = ServiceTokenStore(db, journal, clock)
    issued = store.create("grafana", "viewer", 3600, "root")
    prefix, token_id, secret = issued.token.split("_", 2)
    assert prefix == "lyst" and token_id == issued.info.token_id and len(secret) == 43
    assert issued.token not in repr(issued)
    stored = db.query_one("SELECT secret_hash FROM service_tokens")[0]
    assert stored == hash_service_secret(secret) and secret not in stored
    dump = repr(db.query("SELECT * FROM service_tokens")) + repr([e.payload for e in journal.iter_all()])
    assert secret not in dump and issued.token not in dump
    assert store.verify(issued.token).role == "viewer"
    # wrong secret, malformed, unknown id
    for bad, reason in (
        (f"lyst_{token_id}_{'A' * 43}", "unknown service token"),
        (f"lyst_0000000000000000_{secret}", "unknown service token"),
        ("lyst_x", "malformed service token"),
        (issued.token + "x", "malformed service token"),
    ):
        with pytest.raises(InvalidToken) as info:
            store.verify(bad)
        assert info.value.reason == reason
    # expiry on the clock, revocation at once
    clock.advance_to(T0_NS + 3600 * NS_PER_SECOND)
    with pytest.raises(InvalidToken, match="expired"):
        store.verify(issued.token)
    other = store.create("ci-bot", "trader", 365 * 86_400, "root")
    assert store.revoke(other.info.token_id).revoked is True
    with pytest.raises(InvalidToken, match="revoked"):
        store.verify(other.token)
    assert [t.token_id for t in store.list()] == [issued.info.token_id]
    assert len(store.list(include_revoked=True)) == 2
    with pytest.raises(NotFoundError):
        store.revoke("ffffffffffffffff")
    for name, role, ttl, field in (("x", "viewer", 3600, "name"), ("ok-name", "root", 3600, "role"),
                                   ("ok-name", "viewer", 3599, "ttl_seconds"), ("ok-name", "viewer", 365 * 86_400 + 1, "ttl_seconds")):
        with pytest.raises(ValidationError) as err:
            store.create(name, role, ttl, "root")
        assert err.value.field == field
    assert {e.type for e in journal.iter_all()} == {"ServiceTokenCreated", "ServiceTokenRevoked"}
    db.close()


def test_service_token_last_use_is_written_at_most_once_a_minute(tmp_path, clock: SimClock) -> None:
    from appliance.security.tokens import ServiceTokenStore
    from appliance.store.journal import Journal

    db = Database(tmp_path / "lyra.db")
    store = ServiceTokenStore(db, Journal(db), clock)
    issued = store.create("grafana", "viewer", 3600, "root")
    store.verify(issued.token)
    assert store.get(issued.info.token_id).last_used_ns == T0_NS
    clock.advance_to(T0_NS + 30 * NS_PER_SECOND)
    store.verify(issued.token)
    assert store.get(issued.info.token_id).last_used_ns == T0_NS
    clock.advance_to(T0_NS + 61 * NS_PER_SECOND)
    store.verify(issued.token)
    assert store.get(issued.info.token_id).last_used_ns == T0_NS + 61 * NS_PER_SECOND
    db.close()


def test_auth_key_file_is_created_private_and_refused_when_readable(tmp_path) -> None:
    import os
    import stat

    from appliance.security.authkey import AuthKeyError, load_or_create_auth_key

    key = load_or_create_auth_key(tmp_path)
    path = tmp_path / "auth.key"
    assert len(key) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_auth_key(tmp_path) == key
    for mode in (0o640, 0o604, 0o660):
        os.chmod(path, mode)
        with pytest.raises(AuthKeyError, match="group or others"):
            load_or_create_auth_key(tmp_path)
    os.chmod(path, 0o600)
    path.write_bytes(b"short")
    with pytest.raises(AuthKeyError, match="32 bytes"):
        load_or_create_auth_key(tmp_path)
