from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import pytest

from libs.auth.principal import Principal, Role
from libs.blobstore import LocalBlobStore
from libs.clock import utc_now
from libs.errors import InvalidArgument, NotFound, PermissionDenied, Unavailable
from libs.privacy.fields import EphemeralDataKeys, PersonalData
from services.ingest.config import IngestConfig
from services.ingest.model import (
    AiLabel,
    C2paEvidence,
    ComplianceReview,
    DisclosureVerdict,
    JobState,
    PublicationState,
    RankingRegistration,
    TranscodeRequest,
    TranscodeResult,
    Video,
    VideoMetadata,
    VideoState,
    source_key,
)
from services.ingest.probe import ProbeLimits
from services.ingest.sample_clips import header_first
from services.ingest.server import assemble
from services.ingest.store import IngestStore
from services.ingest.transcode import TranscodeSettings
from services.ingest.uploads import UploadLimits, UploadSession
from services.ingest.usecases import Ingest
from services.ingest.usecases.ports import ProgressListener, Transcoder
from services.ingest.usecases.uploading import BeginUpload
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


class RecordingAdRepository:
    """The ad repository's side of registration (an outside port): remembers what it was given."""

    def __init__(self) -> None:
        self.registered: list[str] = []

    async def register(self, video: Video) -> str:
        self.registered.append(video.video_id)
        return f"ads/{video.video_id}"


def no_provenance(media: BinaryIO, mime_type: str) -> C2paEvidence:
    return C2paEvidence()


class NoTrace:
    def carrier(self) -> dict[str, str]:
        return {}

    def continued(self, carrier: Mapping[str, str]) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()

    def trace_id(self) -> str:
        return ""


class NamedPseudonyms:
    def subject_ref(self, subject: str) -> str:
        return f"ref:{subject}"


@dataclass
class Running:
    """One assembled ingest over a real store, blob store and Ray, as the tests see it."""

    ingest: Ingest
    store: IngestStore
    blobs: LocalBlobStore
    ads: RecordingAdRepository

    def audit_events(self) -> list[tuple[str, str, str, str]]:
        """(action, outcome, reason, publication) of every event in the audit outbox, in order."""
        return [(t.event.action, t.event.outcome.value, t.event.reason, t.event.attributes.get("publication", ""))
                for t in self.store.audit_outbox.pending(100)]


MakeIngest = Callable[..., Awaitable[Running]]


@pytest.fixture
async def make_ingest(tmp_path: Path) -> AsyncIterator[MakeIngest]:
    running: list[Running] = []
    keys = EphemeralDataKeys()  # one key holder across restarts, as compliance would be

    async def make(*, compliance: FixedCompliance | None = None, ranking: FlakyRanking | None = None,
                   config: IngestConfig | None = None, transcoder: Transcoder | None = None) -> Running:
        store, blobs, ads = (IngestStore.open(tmp_path, personal=PersonalData(keys)), LocalBlobStore(tmp_path / "blobs"),
                             RecordingAdRepository())
        ingest = assemble(
            store=store, blobs=blobs, transcoder=transcoder or RayTranscoder(),
            compliance=compliance or FixedCompliance(), ranking=ranking or FlakyRanking(), ads=ads,
            read_provenance=no_provenance, tracing=NoTrace(), pseudonyms=NamedPseudonyms(), clock=utc_now,
            config=config or IngestConfig(upload_limits=UploadLimits(part_bytes=64 * 1024),
                                          follow_up_backoff=dt.timedelta(0)),
            telemetry_root=tmp_path,
        )
        await ingest.start()
        running.append(Running(ingest, store, blobs, ads))
        return running[-1]

    yield make
    for each in running:
        await each.ingest.stop()
        each.store.close()


async def begin(app: Running, data: bytes, sha256: str | None = None) -> UploadSession:
    return await app.ingest.uploads.begin(CREATOR, BeginUpload(
        "alice", str(uuid.uuid4()), VideoMetadata(caption="first"), len(data),
        sha256 or hashlib.sha256(data).hexdigest()))


async def upload(app: Running, clip: Path, *, sha256: str | None = None, chunk: int = 50_000) -> Video:
    data = clip.read_bytes()
    session = await begin(app, data, sha256)
    writer = app.ingest.uploads.writer(CREATOR, session)
    for offset in range(0, len(data), chunk):
        await writer.write(offset, data[offset:offset + chunk])
    await writer.flush()
    return await app.ingest.complete_upload(CREATOR, session.upload_id)


async def finished(app: Running, video_id: str) -> list[Video]:
    return [update async for update in app.ingest.videos.watch(CREATOR, "alice", video_id)]


async def test_an_upload_becomes_a_ready_published_video_with_a_ladder_and_is_registered(
    make_ingest: MakeIngest, clips: dict[str, Path]
) -> None:
    ranking = FlakyRanking()
    app = await make_ingest(ranking=ranking)
    video = await upload(app, clips["portrait"])
    assert video.state is VideoState.PROCESSING and video.probe.display_size == (480, 854)
    updates = await finished(app, video.video_id)
    assert updates[-1].state is VideoState.READY and updates[-1].progress == 1.0
    assert [u.progress for u in updates] == sorted(u.progress for u in updates)
    await app.ingest.jobs.wait_idle()
    ready = await app.ingest.videos.get(STRANGER, "alice", video.video_id)  # published: anyone may see it
    assert ready.publication is PublicationState.PUBLISHED and ready.published_at is not None
    assert ready.ranking is RankingRegistration.REGISTERED and ranking.registered == [video.video_id]
    assert ready.media is not None
    assert [(r.width, r.height) for r in ready.media.renditions] == [(480, 854), (360, 640)]
    blobs = app.blobs
    assert blobs.get(ready.media.prefix + ready.media.master_playlist_path).startswith(b"#EXTM3U")
    assert list(blobs.list("upload-parts/")) == []  # parts are cleaned up once the source is assembled
    assert app.audit_events() == [("ingest.UploadVideo", "succeeded", "", "PUBLISHED"),
                                  ("ingest.ReviewVideo", "succeeded", "COMPLIANT", "PUBLISHED"),
                                  ("ingest.PublishVideo", "succeeded", "", "")]


async def test_an_upload_cut_mid_stream_resumes_from_the_committed_offset(
    make_ingest: MakeIngest, clips: dict[str, Path]
) -> None:
    app = await make_ingest()
    data = clips["portrait"].read_bytes()
    session = await begin(app, data)
    first_connection = app.ingest.uploads.writer(CREATOR, session)
    cut = len(data) * 3 // 5
    for offset in range(0, cut, 10_000):
        await first_connection.write(offset, data[offset:min(offset + 10_000, cut)])
    # The connection drops here: what was buffered but not committed is lost.
    committed = (await app.ingest.uploads.get(CREATOR, "alice", session.upload_id)).committed_bytes
    assert 0 < committed < cut  # committed in parts of at least 64 KiB; the tail was lost
    assert await begin(app, data) != session  # a new id is a new upload...
    again = await app.ingest.uploads.begin(CREATOR, BeginUpload(
        "alice", session.upload_id, session.metadata, len(data), session.sha256_hex))
    assert again.committed_bytes == committed  # ...the same id and declaration resumes this one
    second_connection = app.ingest.uploads.writer(CREATOR, again)
    resend_from = committed - 5_000  # the client's last acknowledgement was older
    await second_connection.write(resend_from, data[resend_from:])
    await second_connection.flush()
    video = await app.ingest.complete_upload(CREATOR, session.upload_id)
    assert (await finished(app, video.video_id))[-1].state is VideoState.READY
    assert app.blobs.get(source_key(video.video_id)) == data
    assert await app.ingest.complete_upload(CREATOR, session.upload_id) == await app.ingest.videos.get(CREATOR, "alice", video.video_id)


async def test_a_checksum_mismatch_fails_the_upload_and_discards_the_bytes(
    make_ingest: MakeIngest, clips: dict[str, Path]
) -> None:
    app = await make_ingest()
    with pytest.raises(InvalidArgument) as raised:
        await upload(app, clips["portrait"], sha256="00" * 32)
    assert raised.value.reason == "CHECKSUM_MISMATCH"
    assert (await app.ingest.videos.list(CREATOR, "alice", 10, "")).videos == []
    assert list(app.blobs.list("sources/")) == [] and list(app.blobs.list("upload-parts/")) == []


@pytest.mark.parametrize("clip,reason", [("too_short", "MEDIA_TOO_SHORT"), ("text_renamed", "MEDIA_UNREADABLE")])
async def test_unusable_media_is_rejected_with_the_probe_reason(
    make_ingest: MakeIngest, clips: dict[str, Path], clip: str, reason: str
) -> None:
    app = await make_ingest()
    data = clips[clip].read_bytes()
    session = await begin(app, data)
    writer = app.ingest.uploads.writer(CREATOR, session)
    await writer.write(0, data)
    await writer.flush()
    with pytest.raises(InvalidArgument) as raised:
        await app.ingest.complete_upload(CREATOR, session.upload_id)
    assert raised.value.reason == reason
    failed = await app.ingest.uploads.get(CREATOR, "alice", session.upload_id)
    assert (failed.state.value, failed.failure_reason) == ("FAILED", reason)
    assert app.audit_events() == [("ingest.UploadVideo", "rejected", reason, "")]
    assert leftovers(app, session.upload_id) == []


def leftovers(app: Running, upload_id: str) -> list[str]:
    """Files and folders in the blob store named after an upload (its video has the same id)."""
    return [str(path) for path in app.blobs.root.rglob("*") if upload_id in path.name]


async def test_a_clip_whose_header_declares_it_too_long_is_refused_before_the_rest_arrives(
    make_ingest: MakeIngest, clips: dict[str, Path], tmp_path: Path
) -> None:
    app = await make_ingest(config=IngestConfig(upload_limits=UploadLimits(part_bytes=64 * 1024),
                                                probe_limits=ProbeLimits(max_duration_s=2.0)))
    data = header_first(clips["portrait"], tmp_path / "header-first.mp4").read_bytes()
    session = await begin(app, data)
    writer = app.ingest.uploads.writer(CREATOR, session)
    sent = 0
    with pytest.raises(InvalidArgument) as raised:
        for offset in range(0, len(data), 16 * 1024):
            await writer.write(offset, data[offset:offset + 16 * 1024])
            sent = offset + 16 * 1024
    assert raised.value.reason == "MEDIA_TOO_LONG" and "maximum of 2 seconds" in raised.value.violations[0].description
    assert sent < len(data) // 2  # refused on the header, long before the file was in
    refused = await app.ingest.uploads.get(CREATOR, "alice", session.upload_id)
    assert (refused.state.value, refused.failure_reason) == ("FAILED", "MEDIA_TOO_LONG")
    assert app.audit_events() == [("ingest.UploadVideo", "rejected", "MEDIA_TOO_LONG", "")]
    assert leftovers(app, session.upload_id) == []  # no bytes and no empty folders left behind
    with pytest.raises(InvalidArgument):  # a refused upload stays refused
        await app.ingest.complete_upload(CREATOR, session.upload_id)


async def test_published_commercial_content_gets_its_labels_and_an_ad_repository_entry(
    make_ingest: MakeIngest, clips: dict[str, Path]
) -> None:
    found = ComplianceReview(DisclosureVerdict.LABEL_REQUIRED, "Werbung", AiLabel.NONE, is_advertising=True,
                             required_placement="BEFORE_CONTENT", rules_version="2026.1")
    ranking = FlakyRanking()
    app = await make_ingest(compliance=FixedCompliance(found), ranking=ranking)
    video = await upload(app, clips["no_audio"])
    await finished(app, video.video_id)
    await app.ingest.jobs.wait_idle()
    published = await app.ingest.videos.get(STRANGER, "alice", video.video_id)
    assert published.publication is PublicationState.PUBLISHED and published.review.shown_labels == ("Werbung",)
    assert "'Werbung' shown before the content" in published.publication_note
    assert app.ads.registered == [video.video_id] and published.ad_name == f"ads/{video.video_id}"
    assert ranking.registered == [video.video_id]
    [review] = [t.event for t in app.store.audit_outbox.pending(100) if t.event.action == "ingest.ReviewVideo"]
    assert (review.reason, review.attributes["rules_version"], review.attributes["is_advertising"]) == (
        "LABEL_REQUIRED", "2026.1", "true")
    await app.ingest.follow_ups.run_due()
    assert app.ads.registered == [video.video_id]  # registered once


async def test_a_held_video_is_not_entered_in_the_ad_repository_and_says_what_to_change(
    make_ingest: MakeIngest, clips: dict[str, Path]
) -> None:
    app = await make_ingest(compliance=FixedCompliance(ComplianceReview(
        DisclosureVerdict.NON_COMPLIANT, ai_label=AiLabel.NONE, is_advertising=True)))
    video = await upload(app, clips["no_audio"])
    await finished(app, video.video_id)
    await app.ingest.jobs.wait_idle()
    held = await app.ingest.videos.get(CREATOR, "alice", video.video_id)
    assert held.publication is PublicationState.HELD and app.ads.registered == []
    assert "a new upload whose caption fixes what the findings say" in held.publication_note
    assert [event[0] for event in app.audit_events()] == ["ingest.UploadVideo", "ingest.ReviewVideo",
                                                          "ingest.HoldVideo"]


async def test_non_compliant_content_is_held_and_never_registered(make_ingest: MakeIngest, clips: dict[str, Path]) -> None:
    ranking = FlakyRanking()
    held = ComplianceReview(DisclosureVerdict.NON_COMPLIANT, required_disclosure_label="Werbung",
                            ai_label=AiLabel.NONE)
    app = await make_ingest(compliance=FixedCompliance(held), ranking=ranking)
    video = await upload(app, clips["no_audio"])
    last = (await finished(app, video.video_id))[-1]
    assert last.state is VideoState.READY and last.publication is PublicationState.HELD
    await app.ingest.jobs.wait_idle()
    assert ranking.registered == [] and last.ranking is RankingRegistration.NOT_APPLICABLE
    with pytest.raises(NotFound):
        await app.ingest.videos.get(STRANGER, "alice", video.video_id)


async def test_pending_review_is_asked_again_and_publishes_once_compliance_answers(
    make_ingest: MakeIngest, clips: dict[str, Path]
) -> None:
    ranking = FlakyRanking()
    app = await make_ingest(compliance=FixedCompliance(ComplianceReview(), ComplianceReview(), CLEARED),
                            ranking=ranking)
    video = await upload(app, clips["no_audio"])
    await finished(app, video.video_id)
    await app.ingest.jobs.wait_idle()  # the job's own sweep asked once more: still pending
    pending = await app.ingest.videos.get(CREATOR, "alice", video.video_id)
    assert pending.publication is PublicationState.PENDING_REVIEW and pending.published_at is None
    with pytest.raises(NotFound):
        await app.ingest.videos.get(STRANGER, "alice", video.video_id)
    await app.ingest.follow_ups.run_due()
    assert (await app.ingest.videos.get(STRANGER, "alice", video.video_id)).publication is PublicationState.PUBLISHED
    assert ranking.registered == [video.video_id]
    assert [event[0] for event in app.audit_events()] == ["ingest.UploadVideo", "ingest.ReviewVideo",
                                                          "ingest.PublishVideo"]


async def test_registration_stays_pending_while_ranking_cannot_take_it(make_ingest: MakeIngest, clips: dict[str, Path]) -> None:
    ranking = FlakyRanking(refusals=2)
    app = await make_ingest(ranking=ranking)
    video = await upload(app, clips["no_audio"])
    await finished(app, video.video_id)
    await app.ingest.jobs.wait_idle()
    assert (await app.ingest.videos.get(CREATOR, "alice", video.video_id)).ranking is RankingRegistration.PENDING
    await app.ingest.follow_ups.run_due()
    assert ranking.registered == []
    await app.ingest.follow_ups.run_due()
    assert ranking.registered == [video.video_id]
    assert (await app.ingest.videos.get(STRANGER, "alice", video.video_id)).ranking is RankingRegistration.REGISTERED


async def test_a_service_restart_mid_job_queues_the_job_again_and_finishes(
    make_ingest: MakeIngest, clips: dict[str, Path]
) -> None:
    first = await make_ingest()
    video = await upload(first, clips["portrait"])
    while first.store.unfinished_jobs()[0].state is not JobState.RUNNING:
        await asyncio.sleep(0.01)
    await first.ingest.stop()  # the service goes away with the job RUNNING
    assert (await first.ingest.videos.get(CREATOR, "alice", video.video_id)).state is VideoState.PROCESSING
    second = await make_ingest()
    assert (await finished(second, video.video_id))[-1].state is VideoState.READY
    with second.store._reader.reading() as connection:
        [job_row] = connection.execute("SELECT submissions FROM transcode_jobs").fetchall()
    assert job_row[0] == 2


async def test_a_job_that_can_never_succeed_ends_failed_with_a_reason(make_ingest: MakeIngest, clips: dict[str, Path]) -> None:
    broken = IngestConfig(transcode=TranscodeSettings(x264_preset="no-such-preset"))
    app = await make_ingest(config=broken)
    video = await upload(app, clips["no_audio"])
    last = (await finished(app, video.video_id))[-1]
    assert last.state is VideoState.FAILED and last.failure_reason == "TRANSCODE_FAILED"
    assert last.ranking is RankingRegistration.NOT_APPLICABLE


async def test_listing_pages_through_a_creators_own_videos_only(make_ingest: MakeIngest, clips: dict[str, Path]) -> None:
    app = await make_ingest(config=replace(IngestConfig(), max_jobs_in_flight=1))
    for _ in range(3):
        await upload(app, clips["no_audio"])
    first = await app.ingest.videos.list(CREATOR, "alice", 2, "")
    second = await app.ingest.videos.list(CREATOR, "alice", 2, first.next_page_token)
    assert len(first.videos) == 2 and len(second.videos) == 1 and second.next_page_token == ""
    assert {v.video_id for v in first.videos}.isdisjoint(v.video_id for v in second.videos)
    with pytest.raises(InvalidArgument):
        await app.ingest.videos.list(CREATOR, "alice", 2, "not-a-token")
    with pytest.raises(PermissionDenied):
        await app.ingest.videos.list(STRANGER, "alice", 2, "")
    with pytest.raises(PermissionDenied):
        await app.ingest.uploads.begin(STRANGER, BeginUpload("alice", str(uuid.uuid4()), VideoMetadata(), 10, "ab" * 32))
    await app.ingest.jobs.wait_idle()


class UnreachableOnce:
    """Ray's side failing once for infrastructure reasons (e.g. the cluster restarting)."""

    def __init__(self) -> None:
        self.inner = RayTranscoder()
        self.calls = 0

    async def transcode(self, request: TranscodeRequest, on_progress: ProgressListener) -> TranscodeResult:
        self.calls += 1
        if self.calls == 1:
            raise ConnectionError("Ray cluster unreachable")
        return await self.inner.transcode(request, on_progress)


async def test_a_job_that_could_not_reach_ray_is_submitted_again(make_ingest: MakeIngest, clips: dict[str, Path]) -> None:
    flaky = UnreachableOnce()
    app = await make_ingest(transcoder=flaky)
    video = await upload(app, clips["no_audio"])
    assert (await finished(app, video.video_id))[-1].state is VideoState.READY
    assert flaky.calls == 2


async def test_a_pending_video_that_compliance_then_refuses_is_held_on_the_audit_trail(
    make_ingest: MakeIngest, clips: dict[str, Path]
) -> None:
    refused = ComplianceReview(DisclosureVerdict.NEEDS_REVIEW, ai_label=AiLabel.NONE)
    app = await make_ingest(compliance=FixedCompliance(ComplianceReview(), ComplianceReview(), refused))
    video = await upload(app, clips["no_audio"])
    await finished(app, video.video_id)
    await app.ingest.jobs.wait_idle()
    await app.ingest.follow_ups.run_due()
    held = await app.ingest.videos.get(CREATOR, "alice", video.video_id)
    assert held.publication is PublicationState.HELD and held.ranking is RankingRegistration.NOT_APPLICABLE
    assert app.audit_events()[-1] == ("ingest.HoldVideo", "succeeded", "NEEDS_REVIEW", "")
