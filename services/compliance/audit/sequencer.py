"""The audit log's writer: the pending AppendEvents batches of a group go into one fsync'd transaction.

Built on `libs.storage.committer.GroupCommitter`, which owns the log's write connection:
each batch is a unit of work that `AuditLog.stage`s its events (a batch that reuses an
event id for other content fails alone), and `finish_batch` seals the group, writing the
tree nodes of all its new leaves inside the same transaction before COMMIT. A batch's
caller is acknowledged only after that COMMIT; a failed COMMIT stops the sequencer, and
every later append fails with UNAVAILABLE until the service restarts (on PostgreSQL only
that batch fails). The committer's thread also signs checkpoints (`tick`), after commits
and when idle, so a new event is under a signed checkpoint within about one checkpoint
interval, and no two threads ever race to sign.

Replicas over one PostgreSQL each run a sequencer: all of them append (their transactions
take turns under the store's writer lock), but only the one holding the store's sequencer
lease signs checkpoints; when it dies, another replica's next tick takes the lease over.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future

from libs.audit.events import AuditEvent
from libs.storage.committer import GroupCommitter, UnitOfWork
from services.compliance.audit.model import Appended
from services.compliance.audit.store import AuditLogStore
from services.compliance.audit.usecases import AuditLog

logger = logging.getLogger(__name__)


class Sequencer:
    def __init__(
        self, log: AuditLog, store: AuditLogStore, *, before_checkpoint: Callable[[], object] | None = None,
        idle_seconds: float = 0.1,
    ) -> None:
        """Sign the log as found (the first checkpoint of a new log) if this is the sequencer, then start
        the writer thread.

        `before_checkpoint` runs on the writer thread before each checkpoint attempt (logging
        counted refusals), so what it appends is signed with the same checkpoint.
        """
        self._lease = store.sequencer_lease()
        self._signing = False
        if self._is_signer():
            log.publish_checkpoint_if_due()

        def tick() -> None:
            try:
                if before_checkpoint is not None:
                    before_checkpoint()
            finally:
                if self._is_signer():
                    log.publish_checkpoint_if_due()

        self._log = log
        self._store = store
        self._committer = GroupCommitter(
            store.writer_database, name="audit-sequencer", idle_seconds=idle_seconds, tick=tick,
            finish_batch=lambda transaction: log.seal(store.log_writer(transaction)),
        )

    @property
    def commits(self) -> int:
        """Transactions committed so far; batches per commit is the grouping achieved."""
        return self._committer.commits

    def submit(self, events: Sequence[AuditEvent]) -> Future[list[Appended]]:
        """Append from a thread; the future resolves once the transaction holding the batch committed."""
        return self._committer.submit(self._unit(events))

    async def append(self, events: Sequence[AuditEvent]) -> list[Appended]:
        """Append from the event loop, which never waits on the disk."""
        return await self._committer.run(self._unit(events))

    def stop(self) -> None:
        """Commit what is queued, sign it (if this is the sequencer), hand the lease on, and stop; later
        appends fail with UNAVAILABLE."""
        self._committer.close()
        self._lease.release()

    def _is_signer(self) -> bool:
        """Whether this replica holds the lease now; says so when that changes (operators look
        for which replica signs)."""
        held = self._lease.held()
        if held != self._signing:
            self._signing = held
            logger.info("this replica %s the audit log's checkpoints", "signs" if held else "no longer signs")
        return held

    def _unit(self, events: Sequence[AuditEvent]) -> UnitOfWork[list[Appended]]:
        return lambda transaction: self._log.stage(self._store.log_writer(transaction), events)

