"""Ingest over gRPC: the servicer, the clients of compliance and ranking, and the wiring.

The servicer only translates: proto -> use case (`services.ingest.ingestion.Ingest`) ->
proto. Compliance and ranking are reached through the kit's clients; an answer they
cannot give yet (UNIMPLEMENTED, UNAVAILABLE, a deadline) leaves the verdict pending or
the registration owed, never approved or dropped. The HLS output is served over HTTP on
loopback (`LIMELIGHT_INGEST_PLAYBACK_PORT`, default any free port) and each video names
its playback root.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import logging
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

import grpc
from google.protobuf import duration_pb2, timestamp_pb2
from limelight.compliance.v1 import disclosure_pb2, disclosure_pb2_grpc
from limelight.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from limelight.ranking.v1 import candidates_pb2, candidates_pb2_grpc
from opentelemetry import context as otel_context

from libs.audit.client import AuditClient
from libs.auth.principal import Role
from libs.blobstore import LocalBlobStore
from libs.blobstore.http_server import BlobHTTPServer
from libs.clock import utc_now
from libs.errors import InvalidArgument, OutOfRange, Unavailable
from libs.kit.access import AccessPolicy, method_paths
from libs.kit.clients import ServiceClients
from libs.kit.context import current_principal
from libs.kit.server import ServiceDefinition, ServiceRuntime, package_definition
from libs.kit.telemetry import extract_carrier, inject_carrier
from services.ingest.ingestion import Ingest
from services.ingest.provenance import read_c2pa
from services.ingest.store import IngestStore
from services.ingest.uploads import UploadSession, UploadState
from services.ingest.videos import (
    AiDeclaration,
    AiLabel,
    AiUsage,
    C2paEvidence,
    CommercialDeclaration,
    CommercialRelationship,
    ComplianceReview,
    DisclosureVerdict,
    Finding,
    Video,
    VideoMetadata,
    VideoState,
)
from services.ingest.workers import RayTranscoder

logger = logging.getLogger(__name__)

INGEST = "limelight.ingest.v1.IngestService"
MARKET = disclosure_pb2.MARKET_GERMANY
# Answers that mean "ask again later", not "no".
_NOT_YET = frozenset({grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNAVAILABLE,
                      grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED})


def build(runtime: ServiceRuntime) -> ServiceDefinition:
    store = IngestStore.open(runtime.data_root)
    blobs = LocalBlobStore(runtime.data_root / "ingest" / "blobs")
    playback = BlobHTTPServer(blobs, port=int(os.environ.get("LIMELIGHT_INGEST_PLAYBACK_PORT", "0")))
    # CPUs each transcode declares (default: what `transcode_resources` picks); a GPU is added when present.
    task_cpus = os.environ.get("LIMELIGHT_INGEST_TRANSCODE_CPUS")
    transcoder = RayTranscoder(task_options={"num_cpus": float(task_cpus)} if task_cpus else None)
    audit = AuditClient.for_runtime(runtime)
    ingest = Ingest(
        store=store, blobs=blobs, transcoder=transcoder,
        compliance=ComplianceClient(runtime.clients), ranking=RankingClient(runtime.clients),
        read_provenance=read_c2pa, audit=audit, trace_carrier=inject_carrier, continue_trace=continue_trace,
        telemetry_root=str(runtime.data_root), clock=utc_now,
    )

    async def on_start() -> None:
        await audit.start()
        playback.start()
        await ingest.start()

    async def on_stop() -> None:
        await ingest.stop()
        await audit.stop()
        playback.stop()
        await asyncio.to_thread(transcoder.close)
        store.close()

    return package_definition(
        "limelight.ingest.v1",
        {INGEST: IngestServicer(ingest, playback.base_url)},
        policy=AccessPolicy(roles=method_paths(INGEST, {"UploadVideo": frozenset({Role.CREATOR})})),
        on_start=on_start,
        on_stop=on_stop,
    )


@contextlib.contextmanager
def continue_trace(carrier: dict[str, str]) -> Iterator[None]:
    """Make the upload's trace current while background work (a retried call) runs for it."""
    token = otel_context.attach(extract_carrier(carrier))
    try:
        yield
    finally:
        otel_context.detach(token)


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(self, ingest: Ingest, playback_base_url: str) -> None:
        self._ingest = ingest
        self._playback = playback_base_url

    async def UploadVideo(self, request_iterator: AsyncIterator[ingest_pb2.UploadVideoRequest],
                          context: grpc.aio.ServicerContext) -> ingest_pb2.UploadVideoResponse:
        principal = current_principal()
        requests = aiter(request_iterator)
        first = await anext(requests, None)
        part = first.WhichOneof("part") if first is not None else None
        if part == "start":
            start = first.start  # type: ignore[union-attr]
            session = self._ingest.begin_upload(
                principal, _segment(start.parent, "creators"), start.upload_id, _metadata_in(start.metadata),
                start.size_bytes, start.sha256, start.filename)
        elif part == "resume":
            resume = first.resume  # type: ignore[union-attr]
            session = self._ingest.resume_upload(principal, _segment(resume.upload, "creators"),
                                                 _segment(resume.upload, "uploads"))
            if resume.offset > session.committed_bytes:
                raise OutOfRange(f"resume offset {resume.offset} is past the {session.committed_bytes} bytes "
                                 "received", reason="UPLOAD_OFFSET_MISMATCH",
                                 metadata={"committed_offset": str(session.committed_bytes)})
        else:
            raise InvalidArgument.for_field("part", "the first message must be `start` or `resume`",
                                            reason="UPLOAD_START_MISSING")
        writer = self._ingest.writer(session)
        try:
            async for request in requests:
                if request.WhichOneof("part") != "chunk":
                    raise InvalidArgument.for_field("part", "only `chunk` messages may follow the first",
                                                    reason="UPLOAD_UNEXPECTED_MESSAGE")
                await asyncio.to_thread(writer.write, request.chunk.offset, request.chunk.data)
        finally:
            # Also when the client dropped: what arrived is committed, so a resume starts there.
            # Synchronous on purpose: an await here could itself be cancelled with the call.
            writer.flush()
        video = await self._ingest.complete_upload(session.upload_id)
        completed = self._ingest.get_upload(principal, session.creator_id, session.upload_id)
        return ingest_pb2.UploadVideoResponse(upload=_upload_out(completed), video=self._video_out(video))

    async def GetUpload(self, request: ingest_pb2.GetUploadRequest,
                        context: grpc.aio.ServicerContext) -> ingest_pb2.GetUploadResponse:
        session = self._ingest.get_upload(current_principal(), _segment(request.name, "creators"),
                                          _segment(request.name, "uploads"))
        return ingest_pb2.GetUploadResponse(upload=_upload_out(session))

    async def GetVideo(self, request: ingest_pb2.GetVideoRequest,
                       context: grpc.aio.ServicerContext) -> ingest_pb2.GetVideoResponse:
        video = self._ingest.get_video(current_principal(), _segment(request.name, "creators"),
                                       _segment(request.name, "videos"))
        return ingest_pb2.GetVideoResponse(video=self._video_out(video))

    async def ListVideos(self, request: ingest_pb2.ListVideosRequest,
                         context: grpc.aio.ServicerContext) -> ingest_pb2.ListVideosResponse:
        state = _enum_in(VideoState, ingest_pb2.VideoState, "VIDEO_STATE_", request.state)
        page = self._ingest.list_videos(current_principal(), _segment(request.parent, "creators"),
                                        request.page_size, request.page_token, state)
        return ingest_pb2.ListVideosResponse(videos=[self._video_out(v) for v in page.videos],
                                             next_page_token=page.next_page_token)

    async def WatchVideo(self, request: ingest_pb2.WatchVideoRequest,
                         context: grpc.aio.ServicerContext) -> AsyncIterator[ingest_pb2.WatchVideoResponse]:
        updates = self._ingest.watch_video(current_principal(), _segment(request.name, "creators"),
                                           _segment(request.name, "videos"))
        async for video in updates:
            yield ingest_pb2.WatchVideoResponse(video=self._video_out(video))

    def _video_out(self, video: Video) -> ingest_pb2.Video:
        probe = video.probe
        message = ingest_pb2.Video(
            name=video.name,
            metadata=_metadata_out(video.metadata),
            state=_enum_out(ingest_pb2.VideoState, "VIDEO_STATE_", video.state),
            stage=_enum_out(ingest_pb2.ProcessingStage, "PROCESSING_STAGE_", video.stage),
            progress_percent=int(video.progress * 100),
            failure_reason=video.failure_reason,
            media=ingest_pb2.MediaInfo(
                container=probe.container, video_codec=probe.video_codec, audio_codec=probe.audio_codec,
                width=probe.coded_width, height=probe.coded_height,
                # The probe keeps the display matrix's counter-clockwise turn; the API speaks clockwise.
                rotation_degrees=(360 - probe.rotation) % 360,
                duration=duration_pb2.Duration(seconds=int(probe.duration_s),
                                               nanos=int(probe.duration_s % 1 * 1e9)),
                frame_rate=probe.average_frame_rate, variable_frame_rate=probe.variable_frame_rate,
                has_audio=probe.has_audio,
            ),
            publication_state=_enum_out(ingest_pb2.PublicationState, "PUBLICATION_STATE_", video.publication),
            compliance_review=_review_out(video.review),
            c2pa=_c2pa_out(video.c2pa),
            ranking_registration=_enum_out(ingest_pb2.RankingRegistration, "RANKING_REGISTRATION_", video.ranking),
            create_time=_timestamp(video.created_at),
            update_time=_timestamp(video.updated_at),
        )
        if video.published_at is not None:
            message.publish_time.CopyFrom(_timestamp(video.published_at))
        if video.media is not None:
            media = video.media
            message.renditions.extend(
                ingest_pb2.Rendition(width=r.width, height=r.height, video_bitrate=r.video_bitrate,
                                     playlist_path=r.playlist_path, segment_count=r.segment_count)
                for r in media.renditions)
            message.master_playlist_path = media.master_playlist_path
            message.playback_uri = f"{self._playback}/{media.prefix}"
            message.thumbnail_paths.extend(media.thumbnail_paths)
            message.poster_path = media.poster_path
        return message


class ComplianceClient:
    """Both compliance verdicts through DisclosureService; a verdict it cannot give stays pending."""

    def __init__(self, clients: ServiceClients) -> None:
        self._clients = clients

    async def review(self, video_name: str, metadata: VideoMetadata, c2pa: C2paEvidence,
                     reviewed_at: dt.datetime) -> ComplianceReview:
        stub = self._clients.stub("compliance", disclosure_pb2_grpc.DisclosureServiceStub)
        disclosure, ai = await asyncio.gather(
            _ask(stub.EvaluateDisclosure(_disclosure_request(video_name, metadata))),
            _ask(stub.AssessAiContent(disclosure_pb2.AssessAiContentRequest(
                content=video_name, declaration=_ai_declaration_out(metadata.ai), c2pa=_c2pa_out(c2pa),
                market=MARKET))),
        )
        findings = [*(disclosure.findings if disclosure else ()), *(ai.findings if ai else ())]
        return ComplianceReview(
            disclosure_verdict=(_enum_in(DisclosureVerdict, disclosure_pb2.DisclosureVerdict,
                                         "DISCLOSURE_VERDICT_", disclosure.verdict) or DisclosureVerdict.UNSPECIFIED)
            if disclosure else DisclosureVerdict.UNSPECIFIED,
            required_disclosure_label=disclosure.required_label if disclosure else "",
            ai_label=(_enum_in(AiLabel, disclosure_pb2.AiLabel, "AI_LABEL_", ai.label) or AiLabel.UNSPECIFIED)
            if ai else AiLabel.UNSPECIFIED,
            ai_needs_review=ai.needs_review if ai else False,
            deepfake_disclosure_required=ai.deepfake_disclosure_required if ai else False,
            findings=tuple(Finding(f.rule_id, disclosure_pb2.FindingSeverity.Name(f.severity), f.message,
                                   f.legal_reference, f.evidence) for f in findings),
            reviewed_at=reviewed_at if disclosure or ai else None,
        )


class RankingClient:
    """Registers a published video as a feed candidate; 'not yet' answers are retried later."""

    def __init__(self, clients: ServiceClients) -> None:
        self._clients = clients

    async def register(self, video: Video) -> None:
        stub = self._clients.stub("ranking", candidates_pb2_grpc.CandidateServiceStub)
        labels = [label for label in (video.review.required_disclosure_label, _ai_label_text(video.review)) if label]
        request = candidates_pb2.RegisterVideoRequest(
            video=video.name,
            duration=duration_pb2.Duration(seconds=int(video.probe.duration_s),
                                           nanos=int(video.probe.duration_s % 1 * 1e9)),
            hashtags=list(video.metadata.hashtags),
            labels=labels,
            commercial=video.metadata.commercial.relationship is not CommercialRelationship.NONE,
            publish_time=_timestamp(video.published_at or video.updated_at),
        )
        try:
            await stub.RegisterVideo(request)
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.ALREADY_EXISTS:
                return  # registered by an earlier attempt whose answer was lost
            if error.code() not in _NOT_YET:
                logger.error("ranking refused %s: %s %s", video.name, error.code().name, error.details())
            raise Unavailable(f"ranking answered {error.code().name}", reason="RANKING_NOT_READY") from None


async def _ask(call: Any) -> Any:
    """The response, or None when compliance cannot answer (yet): the verdict stays pending."""
    try:
        return await call
    except grpc.aio.AioRpcError as error:
        if error.code() not in _NOT_YET:
            logger.error("compliance refused a review: %s %s", error.code().name, error.details())
        return None


def _disclosure_request(video_name: str, metadata: VideoMetadata) -> disclosure_pb2.EvaluateDisclosureRequest:
    placement = disclosure_pb2.LABEL_PLACEMENT_BEFORE_CONTENT if metadata.disclosure_label else \
        disclosure_pb2.LABEL_PLACEMENT_NONE
    return disclosure_pb2.EvaluateDisclosureRequest(
        content=disclosure_pb2.DisclosureContent(
            content=video_name, caption=metadata.caption, hashtags=list(metadata.hashtags),
            declaration=_commercial_out(metadata.commercial), product_tags=list(metadata.product_tags),
            affiliate_links=list(metadata.affiliate_links), label_text=metadata.disclosure_label,
            label_placement=placement),
        market=MARKET,
    )


def _ai_label_text(review: ComplianceReview) -> str:
    return {AiLabel.AI_GENERATED: "KI-generiert", AiLabel.AI_EDITED: "KI-bearbeitet"}.get(review.ai_label, "")


# -- proto <-> domain ---------------------------------------------------------------------

E = TypeVar("E", bound=enum.StrEnum)


def _enum_out(proto_enum: Any, prefix: str, member: enum.StrEnum) -> int:
    return int(proto_enum.Value(prefix + member.value))


def _enum_in(domain: type[E], proto_enum: Any, prefix: str, number: int) -> E | None:
    """The domain member of the same name; None for the proto's UNSPECIFIED zero."""
    if number == 0:
        return None
    return domain(proto_enum.Name(number).removeprefix(prefix))


def _segment(name: str, collection: str) -> str:
    """The id after `collection/` in a resource name (the pattern was validated already)."""
    parts = name.split("/")
    return parts[parts.index(collection) + 1]


def _timestamp(moment: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _metadata_in(message: ingest_pb2.VideoMetadata) -> VideoMetadata:
    commercial, ai = message.commercial_declaration, message.ai_declaration
    return VideoMetadata(
        caption=message.caption,
        hashtags=tuple(message.hashtags),
        commercial=CommercialDeclaration(
            _enum_in(CommercialRelationship, disclosure_pb2.CommercialRelationship, "COMMERCIAL_RELATIONSHIP_",
                     commercial.relationship) or CommercialRelationship.NONE,
            commercial.brand_name, commercial.payer_name),
        ai=AiDeclaration(_enum_in(AiUsage, disclosure_pb2.AiUsage, "AI_USAGE_", ai.usage) or AiUsage.NONE,
                         ai.depicts_real_people_or_events),
        product_tags=tuple(message.product_tags),
        affiliate_links=tuple(message.affiliate_links),
        disclosure_label=message.disclosure_label,
    )


def _commercial_out(commercial: CommercialDeclaration) -> disclosure_pb2.CommercialDeclaration:
    return disclosure_pb2.CommercialDeclaration(
        relationship=_enum_out(disclosure_pb2.CommercialRelationship, "COMMERCIAL_RELATIONSHIP_",
                               commercial.relationship),
        brand_name=commercial.brand_name, payer_name=commercial.payer_name)


def _ai_declaration_out(ai: AiDeclaration) -> disclosure_pb2.AiDeclaration:
    return disclosure_pb2.AiDeclaration(usage=_enum_out(disclosure_pb2.AiUsage, "AI_USAGE_", ai.usage),
                                        depicts_real_people_or_events=ai.depicts_real_people_or_events)


def _metadata_out(metadata: VideoMetadata) -> ingest_pb2.VideoMetadata:
    return ingest_pb2.VideoMetadata(
        caption=metadata.caption, hashtags=list(metadata.hashtags),
        commercial_declaration=_commercial_out(metadata.commercial),
        ai_declaration=_ai_declaration_out(metadata.ai), product_tags=list(metadata.product_tags),
        affiliate_links=list(metadata.affiliate_links), disclosure_label=metadata.disclosure_label)


def _c2pa_out(c2pa: C2paEvidence) -> disclosure_pb2.C2paEvidence:
    return disclosure_pb2.C2paEvidence(
        validation=_enum_out(disclosure_pb2.C2paValidation, "C2PA_VALIDATION_", c2pa.validation),
        trusted=c2pa.trusted, digital_source_types=list(c2pa.digital_source_types),
        claim_generator=c2pa.claim_generator, signer=c2pa.signer)


def _review_out(review: ComplianceReview) -> ingest_pb2.ComplianceReview:
    message = ingest_pb2.ComplianceReview(
        required_disclosure_label=review.required_disclosure_label,
        deepfake_disclosure_required=review.deepfake_disclosure_required,
        findings=[disclosure_pb2.Finding(rule_id=f.rule_id, severity=disclosure_pb2.FindingSeverity.Value(f.severity),
                                         message=f.message, legal_reference=f.legal_reference, evidence=f.evidence)
                  for f in review.findings],
    )
    if review.disclosure_verdict is not DisclosureVerdict.UNSPECIFIED:
        message.disclosure_verdict = _enum_out(disclosure_pb2.DisclosureVerdict, "DISCLOSURE_VERDICT_",
                                               review.disclosure_verdict)
    if review.ai_label is not AiLabel.UNSPECIFIED:
        message.ai_label = _enum_out(disclosure_pb2.AiLabel, "AI_LABEL_", review.ai_label)
    if review.reviewed_at is not None:
        message.review_time.CopyFrom(_timestamp(review.reviewed_at))
    return message


def _upload_out(session: UploadSession) -> ingest_pb2.Upload:
    state = session.state_at(dt.datetime.now(dt.UTC))
    return ingest_pb2.Upload(
        name=f"creators/{session.creator_id}/uploads/{session.upload_id}",
        state=_enum_out(ingest_pb2.UploadState, "UPLOAD_STATE_", state),
        size_bytes=session.declared_size,
        received_bytes=session.committed_bytes,
        sha256=session.sha256_hex,
        failure_reason=session.failure_reason,
        video=f"creators/{session.creator_id}/videos/{session.video_id}" if state is UploadState.COMPLETED else "",
        create_time=_timestamp(session.created_at),
        expire_time=_timestamp(session.expires_at),
    )
