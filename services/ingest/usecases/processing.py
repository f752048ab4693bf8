"""Processing in the background: transcode jobs, and the calls owed to compliance and ranking.

Both run as asyncio tasks of the serving process and survive it through the store:
`TranscodeJobs.start()` queues every job a stopped service left unfinished, and
`FollowUps` keeps asking until each call is answered."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine

from libs.clock import Clock
from libs.errors import Unavailable
from services.ingest.config import IngestConfig
from services.ingest.ladder import plan_ladder
from services.ingest.model import (
    MAX_JOB_SUBMISSIONS,
    FollowUp,
    PublicationState,
    TranscodeFailure,
    TranscodeJob,
    TranscodeRequest,
    Video,
    source_key,
)
from services.ingest.usecases.audit_events import AuditEvents
from services.ingest.usecases.ports import (
    AdRepository,
    ComplianceChecker,
    IngestStore,
    MediaBlobs,
    RankingRegistrar,
    Tracing,
    Transcoder,
)

logger = logging.getLogger(__name__)


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
    """Calls owed to other services: compliance's missing verdicts, ranking's registrations,
    and the ad repository's entries for published commercial content.

    Each call continues the trace of the upload it belongs to."""

    def __init__(self, *, store: IngestStore, compliance: ComplianceChecker, ranking: RankingRegistrar,
                 ads: AdRepository, audit: AuditEvents, tracing: Tracing, clock: Clock,
                 config: IngestConfig) -> None:
        self._store = store
        self._compliance = compliance
        self._ranking = ranking
        self._ads = ads
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
        """Ask compliance again for pending verdicts, then register published videos with ranking
        and published commercial content with the ad repository."""
        now = self._clock()
        for due in self._store.due_follow_ups(FollowUp.COMPLIANCE_REVIEW, now):
            video = await self._store.get_video(due.video_id)
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
        # The ad entry first, so ranking usually receives its name with the video to carry to feed items.
        await self._call_due(FollowUp.AD_REGISTRATION, now, self._register_ad)
        await self._call_due(FollowUp.RANKING_REGISTRATION, now, self._register_with_ranking)

    async def _register_with_ranking(self, video: Video) -> None:
        await self._ranking.register(video)
        await self._store.registration_succeeded(video.video_id, self._clock())

    async def _register_ad(self, video: Video) -> None:
        ad_name = await self._ads.register(video)
        await self._store.ad_registered(video.video_id, ad_name, self._clock())

    async def _call_due(self, kind: FollowUp, now: dt.datetime, call: Callable[[Video], Awaitable[None]]) -> None:
        """Make each due call of `kind`; one the other side cannot take yet is deferred."""
        for due in self._store.due_follow_ups(kind, now):
            video = await self._store.get_video(due.video_id)
            if video is None:
                continue
            try:
                with self._tracing.continued(due.trace_carrier):
                    await call(video)
            except Unavailable as unavailable:
                await self._store.defer_follow_up(video.video_id, kind, now + self._backoff(due.attempts),
                                                  unavailable.message)

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
    video READY (and published, or held, by the verdicts it has) in one transaction.

    Replicas share the jobs through the store: a replica runs a job only under its lease on it
    (`job_lease`, renewed while the job runs), so no two run one job; a stopping replica gives
    its leases up, and one that died leaves its jobs to whichever replica looks next for jobs
    nobody holds (at start, then every half lease).
    """

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
        self._holder = f"ingest-{uuid.uuid4().hex}"  # this replica, as a lease holder
        self._scheduled: set[str] = set()  # job ids this replica has queued or is running

    def start(self) -> None:
        """Queue the jobs that nobody holds (a stopped service left them), now and every half lease."""
        self._tasks.spawn(self._adopt_forever(), "adopt")

    def schedule(self, job: TranscodeJob) -> None:
        if job.job_id in self._scheduled:
            return
        self._scheduled.add(job.job_id)
        self._tasks.spawn(self._run(job), "job")

    def adopt_unheld(self) -> None:
        """Queue every unfinished job that no replica holds a lease on."""
        for job in self._store.unfinished_jobs(unheld_at=self._clock()):
            if job.job_id not in self._scheduled:
                logger.info("re-queueing transcode job %s of video %s", job.job_id, job.video_id)
                self.schedule(job)

    async def stop(self) -> None:
        """Stop every job; unfinished ones stay RUNNING in the store, free for the next replica to take."""
        await self._tasks.cancel()
        try:
            await self._store.release_job_leases(self._holder)
        except Exception:  # the store is unreachable: the leases lapse on their own instead
            logger.exception("giving up the leases on transcode jobs failed")

    async def _adopt_forever(self) -> None:
        while True:
            try:
                self.adopt_unheld()
            except Exception:  # the next look retries
                logger.exception("looking for unheld transcode jobs failed")
            await asyncio.sleep(self._config.job_lease.total_seconds() / 2)

    async def wait_idle(self) -> None:
        """Wait for every job in flight (tests and the benchmark)."""
        await self._tasks.wait("job")

    async def _run(self, job: TranscodeJob) -> None:
        try:
            await self._run_under_lease(job)
        finally:
            self._scheduled.discard(job.job_id)

    async def _claim(self, job_id: str) -> TranscodeJob | None:
        now = self._clock()
        return await self._store.mark_job_submitted(job_id, now, holder=self._holder,
                                                    lease_until=now + self._config.job_lease)

    async def _keep_lease(self, job_id: str) -> None:
        while True:
            await asyncio.sleep(self._config.job_lease.total_seconds() / 3)
            try:
                held = await self._store.renew_job_lease(job_id, self._holder, self._clock() + self._config.job_lease)
            except Exception:  # the store is unreachable: try again; the lease may lapse meanwhile
                logger.exception("renewing the lease on transcode job %s failed", job_id)
                continue
            if not held:
                return  # finished, or lost to another replica after a stall: its outcome is committed once

    async def _run_under_lease(self, job: TranscodeJob) -> None:
        async with self._slots:
            video = await self._store.get_video(job.video_id)
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

            lease = asyncio.ensure_future(self._keep_lease(job.job_id))
            try:
                attempt = 0
                while True:
                    claimed = await self._claim(job.job_id)
                    if claimed is None:
                        return  # finished meanwhile, or another replica holds it
                    job = claimed
                    if job.submissions > MAX_JOB_SUBMISSIONS:  # this claim counted one more
                        await self._store.fail_job(
                            job.job_id, "TRANSCODE_ABANDONED", f"gave up after {job.submissions - 1} submissions"
                            " that never finished (service stops or Ray unreachable)", self._clock())
                        return
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
            finally:
                lease.cancel()
            finished_at = self._clock()
            with self._tracing.continued(job.trace_carrier):
                trace_id = self._tracing.trace_id()
            await self._store.complete_job(job.job_id, result.media, finished_at,
                                           self._audit.publication(trace_id=trace_id, at=finished_at),
                                           job.trace_carrier)
            logger.info("video %s is ready (workers: %s)", video.video_id, result.workers)
        await self._follow_ups.run_due()
