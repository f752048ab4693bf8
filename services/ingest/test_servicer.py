"""Ingest's gRPC surface with a real server: who may read what (no Ray: no job is left to run)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from limelight.compliance.v1 import privacy_pb2_grpc
from limelight.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from opentelemetry import trace

from libs.audit.events import AuditEvent, Outcome
from libs.auth.principal import Role
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.clock import utc_now
from libs.kit.clients import ServiceClients, ServiceTokenSource
from libs.kit.server import start_service
from libs.privacy.fields import EphemeralDataKeys, PersonalData
from libs.privacy.remote import RemoteDataKeys
from services.compliance import server as compliance_server
from services.compliance.privacy.keyfile import LocalKeyEncryptionKey
from services.compliance.privacy.store import PrivacyStore
from services.compliance.privacy.usecases import DataKeys
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
CAPTION = "Alice at the Lisbon marathon, unseen"
VIDEO = f"creators/alice/videos/{VIDEO_ID}"
UPLOAD = f"creators/alice/uploads/{VIDEO_ID}"


async def seed_unpublished_video(data_root: Path, compliance: str) -> None:
    """Alice's video that nobody else may see: its transcode failed, so it never published."""
    clients = ServiceClients(tracer=trace.get_tracer("test"), targets={"compliance": compliance},
                             service_token=ServiceTokenSource("ingest", platform_signing_key(data_root)))
    store = IngestStore.open(data_root, personal=PersonalData(RemoteDataKeys(
        clients.stub("compliance", privacy_pb2_grpc.PersonalDataKeyServiceStub))))
    await store.create_upload(UploadSession(VIDEO_ID, "alice", VideoMetadata(caption=CAPTION), 100, "ab" * 32, 0,
                                            UploadState.RECEIVING, T0, T0 + dt.timedelta(days=1)))
    await store.start_processing(
        Video(VIDEO_ID, "alice", VideoMetadata(caption=CAPTION), VideoState.PROCESSING, ProcessingStage.QUEUED,
              T0, T0, PROBE, review=ComplianceReview()),
        TranscodeJob("job-1", VIDEO_ID, JobState.QUEUED, f"videos/{VIDEO_ID}/hls/job-1/", {}), T0,
        [AuditEvent(event_id=str(uuid.uuid4()), actor="users/alice", action="ingest.UploadVideo", resource=VIDEO,
                    outcome=Outcome.SUCCEEDED, event_time=T0)], {})
    await store.fail_job("job-1", "TRANSCODE_FAILED", "seeded", T0)
    store.close()
    await clients.close()


@dataclass
class Server:
    stub: ingest_pb2_grpc.IngestServiceAsyncStub
    data_root: Path

    def as_(self, subject: str, *roles: Role) -> tuple[tuple[str, str], ...]:
        token = mint_token(platform_signing_key(self.data_root), TokenClaims(subject=subject, roles=frozenset(roles)),
                           ttl=dt.timedelta(minutes=5))
        return (("authorization", f"Bearer {token}"),)


@pytest.fixture
async def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_engine: str) -> AsyncIterator[Server]:
    monkeypatch.setenv("LIMELIGHT_PRIVACY_KEY_CACHE_SECONDS", "0.2")  # so an erasure reaches ingest at once
    # Compliance holds the creator's data key, so it is needed to read a caption; nothing listens
    # at ranking's address: ranking is not needed to read videos. Both follow `database_engine`.
    compliance = await start_service("compliance", compliance_server.build, port=0, data_root=tmp_path)
    await seed_unpublished_video(tmp_path, compliance.target)
    targets = {"compliance": compliance.target, "ranking": "127.0.0.1:9"}
    running = await start_service("ingest", ingest_server.build, port=0, data_root=tmp_path, targets=targets)
    try:
        async with grpc.aio.insecure_channel(running.target) as channel:
            yield Server(ingest_pb2_grpc.IngestServiceStub(channel), tmp_path)
    finally:
        await running.stop(grace=1)
        await compliance.stop(grace=0)


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
        assert video.metadata.caption == CAPTION  # sealed in the database, opened with the key from compliance
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


async def test_erasing_the_creator_leaves_no_caption_in_any_database_and_none_to_read(server: Server) -> None:
    alice = server.as_("users/alice", Role.CREATOR)
    video = (await server.stub.GetVideo(ingest_pb2.GetVideoRequest(name=VIDEO), metadata=alice)).video
    assert video.metadata.caption == CAPTION

    store = PrivacyStore.open(server.data_root)  # erasure's last step, as compliance runs it
    assert DataKeys(store, LocalKeyEncryptionKey.for_deployment(server.data_root), utc_now).shred("users/alice")
    store.close()

    deadline = asyncio.get_running_loop().time() + 5.0
    while video.metadata.caption and asyncio.get_running_loop().time() < deadline:
        video = (await server.stub.GetVideo(ingest_pb2.GetVideoRequest(name=VIDEO), metadata=alice)).video
    assert video.metadata.caption == "" and video.name == VIDEO  # the video's facts stay; its caption is gone
    every_byte = b"".join(path.read_bytes() for path in server.data_root.rglob("*.db*") if path.is_file())
    ingest_store = IngestStore.open(server.data_root, personal=PersonalData(EphemeralDataKeys()))  # rows, any engine
    with ingest_store._reader.reading() as connection:
        every_byte += b"".join(repr(tuple(row)).encode() for table in ("uploads", "videos", "audit_outbox")
                               for row in connection.execute(f"SELECT * FROM {table}"))
    ingest_store.close()
    assert CAPTION.encode() not in every_byte and b"Lisbon" not in every_byte
