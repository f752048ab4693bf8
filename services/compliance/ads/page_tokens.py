"""Stand-in for `libs.pagination` (branch arch-libs), with the same calls: when that lands,
import `PageTokens` and `page_size` from there and delete this file.

A token is URL-safe base64 of [position, check]; the check digests the list's scope, the
request's filter (`bound_to`) and the position, so a token from another filter or an edited
one is refused on `page_token` with reason PAGE_TOKEN_INVALID.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence

from libs.errors import InvalidArgument

MAX_PAGE_SIZE = 1000
PAGE_TOKEN_INVALID = "PAGE_TOKEN_INVALID"


def page_size(requested: int, *, default: int, maximum: int = MAX_PAGE_SIZE, field: str = "page_size") -> int:
    if requested < 0:
        raise InvalidArgument.for_field(field, "must not be negative")
    return min(requested or default, maximum)


class PageTokens:
    def __init__(self, scope: str) -> None:
        self.scope = scope

    def encode(self, *position: int | str, bound_to: str = "") -> str:
        text = json.dumps([list(position), self._check(position, bound_to)], separators=(",", ":"))
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    def decode(self, token: str, *, bound_to: str = "", shape: Sequence[type[int] | type[str]] | None = None,
               field: str = "page_token") -> tuple[int | str, ...] | None:
        if not token:
            return None
        try:
            parts, check = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            position = tuple(parts)
        except (binascii.Error, UnicodeDecodeError, ValueError, TypeError):
            raise self.invalid(field) from None
        shaped = shape is None or (len(position) == len(shape) and all(
            type(part) is kind for part, kind in zip(position, shape, strict=True)))
        if not shaped or check != self._check(position, bound_to):
            raise self.invalid(field)
        return position

    @staticmethod
    def invalid(field: str = "page_token") -> InvalidArgument:
        return InvalidArgument.for_field(
            field, "is not a page token this list issued for this request's filter; start again with an empty "
            "page_token", reason=PAGE_TOKEN_INVALID)

    def _check(self, position: Sequence[object], bound_to: str) -> str:
        material = json.dumps([self.scope, bound_to, list(position)], separators=(",", ":"))
        return base64.urlsafe_b64encode(hashlib.sha256(material.encode()).digest()[:12]).decode()
