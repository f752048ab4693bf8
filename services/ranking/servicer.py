"""The four ranking gRPC services: handlers that only translate.

Each parses the request (`messages`), checks that the caller may name what it names
(`model.require_self`), calls the use case and maps the answer back. Errors are `libs.errors`
classes, which the kit turns into status codes and google.rpc details.
"""

from __future__ import annotations

from typing import Any

import grpc
from limelight.ranking.v1 import (
    candidates_pb2,
    candidates_pb2_grpc,
    feed_pb2,
    feed_pb2_grpc,
    follows_pb2,
    follows_pb2_grpc,
    signals_pb2,
    signals_pb2_grpc,
)

from libs.clock import Clock
from libs.errors import InvalidArgument
from libs.kit.context import current_principal
from libs.pagination import page_size
from libs.timestamps import to_timestamp
from services.ranking import messages
from services.ranking.explanations import HOW_TO_CHANGE, PARAMETERS, PARAMETERS_VERSION, explain
from services.ranking.model import FeedMode, Viewer, acting, require_self, require_self_or_staff, video_key
from services.ranking.usecases import FeedRequest, Ranking

Call = grpc.aio.ServicerContext[Any, Any]
FOLLOW_PAGE = 100


class CandidateServicer(candidates_pb2_grpc.CandidateServiceServicer):
    def __init__(self, ranking: Ranking) -> None:
        self._ranking = ranking

    async def RegisterVideo(self, request: candidates_pb2.RegisterVideoRequest,
                            context: Call) -> candidates_pb2.RegisterVideoResponse:
        candidate = await self._ranking.register_video(messages.registration(request))
        return candidates_pb2.RegisterVideoResponse(candidate=messages.candidate(candidate))

    async def UnregisterVideo(self, request: candidates_pb2.UnregisterVideoRequest,
                              context: Call) -> candidates_pb2.UnregisterVideoResponse:
        creator, video = messages.video_ids(request.video, field="video")
        removed = await self._ranking.unregister_video(video_key(creator, video),
                                                       messages.removal_reason(request.reason))
        return candidates_pb2.UnregisterVideoResponse(removed=removed)

    async def GetCandidate(self, request: candidates_pb2.GetCandidateRequest,
                           context: Call) -> candidates_pb2.GetCandidateResponse:
        creator, video = messages.video_ids(request.name, field="name", pattern=messages.CANDIDATE)
        candidate = self._ranking.get_candidate(video_key(creator, video), request.name)
        return candidates_pb2.GetCandidateResponse(candidate=messages.candidate(candidate))


class SignalServicer(signals_pb2_grpc.SignalServiceServicer):
    def __init__(self, ranking: Ranking) -> None:
        self._ranking = ranking

    async def RecordSignals(self, request: signals_pb2.RecordSignalsRequest,
                            context: Call) -> signals_pb2.RecordSignalsResponse:
        user = messages.USER.parse(request.viewer, field="viewer")["user"]
        require_self(current_principal(), user, field="viewer", services_may=True)
        outcome = await self._ranking.record_signals(user, messages.signals_in(request))
        return messages.signal_outcome(outcome)

    async def GetLiveEngagement(self, request: signals_pb2.GetLiveEngagementRequest,
                                context: Call) -> signals_pb2.GetLiveEngagementResponse:
        ids = messages.LIVE_ENGAGEMENT.parse(request.name, field="name")
        engagement = await self._ranking.live_engagement(ids["creator"], ids["live"], request.name)
        return signals_pb2.GetLiveEngagementResponse(engagement=messages.live_engagement(engagement))


class FollowServicer(follows_pb2_grpc.FollowServiceServicer):
    def __init__(self, ranking: Ranking) -> None:
        self._ranking = ranking

    async def FollowCreator(self, request: follows_pb2.FollowCreatorRequest,
                            context: Call) -> follows_pb2.FollowCreatorResponse:
        user = messages.USER.parse(request.follower, field="follower")["user"]
        creator = messages.CREATOR.parse(request.creator, field="creator")["creator"]
        require_self(current_principal(), user, field="follower")
        follow = await self._ranking.follow(user, creator)
        return follows_pb2.FollowCreatorResponse(follow=messages.follow(follow))

    async def UnfollowCreator(self, request: follows_pb2.UnfollowCreatorRequest,
                              context: Call) -> follows_pb2.UnfollowCreatorResponse:
        ids = messages.FOLLOW.parse(request.name, field="name")
        require_self(current_principal(), ids["user"], field="name")
        return follows_pb2.UnfollowCreatorResponse(removed=await self._ranking.unfollow(ids["user"], ids["follow"]))

    async def GetFollowStats(self, request: follows_pb2.GetFollowStatsRequest,
                             context: Call) -> follows_pb2.GetFollowStatsResponse:
        creator = messages.FOLLOW_STATS.parse(request.name, field="name")["creator"]
        return follows_pb2.GetFollowStatsResponse(stats=messages.follow_stats(self._ranking.follow_stats(creator)))

    async def ListFollowers(self, request: follows_pb2.ListFollowersRequest,
                            context: Call) -> follows_pb2.ListFollowersResponse:
        creator = messages.CREATOR.parse(request.parent, field="parent")["creator"]
        require_self_or_staff(current_principal(), creator, field="parent")
        limit = page_size(request.page_size, default=FOLLOW_PAGE)
        before = messages.FOLLOWER_TOKENS.decode(request.page_token, bound_to=request.parent, shape=(int, str))
        follows = await self._ranking.followers(
            creator, before=(int(before[0]), str(before[1])) if before else None, limit=limit + 1)
        response = follows_pb2.ListFollowersResponse(follows=[messages.follow(f) for f in follows[:limit]])
        if len(follows) > limit:
            response.next_page_token = messages.FOLLOWER_TOKENS.encode(
                *messages.follow_position(follows[limit - 1], of_follower=True), bound_to=request.parent)
        return response

    async def ListFollowing(self, request: follows_pb2.ListFollowingRequest,
                            context: Call) -> follows_pb2.ListFollowingResponse:
        user = messages.USER.parse(request.parent, field="parent")["user"]
        require_self_or_staff(current_principal(), user, field="parent")
        limit = page_size(request.page_size, default=FOLLOW_PAGE)
        before = messages.FOLLOWING_TOKENS.decode(request.page_token, bound_to=request.parent, shape=(int, str))
        follows = await self._ranking.following(
            user, before=(int(before[0]), str(before[1])) if before else None, limit=limit + 1)
        response = follows_pb2.ListFollowingResponse(follows=[messages.follow(f) for f in follows[:limit]])
        if len(follows) > limit:
            response.next_page_token = messages.FOLLOWING_TOKENS.encode(
                *messages.follow_position(follows[limit - 1], of_follower=False), bound_to=request.parent)
        return response


class FeedServicer(feed_pb2_grpc.FeedServiceServicer):
    def __init__(self, ranking: Ranking, clock: Clock) -> None:
        self._ranking = ranking
        self._clock = clock

    async def GetFeed(self, request: feed_pb2.GetFeedRequest, context: Call) -> feed_pb2.GetFeedResponse:
        user = messages.USER.parse(request.viewer, field="viewer")["user"]
        principal = require_self(current_principal(), user, field="viewer")
        session, page = messages.feed_session(request.page_token, request.viewer)
        viewer = Viewer(user, acting(principal).is_adult_on(self._clock().date()),
                        request.region_code or acting(principal).country)
        feed_page = await self._ranking.get_feed(FeedRequest(
            viewer, messages.feed_mode(request.mode), request.page_size, session, page))
        return messages.feed_page(feed_page, request.viewer)

    async def ExplainFeedItem(self, request: feed_pb2.ExplainFeedItemRequest,
                              context: Call) -> feed_pb2.ExplainFeedItemResponse:
        user, item_id = messages.feed_item_ids(request.name)
        require_self(current_principal(), user, field="name")
        item = await self._ranking.explain(user, item_id, request.name)
        factors, summary = explain(item)
        return feed_pb2.ExplainFeedItemResponse(
            item=messages.feed_item(item), mode=int(item.mode), summary=summary,  # type: ignore[arg-type]
            rank_time=to_timestamp(item.rank_time),
            factors=[feed_pb2.RankingFactor(
                parameter=f"RANKING_PARAMETER_{f.parameter.upper()}",
                contribution=f.contribution, description=f.description) for f in factors])

    async def GetRankingParameters(self, request: feed_pb2.GetRankingParametersRequest,
                                   context: Call) -> feed_pb2.GetRankingParametersResponse:
        return feed_pb2.GetRankingParametersResponse(
            parameters=[feed_pb2.ParameterDescription(
                parameter=f"RANKING_PARAMETER_{p.parameter.upper()}",
                description=p.description,
                relative_importance=p.relative_importance, used_without_profiling=p.used_without_profiling)
                for p in PARAMETERS],
            available_modes=[feed_pb2.FEED_MODE_PERSONALISED, feed_pb2.FEED_MODE_NON_PERSONALISED],
            version=f"{PARAMETERS_VERSION}: {HOW_TO_CHANGE}")

    async def GetFeedSettings(self, request: feed_pb2.GetFeedSettingsRequest,
                              context: Call) -> feed_pb2.GetFeedSettingsResponse:
        user = messages.FEED_SETTINGS.parse(request.name, field="name")["user"]
        require_self(current_principal(), user, field="name")
        return feed_pb2.GetFeedSettingsResponse(settings=messages.feed_settings(self._ranking.feed_settings(user)))

    async def UpdateFeedSettings(self, request: feed_pb2.UpdateFeedSettingsRequest,
                                 context: Call) -> feed_pb2.UpdateFeedSettingsResponse:
        user = messages.FEED_SETTINGS.parse(request.settings.name, field="settings.name")["user"]
        require_self(current_principal(), user, field="settings.name")
        paths = set(request.update_mask.paths) or {"default_mode"}
        if paths != {"default_mode"}:
            raise InvalidArgument.for_field("update_mask", "only default_mode can be changed")
        mode = FeedMode(request.settings.default_mode) if request.settings.default_mode else None
        settings = await self._ranking.update_feed_settings(user, mode)
        return feed_pb2.UpdateFeedSettingsResponse(settings=messages.feed_settings(settings))
