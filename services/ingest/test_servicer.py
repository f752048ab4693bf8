"""Ingest's gRPC surface with a real server: who may read what (no Ray: no job is left to run)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from limelight.ingest.v1 import ingest_pb2, ingest_pb2_grpc

from libs.audit.events import AuditEvent, Outcome
from libs.auth.principal import Role
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.kit.server import start_service
from services.ingest import server as ingest_server
from services.ingest.model import (
    ComplianceReview,
    JobState,
    ProcessingStage,
    TranscodeJob,
    Video,
    VideoMetadata,
    VideoState,
)
from services.ingest.probe import MediaProbe
from services.ingest.store import IngestStore
from services.ingest.uploads import UploadSession, UploadState

T0 = dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)
PROBE = MediaProbe("mov,mp4,m4a,3gp,3g2,mj2", "h264", "aac", 4.0, 1080, 1920, 0, 120, 30.0, False)
VIDEO_ID = "draft-1"
VIDEO = f"creators/alice/videos/{VIDEO_ID}"
UPLOAD = f"creators/alice/uploads/{VIDEO_ID}"


async def seed_unpublished_video(data_root: Path) -> None:
    """Alice's video that nobody else may see: its transcode failed, so it never published."""
    store = IngestStore.open(data_root)
    await store.create_upload(UploadSession(VIDEO_ID, "alice", VideoMetadata(caption="draft"), 100, "ab" * 32, 0,
                                            UploadState.RECEIVING, T0, T0 + dt.timedelta(days=1)))
    await store.start_processing(
        Video(VIDEO_ID, "alice", VideoMetadata(caption="draft"), VideoState.PROCESSING, ProcessingStage.QUEUED,
              T0, T0, PROBE, review=ComplianceReview()),
        TranscodeJob("job-1", VIDEO_ID, JobState.QUEUED, f"videos/{VIDEO_ID}/hls/job-1/", {}), T0,
        [AuditEvent(event_id=str(uuid.uuid4()), actor="users/alice", action="ingest.UploadVideo", resource=VIDEO,
                    outcome=Outcome.SUCCEEDED, event_time=T0)], {})
    await store.fail_job("job-1", "TRANSCODE_FAILED", "seeded", T0)
    store.close()


@dataclass
class Server:
    stub: ingest_pb2_grpc.IngestServiceAsyncStub
    data_root: Path

    def as_(self, subject: str, *roles: Role) -> tuple[tuple[str, str], ...]:
        token = mint_token(platform_signing_key(self.data_root), TokenClaims(subject=subject, roles=frozenset(roles)),
                           ttl=dt.timedelta(minutes=5))
        return (("authorization", f"Bearer {token}"),)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    await seed_unpublished_video(tmp_path)
    # Nothing listens at these: compliance and ranking are not needed to read videos.
    targets = {"compliance": "127.0.0.1:9", "ranking": "127.0.0.1:9"}
    running = await start_service("ingest", ingest_server.build, port=0, data_root=tmp_path, targets=targets)
    try:
        async with grpc.aio.insecure_channel(running.target) as channel:
            yield Server(ingest_pb2_grpc.IngestServiceStub(channel), tmp_path)
    finally:
        await running.stop(grace=1)


async def test_a_viewer_token_named_like_a_service_sees_nothing_unpublished(server: Server) -> None:
    impostor = server.as_("services/gifts", Role.VIEWER)  # a service's name, a viewer's rights
    with pytest.raises(grpc.aio.AioRpcError) as listing:
        await server.stub.ListVideos(ingest_pb2.ListVideosRequest(parent="creators/alice"), metadata=impostor)
    assert listing.value.code() is grpc.StatusCode.PERMISSION_DENIED
    for call, request in [(server.stub.GetVideo, ingest_pb2.GetVideoRequest(name=VIDEO)),
                          (server.stub.GetUpload, ingest_pb2.GetUploadRequest(name=UPLOAD))]:
        with pytest.raises(grpc.aio.AioRpcError) as reading:
            await call(request, metadata=impostor)  # type: ignore[operator]
        assert reading.value.code() is grpc.StatusCode.NOT_FOUND


async def test_the_owner_and_a_verified_service_see_an_unpublished_video(server: Server) -> None:
    for metadata in (server.as_("users/alice", Role.CREATOR), server.as_("services/ranking", Role.SERVICE),
                     server.as_("users/olga", Role.COMPLIANCE_OFFICER)):
        listed = await server.stub.ListVideos(ingest_pb2.ListVideosRequest(parent="creators/alice"),
                                              metadata=metadata)
        assert [video.name for video in listed.videos] == [VIDEO]
        video = (await server.stub.GetVideo(ingest_pb2.GetVideoRequest(name=VIDEO), metadata=metadata)).video
        assert video.state == ingest_pb2.VIDEO_STATE_FAILED
        upload = (await server.stub.GetUpload(ingest_pb2.GetUploadRequest(name=UPLOAD), metadata=metadata)).upload
        assert upload.name == UPLOAD
    with pytest.raises(grpc.aio.AioRpcError) as stranger:
        await server.stub.GetVideo(ingest_pb2.GetVideoRequest(name=VIDEO), metadata=server.as_("users/bob", Role.VIEWER))
    assert stranger.value.code() is grpc.StatusCode.NOT_FOUND


async def test_a_creator_id_with_capitals_is_answered_with_a_sentence(server: Server) -> None:
    start = ingest_pb2.UploadVideoRequest(start=ingest_pb2.UploadStart(
        parent="creators/Alice", upload_id=str(uuid.uuid4()), size_bytes=100, sha256="ab" * 32))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await server.stub.UploadVideo(iter([start]), metadata=server.as_("users/alice", Role.CREATOR))
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    details = raised.value.details() or ""
    assert "the creator id 'Alice' is not valid; an id is 1 to 63 lowercase letters" in details
    assert "[a-z0-9]" not in details and "regex" not in details
    status = rpc_status.from_call(raised.value)
    assert status is not None
    bad_request = error_details_pb2.BadRequest()
    assert any(detail.Unpack(bad_request) for detail in status.details if detail.Is(bad_request.DESCRIPTOR))
    assert "start.parent" in [v.field for v in bad_request.field_violations]
