"""The `BlobStore` protocol and the factory that opens one from a URL."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import unquote, urlparse

from libs.errors import InvalidArgument

DEFAULT_CHUNK_SIZE = 1 << 20


@dataclass(frozen=True)
class BlobInfo:
    key: str
    size: int


class BlobStore(Protocol):
    """What callers may do with objects; every method validates its key first."""

    @property
    def url(self) -> str:
        """Where this store lives, in a form `open_blob_store` accepts on another process."""
        ...

    def put(self, key: str, data: bytes) -> BlobInfo:
        """Store `data` under `key`, replacing any previous object atomically."""
        ...

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> BlobInfo:
        """Like `put`, for content too large to hold in memory."""
        ...

    def get(self, key: str) -> bytes: ...

    def open_read(self, key: str) -> BinaryIO:
        """A seekable binary file object (PyAV demuxes straight from it)."""
        ...

    def stream(self, key: str, *, start: int = 0, end: int | None = None,
               chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        """Bytes `[start, end)` of the object in chunks; `end=None` means to the end."""
        ...

    def stat(self, key: str) -> BlobInfo: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Every object whose key starts with `prefix`, in key order (S3 ListObjectsV2)."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error (S3 semantics)."""
        ...


def open_blob_store(url: str) -> BlobStore:
    """Open the store a `BlobStore.url` names; only `file://` exists so far."""
    from libs.blobstore.local import LocalBlobStore

    parsed = urlparse(url)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return LocalBlobStore(Path(unquote(parsed.path)))
    raise InvalidArgument.for_field("blob_store_url", f"unsupported blob store {url!r}",
                                    reason="UNSUPPORTED_BLOB_STORE")
