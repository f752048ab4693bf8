"""The audit outbox: events commit with the change they record, ship in order, and stay in their trace."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from limelight.compliance.v1 import audit_pb2_grpc
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from libs.audit.client import AuditClient, compliance_appender
from libs.audit.conftest import logged_actions, start_compliance
from libs.audit.events import AuditEvent, Outcome
from libs.audit.outbox import DatabaseAuditOutbox, TracedEvent, outbox_migration, write_event
from libs.audit.pseudonyms import Pseudonymizer
from libs.audit.spool import MIGRATIONS as SPOOL_MIGRATIONS
from libs.audit.spool import AuditSpool
from libs.auth.tokens import platform_signing_key
from libs.clock import utc_now
from libs.errors import FailedPrecondition
from libs.kit.clients import ServiceClients, ServiceTokenSource
from libs.kit.telemetry import Telemetry, configure_telemetry, read_spans
from libs.storage.committer import GroupCommitter
from libs.storage.database import Database, Migration, Transaction, open_database

VIDEO = "CREATE TABLE video (id TEXT PRIMARY KEY, state TEXT NOT NULL);"
MIGRATIONS = [Migration(1, VIDEO, postgres=VIDEO), outbox_migration(2)]


class Service:
    """A service's own database with the outbox in it, written through its committer."""

    def __init__(self, root: Path) -> None:
        self.database = open_database("ingest", MIGRATIONS, root=root)
        self.committer = GroupCommitter(self.database, name="ingest-commit")
        self.outbox = DatabaseAuditOutbox(self.database, committer=self.committer)

    def close(self) -> None:
        self.committer.close()
        self.database.close()


@pytest.fixture
def service(tmp_path: Path, database_engine: str) -> Iterator[Service]:
    opened = Service(tmp_path)
    yield opened
    opened.close()


def audit_client(tmp_path: Path, clients: ServiceClients, outbox: DatabaseAuditOutbox,
                 telemetry: Telemetry | None = None) -> AuditClient:
    return AuditClient(
        service="gifts",
        spool=AuditSpool.open("gifts", tmp_path),
        append=compliance_appender(clients.stub("compliance", audit_pb2_grpc.AuditServiceStub), timeout=2),
        pseudonymizer=Pseudonymizer.for_deployment(tmp_path),
        clock=utc_now,
        outbox=outbox,
        telemetry=telemetry,
        max_backoff_seconds=0.2,
    )


def publish(video_id: str, traced: TracedEvent, *, fail: bool = False) -> Callable[[Transaction], None]:
    def work(tx: Transaction) -> None:
        tx.execute("INSERT INTO video (id, state) VALUES (?, 'PUBLISHED')", (video_id,))
        write_event(tx, traced)
        if fail:
            raise RuntimeError("the change fails after its event was written")
    return work


def _count(database: Database, sql: str) -> int:
    with database.reading() as connection:
        return int(connection.execute(sql).fetchone()[0])


async def test_an_event_commits_with_its_change_or_not_at_all(
        tmp_path: Path, service: Service, clients: ServiceClients) -> None:
    audit = audit_client(tmp_path, clients, service.outbox)
    kept = audit.new_event(action="gifts.PublishVideo", resource="creators/ada/videos/v1", outcome=Outcome.SUCCEEDED)
    lost = audit.new_event(action="gifts.PublishVideo", resource="creators/ada/videos/v2", outcome=Outcome.SUCCEEDED)
    await service.committer.run(publish("v1", kept))
    with pytest.raises(RuntimeError):
        await service.committer.run(publish("v2", lost, fail=True))
    assert [t.event for t in service.outbox.pending(10)] == [kept.event]
    assert _count(service.database, "SELECT COUNT(*) FROM video") == 1
    await audit.stop(flush_seconds=0)


async def test_a_refusal_keeps_its_event_while_its_change_rolls_back(
        tmp_path: Path, service: Service, clients: ServiceClients) -> None:
    audit = audit_client(tmp_path, clients, service.outbox)
    traced = audit.new_event(action="gifts.PublishVideo", resource="creators/ada/videos/v1", outcome=Outcome.SUCCEEDED)

    def refuses(tx: Transaction) -> None:
        tx.execute("INSERT INTO video (id, state) VALUES ('v1', 'PUBLISHED')")
        raise FailedPrecondition("the review is not finished", reason="REVIEW_PENDING")

    with pytest.raises(FailedPrecondition):
        await service.committer.run(refuses, on_refused=lambda tx, error: write_event(
            tx, traced.with_outcome(Outcome.REJECTED, error.reason)))
    [recorded] = service.outbox.pending(10)
    assert (recorded.event.outcome, recorded.event.reason) == (Outcome.REJECTED, "REVIEW_PENDING")
    assert recorded.trace_context == traced.trace_context
    assert _count(service.database, "SELECT COUNT(*) FROM video") == 0
    await audit.stop(flush_seconds=0)


async def test_the_shipper_ships_the_outbox_in_order_and_acknowledges_what_arrived(
        tmp_path: Path, port: int, service: Service, clients: ServiceClients) -> None:
    compliance = await start_compliance(tmp_path, port)
    audit = audit_client(tmp_path, clients, service.outbox)
    service.committer.add_commit_listener(audit.wake_shipper)
    await audit.start()
    for number in range(6):
        traced = audit.new_event(action=f"gifts.Step{number}", resource=f"creators/ada/videos/v{number}",
                                 outcome=Outcome.SUCCEEDED)
        await service.committer.run(publish(f"v{number}", traced))
    assert await logged_actions(compliance, tmp_path, 6) == [f"gifts.Step{n}" for n in range(6)]
    await audit.stop()
    assert service.outbox.counts() == (0, 0)
    await compliance.stop(grace=0)


async def test_a_client_with_an_outbox_still_ships_what_record_spooled(
        tmp_path: Path, port: int, service: Service, clients: ServiceClients) -> None:
    compliance = await start_compliance(tmp_path, port)
    audit = audit_client(tmp_path, clients, service.outbox)
    await audit.start()
    await audit.record(action="gifts.Denied", resource="creators/ada", outcome=Outcome.DENIED)
    traced = audit.new_event(action="gifts.PublishVideo", resource="creators/ada/videos/v1", outcome=Outcome.SUCCEEDED)
    await service.committer.run(publish("v1", traced))
    assert sorted(await logged_actions(compliance, tmp_path, 2)) == ["gifts.Denied", "gifts.PublishVideo"]
    await audit.stop()
    assert service.outbox.counts() == (0, 0)
    await compliance.stop(grace=0)


async def test_the_append_joins_the_trace_of_the_call_that_recorded_the_event(
        tmp_path: Path, port: int, service: Service) -> None:
    telemetry = configure_telemetry("gifts", data_root=tmp_path)
    in_memory = InMemorySpanExporter()
    telemetry.provider.add_span_processor(SimpleSpanProcessor(in_memory))
    clients = ServiceClients(tracer=telemetry.tracer,
                             service_token=ServiceTokenSource("gifts", platform_signing_key(tmp_path)),
                             targets={"compliance": f"127.0.0.1:{port}"})
    compliance = await start_compliance(tmp_path, port)
    audit = audit_client(tmp_path, clients, service.outbox, telemetry)
    origins = []
    for number in range(2):  # two calls, each in its own trace, whose events ship in one batch
        with telemetry.tracer.start_as_current_span(f"SendGift{number}") as span:
            origins.append(span.get_span_context())
            traced = audit.new_event(action=f"gifts.Traced{number}", resource="creators/ada", outcome=Outcome.SUCCEEDED)
        await service.committer.run(publish(f"v{number}", traced))
    await audit.start()
    assert await logged_actions(compliance, tmp_path, 2) == ["gifts.Traced0", "gifts.Traced1"]
    await audit.stop()
    telemetry.provider.force_flush()
    compliance.runtime.telemetry.provider.force_flush()

    ship = next(span for span in in_memory.get_finished_spans() if span.name == "audit.ship")
    assert ship.parent is not None and ship.parent.span_id == origins[0].span_id
    assert ship.context.trace_id == origins[0].trace_id
    assert {link.context.span_id for link in ship.links} == {origin.span_id for origin in origins}
    # What compliance exported: its AppendEvents server span is in the first call's trace.
    appends = [span for span in read_spans(tmp_path)
               if str(span["name"]).endswith("AppendEvents") and span["kind"] == "SERVER"]
    assert [span["trace_id"] for span in appends] == [format(origins[0].trace_id, "032x")]
    await clients.close()
    telemetry.shutdown()
    await compliance.stop(grace=0)


def test_an_event_is_written_once_and_set_aside_once(service: Service) -> None:
    traced = TracedEvent(AuditEvent(event_id="5f0c6a4e-8a1b-4c55-9d7e-0b7c1d2e3f40", actor="services/gifts",
                                    action="gifts.SendGift", resource="creators/bo", outcome=Outcome.SUCCEEDED,
                                    event_time=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)))
    def write_twice(tx: Transaction) -> None:
        write_event(tx, traced)
        write_event(tx, traced)

    service.committer.submit(write_twice).result(timeout=10)
    assert service.outbox.counts() == (1, 0)
    service.outbox.reject(traced.event, "refused")
    service.outbox.reject(traced.event, "refused again")  # a retried rejection keeps the first record
    assert service.outbox.counts() == (0, 1)
    with service.database.reading() as connection:
        assert connection.execute("SELECT error FROM audit_outbox_rejected").fetchone()[0] == "refused"


def test_a_spool_written_before_the_outbox_keeps_its_events(tmp_path: Path, database_engine: str) -> None:
    old = open_database("gifts", SPOOL_MIGRATIONS[:1], area="audit_spool", root=tmp_path)
    event = TracedEvent(AuditEvent(event_id="0b7c1d2e-8a1b-4c55-9d7e-5f0c6a4e3f40", actor="services/gifts",
                                   action="gifts.SendGift", resource="creators/bo/lives/l1", outcome=Outcome.SUCCEEDED,
                                   event_time=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)))
    with old.transaction() as tx:
        tx.execute("INSERT INTO pending_event (event_id, record) VALUES (?, ?)",
                   (event.event.event_id, event.event.canonical_bytes().decode()))
    old.close()
    spool = AuditSpool.open("gifts", tmp_path, area="audit_spool")
    assert spool.pending(10) == [TracedEvent(event.event, {})]
    spooled = _columns(spool.database)
    spool.close()
    fresh = open_database("fresh", [outbox_migration(1)], root=tmp_path)
    assert _columns(fresh) == spooled
    fresh.close()


def _columns(database: Database) -> dict[str, list[str]]:
    """The outbox tables' columns, in order, as the engine's catalogue lists them."""
    listing = ("SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
               " AND table_name = ? ORDER BY ordinal_position" if database.engine == "postgres"
               else "SELECT name FROM pragma_table_info(?)")
    with database.reading() as connection:
        return {table: [row[0] for row in connection.execute(listing, (table,)).fetchall()]
                for table in ("audit_outbox", "audit_outbox_rejected")}
