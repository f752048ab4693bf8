from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from libs.audit.events import AuditEvent, Outcome
from libs.storage.testing import database_engine, postgres_server  # noqa: F401
from libs.tlog.note import NoteSigner
from services.compliance.audit.queries import AuditQueries
from services.compliance.audit.store import AuditLogStore
from services.compliance.audit.usecases import AuditLog

ORIGIN = "limelight.test/audit"


class MovableClock:
    def __init__(self) -> None:
        self.now = dt.datetime(2025, 5, 1, 12, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float = 1.0) -> None:
        self.now += dt.timedelta(seconds=seconds)


def audit_event(number: int, **overrides: Any) -> AuditEvent:
    """A distinct, deterministic event; `number` also orders the event times."""
    event = AuditEvent(
        event_id=str(uuid.UUID(int=number + 1)),
        actor=f"services/gifts-{number % 3}",
        action="gifts.SendGift",
        resource=f"streams/{number % 5}/gifts/{number}",
        outcome=Outcome.SUCCEEDED if number % 4 else Outcome.REJECTED,
        reason="" if number % 4 else "VIEWER_UNDER_18",
        trace_id=f"{number:032x}",
        event_time=dt.datetime(2025, 5, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=number),
        subject_ref=f"{number % 7:064x}",
        attributes={"coins": str(number * 10)},
    )
    return dataclasses.replace(event, **overrides)


def edit_database(store: AuditLogStore, *statements: tuple[str, tuple[object, ...]]) -> None:
    """What anyone with write access to the database can do: drop the store's guards and edit rows."""
    with store.writer_database.transaction() as tx:
        if store.engine == "postgres":
            for table in ("audit_event", "tree_node", "checkpoint"):
                tx.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        else:
            for (trigger,) in tx.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
                tx.execute(f"DROP TRIGGER {trigger}")
        for sql, parameters in statements:
            tx.execute(sql, parameters)


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner.generate(ORIGIN)


@pytest.fixture
def store(tmp_path: Path, database_engine: str) -> Iterator[AuditLogStore]:  # noqa: F811 (the imported fixture)
    opened = AuditLogStore.open(tmp_path)
    yield opened
    opened.close()


@pytest.fixture
def audit_log(store: AuditLogStore, signer: NoteSigner, clock: MovableClock) -> AuditLog:
    return AuditLog(store, signer, clock=clock)


@pytest.fixture
def queries(store: AuditLogStore) -> AuditQueries:
    return AuditQueries(store)
