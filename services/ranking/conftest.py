"""Fixtures for the ranking tests: real compliance and ranking servers on loopback, tokens for anyone."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from limelight.compliance.v1 import consent_pb2, consent_pb2_grpc
from limelight.ranking.v1 import (
    candidates_pb2,
    candidates_pb2_grpc,
    feed_pb2_grpc,
    follows_pb2_grpc,
    signals_pb2,
    signals_pb2_grpc,
)

from libs.auth.principal import Role, birth_date_for_age
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.kit.server import RunningService, ServiceDefinition, ServiceRuntime, start_service
from libs.storage.testing import database_engine, postgres_server  # noqa: F401
from libs.timestamps import to_timestamp
from services.compliance.server import build as build_compliance
from services.ranking.config import RankingConfig
from services.ranking.server import RankingService

Metadata = tuple[tuple[str, str], ...]
IN_PROCESS = dataclasses.replace(RankingConfig(), scorer="in-process")


@dataclass
class RankingHarness:
    root: Path
    compliance: RunningService
    ranking: RunningService
    service: RankingService
    channel: grpc.aio.Channel
    compliance_channel: grpc.aio.Channel

    @property
    def candidates(self) -> candidates_pb2_grpc.CandidateServiceAsyncStub:
        return candidates_pb2_grpc.CandidateServiceStub(self.channel)

    @property
    def signals(self) -> signals_pb2_grpc.SignalServiceAsyncStub:
        return signals_pb2_grpc.SignalServiceStub(self.channel)

    @property
    def follows(self) -> follows_pb2_grpc.FollowServiceAsyncStub:
        return follows_pb2_grpc.FollowServiceStub(self.channel)

    @property
    def feed(self) -> feed_pb2_grpc.FeedServiceAsyncStub:
        return feed_pb2_grpc.FeedServiceStub(self.channel)

    def auth(self, subject: str, *roles: Role, age: int = 30) -> Metadata:
        claims = TokenClaims(subject, frozenset(roles or {Role.VIEWER}),
                             birth_date=birth_date_for_age(age, dt.date.today()), country="DE")
        token = mint_token(platform_signing_key(self.root), claims, ttl=dt.timedelta(hours=1))
        return (("authorization", f"Bearer {token}"),)

    def service_auth(self, name: str = "ingest") -> Metadata:
        claims = TokenClaims(f"services/{name}", frozenset({Role.SERVICE}))
        token = mint_token(platform_signing_key(self.root), claims, ttl=dt.timedelta(hours=1))
        return (("authorization", f"Bearer {token}"),)

    async def register(self, creator: str, video: str, *, hashtags: tuple[str, ...] = (), seconds: int = 30,
                       age: dt.timedelta = dt.timedelta(minutes=5), **fields: object) -> candidates_pb2.Candidate:
        request = candidates_pb2.RegisterVideoRequest(
            video=f"creators/{creator}/videos/{video}", duration=Duration(seconds=seconds), hashtags=hashtags,
            publish_time=to_timestamp(dt.datetime.now(dt.UTC) - age), **fields)  # type: ignore[arg-type]
        response = await self.candidates.RegisterVideo(request, metadata=self.service_auth())
        return response.candidate

    async def consent(self, user: str, purpose: int = consent_pb2.CONSENT_PURPOSE_PERSONALISED_CONTENT) -> None:
        stub = consent_pb2_grpc.ConsentServiceStub(self.compliance_channel)
        request = consent_pb2.RecordConsentRequest(
            parent=f"users/{user}", request_id=str(uuid.uuid4()), purpose=purpose,  # type: ignore[arg-type]
            decision=consent_pb2.CONSENT_DECISION_GRANTED, notice_version="test",
            method=consent_pb2.CONSENT_METHOD_SETTINGS_TOGGLE, source="test")
        request.decision_time.FromDatetime(dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=5))
        await stub.RecordConsent(request, metadata=self.auth(f"users/{user}"))

    async def watch(self, user: str, video: str, *, seconds: float, kind: int = signals_pb2.SIGNAL_TYPE_WATCH,
                    event_id: str | None = None) -> signals_pb2.RecordSignalsResponse:
        signal = signal_of(video, kind, seconds=seconds, event_id=event_id)
        return await self.signals.RecordSignals(
            signals_pb2.RecordSignalsRequest(viewer=f"users/{user}", signals=[signal]),
            metadata=self.auth(f"users/{user}"))


def signal_of(video: str, kind: int, *, seconds: float | None = None, event_id: str | None = None,
              live: str = "") -> signals_pb2.Signal:
    signal = signals_pb2.Signal(event_id=event_id or str(uuid.uuid4()), type=kind)  # type: ignore[arg-type]
    if live:
        signal.live = live
    else:
        signal.video = video
    signal.occur_time.FromDatetime(dt.datetime.now(dt.UTC).replace(microsecond=0))
    if seconds is not None:
        signal.watch_time.FromTimedelta(dt.timedelta(seconds=seconds))
    return signal


async def start_ranking(root: Path, config: RankingConfig = IN_PROCESS) -> RankingHarness:
    """Ranking and compliance, its collaborator, on the engine `LIMELIGHT_DATABASE_URL` chooses."""
    compliance = await start_service("compliance", build_compliance, port=0, data_root=root)
    services: list[RankingService] = []

    def build(runtime: ServiceRuntime) -> ServiceDefinition:
        services.append(RankingService(runtime, config=config))
        return services[0].definition()

    ranking = await start_service("ranking", build, port=0, data_root=root, targets={"compliance": compliance.target})
    return RankingHarness(root, compliance, ranking, services[0], grpc.aio.insecure_channel(ranking.target),
                          grpc.aio.insecure_channel(compliance.target))


async def stop_ranking(harness: RankingHarness) -> None:
    await harness.channel.close()
    await harness.compliance_channel.close()
    await harness.ranking.stop(grace=1)
    await harness.compliance.stop(grace=1)


@pytest.fixture
async def harness(tmp_path: Path, database_engine: str) -> AsyncIterator[RankingHarness]:  # noqa: F811 (the fixture)
    running = await start_ranking(tmp_path)
    try:
        yield running
    finally:
        await stop_ranking(running)
