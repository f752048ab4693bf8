"""The audit client against a real compliance server: recorded events arrive, even across outages."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from limelight.compliance.v1 import audit_pb2, audit_pb2_grpc
from opentelemetry import trace

from libs.audit.client import AuditClient, compliance_appender
from libs.audit.events import Outcome
from libs.audit.pseudonyms import Pseudonymizer
from libs.audit.spool import AuditSpool
from libs.auth.principal import Role
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.clock import utc_now
from libs.errors import Unavailable
from libs.kit.clients import ServiceClients, ServiceTokenSource
from libs.kit.server import RunningService, start_service
from services.compliance.server import build
from tools.supervisor import free_port


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
async def clients(tmp_path: Path, port: int) -> AsyncIterator[ServiceClients]:
    opened = ServiceClients(tracer=trace.get_tracer("test"),
                            service_token=ServiceTokenSource("gifts", platform_signing_key(tmp_path)),
                            targets={"compliance": f"127.0.0.1:{port}"})
    yield opened
    await opened.close()


def audit_client(tmp_path: Path, clients: ServiceClients) -> AuditClient:
    """What `AuditClient.for_runtime` builds for the gifts service, pointed at the test's compliance."""
    return AuditClient(
        service="gifts",
        spool=AuditSpool.open("gifts", tmp_path),
        append=compliance_appender(clients.stub("compliance", audit_pb2_grpc.AuditServiceStub), timeout=2),
        pseudonymizer=Pseudonymizer.for_deployment(tmp_path),
        clock=utc_now,
        max_backoff_seconds=0.2,
    )


def spool_counts(root: Path) -> tuple[int, int]:
    spool = AuditSpool.open("gifts", root)
    try:
        return spool.counts()
    finally:
        spool.close()


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


async def test_recorded_events_reach_the_log_in_order(tmp_path: Path, port: int, clients: ServiceClients) -> None:
    compliance = await start_compliance(tmp_path, port)
    client = audit_client(tmp_path, clients)
    await client.start()
    for number in range(5):
        await client.record(action=f"gifts.Step{number}", resource="creators/bo/lives/l1", outcome=Outcome.SUCCEEDED,
                            subject="users/bob")
    assert await logged_actions(compliance, tmp_path, 5) == [f"gifts.Step{n}" for n in range(5)]
    await client.stop()
    await compliance.stop(grace=0)


async def test_events_recorded_while_compliance_is_down_arrive_after_a_restart_of_both(
    tmp_path: Path, port: int, clients: ServiceClients
) -> None:
    client = audit_client(tmp_path, clients)
    await client.start()
    started = asyncio.get_running_loop().time()
    for number in range(3):
        await client.record(action=f"gifts.Offline{number}", resource="creators/bo", outcome=Outcome.SUCCEEDED)
    assert asyncio.get_running_loop().time() - started < 1.0  # the hot path never waits for compliance
    await client.stop(flush_seconds=0.2)  # the service restarts before compliance comes back
    assert spool_counts(tmp_path) == (3, 0)

    compliance = await start_compliance(tmp_path, port)
    restarted = audit_client(tmp_path, clients)
    await restarted.start()
    assert await logged_actions(compliance, tmp_path, 3) == [f"gifts.Offline{n}" for n in range(3)]
    await restarted.stop()
    await compliance.stop(grace=0)


async def test_an_event_compliance_refuses_is_set_aside_without_blocking_the_rest(
    tmp_path: Path, port: int, clients: ServiceClients
) -> None:
    compliance = await start_compliance(tmp_path, port)
    client = audit_client(tmp_path, clients)
    await client.record(action="gifts.Good", resource="creators/bo", outcome=Outcome.SUCCEEDED)
    await client.record(action="not an action", resource="creators/bo", outcome=Outcome.SUCCEEDED)
    await client.record(action="gifts.AlsoGood", resource="creators/bo", outcome=Outcome.SUCCEEDED)
    await client.start()  # all three go out in one batch, which compliance refuses as a whole
    assert await logged_actions(compliance, tmp_path, 2) == ["gifts.Good", "gifts.AlsoGood"]
    await client.stop()
    assert spool_counts(tmp_path) == (0, 1)
    await compliance.stop(grace=0)


async def test_recording_fails_the_call_when_the_spool_cannot_take_the_event(
    tmp_path: Path, clients: ServiceClients
) -> None:
    client = audit_client(tmp_path, clients)
    await client.stop(flush_seconds=0)
    with pytest.raises(Unavailable) as refused:
        await client.record(action="gifts.SendGift", resource="creators/bo", outcome=Outcome.SUCCEEDED)
    assert refused.value.reason == "AUDIT_UNAVAILABLE"
