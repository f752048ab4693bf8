"""The link-signing keys on disk: one 0600 file per key id under `<data>/keys/affiliate-links/`.

Files are made and checked by `libs.storage.secret_files` (created whole, once, owner-only; a
file others can read is refused). Every key file present verifies; the configured current id
signs (its file is created on first use, which is how a rotation starts); retired ids are
refused. A KMS replaces this module by implementing `model.links.TokenKeys`.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from libs.storage.secret_files import read_or_create_secret
from services.affiliate.model.links import HmacKeyRing

KEY_BYTES = 32
KEY_ID = re.compile(r"^[a-z0-9]{1,16}$")


def key_directory(data_root: Path) -> Path:
    return data_root / "keys" / "affiliate-links"


def _read(path: Path) -> bytes:
    return read_or_create_secret(path, lambda: secrets.token_bytes(KEY_BYTES))


def load_key_ring(data_root: Path, current: str, retired: frozenset[str]) -> HmacKeyRing:
    if not KEY_ID.match(current):
        raise ValueError(f"link key id {current!r} must be 1 to 16 lowercase letters or digits")
    directory = key_directory(data_root)
    keys = {current: _read(directory / f"{current}.secret")}
    for path in sorted(directory.glob("*.secret")):
        if KEY_ID.match(path.stem):
            keys.setdefault(path.stem, _read(path))
    return HmacKeyRing(keys, current, retired)


def visitor_pseudonym_secret(data_root: Path) -> bytes:
    """The key of the visitors' address pseudonyms (keyed, so an address cannot be guessed back)."""
    return _read(data_root / "keys" / "affiliate-visitor.secret")
