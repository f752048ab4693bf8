"""S3-style object keys, restricted to what is also a safe relative path on any filesystem."""

from __future__ import annotations

import re

from libs.errors import InvalidArgument

MAX_KEY_BYTES = 1024  # S3's limit
# AWS's "safe characters" for object keys: nothing that needs escaping in a URL or a path.
_SEGMENT = re.compile(r"[A-Za-z0-9!\-_.*'()]+")


def validate_key(key: str, *, field: str = "key") -> str:
    """Return `key` unchanged if it is a safe object key, else raise `InvalidArgument`.

    Refused: empty keys, keys over 1024 bytes, absolute keys, empty segments (`a//b`,
    trailing `/`), the segments `.` and `..` (they would escape or alias a directory),
    and characters outside S3's safe set (space, NUL, `\\`, `%`, `?`, `#`, non-ASCII, ...).
    """
    problem = _key_problem(key)
    if problem:
        raise InvalidArgument.for_field(field, f"{problem}: {key[:80]!r}", reason="INVALID_BLOB_KEY")
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix is a key, a key ending in `/`, or empty (everything)."""
    if prefix == "":
        return prefix
    validate_key(prefix.removesuffix("/") or "/", field="prefix")
    return prefix


def _key_problem(key: str) -> str:
    if not key:
        return "key is empty"
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        return f"key is longer than {MAX_KEY_BYTES} bytes"
    for segment in key.split("/"):
        if segment == "":
            return "key has an empty segment (leading, trailing or doubled '/')"
        if segment in (".", ".."):
            return "key has a '.' or '..' segment"
        if not _SEGMENT.fullmatch(segment):
            return "key has a character outside letters, digits and !-_.*'()"
    return ""
