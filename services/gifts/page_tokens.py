"""Page tokens: opaque to callers (AIP-158) and bound to what they page through, so a token
from one list or one LIVE is refused by another."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import TypeVar

from libs.errors import InvalidArgument

T = TypeVar("T")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1_000


def page_size(requested: int, default: int = DEFAULT_PAGE_SIZE) -> int:
    if requested < 0:
        raise InvalidArgument.for_field("page_size", "must not be negative")
    return min(requested or default, MAX_PAGE_SIZE)


def page_of(items: Sequence[T], *, requested_size: int, page_token: str, scope: str,
            default_size: int = DEFAULT_PAGE_SIZE) -> tuple[list[T], str]:
    """One page of a short list held in memory (the catalog), and the token for the next."""
    offset = decode_int_cursor(page_token, scope) or 0
    limit = page_size(requested_size, default_size)
    following = encode_cursor(scope, offset + limit) if offset + limit < len(items) else ""
    return list(items[offset:offset + limit]), following


def encode_cursor(scope: str, position: int | str) -> str:
    return base64.urlsafe_b64encode(f"v1|{scope}|{position}".encode()).decode().rstrip("=")


def decode_cursor(token: str, scope: str, *, field: str = "page_token") -> str | None:
    """The position in `token`, None for an empty token; InvalidArgument on `field` otherwise."""
    if not token:
        return None
    try:
        version, token_scope, position = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().split("|")
        if version == "v1" and token_scope == scope and position:
            return position
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise _bad_cursor(field)


def decode_int_cursor(token: str, scope: str, *, field: str = "page_token") -> int | None:
    position = decode_cursor(token, scope, field=field)
    if position is not None and not position.isdigit():
        raise _bad_cursor(field)
    return None if position is None else int(position)


def _bad_cursor(field: str) -> InvalidArgument:
    return InvalidArgument.for_field(field, "not a cursor issued for this list", reason="INVALID_CURSOR")
