"""Data-subject requests across real servers: compliance gathers ingest's export, and an erasure
shreds the creator's key so no caption is left to read in any database file.

Compliance and ingest call each other (keys one way, exports the other), so ingest's port is
chosen before either starts. Ray is not needed: the seeded video's transcode has failed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from limelight.compliance.v1 import privacy_pb2, privacy_pb2_grpc
from limelight.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from opentelemetry import trace

from libs.audit.events import AuditEvent, Outcome
from libs.auth.principal import Role
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.kit.clients import ServiceClients, ServiceTokenSource
from libs.kit.server import RunningService, start_service
from libs.privacy.fields import PersonalData
from libs.privacy.remote import RemoteDataKeys
from services.compliance import server as compliance_server
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
from tools.supervisor import free_port

T0 = dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)
PROBE = MediaProbe("mov,mp4,m4a,3gp,3g2,mj2", "h264", "aac", 4.0, 1080, 1920, 0, 120, 30.0, False)
CAPTION = "Alice and Grace at the Lisbon marathon"
VIDEO = "creators/alice/videos/run-1"
ACCESS = privacy_pb2.DATA_SUBJECT_REQUEST_TYPE_ACCESS
ERASURE = privacy_pb2.DATA_SUBJECT_REQUEST_TYPE_ERASURE


@dataclass
class Platform:
    data_root: Path
    compliance: str
    ingest: str

    def alice(self) -> tuple[tuple[str, str], ...]:
        token = mint_token(platform_signing_key(self.data_root), TokenClaims("users/alice", frozenset({Role.CREATOR})),
                           ttl=dt.timedelta(minutes=5))
        return (("authorization", f"Bearer {token}"),)


async def seed_video(data_root: Path, compliance: str) -> None:
    clients = ServiceClients(tracer=trace.get_tracer("test"), targets={"compliance": compliance},
                             service_token=ServiceTokenSource("ingest", platform_signing_key(data_root)))
    store = IngestStore.open(data_root, personal=PersonalData(RemoteDataKeys(
        clients.stub("compliance", privacy_pb2_grpc.PersonalDataKeyServiceStub))))
    metadata = VideoMetadata(caption=CAPTION, hashtags=("running",))
    await store.create_upload(UploadSession("run-1", "alice", metadata, 100, "ab" * 32, 0, UploadState.RECEIVING,
                                            T0, T0 + dt.timedelta(days=1), filename="grace-and-me.mp4"))
    await store.start_processing(
        Video("run-1", "alice", metadata, VideoState.PROCESSING, ProcessingStage.QUEUED, T0, T0, PROBE,
              review=ComplianceReview()),
        TranscodeJob("job-1", "run-1", JobState.QUEUED, "videos/run-1/hls/job-1/", {}), T0,
        AuditEvent(event_id=str(uuid.uuid4()), actor="users/alice", action="ingest.UploadVideo", resource=VIDEO,
                   outcome=Outcome.SUCCEEDED, event_time=T0), {})
    await store.fail_job("job-1", "TRANSCODE_FAILED", "seeded", T0)
    store.close()
    await clients.close()


@pytest.fixture
async def platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Platform]:
    monkeypatch.setenv("LIMELIGHT_PRIVACY_KEY_CACHE_SECONDS", "0.2")
    monkeypatch.setenv("LIMELIGHT_PRIVACY_SOURCES", "ingest")
    ingest_target = f"127.0.0.1:{free_port()}"
    compliance = await start_service("compliance", compliance_server.build, port=0, data_root=tmp_path,
                                     targets={"ingest": ingest_target})
    await seed_video(tmp_path, compliance.target)
    ingest: RunningService = await start_service(
        "ingest", ingest_server.build, port=int(ingest_target.rsplit(":", 1)[1]), data_root=tmp_path,
        targets={"compliance": compliance.target, "ranking": "127.0.0.1:9"})
    try:
        yield Platform(tmp_path, compliance.target, ingest.target)
    finally:
        await ingest.stop(grace=1)
        await compliance.stop(grace=0)


async def export_of(stub: privacy_pb2_grpc.DataSubjectServiceAsyncStub, platform: Platform) -> dict[str, Any]:
    created = (await stub.CreateDataSubjectRequest(privacy_pb2.CreateDataSubjectRequestRequest(
        parent="users/alice", request_id=str(uuid.uuid4()), type=ACCESS), metadata=platform.alice())
    ).data_subject_request
    assert created.state == privacy_pb2.DATA_SUBJECT_REQUEST_STATE_COMPLETED, created.progress
    data, digest = b"", ""
    async for chunk in stub.DownloadDataExport(privacy_pb2.DownloadDataExportRequest(name=created.name),
                                               metadata=platform.alice()):
        data, digest = data + chunk.data, chunk.sha256 or digest
    assert hashlib.sha256(data).hexdigest() == digest
    archive: dict[str, Any] = json.loads(data)
    return archive


async def test_an_export_gathers_ingest_and_an_erasure_leaves_no_caption_anywhere(platform: Platform) -> None:
    async with grpc.aio.insecure_channel(platform.compliance) as to_compliance, \
            grpc.aio.insecure_channel(platform.ingest) as to_ingest:
        requests = privacy_pb2_grpc.DataSubjectServiceStub(to_compliance)
        videos = ingest_pb2_grpc.IngestServiceStub(to_ingest)

        archive = await export_of(requests, platform)
        assert {entry["source"] for entry in archive["index"]} == {"services/compliance", "services/ingest"}
        ingest_part = archive["sources"]["services/ingest"]
        assert [video["caption"] for video in ingest_part["videos"]] == [CAPTION]
        assert [upload["filename"] for upload in ingest_part["uploads"]] == ["grace-and-me.mp4"]

        erased = (await requests.CreateDataSubjectRequest(privacy_pb2.CreateDataSubjectRequestRequest(
            parent="users/alice", request_id=str(uuid.uuid4()), type=ERASURE), metadata=platform.alice())
        ).data_subject_request
        assert erased.state == privacy_pb2.DATA_SUBJECT_REQUEST_STATE_COMPLETED
        assert [(step.service, step.done) for step in erased.progress] == [
            ("services/compliance", True), ("services/ingest", True), ("services/compliance", True)]
        assert "compliance.audit_trail" in [kept.data_category for kept in erased.retention_exceptions]

        deadline = asyncio.get_running_loop().time() + 5.0
        caption = CAPTION
        while caption and asyncio.get_running_loop().time() < deadline:  # the key's cache lifetime, 0.2 s
            caption = (await videos.GetVideo(ingest_pb2.GetVideoRequest(name=VIDEO), metadata=platform.alice())
                       ).video.metadata.caption
        assert caption == ""

        after = await export_of(requests, platform)
        assert CAPTION not in json.dumps(after) and "grace-and-me" not in json.dumps(after)
        assert after["sources"]["services/compliance"] == {}

    every_byte = b"".join(path.read_bytes() for path in platform.data_root.rglob("*") if path.is_file())
    assert CAPTION.encode() not in every_byte and b"grace-and-me" not in every_byte
