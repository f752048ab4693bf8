"""Video records and transcode jobs: states, the rules between them, and what a creator declared.

    UPLOADING ──upload verified + probed──> PROCESSING ──transcoded──> READY  (published)
        │                                       │                └──> HELD   (not compliant: kept, not published)
        └──rejected (media, checksum)──> FAILED <┘ (a job that can never succeed)

A transcode job is QUEUED, RUNNING, then SUCCEEDED or FAILED. Jobs left QUEUED or
RUNNING by a stopped service are queued again when it starts (`requeue_on_start`); the
output of every attempt goes under the job's own prefix and only a finished job's
prefix is written into the video, so a half-written attempt is never served.

Compliance answers COMPLIANT, NON_COMPLIANT, or PENDING_REVIEW; a compliance service
that cannot answer yet (UNIMPLEMENTED, unreachable) is PENDING_REVIEW, never COMPLIANT.
Registration with ranking is an obligation kept in the store until ranking accepts it.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from libs.errors import FailedPrecondition
from services.ingest.probe import MediaProbe

Clock = Callable[[], dt.datetime]


class VideoState(enum.StrEnum):
    UPLOADING = "UPLOADING"
    PROCESSING = "PROCESSING"
    READY = "READY"
    HELD = "HELD"
    FAILED = "FAILED"


TERMINAL_STATES = frozenset({VideoState.READY, VideoState.HELD, VideoState.FAILED})


class JobState(enum.StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


UNFINISHED_JOB_STATES = frozenset({JobState.QUEUED, JobState.RUNNING})


class ComplianceVerdict(enum.StrEnum):
    PENDING_REVIEW = "PENDING_REVIEW"
    COMPLIANT = "COMPLIANT"
    NON_COMPLIANT = "NON_COMPLIANT"


class AiContent(enum.StrEnum):
    """The creator's own AI declaration (the fallback when the file carries no C2PA manifest)."""

    NONE = "NONE"
    AI_EDITED = "AI_EDITED"
    AI_GENERATED = "AI_GENERATED"


class RegistrationState(enum.StrEnum):
    NOT_REQUESTED = "NOT_REQUESTED"
    PENDING = "PENDING"
    REGISTERED = "REGISTERED"


@dataclass(frozen=True)
class CommercialDeclaration:
    """What the creator says about payment (§ 5a UWG: free products count as payment too)."""

    is_commercial: bool = False
    brand: str = ""
    paid: bool = False
    gifted: bool = False
    affiliate_links: bool = False


@dataclass(frozen=True)
class VideoMetadata:
    caption: str = ""
    hashtags: tuple[str, ...] = ()
    commercial: CommercialDeclaration = field(default_factory=CommercialDeclaration)
    ai_content: AiContent = AiContent.NONE
    product_tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProvenanceClaim:
    """What a C2PA manifest in the file declares (empty when there is none)."""

    manifest_present: bool = False
    valid: bool = False
    trusted: bool = False
    ai_generated: bool = False
    digital_source_types: tuple[str, ...] = ()
    claim_generator: str = ""
    issues: tuple[str, ...] = ()


@dataclass(frozen=True)
class ComplianceOutcome:
    verdict: ComplianceVerdict = ComplianceVerdict.PENDING_REVIEW
    labels: tuple[str, ...] = ()  # what must be shown with the video: "Werbung", "KI-generiert", ...
    findings: tuple[str, ...] = ()
    provenance: ProvenanceClaim = field(default_factory=ProvenanceClaim)


@dataclass(frozen=True)
class RenditionRecord:
    name: str
    width: int
    height: int
    peak_bandwidth: int
    average_bandwidth: int
    codecs: str
    playlist_key: str


@dataclass(frozen=True)
class PublishedMedia:
    """Where a finished job's output lives in the blob store."""

    master_playlist_key: str
    poster_key: str
    thumbnail_keys: tuple[str, ...]
    renditions: tuple[RenditionRecord, ...]
    video_encoder: str


@dataclass(frozen=True)
class Video:
    video_id: str
    creator_id: str
    metadata: VideoMetadata
    state: VideoState
    created_at: dt.datetime
    updated_at: dt.datetime
    progress: float = 0.0
    failure_reason: str = ""
    failure_message: str = ""
    probe: MediaProbe | None = None
    compliance: ComplianceOutcome = field(default_factory=ComplianceOutcome)
    media: PublishedMedia | None = None
    ranking: RegistrationState = RegistrationState.NOT_REQUESTED
    version: int = 1  # bumped by every change, so watchers can tell what is new

    @property
    def name(self) -> str:
        return video_name(self.creator_id, self.video_id)

    @property
    def is_finished(self) -> bool:
        return self.state in TERMINAL_STATES


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


class TranscodeFailure(Exception):
    """A job that can never succeed; `reason` is an UPPER_SNAKE constant for the video record."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def video_name(creator_id: str, video_id: str) -> str:
    """The AIP-122 resource name."""
    return f"creators/{creator_id}/videos/{video_id}"


def source_key(video_id: str) -> str:
    return f"videos/{video_id}/source"


def job_output_prefix(video_id: str, job_id: str) -> str:
    return f"videos/{video_id}/hls/{job_id}/"


def state_after_transcode(verdict: ComplianceVerdict) -> VideoState:
    """Non-compliant content is held, not published; pending review publishes with the declared
    labels and stays flagged for review (it is never recorded as compliant)."""
    return VideoState.HELD if verdict is ComplianceVerdict.NON_COMPLIANT else VideoState.READY


def ensure_can_start_processing(video: Video) -> None:
    if video.state is not VideoState.UPLOADING:
        raise FailedPrecondition(
            f"{video.name} is {video.state}, not UPLOADING", reason="VIDEO_NOT_UPLOADING",
            metadata={"state": video.state.value},
        )


# Jobs handed to Ray this many times without finishing (service restarts mid-job) are failed
# instead of queued again: something about them keeps taking the service down.
MAX_JOB_SUBMISSIONS = 5
