"""Ingest end to end: real ingest, compliance and ranking servers, real Ray, real HTTP playback.

The servers share one temporary data directory (tokens, stores, traces) and call each
other over gRPC exactly as under `limelight up`. Compliance gives both verdicts and keeps
the ad repository, so a video is published with its labels or held with its findings;
ranking registers each published video, and a viewer's feed then shows it.

Nothing here waits for a fixed time: every wait is for a condition the servers report.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import http.client
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

import grpc
import pytest
import ray
from limelight.compliance.v1 import ads_pb2, ads_pb2_grpc, audit_pb2, audit_pb2_grpc, disclosure_pb2
from limelight.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from limelight.ranking.v1 import feed_pb2, feed_pb2_grpc
from typer.testing import Result

from libs.auth.principal import Role
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.kit.server import RunningService, ServiceDefinition, ServiceRuntime, start_service
from libs.kit.telemetry import read_spans
from services.ingest import server as ingest_server
from services.ingest.config import IngestConfig
from services.ingest.sample_clips import ClipSpec, write_clip
from services.ingest.uploads import UploadLimits
from services.ingest.workers import connect_ray
from tools.upload_cli import upload_file

CHUNK = 256 * 1024
# Small parts, so that what a stream sent is committed (and visible to GetUpload) as it arrives.
PART = 16 * 1024
E2E_CONFIG = IngestConfig(upload_limits=UploadLimits(part_bytes=PART))


def build_ingest(runtime: ServiceRuntime) -> ServiceDefinition:
    return ingest_server.build(runtime, E2E_CONFIG)


async def eventually(probe: Callable[[], Awaitable[T]], condition: Callable[[T], bool], *,
                     interval: float = 0.05) -> T:
    """Ask `probe` until its answer meets `condition` (the test's timeout bounds the wait)."""
    while not condition(answer := await probe()):
        await asyncio.sleep(interval)
    return answer
T = TypeVar("T")
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

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token()}"), ("traceparent", TRACEPARENT))

    async def start_ingest(self) -> None:
        self.services["ingest"] = await start_service(
            "ingest", build_ingest, port=0, data_root=self.data_root, targets=self.targets)
        self.targets["ingest"] = self.services["ingest"].target


@pytest.fixture(scope="module")
async def ingest_platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[IngestPlatform]:
    import importlib

    os.environ.pop("RAY_ADDRESS", None)
    # One local Ray for the module, connected before the servers so a restarted ingest
    # server reuses it instead of starting (and stopping) its own.
    started_ray = connect_ray(num_cpus=2)
    data_root = tmp_path_factory.mktemp("ingest-platform")
    targets: dict[str, str] = {}
    platform = IngestPlatform(data_root, {}, targets)
    try:
        for name in ("compliance", "ranking"):  # each on a port of its own choosing, told to the next
            platform.services[name] = await start_service(
                name, importlib.import_module(f"services.{name}.server").build,
                port=0, data_root=data_root, targets=dict(targets))
            targets[name] = platform.services[name].target
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


async def watch_until_finished(stub: ingest_pb2_grpc.IngestServiceAsyncStub, name: str,
                               platform: IngestPlatform) -> list[ingest_pb2.Video]:
    updates = []
    async for response in stub.WatchVideo(ingest_pb2.WatchVideoRequest(name=name), metadata=platform.metadata(),
                                          timeout=120):
        updates.append(response.video)
    return updates


def http_get(url: str) -> tuple[int, str, bytes]:
    parsed = urlparse(url)
    connection = http.client.HTTPConnection(parsed.hostname or "", parsed.port, timeout=10)
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
    cut = len(data) // 2 // PART * PART  # whole parts: all of it is committed once the server read it

    async def first_connection() -> AsyncIterator[ingest_pb2.UploadVideoRequest]:
        yield start_message(upload_id, data)
        for message in chunks(data, 0, cut):
            yield message
        await asyncio.Event().wait()  # the rest is never sent

    async with grpc.aio.insecure_channel(ingest_platform.targets["ingest"]) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        call = stub.UploadVideo(first_connection(), metadata=ingest_platform.metadata())
        name = f"creators/ada/uploads/{upload_id}"

        async def upload_now() -> ingest_pb2.Upload:
            try:
                return (await stub.GetUpload(ingest_pb2.GetUploadRequest(name=name),
                                             metadata=ingest_platform.metadata())).upload
            except grpc.aio.AioRpcError as error:  # the start message is not processed yet
                assert error.code() is grpc.StatusCode.NOT_FOUND
                return ingest_pb2.Upload()

        # The server has read and committed everything sent so far...
        await eventually(upload_now, lambda upload: upload.received_bytes == cut)
        call.cancel()  # ...and then the connection drops
        upload = await upload_now()
        received = upload.received_bytes
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
        # A declared paid partnership labelled "Werbung": published with its label, then
        # registered with ranking (at once, or on ingest's next retry).
        assert video.publication_state == ingest_pb2.PUBLICATION_STATE_PUBLISHED
        assert video.HasField("publish_time") and list(video.labels) == ["Werbung"]
        assert [(r.width, r.height) for r in video.renditions] == [(480, 854), (360, 640)]
        registered = await eventually(
            lambda: stub.GetVideo(ingest_pb2.GetVideoRequest(name=video.name), metadata=ingest_platform.metadata()),
            lambda v: v.video.ranking_registration == ingest_pb2.RANKING_REGISTRATION_REGISTERED)
        assert registered.video.name == video.name

    # A viewer's feed shows it, with its label: ingest -> ranking registration end to end.
    viewer = [("authorization", f"Bearer {ingest_platform.token('users/vic', Role.VIEWER)}")]
    async with grpc.aio.insecure_channel(ingest_platform.targets["ranking"]) as channel:
        page = await feed_pb2_grpc.FeedServiceStub(channel).GetFeed(
            feed_pb2.GetFeedRequest(viewer="users/vic", page_size=50), metadata=viewer)
    [shown] = [item for item in page.items if item.video == video.name]
    assert list(shown.labels) == ["Werbung"] and shown.commercial

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

        async def logged_events() -> list[audit_pb2.LoggedEvent]:
            return list((await audit.QueryEvents(audit_pb2.QueryEventsRequest(
                filter=audit_pb2.EventFilter(resource=video.name)), metadata=officer)).events)

        logged = await eventually(logged_events, bool)
    [event] = [e.event for e in logged if e.event.action == "ingest.UploadVideo"]
    assert (event.actor, event.trace_id) == ("users/ada", TRACE_ID)
    assert event.attributes["commercial_relationship"] == "PAID_PARTNERSHIP"
    assert event.attributes["publication"] == "PUBLISHED"

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
    assert "couldn't read this file as a video" in (raised.value.details() or "")


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
    assert "READY, PUBLISHED" in result.output and "play: http://127.0.0.1:" in result.output
    lines = result.output.splitlines()
    assert "labels: Werbung" in lines
    assert "published with the label 'Werbung' ('Werbung' shown before the content)" in lines


def run_upload_command(*arguments: str) -> Result:
    from typer.testing import CliRunner

    from tools.upload_cli import app

    return CliRunner().invoke(app, list(arguments))


async def test_the_upload_command_prints_a_refusal_on_its_own_line_after_the_bar(
    ingest_platform: IngestPlatform, tmp_path: Path
) -> None:
    notes = tmp_path / "holiday.mp4"
    notes.write_text("not a video\n" * 100)
    result = await asyncio.to_thread(run_upload_command, str(notes), "--creator", "ada", "--token",
                                     ingest_platform.token(), "--target", ingest_platform.targets["ingest"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    # The refusal is a line of its own, the last one: the bar is not drawn again after it.
    assert lines[-1].startswith("upload refused (INVALID_ARGUMENT): ")
    assert "couldn't read this file as a video" in lines[-1]
    assert sum("upload refused" in line for line in lines) == 1 and "uploading" not in lines[-1]


async def test_the_upload_command_answers_a_creator_id_with_capitals_in_words(
    ingest_platform: IngestPlatform, clip: Path
) -> None:
    result = await asyncio.to_thread(run_upload_command, str(clip), "--creator", "Ada", "--target",
                                     ingest_platform.targets["ingest"], "--token", ingest_platform.token())
    assert result.exit_code == 1
    assert "the creator id 'Ada' is not valid; an id is 1 to 63 lowercase letters" in result.output
    assert "[a-z0-9]" not in result.output


def test_the_upload_command_says_when_nothing_answers_at_the_address(clip: Path) -> None:
    target = "127.0.0.1:65501"  # nothing listens here
    result = run_upload_command(str(clip), "--creator", "ada", "--target", target, "--token", "x")
    assert result.exit_code == 1
    assert f"cannot reach ingest at {target}" in result.output
    assert "failed to connect to all addresses" not in result.output


def clip_metadata(caption: str, relationship: disclosure_pb2.CommercialRelationship,
                  brand: str = "") -> ingest_pb2.VideoMetadata:
    return ingest_pb2.VideoMetadata(
        caption=caption, hashtags=["sneaker"],
        commercial_declaration=disclosure_pb2.CommercialDeclaration(relationship=relationship, brand_name=brand),
        ai_declaration=disclosure_pb2.AiDeclaration(usage=disclosure_pb2.AI_USAGE_NONE))


async def test_an_undeclared_discount_code_is_held_and_werbung_first_is_published_with_its_label(
    ingest_platform: IngestPlatform, clip: Path
) -> None:
    undeclared = clip_metadata("Meine neuen Sneaker! Mit dem Code ADA20 bekommt ihr 20 % Rabatt",
                               disclosure_pb2.COMMERCIAL_RELATIONSHIP_NONE)
    labelled = clip_metadata("Werbung | Meine neuen Sneaker von @acme, mit dem Code ADA20 spart ihr 20 %",
                             disclosure_pb2.COMMERCIAL_RELATIONSHIP_PAID_PARTNERSHIP, "Acme")
    viewer = (("authorization", f"Bearer {ingest_platform.token('users/vera', Role.VIEWER)}"),)
    async with grpc.aio.insecure_channel(ingest_platform.targets["ingest"]) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        names = []
        for metadata in (undeclared, labelled):
            response = await upload_file(stub, clip, parent="creators/ada", metadata=metadata,
                                         call_metadata=ingest_platform.metadata(), chunk_size=CHUNK)
            names.append(response.video.name)
        held, published = [(await watch_until_finished(stub, name, ingest_platform))[-1] for name in names]

        assert held.state == ingest_pb2.VIDEO_STATE_READY
        assert held.publication_state == ingest_pb2.PUBLICATION_STATE_HELD and not held.labels
        review = held.compliance_review
        assert review.disclosure_verdict == disclosure_pb2.DISCLOSURE_VERDICT_NON_COMPLIANT and review.is_advertising
        [finding] = [f for f in review.findings if f.rule_id == "UNDECLARED_ADVERTISING"]
        assert "ADA20" in finding.evidence and finding.severity == disclosure_pb2.FINDING_SEVERITY_VIOLATION
        assert "does not comply (see the findings)" in held.publication_note
        with pytest.raises(grpc.aio.AioRpcError) as hidden:  # nobody else sees a held video
            await stub.GetVideo(ingest_pb2.GetVideoRequest(name=held.name), metadata=viewer)
        assert hidden.value.code() is grpc.StatusCode.NOT_FOUND

        assert published.publication_state == ingest_pb2.PUBLICATION_STATE_PUBLISHED
        assert list(published.labels) == ["Werbung"] and published.HasField("publish_time")
        assert published.compliance_review.disclosure_verdict == disclosure_pb2.DISCLOSURE_VERDICT_COMPLIANT
        assert published.compliance_review.required_placement == disclosure_pb2.LABEL_PLACEMENT_BEFORE_CONTENT
        assert published.compliance_review.rules_version

        async def seen_by_viewer() -> ingest_pb2.Video:
            return (await stub.GetVideo(ingest_pb2.GetVideoRequest(name=published.name), metadata=viewer)).video

        entered = await eventually(seen_by_viewer, lambda video: bool(video.ad))
        still_held = (await stub.GetVideo(ingest_pb2.GetVideoRequest(name=held.name),
                                          metadata=ingest_platform.metadata())).video
        assert not still_held.ad  # content nobody sees has no entry in the ad repository

    officer = (("authorization", f"Bearer {ingest_platform.token('users/olga', Role.COMPLIANCE_OFFICER)}"),)
    async with grpc.aio.insecure_channel(ingest_platform.targets["compliance"]) as channel:
        ad = (await ads_pb2_grpc.AdRepositoryServiceStub(channel).GetAd(
            ads_pb2.GetAdRequest(name=entered.ad), metadata=viewer)).ad
        assert (ad.content, ad.advertiser, ad.brand, ad.creator, ad.found_by_engine) == (
            published.name, "Acme", "Acme", "creators/ada", False)
        assert ad.kind == ads_pb2.AD_KIND_COMMERCIAL_CONTENT and ad.summary.startswith("Werbung | ")
        audit = audit_pb2_grpc.AuditServiceStub(channel)

        async def actions(name: str) -> list[str]:
            return [e.event.action for e in (await audit.QueryEvents(audit_pb2.QueryEventsRequest(
                filter=audit_pb2.EventFilter(resource=name)), metadata=officer)).events]

        assert {"ingest.ReviewVideo", "ingest.HoldVideo"} <= set(await eventually(
            lambda: actions(held.name), lambda found: "ingest.HoldVideo" in found))
        assert {"ingest.ReviewVideo", "ingest.PublishVideo"} <= set(await eventually(
            lambda: actions(published.name), lambda found: "ingest.PublishVideo" in found))
