"""Ranking domain values to and from limelight.ranking.v1 messages: names, enums, times, tokens."""

from __future__ import annotations

import datetime as dt

from google.protobuf.duration_pb2 import Duration
from limelight.ranking.v1 import candidates_pb2, feed_pb2, follows_pb2, signals_pb2

from libs.errors import InvalidArgument
from libs.pagination import PageTokens
from libs.resource_names import ResourcePattern
from libs.timestamps import epoch_us, from_timestamp, to_timestamp
from services.ranking.model import (
    Candidate,
    FeedMode,
    FeedPage,
    FeedSettings,
    Follow,
    FollowStats,
    LiveEngagement,
    RemovalReason,
    ShownItem,
    SignalIn,
    SignalKind,
    SignalOutcome,
    VideoRegistration,
)

VIDEO = ResourcePattern("creators/{creator}/videos/{video}")
CANDIDATE = ResourcePattern("creators/{creator}/videos/{video}/candidate")
LIVE = ResourcePattern("creators/{creator}/lives/{live}")
LIVE_ENGAGEMENT = ResourcePattern("creators/{creator}/lives/{live}/engagement")
USER = ResourcePattern("users/{user}")
CREATOR = ResourcePattern("creators/{creator}")
FOLLOW = ResourcePattern("users/{user}/follows/{follow}")
FOLLOW_STATS = ResourcePattern("creators/{creator}/followStats")
FEED_SETTINGS = ResourcePattern("users/{user}/feedSettings")
FEED_ITEM_PREFIX = "/feedItems/"

FEED_TOKENS = PageTokens("ranking.GetFeed")
FOLLOWER_TOKENS = PageTokens("ranking.ListFollowers")
FOLLOWING_TOKENS = PageTokens("ranking.ListFollowing")


def _duration(seconds: float) -> Duration:
    duration = Duration()
    duration.FromTimedelta(dt.timedelta(seconds=seconds))
    return duration


# -- candidates ---------------------------------------------------------------------------------


def registration(request: candidates_pb2.RegisterVideoRequest) -> VideoRegistration:
    ids = VIDEO.parse(request.video, field="video")
    return VideoRegistration(
        creator=ids["creator"], video=ids["video"], duration=request.duration.ToTimedelta(),
        hashtags=tuple(request.hashtags), labels=tuple(request.labels), commercial=request.commercial,
        language=request.language_code, region=request.region_code,
        publish_time=from_timestamp(request.publish_time, field="publish_time"),
        unsuitable_for_minors=request.unsuitable_for_minors, ad=request.ad)


def video_ids(name: str, *, field: str, pattern: ResourcePattern = VIDEO) -> tuple[str, str]:
    ids = pattern.parse(name, field=field)
    return ids["creator"], ids["video"]


def removal_reason(value: int) -> RemovalReason:
    return RemovalReason(value)


def candidate(value: Candidate) -> candidates_pb2.Candidate:
    r = value.registration
    return candidates_pb2.Candidate(
        name=CANDIDATE.format(creator=r.creator, video=r.video), video=VIDEO.format(creator=r.creator, video=r.video),
        exposure_stage=int(value.stage), impressions=value.counts.impressions,  # type: ignore[arg-type]
        engagement_velocity=value.velocity, register_time=to_timestamp(value.register_time))


# -- signals ------------------------------------------------------------------------------------


def signals_in(request: signals_pb2.RecordSignalsRequest) -> list[SignalIn]:
    parsed = []
    for index, signal in enumerate(request.signals):
        kind = SignalKind(signal.type)
        target = signal.WhichOneof("target")
        pattern = LIVE if target == "live" else VIDEO
        ids = pattern.parse(getattr(signal, target or "video"), field=f"signals[{index}].{target or 'video'}")
        parsed.append(SignalIn(
            index=index, event_id=signal.event_id, kind=kind, target_creator=ids["creator"],
            target_id=ids.get("video") or ids["live"],
            occur_time=from_timestamp(signal.occur_time, field=f"signals[{index}].occur_time"),
            watch_time=signal.watch_time.ToTimedelta() if signal.HasField("watch_time") else None,
            feed_item=signal.feed_item, report_reason=signal.report_reason, report_details=signal.report_details))
    return parsed


def signal_outcome(outcome: SignalOutcome) -> signals_pb2.RecordSignalsResponse:
    return signals_pb2.RecordSignalsResponse(
        recorded_count=outcome.recorded, duplicate_count=outcome.duplicates, discounted_count=outcome.discounted,
        dropped=[signals_pb2.DroppedSignal(index=d.index, event_id=d.event_id, reason=d.reason)
                 for d in outcome.dropped])


def live_engagement(value: LiveEngagement) -> signals_pb2.LiveEngagement:
    message = signals_pb2.LiveEngagement(
        name=LIVE_ENGAGEMENT.format(creator=value.creator, live=value.live), join_count=value.joins,
        view_time=_duration(value.view_seconds), chat_count=value.chats, gift_count=value.gifts,
        engagement_velocity=value.velocity)
    if value.update_time is not None:
        message.update_time.CopyFrom(to_timestamp(value.update_time))
    return message


# -- follows ------------------------------------------------------------------------------------


def follow(value: Follow) -> follows_pb2.Follow:
    return follows_pb2.Follow(
        name=FOLLOW.format(user=value.follower, follow=value.creator), follower=USER.format(user=value.follower),
        creator=CREATOR.format(creator=value.creator), create_time=to_timestamp(value.create_time))


def follow_stats(value: FollowStats) -> follows_pb2.FollowStats:
    return follows_pb2.FollowStats(
        name=FOLLOW_STATS.format(creator=value.creator), follower_count=value.follower_count,
        following_count=value.following_count, compute_time=to_timestamp(value.compute_time))


def follow_position(value: Follow, *, of_follower: bool) -> tuple[int, str]:
    return epoch_us(value.create_time), value.follower if of_follower else value.creator


# -- the feed -------------------------------------------------------------------------------------


def feed_mode(value: int) -> FeedMode | None:
    return FeedMode(value) if value else None


def feed_session(token: str, viewer: str) -> tuple[str | None, int]:
    """(session, page) from a GetFeed page token; (None, 0) for a new session."""
    position = FEED_TOKENS.decode(token, bound_to=viewer, shape=(str, int))
    if position is None:
        return None, 0
    session, page = position
    return str(session), int(page)


def feed_item_name(item: ShownItem) -> str:
    return f"users/{item.viewer}{FEED_ITEM_PREFIX}{item.item_id}"


def feed_item_ids(name: str) -> tuple[str, str]:
    user_part, _, item_id = name.partition(FEED_ITEM_PREFIX)
    ids = USER.parse(user_part, field="name")
    if not item_id:
        raise InvalidArgument.for_field("name", "expected users/{user}/feedItems/{feed_item}",
                                        reason="RESOURCE_NAME_INVALID")
    return ids["user"], item_id


def feed_item(item: ShownItem) -> feed_pb2.FeedItem:
    return feed_pb2.FeedItem(
        name=feed_item_name(item), video=VIDEO.format(creator=item.creator, video=item.video),
        creator=CREATOR.format(creator=item.creator), position=item.position, labels=list(item.labels),
        commercial=item.commercial, ad=item.ad)


def feed_page(page: FeedPage, viewer: str) -> feed_pb2.GetFeedResponse:
    response = feed_pb2.GetFeedResponse(items=[feed_item(item) for item in page.items], mode=int(page.mode),  # type: ignore[arg-type]
                                        mode_reason=int(page.reason))  # type: ignore[arg-type]
    if page.more:
        response.next_page_token = FEED_TOKENS.encode(page.session, page.page + 1, bound_to=viewer)
    return response


def feed_settings(value: FeedSettings) -> feed_pb2.FeedSettings:
    message = feed_pb2.FeedSettings(name=FEED_SETTINGS.format(user=value.user),
                                    default_mode=int(value.default_mode or 0))  # type: ignore[arg-type]
    if value.update_time is not None:
        message.update_time.CopyFrom(to_timestamp(value.update_time))
    return message
