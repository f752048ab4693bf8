"""The whole tree passes ruff with the rules in pyproject.toml, so style stays a check, not a chore."""

from __future__ import annotations

import subprocess
import sys

from tools.repository import repository_root


def test_the_tree_passes_ruff() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
        cwd=repository_root(), capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
