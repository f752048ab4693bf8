from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from limelight.compliance.v1 import consent_pb2_grpc

from libs.auth.principal import Role, birth_date_for_age
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.kit.access import ON_BEHALF_OF_HEADER
from libs.kit.server import RunningService, start_service
from libs.storage.testing import database_engine, postgres_server  # noqa: F401
from services.compliance.server import build

Metadata = tuple[tuple[str, str], ...]
TODAY = dt.date.today()


def token(root: Path, subject: str, *roles: Role, age: int | None = None) -> str:
    claims = TokenClaims(subject, frozenset(roles), birth_date=birth_date_for_age(age, TODAY) if age else None)
    return mint_token(platform_signing_key(root), claims, ttl=dt.timedelta(minutes=5))


def bearer(value: str) -> Metadata:
    return (("authorization", f"Bearer {value}"),)


class Callers:
    """Tokens for the kinds of caller the consent RPCs name."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def user(self, user: str, *, age: int | None = 30) -> Metadata:
        return bearer(token(self.root, f"users/{user}", Role.VIEWER, age=age))

    def service(self) -> Metadata:
        return bearer(token(self.root, "services/ranking", Role.SERVICE))

    def service_for(self, user: str, *, age: int | None = 30) -> Metadata:
        return (*self.service(), (ON_BEHALF_OF_HEADER, token(self.root, f"users/{user}", Role.VIEWER, age=age)))

    def officer(self) -> Metadata:
        return bearer(token(self.root, "users/olga", Role.COMPLIANCE_OFFICER))


@pytest.fixture
def callers(tmp_path: Path) -> Callers:
    return Callers(tmp_path)


@pytest.fixture
async def compliance(tmp_path: Path) -> AsyncIterator[RunningService]:
    running = await start_service("compliance", build, port=0, data_root=tmp_path)
    yield running
    await running.stop(grace=0)


@pytest.fixture
async def consent_stub(compliance: RunningService) -> AsyncIterator[consent_pb2_grpc.ConsentServiceAsyncStub]:
    async with grpc.aio.insecure_channel(compliance.target) as channel:
        yield consent_pb2_grpc.ConsentServiceStub(channel)
