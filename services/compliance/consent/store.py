"""Consent records in SQLite (WAL, synchronous=FULL): `<data>/compliance/consent.db`. The only SQL here.

The history is append-only in the schema: triggers refuse every UPDATE and DELETE of a
consent record or a stored TC string. A record's `sequence` is its place in the whole
history and the subject's consent version after it. Request ids are a table's primary key,
written in the same transaction as the records they produced and their audit events
(the outbox), so a retry finds them and nothing is half-written.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

from libs.audit.outbox import SqliteAuditOutbox, TracedEvent, outbox_migration, write_event
from libs.errors import AlreadyExists
from libs.storage.committer import GroupCommitter
from libs.storage.database import Migration, Transaction
from libs.storage.sqlite import SqliteDatabase
from libs.timestamps import epoch_us, from_epoch_us
from services.compliance.consent.model import (
    ConsentRecord,
    Decision,
    DecisionDraft,
    Method,
    Purpose,
    SubjectState,
)

MIGRATIONS = (
    Migration(1, """
CREATE TABLE consent_requests (
    request_id TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    fingerprint TEXT NOT NULL
);
CREATE TABLE tcf_consents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subject TEXT NOT NULL,
    request_id TEXT NOT NULL REFERENCES consent_requests (request_id),
    tc_string TEXT NOT NULL,
    record_us INTEGER NOT NULL
);
CREATE INDEX tcf_consents_by_subject ON tcf_consents (subject, id DESC);
CREATE TABLE consent_records (
    sequence INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id TEXT NOT NULL UNIQUE,
    subject TEXT NOT NULL,
    purpose TEXT NOT NULL CHECK (purpose IN ('DEVICE_STORAGE', 'PERSONALISED_CONTENT', 'PERSONALISED_ADS',
        'AD_MEASUREMENT', 'PRODUCT_ANALYTICS', 'MARKETING_MESSAGES', 'AFFILIATE_TRACKING')),
    decision TEXT NOT NULL CHECK (decision IN ('GRANTED', 'REFUSED', 'WITHDRAWN')),
    notice_version TEXT NOT NULL CHECK (length(notice_version) BETWEEN 1 AND 64),
    method TEXT NOT NULL CHECK (method IN ('IN_APP_DIALOG', 'SETTINGS_TOGGLE', 'TCF_CMP', 'SUPPORT_REQUEST')),
    jurisdiction TEXT NOT NULL,
    source TEXT NOT NULL,
    decision_us INTEGER NOT NULL,
    record_us INTEGER NOT NULL,
    recorded_by TEXT NOT NULL,
    request_id TEXT NOT NULL REFERENCES consent_requests (request_id),
    tcf_consent INTEGER REFERENCES tcf_consents (id)
);
CREATE INDEX consent_records_by_subject ON consent_records (subject, sequence DESC);
CREATE INDEX consent_records_by_purpose ON consent_records (subject, purpose, sequence DESC);
CREATE INDEX consent_records_by_request ON consent_records (request_id, sequence);
CREATE TRIGGER consent_records_append_only_update BEFORE UPDATE ON consent_records
BEGIN SELECT RAISE(ABORT, 'consent records are append-only'); END;
CREATE TRIGGER consent_records_append_only_delete BEFORE DELETE ON consent_records
BEGIN SELECT RAISE(ABORT, 'consent records are append-only'); END;
CREATE TRIGGER tcf_consents_append_only_update BEFORE UPDATE ON tcf_consents
BEGIN SELECT RAISE(ABORT, 'stored TC strings are append-only'); END;
CREATE TRIGGER tcf_consents_append_only_delete BEFORE DELETE ON tcf_consents
BEGIN SELECT RAISE(ABORT, 'stored TC strings are append-only'); END;
"""),
    outbox_migration(2),
)

_COLUMNS = ("sequence, record_id, subject, purpose, decision, notice_version, method, jurisdiction, source,"
            " decision_us, record_us, recorded_by")


class SqliteConsentStore:
    def __init__(self, path: Path) -> None:
        self._writer = SqliteDatabase(path)
        self._writer.migrate(MIGRATIONS)
        self._reader = SqliteDatabase(path)
        self._committer = GroupCommitter(self._writer, name="consent-store")
        self.audit_outbox = SqliteAuditOutbox(self._reader, committer=self._committer)

    @classmethod
    def open(cls, data_root: Path) -> SqliteConsentStore:
        return cls(data_root / "compliance" / "consent.db")

    def add_commit_listener(self, listener: Callable[[], None]) -> None:
        """Call `listener()` (quick, thread-safe) after every commit."""
        self._committer.add_commit_listener(listener)

    def close(self) -> None:
        self._committer.close()
        self._writer.close()
        self._reader.close()

    # -- writes ------------------------------------------------------------------------------

    async def record(self, *, request_id: str, fingerprint: str, subject: str, records: Sequence[ConsentRecord],
                     events: Sequence[object], tc_string: str = "") -> list[ConsentRecord]:
        def work(tx: Transaction) -> list[ConsentRecord]:
            earlier = tx.execute("SELECT subject, fingerprint FROM consent_requests WHERE request_id = ?",
                                 (request_id,)).fetchone()
            if earlier is not None:
                if earlier["fingerprint"] != fingerprint or earlier["subject"] != subject:
                    raise AlreadyExists(f"request_id {request_id} was used for a different consent request",
                                        reason="REQUEST_ID_REUSED", metadata={"request_id": request_id})
                rows = tx.execute(f"SELECT {_COLUMNS} FROM consent_records WHERE request_id = ? ORDER BY sequence",
                                  (request_id,)).fetchall()
                return [_record(row) for row in rows]
            tx.execute("INSERT INTO consent_requests (request_id, subject, fingerprint) VALUES (?, ?, ?)",
                       (request_id, subject, fingerprint))
            tcf_id = None
            if tc_string:
                tcf_id = tx.execute(
                    "INSERT INTO tcf_consents (subject, request_id, tc_string, record_us) VALUES (?, ?, ?, ?)",
                    (subject, request_id, tc_string, epoch_us(records[0].record_time))).lastrowid
            stored = []
            for record in records:
                draft = record.draft
                sequence = tx.execute(
                    "INSERT INTO consent_records (record_id, subject, purpose, decision, notice_version, method,"
                    " jurisdiction, source, decision_us, record_us, recorded_by, request_id, tcf_consent)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (record.record_id, subject, draft.purpose.value, draft.decision.value, draft.notice_version,
                     draft.method.value, draft.jurisdiction, draft.source, epoch_us(draft.decision_time),
                     epoch_us(record.record_time), record.recorded_by, request_id, tcf_id)).lastrowid
                assert sequence is not None
                stored.append(ConsentRecord(record.record_id, subject, draft, record.record_time, record.recorded_by,
                                            sequence))
            for event in events:
                assert isinstance(event, TracedEvent)
                write_event(tx, event)
            return stored

        return await self._committer.run(work)

    # -- reads -------------------------------------------------------------------------------

    def state(self, subject: str) -> SubjectState:
        with self._reader.reading() as connection:
            rows = connection.execute(
                f"SELECT {_COLUMNS} FROM consent_records WHERE sequence IN"
                " (SELECT MAX(sequence) FROM consent_records WHERE subject = ? GROUP BY purpose)",
                (subject,)).fetchall()
        latest = {record.draft.purpose: record for record in map(_record, rows)}
        return SubjectState(max((record.version for record in latest.values()), default=0), latest)

    def records(self, subject: str, purpose: Purpose | None, before: int | None, limit: int) -> list[ConsentRecord]:
        clauses, parameters = ["subject = ?"], [subject]
        if purpose is not None:
            clauses.append("purpose = ?")
            parameters.append(purpose.value)
        if before is not None:
            clauses.append("sequence < ?")
            parameters.append(str(before))
        with self._reader.reading() as connection:
            rows = connection.execute(
                f"SELECT {_COLUMNS} FROM consent_records WHERE {' AND '.join(clauses)}"
                " ORDER BY sequence DESC LIMIT ?", [*parameters, limit]).fetchall()
        return [_record(row) for row in rows]

    def latest_tc_string(self, subject: str) -> str:
        with self._reader.reading() as connection:
            row = connection.execute("SELECT tc_string FROM tcf_consents WHERE subject = ? ORDER BY id DESC LIMIT 1",
                                     (subject,)).fetchone()
        return str(row[0]) if row else ""

    def head(self) -> int:
        with self._reader.reading() as connection:
            return int(connection.execute("SELECT COALESCE(MAX(sequence), 0) FROM consent_records").fetchone()[0])


def _record(row: sqlite3.Row) -> ConsentRecord:
    draft = DecisionDraft(
        purpose=Purpose(row["purpose"]), decision=Decision(row["decision"]), notice_version=row["notice_version"],
        method=Method(row["method"]), decision_time=from_epoch_us(row["decision_us"]),
        jurisdiction=row["jurisdiction"], source=row["source"])
    return ConsentRecord(row["record_id"], row["subject"], draft, from_epoch_us(row["record_us"]), row["recorded_by"],
                         int(row["sequence"]))
