"""The audit log's store, on SQLite or PostgreSQL: event records, perfect-subtree hashes, checkpoints.

The audit log is a store of its own (`<data dir>/compliance/audit.db`, or the schema
`compliance_audit` on PostgreSQL): it is append-only and durable on every commit, and
keeping it apart from the compliance service's other tables keeps their writes off its
writer lock.

Tables:
- `audit_event`: one row per leaf, keyed by leaf index; `event_id` is UNIQUE, which
  is what makes appends idempotent where the data lives.
- `tree_node`: the hash of every perfect subtree, keyed by `level << 48 | index`
  (an integer key, the cheapest lookup either engine has). Level 0 holds leaf hashes,
  and the highest leaf present defines the tree size, so events and tree grow in the
  same transaction and cannot disagree after a crash.
- `checkpoint`: every signed checkpoint, keyed by tree size; a trigger refuses a
  checkpoint that does not grow the log.
Triggers also refuse UPDATE and DELETE on events and nodes (PL/pgSQL on PostgreSQL,
raising check_violation, which reaches the code as `IntegrityError`). They stop
accidents, not someone who can edit the database; the signed checkpoints catch that.

Writes go through the writer handle and reads through the reader (SQLite: a second
connection; PostgreSQL: the pool), so proofs and queries read a snapshot instead of
waiting for a group commit's fsync.

Replicas over one PostgreSQL append to one log: the writer lock (`Database.transaction`)
makes their transactions take turns, and each reads the tree's size and border inside its
own transaction, so leaves stay gap-free and in one order. Checkpoints are signed by one
replica at a time, the one holding the sequencer lease (`SequencerLease`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from libs.audit.events import AuditEvent, Outcome, canonical_json
from libs.storage.database import Database, Migration, Row, SessionLock, Transaction, open_database
from libs.timestamps import epoch_us, from_epoch_us
from services.compliance.audit.merkle import LEVEL_SHIFT, NodeId
from services.compliance.audit.model import EventFilter, SequencedEvent, StoredCheckpoint

log = logging.getLogger(__name__)

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
""", postgres="""
CREATE TABLE audit_event (
    leaf_index    BIGINT PRIMARY KEY CHECK (leaf_index >= 0),
    event_id      TEXT NOT NULL UNIQUE,
    actor         TEXT NOT NULL,
    on_behalf_of  TEXT NOT NULL,
    action        TEXT NOT NULL,
    resource      TEXT COLLATE "C" NOT NULL,  -- byte order: a prefix is a range, as on SQLite
    outcome       TEXT NOT NULL CHECK (outcome IN ('succeeded', 'denied', 'rejected', 'failed')),
    reason        TEXT NOT NULL,
    trace_id      TEXT NOT NULL,
    event_time_us BIGINT NOT NULL,
    subject_ref   TEXT NOT NULL,
    attributes    TEXT NOT NULL,  -- canonical JSON object, kept byte for byte
    logged_at_us  BIGINT NOT NULL
);
CREATE INDEX audit_event_by_subject ON audit_event (subject_ref, leaf_index);
CREATE INDEX audit_event_by_actor ON audit_event (actor, leaf_index);
CREATE INDEX audit_event_by_action ON audit_event (action, leaf_index);
CREATE INDEX audit_event_by_resource ON audit_event (resource, leaf_index);
CREATE INDEX audit_event_by_time ON audit_event (event_time_us);

CREATE TABLE tree_node (
    node_key BIGINT PRIMARY KEY,
    hash     BYTEA NOT NULL CHECK (octet_length(hash) = 32)
);

CREATE TABLE checkpoint (
    tree_size       BIGINT PRIMARY KEY CHECK (tree_size >= 0),
    root_hash       BYTEA NOT NULL CHECK (octet_length(root_hash) = 32),
    signed_note     TEXT NOT NULL,
    published_at_us BIGINT NOT NULL
);

CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% are append-only', TG_ARGV[0] USING ERRCODE = 'check_violation';
END $$;
CREATE TRIGGER audit_event_is_append_only BEFORE UPDATE OR DELETE ON audit_event
FOR EACH ROW EXECUTE FUNCTION refuse_change('audit events');
CREATE TRIGGER audit_event_is_never_truncated BEFORE TRUNCATE ON audit_event
FOR EACH STATEMENT EXECUTE FUNCTION refuse_change('audit events');
CREATE TRIGGER tree_node_is_append_only BEFORE UPDATE OR DELETE ON tree_node
FOR EACH ROW EXECUTE FUNCTION refuse_change('tree nodes');
CREATE TRIGGER tree_node_is_never_truncated BEFORE TRUNCATE ON tree_node
FOR EACH STATEMENT EXECUTE FUNCTION refuse_change('tree nodes');

CREATE FUNCTION checkpoint_grows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.tree_size <= (SELECT COALESCE(MAX(tree_size), -1) FROM checkpoint) THEN
        RAISE EXCEPTION 'a checkpoint must grow the log' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER checkpoint_grows BEFORE INSERT ON checkpoint
FOR EACH ROW EXECUTE FUNCTION checkpoint_grows();
"""),
]

# SQLite allows 32766 bound parameters; stay far below it and keep statements cacheable.
_CHUNK = 500
_EVENT_COLUMNS = ("leaf_index, event_id, actor, on_behalf_of, action, resource, outcome, reason, trace_id, "
                  "event_time_us, subject_ref, attributes, logged_at_us")


def _event_row(row: SequencedEvent) -> tuple[object, ...]:
    event = row.event
    return (row.leaf_index, event.event_id, event.actor, event.on_behalf_of, event.action, event.resource,
            event.outcome.value, event.reason, event.trace_id, epoch_us(event.event_time), event.subject_ref,
            canonical_json(event.attributes).decode(), epoch_us(row.logged_at))


def _sequenced(row: Row) -> SequencedEvent:
    event = AuditEvent(
        event_id=row["event_id"], actor=row["actor"], on_behalf_of=row["on_behalf_of"], action=row["action"],
        resource=row["resource"], outcome=Outcome(row["outcome"]), reason=row["reason"], trace_id=row["trace_id"],
        event_time=from_epoch_us(row["event_time_us"]), subject_ref=row["subject_ref"],
        attributes=json.loads(row["attributes"]),
    )
    return SequencedEvent(row["leaf_index"], event, from_epoch_us(row["logged_at_us"]))


def _stored_checkpoint(row: Row | None) -> StoredCheckpoint | None:
    if row is None:
        return None
    return StoredCheckpoint(row["tree_size"], bytes(row["root_hash"]), row["signed_note"],
                            from_epoch_us(row["published_at_us"]))


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


class TreeSnapshot:
    """The log as one transaction sees it (`usecases.TreeReader`)."""

    def __init__(self, transaction: Transaction) -> None:
        self.transaction = transaction

    def _rows(self, sql: str, parameters: Sequence[object] = ()) -> list[Row]:
        return self.transaction.execute(sql, parameters).fetchall()

    def tree_size(self) -> int:
        highest = self._rows("SELECT MAX(node_key) FROM tree_node WHERE node_key < ?", (1 << LEVEL_SHIFT,))[0][0]
        return 0 if highest is None else int(highest) + 1

    def node_hashes(self, nodes: Collection[NodeId]) -> dict[NodeId, bytes]:
        keys = [node.key for node in nodes]
        found: dict[NodeId, bytes] = {}
        for chunk in _chunks(keys):
            marks = ",".join("?" * len(chunk))
            for row in self._rows(f"SELECT node_key, hash FROM tree_node WHERE node_key IN ({marks})", chunk):
                found[NodeId.from_key(int(row[0]))] = bytes(row[1])
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
        records = self._rows("SELECT COUNT(*) FROM audit_event WHERE leaf_index >= ? AND leaf_index < ?",
                             (start, end))[0][0]
        if records == end - start:
            return []  # the usual case, answered from the primary key alone
        rows = self._rows("SELECT node_key FROM tree_node WHERE node_key >= ? AND node_key < ? AND NOT EXISTS "
                          "(SELECT 1 FROM audit_event WHERE leaf_index = node_key)", (start, end))
        return [int(row[0]) for row in rows]


class LogTransaction(TreeSnapshot):
    """One write transaction of the log (`usecases.LogWriter`)."""

    def logged_hashes(self, event_ids: Collection[str]) -> dict[str, tuple[int, bytes]]:
        found: dict[str, tuple[int, bytes]] = {}
        for chunk in _chunks(list(event_ids)):
            marks = ",".join("?" * len(chunk))
            rows = self._rows("SELECT e.event_id, e.leaf_index, n.hash FROM audit_event e "
                              f"JOIN tree_node n ON n.node_key = e.leaf_index WHERE e.event_id IN ({marks})", chunk)
            for row in rows:
                found[str(row[0])] = (int(row[1]), bytes(row[2]))
        return found

    def add_events(self, events: Sequence[SequencedEvent]) -> None:
        self.transaction.executemany(
            f"INSERT INTO audit_event ({_EVENT_COLUMNS}) VALUES ({', '.join('?' * 13)})",
            [_event_row(row) for row in events],
        )

    def add_nodes(self, nodes: Sequence[tuple[NodeId, bytes]]) -> None:
        self.transaction.executemany(
            "INSERT INTO tree_node (node_key, hash) VALUES (?, ?)", [(node.key, hash_) for node, hash_ in nodes]
        )

    def add_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        self.transaction.execute(
            "INSERT INTO checkpoint (tree_size, root_hash, signed_note, published_at_us) VALUES (?, ?, ?, ?)",
            (checkpoint.tree_size, checkpoint.root_hash, checkpoint.signed_note, epoch_us(checkpoint.published_at)),
        )


class AuditLogStore:
    def __init__(self, database: Database) -> None:
        self._writer = database
        self._reader = database.open_reader()

    @classmethod
    def open(cls, root: Path | None = None) -> AuditLogStore:
        """`<root>/compliance/audit.db`, or the schema `compliance_audit` on PostgreSQL."""
        return cls(open_database("compliance", MIGRATIONS, area="audit", root=root))

    @property
    def engine(self) -> str:
        return self._writer.engine

    @contextmanager
    def reading(self) -> Iterator[TreeSnapshot]:
        with self._reader.reading() as transaction:
            yield TreeSnapshot(transaction)

    @contextmanager
    def writing(self) -> Iterator[LogTransaction]:
        with self._writer.transaction() as transaction:
            yield LogTransaction(transaction)

    @property
    def writer_database(self) -> Database:
        """The writer handle, for the group committer that owns it while the log serves."""
        return self._writer

    @staticmethod
    def log_writer(transaction: Transaction) -> LogTransaction:
        """The log's view of a transaction the committer opened."""
        return LogTransaction(transaction)

    def sequencer_lease(self) -> SessionLock:
        """This process's claim to be the log's sequencer, the one replica that signs checkpoints."""
        return self._writer.session_lock("sequencer")

    def close(self) -> None:
        if self._reader is not self._writer:
            self._reader.close()
        self._writer.close()
