"""Gifts' audit events in the shared outbox, as the shared audit client ships them, all the way into
compliance's log."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import uuid
from pathlib import Path

import grpc
import pytest
from limelight.compliance.v1 import audit_pb2, audit_pb2_grpc
from limelight.gifts.v1 import gifts_pb2, gifts_pb2_grpc

from libs.audit.events import AuditEvent
from libs.audit.protos import event_to_proto
from libs.auth.principal import Role
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.errors import FailedPrecondition, PermissionDenied
from libs.kit.server import ServiceDefinition, ServiceRuntime, start_service
from libs.kit.validation import violations_of
from libs.storage.database import open_database
from services.compliance.server import build as build_compliance
from services.gifts.audit_events import legacy_event_id, legacy_sequence_of
from services.gifts.config import GiftsConfig
from services.gifts.conftest import ON_BOTH_ENGINES, Harness, adult, build_harness, minor
from services.gifts.model.live import LiveSession
from services.gifts.server import GiftsService
from services.gifts.store.schema import MIGRATIONS, SERVICE
from services.gifts.usecases.commands import SendGift


def _story(h: Harness) -> LiveSession:
    """A LIVE, a top-up, a gift, and a refusal: four kinds of audit event."""
    live = h.go_live("carol")
    h.top_up("alice")
    h.submit(SendGift(adult("alice"), str(uuid.uuid4()), live.live_id, "rose", 1)).result()
    with pytest.raises(PermissionDenied):
        h.submit(SendGift(minor("kid"), str(uuid.uuid4()), live.live_id, "rose", 1)).result()
    return live


def _events(h: Harness) -> list[AuditEvent]:
    return [traced.event for traced in h.outbox.pending(100)]


def _ids(events: list[AuditEvent]) -> list[str]:
    return [event.event_id for event in events]


@ON_BOTH_ENGINES
def test_pending_events_keep_their_ids_until_acknowledged_then_move_on(harness: Harness) -> None:
    _story(harness)
    everything = _events(harness)
    first = [traced.event for traced in harness.outbox.pending(3)]
    assert _ids([t.event for t in harness.outbox.pending(3)]) == _ids(first) == _ids(everything[:3])  # a redelivery is the same
    harness.outbox.acknowledge(_ids(first))
    rest = _events(harness)
    assert rest and _ids(rest) == _ids(everything[3:])  # the next in commit order
    harness.outbox.reject(rest[0], "INVALID_ARGUMENT: bad")
    assert _ids(_events(harness)) == _ids(rest[1:])
    assert harness.outbox.counts() == (len(rest) - 1, 1)


def test_every_event_is_one_compliance_accepts(harness: Harness, tmp_path: Path) -> None:
    _story(harness)
    events = _events(harness)
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
    events = _events(harness)
    personal = ("alice", "carol", "kid", "bob", "users/", "creators/", "1990-05-17", "1990")
    assert any(e.reason == "INSUFFICIENT_COINS" for e in events)
    for event in events:
        values = " ".join([*event.attributes.keys(), *event.attributes.values()])
        assert not [word for word in personal if word in values], event
        if event.actor.startswith("users/"):
            assert event.subject_ref and event.subject_ref not in (event.actor, event.actor.removeprefix("users/"))


def test_every_event_names_its_resource_as_the_api_does(harness: Harness, tmp_path: Path) -> None:
    _story(harness)
    events = _events(harness)
    api_names = re.compile(r"^(creators/[a-z0-9-]+(/lives/[a-z0-9-]+(/giftTransfers/[a-z0-9-]+)?)?"
                           r"|users/[a-z0-9-]+(/standing|/wallet(/transactions/[0-9a-f]{16})?|/payouts/[a-z0-9-]+)?)$")
    assert [e.resource for e in events if not api_names.match(e.resource)] == []
    # An officer's prefix query for the creator finds the LIVE, the gift and the refusal in it.
    about_carol = {(e.action, e.outcome.value) for e in events if e.resource.startswith("creators/carol/")}
    assert about_carol == {("gifts.StartLive", "succeeded"), ("gifts.SendGift", "succeeded"),
                           ("gifts.SendGift", "rejected")}


def test_event_ids_of_the_old_outbox_are_uuids_that_carry_the_sequence() -> None:
    identifier = legacy_event_id("0123abcd", 42)
    assert uuid.UUID(identifier).version == 8 and legacy_sequence_of(identifier) == 42
    assert legacy_event_id("0123abcd", 42) != legacy_event_id("another-log", 42)


def test_what_the_old_outbox_held_moves_to_the_shared_one_with_its_ids(tmp_path: Path) -> None:
    old = open_database(SERVICE, MIGRATIONS[:1], root=tmp_path)
    with old.transaction() as tx:
        for number in (1, 2, 3):
            tx.execute("INSERT INTO audit_outbox (event) VALUES (?)", (json.dumps({
                "action": "SendGift", "actor": "users/alice", "outcome": "APPLIED", "request_id": f"r{number}",
                "resource": "creators/carol/lives/l/giftTransfers/g", "occurred_at_us": 1_000_000 * number,
                "reason": "", "details": {"coins": "5"}, "transfer_ids": [number], "trace_id": ""}),))
        tx.execute("UPDATE audit_delivery SET delivered_through = 1")
        tx.execute("INSERT INTO audit_set_aside (sequence, error) VALUES (3, 'INVALID_ARGUMENT: bad')")
        log_id = tx.execute("SELECT log_id FROM audit_delivery").fetchone()[0]
    old.close()
    harness = build_harness(tmp_path)  # opening the writer migrates and drains
    try:
        moved = _events(harness)
        assert [(e.event_id, e.action, e.attributes["transfer_ids"]) for e in moved] == [
            (legacy_event_id(log_id, 2), "gifts.SendGift", "2")]
        assert harness.outbox.counts() == (1, 1)
        with harness.reader.database.reading() as connection:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert not tables & {"legacy_audit_outbox", "audit_delivery", "audit_set_aside"}
    finally:
        harness.close()
    again = build_harness(tmp_path)  # a second opening finds nothing more to move
    try:
        assert _ids(_events(again)) == [legacy_event_id(log_id, 2)]
    finally:
        again.close()


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
        for _ in range(100):  # acknowledged, so gone from the outbox
            if await asyncio.to_thread(services[0].outbox.counts) == (0, 0):
                break
            await asyncio.sleep(0.1)
        assert await asyncio.to_thread(services[0].outbox.counts) == (0, 0)
    finally:
        await gifts.stop(grace=0)
        await compliance.stop(grace=0)
