from __future__ import annotations

import stat
from pathlib import Path

import pytest

from libs.storage.secret_files import SecretFileError
from services.compliance.audit.keys import KEY_FILE_NAME, SigningKeyError, load_or_create_signing_key

ORIGIN = "limelight.test/audit"


def test_the_key_is_created_once_readable_by_its_owner_only(tmp_path: Path) -> None:
    created = load_or_create_signing_key(tmp_path, ORIGIN)
    assert stat.S_IMODE((tmp_path / KEY_FILE_NAME).stat().st_mode) == 0o600
    assert load_or_create_signing_key(tmp_path, ORIGIN).verifier == created.verifier


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    load_or_create_signing_key(tmp_path, ORIGIN)
    (tmp_path / KEY_FILE_NAME).chmod(0o644)
    with pytest.raises(SecretFileError):
        load_or_create_signing_key(tmp_path, ORIGIN)


def test_a_key_for_another_origin_is_refused(tmp_path: Path) -> None:
    load_or_create_signing_key(tmp_path, ORIGIN)
    with pytest.raises(SigningKeyError):
        load_or_create_signing_key(tmp_path, "limelight.test/other")
