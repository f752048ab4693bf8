"""The privacy store on both engines: a request step never overwrites a step it did not see."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from libs.audit.events import AuditEvent, Outcome
from libs.audit.outbox import TracedEvent
from libs.errors import Aborted
from services.compliance.privacy.model import DataSubjectRequest, RequestState, RequestType, months_after
from services.compliance.privacy.store import PrivacyStore

NOW = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def store(tmp_path: Path, database_engine: str) -> Iterator[PrivacyStore]:
    opened = PrivacyStore.open(tmp_path)
    yield opened
    opened.close()


def step(action: str, request: DataSubjectRequest) -> TracedEvent:
    return TracedEvent(AuditEvent(event_id=str(uuid.uuid4()), actor="users/olga", action=action,
                                  resource=request.name, outcome=Outcome.SUCCEEDED, event_time=NOW))


def test_a_step_made_from_a_stale_read_is_refused_and_leaves_no_trace(store: PrivacyStore) -> None:
    received = DataSubjectRequest("users/ada", "k1", RequestType.RECTIFICATION, RequestState.RECEIVED, "", NOW,
                                  months_after(NOW, 1), "users/ada")
    store.add_request(received, "r1", "f1", None, step("compliance.CreateDataSubjectRequest", received))
    # Two officers read the same request; one extends it, then the other's rejection arrives.
    extended = received.extended(2, "many systems to search")
    store.save_request(extended, step("compliance.ExtendDataSubjectRequest", extended), replacing=received)
    rejected = received.rejected("manifestly unfounded", NOW)
    with pytest.raises(Aborted) as refused:
        store.save_request(rejected, step("compliance.RejectDataSubjectRequest", rejected), replacing=received)
    assert refused.value.reason == "REQUEST_CHANGED_CONCURRENTLY"
    stored = store.request(received.name)
    assert stored is not None and (stored.state, stored.due_time, stored.extension_reason) == (
        extended.state, extended.due_time, "many systems to search")
    assert [t.event.action for t in store.audit_outbox().pending(10)] == [
        "compliance.CreateDataSubjectRequest", "compliance.ExtendDataSubjectRequest"]
