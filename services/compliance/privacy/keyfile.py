"""The embedded key-encryption key: one AES-256 key in a file at mode 0600 under the data directory.

It wraps every subject's data key (AES-256-GCM, the subject and key id as associated data, so
a wrapped key moved to another row does not unwrap). A KMS-held key replaces this class by
implementing `usecases.KeyEncryptionKey`; the data keys never change.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from libs.privacy.sealing import KEY_BYTES, NONCE_BYTES, DataKey
from libs.storage.secret_files import read_or_create_secret


def key_file_path(data_root: Path) -> Path:
    return data_root / "keys" / "privacy-kek.secret"


class LocalKeyEncryptionKey:
    def __init__(self, material: bytes) -> None:
        if len(material) != KEY_BYTES:
            raise ValueError(f"the key-encryption key is {KEY_BYTES} bytes")
        self._aead = AESGCM(material)

    @classmethod
    def for_deployment(cls, data_root: Path) -> LocalKeyEncryptionKey:
        return cls(read_or_create_secret(key_file_path(data_root), lambda: AESGCM.generate_key(bit_length=256)))

    def wrap(self, subject: str, key: DataKey) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, key.material, f"{subject}\x00{key.key_id}".encode())

    def unwrap(self, subject: str, key_id: str, wrapped: bytes) -> bytes:
        return self._aead.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], f"{subject}\x00{key_id}".encode())
