"""Two ingest replicas over one store (one SQLite file, or one PostgreSQL schema): a transcode
job runs on one of them at a time, and a stopping replica's job is taken over by the other."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from libs.blobstore import LocalBlobStore
from libs.clock import utc_now
from libs.privacy.fields import EphemeralDataKeys, PersonalData
from services.ingest.config import IngestConfig
from services.ingest.model import (
    JobState,
    ProcessingStage,
    PublishedMedia,
    TranscodeJob,
    TranscodeRequest,
    TranscodeResult,
    Video,
    VideoMetadata,
    VideoState,
)
from services.ingest.probe import MediaProbe
from services.ingest.server import assemble
from services.ingest.store import IngestStore
from services.ingest.test_usecases import (
    CLEARED,
    FixedCompliance,
    FlakyRanking,
    NamedPseudonyms,
    NoTrace,
    RecordingAdRepository,
    no_provenance,
)
from services.ingest.uploads import UploadSession, UploadState
from services.ingest.usecases import Ingest
from services.ingest.usecases.ports import ProgressListener

T0 = dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)
PROBE = MediaProbe("mov,mp4,m4a,3gp,3g2,mj2", "h264", "aac", 4.0, 1080, 1920, 0, 120, 30.0, False)
MEDIA = PublishedMedia("videos/v1/hls/j/", "master.m3u8", "poster.jpg", (), (), "libx264")
SHORT_LEASE = dt.timedelta(milliseconds=300)  # replicas look for unheld jobs every 150 ms


class HeldTranscoder:
    """Runs a job until the test lets it finish, remembering which jobs it was given."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.finish = asyncio.Event()

    async def transcode(self, request: TranscodeRequest, on_progress: ProgressListener) -> TranscodeResult:
        self.started.append(request.job_id)
        await self.finish.wait()
        return TranscodeResult(MEDIA, ())


@dataclass
class Replica:
    ingest: Ingest
    store: IngestStore
    transcoder: HeldTranscoder


@pytest.fixture
async def replica(tmp_path: Path, database_engine: str) -> AsyncIterator[Callable[[], Replica]]:
    """Makes replicas of ingest over the one store this test's engine holds."""
    replicas: list[Replica] = []
    keys = EphemeralDataKeys()

    def make() -> Replica:
        store, transcoder = IngestStore.open(tmp_path, personal=PersonalData(keys)), HeldTranscoder()
        ingest = assemble(
            store=store, blobs=LocalBlobStore(tmp_path / "blobs"), transcoder=transcoder,
            compliance=FixedCompliance(), ranking=FlakyRanking(), ads=RecordingAdRepository(),
            read_provenance=no_provenance, tracing=NoTrace(), pseudonyms=NamedPseudonyms(), clock=utc_now,
            config=IngestConfig(job_lease=SHORT_LEASE), telemetry_root=tmp_path)
        replicas.append(Replica(ingest, store, transcoder))
        return replicas[-1]

    yield make
    for each in replicas:
        each.transcoder.finish.set()
        await each.ingest.stop()
        each.store.close()


async def queue_a_job(store: IngestStore) -> None:
    await store.create_upload(UploadSession("v1", "c1", VideoMetadata(), 100, "ab" * 32, 0, UploadState.RECEIVING,
                                            T0, T0 + dt.timedelta(days=1)))
    await store.start_processing(
        Video("v1", "c1", VideoMetadata(), VideoState.PROCESSING, ProcessingStage.QUEUED, T0, T0, PROBE,
              review=CLEARED), TranscodeJob("j1", "v1", JobState.QUEUED, "videos/v1/hls/j/", {}), T0, [], {})


async def first_running_the_job(replica: Callable[[], Replica]) -> tuple[Replica, Replica]:
    """Two replicas; a queued job, running on the first."""
    first, second = replica(), replica()
    await queue_a_job(first.store)
    await first.ingest.start()
    await until(lambda: first.transcoder.started == ["j1"])
    return first, second


async def finishes_the_job(taker: Replica) -> None:
    await until(lambda: taker.transcoder.started == ["j1"])
    taker.transcoder.finish.set()
    await taker.ingest.jobs.wait_idle()
    video = await taker.store.get_video("v1")
    assert video is not None and video.state is VideoState.READY and video.media == MEDIA
    assert taker.store.unfinished_jobs() == []  # finished once


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_job_runs_on_one_replica_and_the_other_takes_it_over_when_that_one_stops(
    replica: Callable[[], Replica],
) -> None:
    first, second = await first_running_the_job(replica)
    await second.ingest.start()
    [job] = second.store.unfinished_jobs()
    second.ingest.jobs.schedule(job)  # as if the second had queued it too: its claim is refused
    await asyncio.sleep(3 * SHORT_LEASE.total_seconds())  # several looks, and renewals, later
    assert second.transcoder.started == []  # the first holds the job and keeps its lease

    await first.ingest.stop()  # gives its lease up: the job is left RUNNING, for the next look
    await finishes_the_job(second)


async def test_the_job_of_a_replica_that_lost_the_store_is_taken_over_once_its_lease_lapses(
    replica: Callable[[], Replica],
) -> None:
    first, second = await first_running_the_job(replica)
    first.store.close()  # the replica is cut off: it can no longer renew, and never gives its lease up
    await second.ingest.start()
    await finishes_the_job(second)
