from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from services.ingest.probe import MediaProbe
from services.ingest.store import ConcurrentUploadError, IngestStore
from services.ingest.uploads import UploadSession, UploadState
from services.ingest.videos import (
    ComplianceOutcome,
    ComplianceVerdict,
    JobState,
    PublishedMedia,
    RegistrationState,
    TranscodeJob,
    Video,
    VideoMetadata,
    VideoState,
)

T0 = dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)
PROBE = MediaProbe("mov,mp4,m4a,3gp,3g2,mj2", "h264", "aac", 4.0, 1080, 1920, 0, 120, 30.0, False)
MEDIA = PublishedMedia("videos/v/hls/j/master.m3u8", "videos/v/hls/j/poster.jpg", (), (), "libx264")


@pytest.fixture
def store(tmp_path: Path) -> IngestStore:
    return IngestStore.open(tmp_path)


def add_upload(store: IngestStore, video_id: str = "v1", creator: str = "c1", size: int = 100,
               at: dt.datetime = T0) -> UploadSession:
    video = Video(video_id, creator, VideoMetadata(caption="hi", hashtags=("a",)), VideoState.UPLOADING, at, at)
    session = UploadSession(f"u-{video_id}", video_id, creator, size, "ab" * 32, 0, UploadState.OPEN,
                            at + dt.timedelta(days=1))
    store.create_upload(video, session)
    return session


def job(video_id: str = "v1", job_id: str = "j1") -> TranscodeJob:
    return TranscodeJob(job_id, video_id, JobState.QUEUED, f"videos/{video_id}/hls/{job_id}/", {"traceparent": "x"})


def test_parts_advance_the_committed_offset_only_from_where_it_is(store: IngestStore) -> None:
    add_upload(store)
    assert store.commit_part("u-v1", 0, 40, "p0").committed_bytes == 40
    with pytest.raises(ConcurrentUploadError):
        store.commit_part("u-v1", 0, 40, "p0-again")  # a racing replica with the same range
    assert store.commit_part("u-v1", 40, 60, "p1").committed_bytes == 100
    assert store.upload_parts("u-v1") == [(0, 40, "p0"), (40, 60, "p1")]


def test_the_schema_refuses_bytes_past_the_declared_size(store: IngestStore) -> None:
    add_upload(store, size=10)
    with pytest.raises(sqlite3.IntegrityError):
        store.commit_part("u-v1", 0, 11, "p0")
    assert store.get_upload("u-v1").committed_bytes == 0


def test_processing_starts_with_its_job_and_a_second_unfinished_job_is_refused(store: IngestStore) -> None:
    add_upload(store)
    outcome = ComplianceOutcome(ComplianceVerdict.PENDING_REVIEW, labels=("Werbung",))
    store.start_processing("u-v1", PROBE, outcome, job(), T0)
    video = store.get_video("v1")
    assert video.state is VideoState.PROCESSING and video.probe == PROBE and video.compliance == outcome
    assert store.get_upload("u-v1").state is UploadState.COMPLETED
    with pytest.raises(sqlite3.IntegrityError), store._db.transaction() as tx:
        tx.execute("INSERT INTO transcode_jobs (job_id, video_id, state, output_prefix, created_at, updated_at)"
                   " VALUES ('j2', 'v1', 'QUEUED', 'p', 'now', 'now')")


def test_completing_a_job_publishes_once_and_owes_ranking_a_registration(store: IngestStore) -> None:
    add_upload(store)
    store.start_processing("u-v1", PROBE, ComplianceOutcome(), job(), T0)
    store.record_progress("v1", 0.5, T0)
    store.record_progress("v1", 0.3, T0)  # progress never goes back
    assert store.get_video("v1").progress == 0.5
    store.complete_job("j1", MEDIA, VideoState.READY, T0)
    store.complete_job("j1", MEDIA, VideoState.READY, T0)  # a second commit is a no-op
    video = store.get_video("v1")
    assert video.state is VideoState.READY and video.media == MEDIA and video.progress == 1.0
    assert video.ranking is RegistrationState.PENDING
    assert store.due_registrations(T0) == [("v1", 0, {"traceparent": "x"})]
    store.registration_deferred("v1", T0 + dt.timedelta(seconds=30), "UNIMPLEMENTED")
    assert store.due_registrations(T0) == []
    assert store.due_registrations(T0 + dt.timedelta(seconds=30))[0][1] == 1
    store.registration_succeeded("v1", T0)
    assert store.get_video("v1").ranking is RegistrationState.REGISTERED
    assert store.due_registrations(T0 + dt.timedelta(days=1)) == []


def test_held_videos_are_not_registered_with_ranking(store: IngestStore) -> None:
    add_upload(store)
    store.start_processing("u-v1", PROBE, ComplianceOutcome(ComplianceVerdict.NON_COMPLIANT), job(), T0)
    store.complete_job("j1", MEDIA, VideoState.HELD, T0)
    assert store.get_video("v1").ranking is RegistrationState.NOT_REQUESTED
    assert store.due_registrations(T0 + dt.timedelta(days=1)) == []


def test_unfinished_jobs_survive_a_reopen_and_failures_reach_the_video(tmp_path: Path) -> None:
    store = IngestStore.open(tmp_path)
    add_upload(store)
    store.start_processing("u-v1", PROBE, ComplianceOutcome(), job(), T0)
    store.mark_job_submitted("j1", T0)
    store.close()
    reopened = IngestStore.open(tmp_path)
    [unfinished] = reopened.unfinished_jobs()
    assert (unfinished.job_id, unfinished.state, unfinished.submissions) == ("j1", JobState.RUNNING, 1)
    assert unfinished.trace_carrier == {"traceparent": "x"}
    reopened.fail_job("j1", "MEDIA_UNDECODABLE", "damaged", T0)
    assert reopened.unfinished_jobs() == []
    video = reopened.get_video("v1")
    assert (video.state, video.failure_reason, video.failure_message) == (VideoState.FAILED, "MEDIA_UNDECODABLE", "damaged")


def test_videos_list_newest_first_by_keyset(store: IngestStore) -> None:
    for minute in range(5):
        add_upload(store, video_id=f"v{minute}", at=T0 + dt.timedelta(minutes=minute))
    add_upload(store, video_id="other", creator="c2")
    first = store.list_videos("c1", 2)
    assert [v.video_id for v in first] == ["v4", "v3"]
    rest = store.list_videos("c1", 10, after=(first[-1].created_at, first[-1].video_id))
    assert [v.video_id for v in rest] == ["v2", "v1", "v0"]
