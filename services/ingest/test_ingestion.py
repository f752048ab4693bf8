from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import pytest

from libs.auth.principal import Principal, Role
from libs.blobstore import LocalBlobStore
from libs.errors import InvalidArgument, NotFound, PermissionDenied, Unavailable
from services.ingest.ingestion import Ingest, IngestConfig
from services.ingest.store import IngestStore
from services.ingest.transcode import TranscodeSettings
from services.ingest.uploads import UploadLimits
from services.ingest.videos import (
    ComplianceOutcome,
    ComplianceVerdict,
    JobState,
    ProvenanceClaim,
    RegistrationState,
    Video,
    VideoMetadata,
    VideoState,
    source_key,
)
from services.ingest.workers import RayTranscoder

pytestmark = pytest.mark.usefixtures("ray_session")

CREATOR = Principal("users/alice", frozenset({Role.CREATOR}), dt.datetime(2099, 1, 1, tzinfo=dt.UTC))
STRANGER = Principal("users/bob", frozenset({Role.VIEWER}), dt.datetime(2099, 1, 1, tzinfo=dt.UTC))


class FixedCompliance:
    """Stands in for the compliance service's answer (an outside port, not our code under test)."""

    def __init__(self, verdict: ComplianceVerdict = ComplianceVerdict.PENDING_REVIEW) -> None:
        self.verdict = verdict

    async def review(self, creator_id: str, metadata: VideoMetadata, provenance: ProvenanceClaim) -> ComplianceOutcome:
        return ComplianceOutcome(self.verdict, labels=("Werbung",) if metadata.commercial.is_commercial else ())


class FlakyRanking:
    """Ranking that is not ready for the first `refusals` calls, like an UNIMPLEMENTED RPC."""

    def __init__(self, refusals: int = 0) -> None:
        self.refusals = refusals
        self.registered: list[str] = []

    async def register(self, video: Video, trace_carrier: dict[str, str]) -> None:
        if self.refusals:
            self.refusals -= 1
            raise Unavailable("ranking does not implement RegisterVideo yet", reason="UNIMPLEMENTED")
        self.registered.append(video.video_id)


def no_provenance(media: BinaryIO, mime_type: str) -> ProvenanceClaim:
    return ProvenanceClaim()


@pytest.fixture
async def make_ingest(tmp_path: Path) -> AsyncIterator:
    running: list[Ingest] = []

    async def make(*, compliance: FixedCompliance | None = None, ranking: FlakyRanking | None = None,
                   config: IngestConfig | None = None, start: bool = True) -> Ingest:
        ingest = Ingest(
            store=IngestStore.open(tmp_path), blobs=LocalBlobStore(tmp_path / "blobs"),
            transcoder=RayTranscoder(), compliance=compliance or FixedCompliance(),
            ranking=ranking or FlakyRanking(), read_provenance=no_provenance,
            trace_carrier=dict, telemetry_root=str(tmp_path), clock=lambda: dt.datetime.now(dt.UTC),
            config=config or IngestConfig(upload_limits=UploadLimits(part_bytes=64 * 1024),
                                          registration_backoff=dt.timedelta(0)),
        )
        if start:
            await ingest.start()
        running.append(ingest)
        return ingest

    yield make
    for ingest in running:
        await ingest.stop()


async def upload(ingest: Ingest, clip: Path, *, sha256: str | None = None, chunk: int = 50_000) -> Video:
    data = clip.read_bytes()
    session = ingest.begin_upload(CREATOR, VideoMetadata(caption="first"), len(data),
                                  sha256 or hashlib.sha256(data).hexdigest())
    writer = ingest.writer(session)
    for offset in range(0, len(data), chunk):
        writer.write(offset, data[offset:offset + chunk])
    writer.flush()
    return await ingest.complete_upload(session.upload_id)


async def finished(ingest: Ingest, video_id: str) -> list[Video]:
    return [update async for update in ingest.watch_video(CREATOR, video_id)]


async def test_an_upload_becomes_a_ready_video_with_a_ladder_and_is_registered(
    make_ingest, clips: dict[str, Path]
) -> None:
    ranking = FlakyRanking()
    ingest = await make_ingest(ranking=ranking)
    video = await upload(ingest, clips["portrait"])
    assert video.state is VideoState.PROCESSING and video.probe.display_size == (480, 854)
    updates = await finished(ingest, video.video_id)
    assert updates[-1].state is VideoState.READY and updates[-1].progress == 1.0
    assert [u.progress for u in updates] == sorted(u.progress for u in updates)
    await ingest.wait_idle()
    ready = ingest.get_video(CREATOR, video.video_id)
    assert ready.ranking is RegistrationState.REGISTERED and ranking.registered == [video.video_id]
    assert ready.compliance.verdict is ComplianceVerdict.PENDING_REVIEW
    assert [r.name for r in ready.media.renditions] == ["480x854", "360x640"]
    blobs = LocalBlobStore(Path(ingest._blobs.url.removeprefix("file://")))
    assert blobs.get(ready.media.master_playlist_key).startswith(b"#EXTM3U")
    assert list(blobs.list("uploads/")) == []  # parts are cleaned up once the source is assembled


async def test_an_upload_cut_mid_stream_resumes_from_the_committed_offset(
    make_ingest, clips: dict[str, Path]
) -> None:
    ingest = await make_ingest()
    data = clips["portrait"].read_bytes()
    session = ingest.begin_upload(CREATOR, VideoMetadata(), len(data), hashlib.sha256(data).hexdigest())
    first_connection = ingest.writer(session)
    cut = len(data) * 3 // 5
    for offset in range(0, cut, 10_000):
        first_connection.write(offset, data[offset:min(offset + 10_000, cut)])
    # The connection drops here: what was buffered but not committed is lost.
    committed = ingest.resume_upload(CREATOR, session.upload_id).committed_bytes
    assert 0 < committed < cut  # committed in parts of at least 64 KiB; the tail was lost
    second_connection = ingest.writer(ingest.resume_upload(CREATOR, session.upload_id))
    resend_from = committed - 5_000  # the client's last acknowledgement was older
    second_connection.write(resend_from, data[resend_from:])
    second_connection.flush()
    video = await ingest.complete_upload(session.upload_id)
    assert (await finished(ingest, video.video_id))[-1].state is VideoState.READY
    stored = LocalBlobStore(Path(ingest._blobs.url.removeprefix("file://"))).get(source_key(video.video_id))
    assert stored == data


async def test_a_checksum_mismatch_fails_the_video_and_discards_the_bytes(make_ingest, clips: dict[str, Path]) -> None:
    ingest = await make_ingest()
    with pytest.raises(InvalidArgument) as raised:
        await upload(ingest, clips["portrait"], sha256="00" * 32)
    assert raised.value.reason == "CHECKSUM_MISMATCH"
    [video] = ingest.list_videos(CREATOR, "alice", 10, "").videos
    assert (video.state, video.failure_reason) == (VideoState.FAILED, "CHECKSUM_MISMATCH")
    assert not ingest._blobs.exists(source_key(video.video_id))


@pytest.mark.parametrize("clip,reason", [("too_short", "MEDIA_TOO_SHORT"), ("text_renamed", "MEDIA_UNREADABLE")])
async def test_unusable_media_is_rejected_with_the_probe_reason(
    make_ingest, clips: dict[str, Path], clip: str, reason: str
) -> None:
    ingest = await make_ingest()
    with pytest.raises(InvalidArgument) as raised:
        await upload(ingest, clips[clip])
    assert raised.value.reason == reason
    [video] = ingest.list_videos(CREATOR, "alice", 10, "").videos
    assert video.state is VideoState.FAILED and video.failure_reason == reason and video.failure_message


async def test_non_compliant_content_is_held_and_never_registered(make_ingest, clips: dict[str, Path]) -> None:
    ranking = FlakyRanking()
    ingest = await make_ingest(compliance=FixedCompliance(ComplianceVerdict.NON_COMPLIANT), ranking=ranking)
    video = await upload(ingest, clips["no_audio"])
    assert (await finished(ingest, video.video_id))[-1].state is VideoState.HELD
    await ingest.wait_idle()
    assert ranking.registered == []
    with pytest.raises(NotFound):
        ingest.get_video(STRANGER, video.video_id)


async def test_registration_stays_pending_while_ranking_cannot_take_it(make_ingest, clips: dict[str, Path]) -> None:
    ranking = FlakyRanking(refusals=2)
    ingest = await make_ingest(ranking=ranking)
    video = await upload(ingest, clips["no_audio"])
    await finished(ingest, video.video_id)
    await ingest.wait_idle()
    assert ingest.get_video(CREATOR, video.video_id).ranking is RegistrationState.PENDING
    await ingest.register_due_videos()
    assert ranking.registered == []
    await ingest.register_due_videos()
    assert ranking.registered == [video.video_id]
    assert ingest.get_video(STRANGER, video.video_id).ranking is RegistrationState.REGISTERED


async def test_a_service_restart_mid_job_queues_the_job_again_and_finishes(
    make_ingest, clips: dict[str, Path], tmp_path: Path
) -> None:
    first = await make_ingest()
    video = await upload(first, clips["portrait"])
    while first._store.unfinished_jobs()[0].state is not JobState.RUNNING:
        await asyncio.sleep(0.01)
    await first.stop()  # the service goes away with the job RUNNING
    assert first.get_video(CREATOR, video.video_id).state is VideoState.PROCESSING
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


async def test_listing_pages_through_a_creators_own_videos_only(make_ingest, clips: dict[str, Path]) -> None:
    ingest = await make_ingest(config=replace(IngestConfig(), max_jobs_in_flight=1))
    for _ in range(3):
        ingest.begin_upload(CREATOR, VideoMetadata(), 10, "ab" * 32)
    first = ingest.list_videos(CREATOR, "alice", 2, "")
    second = ingest.list_videos(CREATOR, "alice", 2, first.next_page_token)
    assert len(first.videos) == 2 and len(second.videos) == 1 and second.next_page_token == ""
    assert {v.video_id for v in first.videos}.isdisjoint(v.video_id for v in second.videos)
    with pytest.raises(InvalidArgument):
        ingest.list_videos(CREATOR, "alice", 2, "not-a-token")
    with pytest.raises(PermissionDenied):
        ingest.list_videos(STRANGER, "alice", 2, "")
