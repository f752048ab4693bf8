"""Secret files under the data directory: created once, owner-only, never half-written.

A new secret is written to a private temporary file (mode 0600 from the start), synced,
and hard-linked into place. The link either creates the name with the complete
contents or fails because another process won the race, in which case that process's
secret is used: two services starting together always agree on one secret, and none
ever reads an empty file. A secret file that group or others can read is refused, as
ssh refuses such keys.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from libs.storage.paths import private_dir


class SecretFileError(RuntimeError):
    pass


def read_or_create_secret(path: Path, generate: Callable[[], bytes]) -> bytes:
    if not path.exists():
        _create(path, generate())
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SecretFileError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
    return path.read_bytes()


def _create(path: Path, secret: bytes) -> None:
    private_dir(path.parent)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(secret)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the new name survives a crash too
        finally:
            os.close(directory)
    finally:
        os.unlink(temporary)
