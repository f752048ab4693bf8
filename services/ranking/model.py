"""What ranking knows: candidates, engagement signals, follows, feed settings and feed items.

Pure domain values and rules, no I/O. The numbers that decide a feed (task weights, policy
multipliers) live in `scoring.py` and `policy.py`; this module holds the entities they read.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field

from libs.auth.principal import Principal, Role
from libs.errors import InvalidArgument, PermissionDenied


class ExposureStage(enum.IntEnum):
    """How widely a video is shown (staged exposure, BRIEF §4 Ranking)."""

    COHORT = 1
    EXPANDED = 2
    BROAD = 3
    DEMOTED = 4


class RemovalReason(enum.IntEnum):
    DELETED_BY_CREATOR = 1
    COMPLIANCE_HOLD = 2
    TAKEN_DOWN = 3
    ERASURE = 4


class SignalKind(enum.IntEnum):
    """The proto's SignalType, same numbers."""

    WATCH = 1
    REPLAY = 2
    LIKE = 3
    COMMENT = 4
    SHARE = 5
    SAVE = 6
    SKIP = 7
    NOT_INTERESTED = 8
    REPORT = 9
    LIVE_JOIN = 10
    LIVE_VIEW = 11
    LIVE_CHAT = 12
    LIVE_GIFT = 13

    @property
    def targets_live(self) -> bool:
        return self >= SignalKind.LIVE_JOIN


class FeedMode(enum.IntEnum):
    PERSONALISED = 1
    NON_PERSONALISED = 2


class FeedModeReason(enum.IntEnum):
    REQUESTED = 1
    VIEWER_SETTING = 2
    NO_CONSENT = 3
    COLD_START = 4


class Source(enum.StrEnum):
    """Which candidate generator proposed an item (ExplainFeedItem names it)."""

    NEAREST_NEIGHBOURS = "nearest_neighbours"
    FRESH = "fresh"
    TRENDING = "trending"
    FOLLOWING = "following"
    REGIONAL_POPULAR = "regional_popular"
    WORLDWIDE_POPULAR = "worldwide_popular"


# Why a signal was not recorded (RecordSignalsResponse.dropped[].reason).
VIDEO_NOT_REGISTERED = "VIDEO_NOT_REGISTERED"
VIDEO_REMOVED = "VIDEO_REMOVED"

# Why a signal was recorded but discounted (kept for audit, never counted).
IMPOSSIBLE_WATCH_TIME = "IMPOSSIBLE_WATCH_TIME"
BURST = "BURST"
ACCOUNT_FLAGGED = "ACCOUNT_FLAGGED"


def video_key(creator: str, video: str) -> str:
    """`creator/video`: one string key per video, for maps and the ANN index's id table."""
    return f"{creator}/{video}"


@dataclass(frozen=True)
class VideoRegistration:
    """What ingest tells ranking about a published video."""

    creator: str
    video: str
    duration: dt.timedelta
    hashtags: tuple[str, ...]
    labels: tuple[str, ...]
    commercial: bool
    language: str
    region: str
    publish_time: dt.datetime
    unsuitable_for_minors: bool = False
    ad: str = ""

    @property
    def key(self) -> str:
        return video_key(self.creator, self.video)


@dataclass
class EngagementCounts:
    """A video's (or a LIVE's) counted engagement; bot-like signals never reach it."""

    impressions: int = 0
    views: int = 0
    completions: int = 0
    watch_seconds: float = 0.0
    replays: int = 0
    likes: int = 0
    comments: int = 0
    shares: int = 0
    saves: int = 0
    follows: int = 0
    skips: int = 0
    not_interested: int = 0
    reports: int = 0

    def engagement(self) -> float:
        """Positive engagement units, deep engagement above likes (the velocity's numerator)."""
        return (self.completions + 0.5 * self.likes + 2.0 * (self.comments + self.shares + self.saves)
                + self.follows + self.replays)

    def negative(self) -> float:
        return 0.3 * self.skips + self.not_interested + 5.0 * self.reports


@dataclass
class Candidate:
    registration: VideoRegistration
    register_time: dt.datetime
    stage: ExposureStage = ExposureStage.COHORT
    counts: EngagementCounts = field(default_factory=EngagementCounts)
    velocity: float = 0.0
    removed: RemovalReason | None = None

    @property
    def key(self) -> str:
        return self.registration.key


@dataclass(frozen=True)
class SignalIn:
    """One signal as received; `index` is its place in the batch (for errors and drops)."""

    index: int
    event_id: str
    kind: SignalKind
    target_creator: str
    target_id: str  # the video or the LIVE id
    occur_time: dt.datetime
    watch_time: dt.timedelta | None
    feed_item: str
    report_reason: int
    report_details: str

    @property
    def target_key(self) -> str:
        return video_key(self.target_creator, self.target_id)


@dataclass(frozen=True)
class StoredSignal:
    """A signal as the store keeps it; `discount_reason` '' when counted."""

    event_id: str
    viewer: str
    kind: SignalKind
    target: str  # `creator/video` or `creator/live`
    occur_time: dt.datetime
    watch_seconds: float
    report_reason: int
    report_details_sealed: bytes | None
    discount_reason: str
    record_time: dt.datetime


@dataclass(frozen=True)
class DroppedSignal:
    index: int
    event_id: str
    reason: str


@dataclass(frozen=True)
class SignalOutcome:
    recorded: int
    duplicates: int
    discounted: int
    dropped: tuple[DroppedSignal, ...]


@dataclass(frozen=True)
class Follow:
    follower: str
    creator: str
    create_time: dt.datetime


@dataclass(frozen=True)
class FollowStats:
    creator: str
    follower_count: int
    following_count: int
    compute_time: dt.datetime


@dataclass(frozen=True)
class FeedSettings:
    user: str
    default_mode: FeedMode | None
    update_time: dt.datetime | None


@dataclass(frozen=True)
class LiveEngagement:
    creator: str
    live: str
    joins: int
    view_seconds: float
    chats: int
    gifts: int
    velocity: float
    update_time: dt.datetime | None


@dataclass(frozen=True)
class Adjustment:
    """One policy step applied to an item's score: a multiplier with its reason."""

    parameter: str  # a RankingParameter name without prefix: "diversity", "freshness", ...
    multiplier: float
    description: str


@dataclass(frozen=True)
class ShownItem:
    """One item of a page as ranked: what ExplainFeedItem later explains."""

    item_id: str
    viewer: str
    creator: str
    video: str
    position: int
    mode: FeedMode
    sources: tuple[Source, ...]
    predictions: dict[str, float]
    contributions: dict[str, float]
    adjustments: tuple[Adjustment, ...]
    score: float
    labels: tuple[str, ...]
    commercial: bool
    ad: str
    rank_time: dt.datetime


@dataclass(frozen=True)
class FeedPage:
    items: tuple[ShownItem, ...]
    mode: FeedMode
    reason: FeedModeReason
    session: str
    page: int
    more: bool


@dataclass(frozen=True)
class Viewer:
    """Who the feed is for, as the token says (never the request)."""

    user: str
    adult: bool
    region: str


def require_not_self_follow(follower: str, creator: str) -> None:
    if follower == creator:
        raise InvalidArgument.for_field("creator", "a user cannot follow themself", reason="SELF_FOLLOW")


def acting(principal: Principal) -> Principal:
    """The user a call acts for: a service acting for a user speaks with the user's identity and age."""
    return principal.on_behalf_of or principal


def require_self(principal: Principal, user_id: str, *, field: str, services_may: bool = False) -> Principal:
    """The acting user, who must be `user_id`; with `services_may`, any verified service may name
    a user (gifts' LIVE rooms report their viewers' activity), and admins always may."""
    user = acting(principal)
    if user.user_id == user_id or principal.has_role(Role.ADMIN) or (services_may and principal.is_service):
        return user
    raise PermissionDenied(f"{field} must name the caller", reason="NOT_OWNER", metadata={"field": field})


def require_self_or_staff(principal: Principal, user_id: str, *, field: str) -> None:
    if acting(principal).user_id == user_id or principal.has_role(Role.ADMIN, Role.SERVICE,
                                                                    Role.COMPLIANCE_OFFICER):
        return
    raise PermissionDenied(f"{field} names another user's records", reason="NOT_OWNER", metadata={"field": field})
