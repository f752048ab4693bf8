"""SQLite persistence of the audit log: event records, perfect-subtree hashes, checkpoints.

The audit log has its own database file (`<data dir>/compliance/audit.db`): it is
append-only and fsync'd on every commit, and keeping it apart from the compliance
service's other tables keeps their writes off its single writer lock.

Tables:
- `audit_event`: one row per leaf, keyed by leaf index; `event_id` is UNIQUE, which
  is what makes appends idempotent where the data lives.
- `tree_node`: the hash of every perfect subtree, keyed by `level << 48 | index`
  (an integer rowid, the cheapest lookup SQLite has). Level 0 holds leaf hashes, and
  the highest leaf present defines the tree size, so events and tree grow in the
  same transaction and cannot disagree after a crash.
- `checkpoint`: every signed checkpoint, keyed by tree size; a trigger refuses a
  checkpoint that does not grow the log.
Triggers also refuse UPDATE and DELETE on events and nodes. They stop accidents, not
someone who can edit the file; the signed checkpoints are what catch that.

Writes go through one connection and reads through another, so proofs and queries
read a WAL snapshot instead of waiting for a group commit's fsync.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from libs.audit.events import AuditEvent, Outcome, canonical_json
from libs.storage.database import Migration, Transaction
from libs.storage.paths import data_dir
from libs.storage.sqlite import SqliteDatabase
from libs.timestamps import epoch_us, from_epoch_us
from services.compliance.audit.merkle import LEVEL_SHIFT, NodeId
from services.compliance.audit.model import EventFilter, SequencedEvent, StoredCheckpoint

MIGRATIONS = [
    Migration(1, """
CREATE TABLE audit_event (
    leaf_index    INTEGER PRIMARY KEY CHECK (leaf_index >= 0),
    event_id      TEXT NOT NULL UNIQUE,
    actor         TEXT NOT NULL,
    on_behalf_of  TEXT NOT NULL,
    action        TEXT NOT NULL,
    resource      TEXT NOT NULL,
    outcome       TEXT NOT NULL CHECK (outcome IN ('succeeded', 'denied', 'rejected', 'failed')),
    reason        TEXT NOT NULL,
    trace_id      TEXT NOT NULL,
    event_time_us INTEGER NOT NULL,
    subject_ref   TEXT NOT NULL,
    attributes    TEXT NOT NULL,  -- canonical JSON object
    logged_at_us  INTEGER NOT NULL
);
CREATE INDEX audit_event_by_subject ON audit_event (subject_ref, leaf_index);
CREATE INDEX audit_event_by_actor ON audit_event (actor, leaf_index);
CREATE INDEX audit_event_by_action ON audit_event (action, leaf_index);
CREATE INDEX audit_event_by_resource ON audit_event (resource, leaf_index);
CREATE INDEX audit_event_by_time ON audit_event (event_time_us);

CREATE TABLE tree_node (
    node_key INTEGER PRIMARY KEY,
    hash     BLOB NOT NULL CHECK (length(hash) = 32)
);

CREATE TABLE checkpoint (
    tree_size       INTEGER PRIMARY KEY CHECK (tree_size >= 0),
    root_hash       BLOB NOT NULL CHECK (length(root_hash) = 32),
    signed_note     TEXT NOT NULL,
    published_at_us INTEGER NOT NULL
);

CREATE TRIGGER audit_event_is_immutable BEFORE UPDATE ON audit_event
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER audit_event_is_never_deleted BEFORE DELETE ON audit_event
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER tree_node_is_immutable BEFORE UPDATE ON tree_node
BEGIN SELECT RAISE(ABORT, 'tree nodes are append-only'); END;
CREATE TRIGGER tree_node_is_never_deleted BEFORE DELETE ON tree_node
BEGIN SELECT RAISE(ABORT, 'tree nodes are append-only'); END;
CREATE TRIGGER checkpoint_grows BEFORE INSERT ON checkpoint
WHEN NEW.tree_size <= (SELECT COALESCE(MAX(tree_size), -1) FROM checkpoint)
BEGIN SELECT RAISE(ABORT, 'a checkpoint must grow the log'); END;
"""),
]

# SQLite allows 32766 bound parameters; stay far below it and keep statements cacheable.
_CHUNK = 500
_EVENT_COLUMNS = ("leaf_index, event_id, actor, on_behalf_of, action, resource, outcome, reason, trace_id, "
                  "event_time_us, subject_ref, attributes, logged_at_us")


class _Executes(Protocol):
    """A connection or a `Transaction`: both run statements, only the latter inside BEGIN IMMEDIATE."""

    def execute(self, sql: str, parameters: Sequence[object] = ..., /) -> sqlite3.Cursor: ...
    def executemany(self, sql: str, rows: Sequence[Sequence[object]], /) -> sqlite3.Cursor: ...


def _event_row(row: SequencedEvent) -> tuple[object, ...]:
    event = row.event
    return (row.leaf_index, event.event_id, event.actor, event.on_behalf_of, event.action, event.resource,
            event.outcome.value, event.reason, event.trace_id, epoch_us(event.event_time), event.subject_ref,
            canonical_json(event.attributes).decode(), epoch_us(row.logged_at))


def _sequenced(row: sqlite3.Row) -> SequencedEvent:
    event = AuditEvent(
        event_id=row["event_id"], actor=row["actor"], on_behalf_of=row["on_behalf_of"], action=row["action"],
        resource=row["resource"], outcome=Outcome(row["outcome"]), reason=row["reason"], trace_id=row["trace_id"],
        event_time=from_epoch_us(row["event_time_us"]), subject_ref=row["subject_ref"],
        attributes=json.loads(row["attributes"]),
    )
    return SequencedEvent(row["leaf_index"], event, from_epoch_us(row["logged_at_us"]))


def _stored_checkpoint(row: sqlite3.Row | None) -> StoredCheckpoint | None:
    if row is None:
        return None
    return StoredCheckpoint(row["tree_size"], row["root_hash"], row["signed_note"], from_epoch_us(row["published_at_us"]))


def _filter_sql(event_filter: EventFilter) -> tuple[list[str], list[object]]:
    clauses: list[str] = []
    parameters: list[object] = []
    for column, value in (("subject_ref", event_filter.subject_ref), ("actor", event_filter.actor),
                          ("action", event_filter.action),
                          ("outcome", event_filter.outcome.value if event_filter.outcome else "")):
        if value:
            clauses.append(f"{column} = ?")
            parameters.append(value)
    if event_filter.resource.endswith("/"):
        # A range rather than LIKE, so the index on resource serves it: '0' follows '/'.
        clauses.append("resource >= ? AND resource < ?")
        parameters += [event_filter.resource, event_filter.resource[:-1] + "0"]
    elif event_filter.resource:
        clauses.append("resource = ?")
        parameters.append(event_filter.resource)
    if event_filter.start_time is not None:
        clauses.append("event_time_us >= ?")
        parameters.append(epoch_us(event_filter.start_time))
    if event_filter.end_time is not None:
        clauses.append("event_time_us < ?")
        parameters.append(epoch_us(event_filter.end_time))
    return clauses, parameters


def _chunks(values: Sequence[object]) -> Iterator[Sequence[object]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start:start + _CHUNK]


class SqliteTreeReader:
    def __init__(self, connection: _Executes) -> None:
        self._connection = connection

    def _rows(self, sql: str, parameters: Sequence[object] = ()) -> list[sqlite3.Row]:
        return self._connection.execute(sql, parameters).fetchall()

    def tree_size(self) -> int:
        (highest,) = self._rows("SELECT MAX(node_key) FROM tree_node WHERE node_key < ?", (1 << LEVEL_SHIFT,))[0]
        return 0 if highest is None else int(highest) + 1

    def node_hashes(self, nodes: Collection[NodeId]) -> dict[NodeId, bytes]:
        keys = [node.key for node in nodes]
        found: dict[NodeId, bytes] = {}
        for chunk in _chunks(keys):
            marks = ",".join("?" * len(chunk))
            for key, hash_ in self._rows(f"SELECT node_key, hash FROM tree_node WHERE node_key IN ({marks})", chunk):
                found[NodeId.from_key(key)] = hash_
        if len(found) != len(set(keys)):
            absent = sorted(set(nodes) - found.keys())[:5]
            raise LookupError(f"the log is missing tree nodes it must hold, e.g. {absent}")
        return found

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        rows = self._rows("SELECT tree_size, root_hash, signed_note, published_at_us FROM checkpoint "
                          "ORDER BY tree_size DESC LIMIT 1")
        return _stored_checkpoint(rows[0] if rows else None)

    def checkpoint_at(self, tree_size: int) -> StoredCheckpoint | None:
        rows = self._rows("SELECT tree_size, root_hash, signed_note, published_at_us FROM checkpoint "
                          "WHERE tree_size = ?", (tree_size,))
        return _stored_checkpoint(rows[0] if rows else None)

    def leaf_index_of(self, event_id: str) -> int | None:
        rows = self._rows("SELECT leaf_index FROM audit_event WHERE event_id = ?", (event_id,))
        return int(rows[0][0]) if rows else None

    def events_newest_first(self, event_filter: EventFilter, *, before_leaf: int, limit: int) -> list[SequencedEvent]:
        clauses, parameters = _filter_sql(event_filter)
        where = " AND ".join([*clauses, "leaf_index < ?"])
        rows = self._rows(f"SELECT {_EVENT_COLUMNS} FROM audit_event WHERE {where} "
                          "ORDER BY leaf_index DESC LIMIT ?", [*parameters, before_leaf, limit])
        return [_sequenced(row) for row in rows]

    def events_oldest_first(
        self, event_filter: EventFilter, *, after_leaf: int, below_leaf: int, limit: int
    ) -> list[SequencedEvent]:
        clauses, parameters = _filter_sql(event_filter)
        where = " AND ".join([*clauses, "leaf_index > ?", "leaf_index < ?"])
        rows = self._rows(f"SELECT {_EVENT_COLUMNS} FROM audit_event WHERE {where} "
                          "ORDER BY leaf_index LIMIT ?", [*parameters, after_leaf, below_leaf, limit])
        return [_sequenced(row) for row in rows]

    def leaves_without_records(self, start: int, end: int) -> list[int]:
        (records,) = self._rows("SELECT COUNT(*) FROM audit_event WHERE leaf_index >= ? AND leaf_index < ?",
                                (start, end))[0]
        if records == end - start:
            return []  # the usual case, answered from the primary key alone
        rows = self._rows("SELECT node_key FROM tree_node WHERE node_key >= ? AND node_key < ? AND NOT EXISTS "
                          "(SELECT 1 FROM audit_event WHERE leaf_index = node_key)", (start, end))
        return [int(row[0]) for row in rows]


class SqliteLogWriter(SqliteTreeReader):
    def __init__(self, transaction: _Executes) -> None:
        super().__init__(transaction)
        self._transaction = transaction

    def logged_hashes(self, event_ids: Collection[str]) -> dict[str, tuple[int, bytes]]:
        found: dict[str, tuple[int, bytes]] = {}
        for chunk in _chunks(list(event_ids)):
            marks = ",".join("?" * len(chunk))
            rows = self._rows("SELECT e.event_id, e.leaf_index, n.hash FROM audit_event e "
                              f"JOIN tree_node n ON n.node_key = e.leaf_index WHERE e.event_id IN ({marks})", chunk)
            for event_id, leaf_index, hash_ in rows:
                found[event_id] = (leaf_index, hash_)
        return found

    def add_events(self, events: Sequence[SequencedEvent]) -> None:
        self._transaction.executemany(
            f"INSERT INTO audit_event ({_EVENT_COLUMNS}) VALUES ({', '.join('?' * 13)})",
            [_event_row(row) for row in events],
        )

    def add_nodes(self, nodes: Sequence[tuple[NodeId, bytes]]) -> None:
        self._transaction.executemany(
            "INSERT INTO tree_node (node_key, hash) VALUES (?, ?)", [(node.key, hash_) for node, hash_ in nodes]
        )

    def add_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        self._transaction.execute(
            "INSERT INTO checkpoint (tree_size, root_hash, signed_note, published_at_us) VALUES (?, ?, ?, ?)",
            (checkpoint.tree_size, checkpoint.root_hash, checkpoint.signed_note, epoch_us(checkpoint.published_at)),
        )


def database_path(root: Path | None = None) -> Path:
    return (root or data_dir()) / "compliance" / "audit.db"


class SqliteAuditStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer = SqliteDatabase(path)
        self._writer.migrate(MIGRATIONS)
        self._reader = SqliteDatabase(path)

    @classmethod
    def open(cls, root: Path | None = None) -> SqliteAuditStore:
        return cls(database_path(root))

    @contextmanager
    def reading(self) -> Iterator[SqliteTreeReader]:
        with self._reader.reading() as connection:
            yield SqliteTreeReader(connection)

    @contextmanager
    def writing(self) -> Iterator[SqliteLogWriter]:
        with self._writer.transaction() as transaction:
            yield SqliteLogWriter(transaction)

    @property
    def writer_database(self) -> SqliteDatabase:
        """The write connection, for the group committer that owns it while the log serves."""
        return self._writer

    @staticmethod
    def log_writer(transaction: Transaction) -> SqliteLogWriter:
        """The log's view of a transaction the committer opened."""
        return SqliteLogWriter(transaction)

    def close(self) -> None:
        self._reader.close()
        self._writer.close()
