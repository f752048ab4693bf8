"""Ingest's domain: videos, transcode jobs, what a creator declared, and the rules between them.

Entities, value objects and invariants only: no I/O, no gRPC, SQLite, Ray or OpenTelemetry.

A video exists once its upload is complete, verified and probed:

    PROCESSING ──job succeeded──> READY
         └──────job can never succeed──> FAILED (failure_reason says why)

Whether viewers may see it is a separate axis, decided by compliance's verdicts:

    PENDING_REVIEW  a verdict is missing (compliance unreachable, or it does not implement
                    the check: never taken as approval); asked again later
    PUBLISHED       both verdicts allow it (COMPLIANT, or LABEL_REQUIRED: the platform shows
                    the required label); visible with the labels they require
    HELD            NON_COMPLIANT (the creator changes what the findings say), or NEEDS_REVIEW
                    / an AI assessment that needs review (a compliance officer decides)

`Video.publication_note` says in words what a video's publication rests on or waits for.
Commercial content (declared, or found to be advertising) that is published is owed an
entry in compliance's DSA ad repository, kept in the store and retried like ranking's.

A READY and PUBLISHED video is owed a registration with ranking, kept in the store and
retried until ranking accepts it.

A transcode job is QUEUED, RUNNING, then SUCCEEDED or FAILED. Jobs a stopped service left
unfinished are queued again when it starts; every attempt writes under the job's own
prefix and only a finished job's prefix is written into the video, so a half-written
attempt is never served.

Who may see what (`may_manage`, `may_view`) is decided on verified roles and ownership,
never on the shape of a principal's name: a subject `services/x` is just a name.

The enums mirror the proto enums value for value (without their prefixes), so the
adapter maps them by name.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from libs.auth.principal import Principal, Role
from libs.resource_names import ResourcePattern
from services.ingest.ladder import Rendition
from services.ingest.probe import MediaProbe
from services.ingest.transcode import TranscodeSettings


class VideoState(enum.StrEnum):
    PROCESSING = "PROCESSING"
    READY = "READY"
    FAILED = "FAILED"


class ProcessingStage(enum.StrEnum):
    QUEUED = "QUEUED"
    TRANSCODING = "TRANSCODING"
    PACKAGING = "PACKAGING"  # encoders draining, segments and stills going to the blob store
    DONE = "DONE"


class PublicationState(enum.StrEnum):
    PENDING_REVIEW = "PENDING_REVIEW"
    PUBLISHED = "PUBLISHED"
    HELD = "HELD"


class RankingRegistration(enum.StrEnum):
    PENDING = "PENDING"
    REGISTERED = "REGISTERED"
    NOT_APPLICABLE = "NOT_APPLICABLE"


class JobState(enum.StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class CommercialRelationship(enum.StrEnum):
    NONE = "NONE"
    PAID_PARTNERSHIP = "PAID_PARTNERSHIP"
    FREE_PRODUCT = "FREE_PRODUCT"
    AFFILIATE = "AFFILIATE"
    OWN_BRAND = "OWN_BRAND"


class AiUsage(enum.StrEnum):
    NONE = "NONE"
    GENERATED = "GENERATED"
    EDITED = "EDITED"


class DisclosureVerdict(enum.StrEnum):
    UNSPECIFIED = "UNSPECIFIED"  # pending: compliance has not answered
    COMPLIANT = "COMPLIANT"
    LABEL_REQUIRED = "LABEL_REQUIRED"  # publishable once the platform shows the required label
    NON_COMPLIANT = "NON_COMPLIANT"
    NEEDS_REVIEW = "NEEDS_REVIEW"


class AiLabel(enum.StrEnum):
    UNSPECIFIED = "UNSPECIFIED"  # pending
    NONE = "NONE"
    AI_GENERATED = "AI_GENERATED"
    AI_EDITED = "AI_EDITED"


# How a required label's placement reads to a creator.
_PLACEMENT_WORDS: Mapping[str, str] = {"BEFORE_CONTENT": "before the content", "CAPTION_START": "at the start of the caption"}

# EU AI Act Art. 50: how an AI label reads to viewers in Germany.
AI_LABEL_TEXT: Mapping[AiLabel, str] = {AiLabel.AI_GENERATED: "KI-generiert", AiLabel.AI_EDITED: "KI-bearbeitet"}


class C2paValidation(enum.StrEnum):
    ABSENT = "ABSENT"
    VALID = "VALID"
    INVALID = "INVALID"


@dataclass(frozen=True)
class CommercialDeclaration:
    relationship: CommercialRelationship = CommercialRelationship.NONE
    brand_name: str = ""
    payer_name: str = ""


@dataclass(frozen=True)
class AiDeclaration:
    usage: AiUsage = AiUsage.NONE
    depicts_real_people_or_events: bool = False


@dataclass(frozen=True)
class VideoMetadata:
    caption: str = ""
    hashtags: tuple[str, ...] = ()
    commercial: CommercialDeclaration = field(default_factory=CommercialDeclaration)
    ai: AiDeclaration = field(default_factory=AiDeclaration)
    product_tags: tuple[str, ...] = ()
    affiliate_links: tuple[str, ...] = ()
    disclosure_label: str = ""


@dataclass(frozen=True)
class C2paEvidence:
    """What a C2PA manifest in the file declares; ABSENT when there is none."""

    validation: C2paValidation = C2paValidation.ABSENT
    trusted: bool = False
    digital_source_types: tuple[str, ...] = ()
    claim_generator: str = ""
    signer: str = ""


@dataclass(frozen=True)
class Finding:
    rule_id: str
    severity: str
    message: str
    legal_reference: str = ""
    evidence: str = ""


@dataclass(frozen=True)
class ComplianceReview:
    """Compliance's two verdicts; each stays UNSPECIFIED until compliance answers it."""

    disclosure_verdict: DisclosureVerdict = DisclosureVerdict.UNSPECIFIED
    required_disclosure_label: str = ""
    ai_label: AiLabel = AiLabel.UNSPECIFIED
    ai_needs_review: bool = False
    deepfake_disclosure_required: bool = False
    findings: tuple[Finding, ...] = ()
    reviewed_at: dt.datetime | None = None
    is_advertising: bool = False  # the engine found it to be advertising (declared or not)
    required_placement: str = ""  # where `required_disclosure_label` stands, e.g. BEFORE_CONTENT
    ai_label_text: str = ""  # compliance's wording of the AI label (the deepfake disclosure included)
    rules_version: str = ""  # the rule set that decided, so the verdict stays explainable

    @property
    def complete(self) -> bool:
        return self.disclosure_verdict is not DisclosureVerdict.UNSPECIFIED and self.ai_label is not AiLabel.UNSPECIFIED

    @property
    def shown_labels(self) -> tuple[str, ...]:
        """The labels the platform shows with the video: the disclosure label compliance
        requires, then the AI label in compliance's wording (else the German default: the
        platform's first market)."""
        ai_label = self.ai_label_text or AI_LABEL_TEXT.get(self.ai_label, "")
        return tuple(label for label in (self.required_disclosure_label, ai_label) if label)

    def audit_facts(self) -> dict[str, str]:
        """What a publication or hold rests on, as the audit trail keeps it (no personal data)."""
        return {"disclosure_verdict": self.disclosure_verdict.value, "ai_label": self.ai_label.value,
                "required_label": self.required_disclosure_label, "required_placement": self.required_placement,
                "ai_needs_review": str(self.ai_needs_review).lower(),
                "is_advertising": str(self.is_advertising).lower(), "rules_version": self.rules_version,
                "rules": ",".join(finding.rule_id for finding in self.findings)}

    @property
    def awaited(self) -> tuple[str, ...]:
        """What a video not (yet) published waits for, in words; () when nothing."""
        missing = [check for check, absent in (
            ("compliance's advertising-disclosure verdict", self.disclosure_verdict is DisclosureVerdict.UNSPECIFIED),
            ("compliance's AI-content verdict", self.ai_label is AiLabel.UNSPECIFIED)) if absent]
        if self.disclosure_verdict is DisclosureVerdict.NON_COMPLIANT:
            return ("a new upload whose caption fixes what the findings say",)
        reviews = [f"a compliance officer's review of the {check}" for check, asked in (
            ("advertising disclosure", self.disclosure_verdict is DisclosureVerdict.NEEDS_REVIEW),
            ("AI-content evidence", self.ai_needs_review)) if asked]
        if reviews:
            return tuple(reviews)
        return tuple(missing)

    @property
    def publication(self) -> PublicationState:
        if self.disclosure_verdict in (DisclosureVerdict.NON_COMPLIANT, DisclosureVerdict.NEEDS_REVIEW):
            return PublicationState.HELD
        if self.ai_needs_review:
            return PublicationState.HELD
        if not self.complete:
            return PublicationState.PENDING_REVIEW
        return PublicationState.PUBLISHED


@dataclass(frozen=True)
class RenditionRecord:
    width: int
    height: int
    video_bitrate: int
    peak_bandwidth: int
    codecs: str
    playlist_path: str  # relative to the job's prefix
    segment_count: int


@dataclass(frozen=True)
class PublishedMedia:
    """A finished job's output: everything lies under `prefix` in the blob store."""

    prefix: str
    master_playlist_path: str
    poster_path: str
    thumbnail_paths: tuple[str, ...]
    renditions: tuple[RenditionRecord, ...]
    video_encoder: str


@dataclass(frozen=True)
class Video:
    video_id: str
    creator_id: str
    metadata: VideoMetadata
    state: VideoState
    stage: ProcessingStage
    created_at: dt.datetime
    updated_at: dt.datetime
    probe: MediaProbe
    review: ComplianceReview = field(default_factory=ComplianceReview)
    c2pa: C2paEvidence = field(default_factory=C2paEvidence)
    progress: float = 0.0
    failure_reason: str = ""
    failure_message: str = ""
    media: PublishedMedia | None = None
    ranking: RankingRegistration = RankingRegistration.PENDING
    published_at: dt.datetime | None = None
    ad_name: str = ""  # its entry in compliance's ad repository (`ads/{ad}`), once registered
    version: int = 1  # bumped by every change, so watchers can tell what is new

    @property
    def name(self) -> str:
        return video_name(self.creator_id, self.video_id)

    @property
    def publication(self) -> PublicationState:
        return self.review.publication

    @property
    def is_commercial(self) -> bool:
        """Declared commercial, or found to be advertising: owed an entry in the ad repository."""
        return self.metadata.commercial.relationship is not CommercialRelationship.NONE or self.review.is_advertising

    @property
    def publication_note(self) -> str:
        """What the video's publication rests on, or what it waits for, in a creator's words."""
        review = self.review
        if self.state is VideoState.FAILED:
            return "not published: processing failed"
        if self.publication is PublicationState.PUBLISHED:
            labels = ", ".join(f"'{label}'" for label in review.shown_labels)
            shown = f"published with the label{'s' if len(review.shown_labels) > 1 else ''} {labels}" if labels \
                else "published without labels"
            if review.required_disclosure_label and review.required_placement:
                where = _PLACEMENT_WORDS.get(review.required_placement, review.required_placement.lower())
                shown += f" ('{review.required_disclosure_label}' shown {where})"
            return shown if self.published_at is not None else f"cleared: will be {shown} once processing finishes"
        waits = " and ".join(review.awaited)
        if self.publication is PublicationState.HELD:
            if review.disclosure_verdict is DisclosureVerdict.NON_COMPLIANT:
                return f"held: the advertising disclosure does not comply (see the findings); waiting for {waits}"
            return f"held until {waits}"
        return f"pending review: waiting for {waits} (compliance has not answered; ingest asks again automatically)"

    @property
    def is_finished(self) -> bool:
        return self.state is not VideoState.PROCESSING


@dataclass(frozen=True)
class TranscodeJob:
    job_id: str
    video_id: str
    state: JobState
    output_prefix: str
    trace_carrier: dict[str, str]
    submissions: int = 0  # how many times a service handed it to Ray (restarts add one)
    failure_reason: str = ""
    failure_message: str = ""


@dataclass(frozen=True)
class WorkerIdentity:
    node: str
    pid: int


@dataclass(frozen=True)
class TranscodeRequest:
    """What a transcoder is handed for one job."""

    job_id: str
    blob_store_url: str
    source_key: str
    output_prefix: str
    probe: MediaProbe
    renditions: tuple[Rendition, ...]
    settings: TranscodeSettings
    trace_carrier: dict[str, str]  # W3C trace context of the upload, continued in the worker
    telemetry_root: str  # data directory whose traces/ folder receives the worker's spans


@dataclass(frozen=True)
class TranscodeResult:
    media: PublishedMedia
    workers: tuple[WorkerIdentity, ...]  # every worker that started the job, in order


class TranscodeFailure(Exception):
    """A job that can never succeed; `reason` is an UPPER_SNAKE constant for the video record."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class FollowUp(enum.StrEnum):
    """Calls to other services that must eventually succeed, asked again with backoff."""

    COMPLIANCE_REVIEW = "COMPLIANCE_REVIEW"
    RANKING_REGISTRATION = "RANKING_REGISTRATION"
    AD_REGISTRATION = "AD_REGISTRATION"  # a published commercial video's entry in the DSA ad repository


@dataclass(frozen=True)
class DueFollowUp:
    video_id: str
    attempts: int
    trace_carrier: dict[str, str]  # the upload's trace, continued by the call


# The API's resource names (AIP-122), as the protos' `google.api.resource` patterns spell them.
CREATOR = ResourcePattern("creators/{creator}")
VIDEO = ResourcePattern("creators/{creator}/videos/{video}")
UPLOAD = ResourcePattern("creators/{creator}/uploads/{upload}")


def video_name(creator_id: str, video_id: str) -> str:
    return VIDEO.format(creator=creator_id, video=video_id)


def upload_name(creator_id: str, upload_id: str) -> str:
    return UPLOAD.format(creator=creator_id, upload=upload_id)


def creator_name(creator_id: str) -> str:
    return CREATOR.format(creator=creator_id)


# -- who may do what ------------------------------------------------------------------------
#
# Decided on verified roles and ownership only. A principal's subject is a name, and a name
# proves nothing: a token for `services/gifts` that holds only the viewer role is a viewer.

# Roles that may read every creator's videos and uploads, published or not.
OVERSEEING_ROLES = frozenset({Role.ADMIN, Role.COMPLIANCE_OFFICER})


def may_manage(principal: Principal, creator_id: str) -> bool:
    """May `principal` see everything of `creator_id` (drafts, held videos, uploads)?

    The creator themself (also through a service acting on their behalf), an admin or a
    compliance officer, and a service acting as itself: it holds the verified `service`
    role and acts for nobody (a service acting for a user has exactly that user's rights).
    """
    if principal.user_id == creator_id:
        return True
    if principal.on_behalf_of is not None:
        return False
    return principal.has_role(*OVERSEEING_ROLES, Role.SERVICE)


def may_upload(principal: Principal, creator_id: str) -> bool:
    """Only the creator themself adds videos to their account."""
    return principal.user_id == creator_id


def may_view(viewer: Principal, video: Video) -> bool:
    """Those who may manage a video see it in every state; everyone else only once published."""
    return may_manage(viewer, video.creator_id) or video.published_at is not None


def publication_change(before: Video, after: Video) -> str:
    """The audit action for what a change did to a video's visibility, or '' for none:
    `ingest.PublishVideo` when it became visible, `ingest.HoldVideo` when it was held."""
    if after.published_at is not None and before.published_at is None:
        return "ingest.PublishVideo"
    if after.publication is PublicationState.HELD and before.publication is not PublicationState.HELD:
        return "ingest.HoldVideo"
    return ""


# Uploaded bytes lie under flat keys (no folder per upload or video), so a refused upload,
# whose bytes are deleted, leaves nothing behind in a filesystem blob store.
def source_key(video_id: str) -> str:
    return f"sources/{video_id}"


def upload_part_key(upload_id: str, offset: int) -> str:
    return f"upload-parts/{upload_id}.{offset:015d}"


def job_output_prefix(video_id: str, job_id: str) -> str:
    return f"videos/{video_id}/hls/{job_id}/"


def stage_for_progress(progress: float) -> ProcessingStage:
    """Decoding reports up to 95%; the rest is the encoders draining and the upload of the output."""
    return ProcessingStage.PACKAGING if progress >= 0.95 else ProcessingStage.TRANSCODING


# Jobs handed to Ray this many times without finishing (service restarts mid-job) are failed
# instead of queued again: something about them keeps taking the service down.
MAX_JOB_SUBMISSIONS = 5
