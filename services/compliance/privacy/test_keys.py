from __future__ import annotations

import datetime as dt
import sqlite3
import stat
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag

from libs.errors import NotFound
from libs.privacy.fields import SubjectErased
from libs.privacy.sealing import DataKey
from services.compliance.privacy.keyfile import LocalKeyEncryptionKey, key_file_path
from services.compliance.privacy.store import PrivacyStore
from services.compliance.privacy.usecases import DataKeys

NOW = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def keys(tmp_path: Path) -> DataKeys:
    return DataKeys(PrivacyStore.open(tmp_path), LocalKeyEncryptionKey.for_deployment(tmp_path), lambda: NOW)


def test_the_key_file_is_owner_only(keys: DataKeys, tmp_path: Path) -> None:
    assert stat.S_IMODE(key_file_path(tmp_path).stat().st_mode) == 0o600


def test_a_subject_keeps_one_key_across_restarts(keys: DataKeys, tmp_path: Path) -> None:
    first = keys.current_key("users/ada")
    reopened = DataKeys(PrivacyStore.open(tmp_path), LocalKeyEncryptionKey.for_deployment(tmp_path), lambda: NOW)
    assert reopened.current_key("users/ada") == first
    assert reopened.key("users/ada", first.key_id) == first
    assert keys.current_key("users/bob") != first


def test_the_database_holds_only_wrapped_keys(keys: DataKeys, tmp_path: Path) -> None:
    key = keys.current_key("users/ada")
    files = b"".join(path.read_bytes() for path in (tmp_path / "compliance").glob("privacy.db*"))
    assert key.material not in files


def test_shredding_destroys_the_key_in_every_byte_of_the_file(keys: DataKeys, tmp_path: Path) -> None:
    key = keys.current_key("users/ada")
    kek = LocalKeyEncryptionKey.for_deployment(tmp_path)
    with sqlite3.connect(tmp_path / "compliance" / "privacy.db") as connection:  # the wrapped form, as stored
        wrapped = connection.execute("SELECT wrapped FROM data_keys").fetchone()[0]
    assert kek.unwrap("users/ada", key.key_id, wrapped) == key.material
    assert keys.shred("users/ada") is True
    assert keys.shred("users/ada") is False  # idempotent
    files = b"".join(path.read_bytes() for path in (tmp_path / "compliance").glob("privacy.db*"))
    assert wrapped not in files
    with pytest.raises(SubjectErased):
        keys.current_key("users/ada")
    with pytest.raises(SubjectErased):
        keys.key("users/ada", key.key_id)


def test_a_subject_erased_before_any_key_gets_none_afterwards(keys: DataKeys) -> None:
    assert keys.shred("users/eve") is False
    with pytest.raises(SubjectErased):
        keys.current_key("users/eve")


def test_a_key_id_the_subject_never_had_is_not_found(keys: DataKeys) -> None:
    other = keys.current_key("users/bob")
    keys.current_key("users/ada")
    with pytest.raises(NotFound):
        keys.key("users/ada", other.key_id)


def test_a_wrapped_key_moved_to_another_subject_does_not_unwrap(tmp_path: Path) -> None:
    kek = LocalKeyEncryptionKey.for_deployment(tmp_path)
    key = DataKey.generate()
    with pytest.raises(InvalidTag):
        kek.unwrap("users/bob", key.key_id, kek.wrap("users/ada", key))
