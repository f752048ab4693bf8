"""Main program of every pytest_test target: runs pytest on the files Bazel passes.

Bazel starts it inside the target's runfiles tree, which mirrors the repository,
so pytest runs from that root with pyproject.toml's options exactly as a plain
`pytest` run from the checkout does.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest


def isolate_scratch_space(scratch: Path) -> None:
    """Point everything a test may write at `scratch`, private to this target.

    - HOME: Bazel's sandbox mounts the real home read-only and Ray writes
      `~/.ray` at first init.
    - TMPDIR (and so pytest's tmp_path, tempfile and Ray's session folder): a short
      path under /tmp, because Bazel's TEST_TMPDIR is ~130 characters deep and
      Ray's Unix sockets must fit in 107; a folder per target keeps two Ray
      clusters started by parallel targets apart.
    - LIMELIGHT_DATA_DIR: the default resolves the runfiles symlinks back to the
      checkout and would write test databases into the developer's `.data/`.
    - HYPOTHESIS_STORAGE_DIRECTORY: Hypothesis would write `.hypothesis/` into
      the runfiles tree.
    """
    for variable, folder in (
        ("HOME", "home"),
        ("TMPDIR", "tmp"),
        ("LIMELIGHT_DATA_DIR", "data"),
        ("HYPOTHESIS_STORAGE_DIRECTORY", "hypothesis"),
    ):
        path = scratch / folder
        path.mkdir()
        os.environ[variable] = str(path)
    tempfile.tempdir = None  # recompute from the new TMPDIR


def main(test_files: list[str]) -> int:
    repository_root = Path(os.environ["TEST_SRCDIR"]) / os.environ["TEST_WORKSPACE"]
    os.chdir(repository_root)
    scratch = Path(tempfile.mkdtemp(prefix="limelight-test-", dir="/tmp"))
    try:
        isolate_scratch_space(scratch)
        return pytest.main(
            [
                f"--rootdir={repository_root}",
                f"--config-file={repository_root / 'pyproject.toml'}",
                f"--basetemp={scratch / 'pytest'}",
                # Bazel caches results itself; pytest's cache would write into runfiles.
                "-p",
                "no:cacheprovider",
                # Per-test results for Bazel's test.xml, which tools/test.sh sums up.
                f"--junitxml={os.environ['XML_OUTPUT_FILE']}",
                *test_files,
            ]
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
