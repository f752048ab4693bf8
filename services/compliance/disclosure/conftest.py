from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from limelight.compliance.v1 import disclosure_pb2_grpc

from libs.auth.principal import Role
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.kit.server import RunningService, ServiceDefinition, ServiceRuntime, package_definition, start_service
from services.compliance.disclosure import servicer


def build_disclosure_only(runtime: ServiceRuntime) -> ServiceDefinition:
    """The compliance package with only the disclosure area built, wired as the server will wire it."""
    area = servicer.build(runtime)
    return package_definition("limelight.compliance.v1", {area.service_name: area.servicer}, policy=area.policy)


@pytest.fixture
async def disclosure_server(tmp_path: Path) -> AsyncIterator[RunningService]:
    running = await start_service("compliance", build_disclosure_only, port=0, data_root=tmp_path)
    yield running
    await running.stop(grace=0)


@pytest.fixture
async def disclosure_channel(disclosure_server: RunningService) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(disclosure_server.target) as channel:
        yield channel


@pytest.fixture
def disclosure_stub(disclosure_channel: grpc.aio.Channel) -> disclosure_pb2_grpc.DisclosureServiceAsyncStub:
    return disclosure_pb2_grpc.DisclosureServiceStub(disclosure_channel)


def bearer(root: Path, subject: str, *roles: Role) -> tuple[tuple[str, str]]:
    token = mint_token(platform_signing_key(root), TokenClaims(subject, frozenset(roles)), ttl=dt.timedelta(minutes=5))
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture
def as_ingest(tmp_path: Path) -> tuple[tuple[str, str]]:
    return bearer(tmp_path, "services/ingest", Role.SERVICE)
