"""Resumable upload sessions: offsets, the size cap and the end-to-end checksum.

An upload declares its size and SHA-256 up front. Bytes arrive in chunks that name
their offset; the service commits them in parts and remembers the committed offset.
After a dropped connection the client resumes from the last offset it saw acknowledged,
which may be behind the committed one: bytes the service already has are skipped, a
gap is refused. When the last byte is committed, the parts are joined, hashed, and the
upload completes only if the hash matches the declared one.

Modelled on resumable uploads in object stores (GCS, tus): the committed offset is the
single source of truth and lives in the store, so any replica can take the resume.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from dataclasses import dataclass

from libs.errors import AlreadyExists, FailedPrecondition, InvalidArgument, OutOfRange
from libs.resource_names import ID_RULE, is_valid_id
from services.ingest.model import VideoMetadata

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int = 512 * 1024**2  # 10 minutes of phone 1080p (~6 Mbit/s) is ~450 MiB
    part_bytes: int = 8 * 1024**2  # committed parts: fewer objects, and at most this much to resend
    session_lifetime: dt.timedelta = dt.timedelta(days=7)


class UploadState(enum.StrEnum):
    RECEIVING = "RECEIVING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"  # derived: RECEIVING past its expiry


@dataclass(frozen=True)
class UploadSession:
    """One upload; its id is the client's, and the video it becomes takes the same id."""

    upload_id: str
    creator_id: str
    metadata: VideoMetadata
    declared_size: int
    sha256_hex: str
    committed_bytes: int
    state: UploadState
    created_at: dt.datetime
    expires_at: dt.datetime
    filename: str = ""
    failure_reason: str = ""

    @property
    def video_id(self) -> str:
        return self.upload_id

    @property
    def is_complete(self) -> bool:
        return self.committed_bytes == self.declared_size

    def state_at(self, now: dt.datetime) -> UploadState:
        if self.state is UploadState.RECEIVING and now >= self.expires_at:
            return UploadState.EXPIRED
        return self.state


def validate_declaration(upload_id: str, declared_size: int, sha256_hex: str, limits: UploadLimits) -> None:
    if not is_valid_id(upload_id):  # it becomes the id in the video's resource name
        raise InvalidArgument.for_field("upload_id", f"is not usable as a video id; an id is {ID_RULE} "
                                        "(a UUID in lowercase)", reason="UPLOAD_ID_INVALID")
    if declared_size <= 0:
        raise InvalidArgument.for_field("size_bytes", "must be greater than 0", reason="UPLOAD_EMPTY")
    if declared_size > limits.max_bytes:
        raise InvalidArgument.for_field(
            "size_bytes", f"uploads are limited to {limits.max_bytes // 1024**2} MiB; trim or compress the clip",
            reason="UPLOAD_TOO_LARGE",
        )
    if not _SHA256_HEX.fullmatch(sha256_hex):
        raise InvalidArgument.for_field("sha256", "must be 64 lowercase hex digits", reason="CHECKSUM_MALFORMED")


def bytes_to_skip(session: UploadSession, position: int, offset: int, length: int, now: dt.datetime) -> int:
    """How many leading bytes of a chunk at `offset` the service already has.

    `position` is where the next byte is expected: the committed offset, plus whatever
    this stream has buffered but not yet committed. A stream's first chunk may start
    anywhere up to the committed offset (a resume from an older acknowledgement); later
    chunks must follow on exactly. Raises when the session is not open or has expired,
    the chunk leaves a gap, or it runs past the declared size.
    """
    state = session.state_at(now)
    if state is UploadState.EXPIRED:
        raise FailedPrecondition(f"upload {session.upload_id} expired; start a new one", reason="UPLOAD_EXPIRED")
    if state is not UploadState.RECEIVING:
        raise FailedPrecondition(f"upload {session.upload_id} is {state}", reason="UPLOAD_NOT_RECEIVING",
                                 metadata={"state": state.value})
    resuming = position == session.committed_bytes
    if offset < 0 or offset > position or (not resuming and offset != position):
        raise OutOfRange(
            f"chunk at offset {offset} but the upload continues at {position}; resume from the committed offset",
            reason="UPLOAD_OFFSET_MISMATCH", metadata={"committed_offset": str(session.committed_bytes)},
        )
    if offset + length > session.declared_size:
        raise OutOfRange(
            f"chunk ends at {offset + length}, past the declared size {session.declared_size}",
            reason="UPLOAD_EXCEEDS_DECLARED_SIZE", metadata={"declared_size": str(session.declared_size)},
        )
    return min(length, position - offset)


def ensure_same_upload(existing: UploadSession, creator_id: str, metadata: VideoMetadata,
                       declared_size: int, sha256_hex: str) -> None:
    """Starting again with a known id resumes it, but only if it describes the same upload."""
    if (existing.creator_id, existing.metadata, existing.declared_size, existing.sha256_hex) != (
            creator_id, metadata, declared_size, sha256_hex):
        raise AlreadyExists(f"upload {existing.upload_id} exists with a different declaration; pick a new id",
                            reason="UPLOAD_ID_IN_USE")


def verify_checksum(session: UploadSession, actual_sha256_hex: str) -> None:
    if actual_sha256_hex != session.sha256_hex:
        raise InvalidArgument.for_field(
            "sha256", "the uploaded bytes do not match the declared SHA-256; upload the file again",
            reason="CHECKSUM_MISMATCH",
        )
