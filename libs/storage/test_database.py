"""The store interface's guarantees, on both engines (`libs.storage.database`)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from libs.storage import postgres
from libs.storage.database import Database, IntegrityError, Migration, MigrationError, open_database

MIGRATIONS = [
    Migration(1, "CREATE TABLE counter (id TEXT PRIMARY KEY, value INTEGER NOT NULL CHECK (value >= 0));",
              postgres="CREATE TABLE counter (id TEXT PRIMARY KEY, value BIGINT NOT NULL CHECK (value >= 0));"),
    Migration(2, "ALTER TABLE counter ADD COLUMN label TEXT NOT NULL DEFAULT '';",
              postgres="ALTER TABLE counter ADD COLUMN label TEXT NOT NULL DEFAULT '';"),
]


@pytest.fixture
def database(tmp_path: Path, database_engine: str) -> Iterator[Database]:
    opened = open_database("demo", MIGRATIONS, root=tmp_path)
    yield opened
    opened.close()


def test_migrations_apply_once_and_a_newer_schema_is_refused(database: Database, tmp_path: Path) -> None:
    assert database.schema_version == 2
    again = open_database("demo", MIGRATIONS, root=tmp_path)
    assert again.schema_version == 2
    again.close()
    with pytest.raises(MigrationError):
        open_database("demo", MIGRATIONS[:1], root=tmp_path)


def test_a_migration_without_its_postgres_text_is_refused_there(tmp_path: Path, database_engine: str) -> None:
    sqlite_only = [Migration(1, "CREATE TABLE t (id INTEGER PRIMARY KEY);")]
    if database_engine == "postgres":
        with pytest.raises(MigrationError, match="no PostgreSQL text"):
            open_database("other", sqlite_only, root=tmp_path)
    else:
        open_database("other", sqlite_only, root=tmp_path).close()


def test_a_constraint_refuses_the_write_and_the_transaction_rolls_back(database: Database) -> None:
    with pytest.raises(IntegrityError), database.transaction() as tx:
        tx.execute("INSERT INTO counter (id, value) VALUES (?, ?)", ("kept only if committed", 1))
        tx.execute("INSERT INTO counter (id, value) VALUES (?, ?)", ("negative", -1))
    with database.reading() as reader:
        assert reader.execute("SELECT COUNT(*) FROM counter").fetchone()[0] == 0


def test_rows_read_by_position_and_by_name_and_placeholders_inside_quotes_stay_text(database: Database) -> None:
    with database.transaction() as tx:
        tx.execute("INSERT INTO counter (id, value, label) VALUES (?, ?, '100% ?')", ("a", 7))
        tx.execute("INSERT INTO counter (id, value) VALUES (:id, :value)", {"id": "b", "value": 8})
    with database.reading() as reader:
        row = reader.execute("SELECT id, value, label FROM counter WHERE id = ? AND label LIKE '%?'",
                             ("a",)).fetchone()
        assert (row[0], row["value"], row["label"]) == ("a", 7, "100% ?")
        assert row.keys() == ["id", "value", "label"]
        assert [tuple(r) for r in reader.execute("SELECT id, value FROM counter ORDER BY id")] == [("a", 7), ("b", 8)]


def test_writers_of_one_store_in_two_processes_never_lose_an_update(tmp_path: Path, database_engine: str) -> None:
    """Two handles on one store stand for two replicas: each reads, decides and writes in
    one transaction, and the writer lock makes every read-then-write safe."""
    replicas = [open_database("demo", MIGRATIONS, root=tmp_path) for _ in range(2)]
    with replicas[0].transaction() as tx:
        tx.execute("INSERT INTO counter (id, value) VALUES ('shared', 0)")
    rounds = 25

    def increment(replica: Database) -> None:
        for _ in range(rounds):
            with replica.transaction() as tx:
                value = tx.execute("SELECT value FROM counter WHERE id = 'shared'").fetchone()[0]
                tx.execute("UPDATE counter SET value = ? WHERE id = 'shared'", (value + 1,))

    threads = [threading.Thread(target=increment, args=(replica,)) for replica in replicas for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with replicas[1].reading() as reader:
        assert reader.execute("SELECT value FROM counter WHERE id = 'shared'").fetchone()[0] == 4 * rounds
    for replica in replicas:
        replica.close()


def test_a_read_sees_one_snapshot_while_a_writer_commits(database: Database) -> None:
    with database.transaction() as tx:
        tx.execute("INSERT INTO counter (id, value) VALUES ('x', 1)")
    reader_handle = database.open_reader()
    with reader_handle.reading() as reader:
        assert reader.execute("SELECT value FROM counter WHERE id = 'x'").fetchone()[0] == 1
        with database.transaction() as tx:
            tx.execute("UPDATE counter SET value = 2 WHERE id = 'x'")
        assert reader.execute("SELECT value FROM counter WHERE id = 'x'").fetchone()[0] == 1
    with reader_handle.reading() as reader:
        assert reader.execute("SELECT value FROM counter WHERE id = 'x'").fetchone()[0] == 2
    if reader_handle is not database:
        reader_handle.close()


def test_one_process_holds_a_session_lock_until_its_session_ends(database_engine: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    if database_engine == "sqlite":
        lock = open_database("demo", MIGRATIONS, root=tmp_path).session_lock("signer")
        assert lock.held(), "a SQLite store has one process: it always holds its locks"
        return
    monkeypatch.setattr(postgres, "SESSION_LOCK_CHECK_SECONDS", 0.0)  # every question reaches the server
    replicas = [open_database("demo", MIGRATIONS, root=tmp_path) for _ in range(2)]
    holder, other = (replica.session_lock("signer") for replica in replicas)
    assert holder.held() and not other.held()
    apart = replicas[1].session_lock("another name")
    assert apart.held(), "locks of other names are apart"
    apart.release()
    assert holder.held() and not other.held()  # asking again changes nothing
    holder.release()  # its session ends, as when its process dies
    assert other.held() and not holder.held()
    other.release()
    holder.release()
    for replica in replicas:
        replica.close()
