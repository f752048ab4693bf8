"""Ranking end to end: real ranking and compliance servers on loopback, real tokens and consent."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from limelight.compliance.v1 import consent_pb2, consent_pb2_grpc
from limelight.ranking.v1 import candidates_pb2, feed_pb2, follows_pb2, signals_pb2

from libs.auth.principal import Role
from services.ranking.conftest import RankingHarness, signal_of


def bad_request(error: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)
    assert status is not None
    fields = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            request = error_details_pb2.BadRequest()
            detail.Unpack(request)
            fields += [v.field for v in request.field_violations]
    return fields


async def feed(h: RankingHarness, user: str, *, token: str = "", age: int = 30, size: int = 10,
               mode: int = 0) -> feed_pb2.GetFeedResponse:
    return await h.feed.GetFeed(
        feed_pb2.GetFeedRequest(viewer=f"users/{user}", page_size=size, page_token=token, mode=mode),  # type: ignore[arg-type]
        metadata=h.auth(f"users/{user}", age=age))


async def test_registered_video_is_a_candidate_in_the_first_stage(harness: RankingHarness) -> None:
    candidate = await harness.register("bea", "v1", hashtags=("dance",))
    assert candidate.name == "creators/bea/videos/v1/candidate"
    assert candidate.exposure_stage == candidates_pb2.EXPOSURE_STAGE_COHORT
    again = await harness.candidates.GetCandidate(candidates_pb2.GetCandidateRequest(name=candidate.name),
                                                  metadata=harness.service_auth())
    assert again.candidate.video == "creators/bea/videos/v1"


async def test_only_services_register_videos(harness: RankingHarness) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await harness.candidates.RegisterVideo(candidates_pb2.RegisterVideoRequest(), metadata=harness.auth("users/ana"))
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_unknown_viewer_gets_a_non_personalised_feed(harness: RankingHarness) -> None:
    for n in range(5):
        await harness.register(f"c{n}", "v1", hashtags=("food",))
    page = await feed(harness, "nobody")
    assert page.mode == feed_pb2.FEED_MODE_NON_PERSONALISED
    assert page.mode_reason == feed_pb2.FEED_MODE_REASON_NO_CONSENT
    assert len(page.items) == 5


async def test_pages_never_repeat_what_was_shown(harness: RankingHarness) -> None:
    for n in range(25):
        await harness.register(f"c{n % 7}", f"v{n}")
    first = await feed(harness, "ana", size=10)
    second = await feed(harness, "ana", size=10, token=first.next_page_token)
    third = await feed(harness, "ana", size=10, token=second.next_page_token)
    shown = [item.video for page in (first, second, third) for item in page.items]
    assert len(shown) == 25 and len(set(shown)) == 25
    assert not third.next_page_token
    later = await feed(harness, "ana")
    assert not later.items  # a new session does not repeat them either


async def test_a_page_spreads_authors(harness: RankingHarness) -> None:
    for n in range(8):
        await harness.register("prolific", f"v{n}", hashtags=("x",))
    for n in range(4):
        await harness.register(f"other{n}", "v1", hashtags=("y",))
    page = await feed(harness, "ana", size=6)
    authors = [item.creator for item in page.items]
    assert authors.count("creators/prolific") <= 3


async def test_consent_personalises_and_a_signal_changes_the_next_page(harness: RankingHarness) -> None:
    for n in range(6):
        await harness.register(f"cook{n}", "v1", hashtags=("cooking", "food"))
        await harness.register(f"gamer{n}", "v1", hashtags=("gaming", "esports"))
    await harness.consent("ana")
    first = await feed(harness, "ana", size=2)
    assert first.mode_reason == feed_pb2.FEED_MODE_REASON_COLD_START
    outcome = await harness.watch("ana", first.items[0].video, seconds=30)
    assert outcome.recorded_count == 1
    gaming = "gaming" if "gamer" in first.items[0].creator else "cooking"
    liked = signal_of(first.items[0].video, signals_pb2.SIGNAL_TYPE_LIKE)
    await harness.signals.RecordSignals(signals_pb2.RecordSignalsRequest(viewer="users/ana", signals=[liked]),
                                        metadata=harness.auth("users/ana"))
    page = await feed(harness, "ana", size=4)
    assert page.mode == feed_pb2.FEED_MODE_PERSONALISED
    same_topic = sum(1 for item in page.items if ("gamer" in item.creator) == (gaming == "gaming"))
    assert same_topic >= 3, [item.creator for item in page.items]


async def test_explanations_name_the_source_and_the_weighed_engagements(harness: RankingHarness) -> None:
    await harness.register("bea", "v1", hashtags=("dance",))
    page = await feed(harness, "ana")
    explained = await harness.feed.ExplainFeedItem(feed_pb2.ExplainFeedItemRequest(name=page.items[0].name),
                                                   metadata=harness.auth("users/ana"))
    assert explained.item.video == "creators/bea/videos/v1"
    assert explained.factors and explained.summary.startswith("Shown because")
    assert {f.parameter for f in explained.factors} & {feed_pb2.RANKING_PARAMETER_WATCH_TIME,
                                                       feed_pb2.RANKING_PARAMETER_NEGATIVE_FEEDBACK}
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await harness.feed.ExplainFeedItem(feed_pb2.ExplainFeedItemRequest(name=page.items[0].name),
                                           metadata=harness.auth("users/eve"))
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_signals_are_idempotent_and_unknown_videos_are_dropped_with_a_reason(harness: RankingHarness) -> None:
    await harness.register("bea", "v1")
    event = str(uuid.uuid4())
    first = await harness.watch("ana", "creators/bea/videos/v1", seconds=20, event_id=event)
    retry = await harness.watch("ana", "creators/bea/videos/v1", seconds=20, event_id=event)
    assert (first.recorded_count, retry.recorded_count, retry.duplicate_count) == (1, 0, 1)
    unknown = await harness.watch("ana", "creators/bea/videos/nope", seconds=20)
    assert unknown.recorded_count == 0
    assert [(d.index, d.reason) for d in unknown.dropped] == [(0, "VIDEO_NOT_REGISTERED")]


async def test_a_malformed_signal_names_its_index_and_field(harness: RankingHarness) -> None:
    good = signal_of("creators/bea/videos/v1", signals_pb2.SIGNAL_TYPE_LIKE)
    bad = signal_of("creators/bea/videos/v1", signals_pb2.SIGNAL_TYPE_WATCH)  # WATCH without watch_time
    bad.event_id = "not-a-uuid"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await harness.signals.RecordSignals(signals_pb2.RecordSignalsRequest(viewer="users/ana", signals=[good, bad]),
                                            metadata=harness.auth("users/ana"))
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "signals[1].event_id" in bad_request(refused.value)


async def test_impossible_watch_times_and_bursts_are_discounted(harness: RankingHarness) -> None:
    await harness.register("bea", "v1", seconds=10)
    impossible = await harness.watch("bot", "creators/bea/videos/v1", seconds=600)
    assert (impossible.recorded_count, impossible.discounted_count) == (0, 1)
    likes = [signal_of("creators/bea/videos/v1", signals_pb2.SIGNAL_TYPE_LIKE) for _ in range(30)]
    burst = await harness.signals.RecordSignals(signals_pb2.RecordSignalsRequest(viewer="users/bot", signals=likes),
                                                metadata=harness.auth("users/bot"))
    assert burst.discounted_count == 30 - harness.service.config.bots.burst_limit
    candidate = harness.service.catalogue.get("bea/v1")
    assert candidate is not None and candidate.counts.likes == harness.service.config.bots.burst_limit


async def test_follows_counts_and_lists(harness: RankingHarness) -> None:
    for user in ("ana", "ben", "cem"):
        await harness.follows.FollowCreator(follows_pb2.FollowCreatorRequest(
            follower=f"users/{user}", creator="creators/bea"), metadata=harness.auth(f"users/{user}"))
    again = await harness.follows.FollowCreator(follows_pb2.FollowCreatorRequest(
        follower="users/ana", creator="creators/bea"), metadata=harness.auth("users/ana"))
    assert again.follow.name == "users/ana/follows/bea"
    stats = await harness.follows.GetFollowStats(follows_pb2.GetFollowStatsRequest(name="creators/bea/followStats"),
                                                 metadata=harness.service_auth("gifts"))
    assert stats.stats.follower_count == 3
    page = await harness.follows.ListFollowers(follows_pb2.ListFollowersRequest(parent="creators/bea", page_size=2),
                                               metadata=harness.auth("users/bea"))
    rest = await harness.follows.ListFollowers(follows_pb2.ListFollowersRequest(
        parent="creators/bea", page_size=2, page_token=page.next_page_token), metadata=harness.auth("users/bea"))
    assert sorted(f.follower for f in [*page.follows, *rest.follows]) == ["users/ana", "users/ben", "users/cem"]
    removed = await harness.follows.UnfollowCreator(follows_pb2.UnfollowCreatorRequest(name="users/ana/follows/bea"),
                                                    metadata=harness.auth("users/ana"))
    assert removed.removed
    following = await harness.follows.ListFollowing(follows_pb2.ListFollowingRequest(parent="users/ben"),
                                                    metadata=harness.auth("users/ben"))
    assert [f.creator for f in following.follows] == ["creators/bea"]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await harness.follows.FollowCreator(follows_pb2.FollowCreatorRequest(
            follower="users/ana", creator="creators/ana"), metadata=harness.auth("users/ana"))
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_non_personalised_setting_is_respected_even_with_consent(harness: RankingHarness) -> None:
    await harness.register("bea", "v1")
    await harness.consent("ana")
    await harness.watch("ana", "creators/bea/videos/v1", seconds=30)
    await harness.register("bea", "v2")
    updated = await harness.feed.UpdateFeedSettings(feed_pb2.UpdateFeedSettingsRequest(
        settings=feed_pb2.FeedSettings(name="users/ana/feedSettings",
                                       default_mode=feed_pb2.FEED_MODE_NON_PERSONALISED)),
        metadata=harness.auth("users/ana"))
    assert updated.settings.default_mode == feed_pb2.FEED_MODE_NON_PERSONALISED
    page = await feed(harness, "ana")
    assert (page.mode, page.mode_reason) == (feed_pb2.FEED_MODE_NON_PERSONALISED,
                                             feed_pb2.FEED_MODE_REASON_VIEWER_SETTING)
    asked = await feed(harness, "ana", mode=feed_pb2.FEED_MODE_PERSONALISED)
    assert asked.mode == feed_pb2.FEED_MODE_PERSONALISED


async def test_minors_see_no_unsuitable_content_and_held_videos_leave_the_feed(harness: RankingHarness) -> None:
    await harness.register("bea", "adult", unsuitable_for_minors=True)
    await harness.register("bea", "held")
    await harness.register("bea", "fine", labels=("Werbung",), commercial=True)
    await harness.candidates.UnregisterVideo(candidates_pb2.UnregisterVideoRequest(
        video="creators/bea/videos/held", reason=candidates_pb2.REMOVAL_REASON_COMPLIANCE_HOLD),
        metadata=harness.auth("users/officer", Role.COMPLIANCE_OFFICER))
    teen = await feed(harness, "teen", age=15)
    assert [item.video for item in teen.items] == ["creators/bea/videos/fine"]
    assert list(teen.items[0].labels) == ["Werbung"] and teen.items[0].commercial
    grown = await feed(harness, "grown")
    assert sorted(item.video for item in grown.items) == ["creators/bea/videos/adult", "creators/bea/videos/fine"]


async def test_live_signals_count_into_the_live_engagement(harness: RankingHarness) -> None:
    live = "creators/bea/lives/l1"
    signals = [signal_of("", signals_pb2.SIGNAL_TYPE_LIVE_JOIN, live=live),
               signal_of("", signals_pb2.SIGNAL_TYPE_LIVE_CHAT, live=live),
               signal_of("", signals_pb2.SIGNAL_TYPE_LIVE_VIEW, live=live, seconds=120)]
    recorded = await harness.signals.RecordSignals(signals_pb2.RecordSignalsRequest(viewer="users/ana",
                                                                                    signals=signals),
                                                   metadata=harness.service_auth("gifts"))
    assert recorded.recorded_count == 3
    engagement = await harness.signals.GetLiveEngagement(
        signals_pb2.GetLiveEngagementRequest(name=f"{live}/engagement"), metadata=harness.auth("users/ana"))
    assert (engagement.engagement.join_count, engagement.engagement.chat_count) == (1, 1)
    assert engagement.engagement.view_time.seconds == 120 and engagement.engagement.engagement_velocity > 4.9


async def test_ranking_parameters_are_public_and_sum_to_one(harness: RankingHarness) -> None:
    response = await harness.feed.GetRankingParameters(feed_pb2.GetRankingParametersRequest())
    assert abs(sum(p.relative_importance for p in response.parameters) - 1.0) < 1e-9
    assert feed_pb2.FEED_MODE_NON_PERSONALISED in response.available_modes


async def test_personalised_ads_need_consent(harness: RankingHarness) -> None:
    await harness.consent("ana")
    await harness.consent("ana", consent_pb2.CONSENT_PURPOSE_PERSONALISED_ADS)
    await harness.register("brand", "ad1", commercial=True, labels=("Werbung",), ad="ads/a1")
    page = await feed(harness, "ana")
    assert page.items[0].ad == "ads/a1"


async def test_a_consent_withdrawn_mid_session_applies_to_the_next_page(harness: RankingHarness) -> None:
    for n in range(30):
        await harness.register(f"c{n}", "v1", hashtags=("x",))
    await harness.consent("ana")
    await harness.watch("ana", "creators/c0/videos/v1", seconds=30)
    first = await feed(harness, "ana", size=5)
    assert first.mode == feed_pb2.FEED_MODE_PERSONALISED
    withdraw = consent_pb2.WithdrawConsentRequest(parent="users/ana", request_id=str(uuid.uuid4()),
                                                  purpose=consent_pb2.CONSENT_PURPOSE_PERSONALISED_CONTENT,
                                                  source="test")
    await consent_pb2_grpc.ConsentServiceStub(harness.compliance_channel).WithdrawConsent(
        withdraw, metadata=harness.auth("users/ana"))
    token = first.next_page_token
    for _ in range(100):  # the cache hears of the withdrawal over compliance's change stream
        page = await feed(harness, "ana", size=1, token=token)
        if page.mode == feed_pb2.FEED_MODE_NON_PERSONALISED:
            break
        token = page.next_page_token
        await asyncio.sleep(0.02)
    assert (page.mode, page.mode_reason) == (feed_pb2.FEED_MODE_NON_PERSONALISED, feed_pb2.FEED_MODE_REASON_NO_CONSENT)
