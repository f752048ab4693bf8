"""The consent store on a real database: the history is append-only in the schema itself."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from libs.audit.events import AuditEvent, Outcome
from libs.audit.outbox import TracedEvent
from libs.storage.database import IntegrityError, open_database
from services.compliance.consent.model import ConsentRecord, Decision, DecisionDraft, Method, Purpose
from services.compliance.consent.store import MIGRATIONS, ConsentRecordStore

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def store(tmp_path: Path, database_engine: str) -> Iterator[ConsentRecordStore]:
    opened = ConsentRecordStore.open(tmp_path)
    yield opened
    opened.close()


def record(record_id: str, purpose: Purpose = Purpose.PERSONALISED_CONTENT,
           decision: Decision = Decision.GRANTED) -> ConsentRecord:
    draft = DecisionDraft(purpose, decision, "2026-05-01", Method.SETTINGS_TOGGLE, NOW, "DE", "ios/5.2.1")
    return ConsentRecord(record_id, "users/ana", draft, NOW, "users/ana", 0)


def event(record_id: str) -> TracedEvent:
    return TracedEvent(AuditEvent(event_id=f"00000000-0000-4000-8000-{record_id:0>12}", actor="users/ana",
                                  action="compliance.RecordConsent", resource=f"users/ana/consentRecords/{record_id}",
                                  outcome=Outcome.SUCCEEDED, event_time=NOW))


async def test_records_and_their_audit_events_commit_together(store: ConsentRecordStore) -> None:
    [stored] = await store.record(request_id="r1", fingerprint="f", subject="users/ana", records=[record("a1")],
                                  events=[event("a1")])
    assert stored.version == 1 and store.state("users/ana").version == 1
    assert [traced.event.resource for traced in store.audit_outbox.pending(10)] == ["users/ana/consentRecords/a1"]


@pytest.mark.parametrize("statement", [
    "UPDATE consent_records SET decision = 'REFUSED'",
    "DELETE FROM consent_records",
    "UPDATE tcf_consents SET tc_string = 'forged'",
    "DELETE FROM tcf_consents",
])
async def test_the_history_cannot_be_rewritten(tmp_path: Path, store: ConsentRecordStore, statement: str) -> None:
    await store.record(request_id="r1", fingerprint="f", subject="users/ana", records=[record("a1")], events=[],
                       tc_string="CQ-tc-string")
    # Another handle on the same database, past the store's code: the schema itself refuses.
    database = open_database("compliance", MIGRATIONS, area="consent", root=tmp_path)
    with pytest.raises(IntegrityError, match="append-only"), database.transaction() as tx:
        tx.execute(statement)
    database.close()
    assert store.state("users/ana").latest[Purpose.PERSONALISED_CONTENT].draft.decision is Decision.GRANTED


async def test_the_latest_record_per_purpose_is_the_state(store: ConsentRecordStore) -> None:
    await store.record(request_id="r1", fingerprint="f1", subject="users/ana", records=[record("a1")], events=[])
    await store.record(request_id="r2", fingerprint="f2", subject="users/ana",
                       records=[record("a2", decision=Decision.WITHDRAWN), record("a3", Purpose.AD_MEASUREMENT)],
                       events=[])
    state = store.state("users/ana")
    assert state.version == 3
    assert {p: r.draft.decision for p, r in state.latest.items()} == {
        Purpose.PERSONALISED_CONTENT: Decision.WITHDRAWN, Purpose.AD_MEASUREMENT: Decision.GRANTED}
    assert [r.record_id for r in store.records("users/ana", None, 3, 10)] == ["a2", "a1"]
