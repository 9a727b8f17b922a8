"""Argon2id password hashing."""

from __future__ import annotations

import string

import pytest

from appliance.security.passwords import (
    PRODUCTION,
    TEST_ONLY_FAST,
    Argon2Params,
    PasswordCheck,
    generate_password,
    hash_password,
    verify_password,
)

PASSWORD = "correct horse battery staple"


def test_hash_then_verify_roundtrip() -> None:
    stored = hash_password(PASSWORD, params=TEST_ONLY_FAST)
    check = verify_password(stored, PASSWORD, params=TEST_ONLY_FAST)
    assert check == PasswordCheck(ok=True, needs_rehash=False)
    assert check


def test_wrong_password_is_false() -> None:
    stored = hash_password(PASSWORD, params=TEST_ONLY_FAST)
    check = verify_password(stored, PASSWORD + "!", params=TEST_ONLY_FAST)
    assert not check
    assert check.ok is False and check.needs_rehash is False


def test_hash_is_argon2id_salted_and_does_not_contain_the_password() -> None:
    first = hash_password(PASSWORD, params=TEST_ONLY_FAST)
    second = hash_password(PASSWORD, params=TEST_ONLY_FAST)
    assert first.startswith("$argon2id$v=19$")
    assert first != second  # random salt
    assert PASSWORD not in first


def test_production_parameters_are_rfc9106_low_memory_profile() -> None:
    assert PRODUCTION == Argon2Params(time_cost=3, memory_cost_kib=65536, parallelism=4, hash_len=32, salt_len=16)
    stored = hash_password(PASSWORD)  # default parameters are the production ones
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert verify_password(stored, PASSWORD)


def test_needs_rehash_when_parameters_changed() -> None:
    stored = hash_password(PASSWORD, params=TEST_ONLY_FAST)
    stronger = Argon2Params(time_cost=2, memory_cost_kib=128, parallelism=1)
    check = verify_password(stored, PASSWORD, params=stronger)
    assert check.ok and check.needs_rehash
    # a mismatch never asks for a rehash
    assert verify_password(stored, "nope", params=stronger) == PasswordCheck(False, False)


@pytest.mark.parametrize("bad_hash", ["", "not a hash", "$argon2id$v=19$m=64,t=1,p=1$broken", "$2b$12$abcdefghijklmnopqrstuv"])
def test_malformed_hash_is_a_mismatch_not_an_error(bad_hash: str) -> None:
    assert verify_password(bad_hash, PASSWORD, params=TEST_ONLY_FAST) == PasswordCheck(False, False)


def test_non_string_inputs() -> None:
    stored = hash_password(PASSWORD, params=TEST_ONLY_FAST)
    assert not verify_password(stored, None, params=TEST_ONLY_FAST)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        hash_password(b"bytes", params=TEST_ONLY_FAST)  # type: ignore[arg-type]


def test_generate_password() -> None:
    passwords = {generate_password() for _ in range(50)}
    assert len(passwords) == 50
    for password in passwords:
        assert len(password) == 24
        assert set(password) <= set(string.ascii_letters + string.digits)
    assert len(generate_password(40)) == 40
    assert len(generate_password(20)) == 20
    with pytest.raises(ValueError):
        generate_password(19)
