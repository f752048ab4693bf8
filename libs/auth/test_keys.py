from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

from libs.auth.keys import load_or_create_private_key

RACERS = 8


def _public_key_of(path: Path, start: multiprocessing.synchronize.Event) -> bytes:
    start.wait()
    return load_or_create_private_key(path).public_key().public_bytes_raw()


def test_processes_creating_one_key_at_once_all_read_the_same_whole_key(tmp_path: Path) -> None:
    """Services starting together (gifts and shop share the local payment key) never read a
    half-written key file: each round races eight processes on a fresh path."""
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(RACERS) as pool:
        for round_number in range(5):
            start = manager.Event()
            path = tmp_path / f"round-{round_number}" / "keys" / "shared.pem"
            racing = [pool.apply_async(_public_key_of, (path, start)) for _ in range(RACERS)]
            start.set()
            keys = {result.get(timeout=60) for result in racing}
            assert len(keys) == 1
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert [entry.name for entry in path.parent.iterdir()] == [path.name]  # no temporary file left
