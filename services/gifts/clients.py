"""Gifts' calls to other services, through the kit's clients: the adapter of one port.

- `RankingFollowerCounts` (`servicer.FollowerCounts`): a creator's follower count from ranking's
  `FollowService.GetFollowStats`, which LIVE eligibility reads instead of the admin-set count.
  When ranking cannot answer (down, starting, overloaded) the answer is None and the admin-set
  count decides, so LIVE keeps working while ranking is away.
"""

from __future__ import annotations

import logging

import grpc
from limelight.ranking.v1 import follows_pb2, follows_pb2_grpc

from libs.kit.clients import ServiceClients

logger = logging.getLogger(__name__)

TIMEOUT_S = 1.0


class RankingFollowerCounts:
    def __init__(self, clients: ServiceClients) -> None:
        self._clients = clients

    async def follower_count(self, creator: str) -> int | None:
        stub = self._clients.stub("ranking", follows_pb2_grpc.FollowServiceStub)
        try:
            response = await stub.GetFollowStats(
                follows_pb2.GetFollowStatsRequest(name=f"creators/{creator}/followStats"), timeout=TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            logger.warning("ranking gave no follower count for %s (%s): the admin-set count decides",
                           creator, error.code().name)
            return None
        return int(response.stats.follower_count)
