"""The log's Ed25519 signing key: created on first start in the data directory, never in the repo.

The file holds the signed-note signer key string (`PRIVATE+KEY+<origin>+<id>+<seed>`),
owner-only (see `libs.storage.secret_files`): whoever reads it can sign checkpoints
in the log's name.
"""

from __future__ import annotations

from pathlib import Path

from libs.storage.secret_files import read_or_create_secret
from libs.tlog.note import NoteSigner

KEY_FILE_NAME = "audit-log-signing.key"


class SigningKeyError(RuntimeError):
    pass


def load_or_create_signing_key(directory: Path, origin: str) -> NoteSigner:
    text = read_or_create_secret(
        directory / KEY_FILE_NAME, lambda: (NoteSigner.generate(origin).key_string() + "\n").encode()
    ).decode()
    signer = NoteSigner.from_key_string(text)
    if signer.name != origin:
        raise SigningKeyError(f"{directory / KEY_FILE_NAME} signs for {signer.name!r}, not for {origin!r}")
    return signer
