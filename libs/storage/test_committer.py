from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path

import pytest

from libs.errors import FailedPrecondition, Unavailable
from libs.storage.committer import GroupCommitter
from libs.storage.database import IntegrityError, Migration, Transaction, open_database
from libs.storage.sqlite import SqliteDatabase

MIGRATIONS = [Migration(1, """
CREATE TABLE item (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, amount INTEGER NOT NULL CHECK (amount >= 0));
CREATE TABLE refusal (id INTEGER PRIMARY KEY, reason TEXT NOT NULL);
CREATE TABLE parent (id INTEGER PRIMARY KEY);
CREATE TABLE child (id INTEGER PRIMARY KEY,
                    parent_id INTEGER NOT NULL REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);
""")]


@pytest.fixture
def database(tmp_path: Path) -> Iterator[SqliteDatabase]:
    db = open_database("demo", MIGRATIONS, root=tmp_path)
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
    with pytest.raises(IntegrityError):
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


# -- what the old GroupCommitter's tests asserted, on the one committer ---------------------

class BatchRecorder:
    """A `finish_batch` that remembers which units each batch held (they write their number)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __call__(self, tx: Transaction) -> None:
        rows = tx.execute("SELECT amount FROM item WHERE owner = 'batch' ORDER BY id").fetchall()
        seen = sum(self.batches, [])
        self.batches.append([row[0] for row in rows][len(seen):])


def _numbered(number: int) -> Callable[[Transaction], int]:
    def work(tx: Transaction) -> int:
        if number % 2:
            raise ValueError(f"odd {number}")
        tx.execute("INSERT INTO item (owner, amount) VALUES ('batch', ?)", (number,))
        return number * 10
    return work


def test_units_queued_during_a_commit_share_the_next_one(database: SqliteDatabase) -> None:
    recorder = BatchRecorder()
    committer = GroupCommitter(database, finish_batch=recorder)
    first, gate = _hold(committer)  # the writer is now inside the first batch
    waiting = [committer.submit(_numbered(n)) for n in (2, 4, 6)]
    gate.set()
    assert first.result(5) is True
    assert [future.result(5) for future in waiting] == [20, 40, 60]
    committer.close()
    assert recorder.batches == [[], [2, 4, 6]]
    assert committer.commits == 2


def test_a_unit_can_fail_alone_and_its_batch_still_commits(database: SqliteDatabase) -> None:
    committer = GroupCommitter(database)
    _, gate = _hold(committer)
    odd, even = committer.submit(_numbered(3)), committer.submit(_numbered(8))
    gate.set()
    with pytest.raises(ValueError):
        odd.result(5)
    assert even.result(5) == 80
    committer.close()
    assert _count(database.path, "SELECT COUNT(*) FROM item WHERE owner = 'batch'") == 1


# -- a failed COMMIT, injected ------------------------------------------------------------

class CommitFails:
    """A database whose COMMIT raises the way a failed fsync does (the block ran; nothing is durable)."""

    commit_failure_is_fatal = True

    def __init__(self, database: SqliteDatabase) -> None:
        self._database = database
        self.failing = False

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        with self._database.transaction() as tx:
            yield tx
            if self.failing:
                raise sqlite3.OperationalError("disk I/O error")  # the real transaction rolls back


def test_a_failed_commit_fails_its_batch_and_every_later_submit(database: SqliteDatabase) -> None:
    failing = CommitFails(database)
    committer = GroupCommitter(failing)
    commits: list[int] = []
    committer.add_commit_listener(lambda: commits.append(1))
    assert committer.submit(_insert("durable", 1)).result(5) == 1
    failing.failing = True
    holder, gate = _hold(committer)
    batch = [committer.submit(_insert("lost", n)) for n in range(3)]
    gate.set()
    outcomes = [holder.exception(5), *(future.exception(5) for future in batch)]
    assert all(isinstance(e, Unavailable) and e.reason == "STORE_COMMIT_FAILED" for e in outcomes), outcomes
    assert isinstance(committer.failure, sqlite3.OperationalError)
    later = committer.submit(_insert("later", 1))
    assert later.done(), "a stopped committer refuses at once"
    with pytest.raises(Unavailable) as refused_later:
        later.result(0)
    assert refused_later.value.reason == "STORE_COMMIT_FAILED"
    assert "disk I/O error" in refused_later.value.metadata["cause"]
    committer.close()
    assert commits == [1], "listeners hear only of the commit that succeeded"
    assert _count(database.path, "SELECT COUNT(*) FROM item") == 1


async def test_an_async_caller_hears_of_a_failed_commit(database: SqliteDatabase) -> None:
    failing = CommitFails(database)
    failing.failing = True
    committer = GroupCommitter(failing)
    with pytest.raises(Unavailable) as refused:
        await committer.run(_insert("lost", 1))
    assert refused.value.reason == "STORE_COMMIT_FAILED"
    with pytest.raises(Unavailable):
        await committer.run(_insert("later", 1))
    committer.close()


# -- close: nothing stranded ----------------------------------------------------------------

def test_a_submit_racing_close_either_runs_or_is_refused_at_once(database: SqliteDatabase) -> None:
    committer = GroupCommitter(database)
    holder, gate = _hold(committer)  # close cannot finish while this unit runs
    closing = threading.Thread(target=committer.close)
    closing.start()
    accepted: list[Future[int]] = []
    # Keep submitting until close has taken effect; every submit lands on one side of it.
    while not (racer := committer.submit(_insert("racer", len(accepted)))).done():
        accepted.append(racer)
    with pytest.raises(Unavailable) as refused:
        racer.result(0)
    assert refused.value.reason == "STORE_CLOSED"
    gate.set()
    closing.join(10)
    assert not closing.is_alive() and holder.result(0) is True
    assert all(future.done() for future in accepted), "no accepted unit is left waiting"
    assert [future.exception(0) for future in accepted] == [None] * len(accepted)
    assert _count(database.path, "SELECT COUNT(*) FROM item WHERE owner = 'racer'") == len(accepted)


async def test_an_async_submit_after_close_is_refused_at_once(database: SqliteDatabase) -> None:
    committer = GroupCommitter(database)
    committer.close()
    with pytest.raises(Unavailable) as refused:
        await committer.run(_insert("late", 1))
    assert refused.value.reason == "STORE_CLOSED"


# -- cancellation ----------------------------------------------------------------------------

async def test_an_async_caller_cancelled_before_pickup_is_skipped(database: SqliteDatabase) -> None:
    committer = GroupCommitter(database)
    holder, gate = _hold(committer)
    task = asyncio.create_task(committer.run(_insert("cancelled", 1)))
    await asyncio.sleep(0)  # one turn of the loop runs the new task up to its await: its unit is queued
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.set()
    assert await committer.run(_insert("kept", 1)) >= 1
    committer.close()
    assert holder.result(0) is True
    assert _count(database.path, "SELECT COUNT(*) FROM item WHERE owner = 'cancelled'") == 0


async def test_async_callers_of_one_batch_get_their_own_results(database: SqliteDatabase) -> None:
    committer = GroupCommitter(database)
    _, gate = _hold(committer)
    tasks = [asyncio.create_task(committer.run(_insert("async", n))) for n in range(20)]
    await asyncio.sleep(0)  # every task queues its unit before this test resumes
    gate.set()
    assert sorted(await asyncio.gather(*tasks)) == list(range(1, 21))
    committer.close()
    assert committer.commits == 2


# -- finish_batch and tick -------------------------------------------------------------------

def test_finish_batch_runs_in_the_transaction_after_the_units_and_before_commit(database: SqliteDatabase) -> None:
    seen: list[tuple[int, int]] = []

    def finish(tx: Transaction) -> None:
        inside = int(tx.execute("SELECT COUNT(*) FROM item").fetchone()[0])
        seen.append((inside, _count(database.path, "SELECT COUNT(*) FROM item")))
        tx.execute("INSERT INTO refusal (reason) VALUES ('summary')")

    committer = GroupCommitter(database, finish_batch=finish)
    _, gate = _hold(committer)
    units = [committer.submit(_insert("u", n)) for n in range(3)]
    refused = committer.submit(_refuses)
    gate.set()
    for unit in units:
        unit.result(5)
    with pytest.raises(FailedPrecondition):
        refused.result(5)
    committer.close()
    # The holder's batch saw no rows; the second saw its three units (not the refused one),
    # none of them committed yet; each batch's summary committed with it.
    assert seen == [(0, 0), (3, 0)]
    assert _count(database.path, "SELECT COUNT(*) FROM refusal WHERE reason = 'summary'") == 2


def test_a_failing_finish_batch_fails_the_batch_and_stops_the_committer(database: SqliteDatabase) -> None:
    def finish(tx: Transaction) -> None:
        raise RuntimeError("cannot hash the leaves")

    committer = GroupCommitter(database, finish_batch=finish)
    with pytest.raises(Unavailable) as refused:
        committer.submit(_insert("u", 1)).result(5)
    assert refused.value.reason == "STORE_COMMIT_FAILED"
    assert isinstance(committer.failure, RuntimeError)
    committer.close()
    assert _count(database.path, "SELECT COUNT(*) FROM item") == 0


def test_tick_runs_on_the_committer_thread_when_idle(database: SqliteDatabase) -> None:
    ticked = threading.Event()
    threads: list[int] = []

    def tick() -> None:
        threads.append(threading.get_ident())
        ticked.set()

    committer = GroupCommitter(database, tick=tick, idle_seconds=0.01)
    assert ticked.wait(5), "no unit was ever submitted, so this tick came from idleness"
    committer.close()
    assert threading.get_ident() not in threads


def test_tick_runs_after_every_batch_and_once_more_after_close(database: SqliteDatabase) -> None:
    events: list[str] = []
    committer = GroupCommitter(database, tick=lambda: events.append("tick"), idle_seconds=3600)
    committer.add_commit_listener(lambda: events.append("commit"))
    committer.submit(_insert("u", 1)).result(5)
    committer.submit(_insert("u", 2)).result(5)
    committer.close()
    # A tick may not have run yet when a caller hears of its commit, but all have after close.
    assert events == ["commit", "tick", "commit", "tick", "tick"]


def test_a_failing_tick_is_logged_and_the_committer_carries_on(database: SqliteDatabase) -> None:
    def tick() -> None:
        raise RuntimeError("signing failed")

    committer = GroupCommitter(database, tick=tick, idle_seconds=3600)
    assert committer.submit(_insert("u", 1)).result(5) == 1
    assert committer.submit(_insert("u", 2)).result(5) == 2
    committer.close()
    assert committer.failure is None


def test_an_unthreaded_committer_ticks_after_each_batch(database: SqliteDatabase) -> None:
    ticks: list[int] = []
    committer = GroupCommitter(database, threaded=False, tick=lambda: ticks.append(threading.get_ident()))
    committer.submit(_insert("u", 1))
    committer.commit_queued()
    assert ticks == [threading.get_ident()]
    committer.close()


def _refuses(tx: Transaction) -> None:
    tx.execute("INSERT INTO item (owner, amount) VALUES ('refused', 1)")
    raise FailedPrecondition("no", reason="NOPE")
