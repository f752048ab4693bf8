from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import pytest

from libs.audit.events import Outcome
from libs.auth.principal import Principal, Role
from libs.blobstore import LocalBlobStore
from libs.clock import utc_now
from libs.errors import InvalidArgument, NotFound, PermissionDenied, Unavailable
from services.ingest.ingestion import Ingest, IngestConfig
from services.ingest.store import IngestStore
from services.ingest.transcode import TranscodeSettings
from services.ingest.uploads import UploadLimits
from services.ingest.videos import (
    AiLabel,
    C2paEvidence,
    ComplianceReview,
    DisclosureVerdict,
    JobState,
    PublicationState,
    RankingRegistration,
    Video,
    VideoMetadata,
    VideoState,
    source_key,
)
from services.ingest.workers import RayTranscoder

pytestmark = pytest.mark.usefixtures("ray_session")

CREATOR = Principal("users/alice", frozenset({Role.CREATOR}), dt.datetime(2099, 1, 1, tzinfo=dt.UTC))
STRANGER = Principal("users/bob", frozenset({Role.VIEWER}), dt.datetime(2099, 1, 1, tzinfo=dt.UTC))


CLEARED = ComplianceReview(DisclosureVerdict.COMPLIANT, ai_label=AiLabel.NONE)


class FixedCompliance:
    """Stands in for the compliance service's answers (an outside port, not our code under test)."""

    def __init__(self, *answers: ComplianceReview) -> None:
        self.answers = list(answers) or [CLEARED]

    async def review(self, video_name: str, metadata: VideoMetadata, c2pa: C2paEvidence,
                     reviewed_at: dt.datetime) -> ComplianceReview:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


class FlakyRanking:
    """Ranking that is not ready for the first `refusals` calls, like an UNIMPLEMENTED RPC."""

    def __init__(self, refusals: int = 0) -> None:
        self.refusals = refusals
        self.registered: list[str] = []

    async def register(self, video: Video) -> None:
        if self.refusals:
            self.refusals -= 1
            raise Unavailable("ranking does not implement RegisterVideo yet", reason="UNIMPLEMENTED")
        self.registered.append(video.video_id)


def no_provenance(media: BinaryIO, mime_type: str) -> C2paEvidence:
    return C2paEvidence()


class RecordingAudit:
    """Keeps what would go on the audit trail (compliance's client is tested with compliance)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str]] = []

    async def record(self, *, action: str, resource: str, outcome: Outcome, reason: str = "",
                     subject: str = "", attributes: Mapping[str, str] | None = None) -> object:
        self.events.append((action, outcome.value, reason, (attributes or {}).get("publication", "")))
        return None


@pytest.fixture
async def make_ingest(tmp_path: Path) -> AsyncIterator:
    running: list[Ingest] = []

    async def make(*, compliance: FixedCompliance | None = None, ranking: FlakyRanking | None = None,
                   config: IngestConfig | None = None, transcoder: object = None,
                   audit: RecordingAudit | None = None) -> Ingest:
        ingest = Ingest(
            store=IngestStore.open(tmp_path), blobs=LocalBlobStore(tmp_path / "blobs"),
            transcoder=transcoder or RayTranscoder(), compliance=compliance or FixedCompliance(),
            ranking=ranking or FlakyRanking(), read_provenance=no_provenance, audit=audit or RecordingAudit(),
            trace_carrier=dict, continue_trace=lambda carrier: contextlib.nullcontext(),
            telemetry_root=str(tmp_path), clock=utc_now,
            config=config or IngestConfig(upload_limits=UploadLimits(part_bytes=64 * 1024),
                                          follow_up_backoff=dt.timedelta(0)),
        )
        await ingest.start()
        running.append(ingest)
        return ingest

    yield make
    for ingest in running:
        await ingest.stop()


def begin(ingest: Ingest, data: bytes, sha256: str | None = None):  # noqa: ANN201
    return ingest.begin_upload(CREATOR, "alice", str(uuid.uuid4()), VideoMetadata(caption="first"), len(data),
                               sha256 or hashlib.sha256(data).hexdigest())


async def upload(ingest: Ingest, clip: Path, *, sha256: str | None = None, chunk: int = 50_000) -> Video:
    data = clip.read_bytes()
    session = begin(ingest, data, sha256)
    writer = ingest.writer(session)
    for offset in range(0, len(data), chunk):
        writer.write(offset, data[offset:offset + chunk])
    writer.flush()
    return await ingest.complete_upload(session.upload_id)


async def finished(ingest: Ingest, video_id: str) -> list[Video]:
    return [update async for update in ingest.watch_video(CREATOR, "alice", video_id)]


async def test_an_upload_becomes_a_ready_published_video_with_a_ladder_and_is_registered(
    make_ingest, clips: dict[str, Path]
) -> None:
    ranking, audit = FlakyRanking(), RecordingAudit()
    ingest = await make_ingest(ranking=ranking, audit=audit)
    video = await upload(ingest, clips["portrait"])
    assert video.state is VideoState.PROCESSING and video.probe.display_size == (480, 854)
    updates = await finished(ingest, video.video_id)
    assert updates[-1].state is VideoState.READY and updates[-1].progress == 1.0
    assert [u.progress for u in updates] == sorted(u.progress for u in updates)
    await ingest.wait_idle()
    ready = ingest.get_video(STRANGER, "alice", video.video_id)  # published: anyone may see it
    assert ready.publication is PublicationState.PUBLISHED and ready.published_at is not None
    assert ready.ranking is RankingRegistration.REGISTERED and ranking.registered == [video.video_id]
    assert ready.media is not None
    assert [(r.width, r.height) for r in ready.media.renditions] == [(480, 854), (360, 640)]
    blobs = ingest._blobs
    assert blobs.get(ready.media.prefix + ready.media.master_playlist_path).startswith(b"#EXTM3U")
    assert list(blobs.list("uploads/")) == []  # parts are cleaned up once the source is assembled
    assert audit.events == [("ingest.UploadVideo", "succeeded", "", "PUBLISHED"),
                            ("ingest.PublishVideo", "succeeded", "", "")]


async def test_an_upload_cut_mid_stream_resumes_from_the_committed_offset(
    make_ingest, clips: dict[str, Path]
) -> None:
    ingest = await make_ingest()
    data = clips["portrait"].read_bytes()
    session = begin(ingest, data)
    first_connection = ingest.writer(session)
    cut = len(data) * 3 // 5
    for offset in range(0, cut, 10_000):
        first_connection.write(offset, data[offset:min(offset + 10_000, cut)])
    # The connection drops here: what was buffered but not committed is lost.
    committed = ingest.get_upload(CREATOR, "alice", session.upload_id).committed_bytes
    assert 0 < committed < cut  # committed in parts of at least 64 KiB; the tail was lost
    assert begin(ingest, data) != session  # a new id is a new upload...
    again = ingest.begin_upload(CREATOR, "alice", session.upload_id, session.metadata, len(data), session.sha256_hex)
    assert again.committed_bytes == committed  # ...the same id and declaration resumes this one
    second_connection = ingest.writer(again)
    resend_from = committed - 5_000  # the client's last acknowledgement was older
    second_connection.write(resend_from, data[resend_from:])
    second_connection.flush()
    video = await ingest.complete_upload(session.upload_id)
    assert (await finished(ingest, video.video_id))[-1].state is VideoState.READY
    assert ingest._blobs.get(source_key(video.video_id)) == data
    assert await ingest.complete_upload(session.upload_id) == ingest.get_video(CREATOR, "alice", video.video_id)


async def test_a_checksum_mismatch_fails_the_upload_and_discards_the_bytes(
    make_ingest, clips: dict[str, Path]
) -> None:
    ingest = await make_ingest()
    with pytest.raises(InvalidArgument) as raised:
        await upload(ingest, clips["portrait"], sha256="00" * 32)
    assert raised.value.reason == "CHECKSUM_MISMATCH"
    assert ingest.list_videos(CREATOR, "alice", 10, "").videos == []
    assert list(ingest._blobs.list("videos/")) == [] and list(ingest._blobs.list("uploads/")) == []


@pytest.mark.parametrize("clip,reason", [("too_short", "MEDIA_TOO_SHORT"), ("text_renamed", "MEDIA_UNREADABLE")])
async def test_unusable_media_is_rejected_with_the_probe_reason(
    make_ingest, clips: dict[str, Path], clip: str, reason: str
) -> None:
    audit = RecordingAudit()
    ingest = await make_ingest(audit=audit)
    data = clips[clip].read_bytes()
    session = begin(ingest, data)
    writer = ingest.writer(session)
    writer.write(0, data)
    writer.flush()
    with pytest.raises(InvalidArgument) as raised:
        await ingest.complete_upload(session.upload_id)
    assert raised.value.reason == reason
    failed = ingest.get_upload(CREATOR, "alice", session.upload_id)
    assert (failed.state.value, failed.failure_reason) == ("FAILED", reason)
    assert audit.events == [("ingest.UploadVideo", "rejected", reason, "")]


async def test_non_compliant_content_is_held_and_never_registered(make_ingest, clips: dict[str, Path]) -> None:
    ranking = FlakyRanking()
    held = ComplianceReview(DisclosureVerdict.NON_COMPLIANT, required_disclosure_label="Werbung",
                            ai_label=AiLabel.NONE)
    ingest = await make_ingest(compliance=FixedCompliance(held), ranking=ranking)
    video = await upload(ingest, clips["no_audio"])
    last = (await finished(ingest, video.video_id))[-1]
    assert last.state is VideoState.READY and last.publication is PublicationState.HELD
    await ingest.wait_idle()
    assert ranking.registered == [] and last.ranking is RankingRegistration.NOT_APPLICABLE
    with pytest.raises(NotFound):
        ingest.get_video(STRANGER, "alice", video.video_id)


async def test_pending_review_is_asked_again_and_publishes_once_compliance_answers(
    make_ingest, clips: dict[str, Path]
) -> None:
    ranking, audit = FlakyRanking(), RecordingAudit()
    ingest = await make_ingest(compliance=FixedCompliance(ComplianceReview(), ComplianceReview(), CLEARED),
                               ranking=ranking, audit=audit)
    video = await upload(ingest, clips["no_audio"])
    await finished(ingest, video.video_id)
    await ingest.wait_idle()  # the job's own sweep asked once more: still pending
    pending = ingest.get_video(CREATOR, "alice", video.video_id)
    assert pending.publication is PublicationState.PENDING_REVIEW and pending.published_at is None
    with pytest.raises(NotFound):
        ingest.get_video(STRANGER, "alice", video.video_id)
    await ingest.run_due_follow_ups()
    assert ingest.get_video(STRANGER, "alice", video.video_id).publication is PublicationState.PUBLISHED
    assert ranking.registered == [video.video_id]
    assert [event[0] for event in audit.events] == ["ingest.UploadVideo", "ingest.PublishVideo"]


async def test_registration_stays_pending_while_ranking_cannot_take_it(make_ingest, clips: dict[str, Path]) -> None:
    ranking = FlakyRanking(refusals=2)
    ingest = await make_ingest(ranking=ranking)
    video = await upload(ingest, clips["no_audio"])
    await finished(ingest, video.video_id)
    await ingest.wait_idle()
    assert ingest.get_video(CREATOR, "alice", video.video_id).ranking is RankingRegistration.PENDING
    await ingest.run_due_follow_ups()
    assert ranking.registered == []
    await ingest.run_due_follow_ups()
    assert ranking.registered == [video.video_id]
    assert ingest.get_video(STRANGER, "alice", video.video_id).ranking is RankingRegistration.REGISTERED


async def test_a_service_restart_mid_job_queues_the_job_again_and_finishes(
    make_ingest, clips: dict[str, Path]
) -> None:
    first = await make_ingest()
    video = await upload(first, clips["portrait"])
    while first._store.unfinished_jobs()[0].state is not JobState.RUNNING:
        await asyncio.sleep(0.01)
    await first.stop()  # the service goes away with the job RUNNING
    assert first.get_video(CREATOR, "alice", video.video_id).state is VideoState.PROCESSING
    second = await make_ingest()
    assert (await finished(second, video.video_id))[-1].state is VideoState.READY
    [job_row] = second._store._db._connection.execute("SELECT submissions FROM transcode_jobs").fetchall()
    assert job_row[0] == 2


async def test_a_job_that_can_never_succeed_ends_failed_with_a_reason(make_ingest, clips: dict[str, Path]) -> None:
    broken = IngestConfig(transcode=TranscodeSettings(x264_preset="no-such-preset"))
    ingest = await make_ingest(config=broken)
    video = await upload(ingest, clips["no_audio"])
    last = (await finished(ingest, video.video_id))[-1]
    assert last.state is VideoState.FAILED and last.failure_reason == "TRANSCODE_FAILED"
    assert last.ranking is RankingRegistration.NOT_APPLICABLE


async def test_listing_pages_through_a_creators_own_videos_only(make_ingest, clips: dict[str, Path]) -> None:
    ingest = await make_ingest(config=replace(IngestConfig(), max_jobs_in_flight=1))
    for _ in range(3):
        await upload(ingest, clips["no_audio"])
    first = ingest.list_videos(CREATOR, "alice", 2, "")
    second = ingest.list_videos(CREATOR, "alice", 2, first.next_page_token)
    assert len(first.videos) == 2 and len(second.videos) == 1 and second.next_page_token == ""
    assert {v.video_id for v in first.videos}.isdisjoint(v.video_id for v in second.videos)
    with pytest.raises(InvalidArgument):
        ingest.list_videos(CREATOR, "alice", 2, "not-a-token")
    with pytest.raises(PermissionDenied):
        ingest.list_videos(STRANGER, "alice", 2, "")
    with pytest.raises(PermissionDenied):
        ingest.begin_upload(STRANGER, "alice", str(uuid.uuid4()), VideoMetadata(), 10, "ab" * 32)
    await ingest.wait_idle()


class UnreachableOnce:
    """Ray's side failing once for infrastructure reasons (e.g. the cluster restarting)."""

    def __init__(self) -> None:
        self.inner = RayTranscoder()
        self.calls = 0

    async def transcode(self, request, on_progress):  # noqa: ANN001, ANN201
        self.calls += 1
        if self.calls == 1:
            raise ConnectionError("Ray cluster unreachable")
        return await self.inner.transcode(request, on_progress)


async def test_a_job_that_could_not_reach_ray_is_submitted_again(make_ingest, clips: dict[str, Path]) -> None:
    flaky = UnreachableOnce()
    ingest = await make_ingest(transcoder=flaky)
    video = await upload(ingest, clips["no_audio"])
    assert (await finished(ingest, video.video_id))[-1].state is VideoState.READY
    assert flaky.calls == 2


async def test_a_pending_video_that_compliance_then_refuses_is_held_on_the_audit_trail(
    make_ingest, clips: dict[str, Path]
) -> None:
    refused = ComplianceReview(DisclosureVerdict.NEEDS_REVIEW, ai_label=AiLabel.NONE)
    audit = RecordingAudit()
    ingest = await make_ingest(compliance=FixedCompliance(ComplianceReview(), ComplianceReview(), refused),
                               audit=audit)
    video = await upload(ingest, clips["no_audio"])
    await finished(ingest, video.video_id)
    await ingest.wait_idle()
    await ingest.run_due_follow_ups()
    held = ingest.get_video(CREATOR, "alice", video.video_id)
    assert held.publication is PublicationState.HELD and held.ranking is RankingRegistration.NOT_APPLICABLE
    assert audit.events[-1] == ("ingest.HoldVideo", "succeeded", "NEEDS_REVIEW", "")
