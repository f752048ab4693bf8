"""Fixtures for the ingest tests: tiny synthetic clips and one local Ray per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from libs.storage.testing import database_engine, postgres_server  # noqa: F401
from services.ingest.sample_clips import ClipSpec, write_clip

# Small on purpose: the suite runs on two shared cores. Sizes are chosen so every case
# that matters still happens (several rungs, odd sizes, a quarter-turn).
SAMPLE_CLIPS: dict[str, ClipSpec] = {
    "portrait": ClipSpec(480, 854, 3.5),  # two rungs: 480x854 and 360x640
    "landscape": ClipSpec(256, 144, 3.2, audio_layout="mono", audio_rate=44_100),
    "rotated": ClipSpec(160, 96, 3.2, rotation=90),  # coded landscape, shown portrait
    "upside_down": ClipSpec(96, 64, 3.2, rotation=180, audio=False),
    "no_audio": ClipSpec(96, 160, 3.2, audio=False),
    "variable_frame_rate": ClipSpec(160, 96, 4.1, variable_frame_rate=True),
    "odd_size": ClipSpec(97, 161, 3.2, pixel_format="yuv444p"),
    "too_short": ClipSpec(96, 160, 2.0),
}


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("clips")
    paths = {name: write_clip(directory / f"{name}.mp4", spec) for name, spec in SAMPLE_CLIPS.items()}
    portrait = paths["portrait"].read_bytes()
    paths["corrupt"] = directory / "corrupt.mp4"
    # The real header, then the media data overwritten: opens, but nothing decodes.
    paths["corrupt"].write_bytes(portrait[:64] + bytes(range(256)) * 64)
    paths["text_renamed"] = directory / "notes.mp4"
    paths["text_renamed"].write_text("Shopping list\n- milk\n- eggs\n" * 40)
    return paths


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray for the whole test session, shut down at the end."""
    import ray

    from services.ingest.workers import connect_ray

    os.environ.pop("RAY_ADDRESS", None)
    started = connect_ray(num_cpus=2)
    try:
        yield
    finally:
        if started:
            ray.shutdown()
