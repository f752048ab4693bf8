from __future__ import annotations

import stat
from pathlib import Path

import pytest

from libs.storage.secret_files import SecretFileError, read_or_create_secret


def test_a_secret_is_created_once_owner_only_and_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "secret"
    first = read_or_create_secret(path, lambda: b"first")
    assert read_or_create_secret(path, lambda: b"second") == first == b"first"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["secret"]  # no temporary left behind


def test_a_secret_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    read_or_create_secret(path, lambda: b"s")
    path.chmod(0o640)
    with pytest.raises(SecretFileError):
        read_or_create_secret(path, lambda: b"s")
