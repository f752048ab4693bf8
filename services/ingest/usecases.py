"""The ingest use cases, over the ports they declare here.

    Uploads          begin, resume and read an upload session; write its bytes (UploadWriter)
    CompleteUpload   all bytes are in: verify, probe, read C2PA, ask compliance, queue the transcode
    TranscodeJobs    run queued jobs on the transcoder; a finished job makes its video READY
    FollowUps        ask compliance again for missing verdicts; register published videos with ranking
    Videos           read, list and watch videos

Each takes only the ports it needs (`IngestStore`, `MediaBlobs`, `Transcoder`,
`ComplianceChecker`, `RankingRegistrar`, `ProvenanceReader`, `Tracing`, `Pseudonyms`), so
the same core runs behind gRPC and in integration tests with real SQLite, a real blob store
and real Ray; `server.py` wires the real adapters.

Audit events are written by the store in the same transaction as the change they record
(an upload completing or being rejected, a video being published or held), so an event is
stored exactly when its change is; the shared shipper takes them to compliance from there.

Background work (transcode jobs, follow-ups) runs as asyncio tasks of the serving process
and survives it through the store: `TranscodeJobs.start()` queues every job a stopped
service left unfinished, and `FollowUps` keeps asking until each call is answered.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from libs.audit.events import AuditEvent, Outcome
from libs.auth.principal import Principal
from libs.clock import Clock
from libs.errors import InvalidArgument, NotFound, PermissionDenied, Unavailable
from libs.pagination import PageTokens, page_size
from libs.timestamps import epoch_us, from_epoch_us
from services.ingest.config import IngestConfig
from services.ingest.ladder import plan_ladder
from services.ingest.model import (
    MAX_JOB_SUBMISSIONS,
    C2paEvidence,
    ComplianceReview,
    DueFollowUp,
    FollowUp,
    JobState,
    ProcessingStage,
    PublicationState,
    PublishedMedia,
    TranscodeFailure,
    TranscodeJob,
    TranscodeRequest,
    TranscodeResult,
    Video,
    VideoMetadata,
    VideoState,
    creator_name,
    job_output_prefix,
    may_manage,
    may_upload,
    may_view,
    publication_change,
    source_key,
    upload_name,
    video_name,
)
from services.ingest.probe import MediaProbe, ProbeLimits, probe_media
from services.ingest.uploads import (
    UploadLimits,
    UploadSession,
    UploadState,
    bytes_to_skip,
    ensure_same_upload,
    validate_declaration,
    verify_checksum,
)

logger = logging.getLogger(__name__)

SERVICE_SUBJECT = "services/ingest"  # the actor of what ingest decides on its own (publishing, holding)
VIDEO_PAGES = PageTokens("ingest.ListVideos")

# -- ports ----------------------------------------------------------------------------------

PublicationAudit = Callable[[Video, Video], Sequence[AuditEvent]]
"""Given a video before and after a change, the audit events that change calls for."""

ProgressListener = Callable[[float], Awaitable[None]]


class IngestStore(Protocol):
    """What the use cases need of persistence. Writes are awaited: each is one durable
    transaction, committed off the event loop."""

    async def create_upload(self, session: UploadSession) -> None: ...
    def get_upload(self, upload_id: str) -> UploadSession | None: ...
    async def commit_part(self, upload_id: str, offset: int, size: int, blob_key: str) -> UploadSession: ...
    def upload_parts(self, upload_id: str) -> list[tuple[int, int, str]]: ...
    async def forget_parts(self, upload_id: str) -> None: ...
    async def fail_upload(self, upload_id: str, reason: str, audit: AuditEvent,
                          trace_context: Mapping[str, str]) -> None: ...
    async def start_processing(self, video: Video, job: TranscodeJob, now: dt.datetime, audit: AuditEvent,
                               trace_context: Mapping[str, str]) -> None: ...
    def get_video(self, video_id: str) -> Video | None: ...
    def video_version(self, video_id: str) -> int | None: ...
    def list_videos(self, creator_id: str, limit: int, after: tuple[dt.datetime, str] | None = None,
                    state: VideoState | None = None) -> list[Video]: ...
    async def apply_review(self, video_id: str, review: ComplianceReview, now: dt.datetime,
                           audit: PublicationAudit, trace_context: Mapping[str, str]) -> None: ...
    def unfinished_jobs(self) -> list[TranscodeJob]: ...
    async def mark_job_submitted(self, job_id: str, now: dt.datetime) -> TranscodeJob: ...
    async def record_progress(self, video_id: str, progress: float, now: dt.datetime) -> None: ...
    async def complete_job(self, job_id: str, media: PublishedMedia, now: dt.datetime,
                           audit: PublicationAudit, trace_context: Mapping[str, str]) -> None: ...
    async def fail_job(self, job_id: str, reason: str, message: str, now: dt.datetime) -> None: ...
    def due_follow_ups(self, kind: FollowUp, now: dt.datetime, limit: int = 50) -> list[DueFollowUp]: ...
    async def defer_follow_up(self, video_id: str, kind: FollowUp, retry_at: dt.datetime, error: str) -> None: ...
    async def registration_succeeded(self, video_id: str, now: dt.datetime) -> None: ...


class MediaBlobs(Protocol):
    """The blob store, as far as ingest uses it (`libs.blobstore.BlobStore` satisfies it)."""

    @property
    def url(self) -> str: ...
    def put(self, key: str, data: bytes) -> object: ...
    def put_stream(self, key: str, chunks: Iterable[bytes]) -> object: ...
    def stream(self, key: str) -> Iterator[bytes]: ...
    def open_read(self, key: str) -> BinaryIO: ...
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


# -- audit events -----------------------------------------------------------------------------


class AuditEvents:
    """Builds ingest's audit events; the store writes them with the change they record.

    Resource names are the API's (`creators/{c}/uploads/{u}`, `creators/{c}/videos/{v}`);
    the person an event is about is recorded by pseudonymous reference only.
    """

    def __init__(self, *, clock: Clock, tracing: Tracing, pseudonyms: Pseudonyms) -> None:
        self._clock = clock
        self._tracing = tracing
        self._pseudonyms = pseudonyms

    def event(self, *, action: str, resource: str, outcome: Outcome, actor: Principal | None,
              creator_id: str, reason: str = "", attributes: Mapping[str, str] | None = None,
              trace_id: str | None = None, at: dt.datetime | None = None) -> AuditEvent:
        return AuditEvent(
            event_id=str(uuid.uuid4()),
            actor=actor.subject if actor is not None else SERVICE_SUBJECT,
            on_behalf_of=actor.on_behalf_of.subject if actor is not None and actor.on_behalf_of else "",
            action=action,
            resource=resource,
            outcome=outcome,
            reason=reason,
            trace_id=self._tracing.trace_id() if trace_id is None else trace_id,
            event_time=at or self._clock(),
            subject_ref=self._pseudonyms.subject_ref(f"users/{creator_id}"),
            attributes=attributes or {},
        )

    def publication(self, *, trace_id: str, at: dt.datetime) -> PublicationAudit:
        """A video becoming visible, or being held, on the audit trail (DSA Art. 26).

        Ingest decides this itself on compliance's verdicts, so it is the actor."""
        def events(before: Video, after: Video) -> list[AuditEvent]:
            action = publication_change(before, after)
            if not action:
                return []
            held = action == "ingest.HoldVideo"
            return [self.event(action=action, resource=after.name, outcome=Outcome.SUCCEEDED, actor=None,
                               creator_id=after.creator_id,
                               reason=after.review.disclosure_verdict.value if held else "",
                               attributes=after.review.audit_facts(), trace_id=trace_id, at=at)]

        return events


# -- uploads ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BeginUpload:
    creator_id: str
    upload_id: str
    metadata: VideoMetadata
    size_bytes: int
    sha256_hex: str
    filename: str = ""


class Uploads:
    """Upload sessions: open or resume one, read it, and write its bytes."""

    def __init__(self, *, store: IngestStore, blobs: MediaBlobs, clock: Clock, limits: UploadLimits) -> None:
        self._store = store
        self._blobs = blobs
        self._clock = clock
        self._limits = limits

    async def begin(self, creator: Principal, command: BeginUpload) -> UploadSession:
        """Open an upload under the client's id; the same id and declaration again resumes it."""
        _ensure_uploader(creator, command.creator_id)
        validate_declaration(command.upload_id, command.size_bytes, command.sha256_hex, self._limits)
        existing = self._store.get_upload(command.upload_id)
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

    def get(self, viewer: Principal, creator_id: str, upload_id: str) -> UploadSession:
        session = self._store.get_upload(upload_id)
        if session is None or session.creator_id != creator_id or not may_manage(viewer, creator_id):
            raise NotFound(f"no upload {upload_id}", resource_name=upload_name(creator_id, upload_id),
                           reason="UPLOAD_NOT_FOUND")
        return session

    def resume(self, creator: Principal, creator_id: str, upload_id: str) -> UploadSession:
        """The upload to continue writing: only its creator may add bytes."""
        _ensure_uploader(creator, creator_id)
        return self.get(creator, creator_id, upload_id)

    def writer(self, session: UploadSession) -> UploadWriter:
        return UploadWriter(store=self._store, blobs=self._blobs, session=session,
                            part_bytes=self._limits.part_bytes, clock=self._clock)


class UploadWriter:
    """Buffers one stream's chunks into parts and commits each part (blob, then offset).

    `flush()` commits what is buffered; the servicer calls it when the stream ends, also
    when the client drops, so a resume loses at most what never reached the service.
    """

    def __init__(self, *, store: IngestStore, blobs: MediaBlobs, session: UploadSession, part_bytes: int,
                 clock: Clock) -> None:
        self._store = store
        self._blobs = blobs
        self.session = session
        self._part_bytes = part_bytes
        self._clock = clock
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
        key = f"uploads/{self.session.upload_id}/parts/{offset:015d}"
        await asyncio.to_thread(self._blobs.put, key, data)
        try:
            self.session = await self._store.commit_part(self.session.upload_id, offset, len(data), key)
        except ConcurrentUploadError:
            await asyncio.to_thread(self._blobs.delete, key)
            raise Unavailable("another connection is writing this upload; resume from the committed offset",
                              reason="UPLOAD_BUSY") from None
        self._buffer.clear()
        self._buffer_offset = self.session.committed_bytes
        return self.session


class ConcurrentUploadError(RuntimeError):
    """Another writer moved the upload first; the caller re-reads the session and reports it."""

    def __init__(self, upload_id: str, offset: int) -> None:
        super().__init__(f"upload {upload_id} was not at offset {offset} / not open")


class CompleteUpload:
    """All bytes are in: verify, probe, read C2PA, ask compliance, queue the transcode.

    A rejection (checksum, unusable media) fails the upload, discards its bytes, and is
    raised as `InvalidArgument` with the reason the creator can act on.
    """

    def __init__(self, *, store: IngestStore, blobs: MediaBlobs, read_provenance: ProvenanceReader,
                 compliance: ComplianceChecker, jobs: TranscodeJobs, audit: AuditEvents, tracing: Tracing,
                 clock: Clock, probe_limits: ProbeLimits) -> None:
        self._store = store
        self._blobs = blobs
        self._read_provenance = read_provenance
        self._compliance = compliance
        self._jobs = jobs
        self._audit = audit
        self._tracing = tracing
        self._clock = clock
        self._probe_limits = probe_limits

    async def __call__(self, creator: Principal, upload_id: str) -> Video:
        session = self._store.get_upload(upload_id)
        if session is None:
            raise NotFound(f"no upload {upload_id}", reason="UPLOAD_NOT_FOUND")
        if session.state is UploadState.COMPLETED:
            video = self._store.get_video(session.video_id)
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
            await self._store.fail_upload(upload_id, rejection.reason, self._audit.event(
                action="ingest.UploadVideo", resource=upload_name(session.creator_id, session.upload_id),
                outcome=Outcome.REJECTED, actor=creator, creator_id=session.creator_id, reason=rejection.reason),
                self._tracing.carrier())
            await self._discard_upload_data(session, keep_source=False)
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
        try:
            await self._store.start_processing(video, job, now, uploaded, job.trace_carrier)
        except ConcurrentUploadError:  # completed concurrently by another connection
            return await self(creator, upload_id)
        await self._discard_upload_data(session, keep_source=True)
        self._jobs.schedule(job)
        started = self._store.get_video(video.video_id)
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

    async def _discard_upload_data(self, session: UploadSession, *, keep_source: bool) -> None:
        parts = self._store.upload_parts(session.upload_id)

        def delete_blobs() -> None:
            for _offset, _size, key in parts:
                self._blobs.delete(key)
            if not keep_source:  # rejected media is not kept (data minimisation)
                self._blobs.delete(source_key(session.video_id))

        await asyncio.to_thread(delete_blobs)
        await self._store.forget_parts(session.upload_id)

    def _probe_source(self, video_id: str) -> MediaProbe:
        with self._blobs.open_read(source_key(video_id)) as source:
            return probe_media(source, self._probe_limits)

    def _c2pa_of(self, video_id: str) -> C2paEvidence:
        with self._blobs.open_read(source_key(video_id)) as source:
            return self._read_provenance(source, "video/mp4")


# -- background work ---------------------------------------------------------------------------


class BackgroundTasks:
    """The asyncio tasks a use case leaves running, so they can be awaited or cancelled."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[object, object, None], kind: str) -> None:
        task = asyncio.ensure_future(work)
        task.set_name(f"{kind}:{id(task)}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self, kind: str) -> None:
        while tasks := [t for t in self._tasks if t.get_name().startswith(f"{kind}:")]:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class FollowUps:
    """Calls owed to other services: compliance's missing verdicts, ranking's registrations.

    Each call continues the trace of the upload it belongs to."""

    def __init__(self, *, store: IngestStore, compliance: ComplianceChecker, ranking: RankingRegistrar,
                 audit: AuditEvents, tracing: Tracing, clock: Clock, config: IngestConfig) -> None:
        self._store = store
        self._compliance = compliance
        self._ranking = ranking
        self._audit = audit
        self._tracing = tracing
        self._clock = clock
        self._config = config
        self._tasks = BackgroundTasks()

    def start(self) -> None:
        self._tasks.spawn(self._sweep_forever(), "follow-ups")

    async def stop(self) -> None:
        await self._tasks.cancel()

    async def run_due(self) -> None:
        """Ask compliance again for pending verdicts, then register published videos with ranking."""
        now = self._clock()
        for due in self._store.due_follow_ups(FollowUp.COMPLIANCE_REVIEW, now):
            video = self._store.get_video(due.video_id)
            if video is None:
                continue
            with self._tracing.continued(due.trace_carrier):
                review = await self._compliance.review(video.name, video.metadata, video.c2pa, self._clock())
                reviewed_at = self._clock()
                await self._store.apply_review(video.video_id, review, reviewed_at, self._audit.publication(
                    trace_id=self._tracing.trace_id(), at=reviewed_at), due.trace_carrier)
            if review.publication is PublicationState.PENDING_REVIEW:
                await self._store.defer_follow_up(video.video_id, FollowUp.COMPLIANCE_REVIEW,
                                                  now + self._backoff(due.attempts), "compliance gave no verdict")
        now = self._clock()  # registrations the reviews above just made due are included
        for due in self._store.due_follow_ups(FollowUp.RANKING_REGISTRATION, now):
            video = self._store.get_video(due.video_id)
            if video is None:
                continue
            try:
                with self._tracing.continued(due.trace_carrier):
                    await self._ranking.register(video)
            except Unavailable as unavailable:
                await self._store.defer_follow_up(video.video_id, FollowUp.RANKING_REGISTRATION,
                                                  now + self._backoff(due.attempts), unavailable.message)
                continue
            await self._store.registration_succeeded(video.video_id, self._clock())

    def _backoff(self, attempts: int) -> dt.timedelta:
        # The exponent is bounded so the product stays a representable timedelta after many attempts.
        return min(self._config.follow_up_backoff * (1 << min(attempts, 20)), self._config.follow_up_backoff_cap)

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.run_due()
            except Exception:  # a sweep must never end the loop; the next one retries
                logger.exception("follow-up sweep failed")
            await asyncio.sleep(self._config.follow_up_sweep.total_seconds())


class TranscodeJobs:
    """Runs transcode jobs, at most `max_jobs_in_flight` at once; a finished job makes its
    video READY (and published, or held, by the verdicts it has) in one transaction."""

    def __init__(self, *, store: IngestStore, blobs: MediaBlobs, transcoder: Transcoder, follow_ups: FollowUps,
                 audit: AuditEvents, tracing: Tracing, clock: Clock, config: IngestConfig,
                 telemetry_root: str) -> None:
        self._store = store
        self._blobs = blobs
        self._transcoder = transcoder
        self._follow_ups = follow_ups
        self._audit = audit
        self._tracing = tracing
        self._clock = clock
        self._config = config
        self._telemetry_root = telemetry_root
        self._slots = asyncio.Semaphore(config.max_jobs_in_flight)
        self._tasks = BackgroundTasks()

    def start(self) -> None:
        """Queue the jobs a stopped service left unfinished."""
        for job in self._store.unfinished_jobs():
            logger.info("re-queueing transcode job %s of video %s", job.job_id, job.video_id)
            self.schedule(job)

    def schedule(self, job: TranscodeJob) -> None:
        self._tasks.spawn(self._run(job), "job")

    async def stop(self) -> None:
        """Stop every job; unfinished ones stay RUNNING in the store for the next start."""
        await self._tasks.cancel()

    async def wait_idle(self) -> None:
        """Wait for every job in flight (tests and the benchmark)."""
        await self._tasks.wait("job")

    async def _run(self, job: TranscodeJob) -> None:
        async with self._slots:
            video = self._store.get_video(job.video_id)
            if video is None:
                return
            request = TranscodeRequest(
                job_id=job.job_id, blob_store_url=self._blobs.url, source_key=source_key(video.video_id),
                output_prefix=job.output_prefix, probe=video.probe,
                renditions=plan_ladder(*video.probe.display_size), settings=self._config.transcode,
                trace_carrier=job.trace_carrier, telemetry_root=self._telemetry_root,
            )

            async def record_progress(progress: float) -> None:
                await self._store.record_progress(video.video_id, progress, self._clock())

            attempt = 0
            while True:
                if job.submissions >= MAX_JOB_SUBMISSIONS:
                    await self._store.fail_job(
                        job.job_id, "TRANSCODE_ABANDONED", f"gave up after {job.submissions} submissions that "
                        "never finished (service stops or Ray unreachable)", self._clock())
                    return
                job = await self._store.mark_job_submitted(job.job_id, self._clock())
                try:
                    result = await self._transcoder.transcode(request, record_progress)
                    break
                except TranscodeFailure as failure:
                    await self._store.fail_job(job.job_id, failure.reason, failure.message, self._clock())
                    return
                except Exception:  # infrastructure (Ray unreachable, actor lost): the media may be fine
                    logger.exception("transcode job %s could not run; submitting it again", job.job_id)
                    attempt += 1
                    await asyncio.sleep(min(60.0, 2.0 ** attempt))
            finished_at = self._clock()
            with self._tracing.continued(job.trace_carrier):
                trace_id = self._tracing.trace_id()
            await self._store.complete_job(job.job_id, result.media, finished_at,
                                           self._audit.publication(trace_id=trace_id, at=finished_at),
                                           job.trace_carrier)
            logger.info("video %s is ready (workers: %s)", video.video_id, result.workers)
        await self._follow_ups.run_due()


# -- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoPage:
    videos: list[Video]
    next_page_token: str


class Videos:
    def __init__(self, *, store: IngestStore, watch_poll: dt.timedelta) -> None:
        self._store = store
        self._watch_poll = watch_poll

    def get(self, viewer: Principal, creator_id: str, video_id: str) -> Video:
        video = self._store.get_video(video_id)
        if video is None or video.creator_id != creator_id or not may_view(viewer, video):
            # The same answer for "missing" and "not yours": no probing for other creators' drafts.
            raise NotFound(f"no video {video_id}", resource_name=video_name(creator_id, video_id),
                           reason="VIDEO_NOT_FOUND")
        return video

    def list(self, viewer: Principal, creator_id: str, requested_size: int, page_token: str,
             state: VideoState | None = None) -> VideoPage:
        """A creator's videos, newest first, a page at a time (the token is bound to the filter)."""
        if not may_manage(viewer, creator_id):
            raise PermissionDenied("creators list only their own videos", reason="NOT_OWN_VIDEOS",
                                   metadata={"parent": creator_name(creator_id)})
        size = page_size(requested_size)
        listing = f"{creator_name(creator_id)}|state={state.value if state else ''}"
        position = VIDEO_PAGES.decode(page_token, bound_to=listing, shape=(int, str))
        after = None if position is None else (from_epoch_us(int(position[0])), str(position[1]))
        videos = self._store.list_videos(creator_id, size + 1, after, state)
        if len(videos) <= size:
            return VideoPage(videos, "")
        last = videos[size - 1]
        return VideoPage(videos[:size], VIDEO_PAGES.encode(epoch_us(last.created_at), last.video_id,
                                                           bound_to=listing))

    async def watch(self, viewer: Principal, creator_id: str, video_id: str) -> AsyncIterator[Video]:
        """The video now, then after every change, until it is READY or FAILED."""
        video = self.get(viewer, creator_id, video_id)
        yield video
        version = video.version
        while not video.is_finished:
            await asyncio.sleep(self._watch_poll.total_seconds())
            if self._store.video_version(video_id) == version:
                continue
            video = self.get(viewer, creator_id, video_id)
            version = video.version
            yield video


# -- the assembled service ----------------------------------------------------------------------


@dataclass(frozen=True)
class Ingest:
    """Ingest's use cases, wired once (`server.assemble`), with their background work."""

    uploads: Uploads
    complete_upload: CompleteUpload
    videos: Videos
    jobs: TranscodeJobs
    follow_ups: FollowUps

    async def start(self) -> None:
        self.jobs.start()
        self.follow_ups.start()

    async def stop(self) -> None:
        await self.jobs.stop()
        await self.follow_ups.stop()


def _ensure_uploader(principal: Principal, creator_id: str) -> None:
    if not may_upload(principal, creator_id):
        raise PermissionDenied("creators upload to their own account only", reason="NOT_OWN_ACCOUNT",
                               metadata={"parent": creator_name(creator_id)})
