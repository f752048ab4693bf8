"""Privacy's keys and data-subject requests: `<data>/compliance/privacy.db` (SQLite), or the schema
`compliance_privacy` on PostgreSQL. The only SQL here.

A request's details (the subject's own words) and its export are stored sealed under the
subject's key, so erasing them later makes both unreadable too; each step's audit event is
written to the outbox in the same transaction as the step.

Shredding overwrites the wrapped key with NULL. On SQLite it does so under `secure_delete`
(SQLite zeroes the freed bytes) and then truncates the WAL, so the destroyed key survives in no
page of the file. On PostgreSQL `shred_data_key` VACUUMs the table, which frees the old row
version for reuse; its bytes stay on disk until reused (and in the WAL until it is recycled).
The wrapped key is useless without the key-encryption key, which never enters the database.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from libs.audit.outbox import DatabaseAuditOutbox, TracedEvent, outbox_migration, write_event
from libs.errors import Aborted
from libs.privacy.subject_data import RetentionException
from libs.storage.database import Database, Migration, Row, Transaction, open_database
from libs.timestamps import epoch_us, from_epoch_us
from services.compliance.privacy.model import (
    DataSubjectRequest,
    RequestState,
    RequestType,
    ServiceProgress,
    StoredDataKey,
)

MIGRATIONS = (
    Migration.portable(1, """
CREATE TABLE data_keys (
    subject TEXT PRIMARY KEY,
    key_id TEXT NOT NULL UNIQUE,
    wrapped BLOB,
    create_us INTEGER NOT NULL,
    shred_us INTEGER,
    CHECK ((wrapped IS NULL) = (shred_us IS NOT NULL))
);
"""),
    Migration.portable(2, """
CREATE TABLE data_subject_requests (
    sequence INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    request_id TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    type TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('RECEIVED', 'IN_PROGRESS', 'COMPLETED', 'REJECTED')),
    details_sealed BLOB,
    requested_by TEXT NOT NULL,
    receive_us INTEGER NOT NULL,
    due_us INTEGER NOT NULL CHECK (due_us > receive_us),
    record_json TEXT NOT NULL,
    export BLOB
);
CREATE INDEX requests_by_due ON data_subject_requests (due_us, name);
CREATE INDEX requests_by_user ON data_subject_requests (user_id, due_us, name);
"""),
    outbox_migration(3),
)


class PrivacyStore:
    def __init__(self, database: Database) -> None:
        self._db = database
        if database.engine == "sqlite":
            with database.reading() as connection:
                connection.execute("PRAGMA secure_delete=ON")

    @classmethod
    def open(cls, data_root: Path) -> PrivacyStore:
        return cls(open_database("compliance", MIGRATIONS, area="privacy", root=data_root))

    def close(self) -> None:
        self._db.close()

    def audit_outbox(self) -> DatabaseAuditOutbox:
        return DatabaseAuditOutbox(self._db)

    # -- data-subject requests ---------------------------------------------------------------

    def request_for(self, request_id: str) -> tuple[DataSubjectRequest, str] | None:
        with self._db.reading() as connection:
            row = connection.execute("SELECT * FROM data_subject_requests WHERE request_id = ?",
                                     (request_id,)).fetchone()
        return None if row is None else (self._request(row), row["fingerprint"])

    def request(self, name: str) -> DataSubjectRequest | None:
        with self._db.reading() as connection:
            row = connection.execute("SELECT * FROM data_subject_requests WHERE name = ?", (name,)).fetchone()
        return None if row is None else self._request(row)

    def add_request(self, request: DataSubjectRequest, request_id: str, fingerprint: str,
                    sealed_details: bytes | None, event: object) -> DataSubjectRequest:
        with self._db.transaction() as tx:
            row = tx.execute("SELECT * FROM data_subject_requests WHERE request_id = ?", (request_id,)).fetchone()
            if row is not None:  # a retry raced the first attempt: the first one stands
                return self._request(row)
            tx.execute(
                "INSERT INTO data_subject_requests (name, user_id, request_id, fingerprint, type, state, details_sealed,"
                " requested_by, receive_us, due_us, record_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (request.name, request.user, request_id, fingerprint, request.type.value, request.state.value,
                 sealed_details, request.requested_by, epoch_us(request.receive_time), epoch_us(request.due_time),
                 _record_json(request)))
            _write(tx, event)
        return request

    def save_request(self, request: DataSubjectRequest, event: object, export: bytes | None = None, *,
                     replacing: DataSubjectRequest) -> None:
        """Store `request` in place of `replacing`, the version it was made from, or raise Aborted.

        Compare-and-set: when the stored request is no longer `replacing` (another call, or
        another replica, moved it on meanwhile), nothing is written, so no step is lost.
        """
        with self._db.transaction() as tx:
            saved = tx.execute(
                "UPDATE data_subject_requests SET state = ?, due_us = ?, record_json = ?, export = COALESCE(?, export)"
                " WHERE name = ? AND state = ? AND due_us = ? AND record_json = ?",
                (request.state.value, epoch_us(request.due_time), _record_json(request), export, request.name,
                 replacing.state.value, epoch_us(replacing.due_time), _record_json(replacing))).rowcount
            if saved != 1:
                raise Aborted(f"{request.name} changed while this step ran; read it again and retry",
                              reason="REQUEST_CHANGED_CONCURRENTLY", metadata={"request": request.name})
            _write(tx, event)

    def requests(self, user: str | None, state: RequestState | None, overdue_at: dt.datetime | None,
                 after: tuple[int, str] | None, limit: int) -> list[DataSubjectRequest]:
        conditions, parameters = ["1 = 1"], list[object]()
        if user is not None:
            conditions.append("user_id = ?")
            parameters.append(user)
        if state is not None:
            conditions.append("state = ?")
            parameters.append(state.value)
        if overdue_at is not None:
            conditions.append("state IN ('RECEIVED', 'IN_PROGRESS') AND due_us < ?")
            parameters.append(epoch_us(overdue_at))
        if after is not None:
            conditions.append("(due_us, name) > (?, ?)")
            parameters += [after[0], after[1]]
        with self._db.reading() as connection:
            rows = connection.execute(f"SELECT * FROM data_subject_requests WHERE {' AND '.join(conditions)}"
                                      " ORDER BY due_us, name LIMIT ?", (*parameters, limit)).fetchall()
        return [self._request(row) for row in rows]

    def export_of(self, name: str) -> bytes | None:
        with self._db.reading() as connection:
            row = connection.execute("SELECT export FROM data_subject_requests WHERE name = ?", (name,)).fetchone()
        return None if row is None or row["export"] is None else bytes(row["export"])

    def sealed_details(self, name: str) -> bytes | None:
        with self._db.reading() as connection:
            row = connection.execute("SELECT details_sealed FROM data_subject_requests WHERE name = ?",
                                     (name,)).fetchone()
        return None if row is None or row["details_sealed"] is None else bytes(row["details_sealed"])

    @staticmethod
    def _request(row: Row) -> DataSubjectRequest:
        record = json.loads(row["record_json"])
        return DataSubjectRequest(
            user=row["user_id"], request_key=row["name"].rsplit("/", 1)[1], type=RequestType(row["type"]),
            state=RequestState(row["state"]), details="", receive_time=from_epoch_us(row["receive_us"]),
            due_time=from_epoch_us(row["due_us"]), requested_by=row["requested_by"],
            extension_reason=record["extension_reason"],
            complete_time=None if record["complete_us"] is None else from_epoch_us(record["complete_us"]),
            rejection_reason=record["rejection_reason"],
            progress=tuple(ServiceProgress(p["service"], p["done"],
                                           None if p["complete_us"] is None else from_epoch_us(p["complete_us"]),
                                           p["summary"]) for p in record["progress"]),
            retention_exceptions=tuple(RetentionException(**kept) for kept in record["retention_exceptions"]),
            export_size_bytes=record["export_size_bytes"], contested_decision=record["contested_decision"])


    def data_key(self, subject: str) -> StoredDataKey | None:
        with self._db.reading() as connection:
            row = connection.execute("SELECT subject, key_id, wrapped, create_us, shred_us FROM data_keys"
                                     " WHERE subject = ?", (subject,)).fetchone()
        return None if row is None else _stored(row)

    def add_data_key(self, key: StoredDataKey) -> StoredDataKey:
        with self._db.transaction() as tx:
            tx.execute("INSERT INTO data_keys (subject, key_id, wrapped, create_us, shred_us) VALUES (?, ?, ?, ?, ?)"
                       " ON CONFLICT (subject) DO NOTHING",
                       (key.subject, key.key_id, key.wrapped, epoch_us(key.create_time),
                        None if key.shred_time is None else epoch_us(key.shred_time)))
            row = tx.execute("SELECT subject, key_id, wrapped, create_us, shred_us FROM data_keys WHERE subject = ?",
                             (key.subject,)).fetchone()
        return _stored(row)

    def shred_data_key(self, subject: str, key_id: str, now: dt.datetime) -> bool:
        with self._db.transaction() as tx:
            shredded = tx.execute("UPDATE data_keys SET wrapped = NULL, shred_us = ? WHERE subject = ? AND key_id = ?"
                                  " AND wrapped IS NOT NULL", (epoch_us(now), subject, key_id)).rowcount == 1
        if shredded:
            self._db.reclaim_freed_space("data_keys")
        return shredded

def _stored(row: Row) -> StoredDataKey:
    wrapped = row["wrapped"]
    return StoredDataKey(row["subject"], row["key_id"], None if wrapped is None else bytes(wrapped),
                         from_epoch_us(row["create_us"]),
                         None if row["shred_us"] is None else from_epoch_us(row["shred_us"]))


def _write(tx: Transaction, event: object) -> None:
    if not isinstance(event, TracedEvent):
        raise TypeError("a request step's audit event is a TracedEvent")
    write_event(tx, event)


def _record_json(request: DataSubjectRequest) -> str:
    return json.dumps({
        "extension_reason": request.extension_reason,
        "complete_us": None if request.complete_time is None else epoch_us(request.complete_time),
        "rejection_reason": request.rejection_reason,
        "progress": [{"service": p.service, "done": p.done, "summary": p.summary,
                      "complete_us": None if p.complete_time is None else epoch_us(p.complete_time)}
                     for p in request.progress],
        "retention_exceptions": [{"data_category": r.data_category, "legal_basis": r.legal_basis}
                                 for r in request.retention_exceptions],
        "export_size_bytes": request.export_size_bytes,
        "contested_decision": request.contested_decision,
    }, sort_keys=True)
