"""Ingest's calls to other services, through the kit's clients: the adapters of two ports.

- `ComplianceClient` (`ComplianceChecker`): both verdicts from compliance's DisclosureService.
- `RankingClient` (`RankingRegistrar`): a published video to ranking's CandidateService.
- `AdRepositoryClient` (`AdRepository`): published commercial content to compliance's
  AdRepositoryService (DSA Art. 26, 39).

An answer the other side cannot give yet (UNIMPLEMENTED, UNAVAILABLE, a deadline,
overload) leaves a verdict pending or a registration owed, never approved or dropped: the
use cases ask again later.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable
from typing import TypeVar

import grpc
from limelight.compliance.v1 import ads_pb2_grpc, disclosure_pb2_grpc
from limelight.ranking.v1 import candidates_pb2_grpc

from libs.errors import Unavailable
from libs.kit.clients import ServiceClients
from services.ingest import messages
from services.ingest.model import C2paEvidence, ComplianceReview, Video, VideoMetadata

logger = logging.getLogger(__name__)

# Answers that mean "ask again later", not "no".
NOT_YET = frozenset({grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNAVAILABLE,
                     grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED})

R = TypeVar("R")


class ComplianceClient:
    """Both compliance verdicts through DisclosureService; a verdict it cannot give stays pending."""

    def __init__(self, clients: ServiceClients) -> None:
        self._clients = clients

    async def review(self, video_name: str, metadata: VideoMetadata, c2pa: C2paEvidence,
                     reviewed_at: dt.datetime) -> ComplianceReview:
        stub = self._clients.stub("compliance", disclosure_pb2_grpc.DisclosureServiceStub)
        disclosure, ai = await asyncio.gather(
            _answer(stub.EvaluateDisclosure(messages.disclosure_request(video_name, metadata))),
            _answer(stub.AssessAiContent(messages.ai_assessment_request(video_name, metadata, c2pa))),
        )
        return messages.review_in(disclosure, ai, reviewed_at)


class RankingClient:
    """Registers a published video as a feed candidate; 'not yet' answers are retried later."""

    def __init__(self, clients: ServiceClients) -> None:
        self._clients = clients

    async def register(self, video: Video) -> None:
        stub = self._clients.stub("ranking", candidates_pb2_grpc.CandidateServiceStub)
        try:
            await stub.RegisterVideo(messages.registration_request(video))
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.ALREADY_EXISTS:
                return  # registered by an earlier attempt whose answer was lost
            if error.code() not in NOT_YET:
                logger.error("ranking refused %s: %s %s", video.name, error.code().name, error.details())
            raise Unavailable(f"ranking answered {error.code().name}", reason="RANKING_NOT_READY") from None


class AdRepositoryClient:
    """Registers published commercial content in the ad repository; idempotent per video."""

    def __init__(self, clients: ServiceClients) -> None:
        self._clients = clients

    async def register(self, video: Video) -> str:
        stub = self._clients.stub("compliance", ads_pb2_grpc.AdRepositoryServiceStub)
        try:
            response = await stub.RegisterAd(messages.ad_request(video))
        except grpc.aio.AioRpcError as error:
            if error.code() not in NOT_YET:
                logger.error("the ad repository refused %s: %s %s", video.name, error.code().name, error.details())
            raise Unavailable(f"the ad repository answered {error.code().name}", reason="AD_REPOSITORY_NOT_READY") \
                from None
        return response.ad.name


async def _answer(call: Awaitable[R]) -> R | None:
    """The response, or None when compliance cannot answer (yet): the verdict stays pending."""
    try:
        return await call
    except grpc.aio.AioRpcError as error:
        if error.code() not in NOT_YET:
            logger.error("compliance refused a review: %s %s", error.code().name, error.details())
        return None
