"""Where Limelight keeps its files: one data directory, one folder per service.

Stores, keys and traces (which name users) are the platform user's alone: every
directory made here is owner-only (mode 0700), whatever the umask, and so are the
directories above it that this call had to create.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PRIVATE_DIR_MODE = 0o700


def data_dir() -> Path:
    """`LIMELIGHT_DATA_DIR`, or `.data/` in the repository (ignored by git)."""
    configured = os.environ.get("LIMELIGHT_DATA_DIR")
    return Path(configured).resolve() if configured else REPO_ROOT / ".data"


def private_dir(path: Path) -> Path:
    """Create `path` (and any missing parents) at mode 0700; an existing directory keeps its mode."""
    missing: list[Path] = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:  # another process made it first: its mode is the one it chose
            continue
        os.chmod(directory, PRIVATE_DIR_MODE)  # mkdir's mode is cut by the umask; chmod's is not
    if not path.is_dir():
        raise NotADirectoryError(f"{path} exists and is not a directory")
    return path


def ensure_data_dir(root: Path | None = None) -> Path:
    """The data directory, created at 0700, and tightened to 0700 if it already exists."""
    path = private_dir(root or data_dir())
    os.chmod(path, PRIVATE_DIR_MODE)
    return path


def service_dir(service: str) -> Path:
    return private_dir(data_dir() / service)
