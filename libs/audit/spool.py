"""The audit client's own outbox, for events a service records with no store of its own.

One SQLite file per service (`<data dir>/<service>/audit-spool.db`, WAL,
synchronous=FULL) holding the tables of `libs.audit.outbox`. Writes go through a
`GroupCommitter`, so many request handlers recording at once share one fsync, and the
shipper's acknowledgements queue behind them on the same writer thread. Events leave the
spool only when compliance acknowledged them, or, if compliance refuses one for good
(malformed, or its id reused for other content), into `audit_outbox_rejected`, kept for
an operator instead of being retried forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

from libs.audit.events import AuditEvent
from libs.audit.outbox import SqliteAuditOutbox, TracedEvent, write_event
from libs.storage.committer import GroupCommitter
from libs.storage.database import Migration, Transaction
from libs.storage.paths import data_dir
from libs.storage.sqlite import SqliteDatabase

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
    # The spool becomes the shared outbox: the same tables any service's database includes.
    Migration(2, """
ALTER TABLE pending_event RENAME TO audit_outbox;
ALTER TABLE audit_outbox ADD COLUMN trace_context TEXT NOT NULL DEFAULT '{}';
ALTER TABLE rejected_event RENAME TO audit_outbox_rejected;
"""),
]


class AuditSpool(SqliteAuditOutbox):
    """An outbox in a database of its own, written through its own committer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        database = SqliteDatabase(path)
        database.migrate(MIGRATIONS)
        self._spool_committer = GroupCommitter(database, name="audit-spool")
        super().__init__(database, committer=self._spool_committer)

    @classmethod
    def open(cls, service: str, root: Path | None = None) -> AuditSpool:
        return cls((root or data_dir()) / service / "audit-spool.db")

    def add(self, events: Sequence[AuditEvent | TracedEvent]) -> Future[None]:
        """Resolves once the events are durable here; fails if they could not be written."""
        traced = [event if isinstance(event, TracedEvent) else TracedEvent(event) for event in events]

        def write(transaction: Transaction) -> None:
            for item in traced:
                write_event(transaction, item)

        return self._spool_committer.submit(write)

    def close(self) -> None:
        self._spool_committer.close()
        self._database.close()
