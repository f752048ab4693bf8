"""The data directory and everything made under it are owner-only, whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from libs.storage.paths import ensure_data_dir, private_dir, service_dir


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    previous = os.umask(0o002)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("permissive_umask")
def test_a_private_dir_and_the_parents_it_creates_are_owner_only(tmp_path: Path) -> None:
    made = private_dir(tmp_path / "data" / "keys" / "nested")
    assert [mode(path) for path in (tmp_path / "data", tmp_path / "data" / "keys", made)] == [0o700] * 3


@pytest.mark.usefixtures("permissive_umask")
def test_service_dirs_are_owner_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIMELIGHT_DATA_DIR", str(tmp_path / "data"))
    assert mode(service_dir("gifts")) == 0o700
    assert mode(tmp_path / "data") == 0o700


def test_an_existing_data_dir_is_tightened(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    assert mode(ensure_data_dir(root)) == 0o700


def test_a_file_where_a_directory_belongs_is_refused(tmp_path: Path) -> None:
    (tmp_path / "gifts").write_text("not a directory")
    with pytest.raises(NotADirectoryError):
        private_dir(tmp_path / "gifts")
