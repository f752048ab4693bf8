"""Gifts' own audit outbox, from before the shared one: renamed by migration 2, drained once.

Schema 1 kept events in `audit_outbox (sequence, event)` with a delivery bookmark
(`audit_delivery`) and the events compliance refused (`audit_set_aside`). Migration 2
renames that table out of the way of the shared outbox's; when the writer opens, the
events not yet delivered move into the shared outbox with the ids they always had (so a
redelivery is still recognised), the refused ones into its rejected table, and the old
tables go. The drain is one transaction, and repeating it writes nothing twice.
"""

from __future__ import annotations

import datetime as dt
import json

from libs.audit.outbox import OUTBOX_SCHEMA, OUTBOX_SCHEMA_POSTGRES, TracedEvent, write_event
from libs.storage.database import Migration, Transaction
from libs.timestamps import from_epoch_us
from services.gifts.audit_events import PlatformEvents, legacy_event_id
from services.gifts.model.audit import AuditEvent, Outcome
from services.gifts.store.entries import immutable, immutable_postgres

# Gifts keeps every audit record it wrote (the ledger's invariant 3): an event leaves the
# shared outbox only into the archive of delivered events or the table of rejected ones, and
# neither of those changes or loses a row.
_KEEP_AUDIT_RECORDS = """
CREATE TABLE audit_delivered (
    event_id     TEXT PRIMARY KEY,
    record       TEXT NOT NULL,
    delivered_at TEXT NOT NULL
) STRICT;
CREATE TRIGGER audit_outbox_event_is_immutable BEFORE UPDATE ON audit_outbox
BEGIN SELECT RAISE(ABORT, 'audit_outbox entries are immutable'); END;
CREATE TRIGGER audit_outbox_event_is_permanent BEFORE DELETE ON audit_outbox
WHEN NOT EXISTS (SELECT 1 FROM audit_delivered WHERE event_id = OLD.event_id)
 AND NOT EXISTS (SELECT 1 FROM audit_outbox_rejected WHERE event_id = OLD.event_id)
BEGIN SELECT RAISE(ABORT, 'audit_outbox entries are permanent until delivered or rejected'); END;
""" + "".join(immutable(table) for table in ("audit_delivered", "audit_outbox_rejected"))

# No PostgreSQL store predates the shared outbox, so its old tables hold nothing to drain: they go.
_KEEP_AUDIT_RECORDS_POSTGRES = """
DROP TABLE audit_set_aside, audit_outbox, audit_delivery;
""" + OUTBOX_SCHEMA_POSTGRES + """
CREATE TABLE audit_delivered (
    event_id     TEXT PRIMARY KEY,
    record       TEXT NOT NULL,
    delivered_at TEXT NOT NULL
);
CREATE TRIGGER audit_outbox_event_is_immutable BEFORE UPDATE ON audit_outbox
    FOR EACH ROW EXECUTE FUNCTION entry_is_final();
CREATE FUNCTION audit_outbox_event_is_permanent() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM audit_delivered WHERE event_id = OLD.event_id)
       AND NOT EXISTS (SELECT 1 FROM audit_outbox_rejected WHERE event_id = OLD.event_id) THEN
        RAISE EXCEPTION 'audit_outbox entries are permanent until delivered or rejected'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN OLD;
END $$;
CREATE TRIGGER audit_outbox_event_is_permanent BEFORE DELETE ON audit_outbox
    FOR EACH ROW EXECUTE FUNCTION audit_outbox_event_is_permanent();
CREATE TRIGGER audit_outbox_is_never_truncated BEFORE TRUNCATE ON audit_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION entry_is_final();
""" + "".join(immutable_postgres(table) for table in ("audit_delivered", "audit_outbox_rejected"))

# The old outbox's tables: dropped by the drain on SQLite, by migration 2 itself on PostgreSQL.
DRAINED_TABLES = ("audit_set_aside", "legacy_audit_outbox", "audit_delivery")

MIGRATION = Migration(2, "ALTER TABLE audit_outbox RENAME TO legacy_audit_outbox;\n" + OUTBOX_SCHEMA
                      + _KEEP_AUDIT_RECORDS, postgres=_KEEP_AUDIT_RECORDS_POSTGRES)


def drain_legacy_outbox(tx: Transaction, events: PlatformEvents, *, now: dt.datetime) -> int:
    """Move what the old outbox still holds into the shared one; returns how many events moved.

    SQLite only: on PostgreSQL migration 2 dropped the old tables, empty by construction.
    """
    if tx.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'legacy_audit_outbox'").fetchone() \
            is None:
        return 0
    log_id, delivered_through = tx.execute("SELECT log_id, delivered_through FROM audit_delivery").fetchone()
    refused = dict(tx.execute("SELECT sequence, error FROM audit_set_aside").fetchall())
    moved = 0
    for sequence, text in tx.execute("SELECT sequence, event FROM legacy_audit_outbox WHERE sequence > ? "
                                     "ORDER BY sequence", (delivered_through,)).fetchall():
        fields = json.loads(text)
        event = AuditEvent(fields["action"], fields["actor"], Outcome(fields["outcome"]), fields["request_id"],
                           fields["resource"], from_epoch_us(fields["occurred_at_us"]), fields["reason"],
                           fields["details"])
        platform = events.platform_event(event, transfers=tuple(fields["transfer_ids"]), trace_id=fields["trace_id"],
                                         event_id=legacy_event_id(log_id, sequence))
        if sequence in refused:
            tx.execute("INSERT INTO audit_outbox_rejected (event_id, record, error, rejected_at) "
                       "VALUES (?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING", (platform.event_id, platform.canonical_bytes().decode(),
                                               refused[sequence], now.isoformat()))
        else:
            write_event(tx, TracedEvent(platform))
            moved += 1
    for table in DRAINED_TABLES:
        tx.execute(f"DROP TABLE {table}")
    return moved
