"""Object storage with S3-style keys: the interface every service codes against.

Keys look like S3 object keys (`videos/{video}/hls/{job}/720x1280/seg_00003.ts`): a
flat namespace where `/` only matters to prefix listings. `LocalBlobStore` keeps them
as files under the data directory; an S3 or GCS adapter can replace it behind
`BlobStore` without touching callers. `open_blob_store(url)` turns a location that can
travel inside a Ray task (`file:///...`) back into a store on the worker.

Errors are domain errors: an unknown key is `NotFound` (reason `BLOB_NOT_FOUND`), a
malformed key is `InvalidArgument` (reason `INVALID_BLOB_KEY`).
"""

from __future__ import annotations

from libs.blobstore.interface import BlobInfo, BlobStore, open_blob_store
from libs.blobstore.keys import validate_key
from libs.blobstore.local import LocalBlobStore

__all__ = ["BlobInfo", "BlobStore", "LocalBlobStore", "open_blob_store", "validate_key"]
