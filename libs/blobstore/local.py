"""`LocalBlobStore`: objects as files under a root directory, written atomically.

Layout: `<root>/objects/<key>` holds the object, `<root>/tmp/` the half-written ones. A
write goes to a fresh temporary file on the same filesystem, is fsynced, and is renamed
over the destination, so a reader sees the old object or the new one, never a torn one,
and a crash leaves at most an orphan in `tmp/`.

Unlike S3, a filesystem cannot hold both `a` and `a/b`; such a put is refused with
`FailedPrecondition` (reason `BLOB_KEY_CONFLICT`) rather than silently corrupting either.

Works for one machine, or for Ray workers on several machines that share the root over
a network filesystem; a real object store replaces it for anything larger.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from libs.blobstore.interface import DEFAULT_CHUNK_SIZE, BlobInfo
from libs.blobstore.keys import validate_key, validate_prefix
from libs.errors import FailedPrecondition, NotFound
from libs.storage.paths import private_dir, service_dir


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._objects = self.root / "objects"
        self._tmp = self.root / "tmp"

    @classmethod
    def for_service(cls, service: str) -> LocalBlobStore:
        """The store under `<data dir>/<service>/blobs`."""
        return cls(service_dir(service) / "blobs")

    @property
    def url(self) -> str:
        return self.root.as_uri()

    def put(self, key: str, data: bytes) -> BlobInfo:
        return self.put_stream(key, [data])

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> BlobInfo:
        destination = self._path(key)
        private_dir(self._tmp)
        temporary = self._tmp / uuid.uuid4().hex
        size = 0
        try:
            with open(temporary, "wb") as file:
                for chunk in chunks:
                    file.write(chunk)
                    size += len(chunk)
                file.flush()
                os.fsync(file.fileno())
            self._make_parent(key, destination)
            os.replace(temporary, destination)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        _fsync_directory(destination.parent)
        return BlobInfo(key, size)

    def get(self, key: str) -> bytes:
        with self.open_read(key) as file:
            return file.read()

    def open_read(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            return open(path, "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise _not_found(key) from None

    def stream(self, key: str, *, start: int = 0, end: int | None = None,
               chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        # Opened before the generator starts so a missing key fails at the call site.
        file = self.open_read(key)
        return _read_range(file, start, end, chunk_size)

    def stat(self, key: str) -> BlobInfo:
        path = self._path(key)
        try:
            if path.is_file():
                return BlobInfo(key, path.stat().st_size)
        except OSError:
            pass
        raise _not_found(key)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        validate_prefix(prefix)
        # Walk only the deepest directory the prefix names; S3 prefixes may end mid-segment.
        directory_part = prefix.rpartition("/")[0]
        start = self._objects / directory_part if directory_part else self._objects
        if not start.is_dir():
            return iter(())
        found = []
        for directory, _subdirectories, files in os.walk(start):
            for name in files:
                path = Path(directory) / name
                key = path.relative_to(self._objects).as_posix()
                if key.startswith(prefix):
                    found.append(BlobInfo(key, path.stat().st_size))
        return iter(sorted(found, key=lambda info: info.key))

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            pass

    def _path(self, key: str) -> Path:
        return self._objects / validate_key(key)

    def _make_parent(self, key: str, destination: Path) -> None:
        try:
            private_dir(destination.parent)
        except (FileExistsError, NotADirectoryError):
            raise _conflict(key) from None
        if destination.is_dir():
            # Deletes leave empty directories behind (pruning them would race with puts);
            # an emptied prefix may become a key again.
            try:
                destination.rmdir()
            except OSError:
                raise _conflict(key) from None


def _read_range(file: BinaryIO, start: int, end: int | None, chunk_size: int) -> Iterator[bytes]:
    with file:
        file.seek(start)
        remaining = None if end is None else max(0, end - start)
        while remaining is None or remaining > 0:
            chunk = file.read(chunk_size if remaining is None else min(chunk_size, remaining))
            if not chunk:
                return
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _not_found(key: str) -> NotFound:
    return NotFound(f"no object {key!r}", resource_name=key, reason="BLOB_NOT_FOUND")


def _conflict(key: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"{key!r} collides with an existing object or prefix of that name",
        reason="BLOB_KEY_CONFLICT", metadata={"key": key},
    )
