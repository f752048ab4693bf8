"""Records of processing (GDPR Art. 30): what each service declares once, beside its code.

A service's `data_map.py` holds one `DataMap`: its processing activities (purpose, legal basis,
categories of subjects and data, recipients, retention) and, for every column of its database
that could hold personal data, what it is: a `PersonalField` (sealed with `libs.privacy`, or
not yet) or `NotPersonal` (an opaque resource id, a pseudonym, machine text, and which). `undeclared_columns` compares a real schema with the map, so a test fails
the day a column with a personal-sounding name appears that the map does not account for.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from libs.storage.database import Migration
from libs.storage.sqlite import SqliteDatabase

# Words that, in a column's name, mean "this may be about a person": the column must be declared.
PERSONAL_WORDS = frozenset({
    "name", "email", "mail", "title", "caption", "message", "text", "comment", "description", "bio",
    "country", "birth", "phone", "address", "ip", "receipt", "reference", "iban", "method", "metadata",
    "filename", "details", "user", "sender", "creator", "host", "caller", "subject", "parameters",
})


@dataclass(frozen=True)
class ProcessingActivity:
    activity_id: str
    purpose: str
    legal_basis: str
    subject_categories: tuple[str, ...]
    data_categories: tuple[str, ...]
    recipients: tuple[str, ...]
    retention: str
    third_country_transfers: tuple[str, ...] = ()


@dataclass(frozen=True)
class PersonalField:
    """A column holding personal data: `sealed` once it is stored only as `libs.privacy` ciphertext."""

    column: str
    """`table.column`."""
    category: str
    sealed: bool


@dataclass(frozen=True)
class NotPersonal:
    """A personal-sounding column that holds no personal data in the clear: an opaque resource id, a
    pseudonym, machine text; `why` says which."""

    column: str
    why: str


@dataclass(frozen=True)
class DataMap:
    service: str
    """`services/{service}`."""
    activities: tuple[ProcessingActivity, ...]
    personal_fields: tuple[PersonalField, ...] = ()
    not_personal: tuple[NotPersonal, ...] = ()
    retention_exceptions: Mapping[str, str] = field(default_factory=dict)
    """{data category: the law that keeps it despite an erasure request}."""

    def declared(self) -> set[str]:
        return {f.column for f in self.personal_fields} | {n.column for n in self.not_personal}


def _words(column: str) -> set[str]:
    return set(re.split(r"_+", column.lower()))


def schema_columns(database: Path) -> dict[str, list[str]]:
    """{table: its columns} of a SQLite file, the SQLite-internal tables left out."""
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        tables = [row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        return {table: [row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')] for table in tables}
    finally:
        connection.close()


def schema_after(migrations: Sequence[Migration], scratch: Path) -> dict[str, list[str]]:
    """The schema `migrations` build, in a fresh file under `scratch`."""
    database = SqliteDatabase(scratch / "data-map-schema.db")
    try:
        database.migrate(migrations)
    finally:
        database.close()
    return schema_columns(scratch / "data-map-schema.db")


def undeclared_columns(data_map: DataMap, schema: Mapping[str, Sequence[str]]) -> list[str]:
    """Personal-sounding `table.column`s of `schema` that the map does not declare, and declared
    columns the schema does not have (a map that went stale)."""
    present = {f"{table}.{column}" for table, columns in schema.items() for column in columns}
    declared = data_map.declared()
    undeclared = sorted(column for column in present
                        if _words(column.split(".", 1)[1]) & PERSONAL_WORDS and column not in declared)
    stale = sorted(f"{column} (declared, not in the schema)" for column in declared - present)
    return undeclared + stale
