"""C2SP signed notes (https://c2sp.org/signed-note, golang.org/x/mod/sumdb/note) with Ed25519.

A signed note is UTF-8 text ending in a newline, a blank line, then one signature line
per key: an em dash, a space, the key name, a space, and base64(key id ‖ signature).
The signature covers the text including its final newline but not the blank line.

Keys travel as plain strings, so a verifier can be pasted into a config file or a
command line:

    verifier key  <name>+<key id as 8 hex digits>+base64(0x01 ‖ 32-byte public key)
    signer key    PRIVATE+KEY+<name>+<key id>+base64(0x01 ‖ 32-byte seed)

The key id is the first four bytes (big-endian) of SHA-256(name ‖ "\\n" ‖ 0x01 ‖ public key);
0x01 identifies Ed25519. Signatures by unknown keys are ignored (that is what lets a
log rotate keys or collect witness cosignatures); a signature by a known key that does
not verify rejects the whole note.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature as _CryptographyInvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ED25519_ALGORITHM = 0x01
SIGNATURE_PREFIX = "\u2014 "
MAX_SIGNATURES = 100

_NAME = re.compile(r"[^\s+]+")


class NoteError(ValueError):
    """A note or key could not be read or did not verify."""


class MalformedNote(NoteError):
    pass


class MalformedKey(NoteError):
    pass


class UnverifiedNote(NoteError):
    """The note parsed, but no signature came from a key the caller trusts."""


class InvalidSignature(NoteError):
    """A trusted key signed the note, and the signature does not match its text."""


def key_id(name: str, public_key: bytes) -> int:
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([ED25519_ALGORITHM]) + public_key).digest()
    return int(struct.unpack(">I", digest[:4])[0])


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise MalformedKey(f"key name {name!r} must be non-empty, without spaces or '+'")
    return name


def _decode_key_material(encoded: str) -> bytes:
    try:
        material = base64.b64decode(encoded, validate=True)
    except binascii.Error as error:
        raise MalformedKey("key material is not base64") from error
    if len(material) != 33 or material[0] != ED25519_ALGORITHM:
        raise MalformedKey("key material must be 0x01 followed by 32 bytes (Ed25519)")
    return material[1:]


def _parse_key_id(text: str) -> int:
    if not re.fullmatch(r"[0-9a-f]{8}", text):
        raise MalformedKey(f"key id {text!r} must be 8 lowercase hex digits")
    return int(text, 16)


def _public_bytes(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class NoteVerifier:
    """One trusted Ed25519 public key under a name."""

    name: str
    public_key: bytes

    def __post_init__(self) -> None:
        _check_name(self.name)
        if len(self.public_key) != 32:
            raise MalformedKey("an Ed25519 public key is 32 bytes")

    @property
    def key_id(self) -> int:
        return key_id(self.name, self.public_key)

    @classmethod
    def from_key_string(cls, verifier_key: str) -> NoteVerifier:
        parts = verifier_key.strip().split("+", 2)  # base64 may itself contain "+"
        if len(parts) != 3:
            raise MalformedKey("a verifier key reads <name>+<key id>+<base64 key>")
        name, id_text, material = parts
        verifier = cls(_check_name(name), _decode_key_material(material))
        if verifier.key_id != _parse_key_id(id_text):
            raise MalformedKey(f"key id {id_text} does not match the key and name")
        return verifier

    def key_string(self) -> str:
        material = base64.b64encode(bytes([ED25519_ALGORITHM]) + self.public_key).decode()
        return f"{self.name}+{self.key_id:08x}+{material}"

    def verifies(self, text: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, text)
        except _CryptographyInvalidSignature:
            return False
        return True


class NoteSigner:
    """An Ed25519 private key under a name. Keep its key string secret."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self.name = _check_name(name)
        self._private_key = private_key
        self.verifier = NoteVerifier(name, _public_bytes(private_key.public_key()))

    @classmethod
    def generate(cls, name: str) -> NoteSigner:
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_key_string(cls, signer_key: str) -> NoteSigner:
        parts = signer_key.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise MalformedKey("a signer key reads PRIVATE+KEY+<name>+<key id>+<base64 seed>")
        _, _, name, id_text, material = parts
        signer = cls(_check_name(name), Ed25519PrivateKey.from_private_bytes(_decode_key_material(material)))
        if signer.verifier.key_id != _parse_key_id(id_text):
            raise MalformedKey(f"key id {id_text} does not match the key and name")
        return signer

    def key_string(self) -> str:
        seed = self._private_key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        material = base64.b64encode(bytes([ED25519_ALGORITHM]) + seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.verifier.key_id:08x}+{material}"

    def sign(self, text: str) -> str:
        """The signed note for `text` (which must end in a newline)."""
        _check_text(text)
        signature = self._private_key.sign(text.encode())
        encoded = base64.b64encode(struct.pack(">I", self.verifier.key_id) + signature).decode()
        return f"{text}\n{SIGNATURE_PREFIX}{self.name} {encoded}\n"


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise MalformedNote("note text must end with a newline")
    if any(ord(char) < 0x20 and char != "\n" for char in text):
        raise MalformedNote("note text may contain no control characters but newlines")


def open_note(message: str, verifiers: Iterable[NoteVerifier]) -> str:
    """The text of `message` once at least one trusted key's signature on it verifies."""
    _check_text(message)
    split = message.rfind("\n\n")
    if split < 0:
        raise MalformedNote("no blank line before the signatures")
    text, signature_block = message[: split + 1], message[split + 2 :]
    if not signature_block:
        raise MalformedNote("a signed note needs at least one signature line")
    trusted = {(verifier.name, verifier.key_id): verifier for verifier in verifiers}
    lines = signature_block.removesuffix("\n").split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNote(f"more than {MAX_SIGNATURES} signatures")
    verified_by: list[str] = []
    for line in lines:
        name, signature_id, signature = _parse_signature_line(line)
        verifier = trusted.get((name, signature_id))
        if verifier is None:
            continue
        if not verifier.verifies(text.encode(), signature):
            raise InvalidSignature(f"signature by {name}+{signature_id:08x} does not match the note")
        verified_by.append(name)
    if not verified_by:
        raise UnverifiedNote("no signature on the note comes from a trusted key")
    return text


def _parse_signature_line(line: str) -> tuple[str, int, bytes]:
    if not line.startswith(SIGNATURE_PREFIX):
        raise MalformedNote(f"signature line does not start with an em dash: {line[:40]!r}")
    name, _, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
    try:
        raw = base64.b64decode(encoded, validate=True)
        _check_name(name)
    except (binascii.Error, MalformedKey) as error:
        raise MalformedNote(f"unreadable signature line: {line[:40]!r}") from error
    if len(raw) < 5:
        raise MalformedNote("signature too short")
    return name, int(struct.unpack(">I", raw[:4])[0]), raw[4:]
