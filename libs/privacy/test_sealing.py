from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libs.privacy.sealing import (
    DataKey,
    SealedFieldError,
    as_text,
    fingerprint,
    from_text,
    key_id_of,
    open_sealed,
    seal,
)

KEY = DataKey.generate()


@given(st.text())
def test_what_is_sealed_opens_to_the_same_text(text: str) -> None:
    assert open_sealed(KEY, "users/ada", "caption", seal(KEY, "users/ada", "caption", text)) == text


def test_the_ciphertext_names_its_key_and_hides_the_text() -> None:
    sealed = seal(KEY, "users/ada", "caption", "Ada Lovelace")
    assert key_id_of(sealed) == KEY.key_id
    assert b"Ada" not in sealed
    assert seal(KEY, "users/ada", "caption", "Ada Lovelace") != sealed  # a fresh nonce every time


@pytest.mark.parametrize(("subject", "field_name"), [("users/bob", "caption"), ("users/ada", "display_name")])
def test_a_ciphertext_moved_to_another_subject_or_field_does_not_open(subject: str, field_name: str) -> None:
    with pytest.raises(SealedFieldError):
        open_sealed(KEY, subject, field_name, seal(KEY, "users/ada", "caption", "hello"))


def test_an_altered_ciphertext_does_not_open() -> None:
    sealed = bytearray(seal(KEY, "users/ada", "caption", "hello"))
    sealed[-1] ^= 1
    with pytest.raises(SealedFieldError):
        open_sealed(KEY, "users/ada", "caption", bytes(sealed))


def test_another_key_does_not_open_it() -> None:
    with pytest.raises(SealedFieldError):
        open_sealed(DataKey.generate(), "users/ada", "caption", seal(KEY, "users/ada", "caption", "hello"))


@pytest.mark.parametrize("garbage", [b"", b"\x02" + bytes(40), b"\x01short"])
def test_garbage_is_not_a_sealed_field(garbage: bytes) -> None:
    with pytest.raises(SealedFieldError):
        key_id_of(garbage)


def test_a_key_never_prints_its_material() -> None:
    assert KEY.material.hex() not in repr(KEY) and KEY.key_id in repr(KEY)


def test_a_fingerprint_is_equal_for_equal_text_and_tied_to_subject_field_and_key() -> None:
    first = fingerprint(KEY, "users/ada", "live.title", "Morning run")
    assert fingerprint(KEY, "users/ada", "live.title", "Morning run") == first
    assert "Morning" not in first
    others = {fingerprint(KEY, "users/ada", "live.title", "Evening run"),
              fingerprint(KEY, "users/bob", "live.title", "Morning run"),
              fingerprint(KEY, "users/ada", "gift.message", "Morning run"),
              fingerprint(DataKey.generate(), "users/ada", "live.title", "Morning run")}
    assert first not in others and len(others) == 4


@given(st.text())
def test_sealed_text_round_trips_and_plain_text_is_told_apart(text: str) -> None:
    stored = as_text(seal(KEY, "users/ada", "caption", text))
    sealed = from_text(stored)
    assert sealed is not None and open_sealed(KEY, "users/ada", "caption", sealed) == text
    assert from_text("a title written before sealing") is None
