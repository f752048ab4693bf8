"""Where Limelight keeps its files: one data directory, one folder per service."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """`LIMELIGHT_DATA_DIR`, or `.data/` in the repository (ignored by git)."""
    configured = os.environ.get("LIMELIGHT_DATA_DIR")
    return Path(configured).resolve() if configured else REPO_ROOT / ".data"


def service_dir(service: str) -> Path:
    path = data_dir() / service
    path.mkdir(parents=True, exist_ok=True)
    return path
