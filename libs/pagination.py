"""Page tokens and page sizes for every List and Query method (AIP-158), written once.

    VIDEOS = PageTokens("ingest.ListVideos")
    size = page_size(request.page_size)                             # 0 -> default, at most 1000
    after = VIDEOS.decode(request.page_token, bound_to=parent_and_filter)   # None: first page
    ...
    next_page_token = VIDEOS.encode(last.created_at_us, last.video_id, bound_to=parent_and_filter)

A token is opaque to callers: URL-safe base64 without padding of a small versioned JSON
array holding the position and a check value. The check value is a digest of the
method's scope, the caller's `bound_to` (its parent and filter, in any stable spelling)
and the position, so a token is refused with `InvalidArgument` on field `page_token`,
reason `PAGE_TOKEN_INVALID`, when it was minted for another list, another parent or
another filter, or was altered. The digest is a check, not a secret: access is decided
on every page, so a forged token reaches nothing its caller could not list anyway.

A position is a tuple of ints and strings (an offset, a last-seen id, a timestamp in
epoch microseconds and an id); `decode(..., shape=(int, str))` checks its types too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence

from libs.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
PAGE_TOKEN_INVALID = "PAGE_TOKEN_INVALID"
MAX_TOKEN_CHARS = 4096  # far above any token minted here; refused before decoding

Position = tuple[int | str, ...]
_VERSION = 1
_CHECK_BYTES = 12


def page_size(requested: int, *, default: int = DEFAULT_PAGE_SIZE, maximum: int = MAX_PAGE_SIZE,
              field: str = "page_size") -> int:
    """The page size to serve: `default` for 0, at most `maximum`; a negative size is refused."""
    if requested < 0:
        raise InvalidArgument.for_field(field, "must not be negative")
    return min(requested or default, maximum)


class PageTokens:
    """The token codec of one list method; `scope` names it (e.g. "gifts.ListPayouts")."""

    def __init__(self, scope: str) -> None:
        if not scope:
            raise ValueError("a page token scope must name its list")
        self.scope = scope

    def encode(self, *position: int | str, bound_to: str = "") -> str:
        """The token for the page after `position`, valid only with the same `bound_to`."""
        if not _is_position(position):
            raise ValueError("a page position is one or more ints and strings")
        payload = [_VERSION, list(position), self._check(position, bound_to)]
        # UTF-8 rather than \u escapes: a non-ASCII key costs at most 4 bytes a character, not 12.
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        token = base64.urlsafe_b64encode(text).decode().rstrip("=")
        if len(token) > MAX_TOKEN_CHARS:  # decode would refuse it: never hand one out
            raise ValueError(f"a page position of {len(token)} token characters is longer than a store key can be")
        return token

    def decode(self, token: str, *, bound_to: str = "", shape: Sequence[type[int] | type[str]] | None = None,
               field: str = "page_token") -> Position | None:
        """The position in `token`, None for an empty token (the first page).

        Raises InvalidArgument on `field` (reason PAGE_TOKEN_INVALID) for a token this list
        did not issue with this `bound_to`, or whose position does not have `shape`.
        """
        if not token:
            return None
        if len(token) > MAX_TOKEN_CHARS:
            raise self.invalid(field)
        try:
            payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            version, parts, check = payload
            position: Position = tuple(parts)
        except (binascii.Error, UnicodeDecodeError, ValueError, TypeError, RecursionError):
            raise self.invalid(field) from None
        if version != _VERSION or not _is_position(position) or check != self._check(position, bound_to):
            raise self.invalid(field)
        if shape is not None and (len(position) != len(shape) or not all(
                type(part) is kind for part, kind in zip(position, shape, strict=True))):
            raise self.invalid(field)
        return position

    def decode_int(self, token: str, *, bound_to: str = "", field: str = "page_token") -> int | None:
        """`decode` for a position that is one int (an offset or a numeric id)."""
        position = self.decode(token, bound_to=bound_to, shape=(int,), field=field)
        return None if position is None else int(position[0])

    def decode_str(self, token: str, *, bound_to: str = "", field: str = "page_token") -> str | None:
        """`decode` for a position that is one string (a last-seen id)."""
        position = self.decode(token, bound_to=bound_to, shape=(str,), field=field)
        return None if position is None else str(position[0])

    @staticmethod
    def invalid(field: str = "page_token") -> InvalidArgument:
        return InvalidArgument.for_field(
            field, "is not a page token this list issued for this request's parent and filter; "
            "start again with an empty page_token", reason=PAGE_TOKEN_INVALID)

    def _check(self, position: Sequence[object], bound_to: str) -> str:
        material = json.dumps([self.scope, bound_to, list(position)], separators=(",", ":"), ensure_ascii=True)
        return base64.urlsafe_b64encode(hashlib.sha256(material.encode()).digest()[:_CHECK_BYTES]).decode()


def _is_position(parts: Sequence[object]) -> bool:
    return bool(parts) and all(type(part) in (int, str) for part in parts)
