"""Uploading: open or resume an upload session, write its bytes, and complete it (verify,
probe, read C2PA, ask compliance, queue the transcode)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from libs.audit.events import Outcome
from libs.auth.principal import Principal
from libs.clock import Clock
from libs.errors import InvalidArgument, NotFound, PermissionDenied, Unavailable
from services.ingest.model import (
    C2paEvidence,
    ComplianceReview,
    JobState,
    ProcessingStage,
    TranscodeJob,
    Video,
    VideoMetadata,
    VideoState,
    creator_name,
    job_output_prefix,
    may_manage,
    may_upload,
    source_key,
    upload_name,
    upload_part_key,
    video_name,
)
from services.ingest.probe import MediaProbe, ProbeLimits, check_duration, header_duration, probe_media
from services.ingest.uploads import (
    UploadLimits,
    UploadSession,
    UploadState,
    bytes_to_skip,
    ensure_same_upload,
    validate_declaration,
    verify_checksum,
)
from services.ingest.usecases.audit_events import AuditEvents
from services.ingest.usecases.ports import (
    ComplianceChecker,
    ConcurrentUploadError,
    IngestStore,
    MediaBlobs,
    ProvenanceReader,
    Tracing,
)
from services.ingest.usecases.processing import TranscodeJobs


@dataclass(frozen=True)
class BeginUpload:
    creator_id: str
    upload_id: str
    metadata: VideoMetadata
    size_bytes: int
    sha256_hex: str
    filename: str = ""


class Rejections:
    """An upload that can never become a video fails: its rejection goes on the audit trail
    with the failure, and its bytes are deleted (data minimisation)."""

    def __init__(self, *, store: IngestStore, blobs: MediaBlobs, audit: AuditEvents, tracing: Tracing) -> None:
        self._store = store
        self._blobs = blobs
        self._audit = audit
        self._tracing = tracing

    async def reject(self, creator: Principal, session: UploadSession, rejection: InvalidArgument) -> None:
        await self._store.fail_upload(session.upload_id, rejection.reason, self._audit.event(
            action="ingest.UploadVideo", resource=upload_name(session.creator_id, session.upload_id),
            outcome=Outcome.REJECTED, actor=creator, creator_id=session.creator_id, reason=rejection.reason),
            self._tracing.carrier())
        await self.discard_upload_data(session, keep_source=False)

    async def discard_upload_data(self, session: UploadSession, *, keep_source: bool) -> None:
        parts = self._store.upload_parts(session.upload_id)

        def delete_blobs() -> None:
            for _offset, _size, key in parts:
                self._blobs.delete(key)
            if not keep_source:  # rejected media is not kept (data minimisation)
                self._blobs.delete(source_key(session.video_id))

        await asyncio.to_thread(delete_blobs)
        await self._store.forget_parts(session.upload_id)


class Uploads:
    """Upload sessions: open or resume one, read it, and write its bytes."""

    def __init__(self, *, store: IngestStore, blobs: MediaBlobs, clock: Clock, limits: UploadLimits,
                 probe_limits: ProbeLimits, rejections: Rejections) -> None:
        self._store = store
        self._blobs = blobs
        self._clock = clock
        self._limits = limits
        self._probe_limits = probe_limits
        self._rejections = rejections

    async def begin(self, creator: Principal, command: BeginUpload) -> UploadSession:
        """Open an upload under the client's id; the same id and declaration again resumes it."""
        _ensure_uploader(creator, command.creator_id)
        validate_declaration(command.upload_id, command.size_bytes, command.sha256_hex, self._limits)
        existing = await self._store.get_upload(command.upload_id)
        if existing is not None:
            ensure_same_upload(existing, command.creator_id, command.metadata, command.size_bytes,
                               command.sha256_hex)
            return existing
        now = self._clock()
        session = UploadSession(
            upload_id=command.upload_id, creator_id=command.creator_id, metadata=command.metadata,
            declared_size=command.size_bytes, sha256_hex=command.sha256_hex, committed_bytes=0,
            state=UploadState.RECEIVING, created_at=now, expires_at=now + self._limits.session_lifetime,
            filename=command.filename,
        )
        try:
            await self._store.create_upload(session)
        except ConcurrentUploadError:  # the same id started concurrently on another connection
            return await self.begin(creator, command)
        return session

    async def get(self, viewer: Principal, creator_id: str, upload_id: str) -> UploadSession:
        session = await self._store.get_upload(upload_id)
        if session is None or session.creator_id != creator_id or not may_manage(viewer, creator_id):
            raise NotFound(f"no upload {upload_id}", resource_name=upload_name(creator_id, upload_id),
                           reason="UPLOAD_NOT_FOUND")
        return session

    async def resume(self, creator: Principal, creator_id: str, upload_id: str) -> UploadSession:
        """The upload to continue writing: only its creator may add bytes."""
        _ensure_uploader(creator, creator_id)
        return await self.get(creator, creator_id, upload_id)

    def writer(self, creator: Principal, session: UploadSession) -> UploadWriter:
        return UploadWriter(store=self._store, blobs=self._blobs, session=session,
                            part_bytes=self._limits.part_bytes, clock=self._clock,
                            header_check=HeaderCheck(creator, self._probe_limits, self._rejections)
                            if session.committed_bytes == 0 else None)


# How much of a file's start is kept to read its container header from; a header that is not
# complete within it (or comes at the end, as in most phone MP4s) is judged once all bytes are in.
HEADER_WINDOW = 4 * 1024**2


class HeaderCheck:
    """Refuses an upload as soon as its container header declares a length outside the limits,
    instead of after the whole file has arrived."""

    def __init__(self, creator: Principal, limits: ProbeLimits, rejections: Rejections) -> None:
        self._creator = creator
        self._limits = limits
        self._rejections = rejections
        self._prefix = bytearray()
        self.decided = False

    async def committed(self, session: UploadSession, offset: int, data: bytes) -> None:
        """Called with each committed part, in order; raises the rejection for a declared
        duration outside the limits (the upload is failed and its bytes deleted by then)."""
        if self.decided or offset != len(self._prefix) or session.is_complete:
            return  # with every byte in, completing the upload probes the whole file instead
        self._prefix += data[:HEADER_WINDOW - len(self._prefix)]
        duration = await asyncio.to_thread(header_duration, bytes(self._prefix))
        self.decided = duration is not None or len(self._prefix) >= HEADER_WINDOW
        if duration is None:
            return
        self._prefix.clear()
        try:
            check_duration(duration, self._limits)
        except InvalidArgument as rejection:
            await self._rejections.reject(self._creator, session, rejection)
            raise


class UploadWriter:
    """Buffers one stream's chunks into parts and commits each part (blob, then offset).

    `flush()` commits what is buffered; the servicer calls it when the stream ends, also
    when the client drops, so a resume loses at most what never reached the service. A
    stream that starts the file reads its header as the first parts arrive (`HeaderCheck`).
    """

    def __init__(self, *, store: IngestStore, blobs: MediaBlobs, session: UploadSession, part_bytes: int,
                 clock: Clock, header_check: HeaderCheck | None = None) -> None:
        self._store = store
        self._blobs = blobs
        self.session = session
        self._part_bytes = part_bytes
        self._clock = clock
        self._header_check = header_check
        self._buffer = bytearray()
        self._buffer_offset = session.committed_bytes

    async def write(self, offset: int, data: bytes) -> None:
        position = self._buffer_offset + len(self._buffer)
        skip = bytes_to_skip(self.session, position, offset, len(data), self._clock())
        if not self._buffer:
            self._buffer_offset = offset + skip
        self._buffer += data[skip:]
        if len(self._buffer) >= self._part_bytes:
            await self.flush()

    async def flush(self) -> UploadSession:
        if not self._buffer:
            return self.session
        offset, data = self._buffer_offset, bytes(self._buffer)
        key = upload_part_key(self.session.upload_id, offset)
        await asyncio.to_thread(self._blobs.put, key, data)
        try:
            self.session = await self._store.commit_part(self.session.upload_id, offset, len(data), key)
        except ConcurrentUploadError:
            await asyncio.to_thread(self._blobs.delete, key)
            raise Unavailable("another connection is writing this upload; resume from the committed offset",
                              reason="UPLOAD_BUSY") from None
        self._buffer.clear()
        self._buffer_offset = self.session.committed_bytes
        if self._header_check is not None and not self._header_check.decided:
            await self._header_check.committed(self.session, offset, data)
        return self.session


class CompleteUpload:
    """All bytes are in: verify, probe, read C2PA, ask compliance, queue the transcode.

    A rejection (checksum, unusable media) fails the upload, discards its bytes, and is
    raised as `InvalidArgument` with the reason the creator can act on.
    """

    def __init__(self, *, store: IngestStore, blobs: MediaBlobs, read_provenance: ProvenanceReader,
                 compliance: ComplianceChecker, jobs: TranscodeJobs, audit: AuditEvents, tracing: Tracing,
                 clock: Clock, probe_limits: ProbeLimits, rejections: Rejections) -> None:
        self._store = store
        self._blobs = blobs
        self._rejections = rejections
        self._read_provenance = read_provenance
        self._compliance = compliance
        self._jobs = jobs
        self._audit = audit
        self._tracing = tracing
        self._clock = clock
        self._probe_limits = probe_limits

    async def __call__(self, creator: Principal, upload_id: str) -> Video:
        session = await self._store.get_upload(upload_id)
        if session is None:
            raise NotFound(f"no upload {upload_id}", reason="UPLOAD_NOT_FOUND")
        if session.state is UploadState.COMPLETED:
            video = await self._store.get_video(session.video_id)
            assert video is not None, "a completed upload always has its video"
            return video  # a client retrying its completion gets the same answer
        if session.state is UploadState.FAILED:
            raise InvalidArgument.for_field("media", "this upload was rejected; start a new one",
                                            reason=session.failure_reason)
        if not session.is_complete:
            raise InvalidArgument.for_field(
                "chunk", f"the upload ended at {session.committed_bytes} of {session.declared_size} bytes; "
                "resume it from there", reason="UPLOAD_INCOMPLETE")
        try:
            verify_checksum(session, await asyncio.to_thread(self._assemble_source, session))
            probe = await asyncio.to_thread(self._probe_source, session.video_id)
        except InvalidArgument as rejection:
            await self._rejections.reject(creator, session, rejection)
            raise
        c2pa = await asyncio.to_thread(self._c2pa_of, session.video_id)
        name = video_name(session.creator_id, session.video_id)
        review = await self._compliance.review(name, session.metadata, c2pa, self._clock())
        now = self._clock()
        video = Video(video_id=session.video_id, creator_id=session.creator_id, metadata=session.metadata,
                      state=VideoState.PROCESSING, stage=ProcessingStage.QUEUED, created_at=now, updated_at=now,
                      probe=probe, review=review, c2pa=c2pa)
        job_id = str(uuid.uuid4())
        job = TranscodeJob(job_id=job_id, video_id=video.video_id, state=JobState.QUEUED,
                           output_prefix=job_output_prefix(video.video_id, job_id),
                           trace_carrier=self._tracing.carrier())
        # What the creator declared and what the file carries: the facts a publication rests on.
        uploaded = self._audit.event(
            action="ingest.UploadVideo", resource=video.name, outcome=Outcome.SUCCEEDED, actor=creator,
            creator_id=video.creator_id, at=now,
            attributes={"commercial_relationship": video.metadata.commercial.relationship.value,
                        "ai_usage": video.metadata.ai.usage.value, "c2pa": c2pa.validation.value,
                        "disclosure_label": video.metadata.disclosure_label,
                        "publication": review.publication.value},
        )
        # Its verdicts, and its hold when they hold it, go on the trail with the upload (a
        # publication waits for the transcode and is recorded when the job finishes).
        verdicts = self._audit.publication(trace_id=self._tracing.trace_id(), at=now)(
            dataclasses.replace(video, review=ComplianceReview()), video)
        try:
            await self._store.start_processing(video, job, now, [uploaded, *verdicts], job.trace_carrier)
        except ConcurrentUploadError:  # completed concurrently by another connection
            return await self(creator, upload_id)
        await self._rejections.discard_upload_data(session, keep_source=True)
        self._jobs.schedule(job)
        started = await self._store.get_video(video.video_id)
        assert started is not None
        return started

    def _assemble_source(self, session: UploadSession) -> str:
        """Join the parts into the source object, hashing on the way; returns the SHA-256 hex.

        The parts stay until the upload is settled, so a crash here is repaired by
        completing again."""
        digest = hashlib.sha256()

        def joined() -> Iterator[bytes]:
            for _offset, _size, key in self._store.upload_parts(session.upload_id):
                for chunk in self._blobs.stream(key):
                    digest.update(chunk)
                    yield chunk

        self._blobs.put_stream(source_key(session.video_id), joined())
        return digest.hexdigest()

    def _probe_source(self, video_id: str) -> MediaProbe:
        with self._blobs.open_read(source_key(video_id)) as source:
            return probe_media(source, self._probe_limits)

    def _c2pa_of(self, video_id: str) -> C2paEvidence:
        with self._blobs.open_read(source_key(video_id)) as source:
            return self._read_provenance(source, "video/mp4")


def _ensure_uploader(principal: Principal, creator_id: str) -> None:
    if not may_upload(principal, creator_id):
        raise PermissionDenied("creators upload to their own account only", reason="NOT_OWN_ACCOUNT",
                               metadata={"parent": creator_name(creator_id)})
