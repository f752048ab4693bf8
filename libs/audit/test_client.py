"""The audit client against a real compliance server: recorded events arrive, even across outages."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from limelight.compliance.v1 import audit_pb2_grpc

from libs.audit.client import AuditClient, compliance_appender
from libs.audit.conftest import logged_actions, start_compliance
from libs.audit.events import Outcome
from libs.audit.pseudonyms import Pseudonymizer
from libs.audit.spool import AuditSpool
from libs.clock import utc_now
from libs.errors import Unavailable
from libs.kit.clients import ServiceClients


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


async def test_an_event_of_another_services_action_is_set_aside_without_blocking_the_rest(
    tmp_path: Path, port: int, clients: ServiceClients
) -> None:
    compliance = await start_compliance(tmp_path, port)
    client = audit_client(tmp_path, clients)  # ships as services/gifts
    await client.record(action="gifts.Good", resource="creators/bo", outcome=Outcome.SUCCEEDED)
    await client.record(action="ingest.PublishVideo", resource="creators/bo/videos/v1", outcome=Outcome.SUCCEEDED)
    await client.record(action="gifts.AlsoGood", resource="creators/bo", outcome=Outcome.SUCCEEDED)
    await client.start()  # compliance refuses the batch with PERMISSION_DENIED for the ingest event
    # Two events arrive, and two refusals: the batch's and, once isolated, the ingest event's.
    logged = await logged_actions(compliance, tmp_path, 4)
    assert [action for action in logged if action.startswith("gifts.")] == ["gifts.Good", "gifts.AlsoGood"]
    assert [action for action in logged if not action.startswith("gifts.")] == ["compliance.AppendEvents"] * 2
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
