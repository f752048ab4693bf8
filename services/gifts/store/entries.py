"""Entries are final: the trigger text that refuses to change or remove a row, on both engines."""

from __future__ import annotations


def immutable(table: str) -> str:
    """SQLite: UPDATE and DELETE on `table` abort."""
    return (f"CREATE TRIGGER {table}_is_immutable BEFORE UPDATE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} entries are immutable'); END;\n"
            f"CREATE TRIGGER {table}_is_permanent BEFORE DELETE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} entries are permanent'); END;\n")


# PostgreSQL: one function refuses every change to an entry, named by its table and operation
# (created by the ledger's first migration, and the room store's).
ENTRIES_ARE_FINAL_POSTGRES = """
CREATE FUNCTION entry_is_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        RAISE EXCEPTION '% entries are immutable', TG_TABLE_NAME USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RAISE EXCEPTION '% entries are permanent', TG_TABLE_NAME USING ERRCODE = 'integrity_constraint_violation';
END $$;
"""


def immutable_postgres(table: str) -> str:
    """PostgreSQL: UPDATE, DELETE and TRUNCATE on `table` fail (needs `ENTRIES_ARE_FINAL_POSTGRES`)."""
    return (f"CREATE TRIGGER {table}_is_immutable BEFORE UPDATE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION entry_is_final();\n"
            f"CREATE TRIGGER {table}_is_permanent BEFORE DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION entry_is_final();\n"
            f"CREATE TRIGGER {table}_is_never_truncated BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION entry_is_final();\n")
