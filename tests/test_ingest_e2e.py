"""Ingest end to end: real ingest, compliance and ranking servers, real Ray, real HTTP playback.

The servers share one temporary data directory (tokens, stores, traces) and call each
other over gRPC exactly as under `limelight up`; compliance and ranking have not built
the RPCs ingest calls yet, so they answer UNIMPLEMENTED, which ingest must treat as
"pending review" and "registration owed".
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import http.client
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import grpc
import pytest
import ray
from limelight.compliance.v1 import audit_pb2, audit_pb2_grpc, disclosure_pb2
from limelight.ingest.v1 import ingest_pb2, ingest_pb2_grpc

from libs.auth.principal import Role
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.kit.server import RunningService, start_service
from libs.kit.telemetry import read_spans
from services.compliance import server as compliance_server
from services.ingest import server as ingest_server
from services.ingest.sample_clips import ClipSpec, write_clip
from services.ingest.workers import connect_ray
from services.ranking import server as ranking_server
from tools.upload_cli import upload_file

CHUNK = 256 * 1024
TRACE_ID = uuid.uuid4().hex
TRACEPARENT = f"00-{TRACE_ID}-{uuid.uuid4().hex[:16]}-01"


@dataclass
class IngestPlatform:
    data_root: Path
    services: dict[str, RunningService]
    targets: dict[str, str]

    def token(self, subject: str = "users/ada", role: Role = Role.CREATOR) -> str:
        claims = TokenClaims(subject=subject, roles=frozenset({role}), country="DE")
        return mint_token(platform_signing_key(self.data_root), claims, ttl=dt.timedelta(minutes=30))

    def metadata(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.token()}"), ("traceparent", TRACEPARENT)]

    async def start_ingest(self) -> None:
        self.services["ingest"] = await start_service(
            "ingest", ingest_server.build, port=0, data_root=self.data_root, targets=dict(self.targets))
        self.targets["ingest"] = self.services["ingest"].target


@pytest.fixture(scope="module")
async def ingest_platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[IngestPlatform]:
    os.environ.pop("RAY_ADDRESS", None)
    # One local Ray for the module, connected before the servers so a restarted ingest
    # server reuses it instead of starting (and stopping) its own.
    started_ray = connect_ray(num_cpus=2)
    data_root = tmp_path_factory.mktemp("ingest-platform")
    platform = IngestPlatform(data_root, {}, {})
    try:
        # Each binds port 0; ingest, started last, gets the ports they reported.
        for name, build in (("compliance", compliance_server.build), ("ranking", ranking_server.build)):
            platform.services[name] = await start_service(name, build, port=0, data_root=data_root)
            platform.targets[name] = platform.services[name].target
        await platform.start_ingest()
        yield platform
    finally:
        for running in platform.services.values():
            await running.stop(grace=1)
        if started_ray:
            ray.shutdown()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("e2e-clips") / "clip.mp4", ClipSpec(480, 854, 3.5))


METADATA = ingest_pb2.VideoMetadata(
    caption="Neue Sneaker", hashtags=["sneaker"],
    commercial_declaration=disclosure_pb2.CommercialDeclaration(
        relationship=disclosure_pb2.COMMERCIAL_RELATIONSHIP_PAID_PARTNERSHIP, brand_name="Acme"),
    ai_declaration=disclosure_pb2.AiDeclaration(usage=disclosure_pb2.AI_USAGE_NONE),
    disclosure_label="Werbung",
)


def start_message(upload_id: str, data: bytes) -> ingest_pb2.UploadVideoRequest:
    return ingest_pb2.UploadVideoRequest(start=ingest_pb2.UploadStart(
        parent="creators/ada", upload_id=upload_id, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
        filename="clip.mp4", metadata=METADATA))


def chunks(data: bytes, start: int, end: int) -> list[ingest_pb2.UploadVideoRequest]:
    return [ingest_pb2.UploadVideoRequest(chunk=ingest_pb2.UploadChunk(offset=o, data=data[o:min(o + CHUNK, end)]))
            for o in range(start, end, CHUNK)]


async def watch_until_finished(stub: ingest_pb2_grpc.IngestServiceStub, name: str,
                               platform: IngestPlatform) -> list[ingest_pb2.Video]:
    updates = []
    async for response in stub.WatchVideo(ingest_pb2.WatchVideoRequest(name=name), metadata=platform.metadata(),
                                          timeout=120):
        updates.append(response.video)
    return updates


def http_get(url: str) -> tuple[int, str, bytes]:
    parsed = urlparse(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
    connection.request("GET", parsed.path)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, response.getheader("Content-Type", ""), body


async def test_an_upload_cut_mid_stream_resumes_and_becomes_a_playable_ladder_in_one_trace(
    ingest_platform: IngestPlatform, clip: Path
) -> None:
    data = clip.read_bytes()
    upload_id = str(uuid.uuid4())
    cut = len(data) // 2

    async def first_connection() -> AsyncIterator[ingest_pb2.UploadVideoRequest]:
        yield start_message(upload_id, data)
        for message in chunks(data, 0, cut):
            yield message
        await asyncio.sleep(3600)  # the rest is never sent

    async with grpc.aio.insecure_channel(ingest_platform.targets["ingest"]) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        call = stub.UploadVideo(first_connection(), metadata=ingest_platform.metadata())
        await asyncio.sleep(1.0)  # the server reads what was sent...
        call.cancel()  # ...and then the connection drops
        name = f"creators/ada/uploads/{upload_id}"
        received = 0
        for _ in range(100):
            upload = (await stub.GetUpload(ingest_pb2.GetUploadRequest(name=name),
                                           metadata=ingest_platform.metadata())).upload
            received = upload.received_bytes
            if received:
                break
            await asyncio.sleep(0.05)
        assert 0 < received <= cut < len(data) and upload.state == ingest_pb2.UPLOAD_STATE_RECEIVING

        resume = ingest_pb2.UploadVideoRequest(resume=ingest_pb2.UploadResume(upload=name, offset=received))
        response = await stub.UploadVideo(iter([resume, *chunks(data, received, len(data))]),
                                          metadata=ingest_platform.metadata())
        assert response.upload.state == ingest_pb2.UPLOAD_STATE_COMPLETED
        assert response.upload.received_bytes == len(data)
        assert response.video.media.height == 854 and response.video.media.has_audio

        updates = await watch_until_finished(stub, response.video.name, ingest_platform)
        video = updates[-1]
        assert video.state == ingest_pb2.VIDEO_STATE_READY and video.progress_percent == 100
        assert [u.progress_percent for u in updates] == sorted(u.progress_percent for u in updates)
        # Compliance answers UNIMPLEMENTED: pending review, never published, nothing sent to ranking yet.
        assert video.publication_state == ingest_pb2.PUBLICATION_STATE_PENDING_REVIEW
        assert not video.HasField("publish_time")
        assert video.ranking_registration == ingest_pb2.RANKING_REGISTRATION_PENDING
        assert [(r.width, r.height) for r in video.renditions] == [(480, 854), (360, 640)]

    status, content_type, master = http_get(video.playback_uri + video.master_playlist_path)
    assert (status, content_type) == (200, "application/vnd.apple.mpegurl") and b"RESOLUTION=480x854" in master
    status, _, playlist = http_get(video.playback_uri + video.renditions[0].playlist_path)
    first_segment = next(line for line in playlist.decode().splitlines() if line.endswith(".ts"))
    segment_path = video.renditions[0].playlist_path.rsplit("/", 1)[0] + "/" + first_segment
    status, content_type, segment = http_get(video.playback_uri + segment_path)
    assert (status, content_type) == (200, "video/mp2t") and segment[0] == 0x47  # MPEG-TS sync byte

    # The upload and the facts it rests on reach compliance's audit trail, in the upload's trace.
    officer = [("authorization", f"Bearer {ingest_platform.token('users/olga', Role.COMPLIANCE_OFFICER)}")]
    async with grpc.aio.insecure_channel(ingest_platform.targets["compliance"]) as channel:
        audit = audit_pb2_grpc.AuditServiceStub(channel)
        for _ in range(100):
            logged = (await audit.QueryEvents(audit_pb2.QueryEventsRequest(
                filter=audit_pb2.EventFilter(resource=video.name)), metadata=officer)).events
            if logged:
                break
            await asyncio.sleep(0.1)
    [event] = [e.event for e in logged if e.event.action == "ingest.UploadVideo"]
    assert (event.actor, event.trace_id) == ("users/ada", TRACE_ID)
    assert event.attributes["commercial_relationship"] == "PAID_PARTNERSHIP"
    assert event.attributes["publication"] == "PENDING_REVIEW"

    for running in ingest_platform.services.values():
        running.runtime.telemetry.provider.force_flush()
    spans = [span for span in read_spans(ingest_platform.data_root) if span["trace_id"] == TRACE_ID]
    names = {(span["service"], span["name"]) for span in spans}
    assert ("limelight-ingest", "/limelight.ingest.v1.IngestService/UploadVideo") in names
    assert ("limelight-compliance", "/limelight.compliance.v1.DisclosureService/EvaluateDisclosure") in names
    assert {("limelight-ingest-worker", "ingest.transcode"), ("limelight-ingest-worker", "ingest.transcode.encode"),
            ("limelight-ingest-worker", "ingest.transcode.store")} <= names


async def test_a_restart_of_the_ingest_service_mid_job_still_finishes_the_video(
    ingest_platform: IngestPlatform, clip: Path
) -> None:
    async with grpc.aio.insecure_channel(ingest_platform.targets["ingest"]) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        response = await upload_file(stub, clip, parent="creators/ada", metadata=METADATA,
                                     call_metadata=ingest_platform.metadata(), chunk_size=CHUNK)
        name = response.video.name
        while True:
            video = (await stub.GetVideo(ingest_pb2.GetVideoRequest(name=name),
                                         metadata=ingest_platform.metadata())).video
            if video.stage == ingest_pb2.PROCESSING_STAGE_TRANSCODING:
                break
            assert video.state == ingest_pb2.VIDEO_STATE_PROCESSING
            await asyncio.sleep(0.02)
    await ingest_platform.services["ingest"].stop(grace=1)  # the service goes away mid-job
    await ingest_platform.start_ingest()
    async with grpc.aio.insecure_channel(ingest_platform.targets["ingest"]) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        video = (await watch_until_finished(stub, name, ingest_platform))[-1]
        assert video.state == ingest_pb2.VIDEO_STATE_READY, video.failure_reason
        listed = await stub.ListVideos(ingest_pb2.ListVideosRequest(parent="creators/ada", page_size=1),
                                       metadata=ingest_platform.metadata())
        assert listed.videos[0].name == name and listed.next_page_token


async def test_a_text_file_named_mp4_is_rejected_with_a_reason_the_creator_can_act_on(
    ingest_platform: IngestPlatform, tmp_path: Path
) -> None:
    notes = tmp_path / "holiday.mp4"
    notes.write_text("not a video\n" * 100)
    async with grpc.aio.insecure_channel(ingest_platform.targets["ingest"]) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await upload_file(stub, notes, parent="creators/ada", metadata=METADATA,
                              call_metadata=ingest_platform.metadata(), chunk_size=CHUNK)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "couldn't read this file as a video" in raised.value.details()


async def test_the_upload_command_uploads_and_follows_the_video_to_ready(
    ingest_platform: IngestPlatform, clip: Path
) -> None:
    from typer.testing import CliRunner

    from tools.upload_cli import app

    arguments = [str(clip), "--creator", "ada", "--caption", "Neue Sneaker", "--commercial", "paid-partnership",
                 "--brand", "Acme", "--label", "Werbung", "--token", ingest_platform.token(),
                 "--target", ingest_platform.targets["ingest"]]
    result = await asyncio.to_thread(CliRunner().invoke, app, arguments)
    assert result.exit_code == 0, result.output
    assert "READY, PENDING_REVIEW" in result.output and "play: http://127.0.0.1:" in result.output
