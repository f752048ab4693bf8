from __future__ import annotations

from pathlib import Path

import pytest

from libs.audit.pseudonyms import Pseudonymizer


def test_references_are_stable_and_depend_on_the_secret() -> None:
    ours, theirs = Pseudonymizer(b"k" * 32), Pseudonymizer(b"j" * 32)
    assert ours.subject_ref("users/42") == ours.subject_ref("users/42")
    assert ours.subject_ref("users/42") != ours.subject_ref("users/43")
    assert ours.subject_ref("users/42") != theirs.subject_ref("users/42")
    assert ours.subject_ref("") == ""


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        Pseudonymizer(b"short")


def test_every_service_of_a_deployment_gets_the_same_secret(tmp_path: Path) -> None:
    assert (Pseudonymizer.for_deployment(tmp_path).subject_ref("users/1")
            == Pseudonymizer.for_deployment(tmp_path).subject_ref("users/1"))
