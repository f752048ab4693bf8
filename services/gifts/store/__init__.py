"""The gifts store: the only SQL in the service.

    schema.py         the tables and triggers that enforce the ledger's invariants; migrations
    unit.py           the ledger's writes: one unit of work inside a group-commit batch
    writer.py         the group committer that owns the write connection (`GiftsStore`)
    reads.py          the read models, on a query-only connection beside the writer (`GiftsReader`)
    outbox.py         the shared audit outbox as the shipper reads it (`GiftsAuditOutbox`)
    legacy_outbox.py  gifts' own outbox from before the shared one: migrated and drained once
    rows.py           rows to domain values
"""
