from __future__ import annotations

import datetime as dt
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag

from libs.errors import NotFound
from libs.privacy.fields import SubjectErased
from libs.privacy.sealing import DataKey
from libs.storage.database import open_database
from services.compliance.privacy.keyfile import LocalKeyEncryptionKey, key_file_path
from services.compliance.privacy.store import MIGRATIONS, PrivacyStore
from services.compliance.privacy.usecases import DataKeys

NOW = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def keys(tmp_path: Path, database_engine: str) -> Iterator[DataKeys]:
    store = PrivacyStore.open(tmp_path)
    yield DataKeys(store, LocalKeyEncryptionKey.for_deployment(tmp_path), lambda: NOW)
    store.close()


def stored_keys(tmp_path: Path) -> list[tuple[bytes | None, bool]]:
    """(the wrapped form, shredded?) of every stored key, read past the store's code."""
    database = open_database("compliance", MIGRATIONS, area="privacy", root=tmp_path)
    try:
        with database.reading() as connection:
            rows = connection.execute("SELECT wrapped, shred_us FROM data_keys").fetchall()
    finally:
        database.close()
    return [(None if row[0] is None else bytes(row[0]), row[1] is not None) for row in rows]


def test_the_key_file_is_owner_only(keys: DataKeys, tmp_path: Path) -> None:
    assert stat.S_IMODE(key_file_path(tmp_path).stat().st_mode) == 0o600


def test_a_subject_keeps_one_key_across_restarts(keys: DataKeys, tmp_path: Path) -> None:
    first = keys.current_key("users/ada")
    store = PrivacyStore.open(tmp_path)
    reopened = DataKeys(store, LocalKeyEncryptionKey.for_deployment(tmp_path), lambda: NOW)
    assert reopened.current_key("users/ada") == first
    assert reopened.key("users/ada", first.key_id) == first
    store.close()
    assert keys.current_key("users/bob") != first


@pytest.mark.parametrize("database_engine", ["sqlite"], indirect=True)  # reads the file's bytes
def test_the_database_holds_only_wrapped_keys(keys: DataKeys, tmp_path: Path) -> None:
    key = keys.current_key("users/ada")
    files = b"".join(path.read_bytes() for path in (tmp_path / "compliance").glob("privacy.db*"))
    assert key.material not in files


# PostgreSQL keeps the old row version until VACUUM (the store's docstring): the bytes are SQLite's promise.
@pytest.mark.parametrize("database_engine", ["sqlite"], indirect=True)
def test_shredding_destroys_the_key_in_every_byte_of_the_file(keys: DataKeys, tmp_path: Path) -> None:
    key = keys.current_key("users/ada")
    kek = LocalKeyEncryptionKey.for_deployment(tmp_path)
    [(wrapped, _)] = stored_keys(tmp_path)
    assert wrapped is not None
    assert kek.unwrap("users/ada", key.key_id, wrapped) == key.material
    assert keys.shred("users/ada") is True
    assert keys.shred("users/ada") is False  # idempotent
    files = b"".join(path.read_bytes() for path in (tmp_path / "compliance").glob("privacy.db*"))
    assert wrapped not in files
    with pytest.raises(SubjectErased):
        keys.current_key("users/ada")
    with pytest.raises(SubjectErased):
        keys.key("users/ada", key.key_id)


def test_a_shredded_key_is_gone_from_the_table(keys: DataKeys, tmp_path: Path) -> None:
    key = keys.current_key("users/ada")
    [(wrapped, shredded)] = stored_keys(tmp_path)
    assert wrapped is not None and not shredded
    assert LocalKeyEncryptionKey.for_deployment(tmp_path).unwrap("users/ada", key.key_id, wrapped) == key.material
    assert keys.shred("users/ada") is True
    assert keys.shred("users/ada") is False  # idempotent
    assert stored_keys(tmp_path) == [(None, True)]
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
