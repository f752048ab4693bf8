"""Group commit: one writer thread logs every pending AppendEvents batch in a single transaction.

Each caller hands in its batch and waits on a future that resolves only after the
transaction holding its batch has committed (fsync'd, with SQLite's synchronous=FULL):
an acknowledged event is durable. While one commit is in flight the next callers'
batches queue up, so under load one fsync covers many callers; under no load a batch
commits at once, with no added delay.

The same thread publishes checkpoints, after commits and when idle, so a new event is
under a signed checkpoint within about one checkpoint interval, and no two threads
ever race to sign.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future

from libs.audit.events import AuditEvent
from libs.errors import Unavailable
from services.compliance.auditlog import Appended, AuditLog

logger = logging.getLogger(__name__)

_Pending = tuple[Sequence[AuditEvent], "Future[list[Appended]]"]


class GroupCommitSequencer:
    def __init__(self, log: AuditLog, *, max_events_per_commit: int = 20_000, idle_poll_seconds: float = 0.1) -> None:
        self._log = log
        self._max_events = max_events_per_commit
        self._idle_poll = idle_poll_seconds
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()  # None asks the thread to stop
        self._thread = threading.Thread(target=self._run, name="audit-sequencer", daemon=True)
        self._stopping = False
        self.commits = 0
        """Transactions committed so far: with `events` gives the group size (for benchmarks)."""

    def start(self) -> None:
        self._log.publish_checkpoint_if_due()
        self._thread.start()

    def stop(self) -> None:
        """Commit what is queued, publish a last checkpoint, and end the thread."""
        self._stopping = True
        self._queue.put(None)
        self._thread.join()

    def submit(self, events: Sequence[AuditEvent]) -> Future[list[Appended]]:
        if self._stopping:
            raise Unavailable("the audit log is shutting down", reason="AUDIT_LOG_STOPPING")
        future: Future[list[Appended]] = Future()
        self._queue.put((events, future))
        return future

    def _run(self) -> None:
        stopping = False
        while not stopping:
            try:
                first = self._queue.get(timeout=self._idle_poll)
            except queue.Empty:
                self._publish()
                continue
            group: list[_Pending] = []
            item = first
            while True:
                if item is None:
                    stopping = True
                else:
                    group.append(item)
                if stopping or sum(len(events) for events, _ in group) >= self._max_events:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if group:
                self._commit(group)
            self._publish()

    def _commit(self, group: list[_Pending]) -> None:
        try:
            outcomes = self._log.append([events for events, _ in group])
        except BaseException as error:  # the whole transaction failed: nobody is acknowledged
            logger.exception("audit append transaction failed")
            for _, future in group:
                future.set_exception(error)
            return
        self.commits += 1
        for (_, future), outcome in zip(group, outcomes):
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def _publish(self) -> None:
        try:
            self._log.publish_checkpoint_if_due()
        except Exception:
            # Appends stay durable without a checkpoint; keep serving and say why loudly.
            logger.exception("could not publish an audit checkpoint")
