"""tools.repository finds the repository's files in Bazel's runfiles tree, or in the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tools import repository


def test_inside_a_bazel_run_files_come_from_the_runfiles_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = tmp_path / "runfiles"
    (tree / repository.WORKSPACE).mkdir(parents=True)
    (tree / repository.WORKSPACE / "pyproject.toml").write_text("")
    monkeypatch.delenv("RUNFILES_MANIFEST_FILE", raising=False)
    monkeypatch.setenv("RUNFILES_DIR", str(tree))

    assert repository.repository_root() == tree / repository.WORKSPACE
    assert repository.repository_file("buf.yaml") == tree / repository.WORKSPACE / "buf.yaml"


def test_outside_bazel_files_come_from_the_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("RUNFILES_DIR", "RUNFILES_MANIFEST_FILE"):
        monkeypatch.delenv(variable, raising=False)

    assert repository.repository_root() == repository.CHECKOUT
    assert (repository.CHECKOUT / "pyproject.toml").is_file()


def test_a_bazel_test_reads_its_own_runfiles_not_the_checkout() -> None:
    if "TEST_SRCDIR" not in os.environ:
        pytest.skip("checks the environment `bazel test` provides")
    root = repository.repository_root()
    assert root == Path(os.environ["TEST_SRCDIR"]) / repository.WORKSPACE
    assert root != repository.CHECKOUT
