from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

from libs.errors import FailedPrecondition, Unavailable
from libs.storage.committer import GroupCommitter
from libs.storage.sqlite import Migration, SqliteDatabase, Transaction, open_service_database

MIGRATIONS = [Migration(1, """
CREATE TABLE item (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, amount INTEGER NOT NULL CHECK (amount >= 0));
CREATE TABLE refusal (id INTEGER PRIMARY KEY, reason TEXT NOT NULL);
CREATE TABLE parent (id INTEGER PRIMARY KEY);
CREATE TABLE child (id INTEGER PRIMARY KEY,
                    parent_id INTEGER NOT NULL REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);
""")]


@pytest.fixture
def database(tmp_path: Path) -> Iterator[SqliteDatabase]:
    db = open_service_database("demo", MIGRATIONS, root=tmp_path)
    yield db
    db.close()


def _count(path: Path, sql: str) -> int:
    """Read through a separate connection, which sees only committed data."""
    with sqlite3.connect(path) as connection:
        return int(connection.execute(sql).fetchone()[0])


def _insert(owner: str, amount: int) -> Callable[[Transaction], int]:
    def work(tx: Transaction) -> int:
        return int(tx.execute("INSERT INTO item (owner, amount) VALUES (?, ?)", (owner, amount)).lastrowid or 0)
    return work


def _hold(committer: GroupCommitter) -> tuple[Future[bool], threading.Event]:
    """Occupy the committer with a running unit until the returned gate is set."""
    started, gate = threading.Event(), threading.Event()

    def wait(tx: Transaction) -> bool:
        started.set()
        return gate.wait(5)

    holder = committer.submit(wait)
    assert started.wait(5)
    return holder, gate


def test_units_queued_together_commit_in_one_batch(database: SqliteDatabase) -> None:
    committer = GroupCommitter(database)
    commits: list[int] = []
    committer.add_commit_listener(lambda: commits.append(1))
    first, gate = _hold(committer)
    rest = [committer.submit(_insert(f"u{n}", n)) for n in range(50)]
    gate.set()
    assert first.result(5) is True
    assert sorted(future.result(5) for future in rest) == list(range(1, 51))
    committer.close()
    assert len(commits) == 2  # the gate's batch, then all fifty together


def test_a_unit_is_acknowledged_only_after_its_batch_committed(database: SqliteDatabase) -> None:
    committer = GroupCommitter(database)
    seen_when_acknowledged: list[int] = []
    futures = [committer.submit(_insert("u", n)) for n in range(20)]
    for future in futures:
        future.add_done_callback(
            lambda _: seen_when_acknowledged.append(_count(database.path, "SELECT COUNT(*) FROM item")))
    for future in futures:
        future.result(5)
    committer.close()
    # Another connection already saw each unit's row when its caller heard back.
    assert all(count >= 1 for count in seen_when_acknowledged)
    assert len(seen_when_acknowledged) == 20


def test_a_failing_unit_rolls_back_alone(database: SqliteDatabase) -> None:
    committer = GroupCommitter(database)
    _, gate = _hold(committer)

    def half_done_then_fails(tx: Transaction) -> None:
        tx.execute("INSERT INTO item (owner, amount) VALUES ('bad', 1)")
        tx.execute("INSERT INTO item (owner, amount) VALUES ('bad', -1)")  # CHECK fails

    before = committer.submit(_insert("good", 1))
    failing = committer.submit(half_done_then_fails)
    after = committer.submit(_insert("good", 2))
    gate.set()
    before.result(5), after.result(5)
    with pytest.raises(sqlite3.IntegrityError):
        failing.result(5)
    committer.close()
    assert _count(database.path, "SELECT COUNT(*) FROM item WHERE owner = 'good'") == 2
    assert _count(database.path, "SELECT COUNT(*) FROM item WHERE owner = 'bad'") == 0


def test_a_refusal_is_rolled_back_but_its_record_is_kept(database: SqliteDatabase) -> None:
    committer = GroupCommitter(database)

    def refuses(tx: Transaction) -> None:
        tx.execute("INSERT INTO item (owner, amount) VALUES ('refused', 1)")
        raise FailedPrecondition("no", reason="NOPE")

    def record(tx: Transaction, error: Exception) -> None:
        tx.execute("INSERT INTO refusal (reason) VALUES (?)", (getattr(error, "reason", ""),))

    future = committer.submit(refuses, on_refused=record)
    with pytest.raises(FailedPrecondition):
        future.result(5)
    committer.close()
    assert _count(database.path, "SELECT COUNT(*) FROM item") == 0
    assert _count(database.path, "SELECT COUNT(*) FROM refusal WHERE reason = 'NOPE'") == 1


def test_a_unit_cancelled_before_it_ran_has_no_effect(database: SqliteDatabase) -> None:
    committer = GroupCommitter(database)
    _, gate = _hold(committer)
    cancelled = committer.submit(_insert("cancelled", 1))
    assert cancelled.cancel()
    gate.set()
    committer.submit(_insert("kept", 1)).result(5)
    committer.close()
    assert _count(database.path, "SELECT COUNT(*) FROM item WHERE owner = 'cancelled'") == 0


def test_a_failed_commit_fails_the_batch_and_stops_the_committer(database: SqliteDatabase) -> None:
    committer = GroupCommitter(database)
    holder, gate = _hold(committer)
    innocent = committer.submit(_insert("innocent", 1))
    # A deferred foreign key is only checked by COMMIT, so this makes the COMMIT itself fail.
    orphan = committer.submit(lambda tx: tx.execute("INSERT INTO child (parent_id) VALUES (42)"))
    gate.set()
    assert holder.result(5) is True
    for future in (innocent, orphan):
        with pytest.raises(Unavailable):
            future.result(5)
    with pytest.raises(Unavailable) as later:
        committer.submit(_insert("later", 1)).result(5)
    assert later.value.reason == "STORE_COMMIT_FAILED"
    committer.close()
    assert _count(database.path, "SELECT COUNT(*) FROM item") == 0


def test_submitting_after_close_is_refused(database: SqliteDatabase) -> None:
    committer = GroupCommitter(database)
    committer.submit(_insert("u", 1)).result(5)
    committer.close()
    with pytest.raises(Unavailable):
        committer.submit(_insert("u", 2)).result(5)


def test_closing_commits_what_was_queued_before_it(database: SqliteDatabase) -> None:
    committer = GroupCommitter(database)
    holder, gate = _hold(committer)
    queued = [committer.submit(_insert("late", n)) for n in range(5)]
    closing = threading.Thread(target=committer.close)
    closing.start()
    gate.set()
    closing.join(5)
    assert not closing.is_alive() and holder.result(5) is True
    assert [future.result(0) for future in queued] == [1, 2, 3, 4, 5]


def test_an_unthreaded_committer_commits_on_the_callers_thread(database: SqliteDatabase) -> None:
    committer = GroupCommitter(database, threaded=False)
    commits: list[int] = []
    committer.add_commit_listener(lambda: commits.append(threading.get_ident()))
    futures = [committer.submit(_insert("u", n)) for n in range(10)]
    assert not any(future.done() for future in futures)
    committer.commit_queued()
    assert [future.result(0) for future in futures] == list(range(1, 11))
    assert commits == [threading.get_ident()]
    committer.close()
    with pytest.raises(Unavailable):
        committer.submit(_insert("u", 11)).result(0)
