"""Proto <-> domain for ingest: its own API and the compliance and ranking calls it makes.

Domain enums mirror the proto enums by name (without the proto's prefix), so a member
maps to the proto's label string, which the generated constructors accept.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Protocol, TypeVar

from google.protobuf import duration_pb2
from limelight.compliance.v1 import ads_pb2, disclosure_pb2
from limelight.ingest.v1 import ingest_pb2
from limelight.ranking.v1 import candidates_pb2

from libs.timestamps import to_timestamp
from services.ingest.model import (
    AiDeclaration,
    AiLabel,
    AiUsage,
    C2paEvidence,
    CommercialDeclaration,
    CommercialRelationship,
    ComplianceReview,
    DisclosureVerdict,
    Finding,
    PublicationState,
    Video,
    VideoMetadata,
    VideoState,
    creator_name,
    upload_name,
    video_name,
)
from services.ingest.uploads import UploadSession, UploadState

MARKET = disclosure_pb2.MARKET_GERMANY  # the platform's first market: German labels and law

E = TypeVar("E", bound=enum.StrEnum)


class _ProtoEnum(Protocol):
    def Name(self, number: int) -> str: ...


def enum_out(prefix: str, member: enum.StrEnum) -> str:
    """The proto enum label of a domain member (`VIDEO_STATE_` + `READY`)."""
    return prefix + member.value


def enum_in(domain: type[E], proto_enum: _ProtoEnum, prefix: str, number: int) -> E | None:
    """The domain member of the same name; None for the proto's UNSPECIFIED zero."""
    if number == 0:
        return None
    return domain(proto_enum.Name(number).removeprefix(prefix))


def duration(seconds: float) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=int(seconds), nanos=int(seconds % 1 * 1e9))


# -- ingest's API -----------------------------------------------------------------------------


def metadata_in(message: ingest_pb2.VideoMetadata) -> VideoMetadata:
    commercial, ai = message.commercial_declaration, message.ai_declaration
    return VideoMetadata(
        caption=message.caption,
        hashtags=tuple(message.hashtags),
        commercial=CommercialDeclaration(
            enum_in(CommercialRelationship, disclosure_pb2.CommercialRelationship, "COMMERCIAL_RELATIONSHIP_",
                    commercial.relationship) or CommercialRelationship.NONE,
            commercial.brand_name, commercial.payer_name),
        ai=AiDeclaration(enum_in(AiUsage, disclosure_pb2.AiUsage, "AI_USAGE_", ai.usage) or AiUsage.NONE,
                         ai.depicts_real_people_or_events),
        product_tags=tuple(message.product_tags),
        affiliate_links=tuple(message.affiliate_links),
        disclosure_label=message.disclosure_label,
    )


def video_state_in(number: int) -> VideoState | None:
    return enum_in(VideoState, ingest_pb2.VideoState, "VIDEO_STATE_", number)


def metadata_out(metadata: VideoMetadata) -> ingest_pb2.VideoMetadata:
    return ingest_pb2.VideoMetadata(
        caption=metadata.caption, hashtags=list(metadata.hashtags),
        commercial_declaration=commercial_out(metadata.commercial),
        ai_declaration=ai_declaration_out(metadata.ai), product_tags=list(metadata.product_tags),
        affiliate_links=list(metadata.affiliate_links), disclosure_label=metadata.disclosure_label)


def commercial_out(commercial: CommercialDeclaration) -> disclosure_pb2.CommercialDeclaration:
    return disclosure_pb2.CommercialDeclaration(
        relationship=enum_out("COMMERCIAL_RELATIONSHIP_", commercial.relationship),
        brand_name=commercial.brand_name, payer_name=commercial.payer_name)


def ai_declaration_out(ai: AiDeclaration) -> disclosure_pb2.AiDeclaration:
    return disclosure_pb2.AiDeclaration(usage=enum_out("AI_USAGE_", ai.usage),
                                        depicts_real_people_or_events=ai.depicts_real_people_or_events)


def c2pa_out(c2pa: C2paEvidence) -> disclosure_pb2.C2paEvidence:
    return disclosure_pb2.C2paEvidence(
        validation=enum_out("C2PA_VALIDATION_", c2pa.validation),
        trusted=c2pa.trusted, digital_source_types=list(c2pa.digital_source_types),
        claim_generator=c2pa.claim_generator, signer=c2pa.signer)


def review_out(review: ComplianceReview) -> ingest_pb2.ComplianceReview:
    message = ingest_pb2.ComplianceReview(
        required_disclosure_label=review.required_disclosure_label,
        deepfake_disclosure_required=review.deepfake_disclosure_required,
        findings=[disclosure_pb2.Finding(rule_id=f.rule_id, severity=f.severity, message=f.message,
                                         legal_reference=f.legal_reference, evidence=f.evidence)
                  for f in review.findings],
        # A verdict compliance has not given stays unset (UNSPECIFIED) on the wire.
        disclosure_verdict=None if review.disclosure_verdict is DisclosureVerdict.UNSPECIFIED
        else enum_out("DISCLOSURE_VERDICT_", review.disclosure_verdict),
        ai_label=None if review.ai_label is AiLabel.UNSPECIFIED else enum_out("AI_LABEL_", review.ai_label),
        is_advertising=review.is_advertising,
        required_placement=("LABEL_PLACEMENT_" + review.required_placement) if review.required_placement else None,
        ai_label_text=review.ai_label_text, rules_version=review.rules_version,
    )
    if review.reviewed_at is not None:
        message.review_time.CopyFrom(to_timestamp(review.reviewed_at))
    return message


def upload_out(session: UploadSession, now: dt.datetime) -> ingest_pb2.Upload:
    state = session.state_at(now)
    return ingest_pb2.Upload(
        name=upload_name(session.creator_id, session.upload_id),
        state=enum_out("UPLOAD_STATE_", state),
        size_bytes=session.declared_size,
        received_bytes=session.committed_bytes,
        sha256=session.sha256_hex,
        failure_reason=session.failure_reason,
        video=video_name(session.creator_id, session.video_id) if state is UploadState.COMPLETED else "",
        create_time=to_timestamp(session.created_at),
        expire_time=to_timestamp(session.expires_at),
    )


def video_out(video: Video, playback_base_url: str) -> ingest_pb2.Video:
    probe = video.probe
    message = ingest_pb2.Video(
        name=video.name,
        metadata=metadata_out(video.metadata),
        state=enum_out("VIDEO_STATE_", video.state),
        stage=enum_out("PROCESSING_STAGE_", video.stage),
        progress_percent=int(video.progress * 100),
        failure_reason=video.failure_reason,
        media=ingest_pb2.MediaInfo(
            container=probe.container, video_codec=probe.video_codec, audio_codec=probe.audio_codec,
            width=probe.coded_width, height=probe.coded_height,
            # The probe keeps the display matrix's counter-clockwise turn; the API speaks clockwise.
            rotation_degrees=(360 - probe.rotation) % 360,
            duration=duration(probe.duration_s),
            frame_rate=probe.average_frame_rate, variable_frame_rate=probe.variable_frame_rate,
            has_audio=probe.has_audio,
        ),
        publication_state=enum_out("PUBLICATION_STATE_", video.publication),
        compliance_review=review_out(video.review),
        c2pa=c2pa_out(video.c2pa),
        ranking_registration=enum_out("RANKING_REGISTRATION_", video.ranking),
        labels=list(video.review.shown_labels) if video.publication is PublicationState.PUBLISHED else [],
        publication_note=video.publication_note,
        ad=video.ad_name,
        create_time=to_timestamp(video.created_at),
        update_time=to_timestamp(video.updated_at),
    )
    if video.published_at is not None:
        message.publish_time.CopyFrom(to_timestamp(video.published_at))
    if video.media is not None:
        media = video.media
        message.renditions.extend(
            ingest_pb2.Rendition(width=r.width, height=r.height, video_bitrate=r.video_bitrate,
                                 playlist_path=r.playlist_path, segment_count=r.segment_count)
            for r in media.renditions)
        message.master_playlist_path = media.master_playlist_path
        message.playback_uri = f"{playback_base_url}/{media.prefix}"
        message.thumbnail_paths.extend(media.thumbnail_paths)
        message.poster_path = media.poster_path
    return message


# -- the calls ingest makes --------------------------------------------------------------------


def disclosure_request(video_name: str, metadata: VideoMetadata) -> disclosure_pb2.EvaluateDisclosureRequest:
    placement = disclosure_pb2.LABEL_PLACEMENT_BEFORE_CONTENT if metadata.disclosure_label else \
        disclosure_pb2.LABEL_PLACEMENT_NONE
    return disclosure_pb2.EvaluateDisclosureRequest(
        content=disclosure_pb2.DisclosureContent(
            content=video_name, caption=metadata.caption, hashtags=list(metadata.hashtags),
            declaration=commercial_out(metadata.commercial), product_tags=list(metadata.product_tags),
            affiliate_links=list(metadata.affiliate_links), label_text=metadata.disclosure_label,
            label_placement=placement),
        market=MARKET,
    )


def ai_assessment_request(video_name: str, metadata: VideoMetadata,
                          c2pa: C2paEvidence) -> disclosure_pb2.AssessAiContentRequest:
    return disclosure_pb2.AssessAiContentRequest(content=video_name, declaration=ai_declaration_out(metadata.ai),
                                                 c2pa=c2pa_out(c2pa), market=MARKET)


def review_in(disclosure: disclosure_pb2.EvaluateDisclosureResponse | None,
              ai: disclosure_pb2.AssessAiContentResponse | None, reviewed_at: dt.datetime) -> ComplianceReview:
    """Compliance's answers as a review; a missing answer leaves its verdict pending."""
    findings = [*(disclosure.findings if disclosure else ()), *(ai.findings if ai else ())]
    placement = disclosure_pb2.LabelPlacement.Name(disclosure.required_placement).removeprefix("LABEL_PLACEMENT_") \
        if disclosure and disclosure.required_label else ""
    return ComplianceReview(
        disclosure_verdict=(enum_in(DisclosureVerdict, disclosure_pb2.DisclosureVerdict, "DISCLOSURE_VERDICT_",
                                    disclosure.verdict) or DisclosureVerdict.UNSPECIFIED)
        if disclosure else DisclosureVerdict.UNSPECIFIED,
        required_disclosure_label=disclosure.required_label if disclosure else "",
        ai_label=(enum_in(AiLabel, disclosure_pb2.AiLabel, "AI_LABEL_", ai.label) or AiLabel.UNSPECIFIED)
        if ai else AiLabel.UNSPECIFIED,
        ai_needs_review=ai.needs_review if ai else False,
        deepfake_disclosure_required=ai.deepfake_disclosure_required if ai else False,
        findings=tuple(Finding(f.rule_id, disclosure_pb2.FindingSeverity.Name(f.severity), f.message,
                               f.legal_reference, f.evidence) for f in findings),
        reviewed_at=reviewed_at if disclosure or ai else None,
        is_advertising=disclosure.is_advertising if disclosure else False,
        required_placement=placement,
        ai_label_text=ai.label_text if ai else "",
        # Both checks come from one rule set; either answer names it.
        rules_version=(disclosure.rules_version if disclosure else "") or (ai.rules_version if ai else ""),
    )


def registration_request(video: Video) -> candidates_pb2.RegisterVideoRequest:
    return candidates_pb2.RegisterVideoRequest(
        video=video.name,
        duration=duration(video.probe.duration_s),
        hashtags=list(video.metadata.hashtags),
        labels=list(video.review.shown_labels),
        commercial=video.metadata.commercial.relationship is not CommercialRelationship.NONE,
        publish_time=to_timestamp(video.published_at or video.updated_at),
    )


def ad_request(video: Video) -> ads_pb2.RegisterAdRequest:
    """A published commercial video's entry in the DSA ad repository (Art. 39(2)); the request id
    is derived from the video's name, so a retried registration is the same registration."""
    metadata, commercial = video.metadata, video.metadata.commercial
    if metadata.affiliate_links or commercial.relationship is CommercialRelationship.AFFILIATE:
        kind = ads_pb2.AD_KIND_AFFILIATE
    elif metadata.product_tags:
        kind = ads_pb2.AD_KIND_PRODUCT_PLACEMENT
    else:
        kind = ads_pb2.AD_KIND_COMMERCIAL_CONTENT
    creator = creator_name(video.creator_id)
    own_brand = commercial.relationship is CommercialRelationship.OWN_BRAND
    return ads_pb2.RegisterAdRequest(
        request_id=str(uuid.uuid5(uuid.NAMESPACE_URL, video.name)),
        ad=ads_pb2.Ad(
            kind=kind, content=video.name, summary=metadata.caption[:2000],
            # On whose behalf: the brand; the creator themself for their own brand or when
            # the engine found advertising nobody declared.
            advertiser=(creator if own_brand else commercial.brand_name or creator)[:200],
            payer=commercial.payer_name[:200], brand=commercial.brand_name[:200], creator=creator,
            found_by_engine=commercial.relationship is CommercialRelationship.NONE,
            targeting=ads_pb2.AdTargeting(),  # organic content: shown to followers and in feeds, not targeted
        ),
    )
