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

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

FORMAT_VERSION = 1
KEY_BYTES = 32
KEY_ID_BYTES = 16
NONCE_BYTES = 12
_HEADER = 1 + KEY_ID_BYTES + NONCE_BYTES
# A sealed field in a TEXT column or a JSON document: this prefix, then the sealed bytes in base64url.
TEXT_PREFIX = "sealed:"


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


def fingerprint(key: DataKey, subject: str, field_name: str, plaintext: str) -> str:
    """A deterministic keyed digest of a personal field (HMAC-SHA256 under a key derived from the
    subject's data key), for telling a retried request from another one without storing the field
    in the clear: equal plaintexts give equal fingerprints while the key exists, and once it is
    destroyed no one can test a guess against a stored fingerprint."""
    mac_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=b"limelight field fingerprint").derive(key.material)
    digest = hmac.new(mac_key, _associated_data(subject, field_name) + b"\x00" + plaintext.encode(), hashlib.sha256)
    return f"{key.key_id}:{digest.hexdigest()}"


def as_text(sealed: bytes) -> str:
    """A sealed field as text (`sealed:` and base64url), for TEXT columns and JSON."""
    return TEXT_PREFIX + base64.urlsafe_b64encode(sealed).decode()


def from_text(text: str) -> bytes | None:
    """The sealed bytes of `as_text`'s form, or None for text that is not sealed (a legacy plain value)."""
    if not text.startswith(TEXT_PREFIX):
        return None
    try:
        return base64.urlsafe_b64decode(text[len(TEXT_PREFIX):])
    except ValueError as error:
        raise SealedFieldError("a sealed text field that is not base64url") from error
