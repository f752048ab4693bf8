"""The gifts audit outbox as the shared audit client ships it, all the way into compliance's log."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid
from pathlib import Path

import grpc
import pytest
from limelight.compliance.v1 import audit_pb2, audit_pb2_grpc
from limelight.gifts.v1 import gifts_pb2, gifts_pb2_grpc

from libs.audit.protos import event_to_proto
from libs.audit.pseudonyms import Pseudonymizer
from libs.auth.principal import Role
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.errors import FailedPrecondition, PermissionDenied
from libs.kit.server import ServiceDefinition, ServiceRuntime, start_service
from libs.kit.validation import violations_of
from services.compliance.server import build as build_compliance
from services.gifts.audit_outbox import GiftsAuditOutbox, event_id, sequence_of
from services.gifts.config import GiftsConfig
from services.gifts.conftest import Harness, adult, minor
from services.gifts.model.live import LiveSession
from services.gifts.server import GiftsService
from services.gifts.usecases.commands import SendGift


def _story(h: Harness) -> LiveSession:
    """A LIVE, a top-up, a gift, and a refusal: four kinds of audit event."""
    live = h.go_live("carol")
    h.top_up("alice")
    h.submit(SendGift(adult("alice"), str(uuid.uuid4()), live.live_id, "rose", 1)).result()
    with pytest.raises(PermissionDenied):
        h.submit(SendGift(minor("kid"), str(uuid.uuid4()), live.live_id, "rose", 1)).result()
    return live


def test_pending_events_keep_their_ids_until_acknowledged_then_move_on(harness: Harness, tmp_path: Path) -> None:
    _story(harness)
    outbox = GiftsAuditOutbox(harness.outbox, Pseudonymizer.for_deployment(tmp_path))
    first = outbox.pending(3)
    assert [e.event_id for e in outbox.pending(3)] == [e.event_id for e in first]  # a redelivery is the same
    outbox.acknowledge([e.event_id for e in first])
    rest = outbox.pending(100)
    assert rest and sequence_of(rest[0].event_id) == sequence_of(first[-1].event_id) + 1
    outbox.reject(rest[0], "INVALID_ARGUMENT: bad")
    assert [e.event_id for e in outbox.pending(100)] == [e.event_id for e in rest[1:]]


def test_every_event_is_one_compliance_accepts(harness: Harness, tmp_path: Path) -> None:
    _story(harness)
    events = GiftsAuditOutbox(harness.outbox, Pseudonymizer.for_deployment(tmp_path)).pending(100)
    assert {e.action for e in events} >= {"gifts.StartLive", "gifts.TopUpCoins", "gifts.SendGift"}
    refused = [e for e in events if e.reason == "SENDER_UNDER_18"]
    assert len(refused) == 1 and refused[0].outcome.value == "rejected" and refused[0].subject_ref
    for event in events:
        assert violations_of(event_to_proto(event)) == [], event


def test_shipped_events_carry_no_personal_data(harness: Harness, tmp_path: Path) -> None:
    """Whom an event concerns is its resource, its actor and the pseudonymous subject; the
    attributes hold no names, birth dates or user ids, not even inside account names."""
    live = _story(harness)
    with pytest.raises(FailedPrecondition):  # a refusal whose error names the sender's coin account
        harness.run(SendGift(adult("bob"), str(uuid.uuid4()), live.live_id, "rose", 1))
    events = GiftsAuditOutbox(harness.outbox, Pseudonymizer.for_deployment(tmp_path)).pending(100)
    personal = ("alice", "carol", "kid", "bob", "users/", "creators/", "1990-05-17", "1990")
    assert any(e.reason == "INSUFFICIENT_COINS" for e in events)
    for event in events:
        values = " ".join([*event.attributes.keys(), *event.attributes.values()])
        assert not [word for word in personal if word in values], event
        if event.actor.startswith("users/"):
            assert event.subject_ref and event.subject_ref not in (event.actor, event.actor.removeprefix("users/"))


def test_every_event_names_its_resource_as_the_api_does(harness: Harness, tmp_path: Path) -> None:
    _story(harness)
    events = GiftsAuditOutbox(harness.outbox, Pseudonymizer.for_deployment(tmp_path)).pending(100)
    api_names = re.compile(r"^(creators/[a-z0-9-]+(/lives/[a-z0-9-]+(/giftTransfers/[a-z0-9-]+)?)?"
                           r"|users/[a-z0-9-]+(/standing|/wallet(/transactions/[0-9]+)?|/payouts/[a-z0-9-]+)?)$")
    assert [e.resource for e in events if not api_names.match(e.resource)] == []
    # An officer's prefix query for the creator finds the LIVE, the gift and the refusal in it.
    about_carol = {(e.action, e.outcome.value) for e in events if e.resource.startswith("creators/carol/")}
    assert about_carol == {("gifts.StartLive", "succeeded"), ("gifts.SendGift", "succeeded"),
                           ("gifts.SendGift", "rejected")}


def test_event_ids_are_uuids_that_carry_the_sequence() -> None:
    identifier = event_id("0123abcd", 42)
    assert uuid.UUID(identifier).version == 8 and sequence_of(identifier) == 42
    assert event_id("0123abcd", 42) != event_id("another-log", 42)


async def test_gifts_audit_events_reach_the_compliance_log(tmp_path: Path) -> None:
    compliance = await start_service("compliance", build_compliance, port=0, data_root=tmp_path)
    services: list[GiftsService] = []

    def build(runtime: ServiceRuntime) -> ServiceDefinition:
        services.append(GiftsService(runtime, config=GiftsConfig(ledger_in_process=True)))
        return services[0].definition()

    gifts = await start_service("gifts", build, port=0, data_root=tmp_path,
                                targets={"compliance": compliance.target})
    key = platform_signing_key(tmp_path)

    def auth(subject: str, *roles: Role) -> tuple[tuple[str, str], ...]:
        claims = TokenClaims(subject, frozenset({Role.VIEWER, *roles}), birth_date=dt.date(2012, 1, 1))
        return (("authorization", f"Bearer {mint_token(key, claims, ttl=dt.timedelta(minutes=5))}"),)

    try:
        async with grpc.aio.insecure_channel(gifts.target) as channel:
            with pytest.raises(grpc.aio.AioRpcError):  # a minor's gift: refused, and audited
                await gifts_pb2_grpc.GiftServiceStub(channel).SendGift(gifts_pb2.SendGiftRequest(
                    request_id=str(uuid.uuid4()), live="creators/c/lives/l", gift="gifts/rose", count=1),
                    metadata=auth("users/kid"))
        async with grpc.aio.insecure_channel(compliance.target) as channel:
            stub = audit_pb2_grpc.AuditServiceStub(channel)
            officer = auth("users/olga", Role.COMPLIANCE_OFFICER)
            for _ in range(100):
                reply = await stub.QueryEvents(audit_pb2.QueryEventsRequest(
                    filter=audit_pb2.EventFilter(actor="users/kid")), metadata=officer)
                if reply.events:
                    break
                await asyncio.sleep(0.1)
        assert [(e.event.action, e.event.reason) for e in reply.events] == [("gifts.SendGift", "SENDER_UNDER_18")]
        assert services[0].outbox.delivered_through() >= 1
    finally:
        await gifts.stop(grace=0)
        await compliance.stop(grace=0)
