"""Sealing one personal field under its subject's data key (AES-256-GCM).

A sealed field is `version ‖ key id (16 bytes) ‖ nonce (12 bytes) ‖ ciphertext and tag`.
The key id travels with the ciphertext, so a reader knows which key opens it; the subject
and the field's name are the associated data, so a ciphertext moved to another subject's
row or another column fails to open instead of reading as theirs. Once the subject's key
is destroyed (erasure), every sealed copy anywhere — databases, backups, exports — is
noise.

Pure: no I/O. Where keys come from is `libs.privacy.keys`.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT_VERSION = 1
KEY_BYTES = 32
KEY_ID_BYTES = 16
NONCE_BYTES = 12
_HEADER = 1 + KEY_ID_BYTES + NONCE_BYTES


class SealedFieldError(ValueError):
    """A sealed value that is malformed, or was not sealed for this subject and field."""


@dataclass(frozen=True)
class DataKey:
    """One subject's data key: `key_id` (32 hex digits) names it beside every ciphertext."""

    key_id: str
    material: bytes

    def __post_init__(self) -> None:
        if len(self.material) != KEY_BYTES:
            raise ValueError(f"a data key is {KEY_BYTES} bytes, not {len(self.material)}")
        if len(bytes.fromhex(self.key_id)) != KEY_ID_BYTES or self.key_id != self.key_id.lower():
            raise ValueError("a key id is 32 lowercase hex digits")

    @classmethod
    def generate(cls) -> DataKey:
        return cls(secrets.token_hex(KEY_ID_BYTES), AESGCM.generate_key(bit_length=256))

    def __repr__(self) -> str:  # never print key material into a log
        return f"DataKey(key_id={self.key_id!r})"


def _associated_data(subject: str, field_name: str) -> bytes:
    return f"{subject}\x00{field_name}".encode()


def seal(key: DataKey, subject: str, field_name: str, plaintext: str) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(key.material).encrypt(nonce, plaintext.encode(), _associated_data(subject, field_name))
    return bytes([FORMAT_VERSION]) + bytes.fromhex(key.key_id) + nonce + ciphertext


def key_id_of(sealed: bytes) -> str:
    """The id of the key that sealed `sealed`."""
    if len(sealed) < _HEADER or sealed[0] != FORMAT_VERSION:
        raise SealedFieldError("not a sealed field of a known format")
    return sealed[1:1 + KEY_ID_BYTES].hex()


def open_sealed(key: DataKey, subject: str, field_name: str, sealed: bytes) -> str:
    if key_id_of(sealed) != key.key_id:
        raise SealedFieldError(f"sealed under key {key_id_of(sealed)}, not {key.key_id}")
    nonce = sealed[1 + KEY_ID_BYTES:_HEADER]
    try:
        plaintext = AESGCM(key.material).decrypt(nonce, sealed[_HEADER:], _associated_data(subject, field_name))
    except InvalidTag as error:
        raise SealedFieldError(f"not sealed for {subject}'s {field_name}, or altered") from error
    return plaintext.decode()
