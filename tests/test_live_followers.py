"""Gifts' LIVE eligibility reads follower counts from ranking: real compliance, ranking and gifts servers.

The admin-set count in gifts says plenty; ranking's follow graph decides, so a creator goes
LIVE once enough real users follow them there, and not before.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from limelight.gifts.v1 import live_pb2, live_pb2_grpc, standing_pb2, standing_pb2_grpc
from limelight.ranking.v1 import follows_pb2, follows_pb2_grpc

from libs.auth.principal import Role, birth_date_for_age
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.kit.server import RunningService, ServiceDefinition, ServiceRuntime, start_service
from services.compliance.server import build as build_compliance
from services.gifts.config import GiftsConfig
from services.gifts.model.live import LivePolicy
from services.gifts.server import GiftsService
from services.ranking.config import RankingConfig
from services.ranking.server import build as build_ranking_with

NEEDED = 3


@pytest.fixture
async def servers(tmp_path: Path) -> AsyncIterator[dict[str, RunningService]]:
    running: dict[str, RunningService] = {}
    config = dataclasses.replace(GiftsConfig(), live=LivePolicy(min_followers=NEEDED), ledger_in_process=True,
                                 ship_audit=False)

    def build_gifts(runtime: ServiceRuntime) -> ServiceDefinition:
        return GiftsService(runtime, config=config).definition()

    def build_ranking(runtime: ServiceRuntime) -> ServiceDefinition:  # follows need no scoring actors
        return build_ranking_with(runtime, dataclasses.replace(RankingConfig(), scorer="in-process"))

    try:
        running["compliance"] = await start_service("compliance", build_compliance, port=0, data_root=tmp_path)
        targets = {"compliance": running["compliance"].target}
        running["ranking"] = await start_service("ranking", build_ranking, port=0, data_root=tmp_path,
                                                 targets=dict(targets))
        targets["ranking"] = running["ranking"].target
        running["gifts"] = await start_service("gifts", build_gifts, port=0, data_root=tmp_path, targets=targets)
        yield running
    finally:
        for service in reversed(list(running.values())):
            await service.stop(grace=1)


def auth(root: Path, subject: str, *roles: Role) -> tuple[tuple[str, str], ...]:
    claims = TokenClaims(subject, frozenset(roles or {Role.VIEWER, Role.CREATOR}),
                         birth_date=birth_date_for_age(30, dt.date.today()), country="DE")
    return (("authorization", f"Bearer {mint_token(platform_signing_key(root), claims, ttl=dt.timedelta(hours=1))}"),)


async def test_live_eligibility_counts_the_followers_ranking_knows(servers: dict[str, RunningService],
                                                                   tmp_path: Path) -> None:
    async with grpc.aio.insecure_channel(servers["gifts"].target) as gifts, \
            grpc.aio.insecure_channel(servers["ranking"].target) as ranking:
        standing = standing_pb2_grpc.AccountStandingServiceStub(gifts)
        update = standing_pb2.UpdateAccountStandingRequest(standing=standing_pb2.AccountStanding(
            name="users/star/standing", follower_count=50_000))
        update.update_mask.paths.append("follower_count")
        await standing.UpdateAccountStanding(update, metadata=auth(tmp_path, "users/ops", Role.ADMIN))
        live = live_pb2_grpc.LiveServiceStub(gifts)
        star = auth(tmp_path, "users/star")
        before = await live.GetLiveEligibility(live_pb2.GetLiveEligibilityRequest(creator="creators/star"),
                                               metadata=star)
        assert not before.can_go_live  # 50,000 set by an admin, but nobody follows the star in ranking
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await live.StartLive(live_pb2.StartLiveRequest(parent="creators/star", request_id=str(uuid.uuid4()),
                                                           title="hello"), metadata=star)
        assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION

        follows = follows_pb2_grpc.FollowServiceStub(ranking)
        for n in range(NEEDED):
            await follows.FollowCreator(follows_pb2.FollowCreatorRequest(
                follower=f"users/fan{n}", creator="creators/star"), metadata=auth(tmp_path, f"users/fan{n}"))
        after = await live.GetLiveEligibility(live_pb2.GetLiveEligibilityRequest(creator="creators/star"),
                                              metadata=star)
        assert after.can_go_live
        started = await live.StartLive(live_pb2.StartLiveRequest(parent="creators/star",
                                                                 request_id=str(uuid.uuid4()), title="hello"),
                                       metadata=star)
        assert started.live_session.name.startswith("creators/star/lives/")
