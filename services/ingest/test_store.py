from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from libs.audit.events import AuditEvent, Outcome
from libs.privacy.fields import EphemeralDataKeys, PersonalData
from libs.storage.database import IntegrityError, open_database
from services.ingest.model import (
    AiLabel,
    C2paEvidence,
    ComplianceReview,
    DisclosureVerdict,
    FollowUp,
    JobState,
    ProcessingStage,
    PublicationState,
    PublishedMedia,
    RankingRegistration,
    TranscodeJob,
    Video,
    VideoMetadata,
    VideoState,
)
from services.ingest.probe import MediaProbe
from services.ingest.store import MIGRATIONS, IngestStore
from services.ingest.uploads import UploadSession, UploadState
from services.ingest.usecases.ports import ConcurrentUploadError

T0 = dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
PROBE = MediaProbe("mov,mp4,m4a,3gp,3g2,mj2", "h264", "aac", 4.0, 1080, 1920, 0, 120, 30.0, False)
MEDIA = PublishedMedia("videos/v/hls/j/", "master.m3u8", "poster.jpg", ("thumbnails/thumb_0000.jpg",), (), "libx264")
CLEARED = ComplianceReview(DisclosureVerdict.COMPLIANT, ai_label=AiLabel.NONE, reviewed_at=T0)
PENDING = ComplianceReview()


@pytest.fixture
def keys() -> EphemeralDataKeys:
    return EphemeralDataKeys()


@pytest.fixture
def store(tmp_path: Path, keys: EphemeralDataKeys, database_engine: str) -> Iterator[IngestStore]:
    opened = IngestStore.open(tmp_path, personal=PersonalData(keys))
    yield opened
    opened.close()


def audit_event(action: str = "ingest.UploadVideo", resource: str = "creators/c1/videos/v1") -> AuditEvent:
    return AuditEvent(event_id=str(uuid.uuid4()), actor="users/c1", action=action, resource=resource,
                      outcome=Outcome.SUCCEEDED, event_time=T0)


def no_audit(before: Video, after: Video) -> list[AuditEvent]:
    return []


async def add_upload(store: IngestStore, upload_id: str = "v1", creator: str = "c1", size: int = 100,
               at: dt.datetime = T0) -> UploadSession:
    session = UploadSession(upload_id, creator, VideoMetadata(caption="hi", hashtags=("a",)), size, "ab" * 32, 0,
                            UploadState.RECEIVING, at, at + dt.timedelta(days=1))
    await store.create_upload(session)
    return session


async def start(store: IngestStore, video_id: str = "v1", review: ComplianceReview = PENDING,
          at: dt.datetime = T0, creator: str = "c1") -> None:
    video = Video(video_id, creator, VideoMetadata(caption="hi"), VideoState.PROCESSING, ProcessingStage.QUEUED,
                  at, at, PROBE, review=review)
    job = TranscodeJob(f"j-{video_id}", video_id, JobState.QUEUED, f"videos/{video_id}/hls/j/", {"traceparent": "x"})
    await store.start_processing(video, job, at, [audit_event(resource=f"creators/{creator}/videos/{video_id}")],
                                 {"traceparent": TRACEPARENT})


async def test_parts_advance_the_committed_offset_only_from_where_it_is(store: IngestStore) -> None:
    await add_upload(store)
    assert (await store.commit_part("v1", 0, 40, "p0")).committed_bytes == 40
    with pytest.raises(ConcurrentUploadError):
        await store.commit_part("v1", 0, 40, "p0-again")  # a racing replica with the same range
    assert (await store.commit_part("v1", 40, 60, "p1")).committed_bytes == 100
    assert store.upload_parts("v1") == [(0, 40, "p0"), (40, 60, "p1")]
    with pytest.raises(ConcurrentUploadError):
        await add_upload(store)  # the same client-chosen id twice


async def test_the_schema_refuses_bytes_past_the_declared_size(store: IngestStore) -> None:
    await add_upload(store, size=10)
    with pytest.raises(IntegrityError):
        await store.commit_part("v1", 0, 11, "p0")
    assert (await store.get_upload("v1")).committed_bytes == 0  # type: ignore[union-attr]


async def test_processing_starts_with_its_job_and_a_second_unfinished_job_is_refused(store: IngestStore) -> None:
    await add_upload(store)
    await start(store)
    video = await store.get_video("v1")
    assert video is not None and video.state is VideoState.PROCESSING and video.probe == PROBE
    assert video.publication is PublicationState.PENDING_REVIEW and video.stage is ProcessingStage.QUEUED
    assert (await store.get_upload("v1")).state is UploadState.COMPLETED  # type: ignore[union-attr]
    with pytest.raises(ConcurrentUploadError):
        await start(store)  # the upload is no longer receiving
    with pytest.raises(IntegrityError), store._writer.transaction() as tx:
        tx.execute("INSERT INTO transcode_jobs (job_id, video_id, state, output_prefix, created_at, updated_at)"
                   " VALUES ('j2', 'v1', 'QUEUED', 'p', 1, 1)")


async def test_a_cleared_video_is_published_once_ready_and_owes_ranking_a_registration(store: IngestStore) -> None:
    await add_upload(store)
    await start(store, review=CLEARED)
    assert store.due_follow_ups(FollowUp.RANKING_REGISTRATION, T0) == []  # not before it is READY
    await store.mark_job_submitted("j-v1", T0, holder="a", lease_until=T0)
    await store.record_progress("v1", 0.5, T0)
    await store.record_progress("v1", 0.3, T0)  # progress never goes back
    assert ((await store.get_video("v1")).progress, (await store.get_video("v1")).stage) == (0.5, ProcessingStage.TRANSCODING)  # type: ignore[union-attr]
    await store.complete_job("j-v1", MEDIA, T0, no_audit, {})
    await store.complete_job("j-v1", MEDIA, T0, no_audit, {})  # a second commit is a no-op
    video = await store.get_video("v1")
    assert video is not None and video.state is VideoState.READY and video.media == MEDIA
    assert video.published_at == T0 and video.ranking is RankingRegistration.PENDING
    [due] = store.due_follow_ups(FollowUp.RANKING_REGISTRATION, T0)
    assert (due.video_id, due.attempts, due.trace_carrier) == ("v1", 0, {"traceparent": "x"})
    await store.defer_follow_up("v1", FollowUp.RANKING_REGISTRATION, T0 + dt.timedelta(seconds=30), "UNIMPLEMENTED")
    assert store.due_follow_ups(FollowUp.RANKING_REGISTRATION, T0) == []
    assert store.due_follow_ups(FollowUp.RANKING_REGISTRATION, T0 + dt.timedelta(seconds=30))[0].attempts == 1
    await store.registration_succeeded("v1", T0)
    assert (await store.get_video("v1")).ranking is RankingRegistration.REGISTERED  # type: ignore[union-attr]


async def test_pending_review_keeps_asking_compliance_and_is_not_published(store: IngestStore) -> None:
    await add_upload(store)
    await start(store, review=PENDING)
    await store.complete_job("j-v1", MEDIA, T0, no_audit, {})
    video = await store.get_video("v1")
    assert video is not None and video.published_at is None
    assert [d.video_id for d in store.due_follow_ups(FollowUp.COMPLIANCE_REVIEW, T0)] == ["v1"]
    assert store.due_follow_ups(FollowUp.RANKING_REGISTRATION, T0) == []
    await store.apply_review("v1", CLEARED, T0, no_audit, {})
    assert store.due_follow_ups(FollowUp.COMPLIANCE_REVIEW, T0) == []
    assert (await store.get_video("v1")).published_at == T0  # type: ignore[union-attr]
    assert [d.video_id for d in store.due_follow_ups(FollowUp.RANKING_REGISTRATION, T0)] == ["v1"]


async def test_held_videos_are_never_registered_with_ranking(store: IngestStore) -> None:
    await add_upload(store)
    await start(store, review=ComplianceReview(DisclosureVerdict.NON_COMPLIANT, ai_label=AiLabel.NONE))
    await store.complete_job("j-v1", MEDIA, T0, no_audit, {})
    video = await store.get_video("v1")
    assert video is not None and video.publication is PublicationState.HELD
    assert video.ranking is RankingRegistration.NOT_APPLICABLE and video.published_at is None
    assert store.due_follow_ups(FollowUp.RANKING_REGISTRATION, T0 + dt.timedelta(days=1)) == []


async def test_the_schema_refuses_publishing_what_is_not_ready_and_cleared(store: IngestStore) -> None:
    await add_upload(store)
    await start(store)
    with pytest.raises(IntegrityError), store._writer.transaction() as tx:
        tx.execute("UPDATE videos SET published_at = 1 WHERE video_id = 'v1'")


async def test_unfinished_jobs_survive_a_reopen_and_failures_reach_the_video(tmp_path: Path,
                                                                             database_engine: str) -> None:
    personal = PersonalData(EphemeralDataKeys())
    store = IngestStore.open(tmp_path, personal=personal)
    await add_upload(store)
    await start(store)
    await store.mark_job_submitted("j-v1", T0, holder="a", lease_until=T0)
    store.close()
    reopened = IngestStore.open(tmp_path, personal=personal)
    [unfinished] = reopened.unfinished_jobs()
    assert (unfinished.job_id, unfinished.state, unfinished.submissions) == ("j-v1", JobState.RUNNING, 1)
    assert unfinished.trace_carrier == {"traceparent": "x"}
    await reopened.fail_job("j-v1", "MEDIA_UNDECODABLE", "damaged", T0)
    assert reopened.unfinished_jobs() == []
    video = await reopened.get_video("v1")
    assert video is not None
    assert (video.state, video.failure_reason, video.failure_message) == (VideoState.FAILED, "MEDIA_UNDECODABLE", "damaged")
    assert video.ranking is RankingRegistration.NOT_APPLICABLE
    assert reopened.due_follow_ups(FollowUp.COMPLIANCE_REVIEW, T0) == []


async def test_videos_list_newest_first_by_keyset(store: IngestStore) -> None:
    for minute in range(5):
        await add_upload(store, upload_id=f"v{minute}")
        await start(store, video_id=f"v{minute}", at=T0 + dt.timedelta(minutes=minute))
    await add_upload(store, upload_id="other", creator="c2")
    await start(store, video_id="other", creator="c2")
    first = await store.list_videos("c1", 2)
    assert [v.video_id for v in first] == ["v4", "v3"]
    rest = await store.list_videos("c1", 10, after=(first[-1].created_at, first[-1].video_id))
    assert [v.video_id for v in rest] == ["v2", "v1", "v0"]
    await store.fail_job("j-v2", "X", "y", T0)
    assert [v.video_id for v in (await store.list_videos("c1", 10, state=VideoState.FAILED))] == ["v2"]


async def test_an_audit_event_is_stored_exactly_when_its_change_is(store: IngestStore) -> None:
    await add_upload(store)
    await start(store, review=CLEARED)
    [uploaded] = store.audit_outbox.pending(10)
    assert (uploaded.event.action, uploaded.event.resource) == ("ingest.UploadVideo", "creators/c1/videos/v1")
    assert uploaded.trace_context == {"traceparent": TRACEPARENT}  # the shipper's append joins this trace
    with pytest.raises(ConcurrentUploadError):
        await start(store)  # refused: neither the change nor its event is kept
    assert store.audit_outbox.pending(10) == [uploaded]

    def failing_audit(before: Video, after: Video) -> list[AuditEvent]:
        raise RuntimeError("cannot describe the change")

    with pytest.raises(RuntimeError):
        await store.complete_job("j-v1", MEDIA, T0, failing_audit, {})
    assert (await store.get_video("v1")).state is VideoState.PROCESSING  # type: ignore[union-attr]

    seen: list[tuple[str | None, str | None]] = []

    def publication_audit(before: Video, after: Video) -> list[AuditEvent]:
        seen.append((str(before.published_at), str(after.published_at)))
        return [audit_event("ingest.PublishVideo")]

    await store.complete_job("j-v1", MEDIA, T0, publication_audit, {})
    assert seen == [("None", str(T0))]  # the callback sees the video before and after, in the transaction
    assert [traced.event.action for traced in store.audit_outbox.pending(10)] == [
        "ingest.UploadVideo", "ingest.PublishVideo"]


async def test_a_database_with_text_times_is_migrated_to_microseconds_exactly(tmp_path: Path,
                                                                            database_engine: str) -> None:
    old = open_database("ingest", MIGRATIONS[:2], root=tmp_path)  # as the service left it before times became integers
    created, published = "2026-05-01T12:00:00.123456Z", "2026-05-01T12:05:00.000001Z"
    with old.transaction() as tx:
        tx.execute("INSERT INTO uploads (upload_id, creator_id, metadata_json, declared_size, sha256, state,"
                   " created_at, expires_at) VALUES ('v1', 'c1', ?, 100, ?, 'COMPLETED', ?, ?)",
                   (json.dumps(dataclasses.asdict(VideoMetadata())), "ab" * 32, created, "2026-05-08T12:00:00.000000Z"))
        tx.execute("INSERT INTO videos (video_id, creator_id, metadata_json, state, stage, probe_json, review_json,"
                   " c2pa_json, publication, published_at, created_at, updated_at) VALUES ('v1', 'c1', ?, 'READY',"
                   " 'DONE', ?, ?, ?, 'PUBLISHED', ?, ?, ?)",
                   (json.dumps(dataclasses.asdict(VideoMetadata())), json.dumps(dataclasses.asdict(PROBE)),
                    json.dumps(dataclasses.asdict(CLEARED), default=str), json.dumps(dataclasses.asdict(C2paEvidence())),
                    published, created, published))
        tx.execute("INSERT INTO transcode_jobs (job_id, video_id, state, output_prefix, created_at, updated_at)"
                   " VALUES ('j1', 'v1', 'SUCCEEDED', 'p/', ?, ?)", (created, published))
        tx.execute("INSERT INTO follow_ups (video_id, kind, next_attempt_at) VALUES ('v1', 'RANKING_REGISTRATION', ?)",
                   (published,))
    old.close()
    store = IngestStore.open(tmp_path, personal=PersonalData(EphemeralDataKeys()))
    try:
        video = await store.get_video("v1")
        assert video is not None
        assert video.created_at == dt.datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
        assert video.published_at == dt.datetime(2026, 5, 1, 12, 5, 0, 1, tzinfo=dt.UTC)
        assert (await store.get_upload("v1")).expires_at == dt.datetime(2026, 5, 8, 12, tzinfo=dt.UTC)  # type: ignore[union-attr]
        assert [v.video_id for v in (await store.list_videos("c1", 10))] == ["v1"]
        assert [d.video_id for d in store.due_follow_ups(FollowUp.RANKING_REGISTRATION, video.published_at)] == ["v1"]
        assert store.due_follow_ups(FollowUp.RANKING_REGISTRATION, video.created_at) == []
        with store._writer.reading() as connection:
            if database_engine == "sqlite":  # PostgreSQL checks foreign keys and types on every write
                assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
                assert connection.execute("SELECT typeof(created_at) FROM videos").fetchone()[0] == "integer"
            else:
                assert connection.execute(
                    "SELECT data_type FROM information_schema.columns WHERE table_schema = current_schema()"
                    " AND table_name = 'videos' AND column_name = 'created_at'").fetchone()[0] == "bigint"
    finally:
        store.close()


async def test_writes_run_on_the_committer_thread_never_on_the_event_loop(
    store: IngestStore, monkeypatch: pytest.MonkeyPatch,
) -> None:
    writers: set[str] = set()
    transaction = store._writer.transaction

    def recorded_transaction() -> Any:
        writers.add(threading.current_thread().name)
        return transaction()

    monkeypatch.setattr(store._writer, "transaction", recorded_transaction)
    await add_upload(store)
    await start(store)
    await store.mark_job_submitted("j-v1", T0, holder="a", lease_until=T0)
    await store.record_progress("v1", 0.5, T0)
    assert writers == {"ingest-store"}  # the event loop's thread never waited for a COMMIT


CAPTION = "Ada's holiday in Lisbon, with Grace"


async def test_the_caption_and_file_name_are_stored_only_sealed(store: IngestStore, tmp_path: Path) -> None:
    session = UploadSession("v1", "ada", VideoMetadata(caption=CAPTION, hashtags=("lisbon",)), 100, "ab" * 32, 0,
                            UploadState.RECEIVING, T0, T0 + dt.timedelta(days=1), filename="grace-and-me.mp4")
    await store.create_upload(session)
    await store.start_processing(
        Video("v1", "ada", session.metadata, VideoState.PROCESSING, ProcessingStage.QUEUED, T0, T0, PROBE),
        TranscodeJob("j-v1", "v1", JobState.QUEUED, "videos/v1/hls/j/", {}), T0, [audit_event()], {})
    assert ((await store.get_upload("v1")).metadata.caption, (await store.get_upload("v1")).filename) == (  # type: ignore[union-attr]
        CAPTION, "grace-and-me.mp4")
    assert (await store.get_video("v1")).metadata == session.metadata  # type: ignore[union-attr]
    with store._reader.reading() as connection:
        rows = [repr(tuple(row)).encode() for table in ("uploads", "videos", "transcode_jobs", "audit_outbox")
                for row in connection.execute(f"SELECT * FROM {table}")]
    files = (tmp_path / "ingest").glob("ingest.db*")  # SQLite's pages, free ones included
    stored = b"".join(rows + [path.read_bytes() for path in files])
    assert b"Lisbon" not in stored and b"grace-and-me" not in stored
    assert b"lisbon" in stored  # hashtags are not personal: they stay queryable


async def test_after_the_creator_is_erased_their_fields_read_back_empty(
    store: IngestStore, keys: EphemeralDataKeys, tmp_path: Path,
) -> None:
    await store.create_upload(UploadSession("v1", "ada", VideoMetadata(caption=CAPTION), 100, "ab" * 32, 0,
                                            UploadState.RECEIVING, T0, T0 + dt.timedelta(days=1), filename="a.mp4"))
    await add_upload(store, "v2", creator="bob")
    keys.shred("users/ada")
    reopened = IngestStore.open(tmp_path, personal=PersonalData(keys))  # a fresh cache, as after the key TTL
    try:
        upload = await reopened.get_upload("v1")
        assert upload is not None and (upload.metadata.caption, upload.filename) == ("", "")
        assert (await reopened.get_upload("v2")).metadata.caption == "hi"  # type: ignore[union-attr]
    finally:
        reopened.close()


async def test_a_row_written_before_sealing_keeps_its_caption(tmp_path: Path, database_engine: str) -> None:
    old = open_database("ingest", MIGRATIONS[:3], root=tmp_path)
    with old.transaction() as tx:
        tx.execute("INSERT INTO uploads (upload_id, creator_id, metadata_json, declared_size, sha256, state,"
                   " filename, created_at, expires_at) VALUES ('v1', 'c1', ?, 100, ?, 'RECEIVING', 'old.mp4', 1, 2)",
                   (json.dumps(dataclasses.asdict(VideoMetadata(caption="from before"))), "ab" * 32))
    old.close()
    store = IngestStore.open(tmp_path, personal=PersonalData(EphemeralDataKeys()))
    try:
        upload = await store.get_upload("v1")
        assert upload is not None and (upload.metadata.caption, upload.filename) == ("from before", "old.mp4")
    finally:
        store.close()


async def test_the_schema_knows_every_follow_up_kind_and_no_other(store: IngestStore) -> None:
    await add_upload(store)
    await start(store)
    with store._writer.transaction() as tx:
        tx.execute("INSERT INTO follow_ups (video_id, kind, next_attempt_at) VALUES ('v1', 'AD_REGISTRATION', 1)")
    with pytest.raises(IntegrityError), store._writer.transaction() as tx:
        tx.execute("INSERT INTO follow_ups (video_id, kind, next_attempt_at) VALUES ('v1', 'NEWSLETTER', 1)")


async def test_one_replica_at_a_time_holds_a_job_and_a_lapsed_or_given_up_lease_frees_it(store: IngestStore) -> None:
    await add_upload(store)
    await start(store)
    minute = dt.timedelta(minutes=1)
    claimed = await store.mark_job_submitted("j-v1", T0, holder="a", lease_until=T0 + minute)
    assert claimed is not None and (claimed.state, claimed.submissions) == (JobState.RUNNING, 1)
    assert await store.mark_job_submitted("j-v1", T0 + minute / 2, holder="b", lease_until=T0 + 2 * minute) is None
    assert store.unfinished_jobs(unheld_at=T0 + minute / 2) == []
    assert await store.renew_job_lease("j-v1", "a", T0 + 2 * minute)
    assert await store.mark_job_submitted("j-v1", T0 + minute, holder="b", lease_until=T0 + 3 * minute) is None
    assert [job.job_id for job in store.unfinished_jobs(unheld_at=T0 + 2 * minute)] == ["j-v1"]  # a died: lapsed
    taken = await store.mark_job_submitted("j-v1", T0 + 2 * minute, holder="b", lease_until=T0 + 3 * minute)
    assert taken is not None and taken.submissions == 2
    assert not await store.renew_job_lease("j-v1", "a", T0 + 4 * minute)  # a's stall ended: it is b's now
    await store.release_job_leases("b")  # b stops
    assert [job.job_id for job in store.unfinished_jobs(unheld_at=T0 + 2 * minute)] == ["j-v1"]
    await store.complete_job("j-v1", MEDIA, T0, no_audit, {})
    assert await store.mark_job_submitted("j-v1", T0 + 5 * minute, holder="c", lease_until=T0 + 6 * minute) is None
    await store.fail_job("j-v1", "TRANSCODE_FAILED", "late", T0)  # a late failure changes nothing
    assert (await store.get_video("v1")).state is VideoState.READY  # type: ignore[union-attr]
