"""The repository's files, found the same way inside and outside Bazel.

Tests and tools read protos, buf.yaml and pyproject.toml by path. Under `bazel test` and
`bazel run` those are the target's runfiles, so a file the target did not declare is
missing there instead of being read from the developer's checkout behind Bazel's back
(`Path(__file__).resolve()` follows the runfiles symlinks into the checkout). In a plain
checkout they are the files beside this one.
"""

from __future__ import annotations

from pathlib import Path

from runfiles import runfiles

# The workspace name in WORKSPACE: the folder of the main repository inside the runfiles tree.
WORKSPACE = "limelight"

CHECKOUT = Path(__file__).resolve().parent.parent


def repository_root() -> Path:
    """The runfiles tree of the running Bazel target, or the checkout outside Bazel."""
    located = runfiles.Create()
    if located is None:
        return CHECKOUT
    # Directory-based runfiles (Linux) answer with a path inside the tree, unresolved.
    marker = located.Rlocation(f"{WORKSPACE}/pyproject.toml")
    if marker is None:
        raise FileNotFoundError("pyproject.toml is not among this Bazel target's runfiles")
    return Path(marker).parent


def repository_file(relative: str) -> Path:
    """`relative` (a path from the repository root) in the runfiles tree or the checkout."""
    return repository_root() / relative
