"""libs/ and services/ pass `mypy --strict` with the configuration in pyproject.toml.

A Bazel target of its own (//tools:types): it reads every file of libs/ and services/ and
the generated .pyi stubs, so Bazel re-runs it when any of them changes and caches it
otherwise. tools/BUILD.bazel's MYPY_GATES_CI is the switch that puts it into `//...`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tools.repository import repository_root


def test_libs_and_services_pass_mypy_strict(tmp_path: Path) -> None:
    root = repository_root()
    assert (root / "gen" / "limelight").is_dir(), "the generated stubs are missing: run `python -m tools.protogen`"
    result = subprocess.run(
        # Files, strictness and the stub path come from pyproject.toml; the cache stays out of the tree.
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy-cache"), "--no-error-summary"],
        cwd=root, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
