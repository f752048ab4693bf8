"""The gifts store: the only SQL in the service.

    schema.py         the tables and triggers that enforce the ledger's invariants; migrations (both engines)
    entries.py        the triggers that keep entries final, on SQLite and on PostgreSQL
    unit.py           the ledger's writes: one unit of work inside a group-commit batch
    writer.py         the group committer that owns the write connection (`GiftsStore`)
    reads.py          the read models, on the database's read-only reader beside the writer (`GiftsReader`)
    outbox.py         the shared audit outbox as the shipper reads it (`GiftsAuditOutbox`)
    legacy_outbox.py  gifts' own outbox from before the shared one: migrated and drained once
    rows.py           rows to domain values
    room.py           the LIVE rooms' store, a database (or schema) of its own (`RoomStore`)
    room_events.py    room events as JSON, for the room's event log and its bus
"""
