"""The log's Ed25519 signing key: created on first start, kept in the data directory, never in the repo.

The key file holds the signed-note signer key string (`PRIVATE+KEY+<origin>+<id>+<seed>`),
created with mode 0600 in one exclusive create, so no other user can read it even for a
moment. A key file readable by group or others is refused, as ssh refuses such keys:
whoever reads it can sign checkpoints in the log's name.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from libs.tlog.note import NoteSigner

KEY_FILE_NAME = "audit-log-signing.key"


class SigningKeyError(RuntimeError):
    pass


def load_or_create_signing_key(directory: Path, origin: str) -> NoteSigner:
    path = directory / KEY_FILE_NAME
    directory.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _load(path, origin)
    signer = NoteSigner.generate(origin)
    with os.fdopen(descriptor, "w") as key_file:
        key_file.write(signer.key_string() + "\n")
        key_file.flush()
        os.fsync(key_file.fileno())
    directory_descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(directory_descriptor)  # the new name survives a crash too
    finally:
        os.close(directory_descriptor)
    return signer


def _load(path: Path, origin: str) -> NoteSigner:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SigningKeyError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
    signer = NoteSigner.from_key_string(path.read_text())
    if signer.name != origin:
        raise SigningKeyError(f"{path} signs for {signer.name!r}, but this log's origin is {origin!r}")
    return signer
