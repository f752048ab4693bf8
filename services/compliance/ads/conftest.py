from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from limelight.compliance.v1 import ads_pb2_grpc

from libs.auth.principal import AgeBracket, Role
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.kit.access import ON_BEHALF_OF_HEADER
from libs.kit.server import RunningService, ServiceDefinition, ServiceRuntime, package_definition, start_service
from libs.storage.testing import database_engine, postgres_server  # noqa: F401
from services.compliance.ads import servicer
from services.compliance.ads.store import AdRepositoryStore

Metadata = tuple[tuple[str, str], ...]


class MovableClock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, delta: dt.timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock(dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC))


@pytest.fixture
def store(tmp_path: Path, database_engine: str) -> Iterator[AdRepositoryStore]:  # noqa: F811 (the imported fixture)
    opened = AdRepositoryStore.open(tmp_path)
    yield opened
    opened.close()


@dataclass(frozen=True)
class AdsServer:
    running: RunningService
    area: servicer.AdRepositoryArea


@pytest.fixture
async def ads_server(tmp_path: Path, clock: MovableClock, database_engine: str) -> AsyncIterator[AdsServer]:  # noqa: F811
    built: list[servicer.AdRepositoryArea] = []

    def build_ads_only(runtime: ServiceRuntime) -> ServiceDefinition:
        """The compliance package with only the ad repository built, wired as the server will wire it."""
        area = servicer.build(runtime, clock=clock)
        built.append(area)
        return package_definition("limelight.compliance.v1", {area.service_name: area.servicer}, policy=area.policy,
                                  on_start=area.on_start, on_stop=area.on_stop)

    running = await start_service("compliance", build_ads_only, port=0, data_root=tmp_path)
    yield AdsServer(running, built[0])
    await running.stop(grace=0)


@pytest.fixture
async def ads_stub(ads_server: AdsServer) -> AsyncIterator[ads_pb2_grpc.AdRepositoryServiceAsyncStub]:
    async with grpc.aio.insecure_channel(ads_server.running.target) as channel:
        yield ads_pb2_grpc.AdRepositoryServiceStub(channel)


def token(root: Path, subject: str, *roles: Role, birth_date: dt.date | None = None,
          age_bracket: AgeBracket = AgeBracket.UNKNOWN) -> str:
    claims = TokenClaims(subject, frozenset(roles), birth_date=birth_date, age_bracket=age_bracket)
    return mint_token(platform_signing_key(root), claims, ttl=dt.timedelta(minutes=5))


@pytest.fixture
def as_service(tmp_path: Path) -> Metadata:
    return (("authorization", f"Bearer {token(tmp_path, 'services/ranking', Role.SERVICE)}"),)


def on_behalf_of(root: Path, user_token: str) -> Metadata:
    return (("authorization", f"Bearer {token(root, 'services/ranking', Role.SERVICE)}"),
            (ON_BEHALF_OF_HEADER, user_token))
