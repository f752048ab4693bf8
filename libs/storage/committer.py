"""Group commit: many units of work made durable by one COMMIT, with one set of guarantees.

With `synchronous=FULL` every COMMIT waits for an fsync of the WAL, so one transaction
per request caps a service at the disk's fsync rate. A `GroupCommitter` owns the write
connection on one thread, takes every unit of work that queued up while the previous
batch was committing, and makes them durable together. A unit of work is a function of
the open `Transaction` (`Callable[[Transaction], T]`) that reads, decides and writes. For
each unit it keeps every guarantee that one transaction per unit would give:

- **All or nothing per unit.** Each unit runs inside its own SAVEPOINT; an exception
  rolls back to it, so a failing unit never undoes or aborts the others in its batch. A
  `DomainError` (a refusal) may leave a record of itself through `on_refused(tx, error)`.
- **Serial isolation.** Units run one after another on one connection, in queue order;
  each sees everything the units before it wrote, as if each had its own transaction.
- **Acknowledged only when durable.** A unit's future is resolved (with its value or its
  exception) only after the COMMIT of its batch has returned, so a caller never learns of
  an effect that a crash could still undo.
- **A failed COMMIT fails its whole batch.** Nothing in a failed batch was acknowledged:
  each unit fails with `Unavailable`. The same holds when BEGIN, a SAVEPOINT statement or
  `finish_batch` fails: the batch as a whole could not be made durable. On SQLite it also
  stops the committer: after a failed fsync the page cache may no longer match the disk
  (fsyncgate), so retrying is unsafe; the batch fails with reason `STORE_COMMIT_FAILED`,
  every later submit fails fast the same way, and the process should be restarted to
  recover from the WAL. On PostgreSQL the server owns durability, so only that batch
  fails (reason `STORE_BATCH_FAILED`) and the next one starts on a fresh connection; a
  unit whose COMMIT was lost on the wire may or may not have taken effect, which is what
  request ids are for.
- **Nothing is stranded.** `close()` commits everything queued before it and then stops;
  a submit that races it is either queued before the stop (and runs) or fails at once
  with `Unavailable` (reason `STORE_CLOSED`). No future is ever left unresolved.
- **A caller that gave up is skipped.** A unit cancelled before the committer picked it
  up (its caller timed out) never runs; once picked up it runs to completion, so a client
  that gave up may still have had an effect, which is what request ids are for.

Two hooks serve writers that work on the batch as a whole (the audit log):
`finish_batch(tx)` runs inside the batch's transaction after its units and before
COMMIT (the audit log hashes the group's new leaves together there), and `tick()` runs on
the committer thread, outside any transaction, after every batch and whenever the queue
was idle for `idle_seconds` (periodic work that must not race the writer, such as signing
a checkpoint). A failing `tick` is logged and the committer carries on: what it committed
stays durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from libs.errors import DomainError, Unavailable
from libs.storage.database import Transaction

T = TypeVar("T")

UnitOfWork = Callable[[Transaction], T]
RefusalRecorder = Callable[[Transaction, DomainError], None]
BatchFinisher = Callable[[Transaction], None]

DEFAULT_MAX_BATCH = 512
DEFAULT_IDLE_SECONDS = 0.1

log = logging.getLogger(__name__)


class TransactionalDatabase(Protocol):
    """What the committer needs of a database (`libs.storage.database.Database`)."""

    @property
    def commit_failure_is_fatal(self) -> bool: ...

    def transaction(self) -> AbstractContextManager[Transaction]: ...


@dataclass(eq=False)
class _Submitted(Generic[T]):
    work: UnitOfWork[T]
    on_refused: RefusalRecorder | None
    # The gate the committer passes when it takes the unit (a cancelled one is skipped), and
    # the result for threads; asyncio callers wait on `waiter` instead, settled on their loop.
    future: Future[T] = field(default_factory=Future)
    waiter: asyncio.Future[T] | None = None
    outcome: BaseException | None = None
    value: Any = None


class GroupCommitter:
    """Runs units of work on one writer thread and commits them in batches.

    `max_batch=1` gives one durable transaction per unit, through the same code path,
    which is what the benchmark compares against. `threaded=False` starts no thread: the
    owner calls `commit_queued()` itself (a process whose only job is committing has no use
    for a second thread, and every hand-over between threads costs the interpreter lock);
    `tick` then runs after each batch only, never for idleness.
    """

    def __init__(
        self,
        database: TransactionalDatabase,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        name: str = "group-commit",
        threaded: bool = True,
        finish_batch: BatchFinisher | None = None,
        tick: Callable[[], object] | None = None,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._database = database
        self._max_batch = max_batch
        self._finish_batch = finish_batch
        self._tick = tick
        self._idle_seconds = idle_seconds
        self._queue: queue.SimpleQueue[_Submitted[Any] | None] = queue.SimpleQueue()  # None: stop
        self._failure: BaseException | None = None
        # Guards the hand-over between `submit` and a stopping committer, so no unit can
        # slip into the queue after the final drain and wait forever.
        self._intake = threading.Lock()
        self._closed = False
        self._commit_listeners: list[Callable[[], None]] = []
        self.commits = 0
        """Batches committed so far; units per commit is the grouping achieved."""
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._run, name=name, daemon=True)
            self._thread.start()

    def submit(self, work: UnitOfWork[T], *, on_refused: RefusalRecorder | None = None) -> Future[T]:
        """Queue `work`; the future resolves once the batch holding it has committed.

        `on_refused(tx, error)` runs in the same batch after `work` raised a DomainError
        and was rolled back, so a refusal can leave a durable record of itself.
        """
        submitted: _Submitted[T] = _Submitted(work, on_refused)
        if not self._enqueue(submitted):
            submitted.future.set_exception(self._unavailable())
        return submitted.future

    async def run(self, work: UnitOfWork[T], *, on_refused: RefusalRecorder | None = None) -> T:
        """`submit` for asyncio callers: await the committed result without blocking the loop.

        Every caller of one batch on one loop is woken by a single callback, instead of one
        cross-thread wake-up each. Cancelling the caller before its unit was taken skips it.
        """
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        submitted: _Submitted[T] = _Submitted(work, on_refused, waiter=waiter)
        if not self._enqueue(submitted):
            raise self._unavailable()
        try:
            return await waiter
        except asyncio.CancelledError:
            submitted.future.cancel()
            raise

    def _enqueue(self, submitted: _Submitted[Any]) -> bool:
        with self._intake:
            if self._failure is None and not self._closed:
                self._queue.put(submitted)
                return True
        return False

    def add_commit_listener(self, listener: Callable[[], None]) -> None:
        """Call `listener()` on the committer thread after every successful commit.

        Listeners must be quick and thread-safe (e.g. `loop.call_soon_threadsafe(event.set)`).
        """
        self._commit_listeners.append(listener)

    @property
    def failure(self) -> BaseException | None:
        """What stopped the committer (a failed COMMIT), or None while it is healthy."""
        return self._failure

    def commit_queued(self) -> None:
        """Commit everything queued so far on the calling thread (for `threaded=False`)."""
        assert self._thread is None, "a threaded committer commits on its own"
        while batch := self._take_batch(block=False):
            self._commit_taken(batch)
            if self._failure is not None:
                return
            self._run_tick()

    def close(self) -> None:
        """Commit what is queued, then stop; later submits fail with Unavailable (STORE_CLOSED)."""
        with self._intake:
            if not self._closed:
                self._closed = True
                self._queue.put(None)
        if self._thread is None:
            self.commit_queued()
        elif self._thread is not threading.current_thread():
            self._thread.join()

    def _unavailable(self) -> Unavailable:
        if self._failure is None:
            return Unavailable("the store is closed", reason="STORE_CLOSED")
        return Unavailable(
            "the store stopped after a failed commit; restart the service",
            reason="STORE_COMMIT_FAILED",
            metadata={"cause": repr(self._failure)},
        )

    def _run(self) -> None:
        while (batch := self._take_batch(block=True)) is not None:
            if batch:
                self._commit_taken(batch)
                if self._failure is not None:
                    return
            self._run_tick()
        self._run_tick()  # once more after the last batch: a checkpoint covers everything

    def _take_batch(self, *, block: bool) -> list[_Submitted[Any]] | None:
        """Up to max_batch queued units, waiting for the first if `block`; None once stopped.

        A blocking take that waited `idle_seconds` in vain (with a `tick` to run) returns an
        empty batch, so the caller ticks for idleness.
        """
        batch: list[_Submitted[Any]] = []
        timeout = self._idle_seconds if self._tick is not None else None
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get(timeout=timeout) if block and not batch else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:  # stop: commit what came before it, then nothing more
                if batch:
                    self._queue.put(None)  # seen again by the next take, which ends the loop
                return batch or None
            batch.append(item)
        return batch

    def _commit_taken(self, batch: list[_Submitted[Any]]) -> None:
        live = [s for s in batch if s.future.set_running_or_notify_cancel()]
        if live:
            self._commit(live)
        if self._failure is not None:
            self._drain_after_failure()

    def _commit(self, batch: list[_Submitted[Any]]) -> None:
        try:
            with self._database.transaction() as tx:
                for submitted in batch:
                    self._apply(tx, submitted)
                if self._finish_batch is not None:
                    self._finish_batch(tx)
        except BaseException as error:  # BEGIN, a SAVEPOINT statement, finish_batch or COMMIT failed
            if self._database.commit_failure_is_fatal:
                log.critical("group commit failed; the store stops accepting work", exc_info=error)
                with self._intake:
                    self._failure = error
                failed: Unavailable = self._unavailable()
            else:
                log.error("group commit failed; the batch is refused and the next one starts afresh", exc_info=error)
                failed = Unavailable("the batch could not be committed; retry with the same request id",
                                     reason="STORE_BATCH_FAILED", metadata={"cause": repr(error)})
            for submitted in batch:
                submitted.outcome, submitted.value = failed, None
            self._settle(batch)
            return
        self.commits += 1
        # Listeners hear of the commit before any caller does, so whatever a caller does
        # next already sees what the listeners were told.
        for listener in self._commit_listeners:
            listener()
        self._settle(batch)

    def _run_tick(self) -> None:
        if self._tick is None:
            return
        try:
            self._tick()
        except Exception:
            # Committed units stay durable; keep serving and say why loudly.
            log.exception("periodic work after a group commit failed")

    @staticmethod
    def _settle(batch: list[_Submitted[Any]]) -> None:
        """Hand each unit its outcome: threads through their future, asyncio callers on their loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[_Submitted[Any]]] = {}
        for submitted in batch:
            if submitted.waiter is None:
                if submitted.outcome is None:
                    submitted.future.set_result(submitted.value)
                else:
                    submitted.future.set_exception(submitted.outcome)
            else:
                by_loop.setdefault(submitted.waiter.get_loop(), []).append(submitted)
        for loop, waiting in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting any more
                loop.call_soon_threadsafe(_wake_waiters, waiting)

    @staticmethod
    def _apply(tx: Transaction, submitted: _Submitted[Any]) -> None:
        tx.execute("SAVEPOINT unit")
        try:
            submitted.value = submitted.work(tx)
        except DomainError as refusal:
            tx.execute("ROLLBACK TO unit")
            submitted.outcome = refusal
            if submitted.on_refused is not None:
                try:
                    submitted.on_refused(tx, refusal)
                except Exception as error:  # a broken recorder must not keep a partial record
                    tx.execute("ROLLBACK TO unit")
                    submitted.outcome = error
        except Exception as error:
            tx.execute("ROLLBACK TO unit")
            submitted.outcome = error
        tx.execute("RELEASE unit")

    def _drain_after_failure(self) -> None:
        with self._intake:  # `_failure` is set, so nothing new can be queued after this
            stranded = []
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None and item.future.set_running_or_notify_cancel():
                    item.outcome = self._unavailable()
                    stranded.append(item)
        self._settle(stranded)


def _wake_waiters(waiting: list[_Submitted[Any]]) -> None:
    for submitted in waiting:
        assert submitted.waiter is not None
        if submitted.waiter.done():  # its caller was cancelled after the unit was taken
            continue
        if submitted.outcome is None:
            submitted.waiter.set_result(submitted.value)
        else:
            submitted.waiter.set_exception(submitted.outcome)
