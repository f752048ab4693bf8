"""The audit outbox: audit events stored in the same transaction as the change they record.

One path for every service. A service's SQLite database includes the outbox tables (add
`outbox_migration(n)` to its migrations); a use case writes its event with
`write_event(tx, traced)` inside the `Transaction` that makes the change, so the record
and the change commit together or not at all; the shared shipper
(`libs.audit.client.AuditClient`, given `SqliteAuditOutbox(database)`) sends them to
compliance in the order they were written and removes each once compliance acknowledged
it, or moves it to `audit_outbox_rejected` if compliance refused it for good.

    traced = audit.new_event(action="ingest.PublishVideo", resource=video.name,
                             outcome=Outcome.SUCCEEDED)          # on the request's task
    await committer.run(lambda tx: (store.publish(tx, video), write_event(tx, traced)))

`new_event` runs on the caller's task because it reads the call's identity and trace
context there; the unit of work may run on the committer thread, which has neither. The
trace context (W3C traceparent) is stored with the event so the shipper's AppendEvents
call joins the originating trace.

A service with no store of its own uses `AuditClient.record`, whose spool is this same
outbox in a database file of its own (`libs.audit.spool`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from libs.audit.events import AuditEvent, Outcome
from libs.clock import Clock, utc_now
from libs.storage.committer import GroupCommitter
from libs.storage.database import Migration, Transaction
from libs.storage.sqlite import SqliteDatabase

OUTBOX_SCHEMA = """
CREATE TABLE audit_outbox (
    position      INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id      TEXT NOT NULL UNIQUE,
    record        TEXT NOT NULL,               -- the event's canonical JSON
    trace_context TEXT NOT NULL DEFAULT '{}'   -- JSON object: traceparent (and tracestate)
);
CREATE TABLE audit_outbox_rejected (
    event_id    TEXT PRIMARY KEY,
    record      TEXT NOT NULL,
    error       TEXT NOT NULL,
    rejected_at TEXT NOT NULL
);
"""


def outbox_migration(version: int) -> Migration:
    """The step that adds the outbox tables to a service's database, at `version` of its list."""
    return Migration(version, OUTBOX_SCHEMA)


@dataclass(frozen=True)
class TracedEvent:
    """An audit event and the trace context of the call that recorded it."""

    event: AuditEvent
    trace_context: Mapping[str, str] = field(default_factory=dict)

    def with_outcome(self, outcome: Outcome, reason: str = "") -> TracedEvent:
        """The same call's event with another outcome: what `on_refused` writes for a refusal.

            on_refused=lambda tx, error: write_event(tx, traced.with_outcome(Outcome.REJECTED, error.reason))
        """
        return TracedEvent(dataclasses.replace(self.event, outcome=outcome, reason=reason), self.trace_context)


def write_event(tx: Transaction, traced: TracedEvent) -> None:
    """Put `traced` into the outbox inside `tx`; writing the same event id again is a no-op."""
    tx.execute("INSERT OR IGNORE INTO audit_outbox (event_id, record, trace_context) VALUES (?, ?, ?)",
               (traced.event.event_id, traced.event.canonical_bytes().decode(),
                json.dumps(dict(traced.trace_context), sort_keys=True)))


class SqliteAuditOutbox:
    """The outbox of one database as the shipper reads it (`libs.audit.client.AuditOutbox`).

    Acknowledgements and rejections are writes: given the database's `committer`, they go
    through it (one writer per database); without one they take their own transaction.
    Callers on an event loop run these methods in a thread (the shipper does).
    """

    def __init__(self, database: SqliteDatabase, *, committer: GroupCommitter | None = None,
                 clock: Clock = utc_now) -> None:
        self._database = database
        self._committer = committer
        self._clock = clock

    def pending(self, limit: int) -> list[TracedEvent]:
        """The oldest events not yet acknowledged, in the order they were written."""
        with self._database.reading() as connection:
            rows = connection.execute("SELECT record, trace_context FROM audit_outbox ORDER BY position LIMIT ?",
                                      (limit,)).fetchall()
        return [TracedEvent(AuditEvent.from_record(json.loads(row[0])), json.loads(row[1])) for row in rows]

    def acknowledge(self, event_ids: Collection[str]) -> None:
        rows = [(event_id,) for event_id in event_ids]
        self._write(lambda tx: tx.executemany("DELETE FROM audit_outbox WHERE event_id = ?", rows))

    def reject(self, event: AuditEvent, error: str) -> None:
        """Move `event` aside for an operator: compliance refused it for good."""
        def move(tx: Transaction) -> None:
            tx.execute("INSERT OR REPLACE INTO audit_outbox_rejected (event_id, record, error, rejected_at) "
                       "VALUES (?, ?, ?, ?)", (event.event_id, event.canonical_bytes().decode(), error,
                                               self._clock().isoformat()))
            tx.execute("DELETE FROM audit_outbox WHERE event_id = ?", (event.event_id,))
        self._write(move)

    def counts(self) -> tuple[int, int]:
        """(pending, rejected): what an operator watches."""
        with self._database.reading() as connection:
            pending = connection.execute("SELECT COUNT(*) FROM audit_outbox").fetchone()[0]
            rejected = connection.execute("SELECT COUNT(*) FROM audit_outbox_rejected").fetchone()[0]
        return int(pending), int(rejected)

    def _write(self, work: Callable[[Transaction], object]) -> None:
        if self._committer is not None:
            self._committer.submit(work).result()
            return
        with self._database.transaction() as tx:
            work(tx)

