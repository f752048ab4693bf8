"""The ledger's writer: the group committer that runs units of work, many to one fsync.

Writes go through the shared `GroupCommitter` with `synchronous=FULL`: every unit queued while a
batch commits goes into the next, each in its own SAVEPOINT (a refusal rolls back alone
and leaves its audit event), and callers hear back only after the COMMIT. On SQLite a failed
COMMIT stops the store for good (no fsync retry); a restart recovers from the WAL. On
PostgreSQL a failed COMMIT fails its batch only, and every replica's writer takes the
schema's advisory lock per batch, so batches of two replicas never interleave.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TypeVar

from libs.clock import Clock, utc_now
from libs.errors import DomainError
from libs.storage.committer import DEFAULT_MAX_BATCH, GroupCommitter, RefusalRecorder
from libs.storage.database import Transaction
from services.gifts.audit_events import PlatformEvents
from services.gifts.model.audit import NO_TRACE, Trace
from services.gifts.model.ledger import PLATFORM_ACCOUNTS
from services.gifts.store.legacy_outbox import drain_legacy_outbox
from services.gifts.store.schema import open_ledger_database
from services.gifts.store.unit import LedgerUnitOfWork

R = TypeVar("R")
WRITER_CACHE_KIB = 64 * 1024
# The platform's own accounts exist from the beginning of time, as far as the ledger knows.
PLATFORM_OPENED_AT = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
Work = Callable[[LedgerUnitOfWork], R]
OnRefused = Callable[[LedgerUnitOfWork, DomainError], None]


class GiftsStore:
    """Owns the gifts database's writer. One process at a time owns it (it migrates the
    schema on opening); any number of `GiftsReader`s may read beside it."""

    def __init__(self, *, events: PlatformEvents, root: Path | None = None, synchronous: str = "FULL",
                 max_batch: int = DEFAULT_MAX_BATCH, threaded: bool = True, clock: Clock = utc_now) -> None:
        writer = open_ledger_database(root, synchronous=synchronous)
        self._writer = writer
        self._events = events
        self._engine = writer.engine
        with writer.transaction() as tx:
            if writer.engine == "sqlite":
                # The hot set (platform accounts, recent index pages) must stay in memory.
                tx.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
                drain_legacy_outbox(tx, events, now=clock())
            for account in PLATFORM_ACCOUNTS:
                LedgerUnitOfWork(tx, events=events, engine=writer.engine).open_account(account, PLATFORM_OPENED_AT)
        self._committer = GroupCommitter(writer, max_batch=max_batch, name="gifts-commit", threaded=threaded)
        # Written only on the committer thread: by units, then swapped out after each commit.
        self._touched_lives: set[str] = set()
        self._live_listeners: list[Callable[[frozenset[str]], None]] = []
        self._committer.add_commit_listener(self._tell_live_listeners)

    def submit(self, work: Work[R], *, on_refused: OnRefused | None = None, trace: Trace = NO_TRACE) -> Future[R]:
        """Run `work` in the next durable batch; the future resolves after its COMMIT.

        `trace` is the request's, stamped on the audit events the unit writes.
        """
        unit, refused = self._units(on_refused, trace)
        return self._committer.submit(lambda tx: work(unit(tx)), on_refused=refused)

    async def run(self, work: Work[R], *, on_refused: OnRefused | None = None, trace: Trace = NO_TRACE) -> R:
        """`submit` for asyncio callers, woken together with the rest of their batch."""
        unit, refused = self._units(on_refused, trace)
        return await self._committer.run(lambda tx: work(unit(tx)), on_refused=refused)

    def _units(self, on_refused: OnRefused | None, trace: Trace
               ) -> tuple[Callable[[Transaction], LedgerUnitOfWork], RefusalRecorder | None]:
        def unit(tx: Transaction) -> LedgerUnitOfWork:
            return LedgerUnitOfWork(tx, events=self._events, trace=trace, touched_lives=self._touched_lives,
                                    engine=self._engine)

        refused: RefusalRecorder | None = None
        if on_refused is not None:
            def refused(tx: Transaction, error: DomainError) -> None:
                on_refused(unit(tx), error)
        return unit, refused

    def commit_queued(self) -> None:
        """With `threaded=False`: commit what was submitted, on this thread."""
        self._committer.commit_queued()

    def add_commit_listener(self, listener: Callable[[], None]) -> None:
        """Call `listener()` on the committer thread after each commit, before anyone hears of it."""
        self._committer.add_commit_listener(listener)

    def add_live_listener(self, listener: Callable[[frozenset[str]], None]) -> None:
        """Call `listener(live_ids)` on the committer thread after a commit that added gifts
        to, or ended, those LIVE sessions. It must be quick and thread-safe."""
        self._live_listeners.append(listener)

    def _tell_live_listeners(self) -> None:
        if not self._touched_lives:
            return
        touched = frozenset(self._touched_lives)
        self._touched_lives.clear()
        for listener in self._live_listeners:
            listener(touched)

    def close(self) -> None:
        self._committer.close()
        self._writer.close()
