"""The audit client's durable buffer: events a service recorded that compliance has not acknowledged.

One SQLite file per service (`<data dir>/<service>/audit-spool.db`, WAL,
synchronous=FULL). Writes are group-committed, so many request handlers recording at
once share one fsync. Events leave the spool only when compliance acknowledged them,
or, if compliance refuses one for good (malformed, or its id reused for other
content), into `rejected_event`, kept for an operator instead of being retried forever.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection, Sequence
from concurrent.futures import Future
from pathlib import Path

from libs.audit.events import AuditEvent
from libs.storage.group_commit import GroupCommitter
from libs.storage.paths import data_dir
from libs.storage.sqlite import Migration, SqliteDatabase

MIGRATIONS = [
    Migration(1, """
CREATE TABLE pending_event (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    record   TEXT NOT NULL  -- the event's canonical JSON
);
CREATE TABLE rejected_event (
    event_id    TEXT PRIMARY KEY,
    record      TEXT NOT NULL,
    error       TEXT NOT NULL,
    rejected_at TEXT NOT NULL
);
"""),
]


class AuditSpool:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._database = SqliteDatabase(path)
        self._database.migrate(MIGRATIONS)
        self._committer: GroupCommitter[Sequence[AuditEvent], None] = GroupCommitter(
            self._write, name="audit-spool", size_of=len)
        self._committer.start()

    @classmethod
    def open(cls, service: str, root: Path | None = None) -> AuditSpool:
        return cls((root or data_dir()) / service / "audit-spool.db")

    def add(self, events: Sequence[AuditEvent]) -> Future[None]:
        """Resolves once the events are durable here; fails if they could not be written."""
        return self._committer.submit(events)

    def _write(self, batches: list[Sequence[AuditEvent]]) -> list[None]:
        with self._database.transaction() as transaction:
            transaction.executemany(
                "INSERT OR IGNORE INTO pending_event (event_id, record) VALUES (?, ?)",
                [(event.event_id, event.canonical_bytes().decode()) for batch in batches for event in batch],
            )
        return [None] * len(batches)

    def pending(self, limit: int) -> list[AuditEvent]:
        """The oldest events not yet acknowledged, in the order they were recorded."""
        with self._database.reading() as connection:
            rows = connection.execute("SELECT record FROM pending_event ORDER BY position LIMIT ?", (limit,)).fetchall()
        return [AuditEvent.from_record(json.loads(row[0])) for row in rows]

    def acknowledge(self, event_ids: Collection[str]) -> None:
        with self._database.transaction() as transaction:
            transaction.executemany("DELETE FROM pending_event WHERE event_id = ?", [(i,) for i in event_ids])

    def reject(self, event: AuditEvent, error: str) -> None:
        with self._database.transaction() as transaction:
            transaction.execute("INSERT OR REPLACE INTO rejected_event (event_id, record, error, rejected_at) "
                                "VALUES (?, ?, ?, ?)", (event.event_id, event.canonical_bytes().decode(), error,
                                                        dt.datetime.now(dt.UTC).isoformat()))
            transaction.execute("DELETE FROM pending_event WHERE event_id = ?", (event.event_id,))

    def counts(self) -> tuple[int, int]:
        """(pending, rejected): what an operator watches."""
        with self._database.reading() as connection:
            pending = connection.execute("SELECT COUNT(*) FROM pending_event").fetchone()[0]
            rejected = connection.execute("SELECT COUNT(*) FROM rejected_event").fetchone()[0]
        return int(pending), int(rejected)

    def close(self) -> None:
        self._committer.stop()
        self._database.close()
