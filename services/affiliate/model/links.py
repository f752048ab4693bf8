"""Tracking links and the signed tokens they carry.

A token is `v1.{key id}.{payload}.{mac}`: the payload (base64url) binds the link, its programme
and its product; the MAC is HMAC-SHA256 over `v1.{key id}.{payload}` under the key the id names.
Keys rotate: new links are signed with the current key, and a link keeps verifying with the key
it names until that key is retired, after which its clicks are refused (TOKEN_KEY_RETIRED).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from libs.errors import InvalidArgument

TOKEN_VERSION = "v1"
SHORT_CODE_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no look-alikes (l, 1, o, 0)


@dataclass(frozen=True)
class TrackingLink:
    creator: str  # creators/{creator}
    link_id: str
    program: str  # merchants/{merchant}/programs/{program}
    product: str  # merchants/{merchant}/products/{product}, or '' for the merchant's shop
    short_code: str
    token: str
    commission_rate_bps: int | None  # the link's own rate, beating the programme's
    create_time: dt.datetime

    @property
    def name(self) -> str:
        return f"{self.creator}/trackingLinks/{self.link_id}"

    @property
    def merchant(self) -> str:
        return self.program.split("/programs/", 1)[0]

    @property
    def creator_id(self) -> str:
        return self.creator.removeprefix("creators/")


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says."""

    link: str
    program: str
    product: str
    key_id: str


def _token_error(description: str, reason: str) -> InvalidArgument:
    return InvalidArgument.for_field("token", description, reason=reason)


class TokenKeys(Protocol):
    """Where MACs come from: keys held in memory (HmacKeyRing) or a KMS that computes them."""

    def current_key_id(self) -> str: ...

    def mac(self, key_id: str, message: bytes) -> bytes:
        """HMAC-SHA256 of `message` under `key_id`; InvalidArgument on `token` for an unknown
        (TOKEN_KEY_UNKNOWN) or retired (TOKEN_KEY_RETIRED) key."""
        ...


class HmacKeyRing:
    """HMAC-SHA256 keys by id: one current (signs), the others verify until retired."""

    def __init__(self, keys: Mapping[str, bytes], current: str, retired: frozenset[str] = frozenset()) -> None:
        if current not in keys:
            raise ValueError(f"the current link key {current!r} is not among the keys")
        if current in retired:
            raise ValueError(f"the current link key {current!r} is retired")
        if any(len(secret) < 32 for secret in keys.values()):
            raise ValueError("link keys must be at least 32 bytes")
        self._keys = dict(keys)
        self._current = current
        self._retired = retired

    def current_key_id(self) -> str:
        return self._current

    def mac(self, key_id: str, message: bytes) -> bytes:
        if key_id in self._retired:
            raise _token_error(f"the token's key {key_id} is retired", "TOKEN_KEY_RETIRED")
        secret = self._keys.get(key_id)
        if secret is None:
            raise _token_error(f"the token names key {key_id}, which this service does not hold", "TOKEN_KEY_UNKNOWN")
        return hmac.digest(secret, message, hashlib.sha256)  # the one-shot C path, no HMAC object


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_token(keys: TokenKeys, link: str, program: str, product: str) -> str:
    key_id = keys.current_key_id()
    signed = f"{TOKEN_VERSION}.{key_id}.{_b64(chr(10).join((link, program, product)).encode())}"
    return f"{signed}.{_b64(keys.mac(key_id, signed.encode()))}"


def verify_token(keys: TokenKeys, token: str) -> TokenClaims:
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != TOKEN_VERSION:
        raise _token_error("not a tracking-link token (v1.<key>.<payload>.<mac>)", "TOKEN_INVALID")
    version, key_id, payload, mac_text = parts
    try:
        mac = _unb64(mac_text)
    except (binascii.Error, ValueError):
        raise _token_error("the token's signature is not base64url", "TOKEN_INVALID") from None
    if not hmac.compare_digest(keys.mac(key_id, f"{version}.{key_id}.{payload}".encode()), mac):
        raise _token_error("the token's signature does not verify (forged or altered)", "TOKEN_INVALID")
    try:
        link, program, product = _unb64(payload).decode().split("\n")
    except (binascii.Error, ValueError):
        raise _token_error("the token's payload is malformed", "TOKEN_INVALID") from None
    return TokenClaims(link, program, product, key_id)


def short_code_of(number: int, length: int = 8) -> str:
    """`number` (random, from the caller) as a short code of the unambiguous alphabet."""
    letters = []
    for _ in range(length):
        number, digit = divmod(number, len(SHORT_CODE_ALPHABET))
        letters.append(SHORT_CODE_ALPHABET[digit])
    return "".join(letters)
