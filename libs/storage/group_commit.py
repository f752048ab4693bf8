"""Group commit: many callers, one writer thread, one durable transaction per group of requests.

Each caller submits a request and waits on a future that resolves only after the
transaction holding its request committed (with SQLite's synchronous=FULL, after the
fsync), so an acknowledged request is durable. While one commit is in flight the next
callers' requests queue up and go into the following transaction together: under load
one fsync covers many callers, and with no load a request commits at once, with no
added delay.

For independent requests that each need all-or-nothing isolation inside the shared
transaction, use `libs.storage.unit_commit.UnitCommitter` instead; this class suits a
writer that handles a whole group at once (the audit log hashes a group's leaves together).

`commit` receives the queued requests and returns one result per request, or an
exception for a request that failed on its own; if it raises, every request of the
group fails with that error. `tick` runs on the same thread after every group and when
the queue has been idle for `idle_seconds` (periodic work that must not race the
writer, such as signing a checkpoint).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

from libs.errors import Unavailable

logger = logging.getLogger(__name__)

RequestT = TypeVar("RequestT")
ResultT = TypeVar("ResultT")


class GroupCommitter(Generic[RequestT, ResultT]):
    def __init__(
        self,
        commit: Callable[[list[RequestT]], Sequence[ResultT | BaseException]],
        *,
        name: str,
        max_group_size: int = 20_000,
        size_of: Callable[[RequestT], int] = lambda _request: 1,
        tick: Callable[[], object] | None = None,
        idle_seconds: float = 0.1,
    ) -> None:
        self._commit = commit
        self._max_group_size = max_group_size
        self._size_of = size_of
        self._tick = tick
        self._idle_seconds = idle_seconds
        # None asks the thread to finish what is queued and stop.
        self._queue: queue.SimpleQueue[tuple[RequestT, Future[ResultT]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._stopping = False
        self.commits = 0
        """Groups committed so far; requests per commit is the grouping achieved."""

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Commit what is queued, run `tick` once more, and end the thread."""
        if self._stopping:
            return
        self._stopping = True
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join()

    def submit(self, request: RequestT) -> Future[ResultT]:
        if self._stopping:
            raise Unavailable("shutting down; not accepting new writes", reason="SHUTTING_DOWN")
        future: Future[ResultT] = Future()
        self._queue.put((request, future))
        return future

    def _run(self) -> None:
        stopping = False
        while not stopping:
            try:
                item = self._queue.get(timeout=self._idle_seconds)
            except queue.Empty:
                self._run_tick()
                continue
            group: list[tuple[RequestT, Future[ResultT]]] = []
            size = 0
            while True:
                if item is None:
                    stopping = True
                    break
                # A caller that gave up (deadline, cancellation) before its request was
                # picked up is skipped; once picked up, a request runs to completion.
                if item[1].set_running_or_notify_cancel():
                    group.append(item)
                    size += self._size_of(item[0])
                if size >= self._max_group_size:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if group:
                self._commit_group(group)
            self._run_tick()

    def _commit_group(self, group: list[tuple[RequestT, Future[ResultT]]]) -> None:
        try:
            results = self._commit([request for request, _ in group])
        except BaseException as error:  # nothing of the group committed: nobody is acknowledged
            logger.exception("group commit failed")
            for _, future in group:
                future.set_exception(error)
            return
        self.commits += 1
        for (_, future), result in zip(group, results, strict=True):
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    def _run_tick(self) -> None:
        if self._tick is None:
            return
        try:
            self._tick()
        except Exception:
            # Committed requests stay durable; keep serving and say why loudly.
            logger.exception("periodic work after a group commit failed")
