"""AuditService end to end: a real compliance server on a loopback port, called through generated stubs."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2  # type: ignore[import-untyped, unused-ignore]
from grpc_status import rpc_status
from limelight.compliance.v1 import audit_pb2, audit_pb2_grpc

from libs.audit.protos import event_from_proto, timestamp
from libs.audit.pseudonyms import Pseudonymizer
from libs.auth.principal import Role
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.kit.server import RunningService, start_service
from libs.tlog.checkpoint import open_checkpoint
from libs.tlog.hashing import leaf_hash
from libs.tlog.note import NoteVerifier
from libs.tlog.proofs import verify_consistency, verify_inclusion
from services.compliance.server import build


@pytest.fixture
async def compliance(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[RunningService]:
    if "database_engine" in request.fixturenames:  # a test that runs on both engines: its database first
        request.getfixturevalue("database_engine")
    running = await start_service("compliance", build, port=0, data_root=tmp_path)
    yield running
    await running.stop(grace=0)


class Caller:
    """The AuditService stub with one principal's bearer token."""

    def __init__(self, channel: grpc.aio.Channel, bearer: str) -> None:
        self.stub = audit_pb2_grpc.AuditServiceStub(channel)
        self.metadata = (("authorization", f"Bearer {bearer}"),)


@pytest.fixture
async def channel(compliance: RunningService) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(compliance.target) as opened:
        yield opened


def bearer(root: Path, subject: str, *roles: Role) -> str:
    return mint_token(platform_signing_key(root), TokenClaims(subject, frozenset(roles)), ttl=dt.timedelta(minutes=5))


@pytest.fixture
def service(channel: grpc.aio.Channel, tmp_path: Path) -> Caller:
    return Caller(channel, bearer(tmp_path, "services/gifts", Role.SERVICE))


@pytest.fixture
def officer(channel: grpc.aio.Channel, tmp_path: Path) -> Caller:
    return Caller(channel, bearer(tmp_path, "users/olga", Role.COMPLIANCE_OFFICER))


@pytest.fixture
def viewer(channel: grpc.aio.Channel, tmp_path: Path) -> Caller:
    return Caller(channel, bearer(tmp_path, "users/alice", Role.VIEWER))


def gift_event(subject_ref: str = "", **fields: Any) -> audit_pb2.AuditEvent:
    values: dict[str, Any] = {
        "event_id": str(uuid.uuid4()), "actor": "users/alice", "action": "gifts.SendGift",
        "resource": "creators/bo/lives/l1", "outcome": audit_pb2.OUTCOME_SUCCEEDED,
        "event_time": timestamp(dt.datetime.now(dt.UTC)), "subject_ref": subject_ref, "attributes": {"coins": "30"},
    }
    return audit_pb2.AuditEvent(**{**values, **fields})


async def latest_checkpoint(caller: Caller, *, at_least: int) -> audit_pb2.Checkpoint:
    """The checkpoint once it covers `at_least` leaves: the log signs at least once a second."""
    deadline = asyncio.get_running_loop().time() + 1.5
    while True:
        reply = await caller.stub.GetCheckpoint(audit_pb2.GetCheckpointRequest(), metadata=caller.metadata)
        if reply.checkpoint.tree_size >= at_least:
            return reply.checkpoint
        assert asyncio.get_running_loop().time() < deadline, "no checkpoint within a second and a half"
        await asyncio.sleep(0.05)


def bad_request_fields(error: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            return {violation.field: violation.reason for violation in bad_request.field_violations}
    raise AssertionError("no BadRequest detail")


def error_reason(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    raise AssertionError("no ErrorInfo detail")


async def test_appended_events_are_provable_against_signed_checkpoints(
    database_engine: str, service: Caller, officer: Caller
) -> None:
    key = await service.stub.GetPublicKey(audit_pb2.GetPublicKeyRequest())  # public: no token needed
    verifier = NoteVerifier.from_key_string(key.verifier_key)
    assert verifier.public_key == key.public_key and verifier.name == key.origin
    start = dt.datetime.now(dt.UTC)
    first = [gift_event(event_time=timestamp(start + dt.timedelta(seconds=n))) for n in range(3)]
    reply = await service.stub.AppendEvents(audit_pb2.AppendEventsRequest(events=first), metadata=service.metadata)
    assert [e.leaf_index for e in reply.events] == [0, 1, 2]
    old = open_checkpoint((await latest_checkpoint(service, at_least=3)).signed_note, [verifier])
    await service.stub.AppendEvents(audit_pb2.AppendEventsRequest(events=[gift_event() for _ in range(5)]),
                                    metadata=service.metadata)
    new = open_checkpoint((await latest_checkpoint(service, at_least=8)).signed_note, [verifier])

    proof = await service.stub.GetInclusionProof(
        audit_pb2.GetInclusionProofRequest(event_id=first[1].event_id), metadata=service.metadata)
    [logged] = (await officer.stub.QueryEvents(audit_pb2.QueryEventsRequest(
        filter=audit_pb2.EventFilter(resource="creators/bo/", start_time=first[1].event_time,
                                     end_time=first[2].event_time)), metadata=officer.metadata)).events
    assert logged.leaf_index == proof.leaf_index == 1 and logged.event == first[1]
    assert proof.checkpoint.tree_size == new.tree_size
    verify_inclusion(1, new.tree_size, logged.leaf_hash, list(proof.hashes), new.root_hash)

    consistency = await service.stub.GetConsistencyProof(
        audit_pb2.GetConsistencyProofRequest(first_size=old.tree_size, second_size=new.tree_size))
    verify_consistency(old.tree_size, new.tree_size, old.root_hash, new.root_hash, list(consistency.hashes))


async def test_a_retried_batch_returns_the_first_leaves(service: Caller) -> None:
    batch = audit_pb2.AppendEventsRequest(events=[gift_event(), gift_event()])
    first = await service.stub.AppendEvents(batch, metadata=service.metadata)
    again = await service.stub.AppendEvents(batch, metadata=service.metadata)
    assert [(e.leaf_index, e.already_logged) for e in again.events] == [(e.leaf_index, True) for e in first.events]


async def test_reusing_an_event_id_for_other_content_is_already_exists(service: Caller) -> None:
    event = gift_event()
    await service.stub.AppendEvents(audit_pb2.AppendEventsRequest(events=[event]), metadata=service.metadata)
    event.outcome = audit_pb2.OUTCOME_REJECTED
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await service.stub.AppendEvents(audit_pb2.AppendEventsRequest(events=[event]), metadata=service.metadata)
    assert raised.value.code() is grpc.StatusCode.ALREADY_EXISTS
    assert error_reason(raised.value) == "AUDIT_EVENT_ID_REUSED"


async def test_only_services_append(viewer: Caller) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await viewer.stub.AppendEvents(audit_pb2.AppendEventsRequest(events=[gift_event()]), metadata=viewer.metadata)
    assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_a_refused_query_is_itself_in_the_log(viewer: Caller, officer: Caller) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await viewer.stub.QueryEvents(audit_pb2.QueryEventsRequest(), metadata=viewer.metadata)
    assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED
    reply = await officer.stub.QueryEvents(audit_pb2.QueryEventsRequest(filter=audit_pb2.EventFilter(
        action="compliance.QueryEvents", outcome=audit_pb2.OUTCOME_DENIED)), metadata=officer.metadata)
    [denial] = reply.events
    assert (denial.event.actor, denial.event.reason) == ("users/alice", "ROLE_REQUIRED")
    assert len(denial.event.trace_id) == 32


async def test_an_officers_query_is_logged_with_the_person_it_was_about(
    service: Caller, officer: Caller, tmp_path: Path
) -> None:
    bob = Pseudonymizer.for_deployment(tmp_path).subject_ref("users/bob")
    await service.stub.AppendEvents(audit_pb2.AppendEventsRequest(events=[gift_event(bob), gift_event()]),
                                    metadata=service.metadata)
    about_bob = await officer.stub.QueryEvents(audit_pb2.QueryEventsRequest(
        filter=audit_pb2.EventFilter(subject="users/bob")), metadata=officer.metadata)
    assert [e.event.subject_ref for e in about_bob.events] == [bob]
    queries = await officer.stub.QueryEvents(audit_pb2.QueryEventsRequest(
        filter=audit_pb2.EventFilter(actor="users/olga", action="compliance.QueryEvents")), metadata=officer.metadata)
    # A query is logged once it ran, before its answer leaves: this one sees only the earlier one.
    assert [(e.event.subject_ref, e.event.attributes["results"]) for e in queries.events] == [(bob, "1")]


async def test_queries_page_newest_first(service: Caller, officer: Caller) -> None:
    events = [gift_event(resource=f"creators/cy/videos/v{n}") for n in range(5)]
    await service.stub.AppendEvents(audit_pb2.AppendEventsRequest(events=events), metadata=service.metadata)
    request = audit_pb2.QueryEventsRequest(filter=audit_pb2.EventFilter(resource="creators/cy/"), page_size=2)
    seen: list[str] = []
    while True:
        page = await officer.stub.QueryEvents(request, metadata=officer.metadata)
        seen += [e.event.resource for e in page.events]
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    assert seen == [f"creators/cy/videos/v{n}" for n in range(4, -1, -1)]


async def test_malformed_requests_name_the_field(service: Caller, officer: Caller) -> None:
    await service.stub.AppendEvents(audit_pb2.AppendEventsRequest(events=[gift_event()]), metadata=service.metadata)
    await latest_checkpoint(service, at_least=1)
    cases: list[tuple[Awaitable[object], str]] = [
        (service.stub.AppendEvents(audit_pb2.AppendEventsRequest(events=[gift_event(event_id="nope")]),
                                   metadata=service.metadata), "events[0].event_id"),
        (service.stub.AppendEvents(audit_pb2.AppendEventsRequest(events=[gift_event(reason="not upper")]),
                                   metadata=service.metadata), "events[0].reason"),
        (service.stub.AppendEvents(audit_pb2.AppendEventsRequest(), metadata=service.metadata), "events"),
        (service.stub.GetConsistencyProof(audit_pb2.GetConsistencyProofRequest(first_size=0, second_size=1)),
         "first_size"),
        (service.stub.GetConsistencyProof(audit_pb2.GetConsistencyProofRequest(first_size=1, second_size=99)),
         "second_size"),
        (service.stub.GetInclusionProof(audit_pb2.GetInclusionProofRequest(leaf_index=0, tree_size=99),
                                        metadata=service.metadata), "tree_size"),
        (service.stub.GetInclusionProof(audit_pb2.GetInclusionProofRequest(leaf_index=5, tree_size=1),
                                        metadata=service.metadata), "leaf_index"),
        (service.stub.GetInclusionProof(audit_pb2.GetInclusionProofRequest(), metadata=service.metadata), "leaf"),
        (officer.stub.QueryEvents(audit_pb2.QueryEventsRequest(page_token="garbage"), metadata=officer.metadata),
         "page_token"),
        (officer.stub.QueryEvents(audit_pb2.QueryEventsRequest(filter=audit_pb2.EventFilter(
            subject="users/bob", subject_ref="0" * 64)), metadata=officer.metadata), "filter.subject_ref"),
    ]
    for call, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT, field
        assert field in bad_request_fields(raised.value), (field, bad_request_fields(raised.value))


async def test_a_size_beyond_the_tree_says_so(service: Caller) -> None:
    await service.stub.AppendEvents(audit_pb2.AppendEventsRequest(events=[gift_event()]), metadata=service.metadata)
    await latest_checkpoint(service, at_least=1)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await service.stub.GetInclusionProof(audit_pb2.GetInclusionProofRequest(leaf_index=0, tree_size=2),
                                             metadata=service.metadata)
    assert bad_request_fields(raised.value) == {"tree_size": "TREE_SIZE_BEYOND_LOG"}
    assert "exceeds the log's size 1" in str(raised.value.details())


async def test_an_unknown_event_id_is_not_found(service: Caller) -> None:
    await service.stub.AppendEvents(audit_pb2.AppendEventsRequest(events=[gift_event()]), metadata=service.metadata)
    await latest_checkpoint(service, at_least=1)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await service.stub.GetInclusionProof(audit_pb2.GetInclusionProofRequest(event_id=str(uuid.uuid4())),
                                             metadata=service.metadata)
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND
    assert error_reason(raised.value) == "AUDIT_EVENT_NOT_FOUND"


async def test_an_export_streams_every_leaf_with_its_proof(service: Caller, officer: Caller) -> None:
    await service.stub.AppendEvents(audit_pb2.AppendEventsRequest(events=[gift_event() for _ in range(7)]),
                                    metadata=service.metadata)
    await latest_checkpoint(service, at_least=7)
    stream = officer.stub.ExportEvents(audit_pb2.ExportEventsRequest(start_index=2), metadata=officer.metadata)
    [header, *parts] = [part async for part in stream]
    checkpoint = header.header.checkpoint
    assert checkpoint.tree_size >= 7 and header.header.request.start_index == 2
    assert [part.event.leaf_index for part in parts] == list(range(2, checkpoint.tree_size))
    for part in parts:
        exported = part.event
        assert leaf_hash(exported.leaf_data) == exported.logged_leaf_hash
        verify_inclusion(exported.leaf_index, checkpoint.tree_size, exported.logged_leaf_hash,
                         list(exported.inclusion_proof), checkpoint.root_hash)
    exports = await officer.stub.QueryEvents(audit_pb2.QueryEventsRequest(filter=audit_pb2.EventFilter(
        action="compliance.ExportEvents")), metadata=officer.metadata)
    assert [e.event.attributes["tree_size"] for e in exports.events] == [str(checkpoint.tree_size)]


def with_delegation(caller: Caller, root: Path, user: str) -> tuple[tuple[str, str], ...]:
    """The caller's metadata plus a user's token: the kit verifies it and sets the principal's on_behalf_of."""
    return (*caller.metadata, ("x-limelight-on-behalf-of", bearer(root, user, Role.VIEWER)))


async def test_a_service_cannot_append_another_services_actions(service: Caller, officer: Caller) -> None:
    forgeries = [
        gift_event(actor="services/ingest", action="compliance.QueryEvents", on_behalf_of="users/alice"),
        gift_event(actor="services/ingest", action="ingest.PublishVideo"),
    ]
    for forged in forgeries:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await service.stub.AppendEvents(audit_pb2.AppendEventsRequest(events=[gift_event(), forged]),
                                            metadata=service.metadata)
        assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert error_reason(raised.value) == "AUDIT_ACTION_MISMATCH"
    logged = await officer.stub.QueryEvents(audit_pb2.QueryEventsRequest(), metadata=officer.metadata)
    # Nothing of either batch was logged; each attempt was, as a refusal of services/gifts.
    assert [(e.event.action, e.event.actor, e.event.reason) for e in logged.events] == [
        ("compliance.AppendEvents", "services/gifts", "AUDIT_ACTION_MISMATCH")] * 2


async def test_only_a_service_acts_on_behalf_of_a_user(service: Caller) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await service.stub.AppendEvents(audit_pb2.AppendEventsRequest(events=[
            gift_event(actor="users/bob", on_behalf_of="users/alice")]), metadata=service.metadata)
    assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(raised.value) == "AUDIT_ACTOR_MISMATCH"


async def test_a_delegated_append_may_name_only_the_delegating_user(service: Caller, tmp_path: Path) -> None:
    delegated = with_delegation(service, tmp_path, "users/alice")
    await service.stub.AppendEvents(audit_pb2.AppendEventsRequest(events=[
        gift_event(actor="services/gifts", on_behalf_of="users/alice")]), metadata=delegated)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await service.stub.AppendEvents(audit_pb2.AppendEventsRequest(events=[
            gift_event(actor="services/gifts", on_behalf_of="users/bob")]), metadata=delegated)
    assert error_reason(raised.value) == "AUDIT_ACTOR_MISMATCH"


async def test_the_events_gifts_and_ingest_ship_are_accepted(service: Caller, channel: grpc.aio.Channel,
                                                              tmp_path: Path) -> None:
    gifts = [gift_event(actor="users/alice"), gift_event(actor="services/gifts"),
             gift_event(actor="services/payments", action="gifts.SettlePayout")]
    await service.stub.AppendEvents(audit_pb2.AppendEventsRequest(events=gifts), metadata=service.metadata)
    ingest = Caller(channel, bearer(tmp_path, "services/ingest", Role.SERVICE))
    shipped = [gift_event(actor="users/ada", action="ingest.UploadVideo"),
               gift_event(actor="services/ranking", on_behalf_of="users/ada", action="ingest.UploadVideo"),
               gift_event(actor="services/ingest", action="ingest.PublishVideo")]
    reply = await ingest.stub.AppendEvents(audit_pb2.AppendEventsRequest(events=shipped), metadata=ingest.metadata)
    assert [e.leaf_index for e in reply.events] == [3, 4, 5]


async def test_inclusion_proofs_need_no_token(service: Caller) -> None:
    event = gift_event()
    await service.stub.AppendEvents(audit_pb2.AppendEventsRequest(events=[event]), metadata=service.metadata)
    checkpoint = await latest_checkpoint(service, at_least=1)
    proof = await service.stub.GetInclusionProof(audit_pb2.GetInclusionProofRequest(event_id=event.event_id))
    verify_inclusion(0, checkpoint.tree_size, leaf_hash(event_from_proto(event).canonical_bytes()),
                     list(proof.hashes), checkpoint.root_hash)


async def test_an_event_time_finer_than_a_microsecond_is_refused_not_rounded(service: Caller) -> None:
    event = gift_event(event_time=Timestamp(seconds=1_750_000_000, nanos=1000))
    await service.stub.AppendEvents(audit_pb2.AppendEventsRequest(events=[event]), metadata=service.metadata)
    event.event_time.nanos = 1001  # the same event id, another time: not a retry
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await service.stub.AppendEvents(audit_pb2.AppendEventsRequest(events=[event]), metadata=service.metadata)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(raised.value) == {"events[0].event_time": "EVENT_TIME_FINER_THAN_MICROSECONDS"}


async def test_tokenless_refusals_are_counted_into_one_event_not_one_leaf_each(tmp_path: Path) -> None:
    running = await start_service("compliance", build, port=0, data_root=tmp_path)
    async with grpc.aio.insecure_channel(running.target) as opened:
        officer = Caller(opened, bearer(tmp_path, "users/olga", Role.COMPLIANCE_OFFICER))
        anonymous = audit_pb2_grpc.AuditServiceStub(opened)
        for _ in range(20):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await anonymous.QueryEvents(audit_pb2.QueryEventsRequest())
            assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED
        reply = await officer.stub.QueryEvents(audit_pb2.QueryEventsRequest(), metadata=officer.metadata)
        assert reply.events == []  # the window is still open: nothing logged yet
    await running.stop(grace=0)  # stopping closes every window

    restarted = await start_service("compliance", build, port=0, data_root=tmp_path)
    async with grpc.aio.insecure_channel(restarted.target) as opened:
        officer = Caller(opened, bearer(tmp_path, "users/olga", Role.COMPLIANCE_OFFICER))
        reply = await officer.stub.QueryEvents(audit_pb2.QueryEventsRequest(filter=audit_pb2.EventFilter(
            outcome=audit_pb2.OUTCOME_DENIED)), metadata=officer.metadata)
    await restarted.stop(grace=0)
    [counted] = reply.events
    assert (counted.event.action, counted.event.actor, counted.event.reason) == (
        "compliance.QueryEvents", "", "TOKEN_MISSING")
    assert counted.event.attributes["denials"] == "20"
    assert len(counted.event.attributes["peer_ref"]) == 64  # the address itself is not logged


@pytest.mark.parametrize("database_engine", ["postgres"], indirect=True)
async def test_two_replicas_append_into_one_log_that_either_proves(tmp_path: Path, database_engine: str) -> None:
    """Two compliance processes over one PostgreSQL, as `--replicas compliance=2` runs them."""
    replicas = [await start_service("compliance", build, port=0, data_root=tmp_path) for _ in range(2)]
    channels = [grpc.aio.insecure_channel(replica.target) for replica in replicas]
    try:
        callers = [Caller(channel, bearer(tmp_path, "services/gifts", Role.SERVICE)) for channel in channels]
        batches = [[gift_event() for _ in range(3)] for _ in range(12)]
        replies = await asyncio.gather(*(
            callers[number % 2].stub.AppendEvents(audit_pb2.AppendEventsRequest(events=batch),
                                                  metadata=callers[number % 2].metadata)
            for number, batch in enumerate(batches)))
        leaves = sorted(event.leaf_index for reply in replies for event in reply.events)
        assert leaves == list(range(36))  # gap-free, each leaf once, whichever replica took the batch
        key = await callers[0].stub.GetPublicKey(audit_pb2.GetPublicKeyRequest())
        verifier = NoteVerifier.from_key_string(key.verifier_key)
        signed = [open_checkpoint((await latest_checkpoint(caller, at_least=36)).signed_note, [verifier])
                  for caller in callers]
        assert signed[0].root_hash == signed[1].root_hash  # one tree, whichever replica is asked
        for number, batch in enumerate(batches[:4]):
            proof = await callers[1 - number % 2].stub.GetInclusionProof(
                audit_pb2.GetInclusionProofRequest(event_id=batch[0].event_id, tree_size=36))
            verify_inclusion(proof.leaf_index, 36, leaf_hash(event_from_proto(batch[0]).canonical_bytes()),
                             list(proof.hashes), signed[0].root_hash)
    finally:
        for channel in channels:
            await channel.close()
        for replica in replicas:
            await replica.stop(grace=0)
