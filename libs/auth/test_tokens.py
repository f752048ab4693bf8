from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from libs.auth.principal import AgeBracket, Principal, Role, birth_date_for_age
from libs.auth.tokens import TokenClaims, TokenVerifier, mint_token, platform_signing_key
from libs.errors import Unauthenticated

ALICE = TokenClaims(subject="users/alice", roles=frozenset({Role.VIEWER}), birth_date=dt.date(2000, 5, 1), country="DE")


def test_a_minted_token_verifies_to_the_same_principal() -> None:
    key = Ed25519PrivateKey.generate()
    principal = TokenVerifier(key.public_key()).verify(mint_token(key, ALICE, ttl=dt.timedelta(minutes=5)))
    assert principal.subject == "users/alice"
    assert principal.roles == {Role.VIEWER}
    assert principal.country == "DE"
    assert principal.is_adult_on(dt.date(2026, 11, 23))
    assert principal.user_id == "alice"


def test_a_token_signed_by_another_key_is_refused() -> None:
    token = mint_token(Ed25519PrivateKey.generate(), ALICE, ttl=dt.timedelta(minutes=5))
    with pytest.raises(Unauthenticated) as raised:
        TokenVerifier(Ed25519PrivateKey.generate().public_key()).verify(token)
    assert raised.value.reason == "TOKEN_INVALID"


def test_an_expired_token_is_refused() -> None:
    key = Ed25519PrivateKey.generate()
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    token = mint_token(key, ALICE, ttl=dt.timedelta(minutes=5), now=long_ago)
    with pytest.raises(Unauthenticated) as raised:
        TokenVerifier(key.public_key()).verify(token)
    assert raised.value.reason == "TOKEN_EXPIRED"


def test_a_tampered_payload_is_refused() -> None:
    key = Ed25519PrivateKey.generate()
    header, payload, signature = mint_token(key, ALICE, ttl=dt.timedelta(minutes=5)).split(".")
    forged = ".".join([header, payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1], signature])
    with pytest.raises(Unauthenticated):
        TokenVerifier(key.public_key()).verify(forged)


def test_unknown_age_counts_as_minor_and_bracket_adult_counts_as_adult() -> None:
    key = Ed25519PrivateKey.generate()
    verifier = TokenVerifier(key.public_key())
    unknown = verifier.verify(mint_token(key, TokenClaims("users/bob", frozenset({Role.VIEWER})), ttl=dt.timedelta(minutes=1)))
    adult = verifier.verify(
        mint_token(key, TokenClaims("users/eve", frozenset(), age_bracket=AgeBracket.ADULT), ttl=dt.timedelta(minutes=1))
    )
    assert not unknown.is_adult_on(dt.date.today())
    assert adult.is_adult_on(dt.date.today())


def test_the_platform_key_is_created_once_with_owner_only_permissions(tmp_path: Path) -> None:
    first = platform_signing_key(tmp_path)
    second = platform_signing_key(tmp_path)
    assert first.public_key().public_bytes_raw() == second.public_key().public_bytes_raw()
    key_file = next((tmp_path / "keys").iterdir())
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600



@pytest.mark.parametrize("today", [dt.date(2026, 11, 23), dt.date(2028, 2, 29)])
def test_the_birth_date_for_an_age_makes_exactly_that_age_today(today: dt.date) -> None:
    born = birth_date_for_age(18, today)
    principal = Principal("users/x", frozenset(), dt.datetime.now(dt.UTC), birth_date=born)
    assert principal.age_on(today) == 18
    eighteenth_birthday = born.replace(year=born.year + 18)
    assert eighteenth_birthday <= today
    assert principal.age_on(eighteenth_birthday - dt.timedelta(days=1)) == 17


def test_only_the_service_role_on_a_service_subject_makes_a_service() -> None:
    key = Ed25519PrivateKey.generate()
    verifier = TokenVerifier(key.public_key())

    def principal(subject: str, *roles: Role) -> Principal:
        return verifier.verify(mint_token(key, TokenClaims(subject, frozenset(roles)), ttl=dt.timedelta(minutes=1)))

    impostor = principal("services/gifts", Role.VIEWER)
    assert (impostor.is_service, impostor.service) == (False, "")
    service = principal("services/gifts", Role.SERVICE)
    assert (service.is_service, service.service) == (True, "gifts")
    user_with_the_role = principal("users/ada", Role.SERVICE, Role.VIEWER)
    assert not user_with_the_role.is_service
    assert user_with_the_role.has_role(Role.SERVICE)
