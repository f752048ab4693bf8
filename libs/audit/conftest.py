"""What the audit tests share: a real compliance server, clients to it, and a way to read its log."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from limelight.compliance.v1 import audit_pb2, audit_pb2_grpc
from opentelemetry import trace

from libs.auth.principal import Role
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.kit.clients import ServiceClients, ServiceTokenSource
from libs.kit.server import RunningService, start_service
from libs.ports import reserve_port
from libs.storage.testing import database_engine, postgres_server  # noqa: F401
from services.compliance.server import build


@pytest.fixture
def port() -> int:
    return reserve_port()


@pytest.fixture
async def clients(tmp_path: Path, port: int) -> AsyncIterator[ServiceClients]:
    opened = ServiceClients(tracer=trace.get_tracer("test"),
                            service_token=ServiceTokenSource("gifts", platform_signing_key(tmp_path)),
                            targets={"compliance": f"127.0.0.1:{port}"})
    yield opened
    await opened.close()


async def start_compliance(tmp_path: Path, port: int) -> RunningService:
    return await start_service("compliance", build, port=port, data_root=tmp_path)


async def logged_actions(running: RunningService, tmp_path: Path, expected: int) -> list[str]:
    """The actions compliance holds, once it holds `expected` events from gifts."""
    officer = mint_token(platform_signing_key(tmp_path), TokenClaims("users/olga", frozenset({Role.COMPLIANCE_OFFICER})),
                         ttl=dt.timedelta(minutes=5))
    async with grpc.aio.insecure_channel(running.target) as channel:
        stub = audit_pb2_grpc.AuditServiceStub(channel)
        for _ in range(100):
            reply = await stub.QueryEvents(audit_pb2.QueryEventsRequest(filter=audit_pb2.EventFilter(
                actor="services/gifts")), metadata=(("authorization", f"Bearer {officer}"),))
            if len(reply.events) >= expected:
                return [e.event.action for e in reversed(reply.events)]
            await asyncio.sleep(0.05)
    raise AssertionError("the events never arrived")
