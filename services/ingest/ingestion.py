"""The ingest use cases: upload, verify, probe, check, transcode, publish, register.

Each public method is one use case; the gRPC servicer only translates to and from
protos. Collaborators arrive as narrow ports (`ComplianceChecker`, `RankingRegistrar`,
`Transcoder`, `ProvenanceReader`), so the same core runs behind gRPC, in the CLI, and
in integration tests with real SQLite, a real blob store and real Ray.

Background work (transcode jobs, registrations with ranking) runs as asyncio tasks of
the serving process and survives it through the store: `start()` queues every job a
stopped service left unfinished, and retries registrations that are still owed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from libs.audit.events import Outcome
from libs.auth.principal import Principal, Role
from libs.blobstore import BlobStore
from libs.clock import Clock
from libs.errors import InvalidArgument, NotFound, PermissionDenied, Unavailable
from services.ingest.jobs import Transcoder, TranscodeRequest
from services.ingest.ladder import plan_ladder
from services.ingest.probe import MediaProbe, ProbeLimits, probe_media
from services.ingest.store import ConcurrentUploadError, FollowUp, IngestStore
from services.ingest.transcode import TranscodeSettings
from services.ingest.uploads import (
    UploadLimits,
    UploadSession,
    UploadState,
    bytes_to_skip,
    ensure_same_upload,
    validate_declaration,
    verify_checksum,
)
from services.ingest.videos import (
    MAX_JOB_SUBMISSIONS,
    C2paEvidence,
    ComplianceReview,
    JobState,
    ProcessingStage,
    PublicationState,
    TranscodeFailure,
    TranscodeJob,
    Video,
    VideoMetadata,
    VideoState,
    job_output_prefix,
    source_key,
    video_name,
)

logger = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
WATCH_POLL_S = 0.2
FOLLOW_UP_SWEEP_S = 30.0
_READ_CHUNK = 1 << 20


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


class AuditTrail(Protocol):
    """`libs.audit.client.AuditClient.record`: durable once it returns."""

    async def record(self, *, action: str, resource: str, outcome: Outcome, reason: str = "",
                     subject: str = "", attributes: Mapping[str, str] | None = None) -> object: ...


@dataclass(frozen=True)
class IngestConfig:
    upload_limits: UploadLimits = field(default_factory=UploadLimits)
    probe_limits: ProbeLimits = field(default_factory=ProbeLimits)
    transcode: TranscodeSettings = field(default_factory=TranscodeSettings)
    max_jobs_in_flight: int = 8
    follow_up_backoff: dt.timedelta = dt.timedelta(seconds=30)
    follow_up_backoff_cap: dt.timedelta = dt.timedelta(hours=1)


@dataclass(frozen=True)
class VideoPage:
    videos: list[Video]
    next_page_token: str


class Ingest:
    def __init__(
        self,
        *,
        store: IngestStore,
        blobs: BlobStore,
        transcoder: Transcoder,
        compliance: ComplianceChecker,
        ranking: RankingRegistrar,
        read_provenance: ProvenanceReader,
        audit: AuditTrail,
        trace_carrier: Callable[[], dict[str, str]],
        continue_trace: Callable[[dict[str, str]], AbstractContextManager[object]],
        telemetry_root: str,
        clock: Clock,
        config: IngestConfig = IngestConfig(),
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._transcoder = transcoder
        self._compliance = compliance
        self._ranking = ranking
        self._read_provenance = read_provenance
        self._audit = audit
        self._trace_carrier = trace_carrier
        self._continue_trace = continue_trace
        self._telemetry_root = telemetry_root
        self._clock = clock
        self.config = config
        self._job_slots = asyncio.Semaphore(config.max_jobs_in_flight)
        self._background: set[asyncio.Task[None]] = set()

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Queue the jobs a stopped service left unfinished and begin retrying registrations."""
        for job in self._store.unfinished_jobs():
            logger.info("re-queueing transcode job %s of video %s", job.job_id, job.video_id)
            self._spawn(self._run_job(job), "job")
        self._spawn(self._follow_up_loop(), "follow-ups")

    async def stop(self) -> None:
        """Stop background work; unfinished jobs stay RUNNING in the store for the next start."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    async def wait_idle(self) -> None:
        """Wait for every job in flight (tests and the benchmark)."""
        while jobs := [t for t in self._background if t.get_name().startswith("job:")]:
            await asyncio.gather(*jobs, return_exceptions=True)

    # -- uploads --------------------------------------------------------------------------

    def begin_upload(self, creator: Principal, creator_id: str, upload_id: str, metadata: VideoMetadata,
                     size_bytes: int, sha256_hex: str, filename: str = "") -> UploadSession:
        """Open an upload under the client's id; the same id and declaration again resumes it."""
        _ensure_acting_creator(creator, creator_id)
        validate_declaration(size_bytes, sha256_hex, self.config.upload_limits)
        existing = self._store.get_upload(upload_id)
        if existing is not None:
            ensure_same_upload(existing, creator_id, metadata, size_bytes, sha256_hex)
            return existing
        now = self._clock()
        session = UploadSession(
            upload_id=upload_id, creator_id=creator_id, metadata=metadata, declared_size=size_bytes,
            sha256_hex=sha256_hex, committed_bytes=0, state=UploadState.RECEIVING, created_at=now,
            expires_at=now + self.config.upload_limits.session_lifetime, filename=filename,
        )
        try:
            self._store.create_upload(session)
        except ConcurrentUploadError:  # the same id started concurrently on another connection
            return self.begin_upload(creator, creator_id, upload_id, metadata, size_bytes, sha256_hex, filename)
        return session

    def get_upload(self, viewer: Principal, creator_id: str, upload_id: str) -> UploadSession:
        session = self._store.get_upload(upload_id)
        if session is None or session.creator_id != creator_id or not _may_act_for(viewer, creator_id):
            raise NotFound(f"no upload {upload_id}", resource_name=f"creators/{creator_id}/uploads/{upload_id}",
                           reason="UPLOAD_NOT_FOUND")
        return session

    def resume_upload(self, creator: Principal, creator_id: str, upload_id: str) -> UploadSession:
        """The upload to continue writing: only its creator may add bytes."""
        _ensure_acting_creator(creator, creator_id)
        return self.get_upload(creator, creator_id, upload_id)

    def writer(self, session: UploadSession) -> UploadWriter:
        return UploadWriter(self._store, self._blobs, session, self.config.upload_limits.part_bytes, self._clock)

    async def complete_upload(self, upload_id: str) -> Video:
        """All bytes are in: verify, probe, read C2PA, ask compliance, queue the transcode.

        A rejection (checksum, unusable media) fails the upload, discards its bytes, and
        is raised as `InvalidArgument` with the reason the creator can act on.
        """
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
            self._store.fail_upload(upload_id, rejection.reason)
            await asyncio.to_thread(self._discard_upload_data, session, keep_source=False)
            await self._audit.record(action="ingest.UploadVideo", resource=_upload_name(session),
                                     outcome=Outcome.REJECTED, reason=rejection.reason,
                                     subject=f"users/{session.creator_id}")
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
                           trace_carrier=self._trace_carrier())
        try:
            self._store.start_processing(video, job, now)
        except ConcurrentUploadError:  # completed concurrently by another connection
            return await self.complete_upload(upload_id)
        await asyncio.to_thread(self._discard_upload_data, session, keep_source=True)
        # What the creator declared and what the file carries: the facts a publication rests on.
        await self._audit.record(
            action="ingest.UploadVideo", resource=video.name, outcome=Outcome.SUCCEEDED,
            subject=f"users/{video.creator_id}",
            attributes={"commercial_relationship": video.metadata.commercial.relationship.value,
                        "ai_usage": video.metadata.ai.usage.value, "c2pa": c2pa.validation.value,
                        "disclosure_label": video.metadata.disclosure_label,
                        "publication": review.publication.value},
        )
        self._spawn(self._run_job(job), "job")
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

    def _discard_upload_data(self, session: UploadSession, *, keep_source: bool) -> None:
        for _offset, _size, key in self._store.upload_parts(session.upload_id):
            self._blobs.delete(key)
        self._store.forget_parts(session.upload_id)
        if not keep_source:  # rejected media is not kept (data minimisation)
            self._blobs.delete(source_key(session.video_id))

    def _probe_source(self, video_id: str) -> MediaProbe:
        with self._blobs.open_read(source_key(video_id)) as source:
            return probe_media(source, self.config.probe_limits)

    def _c2pa_of(self, video_id: str) -> C2paEvidence:
        with self._blobs.open_read(source_key(video_id)) as source:
            return self._read_provenance(source, "video/mp4")

    # -- transcode jobs -------------------------------------------------------------------

    async def _run_job(self, job: TranscodeJob) -> None:
        async with self._job_slots:
            video = self._store.get_video(job.video_id)
            if video is None:
                return
            request = TranscodeRequest(
                job_id=job.job_id, blob_store_url=self._blobs.url, source_key=source_key(video.video_id),
                output_prefix=job.output_prefix, probe=video.probe,
                renditions=plan_ladder(*video.probe.display_size), settings=self.config.transcode,
                trace_carrier=job.trace_carrier, telemetry_root=self._telemetry_root,
            )
            attempt = 0
            while True:
                if job.submissions >= MAX_JOB_SUBMISSIONS:
                    self._store.fail_job(job.job_id, "TRANSCODE_ABANDONED", f"gave up after {job.submissions} "
                                         "submissions that never finished (service stops or Ray unreachable)",
                                         self._clock())
                    return
                job = self._store.mark_job_submitted(job.job_id, self._clock())
                try:
                    result = await self._transcoder.transcode(
                        request, lambda progress: self._store.record_progress(video.video_id, progress, self._clock()))
                    break
                except TranscodeFailure as failure:
                    self._store.fail_job(job.job_id, failure.reason, failure.message, self._clock())
                    return
                except Exception:  # infrastructure (Ray unreachable, actor lost): the media may be fine
                    logger.exception("transcode job %s could not run; submitting it again", job.job_id)
                    attempt += 1
                    await asyncio.sleep(min(60.0, 2.0 ** attempt))
            self._store.complete_job(job.job_id, result.media, self._clock())
            logger.info("video %s is ready (workers: %s)", video.video_id, result.workers)
            with self._continue_trace(job.trace_carrier):
                await self._audit_publication(video)
        await self.run_due_follow_ups()

    # -- follow-ups: compliance reviews still pending, registrations still owed ----------

    async def run_due_follow_ups(self) -> None:
        """Ask compliance again for pending verdicts, then register published videos with ranking.

        Each call continues the trace of the upload it belongs to."""
        now = self._clock()
        for due in self._store.due_follow_ups(FollowUp.COMPLIANCE_REVIEW, now):
            video = self._store.get_video(due.video_id)
            if video is None:
                continue
            with self._continue_trace(due.trace_carrier):
                review = await self._compliance.review(video.name, video.metadata, video.c2pa, self._clock())
                self._store.apply_review(video.video_id, review, self._clock())
                await self._audit_publication(video)
            if review.publication is PublicationState.PENDING_REVIEW:
                self._store.defer_follow_up(video.video_id, FollowUp.COMPLIANCE_REVIEW,
                                            now + self._backoff(due.attempts), "compliance gave no verdict")
        now = self._clock()  # registrations the reviews above just made due are included
        for due in self._store.due_follow_ups(FollowUp.RANKING_REGISTRATION, now):
            video = self._store.get_video(due.video_id)
            if video is None:
                continue
            try:
                with self._continue_trace(due.trace_carrier):
                    await self._ranking.register(video)
            except Unavailable as unavailable:
                self._store.defer_follow_up(video.video_id, FollowUp.RANKING_REGISTRATION,
                                            now + self._backoff(due.attempts), unavailable.message)
                continue
            self._store.registration_succeeded(video.video_id, self._clock())

    async def _audit_publication(self, before: Video) -> None:
        """Put a video becoming visible, or being held, on the audit trail (DSA Art. 26)."""
        after = self._store.get_video(before.video_id)
        if after is None:
            return
        review = after.review
        facts = {"disclosure_verdict": review.disclosure_verdict.value, "ai_label": review.ai_label.value,
                 "required_label": review.required_disclosure_label,
                 "rules": ",".join(finding.rule_id for finding in review.findings)}
        if after.published_at is not None and before.published_at is None:
            await self._audit.record(action="ingest.PublishVideo", resource=after.name, outcome=Outcome.SUCCEEDED,
                                     subject=f"users/{after.creator_id}", attributes=facts)
        elif after.publication is PublicationState.HELD and before.publication is not PublicationState.HELD:
            await self._audit.record(action="ingest.HoldVideo", resource=after.name, outcome=Outcome.SUCCEEDED,
                                     reason=review.disclosure_verdict.value, subject=f"users/{after.creator_id}",
                                     attributes=facts)

    def _backoff(self, attempts: int) -> dt.timedelta:
        return min(self.config.follow_up_backoff * (2 ** attempts), self.config.follow_up_backoff_cap)

    async def _follow_up_loop(self) -> None:
        while True:
            try:
                await self.run_due_follow_ups()
            except Exception:  # a sweep must never end the loop; the next one retries
                logger.exception("follow-up sweep failed")
            await asyncio.sleep(FOLLOW_UP_SWEEP_S)

    # -- reading --------------------------------------------------------------------------

    def get_video(self, viewer: Principal, creator_id: str, video_id: str) -> Video:
        video = self._store.get_video(video_id)
        if video is None or video.creator_id != creator_id or not _may_view(viewer, video):
            # The same answer for "missing" and "not yours": no probing for other creators' drafts.
            raise NotFound(f"no video {video_id}", resource_name=video_name(creator_id, video_id),
                           reason="VIDEO_NOT_FOUND")
        return video

    def list_videos(self, viewer: Principal, creator_id: str, page_size: int, page_token: str,
                    state: VideoState | None = None) -> VideoPage:
        if not _may_act_for(viewer, creator_id):
            raise PermissionDenied("creators list only their own videos", reason="NOT_OWN_VIDEOS",
                                   metadata={"parent": f"creators/{creator_id}"})
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        after = _decode_page_token(page_token, creator_id)
        videos = self._store.list_videos(creator_id, size + 1, after, state)
        next_token = _encode_page_token(videos[size - 1], creator_id) if len(videos) > size else ""
        return VideoPage(videos[:size], next_token)

    async def watch_video(self, viewer: Principal, creator_id: str, video_id: str) -> AsyncIterator[Video]:
        """The video now, then after every change, until it is READY or FAILED."""
        video = self.get_video(viewer, creator_id, video_id)
        yield video
        version = video.version
        while not video.is_finished:
            await asyncio.sleep(WATCH_POLL_S)
            if self._store.video_version(video_id) == version:
                continue
            video = self.get_video(viewer, creator_id, video_id)
            version = video.version
            yield video

    def _spawn(self, work: Coroutine[object, object, None], kind: str) -> None:
        task = asyncio.ensure_future(work)
        task.set_name(f"{kind}:{id(task)}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)


class UploadWriter:
    """Buffers one stream's chunks into parts and commits each part (blob, then offset).

    `flush()` commits what is buffered; the servicer calls it when the stream ends, also
    when the client drops, so a resume loses at most what never reached the service.
    """

    def __init__(self, store: IngestStore, blobs: BlobStore, session: UploadSession, part_bytes: int,
                 clock: Clock) -> None:
        self._store = store
        self._blobs = blobs
        self.session = session
        self._part_bytes = part_bytes
        self._clock = clock
        self._buffer = bytearray()
        self._buffer_offset = session.committed_bytes

    def write(self, offset: int, data: bytes) -> None:
        position = self._buffer_offset + len(self._buffer)
        skip = bytes_to_skip(self.session, position, offset, len(data), self._clock())
        if not self._buffer:
            self._buffer_offset = offset + skip
        self._buffer += data[skip:]
        if len(self._buffer) >= self._part_bytes:
            self.flush()

    def flush(self) -> UploadSession:
        if not self._buffer:
            return self.session
        offset, data = self._buffer_offset, bytes(self._buffer)
        key = f"uploads/{self.session.upload_id}/parts/{offset:015d}"
        self._blobs.put(key, data)
        try:
            self.session = self._store.commit_part(self.session.upload_id, offset, len(data), key)
        except ConcurrentUploadError:
            self._blobs.delete(key)
            raise Unavailable("another connection is writing this upload; resume from the committed offset",
                              reason="UPLOAD_BUSY") from None
        self._buffer.clear()
        self._buffer_offset = self.session.committed_bytes
        return self.session


def _upload_name(session: UploadSession) -> str:
    return f"creators/{session.creator_id}/uploads/{session.upload_id}"


def _may_act_for(principal: Principal, creator_id: str) -> bool:
    return principal.user_id == creator_id or principal.has_role(Role.ADMIN, Role.COMPLIANCE_OFFICER) or (
        principal.is_service and principal.on_behalf_of is None)


def _ensure_acting_creator(principal: Principal, creator_id: str) -> None:
    if principal.user_id != creator_id:
        raise PermissionDenied("creators upload to their own account only", reason="NOT_OWN_ACCOUNT",
                               metadata={"parent": f"creators/{creator_id}"})


def _may_view(viewer: Principal, video: Video) -> bool:
    """Owners, officers and services see everything; others only what is ready and published."""
    if _may_act_for(viewer, video.creator_id):
        return True
    return video.published_at is not None


def _encode_page_token(last: Video, creator_id: str) -> str:
    position = {"c": creator_id, "t": last.created_at.isoformat(), "v": last.video_id}
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


def _decode_page_token(token: str, creator_id: str) -> tuple[dt.datetime, str] | None:
    if not token:
        return None
    try:
        position = json.loads(base64.urlsafe_b64decode(token.encode()))
        created_at = dt.datetime.fromisoformat(position["t"])
        if position["c"] != creator_id:
            raise ValueError("token of another listing")
        return created_at, str(position["v"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise InvalidArgument.for_field("page_token", "not a token from a previous page of this listing",
                                        reason="PAGE_TOKEN_INVALID") from None
