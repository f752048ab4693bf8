"""The ports ingest's use cases depend on: what they need of the store, the blob store, the
transcoder, compliance (verdicts, the ad repository), ranking, provenance reading, tracing and pseudonyms. The adapters
(`store.py`, `workers.py`, `clients.py`, `tracing.py`, `libs.blobstore`) satisfy them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import BinaryIO, Protocol

from libs.audit.events import AuditEvent
from services.ingest.model import (
    C2paEvidence,
    ComplianceReview,
    DueFollowUp,
    FollowUp,
    PublishedMedia,
    TranscodeJob,
    TranscodeRequest,
    TranscodeResult,
    Video,
    VideoMetadata,
    VideoState,
)
from services.ingest.uploads import UploadSession

PublicationAudit = Callable[[Video, Video], Sequence[AuditEvent]]
"""Given a video before and after a change, the audit events that change calls for."""

ProgressListener = Callable[[float], Awaitable[None]]


class IngestStore(Protocol):
    """What the use cases need of persistence. Writes are awaited: each is one durable
    transaction, committed off the event loop."""

    async def create_upload(self, session: UploadSession) -> None: ...
    async def get_upload(self, upload_id: str) -> UploadSession | None: ...
    async def uploads_of(self, creator_id: str) -> list[UploadSession]: ...
    def media_of(self, creator_id: str) -> tuple[list[str], list[str]]: ...
    async def forget_creator(self, creator_id: str) -> int: ...
    async def commit_part(self, upload_id: str, offset: int, size: int, blob_key: str) -> UploadSession: ...
    def upload_parts(self, upload_id: str) -> list[tuple[int, int, str]]: ...
    async def forget_parts(self, upload_id: str) -> None: ...
    async def fail_upload(self, upload_id: str, reason: str, audit: AuditEvent,
                          trace_context: Mapping[str, str]) -> None: ...
    async def start_processing(self, video: Video, job: TranscodeJob, now: dt.datetime,
                               audit: Sequence[AuditEvent], trace_context: Mapping[str, str]) -> None: ...
    async def get_video(self, video_id: str) -> Video | None: ...
    def video_version(self, video_id: str) -> int | None: ...
    async def list_videos(self, creator_id: str, limit: int, after: tuple[dt.datetime, str] | None = None,
                          state: VideoState | None = None) -> list[Video]: ...
    async def apply_review(self, video_id: str, review: ComplianceReview, now: dt.datetime,
                           audit: PublicationAudit, trace_context: Mapping[str, str]) -> None: ...
    def unfinished_jobs(self, *, unheld_at: dt.datetime | None = None) -> list[TranscodeJob]: ...
    async def mark_job_submitted(self, job_id: str, now: dt.datetime, *, holder: str,
                                 lease_until: dt.datetime) -> TranscodeJob | None: ...
    async def renew_job_lease(self, job_id: str, holder: str, lease_until: dt.datetime) -> bool: ...
    async def release_job_leases(self, holder: str) -> None: ...
    async def record_progress(self, video_id: str, progress: float, now: dt.datetime) -> None: ...
    async def complete_job(self, job_id: str, media: PublishedMedia, now: dt.datetime,
                           audit: PublicationAudit, trace_context: Mapping[str, str]) -> None: ...
    async def fail_job(self, job_id: str, reason: str, message: str, now: dt.datetime) -> None: ...
    def due_follow_ups(self, kind: FollowUp, now: dt.datetime, limit: int = 50) -> list[DueFollowUp]: ...
    async def defer_follow_up(self, video_id: str, kind: FollowUp, retry_at: dt.datetime, error: str) -> None: ...
    async def registration_succeeded(self, video_id: str, now: dt.datetime) -> None: ...
    async def ad_registered(self, video_id: str, ad_name: str, now: dt.datetime) -> None: ...


class ListedBlob(Protocol):
    @property
    def key(self) -> str: ...


class MediaBlobs(Protocol):
    """The blob store, as far as ingest uses it (`libs.blobstore.BlobStore` satisfies it)."""

    @property
    def url(self) -> str: ...
    def put(self, key: str, data: bytes) -> object: ...
    def put_stream(self, key: str, chunks: Iterable[bytes]) -> object: ...
    def stream(self, key: str) -> Iterator[bytes]: ...
    def open_read(self, key: str) -> BinaryIO: ...
    def list(self, prefix: str = "") -> Iterator[ListedBlob]: ...
    def delete(self, key: str) -> None: ...


class Transcoder(Protocol):
    async def transcode(self, request: TranscodeRequest, on_progress: ProgressListener) -> TranscodeResult:
        """Run the job to the end; raise `TranscodeFailure` when it can never succeed."""
        ...


class ComplianceChecker(Protocol):
    async def review(self, video_name: str, metadata: VideoMetadata, c2pa: C2paEvidence,
                     reviewed_at: dt.datetime) -> ComplianceReview:
        """Both verdicts; a verdict compliance cannot give yet stays UNSPECIFIED (pending)."""
        ...


class RankingRegistrar(Protocol):
    async def register(self, video: Video) -> None:
        """Hand a published video to ranking; raise `Unavailable` to be asked again later."""
        ...


class AdRepository(Protocol):
    async def register(self, video: Video) -> str:
        """Enter published commercial content in the DSA ad repository; returns the entry's
        name (`ads/{ad}`). Idempotent per video; raise `Unavailable` to be asked again later."""
        ...


class ProvenanceReader(Protocol):
    def __call__(self, media: BinaryIO, mime_type: str) -> C2paEvidence: ...


class Tracing(Protocol):
    def carrier(self) -> dict[str, str]:
        """The current trace context, to be continued later (a job, a retried call)."""
        ...

    def continued(self, carrier: Mapping[str, str]) -> AbstractContextManager[None]:
        """Make the trace a carrier names current while background work runs for it."""
        ...

    def trace_id(self) -> str:
        """The current trace's id ('' outside a trace), as audit events record it."""
        ...


class Pseudonyms(Protocol):
    def subject_ref(self, subject: str) -> str: ...


class ConcurrentUploadError(RuntimeError):
    """Another writer moved the upload first; the caller re-reads the session and reports it."""

    def __init__(self, upload_id: str, offset: int) -> None:
        super().__init__(f"upload {upload_id} was not at offset {offset} / not open")
